/**
 * The example app, shared by the Lambda and the Worker: plain request in, plain response out.
 * It reaches the database only through `AppDb`, so each runtime plugs in its own warm connection.
 * @module
 */

export interface AppRequest {
  method: string
  path: string
  /** Raw body text, or undefined when there is none. */
  body: string | undefined
}

export interface AppResponse {
  status: number
  body: Record<string, unknown>
}

export type Row = Record<string, unknown>

/** How the app runs SQL. `idempotent` tells the runtime the statement may be replayed safely. */
export interface AppDb {
  query(text: string, params: unknown[], options: { idempotent: boolean }): Promise<Row[]>
  stats(): Promise<unknown> | unknown
}

const MAX_KEY_LENGTH = 200
const MAX_BODY_BYTES = 4096

const CREATE_TABLE = `create table if not exists visits (
  id bigserial primary key,
  key text not null unique,
  created_at timestamptz not null default now()
)`

// One statement that inserts the key or finds the row already there, so a client that retries
// after a timeout gets the same id back and never creates a duplicate. Being one statement keyed
// by the client, it is safe for warmconn to replay it after a lost connection.
const UPSERT = `with ins as (
  insert into visits (key) values ($1) on conflict (key) do nothing returning id
)
select id, true as created from ins
union all
select id, false as created from visits where key = $1 and not exists (select 1 from ins)`

// Database failures the caller can do nothing about but wait: answered 503, never with details.
const UNAVAILABLE = new Set([
  'WARMCONN_CONNECT_FAILED', 'WARMCONN_CONNECTION_LOST', 'WARMCONN_CALL_TIMEOUT', 'WARMCONN_ACQUIRE_TIMEOUT',
  'WARMCONN_AUTH_FAILED', 'WARMCONN_CONFIG_REJECTED', 'WARMCONN_CLOSED', 'WARMCONN_CROSS_REQUEST',
])

/**
 * Builds the app over a database. `log` receives one line per failed request, with codes only.
 * @example const app = createApp(db); const res = await app({ method: 'GET', path: '/db', body: undefined })
 */
export function createApp(db: AppDb, log: (line: string) => void = console.error) {
  let tableReady: Promise<void> | undefined
  const ensureTable = (): Promise<void> =>
    (tableReady ??= db.query(CREATE_TABLE, [], { idempotent: true }).then(
      () => undefined,
      (err: unknown) => {
        // Two instances creating the table at once: one wins, the other's IF NOT EXISTS races on
        // the catalog (23505 / 42P07). Either way the table now exists.
        const code = (err as { code?: unknown })?.code
        if (code === '23505' || code === '42P07') return
        tableReady = undefined // try again on the next request
        throw err
      },
    ))

  const routes: Record<string, Record<string, (req: AppRequest) => Promise<AppResponse>>> = {
    '/db': {
      GET: async () => {
        const [row] = await db.query('select pg_backend_pid() as pid', [], { idempotent: true })
        return { status: 200, body: { pid: Number(row?.pid), stats: await db.stats() } }
      },
    },
    '/visits': {
      POST: async (req) => {
        const parsed = parseVisit(req.body)
        if ('error' in parsed) return { status: parsed.status, body: { error: parsed.error } }
        await ensureTable()
        const [row] = await db.query(UPSERT, [parsed.key], { idempotent: true })
        if (!row) throw new Error('upsert returned no row')
        return { status: row.created ? 201 : 200, body: { id: Number(row.id), key: parsed.key } }
      },
    },
    '/visits/count': {
      GET: async () => {
        await ensureTable()
        const [row] = await db.query('select count(*)::int as count from visits', [], { idempotent: true })
        return { status: 200, body: { count: Number(row?.count) } }
      },
    },
  }

  return async function app(req: AppRequest): Promise<AppResponse> {
    if (typeof req?.method !== 'string' || typeof req.path !== 'string') return { status: 400, body: { error: 'malformed request' } }
    // Own properties only: a path like "/constructor" or "__proto__" is just an unknown route.
    const route = Object.hasOwn(routes, req.path) ? routes[req.path]! : undefined
    if (!route) return { status: 404, body: { error: 'not found' } }
    const method = req.method.toUpperCase()
    const handler = Object.hasOwn(route, method) ? route[method] : undefined
    if (!handler) return { status: 405, body: { error: `method not allowed; use ${Object.keys(route).join(', ')}` } }
    try {
      return await handler(req)
    } catch (err) {
      const code = (err as { code?: unknown })?.code
      if (typeof code === 'string' && UNAVAILABLE.has(code)) {
        log(`warmconn example: ${req.method} ${req.path} -> 503 (${code})`)
        return { status: 503, body: { error: 'database unavailable, try again shortly' } }
      }
      log(`warmconn example: ${req.method} ${req.path} -> 500 (${typeof code === 'string' ? code : 'error'})`)
      // A configuration mistake is worth saying: warmconn's messages name the option, never a secret.
      if (code === 'WARMCONN_INVALID_OPTION') return { status: 500, body: { error: `server misconfigured: ${(err as Error).message}` } }
      return { status: 500, body: { error: 'internal error' } }
    }
  }
}

type Parsed = { key: string } | { status: number; error: string }

function parseVisit(body: string | undefined): Parsed {
  if (body === undefined || body.length === 0) return { status: 400, error: 'body required: {"key": "<1 to 200 characters>"}' }
  if (new TextEncoder().encode(body).length > MAX_BODY_BYTES) return { status: 413, error: `body larger than ${MAX_BODY_BYTES} bytes` }
  let value: unknown
  try {
    value = JSON.parse(body)
  } catch {
    return { status: 400, error: 'body is not valid JSON' }
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { status: 400, error: 'body must be a JSON object' }
  const key = (value as { key?: unknown }).key
  if (typeof key !== 'string') return { status: 400, error: '"key" must be a string' }
  // Counted in code points so an emoji is one character, as a user would count it.
  const length = [...key].length
  if (length < 1 || length > MAX_KEY_LENGTH) return { status: 400, error: `"key" must be 1 to ${MAX_KEY_LENGTH} characters` }
  // PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded as UTF-8.
  if (key.includes('\u0000') || !key.isWellFormed()) return { status: 400, error: '"key" contains characters that cannot be stored' }
  return { key }
}
