/**
 * The holder's events, one per lifecycle transition, named verb + outcome. Payloads carry ids,
 * codes and durations only: never a connection string, a password or a driver error object.
 * @module
 */

/**
 * A setup that cannot do what was meant, seen only at run time:
 * - `WARMCONN_WARN_IDLE_SESSION_TIMEOUT`: the server ended a session warmconn had idle for less
 *   than idleTimeoutMs (its idle_session_timeout is lower), so the server closes first, every time.
 * - `WARMCONN_WARN_PREPARED_STATEMENTS`: a call failed with 26000 (prepared statement does not
 *   exist) while the driver names prepared statements: a transaction pooler is in between.
 * - `WARMCONN_WARN_SESSION_STATE_POOLED`: a call changed session state (SET, set_config(..., false),
 *   a session lock...) through a transaction pooler, where it reaches the pooler's other clients.
 */
export type WarningCode = 'WARMCONN_WARN_IDLE_SESSION_TIMEOUT' | 'WARMCONN_WARN_PREPARED_STATEMENTS' | 'WARMCONN_WARN_SESSION_STATE_POOLED'

export interface HolderEvents {
  /** A connection was opened; `replaced` when it takes the place of one that died. */
  connectSuccess: { connectionId: number; backendPid: number | undefined; durationMs: number; attempts: number; replaced: boolean }
  /** A transient connect failure; another attempt follows after `delayMs`. */
  connectRetry: { attempt: number; delayMs: number; code: string | undefined }
  /** Connecting failed for good (auth/config error, or retries exhausted). */
  connectFail: { attempts: number; code: string | undefined; kind: string }
  /**
   * A call or lease got its connection, `waitMs` (fractional) after asking: a connect, a ping or a
   * wait in the queue included. Its clock is read only while someone listens.
   */
  acquire: { connectionId: number; waitMs: number }
  /** A caller waited acquireTimeoutMs in the queue for a connection and failed (AcquireTimeoutError). */
  acquireTimeout: { timeoutMs: number }
  /** A connection was handed out without any check beyond timestamps: zero extra round trips. */
  reuse: { connectionId: number; idleMs: number }
  /** A stale connection answered its ping and was handed out. */
  revalidateSuccess: { connectionId: number; idleMs: number; durationMs: number }
  /** A stale connection failed or timed out its ping and was destroyed. */
  revalidateFail: { connectionId: number; idleMs: number; code: string | undefined; timedOut: boolean }
  /** A connection was closed for idling past idleTimeoutMs. */
  closeIdle: { connectionId: number; idleMs: number }
  /** A connection was closed at the end of its lifetime. */
  closeLifetime: { connectionId: number; ageMs: number }
  /** A connection was dropped because it broke (closed by the server, reset, failed mid-use). */
  closeBroken: { connectionId: number; code: string | undefined }
  /**
   * A call's session was cleaned before the connection was used again: `rollback`, a transaction
   * it left open or aborted was rolled back; `session`, session state it may have changed was
   * reset (sessionReset option). `ok` false: it failed and the connection was dropped.
   */
  sessionReset: { connectionId: number; ok: boolean; kind: 'rollback' | 'session' }
  /** A call is being run again on a new connection (idempotent, or provably never sent). */
  replay: { code: string | undefined; idempotent: boolean }
  /**
   * A call or lease gave its connection back: `kept` when it went back to idle (or to a waiting
   * caller), not when it was retired or destroyed.
   */
  release: { connectionId: number; kept: boolean }
  /** A call held its connection past its deadline; the connection was destroyed, the call failed. */
  callTimeout: { connectionId: number; timeoutMs: number }
  /** The holder was closed. */
  close: { connections: number; destroyed: number }
  /**
   * A misconfiguration seen at run time (see WarningCode), at most once per holder per code. With
   * no listener it goes to console.warn instead. The message names the fix, never a secret.
   */
  warning: { code: WarningCode; message: string }
}

export type HolderEventName = keyof HolderEvents
export type Listener<E extends HolderEventName> = (payload: HolderEvents[E]) => void

export class Emitter {
  #listeners = new Map<HolderEventName, Set<(payload: never) => void>>()

  on<E extends HolderEventName>(event: E, listener: Listener<E>): () => void {
    let set = this.#listeners.get(event)
    if (!set) this.#listeners.set(event, (set = new Set()))
    set.add(listener as (payload: never) => void)
    return () => set.delete(listener as (payload: never) => void)
  }

  /** Whether anyone listens: lets the hot path skip building a payload nobody reads. */
  has(event: HolderEventName): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0
  }

  emit<E extends HolderEventName>(event: E, payload: HolderEvents[E]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      // A throwing listener must not break the lifecycle that called it.
      try {
        ;(listener as Listener<E>)(payload)
      } catch {}
    }
  }
}
