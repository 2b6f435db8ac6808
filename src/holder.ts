/**
 * The lifecycle, in one place. A holder owns up to `maxConnections` connections to one target and
 * hands each caller one connection exclusively for the length of a `run`. Every decision is made
 * from timestamps when a connection is asked for, because a frozen process (Lambda between
 * invocations) fires no timers; timers only close idle connections early in a live process.
 * @module
 */
import type { Classified, Driver, DriverConnection } from './driver.js'
import {
  AcquireTimeoutError,
  CallTimeoutError,
  ClosedError,
  CrossRequestError,
  ConnectError,
  ConnectionLostError,
  InvalidOptionError,
  WarmconnError,
  redact,
  safeCause,
} from './errors.js'
import { connectFailure } from './connect-failure.js'
import { Emitter, type HolderEventName, type Listener } from './events.js'
import { checkRunOptions, checkTimeout, describe, resolveOptions, type HolderOptions, type ResolvedOptions } from './options.js'
import { idleSessionWarning, preparedStatementWarning, type Warning } from './warnings.js'
import { serverIdleTimeoutMs } from './server-idle.js'
import { bindToRequest, inSameRequest, type RequestBinding } from './request-context.js'
import { deadlineTimer, settle, sleep, within, withTimeout, type DeadlineTimer } from './timer.js'

/**
 * A connection's state. Only IDLE connections may be handed out or closed by the idle sweep,
 * which is why the sweep can never close a connection in use.
 */
type SlotState =
  /** Being opened; counts against maxConnections so concurrent callers share the connect. */
  | 'CONNECTING'
  /** Open, unused, waiting in the holder. */
  | 'IDLE'
  /** Taken by one caller and being checked (timestamps, then a ping if stale). */
  | 'VALIDATING'
  /** In a caller's hands. */
  | 'ALLOCATED'
  /** Gone: closed or destroyed, no longer in the holder. */
  | 'CLOSED'

interface Slot<C> {
  readonly id: number
  state: SlotState
  conn: DriverConnection<C> | undefined
  openedAt: number
  /** Lifetime deadline, jitter already taken off. */
  expiresAt: number
  lastUsedAt: number
  /** Set by the driver when the connection closed on its own (backend terminated, socket reset). */
  broken: boolean
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
interface ConnectTry {
  attempts: number
  startedAt: number
}

// Errors that, on a connection not yet authenticated, mean the connect failed: nothing was sent.
const CONNECT_FAILURES = new Set(['auth', 'config', 'transient', 'connection'])

interface Waiter<C> {
  /** Called with a connection handed over directly, or with nothing when capacity freed up. */
  wake(slot: Slot<C> | undefined): void
  fail(err: Error): void
}

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
  /** Transactions left open by a caller and rolled back. */
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
}

type Counter = Exclude<keyof HolderStats, 'open' | 'inUse' | 'waiting'>

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
  /** One timer for every call's deadline, armed for the earliest (see #startCall). */
  readonly #callTimer: DeadlineTimer
  /** Slots a call holds now (a slot dropped by close() keeps its deadline). */
  readonly #calling = new Set<Slot<C>>()
  readonly #closing = new Set<Promise<void>>()
  readonly #hooks: HolderHooks
  readonly #counts: Record<Counter, number> = {
    opened: 0, reused: 0, revalidated: 0, revalidateFailures: 0, reconnected: 0, closedIdle: 0,
    closedLifetime: 0, closedBroken: 0, connectRetries: 0, connectFailures: 0, sessionResets: 0,
    replays: 0, callTimeouts: 0, runs: 0, failures: 0,
  }
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
    this.#callTimer = deadlineTimer(() => this.#cutOffLateCalls())
  }

  /**
   * Runs `fn` with a connection of its own for the duration of the call. The connection is
   * opened lazily, revalidated only if it was idle at least `staleAfterMs`, and any transaction
   * `fn` leaves open is rolled back before the connection is used again.
   * @example const rows = await holder.run((sql) => sql`select * from users where id = ${id}`)
   */
  async run<T>(fn: (client: C) => Promise<T> | T, options: RunOptions = {}): Promise<T> {
    // Before any I/O: a bad argument must fail as itself, not as a connect to a server.
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', `run() expects a function that receives the client, got ${describe(fn)}`)
    checkRunOptions(options)
    const idempotent = options.idempotent === true
    const timeoutMs = options.timeoutMs ?? this.options.callTimeoutMs
    this.#counts.runs++
    // A lazy connect that failed under fn: its attempts and budget go on with the next one.
    let carried: ConnectTry | undefined
    for (let attempt = 1; ; attempt++) {
      const slot = await this.#take(idempotent, true, carried)
      let result: T
      try {
        result = await this.#within(slot, fn, timeoutMs)
      } catch (err) {
        if (err instanceof CallTimeout) {
          // Already destroyed (#timeOut). Treated as a lost connection: replayed once only if
          // idempotent, because the work may have run, or may still be running, on the server.
          if (attempt === 1 && idempotent && !this.#closed) {
            this.#counts.replays++
            this.#events.emit('replay', { code: 'WARMCONN_CALL_TIMEOUT', idempotent: true })
            continue
          }
          this.#counts.failures++
          throw new CallTimeoutError(timeoutMs, this.#driver.target)
        }
        const seen = this.#classify(err)
        if (!slot.proven && CONNECT_FAILURES.has(seen.kind)) {
          // fn's first statement carried the handshake (a lazy connect) and the handshake failed:
          // a failed connect attempt, under the connect policy, with nothing sent. fn runs again
          // once a connection is open; that is not the call's one replay.
          this.#endCall(slot)
          this.#discard(slot)
          let delayMs: number
          try {
            delayMs = this.#retryDelay(err, seen, slot.connect)
          } catch (final) {
            this.#connectFailed(final, slot.connect.attempts)
            this.#counts.failures++
            throw final
          }
          await sleep(delayMs)
          carried = slot.connect
          attempt--
          continue
        }
        // A pipelined liveness check that went unanswered destroyed the connection under fn, so
        // fn's error, whatever it says, is that of a lost connection.
        if (seen.kind === 'query' && (slot.probe === undefined ? this.#intact(slot) : await this.#probeAnswered(slot))) {
          // An SQL error or the caller's own exception: the connection is fine, the session may not be.
          await this.#giveBack(slot)
          this.#counts.failures++
          throw err
        }
        this.#endCall(slot)
        this.#drop(slot, seen.code)
        this.#callEnded(slot)
        if (attempt === 1 && (idempotent || seen.notSent) && !this.#closed) {
          this.#counts.replays++
          this.#events.emit('replay', { code: seen.code, idempotent })
          continue
        }
        this.#counts.failures++
        throw this.#lostError(err, seen.code, seen.notSent)
      }
      // fn's result stands even if a pipelined check failed (fn then never used the connection).
      // A warm call awaits nothing here: no probe to settle, no transaction to roll back.
      if (slot.probe === undefined ? this.#intact(slot) : await this.#probeAnswered(slot)) {
        const back = this.#giveBack(slot)
        if (back) await back
      } else {
        // Broken under the call (already dropped if a pipelined check failed): never reused.
        this.#endCall(slot)
        this.#drop(slot, undefined)
        this.#callEnded(slot)
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
    this.#startCall(slot, timeoutMs, undefined)
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
        if (this.#calling.has(slot)) await this.#giveBack(slot)
      },
      destroy: () => {
        if (done) return
        done = true
        if (!this.#calling.has(slot)) return
        this.#endCall(slot)
        this.#drop(slot, 'WARMCONN_LEASE_DESTROYED')
        this.#callEnded(slot)
      },
    }
  }

  /** Counters since creation and gauges now. Contains no connection string and no password. */
  stats(): HolderStats {
    let inUse = 0
    for (const slot of this.#slots) if (slot.state === 'ALLOCATED' || slot.state === 'VALIDATING') inUse++
    return { ...this.#counts, open: this.#slots.size, inUse, waiting: this.#waiters.length }
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
  async #take(idempotent: boolean, lazyOk: boolean, carried: ConnectTry | undefined): Promise<Slot<C>> {
    try {
      return await this.#acquire(idempotent, lazyOk, carried)
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
  async #acquire(idempotent: boolean, lazyOk: boolean, carried: ConnectTry | undefined): Promise<Slot<C>> {
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
      const handed = await this.#wait(deadline)
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
    if (best) best.state = 'VALIDATING'
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
   * After a gap: lets a queued close land, then, if idle past staleAfterMs, checks the connection
   * (bounded by pingTimeoutMs): for an idempotent call with a probe pipelined ahead of its first
   * statement, otherwise with a ping before anything is sent.
   */
  async #revalidate(slot: Slot<C>, idleMs: number, idempotent: boolean): Promise<boolean> {
    // After a real gap (a freeze, a quiet spell) the server's goodbye may be queued unread; let it
    // land first. Back-to-back calls skip this event-loop turn: the hot path stays one round trip.
    if (idleMs >= SETTLE_AFTER_IDLE_MS) await settle()
    if (slot.broken) return this.#drop(slot, undefined), false
    if (this.#closed) return this.#release(slot), false
    if (idleMs < this.options.staleAfterMs) {
      this.#handOut(slot, idleMs)
      return true
    }
    // A call that may run twice can go out at once, in the probe's flight: if the probe goes
    // unanswered the connection is destroyed and the call replayed. A write never may: it could
    // land in a socket that is already dead, with an unknown outcome.
    if (idempotent && slot.conn!.probe && slot.conn!.direct) {
      slot.probe = this.#checked(slot, idleMs, slot.conn!.probe!())
      this.#counts.reused++
      slot.state = 'ALLOCATED'
      return true
    }
    if (!(await this.#checked(slot, idleMs, slot.conn!.ping()))) return false
    if (slot.broken) return this.#drop(slot, undefined), false
    this.#counts.reused++
    slot.state = 'ALLOCATED'
    return true
  }

  /**
   * A liveness check (ping, or probe) bounded by pingTimeoutMs: settles true when answered in
   * time; otherwise the connection is destroyed and it settles false. Never rejects.
   */
  #checked(slot: Slot<C>, idleMs: number, check: Promise<void>): Promise<boolean> {
    const started = Date.now()
    return withTimeout(check, this.options.pingTimeoutMs, () => new PingTimeout()).then(
      () => {
        this.#counts.revalidated++
        this.#events.emit('revalidateSuccess', { connectionId: slot.id, idleMs, durationMs: Date.now() - started })
        return true
      },
      (err: unknown) => this.#checkFailed(slot, idleMs, err),
    )
  }

  /** A liveness check failed or went unanswered: counted, reported, the connection destroyed. */
  #checkFailed(slot: Slot<C>, idleMs: number, err: unknown): false {
    const timedOut = err instanceof PingTimeout
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
    const slot: Slot<C> = {
      id: ++this.#nextId, state: 'CONNECTING', conn: undefined,
      openedAt: 0, expiresAt: 0, lastUsedAt: 0, broken: false, context: bindToRequest(),
      callDeadlineAt: 0, callTimeoutMs: 0, cutOff: undefined, probe: undefined, proven: false, connect, maintaining: undefined,
    }
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
      const remaining = o.connectBudgetMs - (Date.now() - slot.connect.startedAt)
      const timeoutMs = Math.max(1, Math.min(o.connectTimeoutMs, remaining))
      slot.connect.attempts++
      try {
        return await this.#openOnce(slot, timeoutMs, lazy)
      } catch (err) {
        await sleep(this.#retryDelay(err, this.#driver.classify(err), slot.connect))
      }
    }
  }

  /**
   * What a failed connect attempt means: throws the typed error that ends the connect (bad
   * credentials or configuration, not transient, out of retries or budget), or counts a retry and
   * returns its backoff (full jitter below a doubling ceiling).
   */
  #retryDelay(err: unknown, seen: Classified, connect: ConnectTry): number {
    const o = this.options
    const attempt = connect.attempts
    const secrets = this.#driver.secrets
    if (seen.retryNow && attempt <= o.connectRetries) return 0
    const detail = redact(err instanceof Error ? err.message : String(err), secrets)
    const failure = { seen, detail, where: `${this.#driver.target} (${this.#driver.name})`, cause: { cause: safeCause(err, secrets) }, attempts: attempt }
    // Worded for what happened (connect-failure.ts): no such host, TLS, refused credentials...
    if (seen.kind === 'auth' || seen.kind === 'config') throw connectFailure(failure)
    const ceiling = Math.min(o.connectBackoffMaxMs, o.connectBackoffBaseMs * 2 ** (attempt - 1))
    const delayMs = Math.random() * ceiling
    const retryable = seen.kind === 'transient' || seen.kind === 'connection'
    // An attempt squeezed into the budget's last milliseconds could only time out, and would
    // then report CONNECT_TIMEOUT instead of the failure that actually drove the retries.
    const minAttemptMs = Math.min(o.connectTimeoutMs, MIN_ATTEMPT_MS)
    const outOfBudget = Date.now() - connect.startedAt + delayMs + minAttemptMs > o.connectBudgetMs
    if (!retryable || attempt > o.connectRetries || outOfBudget || this.#closed) {
      const gaveUp = !retryable ? 'not a transient failure' : outOfBudget ? `another retry would pass connectBudgetMs (${o.connectBudgetMs} ms)` : `connectRetries (${o.connectRetries}) exhausted`
      throw connectFailure({ ...failure, gaveUp })
    }
    this.#counts.connectRetries++
    this.#events.emit('connectRetry', { attempt, delayMs: Math.round(delayMs), code: seen.code })
    return delayMs
  }


  /** One attempt, bounded even if the driver ignores its own timeout; a late success is destroyed. */
  #openOnce(slot: Slot<C>, timeoutMs: number, lazy: boolean): Promise<DriverConnection<C>> {
    let abandoned = false
    const opening = this.#driver.open({
      connectTimeoutMs: timeoutMs,
      applicationName: this.options.applicationName,
      onBroken: (code) => this.#onBroken(slot, code),
      lazy,
      onReady: (backendPid) => this.#connected(slot, backendPid),
      pooled: this.options.pooled,
      serverIdleTimeoutMs: this.options.serverIdleClose && this.options.pooled !== true ? serverIdleTimeoutMs(this.options.idleTimeoutMs) : undefined,
    })
    opening.then((conn) => abandoned && conn.destroy(), () => {})
    const grace = 250 // the driver's own timer should win; ours only guards against a driver that hangs
    return withTimeout(opening, timeoutMs + grace, () => {
      abandoned = true
      return Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'CONNECT_TIMEOUT' })
    })
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
  #classify(err: unknown): Classified {
    const seen = this.#driver.classify(err)
    if (seen.code === '26000' && this.#driver.namedStatements) this.#warn(preparedStatementWarning(this.#driver.target))
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
    this.#endCall(slot)
    if (this.#leftOpen(slot)) {
      return this.#cleanSession(slot).then(() => {
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

  /** Whether the caller left a transaction open on a connection still worth keeping. */
  #leftOpen(slot: Slot<C>): boolean {
    return !slot.broken && slot.conn!.inTransaction()
  }

  /**
   * Rolls back what the caller left open (only called when #leftOpen, so a clean call awaits
   * nothing). A connection that cannot be cleaned is dropped.
   */
  async #cleanSession(slot: Slot<C>): Promise<void> {
    let ok = true
    try {
      await withTimeout(slot.conn!.rollback(), this.options.pingTimeoutMs, () => new PingTimeout())
    } catch {
      ok = false
      slot.broken = true
    }
    this.#counts.sessionResets++
    this.#events.emit('sessionReset', { connectionId: slot.id, ok })
  }

  #release(slot: Slot<C>): void {
    if (slot.state === 'CLOSED') return
    const now = Date.now()
    if (slot.broken) return this.#drop(slot, undefined)
    if (this.#closed) return void this.#retire(slot, this.options.closeTimeoutMs)
    if (now >= slot.expiresAt) return void this.#retireLifetime(slot, now)
    slot.lastUsedAt = now
    const waiter = this.#waiters.shift()
    if (waiter) {
      slot.state = 'ALLOCATED'
      waiter.wake(slot)
      return
    }
    slot.state = 'IDLE'
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
    const timedOut = await withTimeout(slot.maintaining!.then(() => false), this.options.pingTimeoutMs, () => new PingTimeout()).catch(() => true)
    slot.maintaining = undefined
    if (timedOut) return this.#checkFailed(slot, Date.now() - slot.lastUsedAt, new PingTimeout())
    if (slot.state === 'CLOSED') return false
    if (slot.broken) return this.#drop(slot, undefined), false
    return true
  }

  #wait(deadline: number): Promise<Slot<C> | undefined> {
    return new Promise((resolve, reject) => {
      // Not unref'd: a caller is waiting on it (see timer.ts).
      const expire = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter)
        if (i >= 0) this.#waiters.splice(i, 1)
        reject(new AcquireTimeoutError(this.options.acquireTimeoutMs))
      }, Math.max(0, deadline - Date.now()))
      const waiter: Waiter<C> = {
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
    if (this.#slots.size === 0 && this.#calling.size === 0) this.#callTimer.cancel()
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
  #within<T>(slot: Slot<C>, fn: (client: C) => Promise<T> | T, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const boundMs = slot.proven ? timeoutMs : timeoutMs + this.options.connectTimeoutMs
      this.#startCall(slot, boundMs, () => reject(new CallTimeout()))
      try {
        Promise.resolve(fn(slot.conn!.client)).then(resolve, reject)
      } catch (err) {
        reject(err)
      }
    })
  }

  /**
   * Starts the deadline of a call or lease. The hot path arms no timer of its own: one holder
   * timer, due at the earliest deadline, stays armed while calls keep starting before it
   * (deadlines only move later), and when it fires it cuts off what is late by timestamps and
   * re-arms. Unref'd: a call in flight keeps its own socket, which holds the process open.
   */
  #startCall(slot: Slot<C>, timeoutMs: number, cutOff: (() => void) | undefined): void {
    slot.callDeadlineAt = Date.now() + timeoutMs
    slot.callTimeoutMs = timeoutMs
    slot.cutOff = cutOff
    this.#calling.add(slot)
    this.#callTimer.armBy(slot.callDeadlineAt)
  }

  /** The call or lease on `slot` has ended: its deadline no longer applies. */
  #endCall(slot: Slot<C>): void {
    slot.cutOff = undefined
    this.#calling.delete(slot)
  }

  #cutOffLateCalls(): void {
    const now = Date.now()
    let next: number | undefined
    for (const slot of this.#calling) {
      if (slot.callDeadlineAt > now) next = Math.min(next ?? Infinity, slot.callDeadlineAt)
      else this.#timeOut(slot)
    }
    if (next !== undefined) this.#callTimer.armBy(next)
  }

  /**
   * Whatever the call is waiting for may never come (a silent network; a driver that never
   * reports a reset): destroying the connection frees its place now and fails its later
   * statements. The owner (run's promise) is told last, once the holder's books are straight.
   */
  #timeOut(slot: Slot<C>): void {
    const notify = slot.cutOff
    this.#endCall(slot)
    this.#drop(slot, 'WARMCONN_CALL_TIMEOUT')
    this.#counts.callTimeouts++
    this.#events.emit('callTimeout', { connectionId: slot.id, timeoutMs: slot.callTimeoutMs })
    this.#callEnded(slot)
    notify?.()
  }

  /** The call's bound on holding its connection: its own `timeoutMs` (validated) or callTimeoutMs. */
  #timeoutOf(options: { timeoutMs?: number } | undefined): number {
    const timeoutMs = options?.timeoutMs
    if (timeoutMs === undefined) return this.options.callTimeoutMs
    checkTimeout('timeoutMs', timeoutMs)
    return timeoutMs
  }

  #lostError(err: unknown, code: string | undefined, notSent: boolean): WarmconnError {
    const secrets = this.#driver.secrets
    const message = redact(err instanceof Error ? err.message : String(err), secrets)
    const cause = { cause: safeCause(err, secrets) }
    if (err instanceof WarmconnError) return err
    if (notSent) {
      return new ConnectError(`Could not reach ${this.#driver.target} to run the call (nothing was sent): ${message}`, 1, code, cause)
    }
    return new ConnectionLostError(
      `The connection to ${this.#driver.target} was lost during the call; it may or may not have taken effect, ` +
        `so it was not replayed (pass { idempotent: true } to allow a replay): ${message}`,
      code,
      cause,
    )
  }
}

class PingTimeout extends Error {}
class CallTimeout extends Error {}

/** Idle time after which queued socket events are let in before a connection is handed out. */
const SETTLE_AFTER_IDLE_MS = 50

/** The least time worth giving a connect attempt (loopback TCP + SCRAM take ~20 ms here). */
const MIN_ATTEMPT_MS = 250
