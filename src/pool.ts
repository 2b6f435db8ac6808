/**
 * A pg.Pool-shaped facade over a holder, for libraries that take a pool (Drizzle, Kysely, Prisma,
 * Vercel's attachDatabasePool). It only translates: `query` is `holder.run` (one statement, so
 * a connection that died before anything was sent is retried), `connect()` is `holder.lease`,
 * the counts are `holder.stats()`. The lifecycle stays in holder.ts; pg.Pool's config is read in
 * pool-config.ts, and errors get the driver's code in pool-errors.ts. What pg-pool does that a
 * user can tell (end() draining, a double release throwing, its counts, events and messages)
 * is kept here, except warmconn's deliberate differences listed in the README.
 * @module
 */
import { AcquireTimeoutError, ClosedError, InvalidOptionError, safeCause } from './errors.js'
import type { Holder, Lease } from './holder.js'
import type { HolderOptions } from './options.js'
import { planPool, type FacadeSettings, type PoolPlan } from './pool-config.js'
import { poolError } from './pool-errors.js'
import { clientOf, sentNothing, type NodePgClient } from './drivers/pg-client.js'

/**
 * warmPool's default size, pg.Pool's own (10). A handler that runs a query outside a
 * `db.transaction` that is still open (Drizzle, Prisma: the transaction holds one connection)
 * needs a second connection; with one it would wait acquireTimeoutMs. Connections are opened only
 * when that many calls are in flight at once, and an idle one closes at idleTimeoutMs, so a
 * function serving one request at a time still holds one.
 */
export const POOL_MAX_CONNECTIONS = 10

/** What the `idempotent` predicate is shown of a one-shot `pool.query`. */
export interface PoolQuery {
  readonly text: string
  readonly values: readonly unknown[] | undefined
}

export interface WarmPoolOptions extends HolderOptions {
  /**
   * Which one-shot `pool.query` calls may run twice, for queries whose config you do not write
   * yourself (an ORM's): `(query) => /^\s*select\b/i.test(query.text)`, say, if your SELECTs call
   * no function that writes. Such a call is replayed once on a new connection if its connection
   * dies under it (a stale connection is then checked in the same flight as the query). A query
   * config can also say so itself: `pool.query({ text, values, idempotent: true })`.
   */
  idempotent?: (query: PoolQuery) => boolean
}

/** A client checked out with `pool.connect()`: the driver's own Client, plus pg's `release`. */
export type PooledClient<C> = C & {
  /** Gives the client back (a transaction left open is rolled back); `release(err)` or `release(true)` destroys it. */
  release(err?: Error | boolean): void
}

/** pg's pool options, mirrored from warmconn's (Vercel's attachDatabasePool reads idleTimeoutMillis). */
export interface MirroredPoolOptions {
  readonly max: number
  readonly min: number
  readonly idleTimeoutMillis: number
  readonly connectionTimeoutMillis: number
  readonly maxLifetimeSeconds: number
  readonly maxUses: number
  readonly allowExitOnIdle: boolean
}

/** The facade's own members; the pg and neon entries add their library's Pool type on top. */
export interface WarmPool<C> {
  /** The holder behind the pool: `stats()`, `on(...)` for warmconn's events. */
  readonly holder: Holder<C>
  readonly totalCount: number
  readonly idleCount: number
  readonly waitingCount: number
  readonly expiredCount: number
  readonly ending: boolean
  readonly ended: boolean
  readonly options: MirroredPoolOptions
  connect(): Promise<PooledClient<C>>
  end(): Promise<void>
}

/**
 * Splits warmPool's arguments (pg.Pool's config, or a URL and options) into the facade's settings
 * and the rest (holder and driver options); see pool-config.ts for the translation.
 */
export function poolOptions(first: unknown, second: unknown): PoolPlan & { idempotent: WarmPoolOptions['idempotent'] } {
  const plan = planPool(first, second)
  const { idempotent, ...rest } = plan.rest
  if (idempotent !== undefined && typeof idempotent !== 'function') {
    throw new InvalidOptionError('idempotent', 'expected a function (query) => boolean')
  }
  return { ...plan, rest, idempotent: idempotent as WarmPoolOptions['idempotent'] }
}

/** The pool for `holder`: one per holder, so a warm invocation calling warmPool() again gets the same one. */
export function sharedPool<C extends NodePgClient>(holder: Holder<C>, LibraryPool: abstract new (...args: never[]) => object, settings: PoolSettings): WarmPool<C> {
  let pool = pools.get(holder) as WarmPool<C> | undefined
  if (!pool) pools.set(holder, (pool = new (poolClass(LibraryPool))(holder as Holder<never>, settings) as WarmPool<C>))
  return pool
}

export interface PoolSettings {
  idempotent: WarmPoolOptions['idempotent']
  /** The driver's secrets, kept out of the errors the pool emits. */
  secrets: readonly string[]
  /** What pg.Pool's config asks of the facade itself: maxUses, onConnect/verify, the checkout bound. */
  facade: FacadeSettings
}

const pools = new WeakMap<object, unknown>()
const classes = new WeakMap<object, new (holder: Holder<never>, settings: PoolSettings) => unknown>()

type Listener = (...args: any[]) => void
/** The EventEmitter surface the facade inherits (the library's own EventEmitter, at runtime). */
interface Emitter {
  emit(event: string, ...args: unknown[]): boolean
  listenerCount(event: string): number
}

/**
 * The facade's class for one library's Pool. It inherits from that Pool's prototype, so that
 * `pool instanceof pg.Pool` holds (Prisma's adapter and Drizzle's neon driver check it; Drizzle's
 * node-postgres driver checks that the class name contains "Pool"), but the library's
 * constructor never runs: none of pg-pool's state exists, and every public member is the
 * facade's own. The EventEmitter is the one at the root of that Pool's prototype chain, so
 * warmconn/neon imports no `node:events`.
 */
/** A connection that came after the checkout's deadline: given back unused. */
class Abandoned extends Error {}

/** pg-pool's words for work given to a pool after end(). */
function ended(): ClosedError {
  const err = new ClosedError()
  err.message = 'Cannot use a pool after calling end on the pool'
  return poolError(err) as ClosedError
}

function poolClass(LibraryPool: abstract new (...args: never[]) => object): new (holder: Holder<never>, settings: PoolSettings) => unknown {
  const cached = classes.get(LibraryPool)
  if (cached) return cached
  let EventEmitter: Function = LibraryPool
  while (Object.getPrototypeOf(EventEmitter) !== Function.prototype) EventEmitter = Object.getPrototypeOf(EventEmitter)
  function PoolBase(this: unknown): object {
    return Reflect.construct(EventEmitter, [], new.target)
  }
  PoolBase.prototype = Object.create(LibraryPool.prototype, { constructor: { value: PoolBase, writable: true, configurable: true } })

  class WarmPool extends (PoolBase as unknown as new () => Emitter) {
    readonly holder: Holder<NodePgClient>
    readonly options: MirroredPoolOptions
    readonly #settings: PoolSettings
    /** Clients seen once (listeners attached, 'connect' emitted). */
    readonly #seen = new WeakSet<NodePgClient>()
    /** Clients checked out now: an error on any other is an idle client's, for pool 'error' listeners. */
    readonly #busy = new Set<NodePgClient>()
    /** Checkouts per client, for maxUses. */
    readonly #uses = new WeakMap<NodePgClient, number>()
    /** Leases out now by connection id: ended by the holder too (cut off at callTimeoutMs). */
    readonly #leases = new Map<number, () => void>()
    /** Work accepted and not yet done (queries, checkouts, clients out): end() waits for it. */
    #active = 0
    #drained: (() => void) | undefined
    #ending = false
    #endedDone = false

    constructor(holder: Holder<NodePgClient>, settings: PoolSettings) {
      super()
      this.holder = holder
      this.#settings = settings
      const o = holder.options
      this.options = Object.freeze({
        max: o.maxConnections,
        min: 0,
        idleTimeoutMillis: o.idleTimeoutMs,
        connectionTimeoutMillis: settings.facade.checkoutTimeoutMs ?? o.acquireTimeoutMs,
        maxLifetimeSeconds: o.maxLifetimeMs / 1000,
        maxUses: settings.facade.maxUses,
        allowExitOnIdle: o.allowExitOnIdle,
      })
      // A lease cut off by the holder at its deadline is over: end() must not wait for its release().
      holder.on('release', ({ connectionId }) => this.#leases.get(connectionId)?.())
    }

    get totalCount(): number {
      return this.holder.stats().open
    }
    /** Connections open and idle, as pg-pool counts them (a connection still opening is not idle). */
    get idleCount(): number {
      return this.holder.stats().idle
    }
    get waitingCount(): number {
      return this.holder.stats().waiting
    }
    /** Clients checked out past their lifetime: closed when released. */
    get expiredCount(): number {
      return this.holder.stats().expired
    }
    get ending(): boolean {
      return this.#ending || this.holder.closed
    }
    get ended(): boolean {
      return this.#endedDone || this.holder.closed
    }

    /**
     * One statement on a connection of its own, like pg's pool.query (promise or callback form).
     * Replayed on a new connection only if it provably was not sent, or it is marked idempotent.
     */
    query(config: unknown, values?: unknown, callback?: unknown): Promise<unknown> | undefined {
      if (typeof config === 'function') {
        // As pg-pool: the callback is told, and no promise is left to reject unheard.
        const err = new InvalidOptionError('query', 'Passing a function as the first parameter to pool.query is not supported: pass the SQL text first')
        setTimeout(() => (config as Listener)(err), 0)
        return undefined
      }
      const cb = typeof values === 'function' ? values : callback
      // Thrown, as pg does: a callback that is not one has nowhere else to report to.
      if (cb !== undefined && typeof cb !== 'function') throw new InvalidOptionError('callback', 'expected a function')
      const running = this.#query(config, typeof values === 'function' ? undefined : values)
      if (cb === undefined) return running
      // Called outside the promise chain, so an exception in it is the caller's, as with pg.
      running.then(
        (result) => queueMicrotask(() => (cb as Listener)(undefined, result)),
        (err: unknown) => queueMicrotask(() => (cb as Listener)(err)),
      )
      return undefined
    }

    async #query(config: unknown, values: unknown): Promise<unknown> {
      const query = this.#parse(config, values)
      if (this.ending) throw ended()
      // maxUses and onConnect/verify are the facade's own: a checked-out client, as pg-pool's
      // query does (not replayed if its connection dies: the holder cannot know what was sent).
      if (this.#settings.facade.maxUses !== Infinity || this.#settings.facade.onConnect) {
        const client = await this.#checkout()
        let failed: unknown
        try {
          return await (client.query as (config: unknown, values?: unknown) => Promise<unknown>)(config, values)
        } catch (err) {
          failed = err
          throw err
        } finally {
          // An SQL error keeps the connection (warmconn's difference); a broken one the holder drops.
          client.release(undefined, failed)
        }
      }
      const checkout = this.#deadline()
      // Pipelined with other callers' when it opens no transaction and changes nothing in the
      // session; otherwise a connection to itself, reset after it (holder.statement).
      const running = this.holder.statement(query.text, async (view) => {
        if (!checkout.take()) throw new Abandoned()
        // A shared call's view guards what it sends; pg's events name the Client itself.
        const client = clientOf(view)
        this.#handOut(client)
        let failed: unknown
        try {
          return await (client.query as (config: unknown, values?: unknown) => Promise<unknown>)(config, values)
        } catch (err) {
          failed = err
          // This call is this one statement: a client that refused it sent nothing at all.
          throw sentNothing(err)
        } finally {
          this.#released(client, failed)
        }
      }, { idempotent: query.idempotent })
      this.#track(running)
      try {
        return await (checkout.expired ? Promise.race([running, checkout.expired]) : running)
      } catch (err) {
        throw poolError(err)
      } finally {
        checkout.clear()
      }
    }

    /** Checks pg's query arguments before any I/O; pg's own TypeErrors would come from inside a call. */
    #parse(config: unknown, values: unknown): { text: string; idempotent: boolean } {
      if (values !== undefined && !Array.isArray(values)) throw new InvalidOptionError('values', 'expected an array of parameters')
      let text: unknown = config
      let marked = false
      if (config !== null && typeof config === 'object' && !Array.isArray(config)) {
        const c = config as { text?: unknown; values?: unknown; idempotent?: unknown; submit?: unknown }
        if (typeof c.submit === 'function') {
          throw new InvalidOptionError('query', 'a cursor or stream holds its connection across reads: use pool.connect() and client.query(...), then release()')
        }
        if (c.values !== undefined && !Array.isArray(c.values)) throw new InvalidOptionError('query.values', 'expected an array of parameters')
        if (c.idempotent !== undefined && typeof c.idempotent !== 'boolean') throw new InvalidOptionError('query.idempotent', 'expected true or false')
        text = c.text
        marked = c.idempotent === true
        values ??= c.values
        if (typeof text !== 'string') throw new InvalidOptionError('query.text', 'expected the SQL text as a string')
      } else if (typeof text !== 'string') {
        throw new InvalidOptionError('query', 'expected SQL text or a query config { text, values }')
      }
      const predicate = this.#settings.idempotent
      return { text, idempotent: marked || (predicate !== undefined && predicate({ text, values: values as unknown[] | undefined }) === true) }
    }

    /** Checks a client out until `client.release()`; the same lifecycle as `query`, never replayed. */
    connect(callback?: unknown): Promise<PooledClient<NodePgClient>> | undefined {
      if (callback !== undefined && typeof callback !== 'function') throw new InvalidOptionError('callback', 'expected a function')
      const checkout = this.ending ? Promise.reject(ended()) : this.#checkout()
      if (callback === undefined) return checkout
      checkout.then(
        (client) => queueMicrotask(() => (callback as Listener)(undefined, client, client.release)),
        (err: unknown) => queueMicrotask(() => (callback as Listener)(err, undefined, () => {})),
      )
      return undefined
    }

    async #checkout(): Promise<PooledClient<NodePgClient> & { release(err?: Error | boolean, failed?: unknown): void }> {
      if (this.ending) throw ended()
      const checkout = this.#deadline()
      const leasing = this.holder.lease()
      let done!: () => void
      this.#track(new Promise<void>((resolve) => (done = resolve)))
      let lease: Lease<NodePgClient>
      try {
        lease = await (checkout.expired ? Promise.race([leasing, checkout.expired]) : leasing)
      } catch (err) {
        // A connection that comes after the deadline goes back at once.
        leasing.then((late) => void late.release(), () => {})
        done()
        throw poolError(err)
      } finally {
        checkout.clear()
      }
      const client = lease.client as PooledClient<NodePgClient>
      let over = false
      const finish = (): void => {
        if (over) return
        over = true
        this.#leases.delete(lease.connectionId)
        done()
      }
      this.#leases.set(lease.connectionId, finish)
      try {
        const hook = this.#settings.facade.onConnect
        if (hook && !this.#seen.has(client)) await hook(client as never)
        this.#handOut(client)
      } catch (err) {
        // pg-pool ends a client whose onConnect failed; a listener's exception fails this checkout only.
        this.#busy.delete(client)
        if (this.#seen.has(client)) void lease.release()
        else lease.destroy()
        finish()
        throw err
      }
      let released = false
      // A property of the client, as pg-pool sets it: Drizzle and Prisma call client.release().
      client.release = (err?: Error | boolean, failed?: unknown) => {
        if (released) throw new Error('Release called on client which has already been released to the pool.')
        released = true
        const uses = (this.#uses.get(client) ?? 0) + 1
        this.#uses.set(client, uses)
        this.#busy.delete(client)
        if (err || uses >= this.#settings.facade.maxUses) lease.destroy()
        else void lease.release().catch(() => {})
        finish()
        // Last, as pg-pool emits it: a listener's exception reaches the caller of release().
        this.emit('release', this.#safe(err ?? failed), client)
      }
      return client
    }

    /**
     * Refuses new work at once, lets queries and checkouts already made finish (clients out are
     * waited for until released, or cut off at callTimeoutMs), then closes the connections. A
     * second call rejects, as pg-pool's does.
     */
    end(callback?: unknown): Promise<void> | undefined {
      if (callback !== undefined && typeof callback !== 'function') throw new InvalidOptionError('callback', 'expected a function')
      if (this.#ending) {
        const err = new Error('Called end on pool more than once')
        if (callback) return void (callback as Listener)(err)
        return Promise.reject(err)
      }
      this.#ending = true
      const ending = this.#drain()
        .then(() => this.holder.close())
        .then(() => void (this.#endedDone = true))
      if (callback === undefined) return ending
      ending.then(() => queueMicrotask(() => (callback as Listener)()), (err: unknown) => queueMicrotask(() => (callback as Listener)(err)))
      return undefined
    }

    /** Counts `work` as accepted until it settles (end() waits for it). */
    #track(work: Promise<unknown>): void {
      this.#active++
      const settled = (): void => {
        if (--this.#active === 0) this.#drained?.()
      }
      work.then(settled, settled)
    }

    #drain(): Promise<void> {
      if (this.#active === 0) return Promise.resolve()
      return new Promise((resolve) => (this.#drained = resolve))
    }

    /**
     * pg's connectionTimeoutMillis: a bound on the whole checkout, the wait for a busy pool
     * included. `take()` is false once it passed (the connection that came late goes back).
     */
    #deadline(): { expired: Promise<never> | undefined; take(): boolean; clear(): void } {
      const ms = this.#settings.facade.checkoutTimeoutMs
      if (ms === undefined) return { expired: undefined, take: () => true, clear: () => {} }
      let fired = false
      let handle: ReturnType<typeof setTimeout> | undefined
      const expired = new Promise<never>((_, reject) => {
        // Not unref'd: a caller is waiting on it.
        handle = setTimeout(() => {
          fired = true
          const err = new AcquireTimeoutError(ms)
          err.message = `timeout exceeded when trying to connect (connectionTimeoutMillis: ${ms} ms)`
          reject(err)
        }, ms)
      })
      expired.catch(() => {})
      const clear = (): void => clearTimeout(handle)
      return { expired, take: () => (clear(), !fired), clear }
    }

    /** pg's 'connect' the first time a client is handed out, 'acquire' every time. */
    #handOut(client: NodePgClient): void {
      const isNew = !this.#seen.has(client)
      if (isNew) {
        this.#seen.add(client)
        // pg-pool re-emits an idle client's error on the pool (with err.client), and a pool
        // without an 'error' listener then crashes the process. Here it is only passed on to
        // listeners there are; one that throws is not caught, as in pg-pool.
        client.on('error', (err: unknown) => {
          if (this.#busy.has(client) || this.listenerCount('error') === 0) return
          const safe = this.#safe(err)
          // A getter, not a value: a logger that prints the error (util.inspect, even showHidden)
          // shows "[Getter]", never the Client and the password it keeps.
          if (safe && typeof safe === 'object') Object.defineProperty(safe, 'client', { get: () => client, enumerable: false, configurable: true })
          this.emit('error', safe, client)
        })
        client.on('end', () => this.emit('remove', client))
      }
      this.#busy.add(client)
      if (isNew) this.emit('connect', client)
      this.emit('acquire', client)
    }

    #released(client: NodePgClient, err: unknown): void {
      this.#busy.delete(client)
      this.emit('release', this.#safe(err), client)
    }

    #safe(err: unknown): unknown {
      return err instanceof Error ? safeCause(err, this.#settings.secrets) : err
    }
  }
  classes.set(LibraryPool, WarmPool as never)
  return WarmPool as never
}
