/**
 * A frozen function gives its server connection back: warmconn asks PostgreSQL (in the startup
 * packet) to end the session once it has been idle a little longer than idleTimeoutMs, which the
 * server does while the process is frozen (SIGSTOP) and cannot act. The deployable example Lambda,
 * bundled, in the emulator; every assertion reads the server (pg_stat_activity, its log) or
 * PgBouncer's own tables.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { serverIdleTimeoutMs } from '../src/server-idle.js'
import { httpEvent } from './harness/lambda/apigw.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { pgBouncer, startPgBouncer } from './harness/pgbouncer.js'
import { requires } from './helpers/requires.js'
import { eventually, sleep } from './helpers/core.js'

const IDLE_MS = 500
// When the server ends a session warmconn left idle: idleTimeoutMs + max(1 s, 10%).
const SERVER_IDLE_MS = serverIdleTimeoutMs(IDLE_MS)

let pg: TestPg
let dir: string
let appFile: string
const running: LambdaEmulator[] = []

beforeAll(async () => {
  // Few slots, so a handful of frozen instances can fill them: max 9, 3 kept for superusers, 1
  // for the harness's admin, so the `app` role has 5.
  pg = await startPostgres({ maxConnections: 9 })
  dir = mkdtempSync(join(tmpdir(), 'warmconn-frozen-'))
  appFile = await build('functions/lambda.ts', join(dir, 'app.mjs'))
})
afterEach(async () => {
  await Promise.all(running.splice(0).map((l) => l.kill()))
  await pg.terminate({})
})
afterAll(async () => {
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function lambda(env: Record<string, string> = {}): Promise<LambdaEmulator> {
  const l = await startLambda({ handlerFile: appFile, env: { DATABASE_URL: pg.appUrl, WARMCONN_IDLE_TIMEOUT_MS: String(IDLE_MS), ...env }, timeoutMs: 15_000 })
  running.push(l)
  return l
}

interface Db { status: number; pid: number; stats: Record<string, number> }
async function getDb(l: LambdaEmulator): Promise<Db> {
  const out = await l.invoke(httpEvent({ method: 'GET', path: '/db' }))
  if (out.error) throw new Error(`invocation failed: ${out.error.errorType}: ${out.error.errorMessage}`)
  const res = out.result as { statusCode: number; body: string }
  const body = JSON.parse(res.body) as { pid: number; stats: Record<string, number> }
  return { status: res.statusCode, pid: body.pid, stats: body.stats }
}

const backendsOf = async (pids: number[]) => (await pg.backends()).filter((b) => pids.includes(b.pid))

describe('frozen instances hold no server connection past idleTimeoutMs + margin', () => {
  it('5 example Lambdas frozen after one request each: the server ends their sessions while they are frozen; on thaw each answers 200 on one new connection', async () => {
    const fleet = await Promise.all(Array.from({ length: 5 }, () => lambda()))
    const first = await Promise.all(fleet.map(getDb))
    const pids = first.map((r) => r.pid)
    expect(new Set(pids).size).toBe(5)
    expect(fleet.every((l) => l.isFrozen())).toBe(true)
    expect(await backendsOf(pids)).toHaveLength(5)
    const mark = await pg.mark()

    // Frozen, their own idle timers cannot fire: the server lets go on its own.
    expect(await eventually(async () => (await backendsOf(pids)).length === 0, SERVER_IDLE_MS + 5_000)).toBe(true)
    expect(fleet.every((l) => l.isFrozen())).toBe(true)
    const ended = (await pg.logRecords(mark)).filter((r) => pids.includes(r.pid) && /idle-session timeout/.test(r.message))
    expect(ended).toHaveLength(5)

    // Thawed: each finds its connection past idleTimeoutMs and opens one new one, no ping spent.
    const thawed = await Promise.all(fleet.map(getDb))
    for (const [i, r] of thawed.entries()) {
      expect(r.status).toBe(200)
      expect(r.pid).not.toBe(pids[i])
      expect(r.stats).toMatchObject({ opened: 2, failures: 0, revalidated: 0, revalidateFailures: 0 })
    }
  })

  it('the server ends the session at idleTimeoutMs + margin, not before: a live process still closes first, cleanly', async () => {
    const l = await startLambda({ handlerFile: appFile, env: { DATABASE_URL: pg.appUrl, WARMCONN_IDLE_TIMEOUT_MS: String(IDLE_MS) }, freeze: false })
    running.push(l)
    const { pid } = await getDb(l)
    const [row] = await pg.admin`select setting from pg_settings where name = 'idle_session_timeout'`
    expect(row!.setting).toBe('0') // the server's own default: off
    const mark = await pg.mark()
    expect(await eventually(async () => (await backendsOf([pid])).length === 0, 5_000)).toBe(true)
    // Closed by warmconn's idle timer (a Terminate: the server logs no timeout for it).
    expect((await pg.logRecords(mark)).filter((r) => r.pid === pid && /idle-session timeout/.test(r.message))).toEqual([])
  })

  it('max_connections filled by frozen instances: a new instance gets in once their sessions time out; without it, 503', async () => {
    const frozen = await Promise.all(Array.from({ length: 5 }, () => lambda({ WARMCONN_SERVER_IDLE_CLOSE: 'false' })))
    await Promise.all(frozen.map(getDb))
    // The slots for `app` are all held by frozen functions that will never let go on their own.
    const late = await lambda({ WARMCONN_SERVER_IDLE_CLOSE: 'false', WARMCONN_CONNECT_BUDGET_MS: '3000' })
    expect((await getDb(late)).status).toBe(503)
    await Promise.all(frozen.map((l) => l.kill()))
    await pg.terminate({})

    const holding = await Promise.all(Array.from({ length: 5 }, () => lambda()))
    const pids = (await Promise.all(holding.map(getDb))).map((r) => r.pid)
    const started = Date.now()
    const newcomer = await lambda({ WARMCONN_CONNECT_BUDGET_MS: String(SERVER_IDLE_MS + 3_000) })
    const res = await getDb(newcomer)
    expect(res.status).toBe(200)
    expect(Date.now() - started).toBeLessThan(SERVER_IDLE_MS + 3_000 + 5_000) // a hang detector
    expect(res.stats.connectRetries).toBeGreaterThan(0) // it waited out 53300
    expect(holding.every((l) => l.isFrozen())).toBe(true)
    // The newcomer got in on the first slot freed; the other frozen sessions end on their own
    // clocks, a moment apart, every one while its instance is still frozen.
    expect(await eventually(async () => (await backendsOf(pids)).length === 0, SERVER_IDLE_MS + 5_000)).toBe(true)
    expect(holding.every((l) => l.isFrozen())).toBe(true)
  })
})

describe('behind PgBouncer', requires(pgBouncer), () => {
  it('the parameter is refused once and remembered: nothing reaches the caller; client_idle_timeout bounds the pooler\'s client connections', async () => {
    const bouncer = await startPgBouncer(pg, { clientIdleTimeoutSeconds: 1, defaultPoolSize: 2 })
    try {
      const l = await lambda({ DATABASE_URL: bouncer.url() })
      const first = await getDb(l)
      expect(first.status).toBe(200)
      // Refused by PgBouncer ("unsupported startup parameter"), connected again at once without it.
      expect(first.stats).toMatchObject({ opened: 1, connectRetries: 0, connectFailures: 0, failures: 0 })
      expect(bouncer.log().some((line) => /unsupported startup parameter: idle_session_timeout/.test(line))).toBe(true)
      expect(await bouncer.showClients()).toHaveLength(1)
      // Frozen: PgBouncer closes the idle client connection itself, the documented setting.
      expect(await eventually(async () => (await bouncer.showClients()).length === 0, 5_000)).toBe(true)
      await sleep(100)
      const thawed = await getDb(l)
      expect(thawed.status).toBe(200)
      expect(thawed.stats).toMatchObject({ opened: 2, failures: 0 })
    } finally {
      await bouncer.stop()
    }
  })
})
