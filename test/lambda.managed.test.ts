/**
 * Lambda Managed Instances' model, against a real PostgreSQL: worker threads, each loading the
 * bundled handler module (a module scope of its own), each running many invocations at once,
 * never frozen, the invocation timeout not enforced by the runtime. warmconn must keep the
 * connection count at threads x maxConnections, keep every invocation's session state its own,
 * and cut a call off at its invocation's deadline itself (context.getRemainingTimeInMillis()).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { build } from './harness/lambda/emulator.js'
import { appName, eventually } from './helpers/core.js'

const THREAD = fileURLToPath(new URL('./fixtures/managed-thread.mjs', import.meta.url))
let db: TestPg
let dir: string
let handlerFile: string

beforeAll(async () => {
  db = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-managed-'))
  handlerFile = await build('test/fixtures/lambda-managed.ts', join(dir, 'managed.mjs'))
})
afterAll(async () => {
  await db?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

interface Outcome { event: { action: string; tenant?: string }; result?: { tenant?: string; pid?: number }; error?: { name: string; code?: string; message: string } }
interface Report { results: Outcome[]; stats: { opened: number; failures: number; callTimeouts: number } }

function thread(events: object[], env: Record<string, string>, timeoutMs = 30_000): Promise<Report> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(THREAD, { workerData: { handlerFile, events, timeoutMs }, env: { ...process.env, DATABASE_URL: db.url, ...env } })
    worker.once('message', (m: Report) => resolve(m))
    worker.once('error', reject)
    worker.once('exit', (code) => code !== 0 && reject(new Error(`thread exited with ${code}`)))
  })
}

describe('Lambda Managed Instances model', () => {
  it('2 threads x 64 concurrent invocations: 0 failures, at most 2 x maxConnections backends, no invocation reads another\'s tenant', async () => {
    const app = appName('managed')
    const events = (t: number) => Array.from({ length: 64 }, (_, i) => (i % 4 === 0 ? { action: 'set', tenant: `t${t}-${i}` } : { action: 'read' }))
    let peak = 0
    let watching = true
    const watch = (async () => {
      while (watching) {
        peak = Math.max(peak, (await db.backends(app)).length)
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    const reports = await Promise.all([thread(events(0), { WC_TEST_APP: app }), thread(events(1), { WC_TEST_APP: app })])
    watching = false
    await watch
    for (const report of reports) {
      expect(report.results.filter((r) => r.error)).toEqual([])
      for (const { event, result } of report.results) expect(result!.tenant).toBe(event.action === 'set' ? event.tenant : '')
      expect(report.stats.failures).toBe(0)
      expect(report.stats.opened).toBeLessThanOrEqual(2)
    }
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(4)
    // Each thread closed its own holder: nothing is left on the server.
    expect(await eventually(async () => (await db.backends(app)).length === 0)).toBe(true)
  })

  it("a call still running at its invocation's deadline is cut off by warmconn (the runtime would not stop it)", async () => {
    const app = appName('managed-deadline')
    const started = Date.now()
    const { results, stats } = await thread([{ action: 'sleep', seconds: 20 }, { action: 'read' }], { WC_TEST_APP: app, WC_TEST_MAX_CONNECTIONS: '2' }, 800)
    const [sleep, read] = results
    expect(sleep!.error).toMatchObject({ name: 'CallTimeoutError', code: 'WARMCONN_CALL_TIMEOUT' })
    expect(sleep!.error!.message).toMatch(/invocation's deadline/)
    expect(read!.result).toMatchObject({ tenant: '' })
    expect(stats.callTimeouts).toBe(1)
    expect(Date.now() - started).toBeLessThan(15_000) // a hang detector: without the cut-off it waits 20 s
    // The server sees the sleeping backend's client gone (its socket destroyed at the deadline).
    const [gone] = await db.admin`select count(*)::int as n from pg_stat_activity where application_name = ${app} and query like '%pg_sleep%' and state = 'active'`
    expect(gone!.n).toBeLessThanOrEqual(1)
  })
})
