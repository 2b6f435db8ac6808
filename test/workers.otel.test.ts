/**
 * warmconn/otel on the Durable Object holder, in Miniflare (workerd): the object instruments its
 * own holder (WarmconnDurableObject.onHolder) with the real SDK exporting into memory, and its
 * `metrics()` RPC method returns what was exported. A scripted workload (cold start, warm calls, a
 * call in progress, 3 callers on 1 connection, a killed backend, a call timeout, an idle close)
 * is read against the server (pg_stat_activity, backend pids) and the object's `stats()`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, type TestWorker } from './harness/worker.js'
import { eventually, sleep } from './helpers/core.js'
import { pointOf, type Reading } from './helpers/otel.js'

const APP = 'wc-otel-do'
const POOL = { 'db.client.connection.pool.name': 'durable-object' }
let pg: TestPg
let w: TestWorker
/** Every backend pid a query ran on, in order of first sight. */
const pids: number[] = []

beforeAll(async () => {
  pg = await startPostgres()
  w = await startWorker({
    entry: 'test/fixtures/workers/otel.ts',
    bindings: {
      DATABASE_URL: pg.urlFor({ params: { application_name: APP } }),
      WARMCONN_MAX_CONNECTIONS: '1',
      // One statement per connection at a time, so concurrent queries wait (pending_requests)
      // instead of being pipelined on the shared connection.
      WARMCONN_MAX_PIPELINED: '1',
      WARMCONN_STALE_AFTER_MS: '200',
      WARMCONN_IDLE_TIMEOUT_MS: '1500',
      WARMCONN_ACQUIRE_TIMEOUT_MS: '4000',
    },
    durableObjects: { OTEL: 'InstrumentedObject' },
  })
})
afterAll(async () => {
  await w?.dispose()
  await pg?.stop()
})

const metrics = async (): Promise<Reading> => (await w.fetch('GET', '/metrics')).body
const stats = async () => (await w.fetch('GET', '/stats')).body.value
async function pid(text = 'select pg_backend_pid() as pid'): Promise<number> {
  // Idempotent: a backend killed an instant before the query (its goodbye in flight) is replayed, not an error.
  const res = await w.fetch('POST', '/query', JSON.stringify({ text, options: { idempotent: true } }))
  expect(res.body, res.text).toMatchObject({ ok: true })
  const p = Number(res.body.value.rows[0].pid)
  if (!pids.includes(p)) pids.push(p)
  return p
}
const value = (r: Reading, name: string, extra: Record<string, unknown> = {}) => pointOf(r, name, { ...POOL, ...extra })?.value
const count = (r: Reading, name: string) => pointOf(r, name, POOL)?.count
const states = (r: Reading) => ['idle', 'used'].map((st) => value(r, 'db.client.connection.count', { 'db.client.connection.state': st }))

describe('the Durable Object holder, instrumented inside the object', () => {
  it('cold start: no instrument before the first call (the object makes its holder then)', async () => {
    expect(await metrics()).toEqual({})
    expect(await pg.backends(APP)).toEqual([])
  })

  it('first call and 5 warm calls: one connect, 6 waits and uses, idle 1, the one backend the server has', async () => {
    for (let i = 0; i < 6; i++) await pid()
    const r = await metrics()
    expect(pids).toHaveLength(1)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual(pids)
    expect(count(r, 'db.client.connection.create_time')).toBe(1)
    expect(count(r, 'db.client.connection.wait_time')).toBe(6)
    expect(count(r, 'db.client.connection.use_time')).toBe(6)
    expect(r['db.client.connection.create_time']?.unit).toBe('s')
    expect(states(r)).toEqual([1, 0])
    expect(value(r, 'db.client.connection.max')).toBe(1)
    const s = await stats()
    expect(value(r, 'warmconn.calls')).toBe(s.runs)
    expect(value(r, 'warmconn.reuses')).toBe(s.reused)
  })

  it('while a query runs (the server shows it active): used 1, idle 0', async () => {
    const running = pid('select pg_backend_pid() as pid, pg_sleep(1)')
    expect(await eventually(async () => (await pg.backends(APP)).some((b) => b.state === 'active'), 5_000)).toBe(true)
    const r = await metrics()
    expect(states(r)).toEqual([0, 1])
    await running
    expect(states(await metrics())).toEqual([1, 0])
  })

  it('3 callers on 1 connection: pending_requests 2 while two wait, 0 after, one backend throughout', async () => {
    const calls = [0, 1, 2].map(() => pid('select pg_backend_pid() as pid, pg_sleep(0.4)'))
    let seen: Reading | undefined
    expect(await eventually(async () => value((seen = await metrics()), 'db.client.connection.pending_requests') === 2, 5_000)).toBe(true)
    expect(states(seen!)).toEqual([0, 1])
    expect(new Set(await Promise.all(calls))).toEqual(new Set([pids[0]]))
    expect(value(await metrics(), 'db.client.connection.pending_requests')).toBe(0)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual(pids)
  })

  it('a stale check: warmconn.revalidations one more, same backend', async () => {
    const before = await stats()
    await sleep(300)
    expect(await pid()).toBe(pids[0])
    const r = await metrics()
    expect(value(r, 'warmconn.revalidations')).toBe(before.revalidated + 1)
  })

  it('a backend killed by the server: reconnects 1, create_time one sample per backend pid', async () => {
    await pg.terminate({ pid: pids[0]! })
    const next = await pid()
    expect(next).not.toBe(pids[0])
    const r = await metrics()
    expect(value(r, 'warmconn.reconnects')).toBe(1)
    expect(count(r, 'db.client.connection.create_time')).toBe(pids.length)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([next])
  })

  it('a call timeout: warmconn.call_timeouts 1, the next query on a new backend', async () => {
    const res = await w.fetch('POST', '/query', JSON.stringify({ text: 'select pg_sleep(5)', options: { timeoutMs: 300 } }))
    expect(res.body).toMatchObject({ ok: false, error: { code: 'WARMCONN_CALL_TIMEOUT' } })
    const victim = pids.at(-1)!
    const next = await pid()
    expect(next).not.toBe(victim)
    const r = await metrics()
    expect(value(r, 'warmconn.call_timeouts')).toBe(1)
    expect(count(r, 'db.client.connection.create_time')).toBe(pids.length)
    expect((await stats()).opened).toBe(pids.length)
  }, 20_000)

  it('an idle close: idle 0 and used 0 once the server has no backend of the object', async () => {
    expect(await eventually(async () => (await stats()).closedIdle >= 1 && (await pg.backends(APP)).length === 0, 10_000)).toBe(true)
    const r = await metrics()
    expect(states(r)).toEqual([0, 0])
    expect(value(r, 'warmconn.closes', { 'warmconn.close.reason': 'idle' })).toBe((await stats()).closedIdle)
    expect(count(r, 'db.client.connection.create_time')).toBe(pids.length)
  }, 15_000)
})
