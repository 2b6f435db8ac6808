/**
 * API Gateway HTTP API events (payload format 2.0), shaped like the ones Lambda receives.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import type { APIGatewayProxyEventV2 } from 'aws-lambda'

const API_ID = 'r3pmxmplak'
const DOMAIN = `${API_ID}.execute-api.us-east-1.amazonaws.com`
const SOURCE_IP = '198.51.100.7'
const USER_AGENT = 'curl/8.5.0'
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

export interface HttpRequest {
  method: string
  /** Without the query string. */
  path: string
  /** A string is sent as is; anything else as JSON (with a JSON content-type unless given). */
  body?: string | object
  headers?: Record<string, string>
  query?: Record<string, string>
}

/**
 * An HTTP API `$default` route event for one request.
 *
 * @example
 * await lambda.invoke(httpEvent({ method: 'POST', path: '/todos', body: { title: 'x' } }))
 */
export function httpEvent({ method, path, body, headers = {}, query = {} }: HttpRequest): APIGatewayProxyEventV2 {
  const text = body === undefined || typeof body === 'string' ? body : JSON.stringify(body)
  const rawQueryString = new URLSearchParams(query).toString()
  const now = new Date()
  // API Gateway lowercases header names and adds its own forwarding headers.
  const allHeaders: Record<string, string> = {
    host: DOMAIN,
    'user-agent': USER_AGENT,
    'x-amzn-trace-id': `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`,
    'x-forwarded-for': SOURCE_IP,
    'x-forwarded-port': '443',
    'x-forwarded-proto': 'https',
    ...(text === undefined ? {} : { 'content-length': String(Buffer.byteLength(text)) }),
    ...(typeof body === 'object' ? { 'content-type': 'application/json' } : {}),
    ...Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value])),
  }
  // Payload 2.0 moves cookies out of the headers into their own array.
  const { cookie, ...eventHeaders } = allHeaders
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString,
    ...(cookie === undefined ? {} : { cookies: cookie.split('; ') }),
    headers: eventHeaders,
    ...(rawQueryString === '' ? {} : { queryStringParameters: { ...query } }),
    requestContext: {
      accountId: '123456789012',
      apiId: API_ID,
      domainName: DOMAIN,
      domainPrefix: API_ID,
      http: { method: method.toUpperCase(), path, protocol: 'HTTP/1.1', sourceIp: SOURCE_IP, userAgent: eventHeaders['user-agent'] ?? USER_AGENT },
      requestId: randomBytes(10).toString('base64'),
      routeKey: '$default',
      stage: '$default',
      time: requestTime(now),
      timeEpoch: now.getTime(),
    },
    ...(text === undefined ? {} : { body: text }),
    isBase64Encoded: false,
  }
}

/** `12/Mar/2020:19:03:58 +0000`, the CLF timestamp API Gateway puts in requestContext.time. */
function requestTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  const day = `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}`
  return `${day}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`
}
