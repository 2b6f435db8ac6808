/**
 * Deployable AWS Lambda handler (API Gateway HTTP API, payload 2.0) for the example app.
 * Configure with DATABASE_URL and optional WARMCONN_*_MS overrides; build with `npm run build:lambda`.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda'
import { optionsFromEnv, type Holder } from '../src/index.js'
import { warmPostgres, type Sql } from '../src/drivers/postgres.js'
import { withWarmconn } from '../src/lambda/index.js'
import { createApp } from './app.js'

// Module scope: built on the first database request, reused by every warm invocation. Built
// lazily so a missing DATABASE_URL is a clear 500 naming it instead of a crash-looping init.
let db: Holder<Sql> | undefined
function holder(): Holder<Sql> {
  return (db ??= warmPostgres(process.env.DATABASE_URL, optionsFromEnv(process.env)))
}

const app = createApp({
  query: (text, params, { idempotent }) =>
    holder().run((sql) => sql.unsafe(text, params as never[]), { idempotent }) as Promise<Record<string, unknown>[]>,
  stats: () => holder().stats(),
})

export const handler = withWarmconn(async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> => {
  const response = await app({
    method: event?.requestContext?.http?.method ?? 'GET',
    path: event?.rawPath ?? '/',
    body: decodeBody(event),
  })
  return {
    statusCode: response.status,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(response.body),
  }
})

function decodeBody(event: APIGatewayProxyEventV2): string | undefined {
  if (typeof event?.body !== 'string') return undefined
  return event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body
}
