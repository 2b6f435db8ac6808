/**
 * What a call must leave behind before its connection serves anyone else: no open transaction
 * (rolled back, never committed) and, on a direct connection, none of its session state
 * (session-state.ts). Decided from what the driver already knows, without a round trip, so a
 * clean call awaits nothing; the holder (holder.ts) runs the cleanup and keeps the books.
 * @module
 */
import type { DriverConnection } from './driver.js'
import type { SessionResetMode } from './session-state.js'
import { withTimeout } from './timer.js'

export interface Cleanup {
  /** `reset`: one statement resets the session (and rolls back first); `rollback`: a transaction only. */
  kind: 'reset' | 'rollback' | undefined
  /**
   * The call changed its session through a transaction pooler, where the session is the pooler's
   * (its other clients see the change) and warmconn resets nothing: the user is to be warned.
   */
  pooledChange: boolean
}

/** What the end of a call on `conn` needs, for the sessionReset mode; `broken` connections are dropped, not cleaned. */
export function cleanupFor(conn: DriverConnection<unknown>, mode: SessionResetMode, broken: boolean): Cleanup {
  if (broken) return { kind: undefined, pooledChange: false }
  const changed = mode !== 'never' && conn.resetSession !== undefined && conn.sessionChanged?.() === true
  const direct = conn.direct === true
  if (conn.resetSession && direct && (changed || mode === 'always')) return { kind: 'reset', pooledChange: false }
  return { kind: conn.inTransaction() ? 'rollback' : undefined, pooledChange: changed && !direct }
}

/** Resets the session, rolling back first whatever the call left open. Rejects if it failed. */
export function resetSession(conn: DriverConnection<unknown>): Promise<void> {
  return conn.resetSession!(conn.inTransaction())
}

/** Rolls back what the call left open, within `timeoutMs`: false if it failed or went unanswered. */
export async function rollBack(conn: DriverConnection<unknown>, timeoutMs: number): Promise<boolean> {
  try {
    await withTimeout(conn.rollback(), timeoutMs, () => new Error(`rollback unanswered after ${timeoutMs} ms`))
    return true
  } catch {
    return false
  }
}
