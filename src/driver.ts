/**
 * The contract between the holder (lifecycle) and a database driver. A driver knows how to open,
 * ping and close one connection and how to read its errors; it knows nothing about staleness,
 * retries or hygiene, which live in holder.ts.
 * @module
 */

/** What an error means for the lifecycle. */
export type ErrorKind =
  /** Bad credentials: retrying cannot help. */
  | 'auth'
  /** The server rejected the configuration (unknown database, TLS refused): retrying cannot help. */
  | 'config'
  /** A failure worth retrying a connect for: too many connections, starting up, refused, reset. */
  | 'transient'
  /** The connection died or was destroyed while in use. */
  | 'connection'
  /** Anything else: an SQL error or the caller's own exception. The connection is still good. */
  | 'query'

export interface Classified {
  kind: ErrorKind
  /** SQLSTATE, driver code or errno, when there is one. */
  code: string | undefined
  /** True when the error proves the statement never reached the server (safe to replay a write). */
  notSent: boolean
  /** A connect failed for something the driver has now learnt to avoid: try again at once, not counted as a retry. */
  retryNow?: boolean
  /**
   * The error is about an SQL-level prepared statement the caller named (its own `EXECUTE p`,
   * `DEALLOCATE p`), not one of the driver's: a 26000 then says nothing about a pooler.
   */
  sqlLevel?: boolean
  /** For a connect that fails for good: what to check, in place of the usual advice (a refused password from a function). */
  hint?: string
}

export interface OpenOptions {
  connectTimeoutMs: number
  applicationName: string
  /**
   * Called once if the connection closes or breaks on its own, e.g. the backend was terminated;
   * with the server's code for it when the driver is told (`57P05` idle-session timeout).
   */
  onBroken: (code?: string) => void
  /**
   * The caller can run again if the connect fails (a `run`, not a lease): the driver may do no
   * I/O in open() and let the caller's first statement carry the handshake, so a cold call costs
   * no round trip beyond the handshake itself. It then returns a `lazy` connection.
   */
  lazy: boolean
  /** A lazy connection calls this once the server has authenticated it, with the backend pid if known. */
  onReady: (backendPid: number | undefined) => void
  /** The `pooled` option: true or false when the user said, undefined to detect. */
  pooled: boolean | undefined
  /**
   * Ask the server to end the session once idle this long (idle_session_timeout, in the startup
   * packet); undefined: do not. See server-idle.ts for when a driver sends it.
   */
  serverIdleTimeoutMs: number | undefined
}

export interface DriverConnection<C> {
  /** The driver's own client, handed to user code as is. */
  readonly client: C
  /** The server process serving this connection, when the driver learns it while connecting. */
  readonly backendPid?: number | undefined
  /**
   * Opened without I/O: the caller's first statement connects it. Until `onReady`, a connect
   * failure (auth, configuration, refused, reset) surfaces as that statement's error, and the
   * holder treats it as a failed connect attempt, nothing having been sent.
   */
  readonly lazy?: boolean
  /**
   * The connection reaches PostgreSQL itself, not a transaction pooler (see pooler.ts). Only then
   * does the holder use `probe`. Read when needed: a lazy connection learns it from its handshake.
   */
  readonly direct?: boolean
  /**
   * Optional: called when the connection goes back to idle, so the driver can use the idle moment
   * for work of its own (postgres.js: the array-type lookup, once per database). The holder hands
   * the connection out again only after it settles, so no caller's statement is ever pipelined
   * behind it.
   */
  maintain?(): Promise<void> | undefined
  /**
   * Optional: the client as handed to shared calls (`holder.shared`), whose statements the driver
   * pipelines on this one connection with other callers': it refuses, before sending, a statement
   * that would change the session or open a transaction (NotShareableError). Without it, a shared
   * call has the connection to itself.
   */
  readonly sharedClient?: C
  /**
   * Optional: told when the connection starts (true) and stops (false) carrying shared calls, so
   * the driver can switch its client into and out of pipelining (node-postgres's `pipeline`).
   * Called only while nothing is in flight on the connection.
   */
  share?(on: boolean): void
  /**
   * Optional: `idle(true)` when the connection goes idle in the holder, `idle(false)` when it is
   * taken out again (allowExitOnIdle). An idle socket then does not keep the process alive
   * (Node's unref); `close()` and `destroy()` ref it again, so a close that is awaited completes.
   */
  idle?(idle: boolean): void
  /** One cheap round trip. The holder bounds it with `pingTimeoutMs`. */
  ping(): Promise<void>
  /**
   * Optional: a liveness check pipelined ahead of whatever the caller sends next on this
   * connection, so both go out in one flight. Resolves when the server's answer to the check
   * arrives, which the server sends (and flushes) before it reads the caller's statements. The
   * holder uses it for a stale idempotent call instead of `ping()`, saving the round trip; it
   * bounds it with `pingTimeoutMs`, and if it fails or stays silent destroys the connection
   * (which fails the caller's statements) and replays the call on a new one.
   */
  probe?(): Promise<void>
  /** Best knowledge, without a round trip, of whether a transaction was left open. */
  inTransaction(): boolean
  /**
   * Optional: whether anything sent since the last reset may have left session state behind (a
   * SET, a role, set_config, a lock, a temp table, LISTEN...), read from the statements' text
   * (session-state.ts) and from the server's ParameterStatus reports. Without it the holder can
   * only roll back.
   */
  sessionChanged?(): boolean
  /**
   * Optional: clears the session with RESET_SESSION_SQL (after a ROLLBACK when `rollbackFirst`),
   * one statement, and forgets what was seen. Never commits; keeps the driver's own prepared
   * statements and the startup settings.
   */
  resetSession?(rollbackFirst: boolean): Promise<void>
  /** Ends any open or aborted transaction with ROLLBACK. Never commits. */
  rollback(): Promise<void>
  /** Graceful close: lets queued work finish for up to `timeoutMs`, then drops the socket. */
  close(timeoutMs: number): Promise<void>
  /** Drops the socket now; used for a connection that is dead or cannot be trusted. */
  destroy(): void
}

export interface Driver<C> {
  /** Short name for messages: `postgres`, `neon`. */
  readonly name: string
  /**
   * Strings that must never be printed: passwords. Read it each time output is built, never
   * copy it: a driver whose password comes from a function appends each one it is given.
   */
  readonly secrets: readonly string[]
  /** The target without credentials, e.g. `app@db.example.com:5432/shop`, for messages. */
  readonly target: string
  /**
   * True when the driver names prepared statements on its own (postgres.js with `prepare` on):
   * a 26000 then means a transaction pooler is in between, and the holder warns once.
   */
  readonly namedStatements?: boolean
  open(options: OpenOptions): Promise<DriverConnection<C>>
  /**
   * What `err` means for the lifecycle. `conn`, when given, is the connection it came from (a
   * lazy connection whose first statement carried a failed handshake), so a driver can tell
   * which connect it was.
   */
  classify(err: unknown, conn?: DriverConnection<C>): Classified
}
