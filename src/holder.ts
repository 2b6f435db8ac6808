/**
 * The lifecycle, in one place. A holder owns up to `maxConnections` connections to one target and
 * hands each caller one connection exclusively for the length of a `run`. Every decision is made
 * from timestamps when a connection is asked for, because a frozen process (Lambda between
 * invocations) fires no timers; timers only close idle connections early in a live process.
 *
 * This file is the state machine (slot states in slot.ts); the policies it consults live beside
 * it: connect-policy.ts (attempts, backoff, budget, typed failure), revalidation.ts (whether and
 * how an idle connection is checked), call-verdict.ts (what a call's failure means, and whether
 * it runs again), call-deadlines.ts (one timer for every call's deadline), sharing.ts (who may
 * join a shared connection), hygiene.ts (rollback and session reset), stats.ts (the counters).
 * @module
 */
import type { Classified, Driver, DriverConnection } from './driver.js'
import { AcquireTimeoutError, CallTimeoutError, ClosedError, CrossRequestError, InvalidOptionError, WarmconnError, lostError, type ConnectError } from './errors.js'
import { CallDeadlines } from './call-deadlines.js'
import { ambientDeadline } from './call-scope.js'
import { atInvocationDeadline, CallTimeout, mayReplay, verdict } from './call-verdict.js'
import { attemptTimeoutMs, openOnce, retryDelay } from './connect-policy.js'
import { Emitter, type HolderEventName, type Listener } from './events.js'
import { cleanupFor, resetSession, rollBack } from './hygiene.js'
import { checkRunOptions, checkTimeout, describe, resolveOptions, type HolderOptions, type ResolvedOptions } from './options.js'
import { bindToRequest, inSameRequest } from './request-context.js'
import { serverIdleTimeoutMs } from './server-idle.js'
import { newSlot, type ConnectTry, type SharedCall, type Slot, type Waiter } from './slot.js'
import { bounded, checkNeeded, SETTLE_AFTER_IDLE_MS, waitedOut } from './revalidation.js'
import { shareable } from './session-state.js'
import { hasSpare, joinable, pipelineDepth, sharedCall } from './sharing.js'
import { newCounts, type HolderStats } from './stats.js'
import { deadlineTimer, settle, sleep, within, type DeadlineTimer } from './timer.js'
import { idleSessionWarning, pooledSessionWarning, preparedStatementWarning, type Warning } from './warnings.js'

export type { HolderStats } from './stats.js'

export interface RunOptions {
  /**
   * The call may safely run twice (a read, an upsert keyed by the caller). If the connection dies
   * under it, it is replayed once on a new connection instead of failing.
   */
  idempotent?: boolean
  /** This call's own bound on holding the connection, instead of `callTimeoutMs`. */
  timeoutMs?: number
}

export interface LeaseOptions {
  /** How long the lease may hold the connection, instead of `callTimeoutMs`; past it the connection is destroyed. */
  timeoutMs?: number
}

/**
 * A connection checked out of the holder until `release()`, for callers that cannot hand over a
 * function (a pg.Pool-style `connect()`): the same lifecycle as `run`, with the end of the call
 * in the caller's hands. Not replayed: the holder cannot know what the caller sent.
 */
export interface Lease<C> {
  readonly client: C
  /** The holder's id for this connection, as in its events. */
  readonly connectionId: number
  /** The server process behind it, when the driver learnt it while connecting. */
  readonly backendPid: number | undefined
  /**
   * Gives the connection back: a transaction left open or aborted is rolled back first (never
   * committed), a connection that broke is dropped. Calling it again does nothing.
   */
  release(): Promise<void>
  /** Destroys the connection instead of giving it back (pg's `release(err)`). Calling it again does nothing. */
  destroy(): void
}

export interface HolderHooks {
  /** Called once the holder is closed (the registry forgets it). */
  onClose?: () => void
}

export class Holder<C> {
  readonly options: Readonly<ResolvedOptions>
  readonly #driver: Driver<C>
  readonly #slots = new Set<Slot<C>>()
  readonly #waiters: Waiter<C>[] = []
  readonly #events = new Emitter()
  readonly #idleTimer: DeadlineTimer
  /** The deadline of every call holding a connection now (call-deadlines.ts). */
  readonly #calls: CallDeadlines<Slot<C>>
  /** The deadline of every shared call: several may hold one connection (holder.shared). */
  readonly #sharedCalls: CallDeadlines<SharedCall<C>>
  readonly #closing = new Set<Promise<void>>()
  readonly #hooks: HolderHooks
  readonly #counts = newCounts()
  #nextId = 0
  /** Connections lost to failure and not yet replaced: the next opens count as reconnects. */
  #replacementsDue = 0
  #closed = false
  #closeResult: Promise<void> | undefined
  /** Resolvers waiting for a slot to leave (used by close()). */
  #onSlotGone: Array<() => void> = []
  /** Warning codes already reported: each at most once per holder. */
  readonly #warned = new Set<string>()

  constructor(driver: Driver<C>, options: HolderOptions = {}, hooks: HolderHooks = {}) {
    this.options = Object.freeze(resolveOptions(options))
    this.#driver = driver
    this.#hooks = hooks
    this.#idleTimer = deadlineTimer(() => void this.sweep())
    this.#calls = new CallDeadlines((slot) => this.#timeOut(slot))
    this.#sharedCalls = new CallDeadlines((call) => this.#timeOutShared(call))
  }

  /**
   * Runs `fn` with a connection of its own for the duration of the call. The connection is
   * opened lazily, revalidated only if it was idle at least `staleAfterMs`, and any transaction
   * `fn` leaves open is rolled back before the connection is used again.
   * @example const rows = await holder.run((sql) => sql`select * from users where id = ${id}`)
   */
  run<T>(fn: (client: C) => Promise<T> | T, options: RunOptions = {}): Promise<T> {
    return this.#call(fn, options, false, 'run')
  }

  /**
   * Runs `fn`, one or more statements outside any transaction, on a connection it may share with
   * other shared calls at the same moment: the driver pipelines their statements, so many
   * concurrent callers go at the connection's throughput, not one statement per round trip. A
   * statement that would change the session or open a transaction is refused before it is sent
   * (NotShareableError: use `run`). The same lifecycle otherwise (lazy connect, staleness
   * checked once for the calls on a connection, `callTimeoutMs` per call, replay of an
   * idempotent call whose connection died). Behind a transaction pooler nothing is pipelined
   * (`maxPipelined` is 1 there): each shared call has the connection to itself.
   * @example const [user] = await holder.shared((sql) => sql`select * from users where id = ${id}`, { idempotent: true })
   */
  shared<T>(fn: (client: C) => Promise<T> | T, options: RunOptions = {}): Promise<T> {
    return this.#call(fn, options, true, 'shared')
  }

  /**
   * Runs `fn`, which sends the one statement `text`, on the shared path when the text allows it
   * (no transaction, no session change: session-state.ts) and with a connection of its own
   * otherwise, for callers whose SQL is not theirs to choose (an ORM's pool.query, an RPC).
   * @example holder.statement(text, (client) => client.query(text, values), { idempotent })
   */
  statement<T>(text: string, fn: (client: C) => Promise<T> | T, options: RunOptions = {}): Promise<T> {
    return shareable(text) ? this.shared(fn, options) : this.run(fn, options)
  }

  async #call<T>(fn: (client: C) => Promise<T> | T, options: RunOptions, share: boolean, name: string): Promise<T> {
    // Before any I/O: a bad argument must fail as itself, not as a connect to a server.
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', `${name}() expects a function that receives the client, got ${describe(fn)}`)
    checkRunOptions(options)
    const idempotent = options.idempotent === true
    const timeoutMs = options.timeoutMs ?? this.options.callTimeoutMs
    this.#counts.runs++
    // A lazy connect that failed under fn: its attempts and budget go on with the next one.
    let carried: ConnectTry | undefined
    for (let attempt = 1; ; attempt++) {
      // A shared call holds its slot through a record of its own (several share the slot); an
      // exclusive call holds the slot itself, with no allocation on the hot path.
      const call = share ? await this.#takeShared(idempotent, carried) : undefined
      const slot = call ? call.slot : await this.#take(idempotent, true, carried)
      let result: T
      try {
        result = await this.#within(slot, call, fn, timeoutMs)
      } catch (err) {
        if (err instanceof CallTimeout) {
          // Already destroyed (#timeOut). Treated as a lost connection: replayed once only if
          // idempotent, because the work may have run, or may still be running, on the server.
          if (mayReplay(attempt, idempotent, this.#closed)) {
            this.#replaying('WARMCONN_CALL_TIMEOUT', true)
            continue
          }
          this.#counts.failures++
          throw new CallTimeoutError(timeoutMs, this.#driver.target, atInvocationDeadline())
        }
        const seen = this.#classify(err, slot.conn)
        const reading = verdict(seen, slot.proven)
        if (reading === 'connect') {
          // fn runs again once a connection is open; that is not the call's one replay. (Nobody
          // joins a shared connection before it is proven, so fn was alone on it.)
          this.#end(slot, call)
          this.#discard(slot)
          await this.#backOff(err, seen, slot.connect)
          carried = slot.connect
          attempt--
          continue
        }
        // A pipelined liveness check that went unanswered destroyed the connection under fn, so
        // fn's error, whatever it says, is that of a lost connection.
        if (reading === 'query' && (slot.probe === undefined ? this.#intact(slot) : await this.#probeAnswered(slot))) {
          // The connection is fine, the session may not be.
          await this.#back(slot, call)
          this.#counts.failures++
          throw err
        }
        this.#lose(slot, call, seen.code)
        if (mayReplay(attempt, idempotent || seen.notSent, this.#closed)) {
          this.#replaying(seen.code, idempotent)
          continue
        }
        this.#counts.failures++
        throw lostError(err, seen.code, seen.notSent, this.#driver)
      }
      // fn's result stands even if a pipelined check failed (fn then never used the connection).
      // A warm call awaits nothing here: no probe to settle, no transaction to roll back.
      if (slot.probe === undefined ? this.#intact(slot) : await this.#probeAnswered(slot)) {
        const back = this.#back(slot, call)
        if (back) await back
      } else {
        // Broken under the call (already dropped if a pipelined check failed): never reused.
        this.#lose(slot, call, undefined)
      }
      return result
    }
  }

  /**
   * Checks a connection out until the lease is released, on the same lifecycle as `run` (lazy
   * connect, timestamps, stale ping, hygiene on release, deadline). Prefer `run`: only it can
   * replay a call whose connection died.
   * @example
   * const lease = await holder.lease()
   * try { await lease.client.query('begin'); ... } finally { await lease.release() }
   */
  async lease(options: LeaseOptions = {}): Promise<Lease<C>> {
    const timeoutMs = this.#timeoutOf(options)
    this.#counts.runs++
    const slot = await this.#take(false, false, undefined)
    // The lease's connection is destroyed at its deadline; its client's pending queries then fail.
    this.#calls.start(slot, timeoutMs, undefined)
    let done = false
    const conn = slot.conn!
    return {
      client: conn.client,
      connectionId: slot.id,
      backendPid: conn.backendPid,
      release: async () => {
        if (done) return
        done = true
        // Not in a call any more: cut off at its deadline, already destroyed.
        if (this.#calls.has(slot)) await this.#giveBack(slot)
      },
      destroy: () => {
        if (done) return
        done = true
        if (!this.#calls.has(slot)) return
        this.#calls.end(slot)
        this.#drop(slot, 'WARMCONN_LEASE_DESTROYED')
        this.#callEnded(slot)
      },
    }
  }

  /** Counters since creation and gauges now. Contains no connection string and no password. */
  stats(): HolderStats {
    let inUse = 0
    let idle = 0
    let expired = 0
    const now = Date.now()
    for (const slot of this.#slots) {
      if (slot.state === 'ALLOCATED' || slot.state === 'VALIDATING' || slot.state === 'SHARED') {
        inUse++
        if (slot.expiresAt > 0 && now >= slot.expiresAt) expired++
      } else if (slot.state === 'IDLE') idle++
    }
    return { ...this.#counts, open: this.#slots.size, inUse, waiting: this.#waiters.length, idle, expired }
  }

  /** Where it connects, without credentials (`user@host:port/database`), as in its error messages. */
  get target(): string {
    return this.#driver.target
  }

  /** Subscribes to a lifecycle event; returns the function that unsubscribes. */
  on<E extends HolderEventName>(event: E, listener: Listener<E>): () => void {
    return this.#events.on(event, listener)
  }

  /**
   * Closes idle connections past their idle or lifetime deadline, and resolves once every close
   * in progress has finished (also those the idle timer or a release started). Runs on the idle
   * timer; call it from a Durable Object alarm, where timers do not outlive the request that set
   * them, or to wait until the connections closed so far are really gone (warmconn/vercel).
   */
  async sweep(now = Date.now()): Promise<void> {
    for (const slot of [...this.#slots]) {
      if (slot.state !== 'IDLE') continue
      const idleMs = now - slot.lastUsedAt
      if (idleMs >= this.options.idleTimeoutMs) void this.#retireIdle(slot, idleMs)
      else if (now >= slot.expiresAt) void this.#retireLifetime(slot, now)
    }
    await Promise.all(this.#closing)
    this.#armIdleTimer()
  }

  /** When the next idle or lifetime deadline falls (epoch ms), or undefined if nothing is idle. */
  nextDeadline(): number | undefined {
    let next: number | undefined
    for (const slot of this.#slots) {
      if (slot.state !== 'IDLE') continue
      const due = Math.min(slot.lastUsedAt + this.options.idleTimeoutMs, slot.expiresAt)
      next = next === undefined ? due : Math.min(next, due)
    }
    return next
  }

  /**
   * Stops accepting work, waits up to `timeoutMs` for calls in flight, then closes every
   * connection (the server rolls back anything left open; warmconn never commits).
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closeResult ??= this.#shutdown(options.timeoutMs ?? this.options.closeTimeoutMs)
    return this.#closeResult
  }

  get closed(): boolean {
    return this.#closed
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    this.#closed = true
    this.#idleTimer.cancel()
    for (const waiter of this.#waiters.splice(0)) waiter.fail(new ClosedError())
    const deadline = Date.now() + timeoutMs
    let destroyed = 0
    const count = this.#slots.size
    for (const slot of [...this.#slots]) if (slot.state === 'IDLE') this.#retire(slot, deadline - Date.now())
    // Calls in flight retire their connection when they release it (see #release).
    while (this.#slots.size > 0 && Date.now() < deadline) {
      await within(new Promise<void>((r) => this.#onSlotGone.push(r)), Math.max(0, deadline - Date.now()))
    }
    for (const slot of [...this.#slots]) {
      destroyed++
      this.#remove(slot)
      slot.conn?.destroy()
    }
    await within(Promise.all(this.#closing), Math.max(0, deadline - Date.now()))
    this.#events.emit('close', { connections: count, destroyed })
    this.#hooks.onClose?.()
  }

  /** #acquire for a call or lease that has started: not getting a connection is its failure. */
  async #take(idempotent: boolean, lazyOk: boolean, carried: ConnectTry | undefined, shared = false): Promise<Slot<C>> {
    // Read only for a listener (warmconn/otel's wait_time): without one, no extra clock read.
    const since = this.#events.has('acquire') ? performance.now() : -1
    try {
      const slot = await this.#acquire(idempotent, lazyOk, carried, shared)
      if (since >= 0) this.#events.emit('acquire', { connectionId: slot.id, waitMs: performance.now() - since })
      return slot
    } catch (err) {
      this.#counts.failures++
      throw err
    }
  }

  /**
   * `idempotent`: a stale connection may be checked by a pipelined probe instead of a ping first.
   * `lazyOk`: the caller can run again if a connect fails under it (run, not lease), so a new
   * connection may be lazy; `carried`, the attempts of a lazy connect that already failed under it.
   */
  async #acquire(idempotent: boolean, lazyOk: boolean, carried: ConnectTry | undefined, shared: boolean): Promise<Slot<C>> {
    // Fixed at the first wait, so a caller handed a connection at once reads no extra clock.
    let deadline: number | undefined
    for (;;) {
      if (this.#closed) throw new ClosedError()
      const idle = this.#takeIdle()
      if (idle) {
        if (!idle.proven) {
          // Never connected (its call sent nothing): no socket to check, nothing to go stale. A
          // lease cannot carry a lazy handshake, so it gets a connection opened for it instead.
          if (lazyOk) return this.#handOut(idle, 0)
          this.#discard(idle)
          continue
        }
        const idleMs = this.#checkTimestamps(idle)
        if (idleMs === undefined) continue
        if (idle.maintaining && !(await this.#maintained(idle))) continue
        // Used a moment ago: handed out with no await and no round trip (the hot path).
        if (idleMs < SETTLE_AFTER_IDLE_MS && idleMs < this.options.staleAfterMs) return this.#handOut(idle, idleMs)
        if (await this.#revalidate(idle, idleMs, idempotent)) return idle
        continue
      }
      if (this.#slots.size < this.options.maxConnections) return await this.#open(lazyOk, carried)
      deadline ??= Date.now() + this.options.acquireTimeoutMs
      const handed = await this.#wait(deadline, shared)
      if (handed?.state === 'SHARED') {
        // Woken to join a shared connection (#shareOut), its place kept for this caller.
        if (inSameRequest(handed.context)) return handed
        handed.sharers--
        throw new CrossRequestError()
      }
      if (handed) {
        if (!inSameRequest(handed.context)) {
          this.#forget(handed)
          throw new CrossRequestError()
        }
        if (!handed.proven && !lazyOk) {
          this.#discard(handed)
          continue
        }
        return this.#handOut(handed, 0)
      }
    }
  }

  /** The most recently used idle connection: keeps the fewest connections warm, lets the rest idle out. */
  #takeIdle(): Slot<C> | undefined {
    let best: Slot<C> | undefined
    for (const slot of this.#slots) {
      if (slot.state === 'IDLE' && (!best || slot.lastUsedAt > best.lastUsedAt)) best = slot
    }
    if (best) {
      best.state = 'VALIDATING'
      if (this.options.allowExitOnIdle) best.conn?.idle?.(false)
    }
    return best
  }

  /**
   * The checks that need no I/O, made first: the idle time if `slot` may still be used, or
   * undefined once it was dropped or retired.
   */
  #checkTimestamps(slot: Slot<C>): number | undefined {
    const now = Date.now()
    const idleMs = now - slot.lastUsedAt
    if (slot.broken) return this.#drop(slot, undefined), undefined
    if (!inSameRequest(slot.context)) {
      this.#forget(slot)
      throw new CrossRequestError()
    }
    if (idleMs >= this.options.idleTimeoutMs) return void this.#retireIdle(slot, idleMs), undefined
    if (now >= slot.expiresAt) return void this.#retireLifetime(slot, now), undefined
    return idleMs
  }

  #handOut(slot: Slot<C>, idleMs: number): Slot<C> {
    this.#counts.reused++
    if (this.#events.has('reuse')) this.#events.emit('reuse', { connectionId: slot.id, idleMs })
    slot.state = 'ALLOCATED'
    return slot
  }

  /**
   * After a gap: lets a queued close land, then checks the connection if it was idle past
   * staleAfterMs (revalidation.ts decides how): a probe goes out in the call's own flight, a ping
   * before anything is sent.
   */
  async #revalidate(slot: Slot<C>, idleMs: number, idempotent: boolean): Promise<boolean> {
    // After a real gap (a freeze, a quiet spell) the server's goodbye may be queued unread; let it
    // land first. Back-to-back calls skip this event-loop turn: the hot path stays one round trip.
    if (idleMs >= SETTLE_AFTER_IDLE_MS) await settle()
    if (slot.broken) return this.#drop(slot, undefined), false
    if (this.#closed) return this.#release(slot), false
    const check = checkNeeded(slot.conn!, idleMs, this.options.staleAfterMs, idempotent)
    if (check === 'none') return this.#handOut(slot, idleMs), true
    // The call goes out at once, behind the probe; an unanswered probe destroys the connection
    // and the call is replayed (#call).
    if (check === 'probe') slot.probe = this.#checked(slot, idleMs, slot.conn!.probe!())
    else if (!(await this.#checked(slot, idleMs, slot.conn!.ping()))) return false
    if (slot.broken) return this.#drop(slot, undefined), false
    this.#counts.reused++
    slot.state = 'ALLOCATED'
    return true
  }

  /** A liveness check, bounded by pingTimeoutMs: true when answered in time; otherwise the connection is destroyed. Never rejects. */
  async #checked(slot: Slot<C>, idleMs: number, check: Promise<void>): Promise<boolean> {
    const outcome = await bounded(check, this.options.pingTimeoutMs)
    if (!outcome.ok) return this.#checkFailed(slot, idleMs, outcome.error, outcome.timedOut)
    this.#counts.revalidated++
    this.#events.emit('revalidateSuccess', { connectionId: slot.id, idleMs, durationMs: outcome.durationMs })
    return true
  }

  /** A liveness check failed or went unanswered: counted, reported, the connection destroyed. */
  #checkFailed(slot: Slot<C>, idleMs: number, err: unknown, timedOut: boolean): false {
    const code = timedOut ? 'PING_TIMEOUT' : this.#driver.classify(err).code
    this.#counts.revalidateFailures++
    this.#events.emit('revalidateFail', { connectionId: slot.id, idleMs, code, timedOut })
    this.#drop(slot, code)
    return false
  }

  /**
   * Opens a connection for a caller; `lazyOk` (a run) allows a lazy one, counted as an attempt of
   * that caller's connect until its first statement has carried the handshake (#connected).
   */
  async #open(lazyOk: boolean, carried: ConnectTry | undefined): Promise<Slot<C>> {
    const connect = carried ?? { attempts: 0, startedAt: 0 }
    if (connect.attempts === 0) connect.startedAt = Date.now()
    const slot = newSlot<C>(++this.#nextId, connect, bindToRequest())
    this.#slots.add(slot)
    try {
      const conn = await this.#connect(slot, lazyOk)
      if (this.#closed) {
        conn.destroy()
        throw new ClosedError()
      }
      const now = Date.now()
      const jitter = Math.random() * this.options.maxLifetimeJitterMs
      Object.assign(slot, { conn, state: 'ALLOCATED', openedAt: now, lastUsedAt: now })
      slot.expiresAt = now + this.options.maxLifetimeMs - jitter
      if (!conn.lazy) this.#connected(slot, conn.backendPid)
      return slot
    } catch (err) {
      this.#remove(slot)
      this.#connectFailed(err, connect.attempts)
      throw err
    }
  }

  /** The server authenticated `slot`'s connection: a connect succeeded. */
  #connected(slot: Slot<C>, backendPid: number | undefined): void {
    if (slot.proven) return
    slot.proven = true
    const replaced = this.#replacementsDue > 0
    if (replaced) {
      this.#replacementsDue--
      this.#counts.reconnected++
    }
    this.#counts.opened++
    const { attempts, startedAt } = slot.connect
    this.#events.emit('connectSuccess', { connectionId: slot.id, backendPid, durationMs: Date.now() - startedAt, attempts, replaced })
    // Done: a later connect of the same caller (a replay) starts a budget of its own.
    slot.connect.attempts = 0
    if (slot.state === 'SHARED') this.#shareOut(slot)
  }

  #connectFailed(err: unknown, attempts: number): void {
    this.#counts.connectFailures++
    const code = err instanceof WarmconnError ? ((err as ConnectError).causeCode ?? err.code) : undefined
    this.#events.emit('connectFail', { attempts, code, kind: err instanceof WarmconnError ? err.code : 'unknown' })
    // Callers queued behind this connect share its outcome instead of each retrying in turn.
    if (this.#slots.size === 0) for (const waiter of this.#waiters.splice(0)) waiter.fail(err as Error)
  }

  /** Opens one connection, retrying transient failures with full-jitter backoff inside the budget. */
  async #connect(slot: Slot<C>, lazy: boolean): Promise<DriverConnection<C>> {
    const o = this.options
    for (;;) {
      slot.connect.attempts++
      try {
        return await openOnce(this.#driver, {
          connectTimeoutMs: attemptTimeoutMs(o, slot.connect),
          applicationName: o.applicationName,
          onBroken: (code) => this.#onBroken(slot, code),
          lazy,
          onReady: (backendPid) => this.#connected(slot, backendPid),
          pooled: o.pooled,
          serverIdleTimeoutMs: o.serverIdleClose && o.pooled !== true ? serverIdleTimeoutMs(o.idleTimeoutMs) : undefined,
        })
      } catch (err) {
        await sleep(this.#retryDelay(err, this.#driver.classify(err), slot.connect))
      }
    }
  }

  /** A lazy connect failed under a call: waits out the policy's backoff, or throws its final error. */
  async #backOff(err: unknown, seen: Classified, connect: ConnectTry): Promise<void> {
    let delayMs: number
    try {
      delayMs = this.#retryDelay(err, seen, connect)
    } catch (final) {
      this.#connectFailed(final, connect.attempts)
      this.#counts.failures++
      throw final
    }
    await sleep(delayMs)
  }

  #replaying(code: string | undefined, idempotent: boolean): void {
    this.#counts.replays++
    this.#events.emit('replay', { code, idempotent })
  }

  /** The policy's verdict on a failed attempt (connect-policy.ts): throws the final error, or counts a retry and returns its backoff. */
  #retryDelay(err: unknown, seen: Classified, connect: ConnectTry): number {
    const { delayMs, counted } = retryDelay(this.options, this.#driver, err, seen, connect, this.#closed)
    if (!counted) return delayMs
    this.#counts.connectRetries++
    this.#events.emit('connectRetry', { attempt: connect.attempts, delayMs: Math.round(delayMs), code: seen.code })
    return delayMs
  }

  #onBroken(slot: Slot<C>, code: string | undefined): void {
    slot.broken = true
    // Closed while warmconn held it idle: the one moment an idle_session_timeout below
    // idleTimeoutMs can be seen, for free (warnings.ts).
    if ((slot.state === 'IDLE' || slot.state === 'VALIDATING') && slot.conn) {
      this.#warn(idleSessionWarning({
        code,
        idleMs: Date.now() - slot.lastUsedAt,
        idleTimeoutMs: this.options.idleTimeoutMs,
        target: this.#driver.target,
      }))
    }
    // An idle connection that the server closed is dropped at once, freeing its place.
    if (slot.state === 'IDLE') this.#drop(slot, code)
  }

  /** The driver's reading of an error a call ended with, noting once what it reveals about the setup. */
  #classify(err: unknown, conn: DriverConnection<C> | undefined): Classified {
    // The connection tells the driver which connect a failed lazy handshake belonged to.
    const seen = this.#driver.classify(err, conn)
    if (seen.code === '26000' && this.#driver.namedStatements && !seen.sqlLevel) this.#warn(preparedStatementWarning(this.#driver.target))
    return seen
  }

  /** Reports a warning once per holder per code: as the `warning` event, or console.warn when nobody listens. */
  #warn(warning: Warning | undefined): void {
    if (!warning || this.#warned.has(warning.code)) return
    this.#warned.add(warning.code)
    if (this.#events.has('warning')) this.#events.emit('warning', warning)
    else console.warn(`warmconn: ${warning.message} [${warning.code}]`)
  }

  /** Whether the connection under a call that just ended is still worth keeping: not broken, not dropped under the call. */
  #intact(slot: Slot<C>): boolean {
    return !slot.broken && slot.state !== 'CLOSED'
  }

  /** #intact, once the pipelined probe under the call has settled (unanswered, it dropped the connection). */
  async #probeAnswered(slot: Slot<C>): Promise<boolean> {
    const answered = await slot.probe
    slot.probe = undefined
    return answered === true && this.#intact(slot)
  }

  /**
   * The end of a call or lease on a good connection: roll back what was left open, then back to
   * idle. A promise only when there is a rollback to wait for, so a clean call awaits nothing.
   */
  #giveBack(slot: Slot<C>): Promise<void> | undefined {
    this.#calls.end(slot)
    const cleanup = cleanupFor(slot.conn!, this.options.sessionReset, slot.broken)
    if (cleanup.pooledChange) this.#warn(pooledSessionWarning(this.#driver.target))
    if (cleanup.kind === 'reset') {
      // Off the caller's path: the connection goes back with the reset in flight, and whoever
      // takes it next waits for the reset (bounded by pingTimeoutMs), like any idle-time work.
      this.#release(slot, this.#resetSession(slot))
      this.#callEnded(slot)
      return undefined
    }
    if (cleanup.kind === 'rollback') {
      return this.#rollBack(slot).then(() => {
        this.#release(slot)
        this.#callEnded(slot)
      })
    }
    this.#release(slot)
    this.#callEnded(slot)
    return undefined
  }

  #callEnded(slot: Slot<C>): void {
    if (this.#events.has('release')) this.#events.emit('release', { connectionId: slot.id, kept: slot.state !== 'CLOSED' })
  }

  /**
   * A session reset in flight (hygiene.ts) for the next caller to await. One that fails or stays
   * unanswered leaves the connection broken: it is dropped, never handed on with someone else's state.
   */
  #resetSession(slot: Slot<C>): Promise<void> {
    return resetSession(slot.conn!).then(
      () => this.#cleaned(slot, 'session', true),
      () => {
        slot.broken = true
        this.#cleaned(slot, 'session', false)
        // Idle with nobody waiting on it yet: its place is freed now (a waiter sees it CLOSED).
        if (slot.state === 'IDLE') this.#drop(slot, 'WARMCONN_RESET_FAILED')
      },
    )
  }

  /** Rolls back what the caller left open; a connection that cannot be cleaned is dropped (on release). */
  async #rollBack(slot: Slot<C>): Promise<void> {
    const ok = await rollBack(slot.conn!, this.options.pingTimeoutMs)
    if (!ok) slot.broken = true
    this.#cleaned(slot, 'rollback', ok)
  }

  #cleaned(slot: Slot<C>, kind: 'rollback' | 'session', ok: boolean): void {
    this.#counts.sessionResets++
    this.#events.emit('sessionReset', { connectionId: slot.id, ok, kind })
  }

  /**
   * Back to idle, or straight to a waiting caller. `reset`: a session reset in flight, which the
   * next caller awaits (#maintained); a waiter is woken to take the connection that way.
   */
  #release(slot: Slot<C>, reset?: Promise<void>): void {
    if (slot.state === 'CLOSED') return
    const now = Date.now()
    if (slot.broken) return this.#drop(slot, undefined)
    // Closed or expired: the connection ends, and its session with it; the reset may still be in
    // flight, and a graceful close waits for it.
    if (this.#closed) return void this.#retire(slot, this.options.closeTimeoutMs)
    if (now >= slot.expiresAt) return void this.#retireLifetime(slot, now)
    slot.lastUsedAt = now
    if (reset) {
      slot.state = 'IDLE'
      if (this.options.allowExitOnIdle) slot.conn!.idle?.(true)
      slot.maintaining = reset
      this.#waiters.shift()?.wake(undefined)
      this.#armIdleTimer()
      return
    }
    const waiter = this.#waiters.shift()
    if (waiter) {
      slot.state = 'ALLOCATED'
      waiter.wake(slot)
      return
    }
    slot.state = 'IDLE'
    // An idle connection alone does not keep the process alive (the driver unrefs its socket).
    if (this.options.allowExitOnIdle) slot.conn!.idle?.(true)
    // Nobody waits for it: the driver may use the moment (e.g. a lookup), which the next caller awaits.
    const work = slot.conn!.maintain?.()
    if (work) slot.maintaining = work.catch(() => {})
    this.#armIdleTimer()
  }

  /**
   * Waits out the driver's work on `slot`, as long as a ping may take: work that outlasts that on
   * an idle connection means a connection gone silent, which is dropped like one that failed its
   * ping. False once the slot was lost (dropped, closed).
   */
  async #maintained(slot: Slot<C>): Promise<boolean> {
    const done = await waitedOut(slot.maintaining!, this.options.pingTimeoutMs)
    slot.maintaining = undefined
    if (!done) return this.#checkFailed(slot, Date.now() - slot.lastUsedAt, undefined, true)
    if (slot.state === 'CLOSED') return false
    if (slot.broken) return this.#drop(slot, undefined), false
    return true
  }

  #wait(deadline: number, shared: boolean): Promise<Slot<C> | undefined> {
    return new Promise((resolve, reject) => {
      // Not unref'd: a caller is waiting on it (see timer.ts).
      const expire = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter)
        if (i >= 0) this.#waiters.splice(i, 1)
        this.#events.emit('acquireTimeout', { timeoutMs: this.options.acquireTimeoutMs })
        reject(new AcquireTimeoutError(this.options.acquireTimeoutMs))
      }, Math.max(0, deadline - Date.now()))
      const waiter: Waiter<C> = {
        shared,
        wake: (slot) => (clearTimeout(expire), resolve(slot)),
        fail: (err) => (clearTimeout(expire), reject(err)),
      }
      this.#waiters.push(waiter)
    })
  }

  #retireIdle(slot: Slot<C>, idleMs: number): Promise<void> {
    this.#counts.closedIdle++
    this.#events.emit('closeIdle', { connectionId: slot.id, idleMs })
    return this.#retire(slot, this.options.closeTimeoutMs)
  }

  #retireLifetime(slot: Slot<C>, now: number): Promise<void> {
    this.#counts.closedLifetime++
    this.#events.emit('closeLifetime', { connectionId: slot.id, ageMs: now - slot.openedAt })
    return this.#retire(slot, this.options.closeTimeoutMs)
  }

  /** Graceful close in the background; close() waits for these. */
  #retire(slot: Slot<C>, timeoutMs: number): Promise<void> {
    this.#remove(slot)
    const conn = slot.conn!
    const closing = conn.close(Math.max(0, timeoutMs)).catch(() => conn.destroy())
    this.#closing.add(closing)
    void closing.finally(() => this.#closing.delete(closing))
    return closing
  }

  /** Destroys a connection that broke or cannot be trusted; the next caller gets a new one. */
  #drop(slot: Slot<C>, code: string | undefined): void {
    if (slot.state === 'CLOSED') return
    this.#remove(slot)
    this.#replacementsDue++
    this.#counts.closedBroken++
    this.#events.emit('closeBroken', { connectionId: slot.id, code })
    slot.conn?.destroy()
  }

  /**
   * Lets go of a connection owned by another Workers request without any I/O on it (any would
   * throw or hang); its own request's end closes the socket.
   */
  #forget(slot: Slot<C>): void {
    this.#counts.closedBroken++
    this.#events.emit('closeBroken', { connectionId: slot.id, code: 'WARMCONN_CROSS_REQUEST' })
    this.#remove(slot)
  }

  /** Lets go of a connection that never connected (lazy, its call sent nothing): nothing to close on the server. */
  #discard(slot: Slot<C>): void {
    this.#remove(slot)
    slot.conn!.destroy()
  }

  #remove(slot: Slot<C>): void {
    slot.state = 'CLOSED'
    this.#slots.delete(slot)
    // Capacity freed: a waiter may now open a connection of its own.
    this.#waiters.shift()?.wake(undefined)
    for (const notify of this.#onSlotGone.splice(0)) notify()
    this.#armIdleTimer()
    // The call timer stays armed between calls (the hot path arms none); with no connection left
    // nothing can be late, and a pending timer would keep a Durable Object from being evicted.
    if (this.#slots.size === 0 && this.#calls.size === 0 && this.#sharedCalls.size === 0) {
      this.#calls.cancel()
      this.#sharedCalls.cancel()
    }
  }

  #armIdleTimer(): void {
    const next = this.#closed ? undefined : this.nextDeadline()
    // Deadlines only move later as connections are used, so a timer already due sooner stays:
    // it fires, sweeps by timestamps and re-arms. A warm call resets no timer.
    if (next === undefined) this.#idleTimer.cancel()
    else this.#idleTimer.armBy(next)
  }

  /**
   * Runs fn under the call's deadline, rejecting with CallTimeout if it still holds the connection
   * then. A lazy connection's handshake happens inside the call, so it is given its connect bound too.
   */
  #within<T>(slot: Slot<C>, call: SharedCall<C> | undefined, fn: (client: C) => Promise<T> | T, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let boundMs = slot.proven ? timeoutMs : timeoutMs + this.options.connectTimeoutMs
      // The invocation's own deadline (call-scope.ts), when a runtime adapter gives one.
      const until = ambientDeadline()
      if (until !== undefined) boundMs = Math.max(1, Math.min(boundMs, until - Date.now()))
      const cutOff = () => reject(new CallTimeout())
      if (call) this.#sharedCalls.start(call, boundMs, cutOff)
      else this.#calls.start(slot, boundMs, cutOff)
      try {
        // A shared call always gets the driver's guarded view: others may join the connection
        // while it runs (a lazy connection's first call is alone only until its handshake).
        const client = call && slot.conn!.sharedClient !== undefined ? slot.conn!.sharedClient : slot.conn!.client
        Promise.resolve(fn(client)).then(resolve, reject)
      } catch (err) {
        reject(err)
      }
    })
  }

  /** The call (`call`, if shared) no longer holds `slot`: its deadline ends; a shared call leaves the slot. */
  #end(slot: Slot<C>, call: SharedCall<C> | undefined): void {
    if (!call) return this.#calls.end(slot)
    this.#sharedCalls.end(call)
    slot.sharers--
  }

  /** A call ended on a good connection: the connection goes back once its last sharer has ended. */
  #back(slot: Slot<C>, call: SharedCall<C> | undefined): Promise<void> | undefined {
    if (!call) return this.#giveBack(slot)
    this.#end(slot, call)
    if (slot.state !== 'SHARED') return undefined
    if (slot.sharers > 0) return void this.#callEnded(slot)
    slot.state = 'ALLOCATED'
    if (pipelineDepth(slot, this.options.maxPipelined) > 1) slot.conn!.share?.(false)
    return this.#giveBack(slot)
  }

  /** A call whose connection is lost or cannot be trusted: the connection is destroyed (once). */
  #lose(slot: Slot<C>, call: SharedCall<C> | undefined, code: string | undefined): void {
    this.#end(slot, call)
    this.#drop(slot, code)
    this.#callEnded(slot)
  }

  /**
   * A connection for a shared call: an idle one, or a new one while there is room below
   * maxConnections (so the load spreads over the connections allowed, as postgres.js spreads
   * its own), else the least busy SHARED one with room in its pipeline (none while an exclusive
   * caller waits, so it is not starved), else a wait in the queue, which #shareOut serves.
   */
  async #takeShared(idempotent: boolean, carried: ConnectTry | undefined): Promise<SharedCall<C>> {
    const spare = hasSpare(this.#slots, this.#slots.size, this.options.maxConnections)
    const join = spare || this.#waiters.some((w) => !w.shared) ? undefined : joinable(this.#slots, idempotent, this.options.maxPipelined)
    if (join) {
      join.sharers++
      this.#counts.reused++
      if (this.#events.has('reuse')) this.#events.emit('reuse', { connectionId: join.id, idleMs: 0 })
      if (this.#events.has('acquire')) this.#events.emit('acquire', { connectionId: join.id, waitMs: 0 })
      return sharedCall(join)
    }
    const slot = await this.#take(idempotent, true, carried, true)
    // Woken to join a SHARED connection: its place was kept for it (#shareOut).
    if (slot.state === 'SHARED') return sharedCall(slot)
    slot.state = 'SHARED'
    slot.sharers = 1
    if (pipelineDepth(slot, this.options.maxPipelined) > 1) slot.conn!.share?.(true)
    const call = sharedCall(slot)
    this.#shareOut(slot)
    return call
  }

  /** Hands the shared callers at the head of the queue to `slot`, while it has room. */
  #shareOut(slot: Slot<C>): void {
    // A lazy connection's first statement goes alone (it carries the handshake), and nobody's
    // statement goes behind a liveness check still unanswered: #connected, or the release, share it out later.
    if (!slot.proven || slot.probe !== undefined) return
    while (this.#waiters[0]?.shared && slot.sharers < pipelineDepth(slot, this.options.maxPipelined)) {
      slot.sharers++
      this.#counts.reused++
      this.#waiters.shift()!.wake(slot)
    }
  }

  /**
   * Whatever the call is waiting for may never come (a silent network; a driver that never
   * reports a reset): destroying the connection frees its place now and fails its later
   * statements. The owner (run's promise) is told last, once the holder's books are straight.
   */
  #timeOut(slot: Slot<C>): void {
    const notify = slot.cutOff
    this.#calls.end(slot)
    this.#drop(slot, 'WARMCONN_CALL_TIMEOUT')
    this.#counts.callTimeouts++
    this.#events.emit('callTimeout', { connectionId: slot.id, timeoutMs: slot.callTimeoutMs })
    this.#callEnded(slot)
    notify?.()
  }

  /** A shared call past its deadline: like #timeOut, for that call; the other calls on the connection fail with it. */
  #timeOutShared(call: SharedCall<C>): void {
    const notify = call.cutOff
    this.#sharedCalls.end(call)
    call.slot.sharers--
    this.#drop(call.slot, 'WARMCONN_CALL_TIMEOUT')
    this.#counts.callTimeouts++
    this.#events.emit('callTimeout', { connectionId: call.slot.id, timeoutMs: call.callTimeoutMs })
    this.#callEnded(call.slot)
    notify?.()
  }

  /** The call's bound on holding its connection: its own `timeoutMs` (validated) or callTimeoutMs. */
  #timeoutOf(options: { timeoutMs?: number } | undefined): number {
    const timeoutMs = options?.timeoutMs
    if (timeoutMs === undefined) return this.options.callTimeoutMs
    checkTimeout('timeoutMs', timeoutMs)
    return timeoutMs
  }
}


