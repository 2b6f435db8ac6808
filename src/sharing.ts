/**
 * Who may share a connection (holder.shared): how deep one connection's pipeline may go, which
 * SHARED connection a new shared call joins, and whether there is a connection to spare for it
 * instead. Reads slots only; the holder (holder.ts) makes the state changes.
 * @module
 */
import { inSameRequest } from './request-context.js'
import type { SharedCall, Slot } from './slot.js'

/** How many calls may share `slot`: `maxPipelined` on a direct connection whose driver can guard a shared client, else 1. */
export function pipelineDepth(slot: Slot<unknown>, maxPipelined: number): number {
  const conn = slot.conn!
  return conn.sharedClient !== undefined && conn.direct === true ? maxPipelined : 1
}

/** An idle connection, or room below maxConnections: a shared call takes that before joining a busy one (the load spreads). */
export function hasSpare(slots: Iterable<Slot<unknown>>, size: number, maxConnections: number): boolean {
  if (size < maxConnections) return true
  for (const slot of slots) if (slot.state === 'IDLE') return true
  return false
}

/**
 * The least busy SHARED connection a shared call may join now: room in its pipeline, proven, not
 * about to retire, checked (or the call may be replayed if the check fails), this request's.
 */
export function joinable<C>(slots: Iterable<Slot<C>>, idempotent: boolean, maxPipelined: number): Slot<C> | undefined {
  let best: Slot<C> | undefined
  const now = Date.now()
  for (const slot of slots) {
    if (slot.state !== 'SHARED' || !slot.proven || slot.broken || slot.sharers >= pipelineDepth(slot, maxPipelined)) continue
    if ((slot.probe !== undefined && !idempotent) || now >= slot.expiresAt || (best && slot.sharers >= best.sharers)) continue
    if (inSameRequest(slot.context)) best = slot
  }
  return best
}

/** One shared call's hold on `slot`, with its own deadline. */
export function sharedCall<C>(slot: Slot<C>): SharedCall<C> {
  return { slot, callDeadlineAt: 0, callTimeoutMs: 0, cutOff: undefined }
}
