/**
 * One connection's place in a holder: its state and the timestamps every decision is made from.
 * The holder (holder.ts) is the only one that moves a slot from state to state.
 * @module
 */
import type { DriverConnection } from './driver.js'
import type { RequestBinding } from './request-context.js'

/**
 * A connection's state. Only IDLE connections may be handed out or closed by the idle sweep,
 * which is why the sweep can never close a connection in use.
 */
export type SlotState =
  /** Being opened; counts against maxConnections so concurrent callers share the connect. */
  | 'CONNECTING'
  /** Open, unused, waiting in the holder. */
  | 'IDLE'
  /** Taken by one caller and being checked (timestamps, then a ping if stale). */
  | 'VALIDATING'
  /** In a caller's hands. */
  | 'ALLOCATED'
  /**
   * In the hands of one or more one-statement calls at once (`holder.shared`), whose statements
   * the driver pipelines; `sharers` counts them. Joined only by other shared calls, and only
   * while no exclusive caller waits; back to idle when the last one ends.
   */
  | 'SHARED'
  /** Gone: closed or destroyed, no longer in the holder. */
  | 'CLOSED'

export interface Slot<C> {
  readonly id: number
  state: SlotState
  conn: DriverConnection<C> | undefined
  openedAt: number
  /** Lifetime deadline, jitter already taken off. */
  expiresAt: number
  lastUsedAt: number
  /** Set by the driver when the connection closed on its own (backend terminated, socket reset). */
  broken: boolean
  /** Shared calls holding the connection now (state SHARED). */
  sharers: number
  /** Bound to the request that opened the connection, on runtimes that bind I/O to requests. */
  context: RequestBinding | undefined
  /** While a call or lease holds the connection: when it is cut off (epoch ms), its bound, and who to tell. */
  callDeadlineAt: number
  callTimeoutMs: number
  cutOff: (() => void) | undefined
  /** A pipelined liveness check in flight under a stale idempotent call: true if it was answered. */
  probe: Promise<boolean> | undefined
  /**
   * The server has authenticated this connection. False only for a lazy connection whose first
   * statement has not yet carried the handshake: a connect failure there is not a call failure.
   */
  proven: boolean
  /** The connect that made this connection (for a lazy one, still in progress). */
  connect: ConnectTry
  /** The driver's own work on the idle connection (DriverConnection.maintain), awaited before it is handed out. */
  maintaining: Promise<void> | undefined
}

/** One caller's connect across attempts: a lazy connect's attempts fail inside the call. */
export interface ConnectTry {
  attempts: number
  startedAt: number
}

/** One shared call on a slot: its own deadline, since several run on the slot at once. */
export interface SharedCall<C> {
  readonly slot: Slot<C>
  callDeadlineAt: number
  callTimeoutMs: number
  cutOff: (() => void) | undefined
}

export interface Waiter<C> {
  /** A shared call: woken with a SHARED slot to join, or with a slot of its own to share out. */
  readonly shared: boolean
  /** Called with a connection handed over directly, or with nothing when capacity freed up. */
  wake(slot: Slot<C> | undefined): void
  fail(err: Error): void
}

/** A slot for a connection about to be opened, counted against maxConnections from now on. */
export function newSlot<C>(id: number, connect: ConnectTry, context: RequestBinding | undefined): Slot<C> {
  return {
    id, state: 'CONNECTING', conn: undefined,
    openedAt: 0, expiresAt: 0, lastUsedAt: 0, broken: false, sharers: 0, context,
    callDeadlineAt: 0, callTimeoutMs: 0, cutOff: undefined, probe: undefined, proven: false, connect, maintaining: undefined,
  }
}
