/**
 * How an idle connection is judged before it is handed out again (holder.ts makes the state
 * changes): from its idle time alone, whether it needs a liveness check and which one; the check
 * itself, bounded by `pingTimeoutMs`; and the wait for idle-time work (a session reset, a driver
 * lookup) that a connection gone silent would never finish.
 * @module
 */
import type { DriverConnection } from './driver.js'
import { withTimeout } from './timer.js'

/** Idle time after which queued socket events are let in before a connection is handed out. */
export const SETTLE_AFTER_IDLE_MS = 50

/**
 * What an idle connection needs before it is used: nothing when it was used less than
 * `staleAfterMs` ago; a probe in the call's own flight when the call may run twice (if the probe
 * goes unanswered the call is replayed) and the connection reaches the server itself; otherwise
 * a ping before anything is sent, since a write could land in a dead socket with an unknown outcome.
 */
export function checkNeeded(conn: DriverConnection<unknown>, idleMs: number, staleAfterMs: number, idempotent: boolean): 'none' | 'probe' | 'ping' {
  if (idleMs < staleAfterMs) return 'none'
  return idempotent && conn.probe !== undefined && conn.direct ? 'probe' : 'ping'
}

export type CheckOutcome = { ok: true; durationMs: number } | { ok: false; error: unknown; timedOut: boolean }

/** A liveness check (ping or probe) bounded by `timeoutMs`. Never rejects. */
export function bounded(check: Promise<void>, timeoutMs: number): Promise<CheckOutcome> {
  const started = Date.now()
  return withTimeout(check, timeoutMs, () => new PingTimeout()).then(
    () => ({ ok: true, durationMs: Date.now() - started }),
    (error: unknown) => ({ ok: false, error, timedOut: error instanceof PingTimeout }),
  )
}

/**
 * Waits out idle-time work on a connection for as long as a ping may take. False when it took
 * longer: on an idle connection that means one gone silent, dropped like one that failed its ping.
 */
export function waitedOut(work: Promise<void>, timeoutMs: number): Promise<boolean> {
  return withTimeout(work.then(() => true), timeoutMs, () => new PingTimeout()).catch(() => false)
}

export class PingTimeout extends Error {}
