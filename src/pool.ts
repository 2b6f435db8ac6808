/**
 * A pg.Pool-shaped facade over a holder, for libraries that take a pool (Drizzle, Kysely, Prisma,
 * Vercel's attachDatabasePool). It only translates: `query` is `holder.run` (one statement, so
 * a connection that died before anything was sent is retried), `connect()` is `holder.lease`,
 * the counts are `holder.stats()`. The lifecycle stays in holder.ts.
 * @module
 */
import { ClosedError, InvalidOptionError, safeCause } from './errors.js'
import type { Holder } from './holder.js'
import type { HolderOptions } from './options.js'
import { sentNothing, type NodePgClient } from './drivers/pg-client.js'

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

// pg's own pool options, refused by name with what to use instead: a pg option that was silently
// ignored would leave the user believing in a limit or timeout that does not exist.
const PG_POOL_OPTIONS: Record<string, string> = {
  max: 'use "maxConnections"',
  min: 'warmconn opens connections when they are needed; there is no minimum',
  idleTimeoutMillis: 'use "idleTimeoutMs"',
  connectionTimeoutMillis: 'use "connectTimeoutMs" (and "connectBudgetMs" for all attempts)',
  maxLifetimeSeconds: 'use "maxLifetimeMs" (milliseconds)',
  maxUses: 'warmconn rotates connections by age: use "maxLifetimeMs"',
  allowExitOnIdle: "not needed: warmconn's idle timers never keep the process alive",
  connectionString: 'pass the URL as the first argument',
  Client: 'the driver entry (warmconn/pg, warmconn/neon) decides the Client',
  log: "subscribe to the holder's events instead: pool.holder.on(...)",
  Promise: 'warmconn uses the global Promise',
  onConnect: "use pool.on('connect', client => ...)",
  verify: "warmconn checks a connection itself (staleAfterMs, pingTimeoutMs)",
}

/**
 * Splits warmPool's options into the facade's and the rest (holder and driver options), refusing
 * pg's pool option names, and the connection settings in `elsewhere` (name -> where it goes).
 */
export function poolOptions<O extends WarmPoolOptions>(options: O | undefined, elsewhere: Readonly<Record<string, string>>): { idempotent: WarmPoolOptions['idempotent']; rest: Omit<O, 'idempotent'> } {
  if (options === undefined) return { idempotent: undefined, rest: {} as Omit<O, 'idempotent'> }
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new InvalidOptionError('options', 'expected an object')
  for (const key of Object.keys(options)) {
    const instead = Object.hasOwn(PG_POOL_OPTIONS, key) ? PG_POOL_OPTIONS[key] : Object.hasOwn(elsewhere, key) ? elsewhere[key] : undefined
    if (instead !== undefined) throw new InvalidOptionError(key, `a pg.Pool option, not one of warmconn's: ${instead}`)
  }
  const { idempotent, ...rest } = options
  if (idempotent !== undefined && typeof idempotent !== 'function') {
    throw new InvalidOptionError('idempotent', 'expected a function (query) => boolean')
  }
  return { idempotent, rest }
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
    #ending = false
    #ended: Promise<void> | undefined
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
        connectionTimeoutMillis: o.connectTimeoutMs,
        maxLifetimeSeconds: o.maxLifetimeMs / 1000,
        maxUses: Infinity,
        allowExitOnIdle: true,
      })
    }

    get totalCount(): number {
      return this.holder.stats().open
    }
    /** Connections open and not in use (connections being opened count here too). */
    get idleCount(): number {
      const { open, inUse } = this.holder.stats()
      return open - inUse
    }
    get waitingCount(): number {
      return this.holder.stats().waiting
    }
    /** Always 0: an expired connection is closed when it is released or found, never kept. */
    get expiredCount(): number {
      return 0
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
      if (this.#ending) throw new ClosedError()
      const used: Array<{ client: NodePgClient; err: unknown }> = []
      try {
        return await this.holder.run(async (client) => {
          const attempt = { client, err: undefined as unknown }
          used.push(attempt)
          this.#handOut(client)
          try {
            return await (client.query as (config: unknown, values?: unknown) => Promise<unknown>)(config, values)
          } catch (err) {
            attempt.err = err
            // This call is this one statement: a client that refused it sent nothing at all.
            throw sentNothing(err)
          }
        }, { idempotent: query.idempotent })
      } finally {
        for (const { client, err } of used) this.#released(client, err)
      }
    }

    /** Checks pg's query arguments before any I/O; pg's own TypeErrors would come from inside a call. */
    #parse(config: unknown, values: unknown): { idempotent: boolean } {
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
      return { idempotent: marked || (predicate !== undefined && predicate({ text, values: values as unknown[] | undefined }) === true) }
    }

    /** Checks a client out until `client.release()`; the same lifecycle as `query`, never replayed. */
    connect(callback?: unknown): Promise<PooledClient<NodePgClient>> | undefined {
      if (callback !== undefined && typeof callback !== 'function') throw new InvalidOptionError('callback', 'expected a function')
      const checkout = this.#checkout()
      if (callback === undefined) return checkout
      checkout.then(
        (client) => queueMicrotask(() => (callback as Listener)(undefined, client, client.release)),
        (err: unknown) => queueMicrotask(() => (callback as Listener)(err, undefined, () => {})),
      )
      return undefined
    }

    async #checkout(): Promise<PooledClient<NodePgClient>> {
      if (this.#ending) throw new ClosedError()
      const lease = await this.holder.lease()
      const client = lease.client as PooledClient<NodePgClient>
      this.#handOut(client)
      let released = false
      // A property of the client, as pg-pool sets it: Drizzle and Prisma call client.release().
      client.release = (err?: Error | boolean) => {
        if (released) return
        released = true
        const back = err ? (lease.destroy(), Promise.resolve()) : lease.release().catch(() => {})
        void back.then(() => this.#released(client, err instanceof Error ? err : undefined))
      }
      return client
    }

    /** Closes the holder's connections once calls in flight are done. Calling it again returns the same promise. */
    end(callback?: unknown): Promise<void> | undefined {
      if (callback !== undefined && typeof callback !== 'function') throw new InvalidOptionError('callback', 'expected a function')
      this.#ending = true
      this.#ended ??= this.holder.close().then(() => void (this.#endedDone = true))
      if (callback === undefined) return this.#ended
      void this.#ended.then(() => queueMicrotask(callback as Listener))
      return undefined
    }

    /** pg's 'connect' the first time a client is handed out, 'acquire' every time. */
    #handOut(client: NodePgClient): void {
      if (!this.#seen.has(client)) {
        this.#seen.add(client)
        // pg-pool re-emits an idle client's error on the pool, and a pool without an 'error'
        // listener then crashes the process. Here it is only passed on to listeners there are.
        client.on('error', (err: unknown) => {
          if (!this.#busy.has(client) && this.listenerCount('error') > 0) this.#tell('error', safeCause(err, this.#settings.secrets), client)
        })
        client.on('end', () => this.#tell('remove', client))
        this.#tell('connect', client)
      }
      this.#busy.add(client)
      this.#tell('acquire', client)
    }

    #released(client: NodePgClient, err: unknown): void {
      this.#busy.delete(client)
      this.#tell('release', err instanceof Error ? safeCause(err, this.#settings.secrets) : undefined, client)
    }

    /** Emits to the caller's listeners; one that throws must not break the call that emitted. */
    #tell(event: string, ...args: unknown[]): void {
      try {
        this.emit(event, ...args)
      } catch {}
    }
  }
  classes.set(LibraryPool, WarmPool as never)
  return WarmPool as never
}
