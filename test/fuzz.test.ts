/**
 * Bad input, generated (fast-check): malformed requests and API Gateway events at the example
 * app (the Lambda handler in-process and in the emulator, the Worker in Miniflare), and malformed
 * options and URLs at the library. The app must answer a 4xx JSON `{error}` or a correct 2xx,
 * never a 5xx, a throw or an unhandled rejection; the library must succeed or throw an
 * InvalidOptionError naming the option, never echoing the password.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda'
import fc from 'fast-check'
import { WebSocket } from 'ws'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { Holder, InvalidOptionError, closeAll, envOptionNames, optionsFromEnv } from '../src/index.js'
import { postgresDriver, warmPostgres } from '../src/drivers/postgres.js'
import { warmNeon } from '../src/drivers/neon.js'
import { withWarmconn } from '../src/lambda/index.js'
import { httpEvent } from './harness/lambda/apigw.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, type TestWorker } from './harness/worker.js'

type Handler = (event: unknown, context: Context) => Promise<APIGatewayProxyStructuredResultV2>

let pg: TestPg
let handler: Handler
let lambda: LambdaEmulator
let worker: TestWorker
let dir: string
const unhandled: unknown[] = []
const onUnhandled = (reason: unknown): void => void unhandled.push(reason)

beforeAll(async () => {
  pg = await startPostgres()
  process.on('unhandledRejection', onUnhandled)
  // functions/lambda.ts reads DATABASE_URL on its first database request.
  vi.stubEnv('DATABASE_URL', pg.url)
  handler = (await import('../functions/lambda.js')).handler as Handler
  dir = mkdtempSync(join(tmpdir(), 'warmconn-fuzz-'))
  lambda = await startLambda({ handlerFile: await build('functions/lambda.ts', join(dir, 'app.mjs')), env: { DATABASE_URL: pg.url }, timeoutMs: 15_000 })
  worker = await startWorker({ entry: 'functions/worker.ts', bindings: { DATABASE_URL: pg.url } })
})
afterEach(() => {
  expect(unhandled).toEqual([])
})
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled)
  vi.unstubAllEnvs()
  await lambda?.kill()
  await worker?.dispose()
  await closeAll()
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

// ---- what the contract says the app must answer ------------------------------------------------

const ROUTES: Record<string, string> = { '/db': 'GET', '/visits': 'POST', '/visits/count': 'GET' }

/** The status class the contract (issue 3) requires for a request. */
function expected(method: string, path: string, body: string | undefined): '2xx' | 404 | 405 | '4xx' {
  const allowed = Object.hasOwn(ROUTES, path) ? ROUTES[path] : undefined
  if (!allowed) return 404
  if (method.toUpperCase() !== allowed) return 405
  return path === '/visits' && visitKey(body) === undefined ? '4xx' : '2xx'
}

/** The key of a valid POST /visits body: a JSON object whose key is 1 to 200 storable characters. */
function visitKey(body: string | undefined): string | undefined {
  if (!body || new TextEncoder().encode(body).length > 4096) return undefined
  let value: unknown
  try {
    value = JSON.parse(body)
  } catch {
    return undefined
  }
  const key = value && typeof value === 'object' && !Array.isArray(value) ? (value as { key?: unknown }).key : undefined
  if (typeof key !== 'string' || [...key].length < 1 || [...key].length > 200) return undefined
  return key.includes('\u0000') || !key.isWellFormed() ? undefined : key
}

/** Checks one answer against the contract; `key` is the key sent, for POST /visits. */
function checkAnswer(status: number, text: string, want: ReturnType<typeof expected>, path: string, key: string | undefined): void {
  expect(status, text).toBeLessThan(500)
  const body = JSON.parse(text) as Record<string, unknown>
  if (want !== '2xx') {
    expect(status, text).toBeGreaterThanOrEqual(400)
    if (want !== '4xx') expect(status, text).toBe(want)
    expect(typeof body.error === 'string' && body.error.length > 0, text).toBe(true)
    return
  }
  if (path === '/visits') {
    expect([200, 201], text).toContain(status)
    expect(Number.isSafeInteger(body.id) && body.key === key, text).toBe(true)
  } else {
    expect(status, text).toBe(200)
    expect(path === '/db' ? Number.isSafeInteger(body.pid) && typeof body.stats === 'object' : Number.isSafeInteger(body.count), text).toBe(true)
  }
}

// ---- generators --------------------------------------------------------------------------------

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c))
/** Any code point, lone surrogates and NUL included. */
const anyText = (maxLength: number) =>
  fc.string({ unit: fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), loneSurrogate, fc.constant('\u0000')), maxLength })
const tricky = fc.constantFrom('é', 'e\u0301', '👩‍👩‍👧', '\u202e', '\ufeff', '\u0000', '\ud800', '\udfff', '\uffff', '𝕏', ' ', '"', '\\')

const key = fc.oneof(
  anyText(210),
  fc.array(tricky, { minLength: 1, maxLength: 201 }).map((parts) => parts.join('')),
  fc.constantFrom('', 'x'.repeat(200), 'x'.repeat(201), '😀'.repeat(200), '😀'.repeat(201)),
)
const wrongType = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string()), fc.object())
const deep = fc.integer({ min: 1, max: 5_000 }).chain((depth) =>
  fc.constantFrom('['.repeat(depth) + ']'.repeat(depth), `{"key":"deep","a":${'['.repeat(depth)}${']'.repeat(depth)}}`, '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)),
)
const body = fc.oneof(
  fc.constant(undefined),
  key.map((k) => JSON.stringify({ key: k })),
  key.map((k) => `{"key":"${k}"}`), // raw, unescaped: quotes and control characters break it
  wrongType.map((v) => JSON.stringify({ key: v })),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  anyText(300),
  deep,
  fc.integer({ min: 4_000, max: 300_000 }).map((n) => JSON.stringify({ key: 'big', pad: 'x'.repeat(n) })),
  fc.constantFrom('\ufeff{"key":"bom"}', '{"key":"a","key":5}', '{"__proto__":{"key":"p"}}', '{"key":"\\ud800"}', '{"key":"\\u0000"}', 'null', '"key"', '{'),
)
const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'get', 'post', 'pOsT'), fc.string({ maxLength: 12 }))
const path = fc.oneof(
  fc.constantFrom('/db', '/visits', '/visits/count', '/', '', '/db/', '/DB', '/visits/count/', '//db', '/visits%2Fcount', '/db?x=1', '/constructor', '/__proto__'),
  anyText(40).map((s) => `/${s}`),
)
// Not a path API Gateway would send (those start with "/"), but an event can carry anything.
const prototypeKey = fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf')
const headers = fc.dictionary(fc.string({ maxLength: 20 }), anyText(100), { maxKeys: 8 })

interface Req {
  method: string
  path: string
  body: string | undefined
  base64: boolean
  headers: Record<string, string>
}
const request = fc.record({ method, path, body, base64: fc.boolean(), headers })
// Requests aimed at the routes that reach the database, so most runs exercise real work.
const dbRequest = fc.record({
  method: fc.constantFrom('GET', 'POST'),
  path: fc.constantFrom('/db', '/visits', '/visits/count'),
  body,
  base64: fc.boolean(),
  headers,
})

function eventFor(r: Req): APIGatewayProxyEventV2 {
  const event = httpEvent({ method: 'GET', path: r.path, headers: r.headers })
  event.requestContext.http.method = r.method
  if (r.body !== undefined) {
    event.body = r.base64 ? Buffer.from(r.body, 'utf8').toString('base64') : r.body
    event.isBase64Encoded = r.base64
  }
  return event
}

/** What the app sees as the body after API Gateway's base64 round trip (lone surrogates become U+FFFD). */
function seenBody(r: Req): string | undefined {
  return r.body !== undefined && r.base64 ? Buffer.from(r.body, 'utf8').toString('utf8') : r.body
}

const context = { getRemainingTimeInMillis: () => 15_000 } as unknown as Context

async function checkInProcess(r: Req): Promise<void> {
  const res = await handler(eventFor(r), context)
  const sent = seenBody(r)
  checkAnswer(res.statusCode ?? 0, String(res.body), expected(r.method, r.path, sent), r.path, visitKey(sent))
}

// ---- the Lambda handler ------------------------------------------------------------------------

describe('the Lambda handler, in-process, against a real database', () => {
  it('any method, path, headers and body: a 4xx {error} or a correct 2xx, never a 5xx', async () => {
    await fc.assert(fc.asyncProperty(request, checkInProcess), { numRuns: 300 })
  })

  it('requests aimed at the database routes: bad bodies are 4xx, good ones are stored and echoed', async () => {
    await fc.assert(fc.asyncProperty(dbRequest, checkInProcess), { numRuns: 300 })
  })

  // Fields missing or of the wrong type anywhere in the event, except the method (next test).
  const brokenEvent = fc
    .record({ r: request, drop: fc.subarray(['rawPath', 'body', 'requestContext', 'headers', 'isBase64Encoded', 'version']), junk: fc.dictionary(fc.constantFrom('rawPath', 'body', 'isBase64Encoded', 'headers', 'cookies'), fc.anything()) })
    .map(({ r, drop, junk }) => {
      const event: Record<string, unknown> = { ...eventFor(r), ...junk }
      for (const field of drop) delete event[field]
      return event
    })

  it('events with missing fields, wrong types and base64 flags: never a throw, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(brokenEvent, fc.anything()), async (event) => {
        const res = await handler(event, context)
        expect(res.statusCode).toBeLessThan(500)
        expect(typeof JSON.parse(String(res.body))).toBe('object')
      }),
      { numRuns: 300 },
    )
  })

  it('an event whose method is not a string: a 4xx {error}, not a crash', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.string()), fc.object()), async (wrong) => {
        const event = httpEvent({ method: 'GET', path: '/db' }) as unknown as { requestContext: { http: { method: unknown } } }
        event.requestContext.http.method = wrong
        const res = await handler(event, context)
        expect(res.statusCode).toBeGreaterThanOrEqual(400)
        expect(res.statusCode).toBeLessThan(500)
      }),
      { numRuns: 20 },
    )
  })

  it('an event whose path is the name of an Object.prototype member: 404, like any unknown route', async () => {
    await fc.assert(
      fc.asyncProperty(prototypeKey, method, async (p, m) => {
        const res = await handler(eventFor({ method: m, path: p, body: undefined, base64: false, headers: {} }), context)
        expect(res.statusCode).toBe(404)
      }),
      { numRuns: 20 },
    )
  })

  it('the bundled function in the emulator: no invocation error, no 5xx, one process throughout', async () => {
    const first = await lambda.invoke(httpEvent({ method: 'GET', path: '/db' }))
    const pid = lambda.pid
    expect(first.error).toBeUndefined()
    await fc.assert(
      fc.asyncProperty(fc.oneof(request, dbRequest), async (r) => {
        const out = await lambda.invoke(eventFor(r))
        expect(out.error).toBeUndefined()
        const res = out.result as { statusCode: number; body: string }
        const sent = seenBody(r)
        checkAnswer(res.statusCode, res.body, expected(r.method, r.path, sent), r.path, visitKey(sent))
      }),
      { numRuns: 40 },
    )
    expect(lambda.pid).toBe(pid)
    expect(lambda.logs().join('\n')).not.toMatch(/Uncaught|Unhandled|Invoke Error/)
  })
})

// ---- the Worker --------------------------------------------------------------------------------

describe('the Worker in Miniflare', () => {
  // What reaches a Worker: workerd itself answers 501 to a method outside its HTTP parser's list
  // (exact case, except the six that fetch upper-cases), fetch refuses CONNECT, TRACE and TRACK,
  // and a HEAD answer has no body to check.
  const extensions = ['PATCH', 'PURGE', 'COPY', 'LOCK', 'MKCOL', 'MOVE', 'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'REPORT', 'NOTIFY']
  const workerRequest = fc.record({
    method: fc.oneof(fc.mixedCase(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS')), fc.constantFrom(...extensions)),
    path: fc.oneof(path, fc.webPath()).map((p) => (p.startsWith('/') ? p : `/${p}`)),
    body: fc.oneof(body, fc.uint8Array({ maxLength: 2_000 })),
    headers: fc.dictionary(fc.stringMatching(/^x-[a-z0-9-]{1,16}$/), fc.stringMatching(/^[\x20-\x7e]{0,64}$/), { maxKeys: 6 }),
  })

  it('any method, path, headers and body: a 4xx {error} or a correct 2xx, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(workerRequest, async (r) => {
        const url = new URL(`http://worker.test${r.path.replace(/[?#].*$/, '')}`)
        const withBody = r.body !== undefined && !/^(get)$/i.test(r.method)
        const res = await worker.mf.dispatchFetch(url.href, { method: r.method, headers: r.headers, ...(withBody ? { body: r.body } : {}) })
        const text = await res.text()
        // The Worker reads the body as UTF-8 text, replacing what cannot be decoded.
        const sent = !withBody ? undefined : new TextDecoder().decode(typeof r.body === 'string' ? new TextEncoder().encode(r.body) : r.body)
        checkAnswer(res.status, text, expected(r.method, url.pathname, sent), url.pathname, visitKey(sent))
      }),
      { numRuns: 60 },
    )
    expect(worker.output()).not.toMatch(/Uncaught|Unhandled/)
  })
})

// ---- the library -------------------------------------------------------------------------------

/** Runs `make` and checks it either succeeds or throws an InvalidOptionError naming an option, without `secret`. */
function typedOrSuccess(make: () => unknown, secret?: string): void {
  try {
    make()
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(InvalidOptionError)
    const { option, message } = err as InvalidOptionError
    expect(message).toContain(`"${option}"`)
    if (secret) expect(`${message}\n${(err as Error).stack}`).not.toContain(secret)
  }
}

const password = fc.stringMatching(/^[A-Za-z0-9]{10,20}$/).map((s) => `pw-${s}`)
// Raw: the URL parser escapes what it must. No '%', which has its own test below.
const part = fc.oneof(fc.stringMatching(/^[a-z0-9_]{1,12}$/), fc.string({ unit: 'binary', maxLength: 12 }).filter((s) => !s.includes('%')))
const host = fc.oneof(fc.constantFrom('localhost', '127.0.0.1', '[::1]', 'db.example.com', ''), fc.domain(), fc.ipV4())
const port = fc.oneof(fc.constant(''), fc.integer({ min: 0, max: 70_000 }).map(String), fc.constantFrom('x', '-1', '5432x'))
const params = fc.dictionary(fc.constantFrom('sslmode', 'ssl', 'application_name', 'options', 'target_session_attrs', 'x'), fc.string({ maxLength: 10 }), { maxKeys: 3 })
const url = fc
  .record({ scheme: fc.constantFrom('postgres', 'postgresql', 'mysql', 'http', 'postgres:'), user: part, password, host, port, db: part, params })
  .map(({ scheme, user, password, host, port, db, params }) => ({
    password,
    url: `${scheme}://${user}:${password}@${host}${port ? `:${port}` : ''}/${db}${Object.keys(params).length ? `?${new URLSearchParams(params)}` : ''}`,
  }))
// Characters spliced in at random: the URL breaks in every place a hand-edited one can. '%' is
// left to its own test below.
const mangled = fc.tuple(url, fc.nat(), fc.constantFrom('@', ':', '/', '?', '#', '[', ']', ' ', '\n', '\\', '\u0000', 'é')).map(([u, at, c]) => {
  const i = at % (u.url.length + 1)
  return { password: u.password, url: u.url.slice(0, i) + c + u.url.slice(i) }
})

const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, 2 ** 53))
const value = fc.oneof(number, fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.array(fc.nat(), { maxLength: 2 }), fc.object({ maxDepth: 1 }))
const optionKeys = [
  'staleAfterMs', 'pingTimeoutMs', 'idleTimeoutMs', 'maxLifetimeMs', 'maxLifetimeJitterMs', 'connectTimeoutMs', 'connectRetries',
  'connectBudgetMs', 'connectBackoffBaseMs', 'connectBackoffMaxMs', 'acquireTimeoutMs', 'maxConnections', 'closeTimeoutMs', 'applicationName',
]
const holderOptions = fc.oneof(
  fc.dictionary(fc.oneof(fc.constantFrom(...optionKeys), fc.string({ maxLength: 10 })), value, { maxKeys: 4 }),
  fc.constantFrom(null, undefined, 'options', 42),
)

describe('the library, given malformed URLs and options', () => {
  it('warmPostgres: a holder, or an InvalidOptionError naming the option without the password', () => {
    fc.assert(
      fc.property(fc.oneof(url, mangled), holderOptions, ({ url, password }, options) => {
        typedOrSuccess(() => warmPostgres(url, options as never), password)
      }),
      { numRuns: 1_000 },
    )
  })

  it('warmPostgres: a "%" that is not an escape in the user or database name is an InvalidOptionError', () => {
    fc.assert(
      fc.property(fc.constantFrom('%', '%zz', '%E0%A4%A', '%ff'), fc.boolean(), password, (bad, inUser, pw) => {
        const url = inUser ? `postgres://u${bad}:${pw}@db.example.com/shop` : `postgres://u:${pw}@db.example.com/shop${bad}`
        typedOrSuccess(() => warmPostgres(url), pw)
      }),
    )
  })

  it('warmPostgres: postgres.js options of the wrong type are an InvalidOptionError, not a crash', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('host', 'port', 'user', 'database', 'password', 'ssl', 'max', 'prepare'), value, { maxKeys: 3 }), (pgOptions) => {
        typedOrSuccess(() => warmPostgres('postgres://u:secretpw@db.example.com/shop', { postgres: pgOptions as never }), 'secretpw')
      }),
      { numRuns: 300 },
    )
  })

  it('warmNeon: a holder, or an InvalidOptionError naming the option without the password', () => {
    const neon = fc.option(fc.record({ webSocketConstructor: fc.constant(WebSocket), wsProxy: fc.constant((h: string, p: number) => `127.0.0.1:1/v1?address=${h}:${p}`) }, { requiredKeys: [] }))
    fc.assert(
      fc.property(url, holderOptions, neon, ({ url, password }, options, neonOptions) => {
        typedOrSuccess(() => warmNeon(url, { ...(options as object), ...(neonOptions ? { neon: neonOptions } : {}) } as never), password)
      }),
      { numRuns: 500 },
    )
  })

  it('new Holder: a holder, or an InvalidOptionError naming the option', () => {
    const driver = postgresDriver('postgres://u:secretpw@db.example.com/shop')
    fc.assert(fc.property(holderOptions, (options) => typedOrSuccess(() => new Holder(driver, options as never), 'secretpw')), { numRuns: 1_000 })
  })

  it('optionsFromEnv: options a holder accepts, or an InvalidOptionError naming the variable', () => {
    const envValue = fc.oneof(fc.stringMatching(/^\s*-?\d{0,12}(\.\d)?\s*$/), fc.string({ maxLength: 8 }), value)
    const env = fc.dictionary(fc.constantFrom('WARMCONN_STALE_AFTER_MS', 'WARMCONN_PING_TIMEOUT_MS', 'WARMCONN_IDLE_TIMEOUT_MS', 'WARMCONN_MAX_LIFETIME_MS', 'WARMCONN_CONNECT_TIMEOUT_MS', 'WARMCONN_CALL_TIMEOUT_MS', 'PATH'), envValue)
    fc.assert(fc.property(env, (e) => typedOrSuccess(() => new Holder(postgresDriver('postgres://u@db.example.com/shop'), optionsFromEnv(e)))), { numRuns: 1_000 })
  })

  it('optionsFromEnv: any other WARMCONN_* variable is an InvalidOptionError naming it, never echoing its value', () => {
    const name = fc.stringMatching(/^[A-Z0-9_]{1,24}$/).map((s) => `WARMCONN_${s}`).filter((n) => !Object.hasOwn(envOptionNames, n))
    fc.assert(
      fc.property(name, password, (n, secret) => {
        try {
          optionsFromEnv({ [n]: secret, WARMCONN_IDLE_TIMEOUT_MS: '1000' })
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidOptionError)
          expect((err as InvalidOptionError).option).toBe(n)
          expect(`${(err as Error).message}\n${(err as Error).stack}`).not.toContain(secret)
          return
        }
        throw new Error(`${n} was accepted`)
      }),
      { numRuns: 500 },
    )
  })

  it('optionsFromEnv: an environment that is not an object is an InvalidOptionError', () => {
    fc.assert(fc.property(fc.constantFrom(undefined, null, 42, 'env'), (e) => typedOrSuccess(() => optionsFromEnv(e as never))))
  })

  it('withWarmconn: a wrapped handler, or an InvalidOptionError naming the option', () => {
    const handlerArb = fc.oneof(fc.constant(async () => 1), fc.constant((_e: unknown, _c: unknown, cb: () => void) => cb()), value)
    const options = fc.oneof(fc.dictionary(fc.constantFrom('closeOnSigterm', 'sigtermTimeoutMs', 'closeOnSigtrem', 'x'), value, { maxKeys: 2 }), value)
    fc.assert(
      // A SIGTERM listener is installed once per process at most (functions/lambda.ts did already).
      fc.property(handlerArb, options, (h, o) => typedOrSuccess(() => withWarmconn(h as never, o as never))),
      { numRuns: 500 },
    )
  })
})
