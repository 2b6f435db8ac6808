/**
 * `npm run bench [-- --quick]`: one run, one machine, one database. Compares, per invocation,
 * (a) connect per invocation, (b) a global connection pinged before every use, (c) warmconn and
 * (d) a raw held connection (one round trip, the physical limit), at simulated network round
 * trips of 0, 2 and 10 ms (a latency-injecting proxy) and with TLS on. Prints p50/p99 and ratios
 * to (d); then the concurrency table (bench/concurrency-run.ts: many callers on 2 connections,
 * calls/s and p99). Writes bench/results.json, bench/results.md and bench/chart.svg.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startPostgres } from '../test/harness/pg.js'
import { startProxy } from '../test/harness/proxy.js'
import { buildLambdas, LAMBDA_PATTERNS, runLambda } from './lambda.js'
import { INPROCESS_PATTERNS, runInProcess } from './inprocess.js'
import { chart } from './chart.js'
import { progress } from './progress.js'
import { enableTls, makeCa } from '../test/fixtures/security-tls.js'
import { runWorkers, WORKER_PATTERNS } from './workers.js'
import { concurrencyReport, runConcurrency, type ConcurrencyRun } from './concurrency-run.js'

const quick = process.argv.includes('--quick')
// `--only=<regexp>`: just the in-process patterns it matches, printed, no files written (a quick
// look at a few rows; the published results come from a whole run).
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length)
const selected = (pattern: string) => only === undefined || new RegExp(only).test(pattern)
const n = quick ? 15 : 150
const distances = quick ? [0, 2, 10] : [0, 2, 10]
const tlsDistance = 2

interface Row {
  env: 'node' | 'lambda' | 'workers'
  distanceMs: number
  tls: boolean
  pattern: string
  n: number
  p50: number
  p99: number
  coldMs?: number
  /** Client-to-server flights per invocation, counted at the latency proxy. */
  flights?: number
}

const rows: Row[] = []
let concurrency: ConcurrencyRun | undefined
const pg = await startPostgres()
const tls = makeCa()
const dir = mkdtempSync(join(tmpdir(), 'warmconn-bench-'))
const proxy = await startProxy({ host: pg.host, port: pg.port })
const cleanup = async () => {
  await proxy.close().catch(() => {})
  await pg.stop().catch(() => {})
  tls.cleanup()
  rmSync(dir, { recursive: true, force: true })
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

try {
  // SSL is switched on with a reload; plain connections stay allowed beside it.
  await enableTls(pg, tls)

  const bundles = await buildLambdas(dir)
  const lambdaCases = [...distances.map((d) => ({ d, tls: false })), { d: tlsDistance, tls: true }]
  const workerCases = distances.map((d) => ({ d, tls: false }))
  const pgPatterns = Object.values(INPROCESS_PATTERNS).filter((p) => p.pg).length
  const total = n * (lambdaCases.length * (Object.keys(LAMBDA_PATTERNS).length + Object.keys(INPROCESS_PATTERNS).length) - pgPatterns + workerCases.length * Object.keys(WORKER_PATTERNS).length)
  const bar = progress(total)

  for (const c of lambdaCases) {
    proxy.setLatencyMs(c.d)
    const url = pg.urlFor({ port: proxy.port })
    for (const [pattern, spec] of Object.entries(INPROCESS_PATTERNS)) {
      if (spec.pg && c.tls) continue // node-postgres rows: plain connections only
      if (!selected(pattern)) continue
      const ssl = c.tls ? { ca: tls.ca, servername: 'localhost' } : (false as const)
      const s = await runInProcess(spec, url, ssl, n, proxy.flights, () => bar.tick(`node ${c.d} ms${c.tls ? ' TLS' : ''} ${pattern}`))
      rows.push({ env: 'node', distanceMs: c.d, tls: c.tls, pattern, ...s })
    }
  }

  for (const c of only === undefined ? lambdaCases : []) {
    proxy.setLatencyMs(c.d)
    const url = pg.urlFor({ port: proxy.port })
    for (const [pattern, spec] of Object.entries(LAMBDA_PATTERNS)) {
      const env: Record<string, string> = { DATABASE_URL: url, ...spec.env }
      if (c.tls) env.BENCH_TLS_CA = tls.ca
      const s = await runLambda(bundles[spec.file]!, env, n, proxy.flights, () => bar.tick(`lambda ${c.d} ms${c.tls ? ' TLS' : ''} ${pattern}`))
      rows.push({ env: 'lambda', distanceMs: c.d, tls: c.tls, pattern, ...s })
    }
  }
  for (const c of only === undefined ? workerCases : []) {
    proxy.setLatencyMs(c.d)
    for (const s of await runWorkers(pg.urlFor({ port: proxy.port }), n, (label) => bar.tick(`workers ${c.d} ms ${label}`))) {
      rows.push({ env: 'workers', distanceMs: c.d, tls: false, ...s })
    }
  }
  bar.end()
  // Many callers at once (issue 19), on the same server and proxy, after the latency rows.
  if (only === undefined) concurrency = await runConcurrency(pg, proxy, quick, (label) => console.error(`concurrency: ${label}`))
  report()
} finally {
  await cleanup()
}

function report(): void {
  const groupKey = (r: Row) => `${r.env} / ${r.distanceMs} ms RTT${r.tls ? ' + TLS' : ''}`
  const out: string[] = []
  out.push(`warmconn benchmark (${quick ? 'quick, ' : ''}n=${n} per row; ms per invocation; ratio = p / the raw held connection (d), in Workers rows p / Durable Object)`)
  out.push('')
  out.push(`| environment | pattern | p50 | p99 | p50 ratio | p99 ratio | flights |`)
  out.push(`|---|---|---|---|---|---|---|`)
  for (const group of new Set(rows.map(groupKey))) {
    const members = rows.filter((r) => groupKey(r) === group)
    const base = members.find((r) => r.pattern === 'd raw held (limit)') ?? members.find((r) => r.pattern.startsWith('DO'))
    for (const r of members) {
      const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}x` : '-')
      out.push(`| ${group} | ${r.pattern} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${ratio(r.p50, base?.p50)} | ${ratio(r.p99, base?.p99)} | ${r.flights === undefined ? '-' : r.flights.toFixed(2)} |`)
    }
  }
  out.push('')
  out.push('Targets (issue 12), p50 ratios in this run:')
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met')
  for (const env of ['node', 'lambda'] as const) {
    const find = (d: number, p: string, tlsOn = false) => rows.find((r) => r.env === env && r.distanceMs === d && r.tls === tlsOn && r.pattern === p)
    for (const d of distances.filter((x) => x > 0)) {
      const stale = find(d, 'c warmconn, stale read')
      const raw = find(d, 'd raw held (limit)')
      if (stale && raw) out.push(`- ${env}: stale idempotent call at ${d} ms: ${(stale.p50 / raw.p50).toFixed(3)}x raw held (target <= 1.10), ${stale.flights?.toFixed(2)} vs ${raw.flights?.toFixed(2)} flights -> ${verdict(stale.p50 <= 1.1 * raw.p50)}`)
    }
    for (const c of [...distances.map((d) => [d, false] as const), [tlsDistance, true] as const]) {
      const cold = find(c[0], 'a warmconn, cold every call', c[1])
      const connect = find(c[0], 'a connect per call', c[1])
      if (cold && connect) out.push(`- ${env}: cold call at ${c[0]} ms${c[1] ? ' + TLS' : ''}: ${(cold.p50 / connect.p50).toFixed(3)}x raw connect-and-query (target <= 1.05), ${cold.flights?.toFixed(2)} vs ${connect.flights?.toFixed(2)} flights -> ${verdict(cold.p50 <= 1.05 * connect.p50)}`)
    }
    for (const c of [...distances.map((d) => [d, false] as const), [tlsDistance, true] as const]) {
      const w = find(c[0], 'c warmconn', c[1])
      const d = find(c[0], 'd raw held (limit)', c[1])
      const bound = c[0] === 0 && !c[1] ? 1.05 : 1.1
      if (w && d) out.push(`- ${env}: warm call at ${c[0]} ms${c[1] ? ' + TLS' : ''}: ${(w.p50 / d.p50).toFixed(3)}x raw held (${(1000 * (w.p50 - d.p50)).toFixed(0)} us; target <= ${bound.toFixed(2)}) -> ${verdict(w.p50 <= bound * d.p50)}`)
    }
  }
  for (const d of distances) {
    const find = (p: string) => rows.find((r) => r.env === 'node' && r.distanceMs === d && !r.tls && r.pattern === p)
    const plain = find('pg: pg.Pool')
    const warm = find('pg: warmPool')
    const dPlain = find('pg: Drizzle + pg.Pool')
    const dWarm = find('pg: Drizzle + warmPool')
    const perCall = find('pg: a Client per call')
    if (plain && warm && dPlain && dWarm && perCall) {
      out.push(`- node-postgres at ${d} ms: warmPool ${(warm.p50 / plain.p50).toFixed(3)}x pg.Pool; Drizzle + warmPool ${(dWarm.p50 / dPlain.p50).toFixed(3)}x Drizzle + pg.Pool; ${(perCall.p50 / warm.p50).toFixed(1)}x faster than a Client per call`)
    }
  }
  for (const d of distances.filter((x) => x > 0)) {
    const durable = rows.find((r) => r.env === 'workers' && r.distanceMs === d && r.pattern.startsWith('DO'))
    const perRequest = rows.find((r) => r.env === 'workers' && r.distanceMs === d && r.pattern.startsWith('per-request'))
    if (durable && perRequest) out.push(`- Durable Object vs per-request at ${d} ms: ${durable.p50.toFixed(2)} vs ${perRequest.p50.toFixed(2)} ms -> ${durable.p50 < perRequest.p50 ? 'met' : 'NOT met'}`)
  }
  if (concurrency) out.push('', ...concurrencyReport(concurrency))
  const text = out.join('\n')
  console.log(`\n${text}`)
  if (only !== undefined) return
  const suffix = quick ? '-quick' : ''
  writeFileSync(join('bench', `results${suffix}.json`), JSON.stringify({ date: new Date().toISOString(), quick, n, node: process.version, rows, concurrency }, null, 2) + '\n')
  writeFileSync(join('bench', `results${suffix}.md`), text + '\n')
  writeFileSync(join('bench', `chart${suffix}.svg`), chart(rows.map((r) => ({ group: groupKey(r), pattern: r.pattern, p50: r.p50 })), 'warmconn: p50 latency per invocation'))
  console.log(`\nwrote bench/results${suffix}.json, bench/results${suffix}.md, bench/chart${suffix}.svg`)
}
