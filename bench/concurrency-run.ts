/**
 * The concurrency table (issue 19), for `npm run bench` and `npm run bench:concurrency`: many
 * concurrent callers in one process (Lambda Managed Instances, Vercel Fluid, a Node server) on an
 * equal connection budget (2), each making one-statement idempotent reads back to back for a
 * fixed time per round (the subjects' rounds interleaved), at simulated round trips of 0, 4 and
 * 20 ms (the latency proxy). Per point: calls/s (median of the rounds) and p99 call latency, for
 * raw postgres.js (`max: 2`, which pipelines), warmconn's exclusive `run` and pipelined `shared`,
 * pg.Pool and warmPool; then a Durable Object shard in Miniflare (the example Worker's GET /db,
 * one object, one connection), pipelined or one statement at a time. The targets are reported as
 * ratios measured in the same run.
 */
import pg from 'pg'
import postgres from 'postgres'
import { Holder } from '../src/index.js'
import { postgresDriver } from '../src/drivers/postgres.js'
import { pgDriver, warmPool } from '../src/drivers/pg.js'
import type { TestPg } from '../test/harness/pg.js'
import type { FaultProxy } from '../test/harness/proxy.js'
import { startWorker } from '../test/harness/worker.js'
import { percentile, summarize } from './stats.js'

const CONNECTIONS = 2
// The subjects the targets compare, named once for the table and the report.
const RAW = 'raw postgres.js (max 2)'
const SHARED = 'warmconn shared (pipelined)'
const PG_POOL = 'pg.Pool (max 2)'
const WARM_POOL = 'warmPool'
const SHARD = 'Durable Object shard, shared (default)'
const SHARD_ONE_AT_A_TIME = 'Durable Object shard, maxPipelined 1'
// A round lasts a fixed time, every caller calling back to back until it is up: a round of a few
// calls per caller would count whole round trips, and one more round trip in a round of five
// moves the rate by 15% (what two earlier runs read as 0.88x at 20 ms).
const roundMs = (rtt: number, quick: boolean) => (quick ? 0.5 : 1) * Math.max(400, 40 * rtt)

/** Calls `read` from `c` callers back to back for `ms`; the calls finished per second, each call's latency. */
async function round(c: number, ms: number, read: (i: number, k: number) => Promise<unknown>, latencies: number[]): Promise<number> {
  const started = performance.now()
  const end = started + ms
  let done = 0
  await Promise.all(Array.from({ length: c }, async (_, i) => {
    for (let k = 0; performance.now() < end; k++) {
      const t = performance.now()
      await read(i, k)
      latencies.push(performance.now() - t)
      done++
    }
  }))
  return done / ((performance.now() - started) / 1000)
}
const quiet = { onnotice: () => {} }

type Read = (n: number) => Promise<unknown>
interface Subject { name: string; setup(url: string): Promise<{ read: Read; close(): Promise<void> }> }

const subjects: Subject[] = [
  { name: RAW, async setup(url) {
    const sql = postgres(url, { max: CONNECTIONS, fetch_types: false, ...quiet })
    return { read: (n) => sql`select ${n}::int as n`, close: () => sql.end({ timeout: 1 }) }
  } },
  { name: 'warmconn run (exclusive)', async setup(url) {
    const h = new Holder(postgresDriver(url, quiet), { maxConnections: CONNECTIONS, acquireTimeoutMs: 60_000 })
    return { read: (n) => h.run((sql) => sql`select ${n}::int as n`, { idempotent: true }), close: () => h.close() }
  } },
  { name: SHARED, async setup(url) {
    const h = new Holder(postgresDriver(url, quiet), { maxConnections: CONNECTIONS, acquireTimeoutMs: 60_000 })
    return { read: (n) => h.shared((sql) => sql`select ${n}::int as n`, { idempotent: true }), close: () => h.close() }
  } },
  { name: 'warmconn pg shared (pipelined)', async setup(url) {
    const h = new Holder(pgDriver(url), { maxConnections: CONNECTIONS, acquireTimeoutMs: 60_000 })
    return { read: (n) => h.shared((client) => client.query('select $1::int as n', [n]), { idempotent: true }), close: () => h.close() }
  } },
  { name: PG_POOL, async setup(url) {
    const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS })
    return { read: (n) => pool.query('select $1::int as n', [n]), close: () => pool.end() }
  } },
  { name: WARM_POOL, async setup(url) {
    const pool = warmPool(url, { maxConnections: CONNECTIONS, acquireTimeoutMs: 60_000, idempotent: () => true })
    return { read: (n) => pool.query('select $1::int as n', [n]), close: () => pool.end() }
  } },
]

export interface ConcurrencyRow { subject: string; callers: number; rtt: number; perSecond: number; p50: number; p99: number }
export interface ConcurrencyRun { quick: boolean; connections: number; rounds: number; roundMs: { at0: number; at20: number }; rows: ConcurrencyRow[] }

function row(subject: string, callers: number, rtt: number, rates: number[], latencies: number[]): ConcurrencyRow {
  const { p50, p99 } = summarize(latencies)
  return { subject, callers, rtt, perSecond: percentile(rates, 50), p50, p99 }
}

/** Runs every point through `proxy` (in front of `db`); `tick` hears of each finished point. */
export async function runConcurrency(db: TestPg, proxy: FaultProxy, quick: boolean, tick: (label: string) => void = () => {}): Promise<ConcurrencyRun> {
  const callers = quick ? [1, 64] : [1, 16, 64]
  const rtts = quick ? [0, 4] : [0, 4, 20]
  const rounds = quick ? 3 : 7
  const rows: ConcurrencyRow[] = []
  for (const rtt of rtts) {
    proxy.setLatencyMs(rtt)
    const url = db.urlFor({ port: proxy.port })
    for (const c of callers) {
      // Every subject set up at once and their rounds interleaved, so a spell of background load
      // or a CPU clock change falls on all of them, not on whichever ran then.
      const live = await Promise.all(subjects.map(async (subject) => {
        const { read, close } = await subject.setup(url)
        await Promise.all(Array.from({ length: CONNECTIONS * 2 }, (_, i) => read(i))) // warm: connects, prepares
        return { subject, read, close, rates: [] as number[], latencies: [] as number[] }
      }))
      for (let r = 0; r < rounds; r++) {
        for (const s of live) s.rates.push(await round(c, roundMs(rtt, quick), (i, k) => s.read(i * 1000 + k % 1000), s.latencies))
      }
      for (const { subject, close, rates, latencies } of live) {
        await close()
        rows.push(row(subject.name, c, rtt, rates, latencies))
        tick(`${rtt} ms, ${c} callers, ${subject.name}: ${Math.round(rows.at(-1)!.perSecond)} calls/s`)
      }
    }
  }

  // A Durable Object shard: the example Worker's GET /db (a query and a stats call over RPC to
  // one object holding one connection) in Miniflare, concurrent requests pipelined on the
  // object's connection (the default) or one at a time on it (maxPipelined 1, as before).
  for (const [label, extra] of [[SHARD, {}], [SHARD_ONE_AT_A_TIME, { WARMCONN_MAX_PIPELINED: '1' }]] as const) {
    const worker = await startWorker({ entry: 'functions/worker.ts', bindings: { DATABASE_URL: db.urlFor({ port: proxy.port }), ...extra } })
    try {
      for (const rtt of rtts) {
        proxy.setLatencyMs(rtt)
        for (const c of callers) {
          for (let i = 0; i < 3; i++) await worker.fetch('GET', '/db')
          const rates: number[] = []
          const latencies: number[] = []
          for (let r = 0; r < rounds; r++) {
            rates.push(await round(c, roundMs(rtt, quick), async () => {
              const res = await worker.fetch('GET', '/db')
              if (res.status !== 200) throw new Error(`GET /db answered ${res.status}`)
            }, latencies))
          }
          rows.push(row(label, c, rtt, rates, latencies))
          tick(`${rtt} ms, ${c} callers, ${label}: ${Math.round(rows.at(-1)!.perSecond)} requests/s`)
        }
      }
    } finally {
      await worker.dispose()
    }
  }
  return { quick, connections: CONNECTIONS, rounds, roundMs: { at0: roundMs(0, quick), at20: roundMs(20, quick) }, rows }
}

/** The table and the targets (issue 19) as markdown lines, for the console and bench/results.md. */
export function concurrencyReport(run: ConcurrencyRun): string[] {
  const { rows } = run
  const callers = [...new Set(rows.map((r) => r.callers))]
  const rtts = [...new Set(rows.map((r) => r.rtt))]
  const find = (s: string, c: number, rtt: number) => rows.find((r) => r.subject === s && r.callers === c && r.rtt === rtt)!
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met')
  const out = [
    `Concurrency (${run.quick ? 'quick, ' : ''}${run.connections} connections each; calls/s is the median of ${run.rounds} rounds of ${run.roundMs.at0} ms (${run.roundMs.at20} ms at 20 ms), every caller calling back to back; p50/p99 per call in ms)`,
    '',
    '| round trip | callers | subject | calls/s | p50 | p99 |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.rtt} ms | ${r.callers} | ${r.subject} | ${Math.round(r.perSecond)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`),
    '',
    'Targets (issue 19), ratios in this run:',
  ]
  for (const rtt of rtts) for (const c of callers) {
    const raw = find(RAW, c, rtt)
    const shared = find(SHARED, c, rtt)
    const throughput = shared.perSecond / raw.perSecond
    const p50 = shared.p50 / raw.p50
    const latency = c === 1 ? `, p50 ${p50.toFixed(2)}x (target <= 1.05)` : ''
    out.push(`- ${rtt} ms, ${c} callers: shared ${throughput.toFixed(2)}x raw postgres.js throughput (target >= 0.90)${latency} -> ${verdict(throughput >= 0.9 && (c !== 1 || p50 <= 1.05))}`)
  }
  for (const rtt of rtts) for (const c of callers.filter((x) => x > 1)) {
    const pool = find(PG_POOL, c, rtt)
    const warm = find(WARM_POOL, c, rtt)
    const ratio = warm.perSecond / pool.perSecond
    out.push(`- ${rtt} ms, ${c} callers: warmPool ${ratio.toFixed(2)}x pg.Pool throughput${c === 64 && rtt === 4 ? ` (target >= 3) -> ${verdict(ratio >= 3)}` : ''}`)
  }
  for (const rtt of rtts) for (const c of callers.filter((x) => x > 1)) {
    const shard = find(SHARD, c, rtt)
    const one = find(SHARD_ONE_AT_A_TIME, c, rtt)
    out.push(`- ${rtt} ms, ${c} callers: a Durable Object shard ${Math.round(shard.perSecond)} requests/s pipelined vs ${Math.round(one.perSecond)} one at a time (${(shard.perSecond / one.perSecond).toFixed(2)}x)`)
  }
  return out
}
