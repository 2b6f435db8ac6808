/**
 * Every error warmconn raises, each with a stable `code` that callers can switch on.
 * Messages never carry credentials: anything that may echo user input goes through `redact`.
 * @module
 */

export type WarmconnErrorCode =
  | 'WARMCONN_INVALID_OPTION'
  | 'WARMCONN_AUTH_FAILED'
  | 'WARMCONN_CONFIG_REJECTED'
  | 'WARMCONN_CONNECT_FAILED'
  | 'WARMCONN_ACQUIRE_TIMEOUT'
  | 'WARMCONN_CONNECTION_LOST'
  | 'WARMCONN_CALL_TIMEOUT'
  | 'WARMCONN_CLOSED'
  | 'WARMCONN_CROSS_REQUEST'
  | 'WARMCONN_NOT_SHAREABLE'

/** Base class: `instanceof WarmconnError` catches everything this library throws. */
export class WarmconnError extends Error {
  readonly code: WarmconnErrorCode
  constructor(code: WarmconnErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'WarmconnError'
    this.code = code
  }
}

/**
 * An option, environment variable or call argument is unknown, missing, out of range or
 * contradicts another. Thrown at construction, or by the call before it does any I/O.
 */
export class InvalidOptionError extends WarmconnError {
  /** What is at fault: an option (`staleAfterMs`), a variable (`WARMCONN_IDLE_TIMEOUT_MS`) or an argument (`fn`, `text`). */
  readonly option: string
  constructor(option: string, problem: string) {
    super('WARMCONN_INVALID_OPTION', `Invalid option "${option}": ${problem}`)
    this.name = 'InvalidOptionError'
    this.option = option
  }
}

/** The server refused the credentials (28P01, 28000). Never retried: retrying cannot fix a password. */
export class AuthError extends WarmconnError {
  readonly sqlState: string | undefined
  constructor(message: string, sqlState: string | undefined, options?: ErrorOptions) {
    super('WARMCONN_AUTH_FAILED', message, options)
    this.name = 'AuthError'
    this.sqlState = sqlState
  }
}

/**
 * The connection settings cannot work: the server refused them (no such database 3D000), or the
 * connection never got that far (HostNotFoundError, TlsError). Never retried.
 */
export class ConfigRejectedError extends WarmconnError {
  /** The SQLSTATE, or the driver's code when no server answered (`ENOTFOUND`, a TLS code). */
  readonly sqlState: string | undefined
  constructor(message: string, sqlState: string | undefined, options?: ErrorOptions) {
    super('WARMCONN_CONFIG_REJECTED', message, options)
    this.name = 'ConfigRejectedError'
    this.sqlState = sqlState
  }
}

/** The host name in the connection settings does not resolve (DNS `ENOTFOUND`): no server was reached. Never retried. */
export class HostNotFoundError extends ConfigRejectedError {
  constructor(message: string, sqlState: string | undefined, options?: ErrorOptions) {
    super(message, sqlState, options)
    this.name = 'HostNotFoundError'
  }
}

/** TLS could not be set up: the certificate is not trusted, or the server does not offer TLS. Never retried. */
export class TlsError extends ConfigRejectedError {
  constructor(message: string, sqlState: string | undefined, options?: ErrorOptions) {
    super(message, sqlState, options)
    this.name = 'TlsError'
  }
}

/** Opening a connection failed after the retry budget (transient failures) ran out. */
export class ConnectError extends WarmconnError {
  readonly attempts: number
  /** The driver's code for the last failure: `53300`, `ECONNREFUSED`, `CONNECT_TIMEOUT`... */
  readonly causeCode: string | undefined
  constructor(message: string, attempts: number, causeCode: string | undefined, options?: ErrorOptions) {
    super('WARMCONN_CONNECT_FAILED', message, options)
    this.name = 'ConnectError'
    this.attempts = attempts
    this.causeCode = causeCode
  }
}

/** Every connection stayed busy for `acquireTimeoutMs`. */
export class AcquireTimeoutError extends WarmconnError {
  constructor(timeoutMs: number) {
    super('WARMCONN_ACQUIRE_TIMEOUT', `No connection became free within acquireTimeoutMs (${timeoutMs} ms)`)
    this.name = 'AcquireTimeoutError'
  }
}

/**
 * The connection died while the operation was running and it may or may not have taken effect.
 * warmconn does not replay it (that could write twice) unless the call was marked `idempotent`.
 */
export class ConnectionLostError extends WarmconnError {
  readonly causeCode: string | undefined
  /** Always true: the server may have committed part or all of the work. */
  readonly outcomeUnknown = true
  constructor(message: string, causeCode: string | undefined, options?: ErrorOptions, code: WarmconnErrorCode = 'WARMCONN_CONNECTION_LOST') {
    super(code, message, options)
    this.name = 'ConnectionLostError'
    this.causeCode = causeCode
  }
}

/**
 * The call held its connection longer than its deadline (`callTimeoutMs`, or `timeoutMs` of the
 * call). The connection was destroyed, because a call that hangs on a silent network would
 * otherwise hold it forever. A ConnectionLostError: the work may or may not have taken effect.
 * Like any lost connection it is replayed once only if the call was marked idempotent.
 */
export class CallTimeoutError extends ConnectionLostError {
  readonly timeoutMs: number
  /** `invocation`: cut off at the invocation's deadline (Lambda's timeout), before callTimeoutMs. */
  constructor(timeoutMs: number, target: string, invocation = false) {
    super(
      invocation
        ? `The call to ${target} was still running at the invocation's deadline (the function timeout); its connection was ` +
            `destroyed, so the work may or may not have taken effect. Raise the function timeout, or set statement_timeout ` +
            `to stop slow statements on the server`
        : `The call to ${target} did not finish within ${timeoutMs} ms (callTimeoutMs); its connection was destroyed, ` +
            `so the work may or may not have taken effect. Raise callTimeoutMs (or pass { timeoutMs } to run) for slower ` +
            `statements, and set statement_timeout to stop them on the server too`,
      'WARMCONN_CALL_TIMEOUT',
      undefined,
      'WARMCONN_CALL_TIMEOUT',
    )
    this.name = 'CallTimeoutError'
    this.timeoutMs = timeoutMs
  }
}

/**
 * Cloudflare Workers forbid using a socket opened during one request in another. Raised before
 * touching such a connection, instead of the runtime's error or a hang.
 */
export class CrossRequestError extends WarmconnError {
  constructor() {
    super(
      'WARMCONN_CROSS_REQUEST',
      'This connection was opened during another Workers request, and Workers forbid sharing I/O between requests. ' +
        'Keep the connection warm in a Durable Object (warmconn/workers: WarmconnDurableObject + warmClient), ' +
        'open one per request (withRequestScope), or use Hyperdrive (hyperdriveScope) instead of a module-scope holder.',
    )
    this.name = 'CrossRequestError'
  }
}

/**
 * A shared call (`holder.shared`) tried a statement that would change the session or open a
 * transaction, on a connection whose statements are pipelined with other callers': refused
 * before it was sent. Nothing of the call's was sent by that statement.
 */
export class NotShareableError extends WarmconnError {
  constructor(what: 'transaction' | 'session' | 'method', name?: string) {
    super(
      'WARMCONN_NOT_SHAREABLE',
      what === 'method'
        ? `${name} holds the connection across statements, which a shared call cannot: use run((sql) => ...) instead`
        : what === 'transaction'
          ? 'A shared call cannot open or end a transaction: its connection runs other callers\' statements at the same time. Use run((sql) => sql.begin(...)) instead'
          : 'A shared call cannot change its session (SET, SET ROLE, set_config(..., false), a session lock, a temp table, LISTEN, PREPARE): ' +
            'other callers\' statements run on the same connection. Use run(...) (the session is reset after it), or SET LOCAL / set_config(..., true) inside run((sql) => sql.begin(...))',
    )
    this.name = 'NotShareableError'
  }
}

/** The holder was closed (shutdown); no new work is accepted. */
export class ClosedError extends WarmconnError {
  constructor() {
    super('WARMCONN_CLOSED', 'This warmconn holder is closed')
    this.name = 'ClosedError'
  }
}

/**
 * Replaces every secret, and the password part of any URL, in `text`.
 * Used on every message that could echo a connection string or a driver's error.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
  // Longest first: a token's signature is also listed on its own, and replacing it first would
  // leave the rest of the token unmatched, and printed.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (secret.length >= 1) out = out.split(secret).join('***')
  }
  return out
}

/**
 * A driver error as safe to keep as `cause`: the original when it holds no secret, otherwise a
 * plain Error with the redacted message and the same `code`.
 */
export function safeCause(err: unknown, secrets: readonly string[]): unknown {
  if (!(err instanceof Error)) return err
  const text = `${err.message}\n${err.stack ?? ''}`
  if (redact(text, secrets) === text) return err
  const clean = new Error(redact(err.message, secrets))
  clean.name = err.name
  const code = (err as { code?: unknown }).code
  if (code !== undefined) Object.assign(clean, { code })
  return clean
}

/**
 * The error a call fails with when its connection was lost under it and it is not replayed:
 * ConnectError when the statement provably never left (`notSent`), ConnectionLostError (outcome
 * unknown) otherwise. A warmconn error is passed on as it is. Redacted with the driver's secrets.
 */
export function lostError(err: unknown, code: string | undefined, notSent: boolean, driver: { target: string; secrets: readonly string[] }): WarmconnError {
  if (err instanceof WarmconnError) return err
  const message = redact(err instanceof Error ? err.message : String(err), driver.secrets)
  const cause = { cause: safeCause(err, driver.secrets) }
  if (notSent) {
    return new ConnectError(`Could not reach ${driver.target} to run the call (nothing was sent): ${message}`, 1, code, cause)
  }
  return new ConnectionLostError(
    `The connection to ${driver.target} was lost during the call; it may or may not have taken effect, ` +
      `so it was not replayed (pass { idempotent: true } to allow a replay): ${message}`,
    code,
    cause,
  )
}
