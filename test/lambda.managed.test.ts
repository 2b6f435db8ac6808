/**
 * Lambda Managed Instances in the emulator (startLambda({ managed })), against a real PostgreSQL:
 * one runtime process whose main thread starts worker threads, each loading the bundled handler
 * (a module scope of its own) and running many invocations at once, never frozen, the invocation
 * timeout not enforced. warmconn must keep the connection count at threads x maxConnections,
 * keep every invocation's session state its own, cut a call off at its invocation's deadline
 * itself, and, with warmconn/lambda/shutdown preloaded in the main thread, close every thread's
 * connections gracefully at SIGTERM, which reaches only the main thread.
 *
 * Graceful is read from the server: with log_min_messages = debug1 PostgreSQL logs "unexpected
 * EOF on client connection" for a session whose client vanished without a Terminate message, and
 * log_disconnections logs every session's end.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { build, startLambda, type InvokeResult, type LambdaEmulator, type LambdaOptions } from './harness/lambda/emulator.js'
import { appName, eventually } from './helpers/core.js'

const THREADS = 2
const PER_THREAD = 64
const MAX_CONNECTIONS = 2
/** What the server logs when a client's socket closes without Terminate (elog DEBUG1), or breaks. */
const UNGRACEFUL = /unexpected EOF on client connection|could not receive data from client/

let db: TestPg
let dir: string
let handlerFile: string
let shutdownFile: string
let lambda: LambdaEmulator | undefined

beforeAll(async () => {
  // client_connection_check_interval: a backend in pg_sleep notices its client gone and ends.
  db = await startPostgres({ settings: { log_min_messages: 'debug1', log_disconnections: 'on', client_connection_check_interval: '100ms' } })
  dir = mkdtempSync(join(tmpdir(), 'warmconn-managed-'))
  ;[handlerFile, shutdownFile] = await Promise.all([
    build('test/fixtures/lambda-managed.ts', join(dir, 'managed.mjs')),
    // The preload as a user ships it next to a bundled handler: one file, Node built-ins only.
    build('src/lambda/shutdown.ts', join(dir, 'shutdown.mjs')),
  ])
})
afterEach(async () => {
  await lambda?.kill()
  lambda = undefined
})
afterAll(async () => {
  await db?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

type Answer = { thread?: number; tenant?: string; pid?: number; slept?: boolean; waited?: boolean }

async function start(app: string, opts: Partial<LambdaOptions> & { preload?: boolean } = {}): Promise<LambdaEmulator> {
  const { preload = true, env, ...rest } = opts
  lambda = await startLambda({
    handlerFile,
    managed: { threads: THREADS, concurrencyPerThread: PER_THREAD },
    ...rest,
    env: {
      DATABASE_URL: db.url,
      WC_TEST_APP: app,
      WC_TEST_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      ...(preload ? { NODE_OPTIONS: `--import ${shutdownFile}` } : {}),
      ...env,
    },
  })
  return lambda
}

/** Peak and every pid of the app's backends while `work` runs, read from pg_stat_activity. */
async function watchBackends<T>(app: string, work: () => Promise<T>): Promise<{ value: T; peak: number; pids: Set<number> }> {
  let peak = 0
  const pids = new Set<number>()
  let watching = true
  const watch = (async () => {
    while (watching) {
      const backends = await db.backends(app)
      peak = Math.max(peak, backends.length)
      for (const b of backends) pids.add(b.pid)
      await sleep(5)
    }
  })()
  try {
    return { value: await work(), peak, pids }
  } finally {
    watching = false
    await watch
  }
}

/** One full round: every thread's every loop busy at once, a quarter of the invocations setting a tenant. */
function fullRound(target: LambdaEmulator, round: number): Promise<InvokeResult[]> {
  return Promise.all(
    Array.from({ length: THREADS * PER_THREAD }, (_, i) =>
      target.invoke(i % 4 === 0 ? { action: 'set', tenant: `r${round}-t${i}` } : { action: 'read' }),
    ),
  )
}

async function disconnections(since: number, pids: Iterable<number>): Promise<{ ended: number[]; ungraceful: string[] }> {
  const wanted = new Set(pids)
  const records = (await db.logRecords(since)).filter((r) => wanted.has(r.pid))
  return {
    ended: [...new Set(records.filter((r) => r.message.startsWith('disconnection:')).map((r) => r.pid))].sort(),
    ungraceful: records.filter((r) => UNGRACEFUL.test(r.message)).map((r) => `${r.pid} ${r.severity}: ${r.message}`),
  }
}

describe('Lambda Managed Instances in the emulator', () => {
  it(`${THREADS} threads x ${PER_THREAD} concurrent invocations: 0 failures, both threads serve, at most threads x maxConnections backends, no invocation reads another's tenant`, async () => {
    const app = appName('managed')
    const target = await start(app)
    const { value: rounds, peak } = await watchBackends(app, async () => [await fullRound(target, 0), await fullRound(target, 1)])
    for (const results of rounds) {
      expect(results.filter((r) => r.error)).toEqual([])
      expect(new Set(results.map((r) => (r.result as Answer).thread)).size).toBe(THREADS)
    }
    const events = Array.from({ length: THREADS * PER_THREAD }, (_, i) => i)
    for (const [round, results] of rounds.entries()) {
      for (const i of events) expect((results[i]!.result as Answer).tenant).toBe(i % 4 === 0 ? `r${round}-t${i}` : '')
    }
    // One process served all of them, never frozen; the first answers were its cold start.
    expect(rounds.flat().filter((r) => r.coldStart).length).toBeGreaterThan(0)
    expect(target.isFrozen()).toBe(false)
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(THREADS * MAX_CONNECTIONS)
  })

  it("the runtime does not stop an invocation at its timeout (a late answer is taken); a call still running at its invocation's deadline is cut off by warmconn", async () => {
    const app = appName('managed-deadline')
    const target = await start(app, { timeoutMs: 800 })
    await target.invoke({ action: 'read' })
    const pid = target.pid
    const [waited, slept] = await Promise.all([
      target.invoke({ action: 'wait', seconds: 1.2 }),
      target.invoke({ action: 'sleep', seconds: 20 }),
    ])
    // The JavaScript wait ran past 800 ms and still answered, from the same process.
    expect(waited).toMatchObject({ result: { waited: true }, late: true })
    expect(slept.error).toMatchObject({ errorType: 'CallTimeoutError' })
    expect(slept.error!.errorMessage).toMatch(/invocation's deadline/)
    expect(slept.durationMs).toBeLessThan(15_000) // a hang detector: without the cut-off it waits 20 s
    expect(target.pid).toBe(pid)
    expect(await target.invoke({ action: 'read' })).toMatchObject({ result: { tenant: '' } })
    // The sleeping backend's client is gone (its socket destroyed at the deadline), so the server ended it.
    expect(await eventually(async () => (await db.admin`select 1 from pg_stat_activity where application_name = ${app} and query like '%pg_sleep%' and state = 'active'`).length === 0)).toBe(true)
  })

  it.each([
    { mainSigterm: 'none', ends: { signal: 'SIGTERM' } },
    { mainSigterm: 'exit', ends: { exitCode: 0, signal: null } },
  ] as const)("SIGTERM with warmconn/lambda/shutdown preloaded, the runtime's main thread with SIGTERM listener $mainSigterm: an invocation in flight is answered, then every thread's backends end gracefully (Terminate, no EOF) before SIGKILL", async ({ mainSigterm, ends }) => {
    const app = appName(`managed-sigterm-${mainSigterm}`)
    const target = await start(app, { managed: { threads: THREADS, concurrencyPerThread: PER_THREAD, mainSigterm } })
    const since = await db.mark()
    const { value: results, pids } = await watchBackends(app, async () => {
      const rounds = await fullRound(target, 0)
      // Both threads hold connections now; one invocation is still running on the server at SIGTERM.
      const inFlight = target.invoke({ action: 'sleep', seconds: 0.15 })
      expect(await eventually(async () => (await db.admin`select 1 from pg_stat_activity where application_name = ${app} and query like '%pg_sleep%' and state = 'active'`).length === 1)).toBe(true)
      const [answer, exit] = await Promise.all([inFlight, target.shutdown()])
      return { rounds, answer, exit }
    })
    expect(results.rounds.filter((r) => r.error)).toEqual([])
    const threadsWithConnections = new Set(results.rounds.map((r) => (r.result as Answer).thread))
    expect(threadsWithConnections.size).toBe(THREADS)
    expect(results.answer).toMatchObject({ result: { slept: true } })
    // The process ended itself, not by SIGKILL: with no listener of the runtime's, the relay raised
    // SIGTERM again once every thread had closed; with one that exits at once, the relay held the
    // exit until then.
    expect(results.exit).toMatchObject(ends)
    expect(pids.size).toBeGreaterThanOrEqual(THREADS)
    expect(await db.backends(app)).toEqual([])
    await db.flushLog()
    const { ended, ungraceful } = await disconnections(since, pids)
    expect(ended).toEqual([...pids].sort())
    expect(ungraceful).toEqual([])
  })

  it('without the preload, SIGTERM ends every thread with its connections open: the server sees EOF, the invocation in flight is lost, and each thread warns', async () => {
    const app = appName('managed-no-relay')
    const target = await start(app, { preload: false })
    const since = await db.mark()
    const { value: results, pids } = await watchBackends(app, async () => {
      const rounds = await fullRound(target, 0)
      const warned = (): number => target.logs().filter((line) => line.includes('cannot close its connections at SIGTERM')).length
      expect(await eventually(async () => warned() === THREADS, 5_000)).toBe(true)
      const inFlight = target.invoke({ action: 'sleep', seconds: 0.15 })
      expect(await eventually(async () => (await db.admin`select 1 from pg_stat_activity where application_name = ${app} and query like '%pg_sleep%' and state = 'active'`).length === 1)).toBe(true)
      const [answer, exit] = await Promise.all([inFlight, target.shutdown()])
      return { rounds, answer, exit }
    })
    expect(results.rounds.filter((r) => r.error)).toEqual([])
    expect(results.answer.error).toMatchObject({ errorType: 'Runtime.ExitError' })
    expect(results.exit.signal).toBe('SIGTERM') // SIGTERM's default action: nobody listened
    expect(await eventually(async () => (await db.backends(app)).length === 0)).toBe(true)
    await db.flushLog()
    const { ungraceful } = await disconnections(since, pids)
    expect(ungraceful.length).toBeGreaterThanOrEqual(THREADS)
  })

  it('in a default Lambda (no worker threads) the preload changes nothing: withWarmconn closes at SIGTERM and the process exits by itself', async () => {
    const app = appName('managed-plain')
    lambda = await startLambda({
      handlerFile,
      sigtermOnShutdown: true,
      env: { DATABASE_URL: db.url, WC_TEST_APP: app, NODE_OPTIONS: `--import ${shutdownFile}` },
    })
    const since = await db.mark()
    const { value, pids } = await watchBackends(app, async () => {
      const answers = await Promise.all([lambda!.invoke({ action: 'read' }), lambda!.invoke({ action: 'read' })])
      return { answers, exit: await lambda!.shutdown() }
    })
    expect(value.answers.map((a) => (a.result as Answer).thread)).toEqual([0, 0])
    expect(value.exit).toMatchObject({ exitCode: 0, signal: null })
    expect(await db.backends(app)).toEqual([])
    await db.flushLog()
    expect((await disconnections(since, pids)).ungraceful).toEqual([])
  })
})
