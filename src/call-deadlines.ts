/**
 * The deadlines of the calls and leases holding a connection now (callTimeoutMs). The hot path
 * arms no timer of its own: one timer, due at the earliest deadline, stays armed while calls keep
 * starting before it (deadlines only move later), and when it fires it hands what is late to the
 * holder by timestamps and re-arms. Unref'd: a call in flight keeps its own socket, which holds
 * the process open.
 * @module
 */
import { deadlineTimer, type DeadlineTimer } from './timer.js'

/** What a deadline is kept on: a slot, while a call holds it. */
export interface Timed {
  /** When the call is cut off (epoch ms), its bound, and who to tell. */
  callDeadlineAt: number
  callTimeoutMs: number
  cutOff: (() => void) | undefined
}

export class CallDeadlines<S extends Timed> {
  /** Slots a call holds now (a slot dropped by close() keeps its deadline). */
  readonly #calling = new Set<S>()
  readonly #timer: DeadlineTimer

  /** `onLate` is given each slot whose call is past its deadline, once; it ends the call. */
  constructor(onLate: (slot: S) => void) {
    this.#timer = deadlineTimer(() => this.#cutOffLate(onLate))
  }

  /** A call or lease starts holding `slot`; `cutOff` is told if it is still holding it at the deadline. */
  start(slot: S, timeoutMs: number, cutOff: (() => void) | undefined): void {
    slot.callDeadlineAt = Date.now() + timeoutMs
    slot.callTimeoutMs = timeoutMs
    slot.cutOff = cutOff
    this.#calling.add(slot)
    this.#timer.armBy(slot.callDeadlineAt)
  }

  /** The call or lease on `slot` has ended: its deadline no longer applies. */
  end(slot: S): void {
    slot.cutOff = undefined
    this.#calling.delete(slot)
  }

  has(slot: S): boolean {
    return this.#calling.has(slot)
  }

  get size(): number {
    return this.#calling.size
  }

  /**
   * Stops the timer (it stays armed between calls otherwise): for when nothing can be late, so a
   * pending timer does not keep a Durable Object from being evicted.
   */
  cancel(): void {
    this.#timer.cancel()
  }

  #cutOffLate(onLate: (slot: S) => void): void {
    const now = Date.now()
    let next: number | undefined
    for (const slot of this.#calling) {
      if (slot.callDeadlineAt > now) next = Math.min(next ?? Infinity, slot.callDeadlineAt)
      else onLate(slot)
    }
    if (next !== undefined) this.#timer.armBy(next)
  }
}
