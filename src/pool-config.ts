/**
 * pg.Pool's config, as a user writes it for `new pg.Pool(config)`, turned into warmconn's: the
 * URL, the holder's options, the Client's own options and what the pool facade itself honours
 * (maxUses, onConnect, verify, the checkout bound of connectionTimeoutMillis). warmconn's own
 * option names may stand beside pg's; a pg option and the warmconn option it maps to, given with
 * different values, is an error naming both. Nothing here does I/O.
 * @module
 */
import { InvalidOptionError } from './errors.js'
import { defaultOptions, describe, type HolderOptions } from './options.js'

/** What the pool facade does itself (pool.ts), beside the holder. */
export interface FacadeSettings {
  /** pg's maxUses: a client is closed once it has been checked out this many times. */
  maxUses: number
  /** pg's onConnect, then verify: run on each new client before it is handed out; a failure closes it. */
  onConnect: ((client: never) => unknown) | undefined
  /** pg's connectionTimeoutMillis: a bound on the whole checkout (the wait for a busy pool included). */
  checkoutTimeoutMs: number | undefined
}

export interface PoolPlan {
  url: string | undefined
  /** Holder options, idempotent and the driver's sub-object (`pg`, `neon`) included, unknown keys left for resolveOptions to name. */
  rest: Record<string, unknown>
  /** pg.Client options given at the top level, as pg.Pool passes them to each Client. */
  client: Record<string, unknown>
  facade: FacadeSettings
}

// A pg.Pool option -> the holder option it becomes (a value in the same unit, or converted).
const MAPPED: Record<string, { to: keyof HolderOptions; convert?: (v: number) => number }> = {
  max: { to: 'maxConnections' },
  idleTimeoutMillis: { to: 'idleTimeoutMs' },
  connectionTimeoutMillis: { to: 'acquireTimeoutMs' },
  maxLifetimeSeconds: { to: 'maxLifetimeMs', convert: (s) => s * 1000 },
}

// Refused by name, with what to do instead: options whose promise warmconn cannot keep.
const REFUSED: Record<string, string> = {
  Client: 'warmconn makes the Client itself (pg.Client for warmconn/pg, neon\'s Client for warmconn/neon); set Client options in the config, or use warmPg(url, { pg }) for a Client of your own making',
  log: "pg-pool's debug log is not kept; subscribe to warmconn's events instead: pool.holder.on('connectSuccess', ...)",
  query_timeout: "node-postgres's read timeout gives up on a statement while it still runs, and the next caller queues behind it on the same connection: use callTimeoutMs (it destroys the connection) and statement_timeout (it stops the statement on the server)",
  poolSize: 'an old name of pg-pool\'s; use "max"',
}

const CONNECTION = ['host', 'port', 'user', 'database'] as const

// setTimeout's ceiling: what "never" becomes where pg says 0 for no limit.
const NEVER_MS = 2_147_483_647

/**
 * Splits `warmPool(config)` or `warmPool(url, options)` into warmconn's parts.
 * @example const { url, rest, client, facade } = planPool({ connectionString, max: 5, idleTimeoutMillis: 10_000 }, undefined)
 */
export function planPool(first: unknown, second: unknown): PoolPlan {
  let config: Record<string, unknown>
  let urlForm = false
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    if (second !== undefined) throw new InvalidOptionError('options', 'warmPool(config) takes one object; the URL-first form is warmPool(url, options)')
    config = { ...(first as Record<string, unknown>) }
  } else {
    if (second !== undefined && (second === null || typeof second !== 'object' || Array.isArray(second))) throw new InvalidOptionError('options', 'expected an object')
    config = { ...((second as Record<string, unknown> | undefined) ?? {}) }
    if (config.connectionString !== undefined) throw new InvalidOptionError('connectionString', 'the URL is the first argument already: give it once')
    config.connectionString = first
    // No URL and no host either: the URL form's own "missing URL (is DATABASE_URL set?)" error.
    if (first === undefined && !CONNECTION.some((k) => config[k] !== undefined)) urlForm = true
  }
  for (const [key, instead] of Object.entries(REFUSED)) {
    if (config[key] !== undefined) throw new InvalidOptionError(key, `a pg.Pool option warmconn cannot honour: ${instead}`)
  }
  if (config.Promise !== undefined && config.Promise !== Promise) throw new InvalidOptionError('Promise', 'warmconn returns the global Promise; a Promise library of your own is not supported')
  delete config.Promise

  const rest: Record<string, unknown> = {}
  const client: Record<string, unknown> = {}
  const facade: FacadeSettings = { maxUses: Infinity, onConnect: undefined, checkoutTimeoutMs: undefined }
  const url = urlForm ? undefined : connectionUrl(config)
  for (const key of ['connectionString', ...CONNECTION]) delete config[key]

  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue
    if (key in MAPPED) {
      const { to, convert } = MAPPED[key]!
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new InvalidOptionError(key, `expected a number of at least 0, got ${describe(value)}`)
      // pg's 0: no limit. warmconn keeps its own bound there (see the README's table), except for
      // the idle timeout, which pg users set to 0 to keep connections open.
      if (value === 0 && key !== 'idleTimeoutMillis') continue
      setMapped(rest, config, key, to, value === 0 ? NEVER_MS : convert ? convert(value) : value)
      if (key === 'idleTimeoutMillis' && value === 0 && config.serverIdleClose === undefined) rest.serverIdleClose = false
      if (key === 'connectionTimeoutMillis') facade.checkoutTimeoutMs = value
    } else if (key === 'application_name') {
      setMapped(rest, config, key, 'applicationName', value)
    } else if (key === 'min') {
      if (value !== 0) throw new InvalidOptionError('min', 'warmconn keeps no minimum of idle connections (an idle connection closes at idleTimeoutMillis): raise idleTimeoutMillis to keep connections warm longer')
    } else if (key === 'maxUses') {
      if (value !== Infinity && (typeof value !== 'number' || !Number.isInteger(value) || value < 1)) throw new InvalidOptionError('maxUses', `expected a whole number of at least 1, got ${describe(value)}`)
      facade.maxUses = value as number
    } else if (key === 'onConnect' || key === 'verify') {
      if (typeof value !== 'function') throw new InvalidOptionError(key, `expected a function, got ${describe(value)}`)
    } else if (key in defaultOptions || key === 'idempotent' || key === 'pg' || key === 'neon') {
      rest[key] = value
    } else if (CLIENT_OPTIONS.has(key)) {
      client[key] = value
    } else {
      rest[key] = value // not pg's, not warmconn's: resolveOptions names the nearest known option
    }
  }
  facade.onConnect = connectHook(config.onConnect as Hook | undefined, config.verify as Verify | undefined)
  // connectionTimeoutMillis bounds one connect attempt in pg; warmconn's retries stay inside it.
  if (facade.checkoutTimeoutMs !== undefined) {
    rest.connectTimeoutMs ??= facade.checkoutTimeoutMs
    rest.connectBudgetMs ??= facade.checkoutTimeoutMs
  }
  return { url, rest, client, facade }
}

type Hook = (client: never) => unknown
type Verify = (client: never, done: (err?: unknown) => void) => void

/** onConnect (pg 8.x, may be async), then verify (callback style), as pg-pool runs them on a new client. */
function connectHook(onConnect: Hook | undefined, verify: Verify | undefined): Hook | undefined {
  if (!verify) return onConnect
  return async (client) => {
    await onConnect?.(client)
    await new Promise<void>((resolve, reject) => verify(client, (err) => (err ? reject(err) : resolve())))
  }
}

/** A pg option's value under its warmconn name; both given with different values is an error naming both. */
function setMapped(rest: Record<string, unknown>, config: Record<string, unknown>, key: string, to: string, value: unknown): void {
  const own = config[to]
  if (own !== undefined && own !== value) {
    throw new InvalidOptionError(key, `and "${to}" are the same setting, given two values (${describe(config[key])} means ${describe(value)}, "${to}" says ${describe(own)}): give one`)
  }
  rest[to] = value
}

/**
 * The URL from `connectionString`, or built from host, port, user and database as node-postgres
 * reads them (then PGHOST, PGPORT, PGUSER, PGDATABASE, then its defaults). The password stays out
 * of the URL: it is a Client option (a string, or a function returning one per connect).
 */
function connectionUrl(config: Record<string, unknown>): string | undefined {
  const given = CONNECTION.filter((k) => config[k] !== undefined)
  if (config.connectionString !== undefined) {
    if (given.length > 0) throw new InvalidOptionError(given[0]!, 'given with connectionString: node-postgres would use the URL\'s and ignore this; give one of them')
    return config.connectionString as string
  }
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {}
  for (const k of ['host', 'user', 'database'] as const) {
    if (config[k] !== undefined && typeof config[k] !== 'string') throw new InvalidOptionError(k, `expected a string, got ${describe(config[k])}`)
  }
  if (config.port !== undefined && !(typeof config.port === 'number' || (typeof config.port === 'string' && /^\d+$/.test(config.port)))) throw new InvalidOptionError('port', `expected a port number, got ${describe(config.port)}`)
  const host = (config.host as string | undefined) ?? env.PGHOST ?? 'localhost'
  const port = String(config.port ?? env.PGPORT ?? 5432)
  const user = (config.user as string | undefined) ?? env.PGUSER ?? env.USER ?? ''
  const database = (config.database as string | undefined) ?? env.PGDATABASE ?? user
  // A directory is a Unix socket: the URL names localhost and carries the directory as `host`.
  const socketDir = host.startsWith('/')
  const hostPart = socketDir ? 'localhost' : host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
  const query = socketDir ? `?host=${encodeURIComponent(host)}` : ''
  return `postgres://${encodeURIComponent(user)}@${hostPart}:${port}/${encodeURIComponent(database)}${query}`
}

// pg.Client options pg.Pool passes to each Client (beside the connection settings above).
const CLIENT_OPTIONS = new Set([
  'password', 'ssl', 'sslnegotiation', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'keepAlive',
  'keepAliveInitialDelayMillis', 'types', 'options', 'client_encoding', 'binary', 'parseInputDatesAsUTC', 'fallback_application_name',
  'stream', 'rows', 'enableChannelBinding', 'replication', 'pipeline', 'lookup',
])

/**
 * The Client options given at the top level (as pg.Pool takes them) merged with those in the
 * driver's own sub-object (`pg: { ... }`); one given in both places with different values is an error.
 */
export function mergeClientOptions(top: Record<string, unknown>, sub: unknown, subName: string): Record<string, unknown> {
  if (sub === undefined) return top
  if (sub === null || typeof sub !== 'object' || Array.isArray(sub)) throw new InvalidOptionError(subName, 'expected an object of Client options')
  const out = { ...(sub as Record<string, unknown>) }
  for (const [key, value] of Object.entries(top)) {
    if (out[key] !== undefined && out[key] !== value) throw new InvalidOptionError(key, `given both here and as "${subName}.${key}", with different values: give one`)
    out[key] = value
  }
  return out
}
