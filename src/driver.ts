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
}

export interface OpenOptions {
  connectTimeoutMs: number
  applicationName: string
  /**
   * Called once if the connection closes or breaks on its own, e.g. the backend was terminated;
   * with the server's code for it when the driver is told (`57P05` idle-session timeout).
   */
  onBroken: (code?: string) => void
}

export interface DriverConnection<C> {
  /** The driver's own client, handed to user code as is. */
  readonly client: C
  /** The server process serving this connection, when the driver learns it while connecting. */
  readonly backendPid?: number | undefined
  /**
   * The session's idle_session_timeout in ms (0: off), when the driver reads it while connecting,
   * at no extra round trip. Lets the holder tell an idle-session timeout from other closes when
   * the driver reports no code for them.
   */
  readonly idleSessionTimeoutMs?: number | undefined
  /** One cheap round trip. The holder bounds it with `pingTimeoutMs`. */
  ping(): Promise<void>
  /** Best knowledge, without a round trip, of whether a transaction was left open. */
  inTransaction(): boolean
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
  /** Strings that must never be printed: passwords. */
  readonly secrets: readonly string[]
  /** The target without credentials, e.g. `app@db.example.com:5432/shop`, for messages. */
  readonly target: string
  /**
   * True when the driver names prepared statements on its own (postgres.js with `prepare` on):
   * a 26000 then means a transaction pooler is in between, and the holder warns once.
   */
  readonly namedStatements?: boolean
  open(options: OpenOptions): Promise<DriverConnection<C>>
  classify(err: unknown): Classified
}
