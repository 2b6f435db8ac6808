/**
 * The pg driver through Drizzle over warmPool, bundled as deployed and run in the Lambda emulator,
 * frozen between invocations with SIGSTOP/SIGCONT: the scenarios test/lambda.test.ts covers for
 * postgres.js. Every test checks what the PostgreSQL server saw.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { HolderStats } from '../src/index.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { eventually, sleep } from './helpers/core.js'

let pg: TestPg
let dir: string
let file: string
const running: LambdaEmulator[] = []
const proxies: FaultProxy[] = []
const APP = 'wc-lambda-drizzle'

beforeAll(async () => {
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-lambda-pg-'))
  file = await build('test/fixtures/lambda-drizzle.ts', join(dir, 'drizzle.mjs'))
  await pg.admin`create table lambda_pg_notes (id serial primary key, note text not null)`
})
afterEach(async () => {
  for (const l of running.splice(0)) await l.kill()
  for (const p of proxies.splice(0)) await p.close()
  await pg.terminate({ applicationName: APP })
})
afterAll(async () => {
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function lambda(env: Record<string, string> = {}, opts: { concurrency?: number; freeze?: boolean; sigtermOnShutdown?: boolean } = {}) {
  const url = env.DATABASE_URL ?? pg.url
  const l = await startLambda({ handlerFile: file, env: { ...env, DATABASE_URL: `${url}?application_name=${APP}` }, timeoutMs: 15_000, ...opts })
  running.push(l)
  return l
}

interface Answer { pid: number; count: number; stats: HolderStats }
async function call(l: LambdaEmulator, event: object): Promise<Answer & { durationMs: number }> {
  const out = await l.invoke(event)
  if (out.error) throw new Error(`invocation failed: ${out.error.errorType}: ${out.error.errorMessage}`)
  return { ...(out.result as Answer), durationMs: out.durationMs }
}
const count = async (note: string) => Number((await pg.admin`select count(*)::int as n from lambda_pg_notes where note = ${note}`)[0]!.n)

describe('warm invocations', () => {
  it('100 warm invocations are served by one backend pid with 0 errors', async () => {
    const l = await lambda()
    const pids = new Set<number>()
    for (let i = 0; i < 100; i++) pids.add((await call(l, { action: 'pid' })).pid)
    expect(pids.size).toBe(1)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([...pids])
    expect((await call(l, { action: 'pid' })).stats).toMatchObject({ opened: 1, failures: 0 })
  })

  it('frozen while its backend is killed: the next invocation succeeds with one reconnect', async () => {
    const l = await lambda()
    const first = await call(l, { action: 'pid' })
    expect(l.isFrozen()).toBe(true)
    await pg.terminate({ pid: first.pid })
    const next = await call(l, { action: 'pid' })
    expect(next.pid).not.toBe(first.pid)
    expect(next.stats).toMatchObject({ reconnected: 1, failures: 0 })
    // A write, not idempotent, after the same kill: never sent on the dead connection. The
    // freeze lasts a moment here: a call within 50 ms of the last one skips letting queued socket
    // events land (the hot path), and a goodbye read only as the write's answer is a lost
    // connection, as the README says.
    await pg.terminate({ pid: next.pid })
    await sleep(100)
    await call(l, { action: 'insert', note: 'after-kill' })
    expect(await count('after-kill')).toBe(1)
  })

  it('frozen past staleAfterMs with the socket blackholed: answered after one bounded check, not after minutes', async () => {
    const proxy = await startProxy({ host: pg.host, port: pg.port })
    proxies.push(proxy)
    const l = await lambda({ DATABASE_URL: pg.urlFor({ port: proxy.port }), WARMCONN_STALE_AFTER_MS: '200', WARMCONN_PING_TIMEOUT_MS: '500' })
    const first = await call(l, { action: 'pid' })
    proxy.blackhole()
    proxy.heal()
    await sleep(300)
    const next = await call(l, { action: 'pid' })
    expect(next.pid).not.toBe(first.pid)
    expect(next.stats).toMatchObject({ revalidateFailures: 1, reconnected: 1, failures: 0 })
    expect(next.durationMs).toBeLessThan(500 + 5_000) // a hang detector, not a speed test
  })

  it('frozen past idleTimeoutMs: the old connection is never used again', async () => {
    const l = await lambda({ WARMCONN_IDLE_TIMEOUT_MS: '300' })
    const first = await call(l, { action: 'pid' })
    const mark = await pg.mark()
    await sleep(600)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([first.pid]) // frozen: no timer fired
    const next = await call(l, { action: 'pid' })
    expect(next.pid).not.toBe(first.pid)
    expect(next.stats).toMatchObject({ closedIdle: 1, revalidated: 0 })
    expect(await pg.statements({ pid: first.pid, since: mark })).toEqual([])
    expect(await eventually(async () => !(await pg.backends(APP)).some((b) => b.pid === first.pid))).toBe(true)
  })

  it('left running (not frozen) past idleTimeoutMs: no backend of the function is left', async () => {
    const l = await lambda({ WARMCONN_IDLE_TIMEOUT_MS: '300' }, { freeze: false })
    await call(l, { action: 'pid' })
    expect(await pg.backends(APP)).toHaveLength(1)
    expect(await eventually(async () => (await pg.backends(APP)).length === 0)).toBe(true)
  })

  it('SIGTERM closes the connection and the process exits promptly', async () => {
    const l = await lambda({}, { sigtermOnShutdown: true })
    await call(l, { action: 'pid' })
    expect(await pg.backends(APP)).toHaveLength(1)
    const exit = await l.shutdown()
    expect(exit.signal).toBeNull()
    expect(exit.exitCode).toBe(0)
    expect(await eventually(async () => (await pg.backends(APP)).length === 0, 1_000)).toBe(true)
  })

  it('two concurrent invocations in one process both succeed over one connect (maxConnections 1)', async () => {
    const l = await lambda({ WARMCONN_MAX_CONNECTIONS: '1' }, { concurrency: 2 })
    await Promise.all([call(l, { action: 'insert', note: 'concurrent-a' }), call(l, { action: 'insert', note: 'concurrent-b' })])
    const after = await call(l, { action: 'pid' })
    expect(after.stats.opened).toBe(1)
    expect(await pg.backends(APP)).toHaveLength(1)
    expect([await count('concurrent-a'), await count('concurrent-b')]).toEqual([1, 1])
  })
})

describe('session hygiene across invocations', () => {
  it.each([
    ['fail-tx', 'inside db.transaction', 0],
    ['fail-raw', 'between BEGIN and COMMIT', 1],
  ] as const)('%s: a handler that throws mid-transaction commits nothing; the next invocation starts clean', async (action, message, resets) => {
    const l = await lambda()
    const note = `lambda-${action}`
    const failed = await l.invoke({ action, note })
    expect(failed.error?.errorMessage).toContain(message)
    expect(await count(note)).toBe(0)
    expect((await pg.backends(APP)).map((b) => b.state)).toEqual(['idle'])
    const next = await call(l, { action: 'insert', note: `${note}-next` })
    expect(await count(`${note}-next`)).toBe(1) // committed at once: not inside the failed transaction
    expect(next.stats.sessionResets).toBe(resets)
  })
})

describe('database down', () => {
  it('fails typed within a bounded time, then works again once it is back, without a restart', async () => {
    const l = await lambda()
    await call(l, { action: 'pid' })
    await pg.stopServer()
    let down
    try {
      down = await l.invoke({ action: 'pid' })
    } finally {
      await pg.startServer()
    }
    expect(down.error?.errorType).toBe('ConnectError')
    expect(down.durationMs).toBeLessThan(10_000)
    expect(JSON.stringify(down.error)).not.toContain(pg.password)
    expect(Number.isInteger((await call(l, { action: 'pid' })).pid)).toBe(true)
    expect(l.logs().join('\n')).not.toContain(pg.password)
  })
})
