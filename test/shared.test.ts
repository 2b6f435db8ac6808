/**
 * holder.shared: concurrent one-statement calls pipelined on few connections, with every
 * guarantee of `run` kept. Assertions read the server (backends, logged statements, rows) and
 * count flights at the fault proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CallTimeoutError, ConnectionLostError, Holder, InvalidOptionError, NotShareableError, type HolderOptions } from '../src/index.js'
import { postgresDriver, type Sql } from '../src/drivers/postgres.js'
import { pgDriver } from '../src/drivers/pg.js'
import type pg from 'pg'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { appName, eventually, sleep } from './helpers/core.js'

let db: TestPg
let proxy: FaultProxy
const holders: Array<Holder<Sql>> = []
beforeAll(async () => {
  db = await startPostgres()
  proxy = await startProxy({ host: db.host, port: db.port })
  await db.admin`create table shared_ledger (id serial primary key, note text not null)`
})
afterAll(async () => {
  await Promise.all(holders.map((h) => h.close({ timeoutMs: 500 })))
  await proxy?.close()
  await db?.stop()
})

function make(options: HolderOptions = {}) {
  const name = appName('shared')
  const holder = new Holder(postgresDriver(db.urlFor({ port: proxy.port }), { onnotice: () => {} }), { applicationName: name, ...options })
  holders.push(holder)
  return { holder, name }
}
const pidOf = (sql: Sql) => sql`select pg_backend_pid() as pid`.then((r) => Number(r[0]!.pid))
const notes = async (note: string) => Number((await db.admin`select count(*)::int as n from shared_ledger where note = ${note}`)[0]!.n)

describe('pipelining', () => {
  it('64 concurrent shared calls on 2 connections: all answered, 2 backends, fewer flights than statements', async () => {
    const { holder, name } = make({ maxConnections: 2 })
    await holder.shared((sql) => sql`select 1 as warm`)
    const before = proxy.flights()
    const pids = await Promise.all(Array.from({ length: 64 }, () => holder.shared(pidOf, { idempotent: true })))
    const flights = proxy.flights() - before
    expect(pids).toHaveLength(64)
    expect(new Set(pids).size).toBeLessThanOrEqual(2)
    expect((await db.backends(name)).length).toBeLessThanOrEqual(2)
    // Exclusive checkout would need one flight per statement; pipelined, many share a flight.
    expect(flights).toBeLessThan(32)
    expect(holder.stats()).toMatchObject({ failures: 0, inUse: 0 })
  })

  it("a new connection's first statement may be a shared call's: the backend is learnt from it, and pipelining follows", async () => {
    const { holder, name } = make({ maxConnections: 1 })
    const first = await holder.shared(pidOf)
    const before = proxy.flights()
    const pids = await Promise.all(Array.from({ length: 32 }, () => holder.shared(pidOf)))
    expect(new Set(pids)).toEqual(new Set([first]))
    expect((await db.backends(name)).map((b) => b.pid)).toEqual([first])
    expect(proxy.flights() - before).toBeLessThan(16)
  })

  it('a session statement is refused even as the first statement of a new connection', async () => {
    const { holder, name } = make({ maxConnections: 1 })
    await expect(holder.shared((sql) => sql`set role warmconn_nobody`)).rejects.toBeInstanceOf(NotShareableError)
    expect(await db.statements({ applicationName: name })).toEqual([])
  })

  it('maxPipelined bounds the calls on one connection; the rest use another connection or wait', async () => {
    const { holder } = make({ maxConnections: 1, maxPipelined: 3 })
    await holder.shared((sql) => sql`select 1`)
    let running = 0
    let most = 0
    await Promise.all(Array.from({ length: 12 }, () => holder.shared(async (sql) => {
      most = Math.max(most, ++running)
      try {
        return await sql`select pg_sleep(0.02)`
      } finally {
        running--
      }
    })))
    expect(most).toBe(3)
  })

  it('an exclusive run is not starved by a stream of shared calls', async () => {
    const { holder } = make({ maxConnections: 1 })
    let stop = false
    const stream = (async () => {
      let n = 0
      while (!stop) await Promise.all(Array.from({ length: 8 }, () => holder.shared((sql) => sql`select ${n++}::int`)))
    })()
    await sleep(50)
    const inTx = await holder.run((sql) => sql.begin((tx) => tx`select 1 as one`))
    stop = true
    await stream
    expect(inTx[0]!.one).toBe(1)
  })

  it('shared and exclusive calls keep their session apart: a tenant set in run is never read by a shared call', async () => {
    const { holder } = make({ maxConnections: 2 })
    const reads = await Promise.all(Array.from({ length: 40 }, (_, i) => i % 4 === 0
      ? holder.run(async (sql) => {
          await sql`select set_config('app.tenant', ${`t${i}`}, false)`
          return (await sql`select current_setting('app.tenant', true) as v`)[0]!.v as string
        })
      : holder.shared(async (sql) => ((await sql`select current_setting('app.tenant', true) as v`)[0]!.v as string | null) ?? '')))
    reads.forEach((v, i) => expect(v).toBe(i % 4 === 0 ? `t${i}` : ''))
  })
})

describe('what a shared call may not do', () => {
  it.each([
    ['SET', (sql: Sql) => sql`set search_path = other`],
    ['set_config(..., false)', (sql: Sql) => sql`select set_config('app.tenant', 'x', false)`],
    ['BEGIN through unsafe', (sql: Sql) => sql.unsafe('begin')],
    ['an advisory lock', (sql: Sql) => sql.unsafe('select pg_advisory_lock(7)')],
    ['sql.begin', (sql: Sql) => sql.begin((tx) => tx`select 1`)],
    ['sql.reserve', (sql: Sql) => sql.reserve()],
  ])('%s is refused with NotShareableError before anything is sent', async (_, fn) => {
    const { holder, name } = make({ maxConnections: 1 })
    await holder.shared((sql) => sql`select 1 as warm`)
    const mark = await db.mark()
    const err = await holder.shared(fn as (sql: Sql) => Promise<unknown>).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NotShareableError)
    expect((err as NotShareableError).code).toBe('WARMCONN_NOT_SHAREABLE')
    expect((err as Error).message).toMatch(/run\(/)
    expect(await db.statements({ applicationName: name, since: mark })).toEqual([])
    // The connection is fine: the next shared call is served on it.
    expect((await holder.shared((sql) => sql`select 2 as two`))[0]!.two).toBe(2)
    expect(holder.stats().opened).toBe(1)
  })

  it('a bad function or option is an InvalidOptionError, before any I/O', async () => {
    const { holder } = make()
    await expect(holder.shared('select 1' as never)).rejects.toBeInstanceOf(InvalidOptionError)
    await expect(holder.shared((sql) => sql`select 1`, { idempotant: true } as never)).rejects.toBeInstanceOf(InvalidOptionError)
    expect(holder.stats().opened).toBe(0)
    expect(() => make({ maxPipelined: 0 })).toThrow(InvalidOptionError)
  })
})

describe('faults under pipelining', () => {
  it('a connection killed with shared statements in flight: idempotent calls replayed once on a new connection, writes fail with ConnectionLostError and are written at most once', async () => {
    const { holder } = make({ maxConnections: 1 })
    const first = await holder.shared(pidOf)
    const note = `shared-kill-${Date.now()}`
    const reads = Array.from({ length: 5 }, () => holder.shared(async (sql) => (await sql`select pg_sleep(1), pg_backend_pid() as pid`)[0]!.pid, { idempotent: true }))
    const writes = Array.from({ length: 3 }, () => holder.shared((sql) => sql`insert into shared_ledger (note) select ${note} from pg_sleep(1)`).catch((e: unknown) => e))
    await eventually(async () => (await db.admin`select 1 from pg_stat_activity where pid = ${first} and query like '%pg_sleep(1)%'`).length > 0)
    await db.terminate({ pid: first })
    const replayed = await Promise.all(reads)
    for (const pid of replayed) expect(Number(pid)).not.toBe(first)
    for (const err of await Promise.all(writes)) expect(err).toBeInstanceOf(ConnectionLostError)
    expect(await notes(note)).toBeLessThanOrEqual(1)
    expect(holder.stats().replays).toBe(5)
  })

  it('callTimeoutMs bounds each shared call: a statement stuck on a silent network fails at its deadline, the connection is replaced', async () => {
    const { holder } = make({ maxConnections: 1, callTimeoutMs: 500 })
    const first = await holder.shared(pidOf)
    proxy.blackhole()
    proxy.heal()
    const stuck = holder.shared((sql) => sql`select 1`).catch((e: unknown) => e)
    const read = holder.shared(pidOf, { idempotent: true })
    expect(await stuck).toBeInstanceOf(CallTimeoutError)
    expect(await read).not.toBe(first)
    expect(holder.stats().callTimeouts).toBeGreaterThanOrEqual(1)
  })

  it('a stale shared connection is checked once for all the calls that share it', async () => {
    const { holder, name } = make({ maxConnections: 1, staleAfterMs: 100 })
    await holder.shared((sql) => sql`select 1 as warm`)
    await sleep(200)
    const mark = await db.mark()
    await Promise.all(Array.from({ length: 10 }, (_, i) => holder.shared((sql) => sql`select ${i}::int as n`, { idempotent: true })))
    const logged = await db.statements({ applicationName: name, since: mark })
    expect(logged.filter((s) => s === 'select 1')).toHaveLength(1)
    expect(holder.stats().revalidated).toBe(1)
  })
})

describe('node-postgres (pipeline mode while shared)', () => {
  const pgHolders: Array<Holder<pg.Client>> = []
  afterAll(async () => {
    await Promise.all(pgHolders.map((h) => h.close({ timeoutMs: 500 })))
  })
  function makePg(options: HolderOptions = {}) {
    const name = appName('shared-pg')
    const holder = new Holder(pgDriver(db.urlFor({ port: proxy.port })), { applicationName: name, ...options })
    pgHolders.push(holder)
    return { holder, name }
  }

  it('64 concurrent shared queries on 2 connections are pipelined: fewer flights than statements, 2 backends', async () => {
    const { holder, name } = makePg({ maxConnections: 2 })
    await holder.shared((c) => c.query('select 1 as warm'))
    const before = proxy.flights()
    const results = await Promise.all(Array.from({ length: 64 }, (_, i) => holder.shared((c) => c.query('select $1::int as n, pg_backend_pid() as pid', [i]))))
    const flights = proxy.flights() - before
    expect(results.map((r) => r.rows[0].n)).toEqual(Array.from({ length: 64 }, (_, i) => i))
    expect(new Set(results.map((r) => r.rows[0].pid)).size).toBeLessThanOrEqual(2)
    expect((await db.backends(name)).length).toBeLessThanOrEqual(2)
    expect(flights).toBeLessThan(32)
  })

  it('a session or transaction statement is refused before it is sent; the Client leaves pipeline mode for an exclusive run', async () => {
    const { holder, name } = makePg({ maxConnections: 1 })
    await holder.shared((c) => c.query('select 1 as warm'))
    const mark = await db.mark()
    for (const text of ['set search_path = other', 'begin', "select set_config('app.tenant', 'x', false)"]) {
      await expect(holder.shared((c) => c.query(text))).rejects.toBeInstanceOf(NotShareableError)
    }
    expect(await db.statements({ applicationName: name, since: mark })).toEqual([])
    // A transaction with several statements in run: the same connection, no longer pipelining.
    const rows = await holder.run(async (c) => {
      expect((c as unknown as { pipeline: boolean }).pipeline).toBe(false)
      await c.query('begin')
      const r = await c.query('select 1 as one')
      await c.query('commit')
      return r.rows
    })
    expect(rows).toEqual([{ one: 1 }])
    expect(holder.stats()).toMatchObject({ opened: 1 })
  })
})
