/**
 * warmPool (warmconn/pg) as a pg.Pool, against a real PostgreSQL behind the fault proxy: pg's
 * surface (query in both forms, connect/release, end, events, counts, options), argument and
 * option checks before any I/O, one-shot replay rules (never a doubled write), and hygiene on
 * release. Assertions read the server: pids, pg_stat_activity, the statement log, rows.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClosedError, ConnectionLostError, InvalidOptionError } from '../src/index.js'
import { warmPool, type WarmPgPoolOptions } from '../src/drivers/pg.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { appName, eventually, sleep } from './helpers/core.js'

let db: TestPg
let proxy: FaultProxy
beforeAll(async () => {
  db = await startPostgres()
  proxy = await startProxy({ host: db.host, port: db.port })
  await db.admin`create table pool_ledger (id serial primary key, note text not null unique)`
})
afterAll(async () => {
  await proxy?.close()
  await db?.stop()
})

const pools: Array<ReturnType<typeof warmPool>> = []
afterAll(async () => {
  await Promise.all([...new Set(pools)].filter((p) => !p.ending).map((p) => p.end()))
})

function make(options: WarmPgPoolOptions = {}) {
  const name = appName('pool')
  const pool = warmPool(db.urlFor({ port: proxy.port }), { applicationName: name, ...options })
  pools.push(pool)
  const pid = async (config: string | pg.QueryConfig & { idempotent?: boolean } = 'select pg_backend_pid() as pid') =>
    Number((await pool.query<{ pid: number }>(typeof config === 'string' ? config : config)).rows[0]!.pid)
  return { pool, name, pid }
}
const backendOf = async (client: pg.PoolClient) => Number((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)
const notes = async (note: string) => Number((await db.admin`select count(*)::int as n from pool_ledger where note = ${note}`)[0]!.n)

describe("pg's surface", () => {
  it('is a pg.Pool to whoever checks: instanceof, class name, options mirrored from warmconn', () => {
    const { pool } = make({ maxConnections: 3, idleTimeoutMs: 1234 })
    expect(pool).toBeInstanceOf(pg.Pool)
    expect(Object.getPrototypeOf(pool).constructor.name).toContain('Pool')
    expect(pool.options).toMatchObject({ max: 3, idleTimeoutMillis: 1234, allowExitOnIdle: true })
    expect(Object.isFrozen(pool.options)).toBe(true)
    expect(JSON.stringify(pool.options)).not.toContain(db.password)
  })

  it('query: promise form, callback forms, values; one connection for all of them', async () => {
    const { pool, name } = make()
    expect((await pool.query('select $1::int + 1 as n', [41])).rows).toEqual([{ n: 42 }])
    expect((await pool.query({ text: 'select $1::text as t', values: ['cfg'] })).rows).toEqual([{ t: 'cfg' }])
    const viaCallback = await new Promise((resolve, reject) => pool.query('select 7 as n', (err: Error, res: pg.QueryResult) => (err ? reject(err) : resolve(res.rows))))
    expect(viaCallback).toEqual([{ n: 7 }])
    const withValues = await new Promise((resolve, reject) => pool.query('select $1::int as n', [8], (err: Error, res: pg.QueryResult) => (err ? reject(err) : resolve(res.rows))))
    expect(withValues).toEqual([{ n: 8 }])
    const sqlError = await new Promise((resolve) => pool.query('select 1/0', (err: Error) => resolve(err)))
    expect(sqlError).toMatchObject({ code: '22012' })
    expect(pool.holder.stats()).toMatchObject({ opened: 1 })
    expect(await db.backends(name)).toHaveLength(1)
  })

  it('connect: a real pg.Client with release(); the callback form too; counts follow the holder', async () => {
    const { pool, name } = make({ maxConnections: 2 })
    expect([pool.totalCount, pool.idleCount, pool.waitingCount]).toEqual([0, 0, 0])
    const a = await pool.connect()
    const b: pg.PoolClient = await new Promise<pg.PoolClient>((resolve, reject) => pool.connect((err, client) => (err ? reject(err) : resolve(client!))))
    expect(a).toBeInstanceOf(pg.Client)
    expect([pool.totalCount, pool.idleCount]).toEqual([2, 0])
    const waiting = pool.connect()
    await eventually(async () => pool.waitingCount === 1)
    expect(pool.waitingCount).toBe(1)
    a.release()
    const c = await waiting
    expect(c).toBe(a) // handed straight to the waiter
    b.release()
    c.release()
    await eventually(async () => pool.idleCount === 2)
    expect([pool.totalCount, pool.idleCount, pool.waitingCount]).toEqual([2, 2, 0])
    // Released clients are checked out again by what follows; pids from the server.
    const again = [await pool.connect(), await pool.connect()]
    const pids = (await db.backends(name)).map((x) => x.pid).sort()
    const used = [await backendOf(again[0]!), await backendOf(again[1]!)].sort()
    for (const client of again) client.release()
    expect(pids).toEqual(used)
  })

  it("emits pg's events: connect once per client, acquire and release per use, remove when it closes", async () => {
    const { pool } = make({ idleTimeoutMs: 300 })
    const seen: string[] = []
    for (const event of ['connect', 'acquire', 'release', 'remove'] as const) pool.on(event, () => seen.push(event))
    await pool.query('select 1')
    const client = await pool.connect()
    await client.query('select 2')
    client.release()
    await eventually(async () => seen.includes('remove'))
    expect(seen).toEqual(['connect', 'acquire', 'release', 'acquire', 'release', 'remove'])
  })

  it('an idle client killed by the server: pool "error" to a listener, nothing without one, never a crash', async () => {
    const { pool, pid } = make()
    const errors: unknown[] = []
    pool.on('error', (err) => errors.push(err))
    await db.terminate({ pid: await pid() })
    expect(await eventually(async () => errors.length === 1)).toBe(true)
    expect(errors[0]).toMatchObject({ code: '57P01' })
    pool.removeAllListeners('error')
    await db.terminate({ pid: await pid() }) // no listener: pg-pool would crash the process here
    expect(await eventually(async () => pool.holder.stats().closedBroken === 2)).toBe(true)
    expect(Number.isInteger(await pid())).toBe(true)
  })

  it("end() twice rejects the second as pg-pool does; afterwards the pool refuses work with ClosedError, and warmPool() gives a new one", async () => {
    const { pool, name, pid } = make()
    await pid()
    const first = pool.end()
    expect(pool.ending).toBe(true)
    await expect(pool.end()).rejects.toThrow('Called end on pool more than once')
    await first
    expect(pool.ended).toBe(true)
    expect(await db.backends(name)).toEqual([])
    await expect(pool.query('select 1')).rejects.toBeInstanceOf(ClosedError)
    await expect(pool.connect()).rejects.toBeInstanceOf(ClosedError)
    const again = warmPool(db.urlFor({ port: proxy.port }), { applicationName: name })
    pools.push(again)
    expect(again).not.toBe(pool)
    expect((await again.query('select 1 as x')).rows).toEqual([{ x: 1 }])
  })

  it('one pool per config: a warm invocation calling warmPool() again gets the same pool', () => {
    const url = db.urlFor({ port: proxy.port })
    const applicationName = appName('pool-shared')
    const a = warmPool(url, { applicationName })
    pools.push(a)
    expect(warmPool(url, { applicationName })).toBe(a)
    const b = warmPool(url, { applicationName, maxConnections: 2 })
    pools.push(b)
    expect(b).not.toBe(a)
  })
})

describe('checks before any I/O', () => {
  it("refuses what cannot hold by name, and a pg option given with a different value under its warmconn name", () => {
    const url = db.urlFor({ port: proxy.port })
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ max: 5, maxConnections: 4 }, 'max', /maxConnections/],
      [{ idleTimeoutMillis: 1000, idleTimeoutMs: 2000 }, 'idleTimeoutMillis', /idleTimeoutMs/],
      [{ connectionTimeoutMillis: 1000, acquireTimeoutMs: 5 }, 'connectionTimeoutMillis', /acquireTimeoutMs/],
      [{ maxLifetimeSeconds: 60, maxLifetimeMs: 60 }, 'maxLifetimeSeconds', /maxLifetimeMs/],
      [{ application_name: 'a', applicationName: 'b' }, 'application_name', /applicationName/],
      [{ connectionString: url }, 'connectionString', /first argument/],
      [{ host: 'x' }, 'host', /connectionString/],
      [{ min: 2 }, 'min', /idleTimeoutMillis/],
      [{ Client: pg.Client }, 'Client', /warmPg/],
      [{ log: () => {} }, 'log', /holder\.on/],
      [{ maxUses: 0 }, 'maxUses', /at least 1/],
      [{ statement_timeout: 5, pg: { statement_timeout: 6 } }, 'statement_timeout', /pg\.statement_timeout/],
      [{ idleTimeoutMilis: 5 }, 'idleTimeoutMilis', /idleTimeoutMs/],
      [{ idempotent: true }, 'idempotent', /function/],
      [{ pg: { max: 1, query_timeout: 5 } }, 'pg.query_timeout', /callTimeoutMs/],
    ]
    for (const [options, option, hint] of cases) {
      let err: unknown
      try {
        warmPool(url, options as WarmPgPoolOptions)
      } catch (e) {
        err = e
      }
      expect(err, option).toBeInstanceOf(InvalidOptionError)
      expect((err as InvalidOptionError).option).toBe(option)
      expect((err as Error).message).toMatch(hint)
    }
  })

  it('bad query arguments are typed errors, and nothing reaches the server', async () => {
    const { pool, name } = make()
    const bad: Array<[() => unknown, string]> = [
      [() => pool.query(undefined as never), 'query'],
      [() => pool.query(42 as never), 'query'],
      [() => pool.query({ text: 5 } as never), 'query.text'],
      [() => pool.query({ text: 'select 1', values: 'x' } as never), 'query.values'],
      [() => pool.query({ text: 'select 1', idempotent: 'yes' } as never), 'query.idempotent'],
      [() => pool.query('select $1', 'x' as never), 'values'],
      [() => pool.query({ text: 'select 1', submit: () => {} } as never), 'query'],
    ]
    for (const [call, option] of bad) {
      const err = await (call() as Promise<unknown>).then(() => undefined, (e: unknown) => e)
      expect(err, option).toBeInstanceOf(InvalidOptionError)
      expect((err as InvalidOptionError).option).toBe(option)
    }
    expect(() => pool.query('select 1', [], 5 as never)).toThrow(InvalidOptionError)
    expect(() => pool.connect(5 as never)).toThrow(InvalidOptionError)
    expect(pool.holder.stats().opened).toBe(0)
    expect(await db.backends(name)).toEqual([])
  })
})

describe('one-shot queries: replayed only when safe', () => {
  it('a write whose connection dies mid-statement fails with ConnectionLostError and is written at most once', async () => {
    const { pool, name, pid } = make()
    await pid()
    const note = `pool-once-${name}`
    const writing = pool.query('insert into pool_ledger (note) select $1 from pg_sleep(5)', [note]).catch((e: unknown) => e)
    expect(await eventually(async () => (await db.backends(name)).some((b) => b.state === 'active'))).toBe(true)
    proxy.resetAll()
    expect(await writing).toBeInstanceOf(ConnectionLostError)
    expect(await notes(note)).toBeLessThanOrEqual(1)
    expect(pool.holder.stats().replays).toBe(0)
  })

  it('a query marked idempotent (config field or pool predicate) is replayed on a new connection', async () => {
    const { pool, pid } = make({ idempotent: (q) => q.text.startsWith('select /* safe */') })
    for (const marked of [{ text: 'select pg_backend_pid() as pid', idempotent: true }, { text: 'select /* safe */ pg_backend_pid() as pid' }]) {
      const before = await pid()
      proxy.blackhole()
      proxy.heal()
      const writing = pool.query<{ pid: number }>({ ...marked, text: `${marked.text}` })
      // Used a moment ago, so no probe: it goes into the silence, and callTimeoutMs would end it;
      // a reset does it sooner, as a NAT that forgot the flow would on the next packet.
      await sleep(100)
      proxy.resetSilenced()
      const { rows } = await writing
      expect(rows[0]!.pid).not.toBe(before)
    }
    expect(pool.holder.stats()).toMatchObject({ replays: 2, failures: 0 })
  })

  it('a stale connection under an idempotent query is checked in the same flight, with no extra statement', async () => {
    const { pool, name, pid } = make({ staleAfterMs: 100 })
    const before = await pid()
    await sleep(150)
    const mark = await db.mark()
    const flights = proxy.flights()
    expect(await pid({ text: 'select pg_backend_pid() as pid', idempotent: true })).toBe(before)
    expect(proxy.flights() - flights).toBe(1)
    expect(await db.statements({ applicationName: name, since: mark })).toEqual(['select pg_backend_pid() as pid'])
  })
})

describe('hygiene on release', () => {
  it('release() of a client left in a transaction rolls it back (never commits); release(err) destroys it', async () => {
    const { pool, name } = make()
    const note = `pool-left-open-${name}`
    const client = await pool.connect()
    const pid = await backendOf(client)
    await client.query('begin')
    await client.query('insert into pool_ledger (note) values ($1)', [note])
    client.release()
    await eventually(async () => pool.idleCount === 1)
    expect(await notes(note)).toBe(0)
    expect((await db.backends(name)).find((b) => b.pid === pid)).toMatchObject({ state: 'idle', xact_start: null })
    expect(pool.holder.stats().sessionResets).toBe(1)
    const again = await pool.connect()
    expect(await backendOf(again)).toBe(pid)
    again.release(new Error('this client is suspect'))
    expect(await eventually(async () => !(await db.backends(name)).some((b) => b.pid === pid))).toBe(true)
    expect(pool.totalCount).toBe(0)
  })
})
