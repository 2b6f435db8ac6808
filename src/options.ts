/**
 * The defaults table and validation for holder options. Every duration is in milliseconds and
 * its name ends in `Ms`; 0 is a real value (`staleAfterMs: 0` pings before every use), so
 * defaults are applied with `??`, never `||`.
 * @module
 */
import { InvalidOptionError } from './errors.js'
import { nearest } from './nearest.js'
import { SESSION_RESET_MODES, type SessionResetMode } from './session-state.js'

export interface HolderOptions {
  /** A connection idle at least this long is pinged before use. Within it, use costs no extra round trip. */
  staleAfterMs?: number
  /** Bound on that ping; a slower answer counts as a dead connection, which is replaced. */
  pingTimeoutMs?: number
  /** A connection idle this long is closed (by timer, and on next use if the process was frozen). */
  idleTimeoutMs?: number
  /** A connection older than this (minus up to `maxLifetimeJitterMs`) is closed when next released or found. */
  maxLifetimeMs?: number
  /** Random amount taken off each connection's lifetime so a fleet does not reconnect at once. */
  maxLifetimeJitterMs?: number
  /** Bound on one connection attempt (TCP, TLS, authentication). */
  connectTimeoutMs?: number
  /** How many times a transient connect failure (53300, 57P03, refused, reset) is retried. */
  connectRetries?: number
  /** Bound on all attempts and backoff together, so a caller never waits longer than this to connect. */
  connectBudgetMs?: number
  /** First backoff ceiling; each retry doubles it (full jitter: the delay is random below it). */
  connectBackoffBaseMs?: number
  /** Largest backoff ceiling. */
  connectBackoffMaxMs?: number
  /** How long a caller waits for a busy connection before AcquireTimeoutError. */
  acquireTimeoutMs?: number
  /** Most connections this holder opens at once; concurrent callers beyond it wait their turn. */
  maxConnections?: number
  /**
   * Most shared calls (`holder.shared`) pipelined on one connection at once; beyond it they
   * use another connection or wait. Behind a transaction pooler it is 1 whatever is set.
   */
  maxPipelined?: number
  /**
   * Longest a call may hold its connection (from handing it out to `fn` settling). Past it the
   * connection is destroyed and the call fails with CallTimeoutError (replayed once first if
   * idempotent, like any lost connection, so a slow idempotent read may run twice). It bounds a
   * call stuck on a silent network, which otherwise holds the connection until TCP gives up
   * (minutes in Node, never on Workers). Not a query cost limit: the server keeps running the
   * statement, so also set `statement_timeout` for slow queries. Per call: `run(fn, { timeoutMs })`.
   */
  callTimeoutMs?: number
  /** Default bound for `close()` to wait for work in flight. */
  closeTimeoutMs?: number
  /** `application_name` reported to the server, visible in pg_stat_activity. */
  applicationName?: string
  /**
   * The URL points at a transaction pooler (true: PgBouncer, RDS Proxy, Supavisor, Hyperdrive) or
   * at PostgreSQL itself (false). Behind a pooler warmconn pipelines nothing and sends no session
   * settings. Default: detected from known pooler hosts and ports, and from the pooler's own
   * answer to the handshake (a cancel key that is not a process id).
   */
  pooled?: boolean | undefined
  /**
   * On a direct connection, ask the server to end the session once it has been idle a little
   * longer than idleTimeoutMs (idle_session_timeout, sent in the startup packet: no round trip),
   * so a frozen process still gives its connection back. Default true.
   */
  serverIdleClose?: boolean
  /**
   * What is done about session state a call may leave behind for the next caller (a SET, a role,
   * set_config(..., false), a session advisory lock, a temp table, LISTEN, a cursor WITH HOLD,
   * SQL PREPARE): `'changed'` (default) resets the session after a call whose statements may
   * have changed it, read from their text, so a clean call costs nothing; `'always'` resets after
   * every call, for code whose functions change the session where the text does not show it
   * (set_config inside PL/pgSQL); `'never'` leaves the session alone (you manage it). The reset
   * is one statement, sent when the call gives the connection back. Behind a transaction pooler
   * nothing is reset (the session is the pooler's): a change there is warned about.
   */
  sessionReset?: SessionResetMode
  /**
   * An idle connection does not keep the process alive (its socket is unref'd while idle, ref'd
   * again when handed out), so a script ends when its work does instead of at idleTimeoutMs.
   * Default true: an idle connection is only a cache, nothing can use it unless something else
   * keeps the process running (a server, the Lambda runtime); pg.Pool's own default is false.
   */
  allowExitOnIdle?: boolean
}

export type ResolvedOptions = Required<Omit<HolderOptions, 'pooled'>> & { pooled: boolean | undefined }

export const defaultOptions: ResolvedOptions = Object.freeze({
  staleAfterMs: 5_000,
  pingTimeoutMs: 2_000,
  idleTimeoutMs: 60_000,
  maxLifetimeMs: 30 * 60_000,
  maxLifetimeJitterMs: 5 * 60_000,
  connectTimeoutMs: 5_000,
  connectRetries: 10,
  connectBudgetMs: 6_000,
  connectBackoffBaseMs: 100,
  connectBackoffMaxMs: 2_000,
  acquireTimeoutMs: 10_000,
  maxConnections: 1,
  maxPipelined: 100,
  callTimeoutMs: 30_000,
  closeTimeoutMs: 5_000,
  applicationName: 'warmconn',
  pooled: undefined,
  serverIdleClose: true,
  sessionReset: 'changed',
  allowExitOnIdle: true,
})

const durations = [
  'staleAfterMs',
  'pingTimeoutMs',
  'idleTimeoutMs',
  'maxLifetimeMs',
  'maxLifetimeJitterMs',
  'connectTimeoutMs',
  'connectBudgetMs',
  'connectBackoffBaseMs',
  'connectBackoffMaxMs',
  'acquireTimeoutMs',
  'callTimeoutMs',
  'closeTimeoutMs',
] as const
// A timeout of 0 would fail every ping or connect; these need at least 1 ms.
const positive = new Set<string>(['pingTimeoutMs', 'connectTimeoutMs', 'acquireTimeoutMs', 'connectBudgetMs', 'callTimeoutMs'])
// setTimeout clamps anything above 2^31-1 ms to 1 ms, which would turn "very long" into "now".
const MAX_TIMER_MS = 2_147_483_647

/** Validates `input` against the defaults table; names the first bad option in the error. */
export function resolveOptions(input: HolderOptions = {}, allowedExtra: readonly string[] = []): ResolvedOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidOptionError('options', 'expected an object')
  }
  for (const key of Object.keys(input)) {
    if (!(key in defaultOptions) && !allowedExtra.includes(key)) {
      const known = [...Object.keys(defaultOptions), ...allowedExtra]
      throw new InvalidOptionError(key, `unknown option; did you mean ${nearest(key, known)}? Known options are ${known.join(', ')}`)
    }
  }
  const out = { ...defaultOptions }
  for (const key of durations) {
    const value = input[key]
    if (value === undefined) continue
    checkNumber(key, value, positive.has(key) ? 1 : 0)
    out[key] = value
  }
  if (input.connectRetries !== undefined) {
    checkNumber('connectRetries', input.connectRetries, 0)
    if (!Number.isInteger(input.connectRetries)) throw new InvalidOptionError('connectRetries', 'must be a whole number')
    out.connectRetries = input.connectRetries
  }
  if (input.maxConnections !== undefined) {
    checkNumber('maxConnections', input.maxConnections, 1)
    if (!Number.isInteger(input.maxConnections)) throw new InvalidOptionError('maxConnections', 'must be a whole number')
    out.maxConnections = input.maxConnections
  }
  if (input.maxPipelined !== undefined) {
    checkNumber('maxPipelined', input.maxPipelined, 1)
    if (!Number.isInteger(input.maxPipelined)) throw new InvalidOptionError('maxPipelined', 'must be a whole number')
    out.maxPipelined = input.maxPipelined
  }
  if (input.applicationName !== undefined) {
    // PostgreSQL truncates application_name at 63 bytes and only keeps printable ASCII.
    if (typeof input.applicationName !== 'string' || !/^[\x20-\x7e]{1,63}$/.test(input.applicationName)) {
      throw new InvalidOptionError('applicationName', 'must be 1 to 63 printable ASCII characters')
    }
    out.applicationName = input.applicationName
  }
  if (input.serverIdleClose !== undefined) {
    if (typeof input.serverIdleClose !== 'boolean') throw new InvalidOptionError('serverIdleClose', `expected true or false, got ${describe(input.serverIdleClose)}`)
    out.serverIdleClose = input.serverIdleClose
  }
  if (input.sessionReset !== undefined) {
    if (!SESSION_RESET_MODES.includes(input.sessionReset)) {
      throw new InvalidOptionError('sessionReset', `expected ${SESSION_RESET_MODES.map((m) => `'${m}'`).join(', ')}, got ${describe(input.sessionReset)}`)
    }
    out.sessionReset = input.sessionReset
  }
  if (input.allowExitOnIdle !== undefined) {
    if (typeof input.allowExitOnIdle !== 'boolean') throw new InvalidOptionError('allowExitOnIdle', `expected true or false, got ${describe(input.allowExitOnIdle)}`)
    out.allowExitOnIdle = input.allowExitOnIdle
  }
  if (input.pooled !== undefined) {
    if (typeof input.pooled !== 'boolean') throw new InvalidOptionError('pooled', `expected true, false or undefined (detect), got ${describe(input.pooled)}`)
    out.pooled = input.pooled
  }
  // The default jitter scales with a short lifetime (a sixth of it, which is the 5 minutes of the
  // 30-minute default), so maxLifetimeMs: 1000 alone is valid; a jitter given is checked as given.
  if (input.maxLifetimeJitterMs === undefined) out.maxLifetimeJitterMs = Math.min(defaultOptions.maxLifetimeJitterMs, Math.floor(out.maxLifetimeMs / 6))
  if (out.maxLifetimeJitterMs > out.maxLifetimeMs) {
    throw new InvalidOptionError('maxLifetimeJitterMs', 'must not exceed maxLifetimeMs')
  }
  // Refused only when both were given: then the user chose both, and the ping they asked for can
  // never run (a connection is closed at idleTimeoutMs before it is ever idle for staleAfterMs).
  // Setting only idleTimeoutMs below the 5 s staleAfterMs default (connect per call, short idle
  // in tests) is no contradiction: the user asked for no ping.
  if (input.staleAfterMs !== undefined && input.idleTimeoutMs !== undefined && out.staleAfterMs >= out.idleTimeoutMs) {
    throw new InvalidOptionError(
      'staleAfterMs',
      `${out.staleAfterMs} is not below idleTimeoutMs (${out.idleTimeoutMs}), so the ping it asks for can never run: a connection ` +
        `is closed once idle for idleTimeoutMs, before it is ever idle for staleAfterMs. Lower staleAfterMs ` +
        `(WARMCONN_STALE_AFTER_MS) or raise idleTimeoutMs (WARMCONN_IDLE_TIMEOUT_MS); to connect on every call, set only idleTimeoutMs`,
    )
  }
  return out
}

const RUN_OPTIONS = ['idempotent', 'timeoutMs']

/**
 * Validates the options of one call (`run`, a Durable Object query): cheap enough for the hot
 * path, a loop over the keys given, so a typo such as `idempotant` is an error, not a call that
 * silently is not idempotent.
 */
export function checkRunOptions(options: unknown): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError('options', `expected an object such as { idempotent: true, timeoutMs: 5000 }, got ${describe(options)}`)
  }
  for (const key in options) {
    const value = (options as Record<string, unknown>)[key]
    if (key === 'idempotent') {
      if (value !== undefined && typeof value !== 'boolean') throw new InvalidOptionError('idempotent', `expected true or false, got ${describe(value)}`)
    } else if (key === 'timeoutMs') {
      if (value !== undefined) checkTimeout('timeoutMs', value)
    } else {
      throw new InvalidOptionError(key, `unknown call option; did you mean ${nearest(key, RUN_OPTIONS)}? Known call options are ${RUN_OPTIONS.join(', ')}`)
    }
  }
}

/** Validates a duration that must be at least 1 ms (a per-call `timeoutMs`, say), naming it in the error. */
export function checkTimeout(key: string, value: unknown): asserts value is number {
  checkNumber(key, value, 1)
}

function checkNumber(key: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidOptionError(key, `expected a finite number of milliseconds, got ${describe(value)}`)
  }
  if (value < min) throw new InvalidOptionError(key, `must be at least ${min}, got ${value}`)
  if (value > MAX_TIMER_MS) throw new InvalidOptionError(key, `must be at most ${MAX_TIMER_MS} (about 24.8 days)`)
}

/** A value's kind for a message, never its text (a string may be a password pasted in the wrong place). */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `a string`
  if (typeof value === 'number') return String(value)
  if (Array.isArray(value)) return 'an array'
  return value === null ? 'null' : typeof value
}
