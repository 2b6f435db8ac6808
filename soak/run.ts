/**
 * One soak run, start to finish: a real PostgreSQL behind the fault proxy, the example app in
 * its runtimes, clients, the fault injector, then the final retries, the ledger, the report, the
 * password scan, and a cleanup of every process, port and directory it made.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultOptions } from '../src/options.js'
import { build } from '../test/harness/lambda/emulator.js'
import { startPostgres } from '../test/harness/pg.js'
import { startProxy } from '../test/harness/proxy.js'
import { startLambdaApp, startWorkerApp, type SoakApp } from './app.js'
import { Recorder, finalRead, retryUnacked, runLane, type LaneContext } from './clients.js'
import { startFaults, type FaultTiming } from './faults.js'
import { Ledger } from './ledger.js'
import { seededRng } from './random.js'
import { buildReport, formatReport, verdict, type Report, type Verdict } from './report.js'

export interface SoakOptions {
  /** How long faults and clients run; setup, final retries and cleanup come on top. */
  seconds: number
  seed?: number
  /** Lambda processes running one invocation at a time; one more runs two at once. Default 3. */
  lambdas?: number
  /** Receives a progress line every few seconds. */
  progress?: (line: string) => void
  /** Aborting ends the clients early; the run still retries, checks and cleans up. */
  signal?: AbortSignal
}

export interface SoakResult {
  report: Report
  text: string
  verdict: Verdict
  /** Every line the functions printed, prefixed with the app's name. */
  logs: string[]
}

// The function's overrides: short enough that faults are found and recovered from within a
// short run. connectBudgetMs keeps its default (no environment variable sets it).
const APP_OPTIONS = { staleAfterMs: 1_000, pingTimeoutMs: 1_000, idleTimeoutMs: 4_000, connectTimeoutMs: 1_000, callTimeoutMs: 2_000 }
// The Lambda function timeout, and how long a Worker client waits.
const FUNCTION_TIMEOUT_MS = 10_000
// On top of the ping, connect and call bounds: the library's 250 ms guard per connect attempt,
// thaw and the emulator's round trip, on a machine busy with all of the above.
const QUERY_ALLOWANCE_MS = 1_500
const TIMING: FaultTiming = { gapMs: [1_000, 3_000], downMs: [300, 2_500], blackholeMs: [1_500, 3_000], forgetMs: [500, 2_000], fillMs: [500, 3_000] }
const PROGRESS_EVERY_MS = 5_000
// Bounds the final retries even if the app never recovers: what is left is reported missing.
const FINAL_RETRIES_MS = 60_000

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  if (process.env.DATABASE_URL) throw new Error('the soak stops and restarts its own PostgreSQL: unset DATABASE_URL')
  const rng = seededRng(o.seed ?? randomBytes(4).readUInt32LE())
  const progress = o.progress ?? (() => {})
  const printed: string[] = []
  const say = (line: string): void => (printed.push(line), progress(line))
  const t0 = performance.now()
  const now = (): number => performance.now() - t0

  // Statement logging off: thousands of invocations would only fill the harness's log buffer.
  // Server-side idle_session_timeout ends the backends a blackhole orphans (their client is
  // gone, but the proxy keeps their socket open, as a NAT that lost its state would).
  say('starting PostgreSQL, the fault proxy and the functions...')
  const pg = await startPostgres({ maxConnections: 30, settings: { log_statement: 'none', idle_session_timeout: 15_000 } })
  const cleanup: Array<() => Promise<unknown>> = [() => pg.stop()]
  try {
    // Since PostgreSQL 15 only the owner may create in schema public; the app creates its table.
    await pg.admin`grant create on schema public to app`
    const proxy = await startProxy({ host: pg.host, port: pg.port })
    cleanup.unshift(() => proxy.close())
    const dir = await mkdtemp(join(tmpdir(), 'warmconn-soak-'))
    cleanup.push(() => rm(dir, { recursive: true, force: true }))
    const env = {
      DATABASE_URL: pg.urlFor({ user: 'app', port: proxy.port }),
      WARMCONN_STALE_AFTER_MS: String(APP_OPTIONS.staleAfterMs),
      WARMCONN_PING_TIMEOUT_MS: String(APP_OPTIONS.pingTimeoutMs),
      WARMCONN_IDLE_TIMEOUT_MS: String(APP_OPTIONS.idleTimeoutMs),
      WARMCONN_CONNECT_TIMEOUT_MS: String(APP_OPTIONS.connectTimeoutMs),
      WARMCONN_CALL_TIMEOUT_MS: String(APP_OPTIONS.callTimeoutMs),
    }
    const handlerFile = await build('functions/lambda.ts', join(dir, 'app.mjs'))
    const apps: SoakApp[] = []
    cleanup.unshift(() => Promise.all(apps.map((a) => a.close())))
    const lanes: Array<{ app: SoakApp; name: string }> = []
    for (let i = 1; i <= (o.lambdas ?? 3); i++) {
      const app = await startLambdaApp({ name: `lambda-${i}`, handlerFile, env, concurrency: 1, timeoutMs: FUNCTION_TIMEOUT_MS })
      apps.push(app)
      lanes.push({ app, name: app.name })
    }
    // Lambda Managed Instances / Vercel Fluid: two invocations at once share one process.
    const shared = await startLambdaApp({ name: 'lambda-x2', handlerFile, env, concurrency: 2, timeoutMs: FUNCTION_TIMEOUT_MS })
    apps.push(shared)
    lanes.push({ app: shared, name: 'lambda-x2a' }, { app: shared, name: 'lambda-x2b' })
    // The Worker keeps its connection in a Durable Object; two lanes share it.
    const worker = await startWorkerApp({ name: 'worker', env, timeoutMs: FUNCTION_TIMEOUT_MS })
    apps.push(worker)
    lanes.push({ app: worker, name: 'worker-a' }, { app: worker, name: 'worker-b' })

    // The first request creates the table. Sent alone: concurrent first requests race on
    // CREATE TABLE IF NOT EXISTS (a bug of the example app, reported; see test/soak.test.ts).
    await apps[0]!.request({ method: 'GET', path: '/visits/count' })

    const ledger = new Ledger(`soak-${randomBytes(4).toString('hex')}-`)
    const recorder = new Recorder()
    const ctx: LaneContext = {
      rng, now, ledger, recorder, deadline: now() + o.seconds * 1_000, attempts: 5, pauseChance: 0.004, pauseMs: [300, 6_000],
    }
    const stopClients = (): void => void (ctx.deadline = -1)
    if (o.signal?.aborted) stopClients()
    o.signal?.addEventListener('abort', stopClients)
    say(`running ${o.seconds} s: ${lanes.length} client lanes on ${apps.length} apps, seed ${rng.seed}`)
    const faults = startFaults(pg, proxy, rng, now, TIMING)
    // Faults end on time; clients finish the retries they started on a healthy system.
    const faultsEnd = setTimeout(() => void faults.stop(), o.seconds * 1_000)
    const ticker = setInterval(() => say(progressLine(now(), o.seconds, recorder, ledger, faults.active())), PROGRESS_EVERY_MS)
    try {
      await Promise.all(lanes.map((l) => runLane(l.app, l.name, ctx)))
    } finally {
      clearTimeout(faultsEnd)
      clearInterval(ticker)
      await faults.stop()
    }

    say(`faults stopped; retrying ${ledger.unacked().length} unacknowledged key(s)...`)
    await retryUnacked(apps, ctx, 10, now() + FINAL_RETRIES_MS)
    // One last GET /db per app: the latest stats of every live instance.
    for (const app of apps) await finalRead(app, ctx)
    const rows = await pg.admin<Array<{ key: string; id: number; count: number }>>`
      select key, min(id)::int as id, count(*)::int as count from visits where key like ${ledger.prefix + '%'} group by key`

    const partial = buildReport({
      seconds: o.seconds, seed: rng.seed, apps: apps.map((a) => a.name), invocations: recorder.invocations,
      windows: faults.windows, skipped: faults.skipped, pauses: recorder.pauses, stats: recorder.stats,
      boundMs: APP_OPTIONS.pingTimeoutMs + defaultOptions.connectBudgetMs + APP_OPTIONS.callTimeoutMs + QUERY_ALLOWANCE_MS, ledger: ledger.check(rows),
    })
    const logs = apps.flatMap((a) => a.logs().map((line) => `${a.name}: ${line}`))
    const withCauses = { ...partial, causes: unavailableCauses(apps) }
    const draft = formatReport({ ...withCauses, password: { scanned: 0, foundIn: [] } })
    const password = scanFor([pg.password, encodeURIComponent(pg.password)], {
      'function logs': logs,
      responses: recorder.invocations.map((inv) => inv.text),
      progress: printed,
      report: draft.split('\n'),
    })
    const report: Report = { ...withCauses, password }
    return { report, text: formatReport(report), verdict: verdict(report), logs }
  } finally {
    for (const step of cleanup) await step().catch(() => {})
  }
}

/** What the apps logged for each 503 they answered (codes only): why the database was unavailable. */
function unavailableCauses(apps: readonly SoakApp[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const app of apps) {
    for (const line of app.logs()) {
      const code = /-> 503 \((\w+)\)/.exec(line)?.[1]
      if (code) out[`${app.runtime} ${code}`] = (out[`${app.runtime} ${code}`] ?? 0) + 1
    }
  }
  return out
}

function progressLine(nowMs: number, seconds: number, recorder: Recorder, ledger: Ledger, fault: string | undefined): string {
  const done = recorder.invocations
  const failed = done.filter((inv) => inv.status === undefined || inv.status >= 400).length
  const clock = nowMs <= seconds * 1_000 ? `${String(Math.round(nowMs / 1_000)).padStart(4)} s / ${seconds} s` : 'faults over, clients finishing'
  return `[${clock}] ${done.length} invocations, ${ledger.acked()} keys acked, ${failed} failed${fault ? `, now: ${fault}` : ''}`
}

/** Lines per source that contain any of `secrets`; the caller fails the run on any hit. */
function scanFor(secrets: string[], sources: Record<string, string[]>): Report['password'] {
  let scanned = 0
  const foundIn: string[] = []
  for (const [name, lines] of Object.entries(sources)) {
    scanned += lines.length
    const hits = lines.filter((line) => secrets.some((secret) => line.includes(secret))).length
    if (hits > 0) foundIn.push(`${name} (${hits} lines)`)
  }
  return { scanned, foundIn }
}
