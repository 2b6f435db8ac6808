/**
 * The holder's counters and gauges, as `stats()` reports them. Counters only go up; the gauges
 * (`open`, `inUse`, `waiting`) are read from the holder's slots and queue when asked.
 * @module
 */

export interface HolderStats {
  /** Connections opened. */
  opened: number
  /** Calls served by an already open connection (with or without a ping). */
  reused: number
  /** Stale connections that answered their ping. */
  revalidated: number
  /** Stale connections that failed or timed out their ping. */
  revalidateFailures: number
  /** Connections opened to replace one that died. */
  reconnected: number
  closedIdle: number
  closedLifetime: number
  /** Connections dropped because they broke. */
  closedBroken: number
  /** Transient connect failures that were retried. */
  connectRetries: number
  /** Connects that failed for good. */
  connectFailures: number
  /** Calls whose session was cleaned before reuse: a transaction left open rolled back, or session state reset. */
  sessionResets: number
  /** Calls run again on a new connection. */
  replays: number
  /** Calls cut off at their deadline (callTimeoutMs), their connection destroyed. */
  callTimeouts: number
  /** Calls started. */
  runs: number
  /** Calls that rejected, whatever the reason. */
  failures: number
  /** Connections open now (including ones being opened). */
  open: number
  /** Connections in a caller's hands now. */
  inUse: number
  /** Callers waiting for a connection now. */
  waiting: number
  /** Connections open, idle and ready to hand out now (not those still being opened). */
  idle: number
  /** Connections in a caller's hands now that are past their lifetime (closed when given back). */
  expired: number
}

export type Counter = Exclude<keyof HolderStats, 'open' | 'inUse' | 'waiting' | 'idle' | 'expired'>

/** Every counter at zero. */
export function newCounts(): Record<Counter, number> {
  return {
    opened: 0, reused: 0, revalidated: 0, revalidateFailures: 0, reconnected: 0, closedIdle: 0,
    closedLifetime: 0, closedBroken: 0, connectRetries: 0, connectFailures: 0, sessionResets: 0,
    replays: 0, callTimeouts: 0, runs: 0, failures: 0,
  }
}
