/**
 * Errors as data, so they cross Workers RPC intact whatever the compatibility date: the holder
 * object encodes them, the client rebuilds the same warmconn error classes. Only fields chosen
 * here cross: never a PostgresError's `query` or `parameters`, and every text is redacted with
 * the connection's secrets.
 * @module
 */
import {
  AcquireTimeoutError,
  AuthError,
  CallTimeoutError,
  ClosedError,
  ConfigRejectedError,
  ConnectError,
  ConnectionLostError,
  CrossRequestError,
  NotShareableError,
  HostNotFoundError,
  InvalidOptionError,
  TlsError,
  WarmconnError,
  redact,
  type WarmconnErrorCode,
} from '../errors.js'

export interface WireError {
  /** warmconn's own error, an SQL error from PostgreSQL, or anything else (a caller's bad input). */
  kind: 'warmconn' | 'sql' | 'other'
  name: string
  message: string
  /** A WARMCONN_* code, a SQLSTATE, or a driver code. */
  code?: string | undefined
  /** Fields of warmconn errors. */
  sqlState?: string | undefined
  causeCode?: string | undefined
  attempts?: number | undefined
  timeoutMs?: number | undefined
  option?: string | undefined
  /** Fields of SQL errors. */
  severity?: string | undefined
  detail?: string | undefined
  hint?: string | undefined
  constraint?: string | undefined
}

/**
 * An SQL error raised by PostgreSQL in the holder object (a postgres.js PostgresError there).
 * `code` is the SQLSTATE, e.g. `23505` for a unique violation.
 */
export class SqlError extends Error {
  readonly code: string
  readonly severity: string | undefined
  readonly detail: string | undefined
  readonly hint: string | undefined
  /** The constraint at fault, e.g. the unique index of a 23505. */
  readonly constraint: string | undefined
  constructor(wire: WireError) {
    super(wire.message)
    this.name = 'SqlError'
    this.code = wire.code ?? ''
    this.severity = wire.severity
    this.detail = wire.detail
    this.hint = wire.hint
    this.constraint = wire.constraint
  }
}

export function encodeError(err: unknown, secrets: readonly string[]): WireError {
  const clean = (text: unknown): string | undefined => (typeof text === 'string' ? redact(text, secrets) : undefined)
  const fields = (err ?? {}) as Record<string, unknown>
  if (err instanceof WarmconnError) {
    return {
      kind: 'warmconn',
      name: err.name,
      code: err.code,
      message: clean(err.message) ?? '',
      sqlState: clean(fields.sqlState),
      causeCode: clean(fields.causeCode),
      attempts: typeof fields.attempts === 'number' ? fields.attempts : undefined,
      timeoutMs: typeof fields.timeoutMs === 'number' ? fields.timeoutMs : undefined,
      option: clean(fields.option),
    }
  }
  if (err instanceof Error && err.name === 'PostgresError') {
    return {
      kind: 'sql',
      name: err.name,
      code: clean(fields.code),
      message: clean(err.message) ?? '',
      severity: clean(fields.severity),
      detail: clean(fields.detail),
      hint: clean(fields.hint),
      constraint: clean(fields.constraint_name),
    }
  }
  if (err instanceof Error) return { kind: 'other', name: err.name, code: clean(fields.code), message: clean(err.message) ?? '' }
  return { kind: 'other', name: 'Error', message: clean(String(err)) ?? '' }
}

// Each class rebuilt with its own fields; the message is then replaced by the holder's own words.
const rebuild: Record<WarmconnErrorCode, (wire: WireError) => WarmconnError> = {
  WARMCONN_INVALID_OPTION: (w) => new InvalidOptionError(w.option ?? 'unknown', w.message),
  WARMCONN_AUTH_FAILED: (w) => new AuthError(w.message, w.sqlState),
  WARMCONN_CONFIG_REJECTED: (w) => new ConfigRejectedError(w.message, w.sqlState),
  WARMCONN_CONNECT_FAILED: (w) => new ConnectError(w.message, w.attempts ?? 1, w.causeCode),
  WARMCONN_ACQUIRE_TIMEOUT: () => new AcquireTimeoutError(0),
  WARMCONN_CONNECTION_LOST: (w) => new ConnectionLostError(w.message, w.causeCode),
  WARMCONN_CALL_TIMEOUT: (w) => new CallTimeoutError(w.timeoutMs ?? 0, ''),
  WARMCONN_CLOSED: () => new ClosedError(),
  WARMCONN_CROSS_REQUEST: () => new CrossRequestError(),
  // The message says which kind it was; the class is what callers switch on.
  WARMCONN_NOT_SHAREABLE: (w) => Object.assign(new NotShareableError('session'), { message: w.message }),
}

// Subclasses that share their parent's code, told apart by name.
const rebuildByName: Record<string, (wire: WireError) => WarmconnError> = {
  HostNotFoundError: (w) => new HostNotFoundError(w.message, w.sqlState),
  TlsError: (w) => new TlsError(w.message, w.sqlState),
}

/** The error to throw in the caller: a WarmconnError subclass, an SqlError, or a plain Error with name and code. */
export function decodeError(wire: WireError): Error {
  if (wire.kind === 'sql') return new SqlError(wire)
  if (wire.kind === 'warmconn') {
    const make = (Object.hasOwn(rebuildByName, wire.name) ? rebuildByName[wire.name] : undefined) ?? rebuild[wire.code as WarmconnErrorCode]
    const err = make ? make(wire) : new WarmconnError(wire.code as WarmconnErrorCode, wire.message)
    err.message = wire.message
    return err
  }
  const err = new Error(wire.message)
  err.name = wire.name
  if (wire.code !== undefined) Object.assign(err, { code: wire.code })
  return err
}
