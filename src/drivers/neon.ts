/**
 * @neondatabase/serverless (its WebSocket `Client`) under the warmconn lifecycle. Callers get the
 * real neon `Client`, with the node-postgres API: `client.query(text, params)`.
 *
 * Every neon setting is applied to the one Client it is for (`client.neonConfig`), never to the
 * global `neonConfig`, so two holders with different proxies or WebSocket classes cannot leak into
 * each other. Nothing here is Node-only: in workerd the global WebSocket is used.
 * @module
 */
import { Client, Pool, neonConfig, type NeonConfigGlobalAndClient, type PoolConfig, type QueryConfig, type QueryResult, type QueryResultRow } from '@neondatabase/serverless'
import type { Classified, Driver, DriverConnection, OpenOptions } from '../driver.js'
import { errorCode } from '../classify.js'
import { InvalidOptionError } from '../errors.js'
import { Holder } from '../holder.js'
import type { HolderOptions } from '../options.js'
import { POOL_MAX_CONNECTIONS, poolOptions, sharedPool, type WarmPoolOptions } from '../pool.js'
import { sharedHolder, stableKey } from '../registry.js'
import { parseConnectionUrl, safeDecode, secretsOf } from '../url.js'
import { classifyClientError, openClient, startupOptions, type RefSocket, type Target } from './pg-client.js'
import { looksLikePooler } from '../pooler.js'
import { checkPassword, PasswordSource, type PasswordFunction } from '../password.js'
import { secretList } from '../secret-list.js'

/** The settings neon accepts per Client: wsProxy, webSocketConstructor, useSecureWebSocket... */
export type NeonConfigOverrides = Partial<NeonConfigGlobalAndClient>

export interface WarmNeonOptions extends HolderOptions {
  /** Applied to each Client this holder opens; the global `neonConfig` supplies the rest. */
  neon?: NeonConfigOverrides
  /**
   * The password, when it is not in the URL: a function is asked once for each new connection
   * (an IAM token, a rotating secret; see password.ts), a string is used as is.
   */
  password?: string | PasswordFunction
}

/** What neonDriver takes besides the neonConfig settings. */
export interface NeonClientOptions {
  password?: string | PasswordFunction
}

export interface WarmNeonPoolOptions extends WarmPoolOptions {
  neon?: NeonConfigOverrides
  /** As for warmNeon: a password apart from the URL, or a function asked once per new connection. */
  password?: string | PasswordFunction
}

/** What warmPool takes: pg.Pool's config (connection settings, pool options), warmconn's options beside it. */
export type WarmNeonPoolConfig = Omit<PoolConfig, 'Client' | 'log' | 'query_timeout'> & WarmNeonPoolOptions

export { type PoolQuery, type PooledClient, type WarmPoolOptions } from '../pool.js'

/** warmPool's pool: a neon Pool to every library that takes one, on the holder's lifecycle. */
export type WarmNeonPool = Pool & {
  /** The holder behind the pool: `stats()`, and warmconn's events with `on(...)`. */
  readonly holder: Holder<Client>
  /** A query config may mark itself safe to run twice (see WarmPoolOptions.idempotent). */
  query<R extends QueryResultRow = any>(config: QueryConfig & { idempotent?: boolean }, values?: unknown[]): Promise<QueryResult<R>>
}

const PER_CLIENT = new Set<string>([
  'webSocketConstructor', 'wsProxy', 'useSecureWebSocket', 'forceDisablePgSSL', 'coalesceWrites',
  'pipelineConnect', 'subtls', 'rootCerts', 'pipelineTLS', 'disableSNI', 'disableWarningInBrowsers',
] satisfies Array<keyof NeonConfigGlobalAndClient>)

// Our own codes, set only by this driver. Nothing came back through the WebSocket: the proxy, or
// its link to the database, failed before PostgreSQL said a word, so a connect is worth retrying.
const UNREACHABLE = 'WS_UNREACHABLE'
// The WebSocket reported an error while in use; what was in flight may or may not have run.
const WS_ERROR = 'WS_ERROR'

/**
 * The shared holder for this URL and these options: created on first call, the same live one on
 * every later call (a warm invocation), a different one for another database, role or setting.
 * @example
 * const db = warmNeon(process.env.DATABASE_URL)
 * export const handler = () => db.run((client) => client.query('select now()'))
 */
export function warmNeon(url: string | undefined, options: WarmNeonOptions = {}): Holder<Client> {
  const { neon = {}, password, ...holderOptions } = options ?? {}
  return neonHolder(neonDriver(url, neon, { password }), url, neon, holderOptions, password === undefined ? {} : { password })
}

/**
 * A pg.Pool-shaped pool over neon's Client, for libraries that take one (see warmconn/pg's
 * warmPool): the shared pool for this URL and these options.
 * @example
 * import { drizzle } from 'drizzle-orm/node-postgres'
 * const db = drizzle(warmPool(process.env.DATABASE_URL, { neon: { webSocketConstructor: WebSocket } }))
 */
export function warmPool(config?: WarmNeonPoolConfig): WarmNeonPool
export function warmPool(url: string | undefined, options?: WarmNeonPoolConfig): WarmNeonPool
export function warmPool(first?: string | WarmNeonPoolConfig, second?: WarmNeonPoolConfig): WarmNeonPool {
  const { url: given, rest, client, facade, idempotent } = poolOptions(first, second)
  const { neon = {}, ...holderOptions } = rest as { neon?: NeonConfigOverrides } & HolderOptions
  // A password function is called per connect (password.ts); a string goes into the URL.
  const { password: fn, ...others } = client
  const password = typeof fn === 'function' ? (fn as PasswordFunction) : undefined
  const url = withPassword(given, password ? others : client)
  const driver = neonDriver(url, neon, { password })
  const withDefaults: HolderOptions = { maxConnections: POOL_MAX_CONNECTIONS, ...holderOptions }
  const holder = neonHolder(driver, url, neon, withDefaults, { api: 'pool', idempotent, facade, ...(password === undefined ? {} : { password }) })
  // The facade implements the Pool's public surface (and is instanceof neon's Pool); see pool.ts.
  return sharedPool(holder, Pool, { idempotent, secrets: driver.secrets, facade }) as unknown as WarmNeonPool
}

/** pg.Pool's Client options that neon's driver here honours: only the password, which goes into the URL. */
function withPassword(url: string | undefined, client: Record<string, unknown>): string | undefined {
  for (const key of Object.keys(client)) {
    if (key !== 'password') throw new InvalidOptionError(key, 'a pg.Client option warmconn/neon does not pass on: put it in the URL (e.g. ?options=-c%20statement_timeout%3D5000), or use warmconn/pg')
  }
  const { password } = client
  if (password === undefined || url === undefined) return url
  if (typeof password !== 'string') throw new InvalidOptionError('password', 'expected a string or a function returning one')
  const parsed = parseConnectionUrl(url)
  if (parsed.password !== '') throw new InvalidOptionError('password', 'the URL has a password already')
  parsed.password = encodeURIComponent(password)
  return parsed.toString()
}

function neonHolder(driver: Driver<Client>, url: string | undefined, neon: NeonConfigOverrides, holderOptions: HolderOptions, api: Record<string, unknown>): Holder<Client> {
  const { hostname, port } = new URL(url!)
  const key = stableKey({ driver: 'neon', url, neon: settingsKey(neon, hostname, Number(port || 5432)), holderOptions, ...api })
  return sharedHolder(key, (forget) => new Holder(driver, holderOptions, { onClose: forget }))
}

/** The driver alone, for building a holder by hand: `new Holder(neonDriver(url, { wsProxy }), options)`. */
export function neonDriver(url: string | undefined, neon: NeonConfigOverrides = {}, client: NeonClientOptions = {}): Driver<Client> {
  const parsed = parseConnectionUrl(url)
  if (neon === null || typeof neon !== 'object') throw new InvalidOptionError('neon', 'expected an object of neonConfig settings')
  for (const key of Object.keys(neon)) {
    if (!PER_CLIENT.has(key)) {
      throw new InvalidOptionError(`neon.${key}`, `not a per-Client neonConfig setting; known ones are ${[...PER_CLIENT].join(', ')}`)
    }
  }
  // Without a WebSocket every connect would fail the same way until connectBudgetMs ran out.
  if (!neon.webSocketConstructor && !neonConfig.webSocketConstructor && typeof globalThis.WebSocket !== 'function') {
    throw new InvalidOptionError('neon.webSocketConstructor', 'this runtime has no global WebSocket (Node < 22): pass one, e.g. WebSocket from "ws"')
  }
  const { password } = client ?? {}
  checkPassword('password', password)
  if (password !== undefined && parsed.password !== '') {
    throw new InvalidOptionError('password', 'the URL has a password already; leave it out of the URL when you pass one apart')
  }
  const user = safeDecode(parsed.username)
  const database = safeDecode(parsed.pathname.slice(1))
  const target = { host: parsed.hostname, port: Number(parsed.port || 5432) }
  const secrets = secretList(secretsOf(parsed, typeof password === 'string' ? password : undefined))
  const source = typeof password === 'function' ? new PasswordSource(password, 'password', secrets) : undefined
  return {
    name: 'neon',
    secrets: secrets.all,
    target: `${user || '(default user)'}@${parsed.hostname}:${parsed.port || 5432}/${database || '(default database)'}`,
    open: (options) => (source ? source.open(options, (o, pw) => openConnection(url!, neon, o, target, pw)) : openConnection(url!, neon, options, target, password as string | undefined)),
    classify: (err, conn): Classified => {
      const seen = classifyClientError(err, { codeOf: wsCode, classify: ownCode }, target)
      return source ? source.classify(err, conn, seen) : seen
    },
  }
}

function openConnection(url: string, neon: NeonConfigOverrides, o: OpenOptions, target: Target, password: string | undefined): Promise<DriverConnection<Client>> {
  const options = startupOptions(undefined, o, target)
  const client = new Client({ connectionString: url, application_name: o.applicationName, ...(options ? { options } : {}) })
  // As in pg.ts: the parsed URL's missing password would win over one in the config.
  if (password !== undefined) client.password = password
  Object.assign(client.neonConfig, neon) // the Client's own socket: per-instance settings
  // Any byte from the server: a failure before it tells "PostgreSQL never answered" (retry) from
  // PostgreSQL refusing, which comes with its own SQLSTATE.
  let heard = false
  client.neonConfig.on('data', () => void (heard = true))
  return openClient(client, o, {
    failedOpen: (err) => (heard || errorCode(err) !== undefined ? err : unreachable(err)),
    pooledHost: looksLikePooler(target.host, target.port),
    // neon's socket is a WebSocket; the `ws` package keeps the TCP socket under it as `_socket`.
    // A platform WebSocket (Node 22+, Deno, Bun, workerd) offers no unref: nothing to do there.
    socket: (c) => (c.connection as unknown as { stream?: { ws?: { _socket?: RefSocket } } }).stream?.ws?._socket,
  })
}

/** Our code for a WebSocket 'error' event, which arrives as an Event, not an Error. */
function wsCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object' || err instanceof Error || (err as { type?: unknown }).type !== 'error') return undefined
  // `ws` puts the socket error (ECONNRESET...) on `.error`; a platform WebSocket gives no detail.
  return errorCode((err as { error?: unknown }).error) ?? WS_ERROR
}

function ownCode(code: string | undefined): Classified | undefined {
  if (code === UNREACHABLE) return { kind: 'transient', code, notSent: true }
  if (code === WS_ERROR) return { kind: 'connection', code, notSent: false }
  return undefined
}

function unreachable(err: unknown): Error {
  const detail = err instanceof Error ? err.message : String((err as { message?: unknown })?.message ?? err)
  return Object.assign(new Error(`no answer from the database through the WebSocket proxy: ${detail}`, { cause: err }), { code: UNREACHABLE })
}

/**
 * The settings as part of a holder key. A wsProxy function counts by the address it gives for this
 * host: two closures with one source text but other ports must not share a connection. Other
 * functions and objects (a WebSocket class, subtls) count by identity, being imported once.
 */
function settingsKey(neon: NeonConfigOverrides, host: string, port: number): Record<string, unknown> {
  const key: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(neon)) {
    key[name] = value !== null && (typeof value === 'object' || typeof value === 'function') ? `ref:${refOf(value)}` : value
  }
  if (typeof neon.wsProxy === 'function') key.wsProxy = neon.wsProxy(host, port)
  return key
}

const refs = new WeakMap<object, number>()
let lastRef = 0
function refOf(value: object): number {
  let ref = refs.get(value)
  if (ref === undefined) refs.set(value, (ref = ++lastRef))
  return ref
}
