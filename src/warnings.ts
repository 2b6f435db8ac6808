/**
 * Misconfigurations that only show at run time, read from what already happened (a close, an
 * error): never a round trip or a timer of their own, and nothing on a warm call. Each decides
 * only when the setup is certainly at fault; the holder reports each code once (`warning` event).
 * @module
 */
import type { WarningCode } from './events.js'

export interface Warning {
  code: WarningCode
  message: string
}

export interface IdleClose {
  /** The code the driver gave for the close (`57P05` is PostgreSQL's idle-session timeout), if any. */
  code: string | undefined
  /** How long warmconn had held the connection idle when it learnt of the close. */
  idleMs: number
  idleTimeoutMs: number
  target: string
}

/**
 * The server ended a session warmconn held idle for less than idleTimeoutMs, saying so (57P05).
 * Seen when warmconn's own session setting is off (serverIdleClose: false) and the driver passes
 * the server's goodbye on (node-postgres, neon; postgres.js does not). Behind a pooler the
 * server's timeout closes the pooler's connection, not this one, so nothing is seen there.
 * @example idleSessionWarning({ code: '57P05', idleMs: 1200, idleTimeoutMs: 60000, target })
 */
export function idleSessionWarning(close: IdleClose): Warning | undefined {
  const { code, idleMs, idleTimeoutMs, target } = close
  if (idleMs >= idleTimeoutMs || code !== '57P05') return undefined
  return {
    code: 'WARMCONN_WARN_IDLE_SESSION_TIMEOUT',
    message:
      `The server ended an idle session to ${target} after ${Math.round(idleMs)} ms, before idleTimeoutMs (${idleTimeoutMs} ms): ` +
      `its idle_session_timeout is lower, so the server closes first every time and the next call pays a new connect. ` +
      `Set idleTimeoutMs (WARMCONN_IDLE_TIMEOUT_MS) below the server's idle_session_timeout`,
  }
}

/**
 * A call failed with 26000 (prepared statement does not exist) while the driver names its
 * prepared statements: a transaction pooler ran the statement on a server that never saw it.
 */
export function preparedStatementWarning(target: string): Warning {
  return {
    code: 'WARMCONN_WARN_PREPARED_STATEMENTS',
    message:
      `A call to ${target} failed with 26000 (prepared statement does not exist): a transaction pooler (PgBouncer before 1.21 ` +
      `in transaction mode, RDS Proxy, Supavisor, a Neon -pooler host) runs each transaction on whichever server connection is ` +
      `free, where the driver's named prepared statements do not exist. Pass postgres: { prepare: false }`,
  }
}

/**
 * A call changed session state through a transaction pooler (PgBouncer in transaction mode, RDS
 * Proxy, Supavisor, Hyperdrive): the pooler runs the next transaction, anyone's, on that server
 * session, and warmconn cannot reset a session it does not own.
 */
export function pooledSessionWarning(target: string): Warning {
  return {
    code: 'WARMCONN_WARN_SESSION_STATE_POOLED',
    message:
      `A call to ${target} changed session state (SET, SET ROLE, set_config(..., false), a session advisory lock, a temp ` +
      `table, LISTEN...) through a transaction pooler, which keeps that server session for its other clients: the change ` +
      `can reach someone else's transaction, and warmconn cannot reset it. Scope it to a transaction instead: ` +
      `SET LOCAL, set_config(name, value, true) or pg_advisory_xact_lock inside BEGIN ... COMMIT (sql.begin)`,
  }
}
