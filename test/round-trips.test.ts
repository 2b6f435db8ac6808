/**
 * The round trips each path costs, counted, not inferred: client-to-server flights through the
 * fault proxy (a flight is a burst of client bytes after the server last spoke) and the
 * statements the server logged. Baselines are raw postgres.js through the same proxy, measured
 * in the same test, so a claim of "no round trip beyond the handshake" is a comparison of counts.
 */
import postgres from 'postgres'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ConnectionLostError, Holder, type HolderOptions } from '../src/index.js'
import { postgresDriver } from '../src/drivers/postgres.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { appName, sleep } from './helpers/core.js'

let pg: TestPg
let proxy: FaultProxy
const holders: Array<Holder<unknown>> = []
beforeAll(async () => {
  pg = await startPostgres()
  proxy = await startProxy({ host: pg.host, port: pg.port })
  await pg.admin`create table trips (id text primary key, n int not null default 1)`
})
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.close({ timeoutMs: 500 })))
})
afterAll(async () => {
  await proxy?.close()
  await pg?.stop()
})

function holder(options: HolderOptions = {}) {
  const name = appName('trips')
  const h = new Holder(postgresDriver(pg.urlFor({ port: proxy.port }), { onnotice: () => {} }), { applicationName: name, ...options })
  holders.push(h as Holder<unknown>)
  return { h, name }
}

/** Flights the client sent while `fn` ran. */
async function flightsOf<T>(fn: () => Promise<T>): Promise<{ flights: number; value: T }> {
  const before = proxy.flights()
  const value = await fn()
  return { flights: proxy.flights() - before, value }
}

const pidQuery = 'select pg_backend_pid() as pid'
const rows = async (id: string) => Number((await pg.admin`select count(*)::int as n from trips where id = ${id}`)[0]!.n)

describe('a cold call: no round trip beyond the handshake', () => {
  it('the first statement carries the connect: as many flights as raw postgres.js with fetch_types off, and nothing else logged', async () => {
    // Raw postgres.js: connect, one statement, end. The baseline, in the same run.
    const raw = postgres(pg.urlFor({ port: proxy.port }), { max: 1, fetch_types: false, onnotice: () => {} })
    const baseline = await flightsOf(() => raw.unsafe(pidQuery))
    await raw.end()

    const { h } = holder()
    const cold = await flightsOf(() => h.run((sql) => sql.unsafe(pidQuery)))
    const pid = Number(cold.value[0]!.pid)
    expect(cold.flights).toBe(baseline.flights)
    expect(h.stats()).toMatchObject({ opened: 1, failures: 0 })

    // The server saw the caller's statement first, with nothing of warmconn's before it; the
    // array-type lookup (once per process) came after it, and never again.
    const first = await pg.statements({ pid })
    expect(first[0]).toBe(pidQuery)
    expect(first.slice(1).every((s) => s.includes('typarray'))).toBe(true)
    expect(first.filter((s) => s.includes('typarray')).length).toBeLessThanOrEqual(1)

    const { h: again } = holder()
    const second = await flightsOf(() => again.run((sql) => sql.unsafe(pidQuery)))
    expect(second.flights).toBe(baseline.flights)
    expect(await pg.statements({ pid: Number(second.value[0]!.pid) })).toEqual([pidQuery])
  })

  it('a connect that fails while the first statement waits on it is retried under the connect policy, and the write lands once', async () => {
    // No slot free for `app` until the filler lets go: 53300 on the first attempts.
    const url = pg.urlFor({ port: proxy.port, user: 'app' })
    await pg.admin`grant all on table trips to app`
    const h = new Holder(postgresDriver(url, { onnotice: () => {} }), { applicationName: appName('trips-full'), connectBackoffBaseMs: 50, connectBudgetMs: 10_000 })
    holders.push(h as Holder<unknown>)
    const full = await pg.fillConnections(0)
    let calls = 0
    const write = h.run((sql) => (calls++, sql`insert into trips (id) values ('cold-write')`))
    await sleep(400)
    await full.release()
    await write
    expect(await rows('cold-write')).toBe(1)
    expect(h.stats().connectRetries).toBeGreaterThan(0)
    expect(h.stats()).toMatchObject({ opened: 1, failures: 0, replays: 0 })
    expect(calls).toBeGreaterThan(1) // fn ran again: its statement had never been sent
  })
})

describe('a stale call', () => {
  it('idempotent: the check and the statement go out in one flight', async () => {
    const { h } = holder({ staleAfterMs: 100 })
    const [{ pid }] = (await h.run((sql) => sql.unsafe(pidQuery))) as unknown as [{ pid: number }]
    // A warm call for comparison: one flight.
    // Let the array-type lookup that follows a process's first call finish (it runs on the idle
    // connection, and the next call waits for it), then a warm call for comparison: one flight.
    await h.run(() => undefined)
    const warm = await flightsOf(() => h.run((sql) => sql`select 1 as warm`))
    expect(warm.flights).toBe(1)
    await sleep(200)
    const mark = await pg.mark()
    const stale = await flightsOf(() => h.run((sql) => sql`select 2 as stale`, { idempotent: true }))
    expect(stale.flights).toBe(1)
    // The server got the check and then the statement, on the same backend.
    expect(await pg.statements({ pid: Number(pid), since: mark })).toEqual(['select 1', 'select 2 as stale'])
    expect(h.stats()).toMatchObject({ revalidated: 1, revalidateFailures: 0, opened: 1 })
  })

  it('not idempotent: pinged first, then sent (two flights), and written once', async () => {
    const { h } = holder({ staleAfterMs: 100 })
    const [{ pid }] = (await h.run((sql) => sql.unsafe(pidQuery))) as unknown as [{ pid: number }]
    await sleep(200)
    const mark = await pg.mark()
    const stale = await flightsOf(() => h.run((sql) => sql`insert into trips (id) values ('stale-write')`))
    expect(stale.flights).toBe(2)
    expect(await pg.statements({ pid: Number(pid), since: mark })).toEqual(['select 1', "insert into trips (id) values ('stale-write')"])
    expect(await rows('stale-write')).toBe(1)
  })

  it('idempotent into a blackholed socket: answered on a new connection within pingTimeoutMs + a connect', async () => {
    const { h } = holder({ staleAfterMs: 100, pingTimeoutMs: 400 })
    const [{ pid }] = (await h.run((sql) => sql.unsafe(pidQuery))) as unknown as [{ pid: number }]
    proxy.blackhole()
    proxy.heal() // the old flow is dead (a NAT forgot it); new connections get through
    await sleep(200)
    const started = Date.now()
    const upsert = "insert into trips (id) values ('stale-upsert') on conflict (id) do update set n = trips.n + 1 returning n, pg_backend_pid() as pid"
    const [row] = (await h.run((sql) => sql.unsafe(upsert), { idempotent: true })) as unknown as [{ n: number; pid: number }]
    expect(Date.now() - started).toBeLessThan(400 + 8_000) // a hang detector, not a speed test
    expect(Number(row.pid)).not.toBe(Number(pid))
    expect(h.stats()).toMatchObject({ revalidateFailures: 1, replays: 1, opened: 2, failures: 0 })
    // The copy sent into the silence never reached the server: the row was written once.
    expect(Number(row.n)).toBe(1)
    expect(await pg.statements({ pid: Number(pid) })).not.toContain(upsert)
  })

  it('not idempotent into a blackholed socket: the write waits for the ping, then goes once on a new connection', async () => {
    const { h } = holder({ staleAfterMs: 100, pingTimeoutMs: 400 })
    const [{ pid }] = (await h.run((sql) => sql.unsafe(pidQuery))) as unknown as [{ pid: number }]
    proxy.blackhole()
    proxy.heal()
    await sleep(200)
    await h.run((sql) => sql`insert into trips (id) values ('stale-black-write')`)
    expect(await rows('stale-black-write')).toBe(1)
    expect(h.stats()).toMatchObject({ revalidateFailures: 1, replays: 0, opened: 2 })
    expect(await pg.statements({ pid: Number(pid) })).not.toContain("insert into trips (id) values ('stale-black-write')")
  })

  it('idempotent on a backend killed while idle: the settle step finds it dead, no probe spent on it', async () => {
    const { h, name } = holder({ staleAfterMs: 100 })
    await h.run((sql) => sql.unsafe(pidQuery))
    await pg.terminate({ applicationName: name })
    await sleep(200)
    await h.run((sql) => sql`select 1 as after_kill`, { idempotent: true })
    expect(h.stats()).toMatchObject({ revalidateFailures: 0, revalidated: 0, closedBroken: 1, opened: 2, replays: 0, failures: 0 })
  })

  it('a write whose connection dies mid-call is not replayed, even after a probe answered', async () => {
    const { h } = holder({ staleAfterMs: 100 })
    await h.run((sql) => sql.unsafe(pidQuery))
    await sleep(200)
    const err = await h
      .run(async (sql) => {
        await sql`select 1 as first`
        proxy.resetAll()
        await sql`insert into trips (id) values ('never-twice')`
      }, { idempotent: false })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect(await rows('never-twice')).toBe(0)
  })
})
