/**
 * The deployable Worker (functions/worker.ts) in its default mode, in Miniflare (workerd): the
 * connection stays warm in the WarmconnDurableObject and the Worker reaches it over Workers RPC.
 * Every test checks what the PostgreSQL server saw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, type TestWorker, type WorkerResponse } from './harness/worker.js'
import { eventually, sleep } from './helpers/core.js'
import type { WarmconnDurableObject } from '../src/workers/index.js'

const APP = 'wc-worker-do'
let pg: TestPg
let worker: TestWorker
/** Every response body and every Worker, for the secret scan at the end. */
const seen: string[] = []
const started = new Set<TestWorker>()

async function call(w: TestWorker, method: string, path: string, body?: string): Promise<WorkerResponse> {
  started.add(w)
  const res = await w.fetch(method, path, body)
  seen.push(res.text)
  return res
}

beforeAll(async () => {
  pg = await startPostgres()
  worker = await startWorker({ entry: 'functions/worker.ts', bindings: { DATABASE_URL: pg.urlFor({ params: { application_name: APP } }) } })
})
afterAll(async () => {
  await worker?.dispose()
  await pg?.stop()
})

describe('Durable Object mode', () => {
  it('200 sequential requests: 0 errors, one backend pid', async () => {
    const pids = new Set<number>()
    for (let i = 0; i < 200; i++) {
      const res = await call(worker, 'GET', '/db')
      expect(res.status).toBe(200)
      pids.add(res.body.pid)
    }
    expect(pids.size).toBe(1)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([...pids])
    const last = await call(worker, 'GET', '/db')
    expect(last.body.stats).toMatchObject({ opened: 1, failures: 0, open: 1 })
    // The idle-close alarm is armed at the holder's deadline (default idle timeout 60 s).
    expect(last.body.stats.alarmAt).toBeGreaterThan(Date.now() + 30_000)
  })

  it('50 concurrent requests: 0 errors, still one backend', async () => {
    const responses = await Promise.all(Array.from({ length: 50 }, () => call(worker, 'GET', '/db')))
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200))
    expect(new Set(responses.map((r) => r.body.pid)).size).toBe(1)
    expect(await pg.backends(APP)).toHaveLength(1)
  })

  it('a backend killed between requests: the next request returns 200 on a new connection', async () => {
    const before = await call(worker, 'GET', '/db')
    await pg.terminate({ pid: before.body.pid })
    const after = await call(worker, 'GET', '/db')
    expect(after.status).toBe(200)
    expect(after.body.pid).not.toBe(before.body.pid)
    expect(after.body.stats.reconnected).toBe(before.body.stats.reconnected + 1)
    expect(after.body.stats.failures).toBe(before.body.stats.failures)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([after.body.pid])
  })

  it('POST /visits creates once (201), answers a retry with the same id (200), and counts', async () => {
    const created = await call(worker, 'POST', '/visits', JSON.stringify({ key: 'worker-do' }))
    const again = await call(worker, 'POST', '/visits', JSON.stringify({ key: 'worker-do' }))
    expect(created.status).toBe(201)
    expect(again.status).toBe(200)
    expect(again.body).toEqual(created.body)
    const [row] = await pg.admin`select count(*)::int as n from visits`
    expect((await call(worker, 'GET', '/visits/count')).body).toEqual({ count: row!.n })
  })

  it.each([
    ['POST', '/visits', 'not json', 400],
    ['POST', '/visits', undefined, 400],
    ['POST', '/visits', JSON.stringify({ key: '' }), 400],
    ['POST', '/visits', JSON.stringify({ key: 'x'.repeat(201) }), 400],
    ['POST', '/visits', JSON.stringify({ key: 42 }), 400],
    ['GET', '/nope', undefined, 404],
    ['DELETE', '/visits', undefined, 405],
    ['POST', '/db', undefined, 405],
  ])('%s %s with %s -> %i', async (method, path, body, status) => {
    const res = await call(worker, method, path, body)
    expect(res.status).toBe(status)
    expect(typeof res.body.error).toBe('string')
  })

  it('database down: 503 within a bounded time, then 200 again once it is back', async () => {
    expect((await call(worker, 'GET', '/db')).status).toBe(200)
    await pg.stopServer()
    let down: WorkerResponse
    try {
      down = await call(worker, 'GET', '/db')
    } finally {
      await pg.startServer()
    }
    expect(down.status).toBe(503)
    expect(down.ms).toBeLessThan(10_000)
    const back = await call(worker, 'GET', '/db')
    expect(back.status).toBe(200)
  })

})

describe('idle close', () => {
  it('the alarm follows the deadline without a write per request, and an idle holder leaves no backend', async () => {
    const app = 'wc-worker-idle'
    const idleMs = 2_000
    const idle = await startWorker({
      entry: 'functions/worker.ts',
      bindings: { DATABASE_URL: pg.urlFor({ params: { application_name: app } }), WARMCONN_IDLE_TIMEOUT_MS: String(idleMs) },
    })
    // Asked over RPC from the test: no query, so no connection is opened or touched.
    const ns = await idle.mf.getDurableObjectNamespace('WARMCONN')
    const holder = ns.get(ns.idFromName('warmconn-0')) as unknown as Pick<WarmconnDurableObject, 'stats'>
    const stats = async () => {
      const reply = await holder.stats()
      if (!reply.ok) throw new Error(reply.error.message)
      return reply.value
    }
    try {
      const first = await call(idle, 'GET', '/db')
      const armedAt = first.body.stats.alarmAt
      expect(armedAt).toBeGreaterThan(Date.now() + idleMs - 1_000)
      expect(armedAt).toBeLessThanOrEqual(Date.now() + idleMs)

      await sleep(idleMs / 2)
      const second = await call(idle, 'GET', '/db')
      expect(second.body.pid).toBe(first.body.pid)
      // The deadline moved later: the alarm is left as it is (no storage write for this request).
      expect(second.body.stats.alarmAt).toBe(armedAt)

      // The alarm fires at the old deadline, closes nothing, and re-arms for the new one.
      expect(await eventually(async () => (await stats()).alarmAt !== armedAt, 2_000)).toBe(true)
      expect((await pg.backends(app)).map((b) => b.pid)).toEqual([first.body.pid])
      expect((await stats()).alarmAt).toBeGreaterThanOrEqual(armedAt + idleMs / 2 - 100)

      // Past the new deadline: closed, the alarm spent and not re-armed, nothing on the server.
      expect(await eventually(async () => (await pg.backends(app)).length === 0, 5_000)).toBe(true)
      expect(await eventually(async () => (await stats()).alarmAt === null, 2_000)).toBe(true)
      expect(await stats()).toMatchObject({ closedIdle: 1, open: 0 })

      const next = await call(idle, 'GET', '/db')
      expect(next.status).toBe(200)
      expect(next.body.pid).not.toBe(first.body.pid)
    } finally {
      await idle.dispose()
    }
  })
})

describe('configuration', () => {
  it('without DATABASE_URL: routes still answer 404/405, database routes 500 naming it', async () => {
    const bare = await startWorker({ entry: 'functions/worker.ts' })
    try {
      expect((await call(bare, 'GET', '/nope')).status).toBe(404)
      expect((await call(bare, 'PUT', '/visits', '{}')).status).toBe(405)
      // Raised in the Durable Object, carried over RPC as data, rethrown as InvalidOptionError.
      const res = await call(bare, 'GET', '/db')
      expect(res.status).toBe(500)
      expect(res.body.error).toMatch(/^server misconfigured: Invalid option "url".*DATABASE_URL/)
      expect(bare.output()).toContain('GET /db -> 500 (WARMCONN_INVALID_OPTION)')
    } finally {
      await bare.dispose()
    }
  })

  it('WARMCONN_SHARDS and WARMCONN_LOCATION_HINT: requests spread over that many holder objects', async () => {
    const app = 'wc-worker-shards'
    const sharded = await startWorker({
      entry: 'functions/worker.ts',
      bindings: { DATABASE_URL: pg.urlFor({ params: { application_name: app } }), WARMCONN_SHARDS: '3', WARMCONN_LOCATION_HINT: 'weur' },
    })
    try {
      const pids = new Set<number>()
      for (let i = 0; i < 30; i++) pids.add((await call(sharded, 'GET', '/db')).body.pid)
      expect(pids.size).toBe(3)
      expect((await pg.backends(app)).map((b) => b.pid).sort()).toEqual([...pids].sort())
    } finally {
      await sharded.dispose()
    }
  })

  it('an unknown WARMCONN_MODE: 404/405 still answered, database routes 500 naming it', async () => {
    const typo = await startWorker({ entry: 'functions/worker.ts', bindings: { DATABASE_URL: pg.url, WARMCONN_MODE: 'per_request' } })
    try {
      expect((await call(typo, 'GET', '/nope')).status).toBe(404)
      const res = await call(typo, 'GET', '/visits/count')
      expect(res.status).toBe(500)
      expect(res.body.error).toMatch(/WARMCONN_MODE/)
    } finally {
      await typo.dispose()
    }
  })
})

describe('misconfiguration', () => {
  it('a misspelt override (WARMCONN_IDLE_TIMEOUT): the object refuses it, the Worker answers 500 naming the right variable', async () => {
    const app = 'wc-worker-typo'
    const typo = await startWorker({
      entry: 'functions/worker.ts',
      bindings: { DATABASE_URL: pg.urlFor({ params: { application_name: app } }), WARMCONN_IDLE_TIMEOUT: '30000', WARMCONN_SHARDS: '1' },
    })
    try {
      expect((await call(typo, 'GET', '/nope')).status).toBe(404)
      const res = await call(typo, 'GET', '/db')
      expect(res.status).toBe(500)
      expect(res.body.error).toContain('server misconfigured: Invalid option "WARMCONN_IDLE_TIMEOUT": not a warmconn variable; did you mean WARMCONN_IDLE_TIMEOUT_MS')
      expect(await pg.backends(app)).toEqual([])
    } finally {
      await typo.dispose()
    }
  })
})

describe('secrets', () => {
  it('no response body and no log line contains the password', () => {
    expect(seen.length).toBeGreaterThan(250)
    expect(seen.join('\n')).not.toContain(pg.password)
    for (const w of started) expect(w.output()).not.toContain(pg.password)
  })
})
