/**
 * The deployable Lambda (functions/lambda.ts), bundled as for deployment and run in the emulator,
 * which freezes the process between invocations with SIGSTOP/SIGCONT as Lambda does. Every test
 * checks what the PostgreSQL server saw.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { httpEvent } from './harness/lambda/apigw.js'
import { eventually, sleep } from './helpers/core.js'

let pg: TestPg
let dir: string
let appFile: string
let txFile: string
const running: LambdaEmulator[] = []
const proxies: FaultProxy[] = []

beforeAll(async () => {
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-lambda-'))
  appFile = await build('functions/lambda.ts', join(dir, 'app.mjs'))
  txFile = await build('test/fixtures/lambda-tx.ts', join(dir, 'tx.mjs'))
  await pg.admin`create table lambda_notes (id serial primary key, note text not null)`
})
afterEach(async () => {
  for (const l of running.splice(0)) await l.kill()
  for (const p of proxies.splice(0)) await p.close()
  await pg.terminate({ applicationName: 'warmconn' })
})
afterAll(async () => {
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function lambda(env: Record<string, string> = {}, opts: { concurrency?: number; freeze?: boolean; sigtermOnShutdown?: boolean; file?: string; timeoutMs?: number } = {}) {
  const { file = appFile, ...rest } = opts
  const l = await startLambda({ handlerFile: file, env: { DATABASE_URL: pg.url, ...env }, timeoutMs: 15_000, ...rest })
  running.push(l)
  return l
}

interface Http { status: number; body: Record<string, any> }
async function call(l: LambdaEmulator, method: string, path: string, body?: string | object): Promise<Http & { durationMs: number }> {
  const out = await l.invoke(httpEvent({ method, path, body }))
  if (out.error) throw new Error(`invocation failed: ${out.error.errorType}: ${out.error.errorMessage}`)
  const res = out.result as { statusCode: number; body: string }
  return { status: res.statusCode, body: JSON.parse(res.body), durationMs: out.durationMs }
}

describe('warm invocations', () => {
  it('100 warm invocations are served by one backend pid with 0 errors', async () => {
    const l = await lambda()
    const pids = new Set<number>()
    for (let i = 0; i < 100; i++) {
      const res = await call(l, 'GET', '/db')
      expect(res.status).toBe(200)
      pids.add(res.body.pid)
    }
    expect(pids.size).toBe(1)
    expect((await pg.backends('warmconn')).map((b) => b.pid)).toEqual([...pids])
    const last = await call(l, 'GET', '/db')
    expect(last.body.stats).toMatchObject({ opened: 1, failures: 0 })
  })

  it('frozen while its backend is killed: the next invocation returns 200 with one reconnect', async () => {
    const l = await lambda()
    const first = await call(l, 'GET', '/db')
    expect(l.isFrozen()).toBe(true)
    await pg.terminate({ pid: first.body.pid })
    const next = await call(l, 'GET', '/db')
    expect(next.status).toBe(200)
    expect(next.body.pid).not.toBe(first.body.pid)
    expect(next.body.stats).toMatchObject({ reconnected: 1, failures: 0 })
  })

  it('frozen past staleAfterMs with the socket blackholed: 200 after one bounded ping, not after minutes', async () => {
    const proxy = await startProxy({ host: pg.host, port: pg.port })
    proxies.push(proxy)
    const l = await lambda({ DATABASE_URL: pg.urlFor({ port: proxy.port }), WARMCONN_STALE_AFTER_MS: '200', WARMCONN_PING_TIMEOUT_MS: '500' })
    const first = await call(l, 'GET', '/db')
    proxy.blackhole()
    proxy.heal() // the function's old flow is dead (a NAT forgot it); new connections get through
    await sleep(300)
    const next = await call(l, 'GET', '/db')
    expect(next.status).toBe(200)
    expect(next.body.pid).not.toBe(first.body.pid)
    expect(next.body.stats).toMatchObject({ revalidateFailures: 1, reconnected: 1 })
    // A hang detector, not a speed test: ping bound + a loopback connect + thaw, with wide slack.
    expect(next.durationMs).toBeLessThan(500 + 5_000)
  })

  it('frozen past idleTimeoutMs: the old connection is never used again', async () => {
    const l = await lambda({ WARMCONN_IDLE_TIMEOUT_MS: '300' })
    const first = await call(l, 'GET', '/db')
    const mark = await pg.mark()
    await sleep(600)
    // Frozen, its idle timer could not fire: the backend is still there.
    expect((await pg.backends('warmconn')).map((b) => b.pid)).toEqual([first.body.pid])
    const next = await call(l, 'GET', '/db')
    expect(next.body.pid).not.toBe(first.body.pid)
    expect(next.body.stats).toMatchObject({ closedIdle: 1, revalidated: 0 })
    expect(await pg.statements({ pid: first.body.pid, since: mark })).toEqual([])
    expect(await eventually(async () => !(await pg.backends('warmconn')).some((b) => b.pid === first.body.pid))).toBe(true)
  })

  it('left running (not frozen) past idleTimeoutMs: the server has no backend of the function left', async () => {
    const l = await lambda({ WARMCONN_IDLE_TIMEOUT_MS: '300' }, { freeze: false })
    await call(l, 'GET', '/db')
    expect(await pg.backends('warmconn')).toHaveLength(1)
    expect(await eventually(async () => (await pg.backends('warmconn')).length === 0)).toBe(true)
  })

  it('SIGTERM closes the connection and the process exits promptly', async () => {
    const l = await lambda({}, { sigtermOnShutdown: true })
    await call(l, 'GET', '/db')
    expect(await pg.backends('warmconn')).toHaveLength(1)
    const exit = await l.shutdown()
    // Exited by itself within Lambda's grace period: the emulator would have sent SIGKILL.
    expect(exit.signal).toBeNull()
    expect(exit.exitCode).toBe(0)
    expect(await eventually(async () => (await pg.backends('warmconn')).length === 0, 1_000)).toBe(true)
  })

  it('two concurrent invocations in one process both succeed over one connect', async () => {
    const l = await lambda({}, { concurrency: 2 })
    const [a, b] = await Promise.all([call(l, 'POST', '/visits', { key: 'concurrent-a' }), call(l, 'POST', '/visits', { key: 'concurrent-b' })])
    expect([a.status, b.status]).toEqual([201, 201])
    const after = await call(l, 'GET', '/db')
    expect(after.body.stats.opened).toBe(1)
    expect(await pg.backends('warmconn')).toHaveLength(1)
  })
})

describe('session hygiene across invocations', () => {
  it('a handler that throws mid-transaction: the next invocation starts clean, nothing of the failed one committed', async () => {
    const l = await lambda({}, { file: txFile })
    const failed = await l.invoke({ action: 'fail', note: 'lambda-half-done' })
    expect(failed.error?.errorMessage).toContain('between BEGIN and COMMIT')
    const next = await l.invoke({ action: 'check' })
    expect(next.error).toBeUndefined()
    const [row] = await pg.admin`select count(*)::int as n from lambda_notes where note = 'lambda-half-done'`
    expect(row!.n).toBe(0)
    // The next invocation's own write committed at once: it was not inside the failed transaction.
    const [check] = await pg.admin`select count(*)::int as n from lambda_notes where note = 'check'`
    expect(check!.n).toBeGreaterThanOrEqual(1)
    expect((next.result as { stats: { sessionResets: number } }).stats.sessionResets).toBe(1)
  })
})

describe('the example app contract', () => {
  it('POST /visits is idempotent by key; GET /visits/count counts rows', async () => {
    const l = await lambda()
    const created = await call(l, 'POST', '/visits', { key: 'lambda-k1' })
    const again = await call(l, 'POST', '/visits', { key: 'lambda-k1' })
    expect(created.status).toBe(201)
    expect(again.status).toBe(200)
    expect(again.body).toEqual(created.body)
    const [row] = await pg.admin`select count(*)::int as n from visits`
    const count = await call(l, 'GET', '/visits/count')
    expect(count.body).toEqual({ count: row!.n })
  })

  it.each([
    ['POST', '/visits', 'not json', 400],
    ['POST', '/visits', undefined, 400],
    ['POST', '/visits', { key: '' }, 400],
    ['POST', '/visits', { key: 'x'.repeat(201) }, 400],
    ['POST', '/visits', { key: 42 }, 400],
    ['POST', '/visits', { other: 'x' }, 400],
    ['GET', '/nope', undefined, 404],
    ['DELETE', '/visits', undefined, 405],
    ['POST', '/db', undefined, 405],
  ])('%s %s with %j -> %i', async (method, path, body, status) => {
    const l = await lambda()
    const res = await call(l, method, path, body as string | object | undefined)
    expect(res.status).toBe(status)
    expect(typeof res.body.error).toBe('string')
  })

  it.each([
    [{ WARMCONN_STALEAFTER_MS: '5000' }, 'Invalid option "WARMCONN_STALEAFTER_MS": not a warmconn variable; did you mean WARMCONN_STALE_AFTER_MS?'],
    [{ WARMCONN_IDLE_TIMEOUT: '30000' }, 'Invalid option "WARMCONN_IDLE_TIMEOUT": not a warmconn variable; did you mean WARMCONN_IDLE_TIMEOUT_MS (durations'],
    [{ WARMCONN_PING_TIMEOUT_MS: '5s' }, 'Invalid option "WARMCONN_PING_TIMEOUT_MS": expected a whole number of milliseconds, without a unit: 5s is WARMCONN_PING_TIMEOUT_MS=5000'],
    [{ WARMCONN_STALE_AFTER_MS: '5000', WARMCONN_IDLE_TIMEOUT_MS: '1000' }, 'Invalid option "staleAfterMs": 5000 is not below idleTimeoutMs (1000)'],
  ])('misconfigured with %j: the database routes answer 500 naming the fix, 404 still answered, no connection made', async (env, words) => {
    const l = await lambda(env)
    const res = await call(l, 'GET', '/db')
    expect(res.status).toBe(500)
    expect(res.body.error).toContain(`server misconfigured: ${words}`)
    expect((await call(l, 'GET', '/nope')).status).toBe(404)
    expect(await pg.backends('warmconn')).toEqual([])
    expect(l.logs().join('\n')).toContain('-> 500 (WARMCONN_INVALID_OPTION)')
  })

  it('database down: 503 within a bounded time, then 200 again once it is back, without a restart', async () => {
    const l = await lambda()
    expect((await call(l, 'GET', '/db')).status).toBe(200)
    await pg.stopServer()
    let down: Http & { durationMs: number }
    try {
      down = await call(l, 'GET', '/db')
    } finally {
      await pg.startServer()
    }
    expect(down.status).toBe(503)
    expect(down.durationMs).toBeLessThan(10_000)
    expect(JSON.stringify(down.body)).not.toContain(pg.password)
    const back = await call(l, 'GET', '/db')
    expect(back.status).toBe(200)
    expect(l.logs().join('\n')).not.toContain(pg.password)
  })
})
