/**
 * @neondatabase/serverless (its WebSocket `Client`) under the warmconn lifecycle. Callers get the
 * real neon `Client`, with the node-postgres API: `client.query(text, params)`.
 *
 * Every neon setting is applied to the one Client it is for (`client.neonConfig`), never to the
 * global `neonConfig`, so two holders with different proxies or WebSocket classes cannot leak into
 * each other. Nothing here is Node-only: in workerd the global WebSocket is used.
 * @module
 */
import { Client, neonConfig, type NeonConfigGlobalAndClient } from '@neondatabase/serverless'
import type { Classified, Driver, DriverConnection, OpenOptions } from '../driver.js'
import { classifyError, errorCode } from '../classify.js'
import { InvalidOptionError } from '../errors.js'
import { Holder } from '../holder.js'
import type { HolderOptions } from '../options.js'
import { sharedHolder, stableKey } from '../registry.js'
import { parseConnectionUrl, safeDecode, secretsOf } from '../url.js'
import { withTimeout } from '../timer.js'

/** The settings neon accepts per Client: wsProxy, webSocketConstructor, useSecureWebSocket... */
export type NeonConfigOverrides = Partial<NeonConfigGlobalAndClient>

export interface WarmNeonOptions extends HolderOptions {
  /** Applied to each Client this holder opens; the global `neonConfig` supplies the rest. */
  neon?: NeonConfigOverrides
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
// node-postgres raises these, without a code, once the socket under a Client is gone.
const LOST_MESSAGES = [/^Connection terminated/, /is not queryable$/]

/**
 * The shared holder for this URL and these options: created on first call, the same live one on
 * every later call (a warm invocation), a different one for another database, role or setting.
 * @example
 * const db = warmNeon(process.env.DATABASE_URL)
 * export const handler = () => db.run((client) => client.query('select now()'))
 */
export function warmNeon(url: string | undefined, options: WarmNeonOptions = {}): Holder<Client> {
  const { neon = {}, ...holderOptions } = options ?? {}
  const driver = neonDriver(url, neon)
  const { hostname, port } = new URL(url!)
  const key = stableKey({ driver: 'neon', url, neon: settingsKey(neon, hostname, Number(port || 5432)), holderOptions })
  return sharedHolder(key, (forget) => new Holder(driver, holderOptions, { onClose: forget }))
}

/** The driver alone, for building a holder by hand: `new Holder(neonDriver(url, { wsProxy }), options)`. */
export function neonDriver(url: string | undefined, neon: NeonConfigOverrides = {}): Driver<Client> {
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
  const user = safeDecode(parsed.username)
  const database = safeDecode(parsed.pathname.slice(1))
  return {
    name: 'neon',
    secrets: secretsOf(parsed),
    target: `${user || '(default user)'}@${parsed.hostname}:${parsed.port || 5432}/${database || '(default database)'}`,
    open: (options) => openConnection(url!, neon, options),
    classify: (err): Classified => classifyError(err, codeOf(err), ownCode),
  }
}

async function openConnection(url: string, neon: NeonConfigOverrides, o: OpenOptions): Promise<DriverConnection<Client>> {
  const client = new Client({ connectionString: url, application_name: o.applicationName })
  Object.assign(client.neonConfig, neon) // the Client's own socket: per-instance settings
  let ready = false
  let ending = false
  let reported = false
  // Any byte from the server: a failure before it tells "PostgreSQL never answered" (retry) from
  // PostgreSQL refusing, which comes with its own SQLSTATE.
  let heard = false
  // 'I' idle, 'T' in a transaction, 'E' in a failed one: the server's own word, from the
  // ReadyForQuery that ends every statement, so no SQL text has to be parsed to know it.
  let txStatus = 'I'
  let failOpen: (err: unknown) => void = () => {}
  const broken = (code: string | undefined): void => {
    if (reported || ending) return
    reported = true
    o.onBroken(code)
  }
  // A listener must exist at all times: an 'error' event without one would crash the process.
  // The server's own goodbye (57P05 idle-session timeout, 57P01 terminated) comes first, as an
  // 'error' with its SQLSTATE, before "Connection terminated unexpectedly" and 'end'.
  client.on('error', (err: unknown) => (ready ? broken(codeOf(err)) : failOpen(err)))
  client.on('end', () => (ready ? broken(undefined) : failOpen(new Error('Connection terminated unexpectedly'))))
  client.neonConfig.on('data', () => void (heard = true))
  // The pid PostgreSQL gives for cancel requests, free with the handshake. A proxy that rewrites
  // cancel keys (as pgbouncer does) would make it the proxy's number instead.
  let backendPid: number | undefined
  client.connection.once('backendKeyData', (msg: { processID: number }) => void (backendPid = msg.processID))

  const connecting = client.connect()
  // Added after connect(): with pipelineConnect, connect() removes every readyForQuery listener.
  // With pipelineConnect connect() also resolves before the server has checked the password, so
  // open waits for the first real ReadyForQuery: an auth failure must fail here, not the caller.
  const answered = new Promise<void>((resolve, reject) => {
    failOpen = reject
    client.connection.once('readyForQuery', () => resolve())
  })
  client.connection.on('readyForQuery', (msg: { status: string }) => void (txStatus = msg.status))
  try {
    await withTimeout(Promise.all([connecting, answered]), o.connectTimeoutMs, () =>
      Object.assign(new Error(`connect timed out after ${o.connectTimeoutMs} ms`), { code: 'CONNECT_TIMEOUT' }),
    )
  } catch (err) {
    ending = true
    void client.end().catch(() => {})
    throw heard || errorCode(err) !== undefined ? err : unreachable(err)
  }
  ready = true
  return {
    client,
    backendPid,
    async ping() {
      await client.query('select 1')
    },
    inTransaction: () => txStatus !== 'I',
    async rollback() {
      await client.query('rollback')
    },
    async close(timeoutMs) {
      ending = true
      await withTimeout(client.end(), timeoutMs, () => new Error(`close timed out after ${timeoutMs} ms`))
    },
    destroy() {
      ending = true
      void client.end().catch(() => {})
    },
  }
}

/** The code of a neon/node-postgres error: SQLSTATE, errno, or one of ours for a dead socket. */
function codeOf(err: unknown): string | undefined {
  const code = errorCode(err)
  if (code !== undefined || !err || typeof err !== 'object') return code
  // A WebSocket 'error' event is passed on as is: an Event, not an Error. `ws` puts the socket
  // error (ECONNRESET...) on `.error`; a platform WebSocket gives no detail at all.
  if (!(err instanceof Error) && (err as { type?: unknown }).type === 'error') {
    return errorCode((err as { error?: unknown }).error) ?? WS_ERROR
  }
  const message = err instanceof Error ? err.message : ''
  return LOST_MESSAGES.some((lost) => lost.test(message)) ? 'CONNECTION_CLOSED' : undefined
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



