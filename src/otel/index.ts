/**
 * OpenTelemetry metrics for a holder (`warmconn/otel`): the database client connection-pool
 * instruments of the semantic conventions (`db.client.connection.*`) and warmconn's own counters
 * (`warmconn.*`), for any driver. Nothing here runs unless this module is imported and
 * `instrument()` called: the holder builds no event payload nobody listens to.
 * @module
 */
import { metrics, type Attributes, type BatchObservableCallback, type MeterProvider, type Observable } from '@opentelemetry/api'
import { InvalidOptionError } from '../errors.js'
import type { Holder, HolderStats } from '../holder.js'
import { describe } from '../options.js'
import { CLOSE_REASON, CLOSES, DURATIONS, GAUGES, OWN_COUNTERS, POOL_NAME, SECONDS_BUCKETS, SERVER_IDLE_CLOSES, STATE, TIMEOUTS } from './names.js'
import { poolNameOf } from './pool-name.js'

export { poolNameOf } from './pool-name.js'

export interface InstrumentOptions {
  /** Where the instruments are created; default the global one (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider
  /** `db.client.connection.pool.name`; default `host:port/database` (never the user or password). */
  poolName?: string
}

/** A holder, or anything that has one: the pools of `warmconn/pg` and `warmconn/neon` (`pool.holder`). */
export type Instrumentable<C> = Holder<C> | { readonly holder: Holder<C> }

/** Idempotent: unregisters every callback and listener `instrument` added. */
export type StopInstrumenting = () => void

const OPTION_KEYS = new Set(['meterProvider', 'poolName'])
/** The instrumentation scope the meter is named for. */
export const METER_NAME = 'warmconn'

/**
 * Reports a holder's pool metrics to OpenTelemetry until the returned function is called. The
 * gauges and counters are read from `holder.stats()` when the SDK collects (no cost per call);
 * the histograms are recorded from the holder's events. Without `meterProvider` it uses the
 * global one as it is at this call: register the SDK first (the API does not forward a provider
 * registered later). Calling it again for the same holder and provider returns the same stop.
 * @example
 * import { instrument } from 'warmconn/otel'
 * const db = warmPostgres(process.env.DATABASE_URL)
 * const stop = instrument(db) // the global meter provider; pool name host:port/database
 */
export function instrument<C>(target: Instrumentable<C>, options: InstrumentOptions = {}): StopInstrumenting {
  const holder = holderOf(target)
  checkOptions(options)
  const poolName = options.poolName ?? poolNameOf(holder.target)
  const provider = options.meterProvider ?? metrics.getMeterProvider()
  // Called again for the same holder and provider (say, inside a handler, once per warm
  // invocation): the first registration stands, so nothing is counted twice.
  const registered = instrumented.get(holder) ?? new Map<MeterProvider, Registration>()
  instrumented.set(holder, registered)
  const earlier = registered.get(provider)
  if (earlier) {
    if (earlier.poolName !== poolName) throw new InvalidOptionError('poolName', `this holder already reports to this meter provider as "${earlier.poolName}"; call the stop function instrument() returned first`)
    return earlier.stop
  }
  const meter = provider.getMeter(METER_NAME)
  const pool: Attributes = { [POOL_NAME]: poolName }
  const idle: Attributes = { ...pool, [STATE]: 'idle' }
  const used: Attributes = { ...pool, [STATE]: 'used' }

  const gauge = (g: { name: string; unit: string; description: string }) => meter.createObservableUpDownCounter(g.name, { unit: g.unit, description: g.description })
  const count = gauge(GAUGES.count)
  const idleMax = gauge(GAUGES.idleMax)
  const idleMin = gauge(GAUGES.idleMin)
  const max = gauge(GAUGES.max)
  const limit = gauge(GAUGES.limit)
  const pending = gauge(GAUGES.pending)
  const own = Object.entries(OWN_COUNTERS).map(([name, c]) => ({
    stat: c.stat as keyof HolderStats,
    counter: meter.createObservableCounter(`warmconn.${name}`, { unit: c.unit, description: c.description }),
  }))
  const closes = meter.createObservableCounter(CLOSES.name, { unit: CLOSES.unit, description: CLOSES.description })
  const reasons = (['idle', 'lifetime', 'broken'] as const).map((reason) => ({ attributes: { ...pool, [CLOSE_REASON]: reason }, stat: CLOSE_STATS[reason] }))
  const maxConnections = holder.options.maxConnections

  const observe: BatchObservableCallback = (result) => {
    const s = holder.stats()
    // "used": every connection that is not waiting in the holder, i.e. also one being opened or
    // checked for a caller; "idle": ready to be handed out at once.
    result.observe(count, s.idle, idle)
    result.observe(count, s.open - s.idle, used)
    // The holder keeps every connection it opened until it idles out: up to maxConnections idle, no minimum.
    result.observe(idleMax, maxConnections, pool)
    result.observe(idleMin, 0, pool)
    result.observe(max, maxConnections, pool)
    result.observe(limit, maxConnections, pool)
    result.observe(pending, s.waiting, pool)
    for (const { stat, counter } of own) result.observe(counter, s[stat], pool)
    for (const { attributes, stat } of reasons) result.observe(closes, s[stat], attributes)
  }
  const observables: Observable[] = [count, idleMax, idleMin, max, limit, pending, closes, ...own.map((o) => o.counter)]
  meter.addBatchObservableCallback(observe, observables)

  const histogram = (d: { name: string; unit: string; description: string }) =>
    meter.createHistogram(d.name, { unit: d.unit, description: d.description, advice: { explicitBucketBoundaries: SECONDS_BUCKETS } })
  const createTime = histogram(DURATIONS.create)
  const waitTime = histogram(DURATIONS.wait)
  const useTime = histogram(DURATIONS.use)
  const timeouts = meter.createCounter(TIMEOUTS.name, { unit: TIMEOUTS.unit, description: TIMEOUTS.description })
  const serverIdleCloses = meter.createCounter(SERVER_IDLE_CLOSES.name, { unit: SERVER_IDLE_CLOSES.unit, description: SERVER_IDLE_CLOSES.description })
  // When each connection was handed out: one caller holds a connection at a time, so its id is the key.
  const borrowedAt = new Map<number, number>()

  const unsubscribe = [
    holder.on('connectSuccess', (e) => createTime.record(e.durationMs / 1000, pool)),
    holder.on('acquire', (e) => {
      waitTime.record(e.waitMs / 1000, pool)
      borrowedAt.set(e.connectionId, performance.now())
    }),
    holder.on('release', (e) => {
      const since = borrowedAt.get(e.connectionId)
      if (since === undefined) return // handed out before instrument() was called
      borrowedAt.delete(e.connectionId)
      useTime.record((performance.now() - since) / 1000, pool)
    }),
    holder.on('acquireTimeout', () => timeouts.add(1, pool)),
    // The code is known when the driver reports it: pg and neon do, postgres.js does not.
    holder.on('closeBroken', (e) => e.code === '57P05' && serverIdleCloses.add(1, pool)),
  ]
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    meter.removeBatchObservableCallback(observe, observables)
    for (const off of unsubscribe) off()
    borrowedAt.clear()
    registered.delete(provider)
  }
  registered.set(provider, { poolName, stop })
  return stop
}

interface Registration {
  poolName: string
  stop: StopInstrumenting
}
/** Each holder's live registrations, by meter provider. */
const instrumented = new WeakMap<object, Map<MeterProvider, Registration>>()

const CLOSE_STATS = { idle: 'closedIdle', lifetime: 'closedLifetime', broken: 'closedBroken' } as const satisfies Record<string, keyof HolderStats>

function holderOf<C>(target: Instrumentable<C>): Holder<C> {
  const candidate = target !== null && typeof target === 'object' && 'holder' in target ? target.holder : target
  if (!isHolder(candidate)) throw new InvalidOptionError('holder', `instrument() expects a holder (warmPostgres, warmPg, warmNeon) or a pool with .holder (warmPool), got ${describe(target)}`)
  return candidate
}

function isHolder<C>(h: unknown): h is Holder<C> {
  const o = h as Partial<Holder<C>> | null
  return o !== null && typeof o === 'object' && typeof o.on === 'function' && typeof o.stats === 'function' && typeof o.target === 'string' && typeof o.options?.maxConnections === 'number'
}

function checkOptions(options: InstrumentOptions): void {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', `expected an object, got ${describe(options)}`)
  for (const key of Object.keys(options)) if (!OPTION_KEYS.has(key)) throw new InvalidOptionError(key, 'not an option of instrument(); it takes meterProvider and poolName')
  const { meterProvider, poolName } = options
  if (meterProvider !== undefined && typeof (meterProvider as Partial<MeterProvider>)?.getMeter !== 'function') {
    throw new InvalidOptionError('meterProvider', `expected an OpenTelemetry MeterProvider (with getMeter), got ${describe(meterProvider)}`)
  }
  if (poolName !== undefined && (typeof poolName !== 'string' || poolName === '')) throw new InvalidOptionError('poolName', `expected a non-empty string, got ${describe(poolName)}`)
}
