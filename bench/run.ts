/**
 * `npm run bench [-- --quick]`: one run, one machine, one database. Compares, per invocation,
 * (a) connect per invocation, (b) a global connection pinged before every use, (c) warmconn and
 * (d) a raw held connection (one round trip, the physical limit), at simulated network round
 * trips of 0, 2 and 10 ms (a latency-injecting proxy) and with TLS on. Prints p50/p99 and ratios
 * to (d), writes bench/results.json and bench/chart.svg.
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

const quick = process.argv.includes('--quick')
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
}

const rows: Row[] = []
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
  const total = n * (lambdaCases.length * (Object.keys(LAMBDA_PATTERNS).length + Object.keys(INPROCESS_PATTERNS).length) + workerCases.length * Object.keys(WORKER_PATTERNS).length)
  const bar = progress(total)

  for (const c of lambdaCases) {
    proxy.setLatencyMs(c.d)
    const url = pg.urlFor({ port: proxy.port })
    for (const [pattern, spec] of Object.entries(INPROCESS_PATTERNS)) {
      const ssl = c.tls ? { ca: tls.ca, servername: 'localhost' } : (false as const)
      const s = await runInProcess(spec, url, ssl, n, () => bar.tick(`node ${c.d} ms${c.tls ? ' TLS' : ''} ${pattern}`))
      rows.push({ env: 'node', distanceMs: c.d, tls: c.tls, pattern, ...s })
    }
  }

  for (const c of lambdaCases) {
    proxy.setLatencyMs(c.d)
    const url = pg.urlFor({ port: proxy.port })
    for (const [pattern, spec] of Object.entries(LAMBDA_PATTERNS)) {
      const env: Record<string, string> = { DATABASE_URL: url, ...spec.env }
      if (c.tls) env.BENCH_TLS_CA = tls.ca
      const s = await runLambda(bundles[spec.file]!, env, n, () => bar.tick(`lambda ${c.d} ms${c.tls ? ' TLS' : ''} ${pattern}`))
      rows.push({ env: 'lambda', distanceMs: c.d, tls: c.tls, pattern, ...s })
    }
  }
  for (const c of workerCases) {
    proxy.setLatencyMs(c.d)
    for (const s of await runWorkers(pg.urlFor({ port: proxy.port }), n, (label) => bar.tick(`workers ${c.d} ms ${label}`))) {
      rows.push({ env: 'workers', distanceMs: c.d, tls: false, ...s })
    }
  }
  bar.end()
  report()
} finally {
  await cleanup()
}

function report(): void {
  const groupKey = (r: Row) => `${r.env} / ${r.distanceMs} ms RTT${r.tls ? ' + TLS' : ''}`
  const out: string[] = []
  out.push(`warmconn benchmark (${quick ? 'quick, ' : ''}n=${n} per row; ms per invocation; ratio = p / the raw held connection (d), in Workers rows p / Durable Object)`)
  out.push('')
  out.push(`| environment | pattern | p50 | p99 | p50 ratio | p99 ratio |`)
  out.push(`|---|---|---|---|---|---|`)
  for (const group of new Set(rows.map(groupKey))) {
    const members = rows.filter((r) => groupKey(r) === group)
    const base = members.find((r) => r.pattern.startsWith('d ')) ?? members.find((r) => r.pattern.startsWith('DO'))
    for (const r of members) {
      const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}x` : '-')
      out.push(`| ${group} | ${r.pattern} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${ratio(r.p50, base?.p50)} | ${ratio(r.p99, base?.p99)} |`)
    }
  }
  out.push('')
  out.push('Targets:')
  for (const env of ['node', 'lambda'] as const) {
    const find = (d: number, p: string, tlsOn = false) => rows.find((r) => r.env === env && r.distanceMs === d && r.tls === tlsOn && r.pattern === p)
    for (const c of [...distances.map((d) => [d, false] as const), [tlsDistance, true] as const]) {
      const w = find(c[0], 'c warmconn', c[1])
      const d = find(c[0], 'd raw held (limit)', c[1])
      if (w && d) out.push(`- ${env}: warmconn p50 within 10% of raw at ${c[0]} ms${c[1] ? ' + TLS' : ''}: ${(100 * (w.p50 / d.p50 - 1)).toFixed(1)}% (${(w.p50 - d.p50).toFixed(3)} ms) -> ${w.p50 <= d.p50 * 1.1 ? 'met' : 'NOT met'}`)
    }
    const a2 = find(2, 'a connect per call')
    const c2 = find(2, 'c warmconn')
    if (a2 && c2) out.push(`- ${env}: warmconn vs connect per call at 2 ms: ${(a2.p50 / c2.p50).toFixed(1)}x faster -> ${a2.p50 >= 10 * c2.p50 ? 'met' : 'NOT met'}`)
    for (const d of distances.filter((x) => x > 0)) {
      const stale = find(d, 'c warmconn, stale')
      const hot = find(d, 'c warmconn')
      const ping = find(d, 'b ping every call')
      const raw = find(d, 'd raw held (limit)')
      // One extra exchange through the proxy, as the old pattern's ping measures it in the same run.
      if (stale && hot && ping && raw) out.push(`- ${env}: stale revalidation at ${d} ms: +${(stale.p50 - hot.p50).toFixed(2)} ms = ${((stale.p50 - hot.p50) / d).toFixed(2)} x the nominal RTT, ${((stale.p50 - hot.p50) / (ping.p50 - raw.p50)).toFixed(2)} x one measured ping exchange (target 1)`)
    }
  }
  for (const d of distances.filter((x) => x > 0)) {
    const durable = rows.find((r) => r.env === 'workers' && r.distanceMs === d && r.pattern.startsWith('DO'))
    const perRequest = rows.find((r) => r.env === 'workers' && r.distanceMs === d && r.pattern.startsWith('per-request'))
    if (durable && perRequest) out.push(`- Durable Object vs per-request at ${d} ms: ${durable.p50.toFixed(2)} vs ${perRequest.p50.toFixed(2)} ms -> ${durable.p50 < perRequest.p50 ? 'met' : 'NOT met'}`)
  }
  const text = out.join('\n')
  console.log(`\n${text}`)
  const suffix = quick ? '-quick' : ''
  writeFileSync(join('bench', `results${suffix}.json`), JSON.stringify({ date: new Date().toISOString(), quick, n, node: process.version, rows }, null, 2) + '\n')
  writeFileSync(join('bench', `results${suffix}.md`), text + '\n')
  writeFileSync(join('bench', `chart${suffix}.svg`), chart(rows.map((r) => ({ group: groupKey(r), pattern: r.pattern, p50: r.p50 })), 'warmconn: p50 latency per invocation'))
  console.log(`\nwrote bench/results${suffix}.json, bench/results${suffix}.md, bench/chart${suffix}.svg`)
}
