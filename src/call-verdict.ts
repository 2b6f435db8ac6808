/**
 * What a call's failure means, read from the error and the connection it ran on (holder.ts acts
 * on the verdict): a lazy handshake that failed under the call (a connect attempt, nothing sent),
 * an error of the call's own on a connection that may be fine, or a lost connection; and whether
 * a call that lost its connection, or was cut off, runs once more.
 * @module
 */
import { ambientDeadline } from './call-scope.js'
import type { Classified } from './driver.js'

/** A call still holding its connection at its deadline (call-deadlines.ts cut it off). */
export class CallTimeout extends Error {}

// Errors that, on a connection not yet authenticated, mean the connect failed: nothing was sent.
const CONNECT_FAILURES = new Set(['auth', 'config', 'transient', 'connection'])

/**
 * `connect`: the call's first statement carried the handshake (a lazy connect) and the handshake
 * failed, so nothing was sent and the connect policy decides; `query`: an SQL error or the
 * caller's own exception, on a connection that is fine unless a check under the call says
 * otherwise; `lost`: the connection broke under the call.
 */
export function verdict(seen: Classified, proven: boolean): 'connect' | 'query' | 'lost' {
  if (!proven && CONNECT_FAILURES.has(seen.kind)) return 'connect'
  return seen.kind === 'query' ? 'query' : 'lost'
}

/**
 * A call that lost its connection (or was cut off) runs once more only on its first attempt, if
 * running twice is safe (idempotent, or nothing was sent), the holder is open, and the
 * invocation's own deadline (call-scope.ts) has not passed: a replay there could only time out.
 */
export function mayReplay(attempt: number, safeTwice: boolean, closed: boolean, until = ambientDeadline()): boolean {
  return attempt === 1 && safeTwice && !closed && (until === undefined || until > Date.now())
}

/** Whether a call cut off now was cut off by its invocation's deadline rather than callTimeoutMs. */
export function atInvocationDeadline(until = ambientDeadline()): boolean {
  return until !== undefined && until <= Date.now() + 5
}
