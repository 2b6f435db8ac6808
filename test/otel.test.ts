/**
 * warmconn/otel with the real OpenTelemetry SDK (MeterProvider, PeriodicExportingMetricReader,
 * InMemoryMetricExporter) against a real PostgreSQL, for postgres.js (a holder), pg (warmPool) and
 * @neondatabase/serverless (a holder, over the WebSocket relay):
 * one scripted workload (cold start, warm calls, a call in progress, 3 callers on 1 connection, an
 * acquire timeout, a stale check, a killed backend, a call timeout, an idle close), after each
 * step every instrument read against what the server and `stats()` say. The Durable Object holder
 * is in workers.otel.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AcquireTimeoutError, CallTimeoutError, InvalidOptionError, type Holder, type HolderStats } from '../src/index.js'
import { warmPool } from '../src/drivers/pg.js'
import { postgresDriver, type Sql } from '../src/drivers/postgres.js'
import { Holder as HolderClass } from '../src/holder.js'
import { instrument, poolNameOf } from '../src/otel/index.js'
import { neonDriver } from '../src/drivers/neon.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startRelay, type Relay } from './harness/relay.js'
import { appName, eventually, sleep } from './helpers/core.js'
import { pointOf, testMeter, type Reading, type TestMeter } from './helpers/otel.js'

let pg: TestPg
let relay: Relay
beforeAll(async () => {
  pg = await startPostgres()
  relay = await startRelay()
})
afterAll(async () => {
  await relay?.close()
  await pg?.stop()
})

/**
 * The holder options of the workload: one connection, short stale and idle windows. The acquire
 * timeout stays below the server's idle_session_timeout that warmconn asks for (idleTimeoutMs +
 * 1 s): a call holding its connection without a statement for longer is ended by the server.
 */
const WORKLOAD = { maxConnections: 1, staleAfterMs: 200, idleTimeoutMs: 1_500, acquireTimeoutMs: 1_000 }

/** One way in (a driver and its facade), reduced to what the workload needs. */
interface Subject {
  holder: Holder<unknown>
  /** What instrument() is given: the holder, or the pool that has it. */
  target: Parameters<typeof instrument>[0]
  app: string
  /** A call that returns its backend pid. */
  pid(): Promise<number>
  /** A call that reads its pid, tells `started`, then keeps the connection until `gate` resolves. */
  hold(started: (pid: number) => void, gate: Promise<void>): Promise<number>
  /** A call that runs pg_sleep(5) under a deadline of `timeoutMs`. */
  sleepPast(timeoutMs: number): Promise<unknown>
  close(): Promise<void>
}

function postgresSubject(): Subject {
  const app = appName('otel-pgjs')
  const holder = new HolderClass(postgresDriver(pg.urlFor({ params: { application_name: app } }), { onnotice: () => {} }), WORKLOAD)
  const pidOf = (rows: Array<{ pid: number }>) => Number(rows[0]!.pid)
  return {
    holder: holder as Holder<unknown>,
    target: holder,
    app,
    // Idempotent: a backend killed an instant before the call (its goodbye still in flight) is then replayed, not an error.
    pid: () => holder.run(async (sql: Sql) => pidOf(await sql`select pg_backend_pid() as pid`), { idempotent: true }),
    hold: (started, gate) =>
      holder.run(async (sql: Sql) => {
        const pid = pidOf(await sql`select pg_backend_pid() as pid`)
        started(pid)
        await gate
        return pid
      }),
    sleepPast: (timeoutMs) => holder.run((sql: Sql) => sql`select pg_sleep(5)`, { timeoutMs }),
    close: () => holder.close(),
  }
}

function poolSubject(): Subject {
  const app = appName('otel-pool')
  const pool = warmPool(pg.url, { applicationName: app, ...WORKLOAD })
  const pidOf = (r: { rows: Array<{ pid: number }> }) => Number(r.rows[0]!.pid)
  return {
    holder: pool.holder as Holder<unknown>,
    target: pool,
    app,
    pid: async () => pidOf(await pool.query<{ pid: number }>({ text: 'select pg_backend_pid() as pid', idempotent: true } as { text: string })),
    // pg's own way to hold a connection: connect() ... release().
    hold: async (started, gate) => {
      const client = await pool.connect()
      try {
        const pid = pidOf(await client.query<{ pid: number }>('select pg_backend_pid() as pid'))
        started(pid)
        await gate
        return pid
      } finally {
        client.release()
      }
    },
    sleepPast: (timeoutMs) => pool.holder.run((client) => client.query('select pg_sleep(5)'), { timeoutMs }),
    close: () => pool.end(),
  }
}

/** @neondatabase/serverless over the local WebSocket relay that stands in for Neon's proxy. */
function neonSubject(): Subject {
  const app = appName('otel-neon')
  const holder = new HolderClass(neonDriver(pg.urlFor({ params: { application_name: app } }), relay.neonConfig()), WORKLOAD)
  const pidOf = (r: { rows: Array<{ pid: number }> }) => Number(r.rows[0]!.pid)
  return {
    holder: holder as Holder<unknown>,
    target: holder,
    app,
    pid: () => holder.run(async (client) => pidOf(await client.query<{ pid: number }>('select pg_backend_pid() as pid')), { idempotent: true }),
    hold: (started, gate) =>
      holder.run(async (client) => {
        const pid = pidOf(await client.query<{ pid: number }>('select pg_backend_pid() as pid'))
        started(pid)
        await gate
        return pid
      }),
    sleepPast: (timeoutMs) => holder.run((client) => client.query('select pg_sleep(5)'), { timeoutMs }),
    close: () => holder.close(),
  }
}

/** A promise and the function that resolves it. */
function latch<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void
  const promise = new Promise<T>((r) => (open = r))
  return { promise, open }
}

describe.each([
  ['postgres.js (a holder)', postgresSubject],
  ['pg (warmPool)', poolSubject],
  ['@neondatabase/serverless (a holder)', neonSubject],
])('%s', (_label, make) => {
  let s: Subject
  let meter: TestMeter
  let stop: () => void
  let pool: string
  /** Every backend pid a call of the workload ran on, in order of first sight. */
  const pids: number[] = []
  const saw = (pid: number) => (pids.includes(pid) ? pid : (pids.push(pid), pid))

  beforeAll(() => {
    s = make()
    meter = testMeter()
    stop = instrument(s.target, { meterProvider: meter.provider })
    pool = `${pg.host}:${pg.port}/${pg.database}`
  })
  afterAll(async () => {
    stop?.()
    await s?.close()
    await meter?.shutdown()
  })

  const value = (r: Reading, name: string, extra: Record<string, unknown> = {}) => pointOf(r, name, { 'db.client.connection.pool.name': pool, ...extra })?.value
  const histogram = (r: Reading, name: string) => pointOf(r, name, { 'db.client.connection.pool.name': pool })
  const state = (r: Reading, st: 'idle' | 'used') => value(r, 'db.client.connection.count', { 'db.client.connection.state': st })
  /** Every warmconn.* counter equals the holder's own count. */
  const ownMatchStats = (r: Reading, stats: HolderStats) => {
    const pairs: Array<[string, keyof HolderStats]> = [
      ['warmconn.calls', 'runs'], ['warmconn.reuses', 'reused'], ['warmconn.revalidations', 'revalidated'],
      ['warmconn.revalidation_failures', 'revalidateFailures'], ['warmconn.reconnects', 'reconnected'], ['warmconn.replays', 'replays'],
      ['warmconn.session_resets', 'sessionResets'], ['warmconn.call_timeouts', 'callTimeouts'], ['warmconn.connect_retries', 'connectRetries'],
      ['warmconn.connect_failures', 'connectFailures'],
    ]
    for (const [name, stat] of pairs) expect(value(r, name), name).toBe(stats[stat])
    for (const [reason, stat] of [['idle', 'closedIdle'], ['lifetime', 'closedLifetime'], ['broken', 'closedBroken']] as const) {
      expect(value(r, 'warmconn.closes', { 'warmconn.close.reason': reason }), reason).toBe(stats[stat])
    }
  }

  it('cold start: the instruments exist with the conventions\' names, units and types, nothing open, no sample', async () => {
    const r = await meter.read()
    const expected: Record<string, [string, string]> = {
      'db.client.connection.count': ['{connection}', 'updowncounter'],
      'db.client.connection.idle.max': ['{connection}', 'updowncounter'],
      'db.client.connection.idle.min': ['{connection}', 'updowncounter'],
      'db.client.connection.max': ['{connection}', 'updowncounter'],
      'db.client.connection.limit': ['{connection}', 'updowncounter'],
      'db.client.connection.pending_requests': ['{request}', 'updowncounter'],
      'warmconn.reconnects': ['{connection}', 'counter'],
    }
    for (const [name, [unit, type]] of Object.entries(expected)) expect({ name, unit: r[name]?.unit, type: r[name]?.type }).toEqual({ name, unit, type })
    expect([state(r, 'idle'), state(r, 'used')]).toEqual([0, 0])
    expect(value(r, 'db.client.connection.max')).toBe(1)
    expect(value(r, 'db.client.connection.limit')).toBe(1)
    expect(value(r, 'db.client.connection.idle.max')).toBe(1)
    expect(value(r, 'db.client.connection.idle.min')).toBe(0)
    expect(value(r, 'db.client.connection.pending_requests')).toBe(0)
    // Histograms and event counters have no point before their first sample.
    for (const name of ['db.client.connection.create_time', 'db.client.connection.wait_time', 'db.client.connection.use_time', 'db.client.connection.timeouts']) {
      expect(r[name]?.points ?? [], name).toEqual([])
    }
    ownMatchStats(r, s.holder.stats())
    expect(await pg.backends(s.app)).toEqual([])
  })

  it('first call and 5 warm calls: one connect (create_time 1 sample), 6 waits and uses, 1 idle, one backend', async () => {
    for (let i = 0; i < 6; i++) saw(await s.pid())
    const r = await meter.read()
    expect(pids).toHaveLength(1)
    expect((await pg.backends(s.app)).map((b) => b.pid)).toEqual(pids)
    expect(histogram(r, 'db.client.connection.create_time')?.count).toBe(1)
    expect(histogram(r, 'db.client.connection.wait_time')?.count).toBe(6)
    expect(histogram(r, 'db.client.connection.use_time')?.count).toBe(6)
    for (const name of ['db.client.connection.create_time', 'db.client.connection.wait_time', 'db.client.connection.use_time']) expect(r[name]?.unit, name).toBe('s')
    expect([state(r, 'idle'), state(r, 'used')]).toEqual([1, 0])
    const stats = s.holder.stats()
    expect(stats.opened).toBe(1)
    ownMatchStats(r, stats)
  })

  it('while a call holds the connection: used 1, idle 0; its use_time is at least as long as it was held', async () => {
    const gate = latch()
    const started = latch<number>()
    const call = s.hold(started.open, gate.promise)
    const pid = saw(await started.promise)
    const heldFrom = performance.now()
    const r = await meter.read()
    expect([state(r, 'idle'), state(r, 'used')]).toEqual([0, 1])
    expect(s.holder.stats()).toMatchObject({ open: 1, idle: 0, inUse: 1 })
    expect((await pg.backends(s.app)).map((b) => b.pid)).toEqual([pid])
    await sleep(20)
    const heldMs = performance.now() - heldFrom
    gate.open()
    await call
    const after = await meter.read()
    expect([state(after, 'idle'), state(after, 'used')]).toEqual([1, 0])
    expect(histogram(after, 'db.client.connection.use_time')!.max! * 1000).toBeGreaterThanOrEqual(heldMs)
  })

  it('3 callers on 1 connection: pending_requests 2 while two wait, 0 after; each waiter\'s wait_time covers its wait', async () => {
    const before = await meter.read()
    const waitsBefore = histogram(before, 'db.client.connection.wait_time')!.count!
    const gate = latch()
    const started = latch<number>()
    const holding = s.hold(started.open, gate.promise)
    saw(await started.promise)
    const waiting = [s.pid(), s.pid()]
    const queuedAt = performance.now()
    await vi_poll(() => s.holder.stats().waiting === 2)
    const r = await meter.read()
    expect(value(r, 'db.client.connection.pending_requests')).toBe(2)
    expect([state(r, 'idle'), state(r, 'used')]).toEqual([0, 1])
    await sleep(20)
    const waitedAtLeastMs = performance.now() - queuedAt
    gate.open()
    for (const pid of [await holding, ...(await Promise.all(waiting))]) saw(pid)
    const after = await meter.read()
    expect(value(after, 'db.client.connection.pending_requests')).toBe(0)
    const waits = histogram(after, 'db.client.connection.wait_time')!
    expect(waits.count).toBe(waitsBefore + 3)
    expect(waits.max! * 1000).toBeGreaterThanOrEqual(waitedAtLeastMs)
    // Still the one backend: the waiters were handed the same connection.
    expect(pids).toHaveLength(1)
    expect((await pg.backends(s.app)).map((b) => b.pid)).toEqual(pids)
  })

  it('a caller that waits past acquireTimeoutMs: db.client.connection.timeouts 1', async () => {
    const gate = latch()
    const started = latch<number>()
    const holding = s.hold(started.open, gate.promise)
    saw(await started.promise)
    await expect(s.pid()).rejects.toBeInstanceOf(AcquireTimeoutError)
    gate.open()
    await holding
    const r = await meter.read()
    expect(value(r, 'db.client.connection.timeouts')).toBe(1)
    expect(r['db.client.connection.timeouts']?.type).toBe('counter')
    expect(r['db.client.connection.timeouts']?.unit).toBe('{timeout}')
  }, 15_000)

  it('a stale check (idle past staleAfterMs): warmconn.revalidations one more, same backend, no connect', async () => {
    const before = s.holder.stats()
    await sleep(WORKLOAD.staleAfterMs + 100)
    const pid = saw(await s.pid())
    const r = await meter.read()
    const stats = s.holder.stats()
    expect(stats.revalidated).toBe(before.revalidated + 1)
    expect(value(r, 'warmconn.revalidations')).toBe(stats.revalidated)
    expect(pid).toBe(pids[0])
    expect(histogram(r, 'db.client.connection.create_time')?.count).toBe(pids.length)
    ownMatchStats(r, stats)
  })

  it('a backend killed by the server: closes{broken} and reconnects one more, create_time one sample per backend pid', async () => {
    const before = s.holder.stats()
    await pg.terminate({ pid: pids.at(-1)! })
    // The holder learns of the close from the socket, or at the next call's check.
    const pid = saw(await s.pid())
    expect(pid).not.toBe(pids[0])
    const r = await meter.read()
    const stats = s.holder.stats()
    expect(stats.reconnected).toBe(before.reconnected + 1)
    expect(value(r, 'warmconn.reconnects')).toBe(stats.reconnected)
    expect(value(r, 'warmconn.closes', { 'warmconn.close.reason': 'broken' })).toBe(before.closedBroken + 1)
    expect(histogram(r, 'db.client.connection.create_time')?.count).toBe(pids.length)
    expect((await pg.backends(s.app)).map((b) => b.pid)).toEqual([pid])
    ownMatchStats(r, stats)
  })

  it('a call timeout: warmconn.call_timeouts 1, its connection destroyed (gone from the server), the next call on a new backend', async () => {
    const victim = pids.at(-1)!
    await expect(s.sleepPast(300)).rejects.toBeInstanceOf(CallTimeoutError)
    // The server ends the backend once it sees the socket closed (pg_sleep notices at its next check).
    expect(await eventually(async () => !(await pg.backends(s.app)).some((b) => b.pid === victim), 10_000)).toBe(true)
    const pid = saw(await s.pid())
    expect(pid).not.toBe(victim)
    const r = await meter.read()
    const stats = s.holder.stats()
    expect(value(r, 'warmconn.call_timeouts')).toBe(1)
    expect(histogram(r, 'db.client.connection.create_time')?.count).toBe(pids.length)
    expect((await pg.backends(s.app)).map((b) => b.pid)).toEqual([pid])
    ownMatchStats(r, stats)
  }, 20_000)

  it('an idle close (idleTimeoutMs): idle 0 and used 0 once the server has no backend, closes{idle} counted', async () => {
    const before = s.holder.stats().closedIdle
    expect(await eventually(async () => s.holder.stats().closedIdle > before && (await pg.backends(s.app)).length === 0, 10_000)).toBe(true)
    const r = await meter.read()
    expect([state(r, 'idle'), state(r, 'used')]).toEqual([0, 0])
    expect(value(r, 'warmconn.closes', { 'warmconn.close.reason': 'idle' })).toBe(s.holder.stats().closedIdle)
    // Every connect was a backend the server reported: one create_time sample each, no more.
    expect(histogram(r, 'db.client.connection.create_time')?.count).toBe(pids.length)
    expect(s.holder.stats().opened).toBe(pids.length)
    ownMatchStats(r, s.holder.stats())
  }, 15_000)

  it('stop(): no more samples or observations; calling it again does nothing', async () => {
    const before = await meter.read()
    stop()
    stop()
    const gate = latch()
    const started = latch<number>()
    const holding = s.hold(started.open, gate.promise)
    saw(await started.promise)
    const r = await meter.read()
    // The callback is gone: the connection in use now is not observed as used.
    expect(state(r, 'used')).not.toBe(1)
    gate.open()
    await holding
    const after = await meter.read()
    for (const name of ['db.client.connection.create_time', 'db.client.connection.wait_time', 'db.client.connection.use_time']) {
      expect(histogram(after, name)?.count, name).toBe(histogram(before, name)?.count)
    }
  })
})

/** Polls a synchronous condition (the holder's own state) until true, for up to 5 s. */
async function vi_poll(check: () => boolean): Promise<void> {
  expect(await eventually(async () => check(), 5_000)).toBe(true)
}

describe('the server\'s own idle close (idle_session_timeout, 57P05), through pg', () => {
  it('warmconn.server_idle_closes counts it, and the pool reads idle 0', async () => {
    const app = appName('otel-57p05')
    // The server's timeout, not warmconn's: no startup idle_session_timeout, a long idleTimeoutMs.
    const p = warmPool(pg.url, { applicationName: app, serverIdleClose: false, idleTimeoutMs: 60_000 })
    p.holder.on('warning', () => {}) // the expected "server closes first" warning, kept off the console
    const meter = testMeter()
    const stop = instrument(p, { meterProvider: meter.provider, poolName: 'ledger' })
    try {
      await pg.setIdleSessionTimeout(300)
      const first = Number((await p.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)
      expect(await eventually(async () => !(await pg.backends(app)).some((b) => b.pid === first) && p.holder.stats().closedBroken === 1, 10_000)).toBe(true)
      const r = await meter.read()
      expect(pointOf(r, 'warmconn.server_idle_closes', { 'db.client.connection.pool.name': 'ledger' })?.value).toBe(1)
      expect(pointOf(r, 'db.client.connection.count', { 'db.client.connection.pool.name': 'ledger', 'db.client.connection.state': 'idle' })?.value).toBe(0)
    } finally {
      await pg.resetIdleSessionTimeout()
      stop()
      await p.end()
      await meter.shutdown()
    }
  }, 20_000)
})

describe('instrument() arguments', () => {
  it('refuses what is not a holder or pool, unknown options, a bad meterProvider or poolName, by name', () => {
    const holder = new HolderClass(postgresDriver(pg.url), {})
    const cases: Array<[() => unknown, string]> = [
      [() => instrument({} as never), 'holder'],
      [() => instrument(null as never), 'holder'],
      [() => instrument(holder, { meterprovider: {} } as never), 'meterprovider'],
      [() => instrument(holder, { meterProvider: {} as never }), 'meterProvider'],
      [() => instrument(holder, { poolName: '' }), 'poolName'],
      [() => instrument(holder, { poolName: 5 as never }), 'poolName'],
    ]
    for (const [call, option] of cases) {
      let err: unknown
      try {
        call()
      } catch (e) {
        err = e
      }
      expect(err, option).toBeInstanceOf(InvalidOptionError)
      expect((err as InvalidOptionError).option).toBe(option)
    }
  })

  it('default pool name: host:port/database, never the user or the password (also a user with @ and /)', async () => {
    expect(poolNameOf('app@db.example.com:5432/shop')).toBe('db.example.com:5432/shop')
    expect(poolNameOf('we@ird/u:1@[::1]:6543/d')).toBe('[::1]:6543/d')
    const url = pg.urlFor({ user: 'postgres' })
    const holder = new HolderClass(postgresDriver(url, { onnotice: () => {} }), {})
    const meter = testMeter()
    const stop = instrument(holder, { meterProvider: meter.provider })
    try {
      await holder.run((sql: Sql) => sql`select 1`)
      const r = await meter.read()
      const names = new Set(Object.values(r).flatMap((i) => i.points.map((p) => p.attributes['db.client.connection.pool.name'])))
      expect([...names]).toEqual([`${pg.host}:${pg.port}/${pg.database}`])
      const text = JSON.stringify(r)
      expect(text).not.toContain(pg.password)
      expect(text).not.toContain('postgres@')
    } finally {
      stop()
      await holder.close()
      await meter.shutdown()
    }
  })
})
