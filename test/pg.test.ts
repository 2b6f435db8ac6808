/**
 * The node-postgres driver (warmconn/pg) against a real PostgreSQL, beyond the conformance suite:
 * what it sends on connect (nothing but the handshake), the pipelined probe (one flight, no
 * statement), an idle backend's death (no unhandled 'error'), option refusal, and a one-shot
 * statement refused by a broken Client (retried, written once). Assertions read the server.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConnectionLostError, Holder, InvalidOptionError, type Driver, type HolderOptions } from '../src/index.js'
import { pgDriver, warmPg, type PgOptions } from '../src/drivers/pg.js'
import { sentNothing } from '../src/drivers/pg-client.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { appName, eventually, sleep } from './helpers/core.js'

let db: TestPg
let proxy: FaultProxy
const holders: Array<Holder<pg.Client>> = []
beforeAll(async () => {
  db = await startPostgres()
  proxy = await startProxy({ host: db.host, port: db.port })
  await db.admin`create table pg_ledger (id serial primary key, note text not null)`
})
afterAll(async () => {
  await Promise.all(holders.map((h) => h.close({ timeoutMs: 500 })))
  await proxy?.close()
  await db?.stop()
})

function make(options: HolderOptions = {}, url = db.urlFor({ port: proxy.port }), driver: Driver<pg.Client> = pgDriver(url)) {
  const name = appName('pg')
  const holder = new Holder(driver, { applicationName: name, ...options })
  holders.push(holder)
  const pid = async (opts?: { idempotent?: boolean }) =>
    Number((await holder.run((c) => c.query<{ pid: number }>('select pg_backend_pid() as pid'), opts)).rows[0]!.pid)
  return { holder, name, pid }
}
const notes = async (note: string) => Number((await db.admin`select count(*)::int as n from pg_ledger where note = ${note}`)[0]!.n)

describe('connecting', () => {
  it('hands run a real pg.Client; the backend pid comes from the handshake, with no statement sent for it', async () => {
    const { holder, name } = make()
    const reported: Array<number | undefined> = []
    holder.on('connectSuccess', (e) => reported.push(e.backendPid))
    const mark = await db.mark()
    const text = await holder.run(async (client) => {
      expect(client).toBeInstanceOf(pg.Client)
      return (await client.query<{ t: string }>("select 'first' as t")).rows[0]!.t
    })
    expect(text).toBe('first')
    const backends = await db.backends(name)
    expect(backends.map((b) => b.pid)).toEqual(reported)
    expect(await db.statements({ applicationName: name, since: mark })).toEqual(["select 'first' as t"])
  })

  it('warmPg gives the same holder for the same config, another for another role or option', () => {
    const url = db.urlFor({ port: proxy.port })
    expect(warmPg(url)).toBe(warmPg(url))
    expect(warmPg(url, { staleAfterMs: 1 })).not.toBe(warmPg(url))
    expect(warmPg(db.urlFor({ port: proxy.port, user: 'app' }))).not.toBe(warmPg(url))
    expect(warmPg(url, { pg: { statement_timeout: 1000 } })).not.toBe(warmPg(url))
  })

  it('refuses the pg options warmconn owns, naming the option to use instead', () => {
    const url = db.urlFor({ port: proxy.port })
    const cases: Array<[PgOptions & Record<string, unknown>, RegExp]> = [
      [{ connectionTimeoutMillis: 100 }, /pg\.connectionTimeoutMillis.*connectTimeoutMs/],
      [{ query_timeout: 100 }, /pg\.query_timeout.*callTimeoutMs/],
      [{ application_name: 'x' }, /pg\.application_name.*applicationName/],
      [{ connectionString: url }, /pg\.connectionString.*URL/],
      [{ host: 'elsewhere' }, /pg\.host.*URL/],
      [{ password: 'x' }, /pg\.password.*URL has a password/],
    ]
    for (const [options, message] of cases) {
      const err = (() => {
        try {
          pgDriver(url, options as PgOptions)
        } catch (e) {
          return e
        }
      })()
      expect(err).toBeInstanceOf(InvalidOptionError)
      expect(String((err as Error).message)).toMatch(message)
    }
    expect(() => warmPg(url, { pg: 'ssl' as never })).toThrow(InvalidOptionError)
  })

  it('a password given as a function (an IAM token, say) is asked for on connect', async () => {
    const url = db.urlFor({ port: proxy.port, user: 'app' }).replace(/:[^:@/]*@/, '@')
    let asked = 0
    const { holder } = make({}, url, pgDriver(url, { password: async () => (asked++, db.password) }))
    const { rows } = await holder.run((c) => c.query('select current_user as who'))
    expect(rows[0].who).toBe('app')
    expect(asked).toBe(1)
  })
})

describe('the pipelined probe (a stale idempotent call)', () => {
  it('goes out in one flight with the call, and the server runs and logs no statement for it', async () => {
    const { holder, name, pid } = make({ staleAfterMs: 100 })
    proxy.setLatencyMs(20) // a real round trip, so a second flight could not hide in the first
    try {
      const first = await pid()
      await sleep(150)
      let mark = await db.mark()
      let flights = proxy.flights()
      expect(await pid({ idempotent: true })).toBe(first)
      expect(proxy.flights() - flights).toBe(1)
      expect(await db.statements({ applicationName: name, since: mark })).toEqual(['select pg_backend_pid() as pid'])
      expect(holder.stats()).toMatchObject({ revalidated: 1, revalidateFailures: 0, opened: 1 })
      // The same call not marked idempotent: ping, wait for the answer, then the call.
      await sleep(150)
      mark = await db.mark()
      flights = proxy.flights()
      expect(await pid()).toBe(first)
      expect(proxy.flights() - flights).toBe(2)
      expect(await db.statements({ applicationName: name, since: mark })).toEqual(['select 1', 'select pg_backend_pid() as pid'])
      // Transaction status survives the probe's swallowed ReadyForQuery: a BEGIN left open is rolled back.
      await sleep(150)
      await holder.run(async (c) => void (await c.query('begin')), { idempotent: true })
      expect(holder.stats().sessionResets).toBe(1)
      expect((await db.backends(name))[0]).toMatchObject({ state: 'idle', xact_start: null })
    } finally {
      proxy.setLatencyMs(0)
    }
  })

  it('unanswered on a blackholed socket: the connection is destroyed within pingTimeoutMs and the call replayed once', async () => {
    const { holder, pid } = make({ staleAfterMs: 100, pingTimeoutMs: 400 })
    const first = await pid()
    proxy.blackhole()
    proxy.heal()
    await sleep(150)
    const started = Date.now()
    const second = await pid({ idempotent: true })
    expect(Date.now() - started).toBeLessThan(400 + 5_000) // a hang detector, not a speed test
    expect(second).not.toBe(first)
    expect(holder.stats()).toMatchObject({ revalidateFailures: 1, replays: 1, opened: 2, failures: 0 })
  })
})

describe('failures', () => {
  it('a backend terminated while idle is dropped with no unhandled error, and the next call succeeds', async () => {
    const { holder, name, pid } = make()
    const first = await pid()
    await db.terminate({ pid: first })
    // Dropped by the holder on the Client's own 'error'/'end', before anyone asks.
    expect(await eventually(async () => holder.stats().closedBroken === 1)).toBe(true)
    const second = await pid()
    expect(second).not.toBe(first)
    expect((await db.backends(name)).map((b) => b.pid)).toEqual([second])
    expect(holder.stats()).toMatchObject({ failures: 0, replays: 0, reconnected: 1 })
  })

  it('a write whose backend dies mid-call fails with ConnectionLostError and is written once', async () => {
    const { holder, pid } = make()
    const backend = await pid()
    const running = holder.run(async (c) => {
      await c.query("insert into pg_ledger (note) values ('pg-once')")
      await c.query('select pg_sleep(5)')
    }).catch((e: unknown) => e)
    expect(await eventually(async () => (await notes('pg-once')) === 1)).toBe(true)
    await db.terminate({ pid: backend })
    const err = await running
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect(err).toMatchObject({ causeCode: '57P01' })
    expect(await notes('pg-once')).toBe(1)
    expect(holder.stats().replays).toBe(0)
  })

  it('a call that returns normally after its connection broke under it: the connection is dropped, not kept busy', async () => {
    const { holder, pid } = make({ acquireTimeoutMs: 1_000 })
    const backend = await pid()
    const outcome = await holder.run(async (c) => {
      await db.terminate({ pid: backend })
      await eventually(async () => (await c.query('select 1').then(() => false, () => true)))
      return 'swallowed'
    })
    expect(outcome).toBe('swallowed')
    expect(await pid()).not.toBe(backend) // without the drop: AcquireTimeoutError, the one slot still taken
    expect(holder.stats()).toMatchObject({ closedBroken: 1, open: 1, inUse: 0 })
  })

  it('a statement refused by a Client that is no longer queryable is retried only when it is the whole call', async () => {
    // A driver whose first connection arrives already ended: its Client refuses every statement
    // without writing a byte ("Client was closed and is not queryable").
    const url = db.urlFor({ port: proxy.port })
    const real = pgDriver(url)
    let opened = 0
    const endedFirst: Driver<pg.Client> = {
      ...real,
      open: async (o) => {
        const conn = await real.open(o)
        if (opened++ === 0) await conn.client.end()
        return conn
      },
    }
    const { holder } = make({}, url, endedFirst)
    // The call is one statement, marked as such (what warmPool's query does): retried, written once.
    await holder.run((c) => c.query("insert into pg_ledger (note) values ('pg-unsent')").catch((e: unknown) => { throw sentNothing(e) }))
    expect(await notes('pg-unsent')).toBe(1)
    expect(holder.stats()).toMatchObject({ replays: 1, opened: 2, failures: 0 })
    // Unmarked, the same error proves nothing about statements before it: not replayed.
    expect(real.classify(new Error('Client was closed and is not queryable'))).toEqual({ kind: 'connection', code: 'CONNECTION_CLOSED', notSent: false })
  })
})
