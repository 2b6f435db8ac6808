/**
 * Durable Object mode. All requests to one Durable Object share its I/O context, so it is the one
 * place in Workers where a connection may outlive a request. This object keeps a holder (the
 * core lifecycle: lazy revalidation, bounded ping, lifetime, idle close) and serves queries over
 * Workers RPC. An idle connection is closed by the holder's timer and, as a backstop, by a
 * storage alarm at the holder's next deadline. The runtime may evict the object at any time
 * (seen locally after 60-140 s idle, socket open or not), so nothing here depends on the
 * instance surviving: a new instance simply connects again.
 * @module
 */
import { DurableObject } from 'cloudflare:workers'
import type { Holder, HolderStats, RunOptions } from '../holder.js'
import type { Sql } from '../drivers/postgres.js'
import { envOptionNames, optionsFromEnv } from '../env.js'
import { checkBatch, checkQuery, toQueryResult, type QueryOptions, type QueryResult, type Reply, type Statement } from './protocol.js'
import { encodeError } from './remote-errors.js'
import { holderFor, workerEnvNames, type ConnectionSettings } from './settings.js'

/** The bindings the default `connection()` reads: DATABASE_URL and the WARMCONN_* overrides. */
export type WarmconnEnv = { DATABASE_URL?: string } & { [K in keyof typeof envOptionNames]?: string }

/** One holder object's stats: the holder's counters, and when its idle-close alarm is due (epoch ms). */
export interface ObjectStats extends HolderStats {
  alarmAt: number | null
}

// An alarm that fires before the deadline costs one wake-up (alarm() re-arms it), one that fires
// after it holds an idle connection too long. So the alarm is rewritten only when none is set or
// the deadline moved earlier than it by more than this, which keeps storage writes off the hot path.
const ALARM_SLACK_MS = 1_000

/**
 * The object's default `callTimeoutMs`, tighter than the library's 30 s: every request to the
 * object shares its one connection, so a call stuck on a silent network (or on a reset that the
 * Workers socket never reports) would stall all of them. It stays below `acquireTimeoutMs`, so
 * callers queued behind a stuck call get a new connection instead of timing out themselves.
 * Raise it with WARMCONN_CALL_TIMEOUT_MS, `connection()`, or `{ timeoutMs }` per query.
 */
export const OBJECT_CALL_TIMEOUT_MS = 5_000

/**
 * Export it (or a subclass) from your Worker and bind it as a Durable Object; call it through
 * `warmClient`. Override `connection()` to connect elsewhere or pass postgres.js options.
 * @example
 * export { WarmconnDurableObject } from 'warmconn/workers'
 * // wrangler.toml: [[durable_objects.bindings]] name = "WARMCONN", class_name = "WarmconnDurableObject"
 */
export class WarmconnDurableObject<Env extends WarmconnEnv = WarmconnEnv> extends DurableObject<Env> {
  #db: { holder: Holder<Sql>; secrets: readonly string[] } | undefined
  /** The alarm this instance set, if any; undefined in a new instance (one extra write). */
  #alarmAt: number | undefined

  /** Where and how to connect; read once per instance, on the first call. */
  protected connection(): ConnectionSettings {
    return { url: this.env.DATABASE_URL, options: optionsFromEnv(this.env, { allow: workerEnvNames }) }
  }

  /**
   * Called once per instance with the holder it just made, before its first call: the place to
   * watch it, e.g. `instrument(holder, { meterProvider })` from warmconn/otel.
   */
  protected onHolder(_holder: Holder<Sql>): void {}

  /**
   * Runs one statement; rows come back as plain objects with `count` and `command`. Concurrent
   * requests' statements are pipelined on the object's connection (holder.shared); one that
   * opens a transaction or changes the session gets the connection to itself (and a reset after).
   */
  query(text: string, params: unknown[] = [], options: QueryOptions = {}): Promise<Reply<QueryResult>> {
    return this.#serve(
      () => checkQuery(text, params, options),
      async (holder) => {
        return toQueryResult(await holder.statement(text, (sql) => sql.unsafe(text, params as never[]), runOptions(options)))
      },
    )
  }

  /** Runs the statements in one transaction: all of them commit, or none. */
  batch(statements: Statement[], options: QueryOptions = {}): Promise<Reply<QueryResult[]>> {
    const inOneTransaction = (sql: Sql): Promise<QueryResult[]> =>
      sql.begin(async (tx) => {
        const results: QueryResult[] = []
        for (const { text, params = [] } of statements) results.push(toQueryResult(await tx.unsafe(text, params as never[])))
        return results
      })
    return this.#serve(() => checkBatch(statements, options), (holder) => holder.run(inOneTransaction, runOptions(options)))
  }

  stats(): Promise<Reply<ObjectStats>> {
    return this.#serve(noCheck, async (holder) => ({ ...holder.stats(), alarmAt: await this.ctx.storage.getAlarm() }))
  }

  /** Closes what is idle past its deadline, then re-arms for the next one. */
  override async alarm(): Promise<void> {
    this.#alarmAt = undefined
    // A new instance has no holder: the connections of an evicted one went with it.
    if (!this.#db) return
    await this.#db.holder.sweep()
    await this.#armAlarm()
  }

  /** Arguments are checked first, before the holder is made or any I/O: a bad call fails as itself. */
  async #serve<T>(check: () => void, fn: (holder: Holder<Sql>) => Promise<T>): Promise<Reply<T>> {
    try {
      check()
      if (!this.#db) {
        this.#db = holderFor(withObjectDefaults(this.connection()))
        this.onHolder(this.#db.holder)
      }
      return { ok: true, value: await fn(this.#db.holder) }
    } catch (err) {
      return { ok: false, error: encodeError(err, this.#db?.secrets ?? []) }
    } finally {
      await this.#armAlarm()
    }
  }

  async #armAlarm(): Promise<void> {
    const due = this.#db?.holder.nextDeadline()
    if (due === undefined) return
    if (this.#alarmAt !== undefined && this.#alarmAt <= due + ALARM_SLACK_MS) return
    this.#alarmAt = due
    try {
      await this.ctx.storage.setAlarm(due)
    } catch {
      // The holder's own timer still closes the connection; the next call tries again.
      this.#alarmAt = undefined
    }
  }
}

function withObjectDefaults(settings: ConnectionSettings): ConnectionSettings {
  return { ...settings, options: { callTimeoutMs: OBJECT_CALL_TIMEOUT_MS, ...settings.options } }
}

const noCheck = (): void => {}

/** Only the known fields cross into the holder (checkQuery has validated them). */
function runOptions(options: QueryOptions | undefined): RunOptions {
  const out: RunOptions = { idempotent: options?.idempotent === true }
  if (options?.timeoutMs !== undefined) out.timeoutMs = options.timeoutMs
  return out
}
