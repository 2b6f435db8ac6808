/**
 * `npm run bench:overhead`: warmconn's own cost per warm call.
 * 1. With no database at all (an in-memory driver, `fn` does nothing): the holder's bookkeeping.
 *    Also with warmconn/otel's instrument() on it (the real SDK behind it), in alternating rounds.
 * 2. Against a real PostgreSQL on loopback (no proxy): raw postgres.js held by hand vs
 *    `holder.run` on the same query (plain, without the server-side idle close, and with
 *    warmconn/otel), in alternating rounds, so all see the same machine. The
 *    paired difference per round is the overhead; its median is printed, in CPU time (this
 *    process only, less disturbed by other load than wall time) and in wall time.
 * The network benchmark (`npm run bench`) cannot show this: it drowns in the round trip.
 */
import postgres from 'postgres'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { Holder, type Driver } from '../src/index.js'
import { postgresDriver, type Sql } from '../src/drivers/postgres.js'
import { instrument } from '../src/otel/index.js'
import { startPostgres } from '../test/harness/pg.js'

// The real SDK, as an application would run it (exported once a minute, so never during a round).
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const meterProvider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })] })

const ROUNDS = 15
const CALLS = 100_000

const driver: Driver<object> = {
  name: 'memory',
  secrets: [],
  target: 'memory',
  async open() {
    return { client: {}, ping: async () => {}, inTransaction: () => false, rollback: async () => {}, close: async () => {}, destroy: () => {} }
  },
  classify: () => ({ kind: 'query', code: undefined, notSent: false }),
}

const memory = new Holder(driver)
const measured = new Holder(driver)
const stopMeasuring = instrument(measured, { meterProvider })
const fn = async (): Promise<number> => 1
for (const h of [memory, measured]) for (let i = 0; i < 50_000; i++) await h.run(fn) // warm up the JIT
const nsPerCall: number[][] = [[], []]
for (let r = 0; r < ROUNDS; r++) {
  for (const [k, h] of (r % 2 ? [[1, measured], [0, memory]] : [[0, memory], [1, measured]]) as Array<[number, Holder<object>]>) {
    const started = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) await h.run(fn)
    nsPerCall[k]!.push(Number(process.hrtime.bigint() - started) / CALLS)
  }
}
for (const [k, label] of ['holder.run, in-memory driver', 'holder.run, in-memory driver, with warmconn/otel'].entries()) {
  const ns = nsPerCall[k]!.sort((a, b) => a - b)
  console.log(`${label}: median ${Math.round(ns[ROUNDS >> 1]!)} ns a call, best ${Math.round(ns[0]!)} ns (${ROUNDS} x ${CALLS} calls)`)
}
stopMeasuring()
await memory.close()
await measured.close()

const PG_ROUNDS = 30
const PG_CALLS = 2_000
const pg = await startPostgres()
try {
  const quiet = { onnotice: () => {} }
  const raw = postgres(pg.url, { max: 1, fetch_types: false, ...quiet })
  // The default, and without the server-side idle close: with idle_session_timeout set, the
  // server arms a timer each time the session goes idle, work of its own on every statement.
  const holder = new Holder(postgresDriver(pg.url, quiet))
  const noServerIdle = new Holder(postgresDriver(pg.url, quiet), { serverIdleClose: false })
  const instrumented = new Holder(postgresDriver(pg.url, quiet))
  const stopInstrumented = instrument(instrumented, { meterProvider })
  const viaRaw = (n: number) => raw`select ${n}::int as n`
  const via = (h: Holder<Sql>) => (n: number) => h.run((sql) => sql`select ${n}::int as n`, { idempotent: true })
  const round = async (call: (n: number) => Promise<unknown>) => {
    const cpu = process.cpuUsage()
    const started = process.hrtime.bigint()
    for (let i = 0; i < PG_CALLS; i++) await call(i)
    const wall = Number(process.hrtime.bigint() - started) / PG_CALLS / 1000
    const used = process.cpuUsage(cpu)
    return { wall, cpu: (used.user + used.system) / PG_CALLS }
  }
  const calls = [viaRaw, via(holder), via(noServerIdle), via(instrumented)]
  const labels = ['warmconn (defaults)', 'warmconn, serverIdleClose: false', 'warmconn (defaults), with warmconn/otel']
  for (let i = 0; i < 3; i++) for (const call of calls) await round(call)
  const diffs = labels.map(() => [] as Array<{ cpu: number; wall: number }>)
  const rawWall: number[] = []
  for (let r = 0; r < PG_ROUNDS; r++) {
    // Rotate the order, so none always runs on a warmer machine.
    const order = calls.map((_, i) => (i + r) % calls.length)
    const out: Array<{ wall: number; cpu: number }> = []
    for (const i of order) out[i] = await round(calls[i]!)
    for (let k = 1; k < calls.length; k++) diffs[k - 1]!.push({ cpu: out[k]!.cpu - out[0]!.cpu, wall: out[k]!.wall - out[0]!.wall })
    rawWall.push(out[0]!.wall)
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`
  console.log(`warm call on loopback PostgreSQL, over raw postgres.js (median of ${PG_ROUNDS} rounds of ${PG_CALLS}; a raw call takes ${median(rawWall).toFixed(0)} us):`)
  for (const [i, label] of labels.entries()) {
    console.log(`  ${label}: ${signed(median(diffs[i]!.map((d) => d.cpu)))} us CPU here, ${signed(median(diffs[i]!.map((d) => d.wall)))} us wall`)
  }
  await raw.end()
  await holder.close()
  await noServerIdle.close()
  stopInstrumented()
  await instrumented.close()
} finally {
  await pg.stop()
  await meterProvider.shutdown()
}
