/**
 * warmPool is a drop-in for pg.Pool: each behaviour below runs through the real `new pg.Pool(config)`
 * and through `warmPool(config)` with the very same config, and must come out the same, against a
 * real PostgreSQL (behind the fault proxy where a fault is needed). Outcomes are read from the
 * server (backend pids, pg_stat_activity, settings) and from what pg's API reports. warmconn's
 * deliberate differences are the last block, each tested for what warmPool does instead.
 */
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { AcquireTimeoutError, ConnectError, ConnectionLostError, InvalidOptionError } from '../src/index.js'
import { warmPool } from '../src/drivers/pg.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { freePort } from './harness/ports.js'
import { appName, eventually, sleep } from './helpers/core.js'

let db: TestPg
let proxy: FaultProxy
beforeAll(async () => {
  db = await startPostgres()
  proxy = await startProxy({ host: db.host, port: db.port })
})
afterAll(async () => {
  await proxy?.close()
  await db?.stop()
})

const open: pg.Pool[] = []
afterEach(async () => {
  proxy.heal()
  await Promise.all(open.splice(0).filter((p) => !p.ending).map((p) => p.end().catch(() => {})))
})

type Make = (config: pg.PoolConfig) => pg.Pool
const KINDS: Array<[string, Make]> = [
  ['pg.Pool', (config) => new pg.Pool(config)],
  ['warmPool', (config) => warmPool(config as never) as unknown as pg.Pool],
]

const pidOf = async (q: { query: pg.Pool['query'] } | pg.PoolClient): Promise<number> =>
  Number((await (q as pg.Pool).query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)

describe.each(KINDS)('%s, given the same config', (_kind, make) => {
  /** A pool on the real server (or through the proxy), tracked for the end of the test. */
  function pool(config: pg.PoolConfig = {}, via: 'db' | 'proxy' = 'db'): { pool: pg.Pool; name: string } {
    const name = appName('fid')
    const p = make({ connectionString: db.urlFor(via === 'proxy' ? { port: proxy.port } : {}), application_name: name, ...config })
    open.push(p)
    return { pool: p, name }
  }

  it('takes the config as written: connection fields, a password function, Client settings, pool sizes', async () => {
    const name = appName('fid-fields')
    const parsed = new URL(db.url)
    const p = make({
      host: parsed.hostname, port: Number(parsed.port), user: decodeURIComponent(parsed.username), database: parsed.pathname.slice(1),
      password: async () => db.password,
      application_name: name, statement_timeout: 1234, max: 3, idleTimeoutMillis: 4321, maxLifetimeSeconds: 1,
    })
    open.push(p)
    const { rows } = await p.query<{ t: string; a: string }>("select current_setting('statement_timeout') as t, current_setting('application_name') as a")
    expect(rows).toEqual([{ t: '1234ms', a: name }])
    expect(p.options).toMatchObject({ max: 3, idleTimeoutMillis: 4321, maxLifetimeSeconds: 1 })
    expect((await db.backends(name)).length).toBe(1)
  })

  it('a query outside a transaction still open on another client of the same pool (default size) does not wait', async () => {
    const { pool: p, name } = pool()
    const tx = await p.connect()
    await tx.query('begin')
    await tx.query('select 1')
    // Drizzle's db.transaction holds `tx`; a query made beside it in the same handler:
    const outside = await p.query('select 2 as n')
    expect(outside.rows).toEqual([{ n: 2 }])
    await tx.query('commit')
    tx.release()
    expect((await db.backends(name)).length).toBe(2)
  })

  it('connectionTimeoutMillis bounds the wait for a busy pool, with a message that says timeout', async () => {
    const { pool: p } = pool({ max: 1, connectionTimeoutMillis: 300 })
    const held = await p.connect()
    const err = await p.connect().then(() => undefined, (e: unknown) => e as Error)
    expect(err).toBeInstanceOf(Error)
    expect(err!.message).toMatch(/timeout/)
    expect(await eventually(async () => p.waitingCount === 0)).toBe(true)
    const viaQuery = await p.query('select 1').then(() => undefined, (e: unknown) => e as Error)
    expect(viaQuery!.message).toMatch(/timeout/)
    held.release()
    expect((await p.query('select 3 as n')).rows).toEqual([{ n: 3 }])
  })

  it('connectionTimeoutMillis bounds a connect that gets no answer, with a message that says timeout', async () => {
    const { pool: p } = pool({ connectionTimeoutMillis: 300 }, 'proxy')
    proxy.blackhole()
    const err = await p.query('select 1').then(() => undefined, (e: unknown) => e as Error)
    expect(err!.message).toMatch(/timeout/)
  })

  it('end() lets queries already made finish, refuses new ones, and a second end() rejects', async () => {
    const { pool: p, name } = pool({ max: 3 })
    const made = [1, 2, 3].map((n) => p.query<{ n: number }>('select pg_sleep(0.05), $1::int as n', [n]))
    const ending = p.end()
    expect(p.ending).toBe(true)
    await expect(p.query('select 1')).rejects.toThrow(/after calling end on the pool/)
    await expect(p.connect()).rejects.toThrow(/after calling end on the pool/)
    await expect(p.end()).rejects.toThrow('Called end on pool more than once')
    expect((await Promise.all(made)).map((r) => r.rows[0]!.n)).toEqual([1, 2, 3])
    await ending
    expect(p.ended).toBe(true)
    expect(await eventually(async () => (await db.backends(name)).length === 0)).toBe(true)
  })

  it('a second release() throws pg-pool\'s error', async () => {
    const { pool: p } = pool()
    const client = await p.connect()
    client.release()
    expect(() => client.release()).toThrow('Release called on client which has already been released to the pool.')
  })

  it("counts as pg-pool's: total, idle (not a client still connecting), waiting", async () => {
    const { pool: p } = pool({ max: 2 })
    expect([p.totalCount, p.idleCount, p.waitingCount]).toEqual([0, 0, 0])
    const connecting = p.connect()
    expect([p.totalCount, p.idleCount]).toEqual([1, 0])
    const a = await connecting
    const b = await p.connect()
    expect([p.totalCount, p.idleCount, p.waitingCount]).toEqual([2, 0, 0])
    const third = p.connect()
    await eventually(async () => p.waitingCount === 1)
    expect(p.waitingCount).toBe(1)
    a.release()
    const c = await third
    expect([p.totalCount, p.idleCount, p.waitingCount]).toEqual([2, 0, 0])
    b.release()
    expect([p.totalCount, p.idleCount]).toEqual([2, 1])
    c.release(new Error('done with it'))
    expect([p.totalCount, p.idleCount]).toEqual([1, 1])
    expect(p.expiredCount).toBe(0)
  })

  it("an idle client's death reaches 'error' listeners with err.client and the server's code", async () => {
    const { pool: p, name } = pool()
    const client = await p.connect()
    client.release()
    // A listener kept for the pool's whole life: pg.Pool crashes the process on an 'error' nobody hears.
    const seen = new Promise<[Error & { client?: unknown; code?: string }, unknown]>((resolve) => p.on('error', (err: Error, c: unknown) => resolve([err, c])))
    await db.terminate({ applicationName: name })
    const [err, emitted] = await seen
    expect(emitted).toBe(client)
    expect(err.client).toBe(client)
    expect(err.code).toBe('57P01')
    expect(await eventually(async () => p.totalCount === 0)).toBe(true)
  })

  it("a 'release' listener's exception reaches the caller of release()", async () => {
    const { pool: p } = pool()
    const client = await p.connect()
    p.on('release', () => {
      throw new Error('listener failed')
    })
    expect(() => client.release()).toThrow('listener failed')
    // pg-pool's release stops at the listener, leaving the client counted and end() waiting for
    // it: that pool is let go here and the client's socket closed.
    p.removeAllListeners('release')
    if (p instanceof pg.Pool && !(p as { holder?: unknown }).holder) {
      open.splice(open.indexOf(p), 1)
      await client.end()
    }
  })

  it('callbacks: query(text, values, cb), query(text, cb), connect(cb) with done, end(cb); query(cb) tells cb', async () => {
    const { pool: p } = pool()
    const three = await new Promise((resolve, reject) => p.query('select $1::int as n', [3], (err, res) => (err ? reject(err) : resolve(res.rows))))
    expect(three).toEqual([{ n: 3 }])
    const four = await new Promise((resolve, reject) => p.query('select 4 as n', (err: Error, res: pg.QueryResult) => (err ? reject(err) : resolve(res.rows))))
    expect(four).toEqual([{ n: 4 }])
    const pid = await new Promise<number>((resolve, reject) =>
      p.connect((err, client, done) => {
        if (err) return reject(err)
        pidOf(client!).then((n) => (done(), resolve(n)), reject)
      }),
    )
    expect(pid).toBeGreaterThan(0)
    const noText = await new Promise<Error>((resolve) => expect((p.query as unknown as (cb: (err: Error) => void) => unknown)((err) => resolve(err))).toBeUndefined())
    expect(noText.message).toMatch(/Passing a function as the first parameter to pool.query is not supported/)
    await new Promise<void>((resolve, reject) => p.end((err?: Error) => (err ? reject(err) : resolve())))
    const again = await new Promise<Error | undefined>((resolve) => p.end((err?: Error) => resolve(err)))
    expect(again?.message).toBe('Called end on pool more than once')
  })

  it('a refused connection keeps the socket error\'s code, syscall and errno', async () => {
    const p = make({ connectionString: db.urlFor({ port: await freePort() }), connectionTimeoutMillis: 1000 })
    open.push(p)
    const err = (await p.query('select 1').then(() => undefined, (e: unknown) => e)) as Error & { code?: string; syscall?: string; errno?: number }
    expect(err.code).toBe('ECONNREFUSED')
    expect(err.syscall).toBe('connect')
    expect(typeof err.errno).toBe('number')
  })

  it("a backend terminated mid-query fails that query with the server's code 57P01", async () => {
    const { pool: p, name } = pool()
    await p.query('select 1')
    const running = p.query('select pg_sleep(10)').then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(await eventually(async () => (await db.admin`select 1 from pg_stat_activity where application_name = ${name} and query like '%pg_sleep%'`).length === 1)).toBe(true)
    await db.terminate({ applicationName: name })
    const err = await running
    expect(err?.code).toBe('57P01')
    expect((await p.query('select 5 as n')).rows).toEqual([{ n: 5 }])
  })

  it('maxLifetimeSeconds: a client out past its lifetime counts in expiredCount, and is closed when released', async () => {
    const { pool: p } = pool({ maxLifetimeSeconds: 1 })
    const client = await p.connect()
    const pid = await pidOf(client)
    expect(p.expiredCount).toBe(0)
    await sleep(1_100)
    expect(p.expiredCount).toBe(1)
    client.release()
    expect(await eventually(async () => p.totalCount === 0)).toBe(true)
    expect(await pidOf(p)).not.toBe(pid)
  })

  it('maxUses: a client is replaced after that many checkouts', async () => {
    const { pool: p } = pool({ maxUses: 2 })
    const pids = []
    for (let i = 0; i < 3; i++) {
      const c = await p.connect()
      pids.push(await pidOf(c))
      c.release()
    }
    expect(pids[0]).toBe(pids[1])
    expect(pids[2]).not.toBe(pids[0])
  })

  it('onConnect runs once per new client before it is handed out; one that fails fails the checkout and closes the client', async () => {
    const seen: unknown[] = []
    const { pool: p } = pool({ onConnect: async (client: pg.ClientBase) => void seen.push(await client.query("set search_path to pg_catalog")) } as pg.PoolConfig)
    const { rows } = await p.query<{ s: string }>("select current_setting('search_path') as s")
    expect(rows).toEqual([{ s: 'pg_catalog' }])
    await p.query('select 1')
    expect(seen).toHaveLength(1)

    const { pool: failing, name } = pool({ onConnect: async () => { throw new Error('hook failed') } } as pg.PoolConfig)
    await expect(failing.query('select 1')).rejects.toThrow('hook failed')
    expect(await eventually(async () => failing.totalCount === 0 && (await db.backends(name)).length === 0)).toBe(true)
  })

  it('verify(client, done) runs on each new client; one that reports an error fails that checkout', async () => {
    const verified: number[] = []
    const { pool: p } = pool({ verify: (client: pg.ClientBase, done: (err?: Error) => void) => void pidOf(client as pg.PoolClient).then((n) => (verified.push(n), done()), done) } as pg.PoolConfig)
    const pid = await pidOf(p)
    await pidOf(p)
    expect(verified).toEqual([pid])
    const { pool: refusing } = pool({ verify: (_c: pg.ClientBase, done: (err?: Error) => void) => done(new Error('not this one')) } as pg.PoolConfig)
    await expect(refusing.connect()).rejects.toThrow('not this one')
  })
})

describe("warmPool's own differences, each for a reason (see the README's table)", () => {
  const make = (config: Record<string, unknown> = {}) => {
    const name = appName('fid-own')
    const p = warmPool({ connectionString: db.urlFor({ port: proxy.port }), application_name: name, ...config })
    open.push(p as unknown as pg.Pool)
    return { p, name }
  }

  it('an SQL error keeps the connection (pg-pool destroys it): the next query runs on the same backend', async () => {
    const { p } = make()
    const before = await pidOf(p)
    await expect(p.query('select 1/0')).rejects.toMatchObject({ code: '22012' })
    expect(await pidOf(p)).toBe(before)
    const plain = new pg.Pool({ connectionString: db.url })
    open.push(plain)
    const plainBefore = await pidOf(plain)
    await expect(plain.query('select 1/0')).rejects.toMatchObject({ code: '22012' })
    expect(await pidOf(plain)).not.toBe(plainBefore)
  })

  it('errors are warmconn\'s classes with the driver\'s code; warmconn\'s own code in warmconnCode', async () => {
    const refused = warmPool({ connectionString: db.urlFor({ port: await freePort() }), connectionTimeoutMillis: 1000 })
    open.push(refused as unknown as pg.Pool)
    const err = await refused.query('select 1').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectError)
    expect(err).toMatchObject({ code: 'ECONNREFUSED', warmconnCode: 'WARMCONN_CONNECT_FAILED', causeCode: 'ECONNREFUSED' })

    const { p, name } = make()
    await p.query('select 1')
    const running = p.query('select pg_sleep(10)').catch((e: unknown) => e)
    expect(await eventually(async () => (await db.admin`select 1 from pg_stat_activity where application_name = ${name} and query like '%pg_sleep%'`).length === 1)).toBe(true)
    await db.terminate({ applicationName: name })
    const lost = await running
    expect(lost).toBeInstanceOf(ConnectionLostError)
    expect(lost).toMatchObject({ code: '57P01', warmconnCode: 'WARMCONN_CONNECTION_LOST', severity: 'FATAL' })

    const { p: busy } = make({ max: 1, connectionTimeoutMillis: 200 })
    const held = await busy.connect()
    const timedOut = await busy.connect().catch((e: unknown) => e)
    expect(timedOut).toBeInstanceOf(AcquireTimeoutError)
    expect(timedOut).toMatchObject({ warmconnCode: 'WARMCONN_ACQUIRE_TIMEOUT' })
    held.release()
  })

  it("end() also lets queries queued behind a busy pool finish (pg-pool's end leaves them waiting)", async () => {
    const { p } = make({ max: 1 })
    const made = [1, 2, 3].map((n) => p.query<{ n: number }>('select $1::int as n', [n]))
    await p.end()
    expect((await Promise.all(made)).map((r) => r.rows[0]!.n)).toEqual([1, 2, 3])
  })

  it("an idle client's death with no 'error' listener is not a crash; the pool replaces it", async () => {
    const { p, name } = make()
    const before = await pidOf(p)
    expect(p.listenerCount('error')).toBe(0)
    await db.terminate({ applicationName: name })
    expect(await eventually(async () => p.totalCount === 0)).toBe(true)
    expect(await pidOf(p)).not.toBe(before)
  })

  it("a 'connect' or 'acquire' listener that throws fails that checkout or query with its exception (pg-pool: an uncaught exception); the connection stays usable", async () => {
    const { p } = make()
    const thrower = () => {
      throw new Error('listener failed')
    }
    p.once('acquire', thrower)
    await expect(p.query('select 1')).rejects.toThrow('listener failed')
    p.once('acquire', thrower)
    await expect(p.connect()).rejects.toThrow('listener failed')
    expect((await p.query('select 6 as n')).rows).toEqual([{ n: 6 }])
    expect(p.holder.stats()).toMatchObject({ opened: 1, inUse: 0 })
  })

  it('one pool per config: warmPool(config) again, in a warm invocation, is the same pool', () => {
    const config = { connectionString: db.urlFor({ port: proxy.port }), application_name: appName('fid-same'), max: 4 }
    const a = warmPool(config)
    open.push(a as unknown as pg.Pool)
    expect(warmPool({ ...config })).toBe(a)
    expect(warmPool({ ...config, max: 5 })).not.toBe(a)
    open.push(warmPool({ ...config, max: 5 }) as unknown as pg.Pool)
  })

  it('maxLifetimeSeconds: 1 alone is valid (the default jitter scales with the lifetime) and rotates the connection', async () => {
    const { p } = make({ maxLifetimeSeconds: 1 })
    const first = await pidOf(p)
    await sleep(1_100)
    expect(await pidOf(p)).not.toBe(first)
  })

  it('refuses what it cannot honour, saying what to do instead', () => {
    const url = db.url
    for (const [config, option] of [
      [{ connectionString: url, Client: pg.Client }, 'Client'],
      [{ connectionString: url, query_timeout: 100 }, 'query_timeout'],
      [{ connectionString: url, min: 1 }, 'min'],
      [{ connectionString: url, max: 2, maxConnections: 3 }, 'max'],
    ] as const) {
      expect(() => warmPool(config as never), option).toThrow(InvalidOptionError)
    }
  })
})
