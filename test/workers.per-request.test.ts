/**
 * The deployable Worker (functions/worker.ts) with a connection per request, in Miniflare:
 * WARMCONN_MODE = "per-request" straight to PostgreSQL, and Hyperdrive mode through Miniflare's
 * `hyperdrives` binding (which connects to the database directly, without Hyperdrive's pool).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, type TestWorker, type WorkerResponse } from './harness/worker.js'
import { eventually } from './helpers/core.js'

let pg: TestPg
const workers: TestWorker[] = []
const seen: string[] = []

async function call(w: TestWorker, method: string, path: string, body?: string): Promise<WorkerResponse> {
  const res = await w.fetch(method, path, body)
  seen.push(res.text)
  return res
}

async function worker(bindings: Record<string, string>, hyperdrives?: Record<string, string>): Promise<TestWorker> {
  const w = await startWorker({ entry: 'functions/worker.ts', bindings, ...(hyperdrives ? { hyperdrives } : {}) })
  workers.push(w)
  return w
}

beforeAll(async () => {
  pg = await startPostgres()
})
afterAll(async () => {
  for (const w of workers) await w.dispose()
  await pg?.stop()
})

describe('per-request mode', () => {
  const app = 'wc-worker-per-request'
  let w: TestWorker
  beforeAll(async () => {
    w = await worker({ DATABASE_URL: pg.urlFor({ params: { application_name: app } }), WARMCONN_MODE: 'per-request' })
  })

  it('100 requests: each gets a connection of its own, and no backend is left afterwards', async () => {
    const pids = new Set<number>()
    for (let i = 0; i < 100; i++) {
      const res = await call(w, 'GET', '/db')
      expect(res.status).toBe(200)
      expect(res.body.stats).toMatchObject({ opened: 1, runs: 1, failures: 0 })
      pids.add(res.body.pid)
    }
    expect(pids.size).toBe(100)
    // Closed with ctx.waitUntil after each response: nothing of the Worker stays on the server.
    expect(await eventually(async () => (await pg.backends(app)).length === 0, 3_000)).toBe(true)
  })

  it('the array-type lookup is made once per isolate, not once per request (per-request holders share it)', async () => {
    // A fresh Worker (isolate) on its own application_name, so earlier requests do not count.
    const name = 'wc-worker-arrays'
    const fresh = await worker({ DATABASE_URL: pg.urlFor({ params: { application_name: name } }), WARMCONN_MODE: 'per-request' })
    const mark = await pg.mark()
    for (let i = 0; i < 5; i++) expect((await call(fresh, 'GET', '/db')).status).toBe(200)
    const statements = await pg.statements({ applicationName: name, since: mark })
    // Each new connection runs nothing of warmconn's own before the app's statement (its first
    // statement carries the handshake); the array-type lookup runs once, after the first.
    expect(statements.filter((s) => !s.includes('typarray'))).toEqual(Array(5).fill('select pg_backend_pid() as pid'))
    expect(statements.filter((s) => s.includes('typarray'))).toHaveLength(1)
  })

  it('every query of one request shares its connection', async () => {
    const mark = await pg.mark()
    const res = await call(w, 'POST', '/visits', JSON.stringify({ key: 'per-request' }))
    expect(res.status).toBe(201)
    const statements = await pg.statements({ applicationName: app, since: mark })
    expect(statements.some((s) => s.startsWith('create table if not exists visits'))).toBe(true)
    expect(statements.some((s) => s.startsWith('with ins as'))).toBe(true)
    const pids = new Set((await pg.logRecords(mark)).filter((r) => r.applicationName === app).map((r) => r.pid))
    expect(pids.size).toBe(1)
  })

  it.each([
    ['POST', '/visits', 'not json', 400],
    ['GET', '/nope', undefined, 404],
    ['PUT', '/visits/count', undefined, 405],
  ])('%s %s with %s -> %i', async (method, path, body, status) => {
    const res = await call(w, method, path, body)
    expect(res.status).toBe(status)
  })

  it('database down: 503 within a bounded time, then 200 again once it is back', async () => {
    await pg.stopServer()
    let down: WorkerResponse
    try {
      down = await call(w, 'GET', '/db')
    } finally {
      await pg.startServer()
    }
    expect(down.status).toBe(503)
    expect(down.ms).toBeLessThan(10_000)
    expect((await call(w, 'GET', '/db')).status).toBe(200)
  })

  it('a duration with a unit (WARMCONN_STALE_AFTER_MS = "5s"): database routes 500 saying milliseconds, with the value to set', async () => {
    const typo = await worker({ DATABASE_URL: pg.url, WARMCONN_MODE: 'per-request', WARMCONN_STALE_AFTER_MS: '5s' })
    expect((await call(typo, 'GET', '/nope')).status).toBe(404)
    const res = await call(typo, 'GET', '/db')
    expect(res.status).toBe(500)
    expect(res.body.error).toContain('expected a whole number of milliseconds, without a unit: 5s is WARMCONN_STALE_AFTER_MS=5000')
  })

  it('without DATABASE_URL: routes still answer 404/405, database routes 500 naming it', async () => {
    const bare = await worker({ WARMCONN_MODE: 'per-request' })
    expect((await call(bare, 'GET', '/nope')).status).toBe(404)
    expect((await call(bare, 'DELETE', '/db')).status).toBe(405)
    const res = await call(bare, 'GET', '/db')
    expect(res.status).toBe(500)
    expect(res.body.error).toMatch(/DATABASE_URL/)
  })
})

describe('Hyperdrive mode', () => {
  it('serves the app through the binding, a connection per request, none left afterwards', async () => {
    const w = await worker({}, { HYPERDRIVE: pg.url })
    const first = await call(w, 'GET', '/db')
    expect(first.status).toBe(200)
    expect(first.body.stats).toMatchObject({ opened: 1, failures: 0 })
    const second = await call(w, 'GET', '/db')
    expect(second.status).toBe(200)
    // Locally the binding connects straight to the database: no pool, so a new backend each time.
    expect(second.body.pid).not.toBe(first.body.pid)
    const created = await call(w, 'POST', '/visits', JSON.stringify({ key: 'hyperdrive' }))
    expect(created.status).toBe(201)
    expect((await call(w, 'POST', '/visits', JSON.stringify({ key: 'hyperdrive' }))).body).toEqual(created.body)
    expect(await eventually(async () => (await pg.backends()).length === 0, 3_000)).toBe(true)
  })
})

describe('secrets', () => {
  it('no response body and no log line contains the password', () => {
    expect(seen.length).toBeGreaterThan(100)
    expect(seen.join('\n')).not.toContain(pg.password)
    for (const w of workers) expect(w.output()).not.toContain(pg.password)
  })
})
