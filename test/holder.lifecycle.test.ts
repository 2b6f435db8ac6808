/**
 * Closing, rotation, session hygiene and write safety, checked on the server: which backends are
 * left, which statements arrived, which rows were committed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { appName, eventually, makeHolder, pidOf, recordEvents, sleep } from './helpers/core.js'
import { ClosedError, ConnectionLostError, ConnectError, AuthError, InvalidOptionError } from '../src/index.js'
import { warmPostgres } from '../src/drivers/postgres.js'

let pg: TestPg
beforeAll(async () => {
  pg = await startPostgres()
  await pg.admin`create table ledger (id serial primary key, note text not null)`
})
afterAll(async () => {
  await pg?.stop()
})

async function notes(note: string): Promise<number> {
  const [row] = await pg.admin`select count(*)::int as n from ledger where note = ${note}`
  return row!.n as number
}

describe('idle close and lifetime', () => {
  it('closes a connection idle past idleTimeoutMs: the server has no backend of it afterwards', async () => {
    const name = appName('idle')
    const holder = makeHolder(pg.url, { applicationName: name, idleTimeoutMs: 300 })
    await pidOf(holder)
    expect(await pg.backends(name)).toHaveLength(1)
    expect(await eventually(async () => (await pg.backends(name)).length === 0)).toBe(true)
    expect(holder.stats()).toMatchObject({ closedIdle: 1, open: 0 })
  })

  it('a connection found past its idle deadline (timer could not fire, as in a frozen process) is replaced, never used', async () => {
    const name = appName('frozen')
    const holder = makeHolder(pg.url, { applicationName: name, idleTimeoutMs: 200, staleAfterMs: 100 })
    const old = await pidOf(holder)
    const mark = await pg.mark()
    // Block the event loop past the idle deadline so the unref'd idle timer cannot fire first.
    const until = Date.now() + 400
    while (Date.now() < until) { /* a frozen process: no timers, no I/O */ }
    const fresh = await pidOf(holder)
    expect(fresh).not.toBe(old)
    expect(await pg.statements({ pid: old, since: mark })).toEqual([])
    expect(holder.stats()).toMatchObject({ closedIdle: 1, revalidated: 0 })
    expect(await eventually(async () => !(await pg.backends(name)).some((b) => b.pid === old))).toBe(true)
    await holder.close()
  })

  it('rotates a connection at maxLifetimeMs and closes the old backend', async () => {
    const name = appName('life')
    const holder = makeHolder(pg.url, { applicationName: name, maxLifetimeMs: 300, maxLifetimeJitterMs: 0 })
    const first = await pidOf(holder)
    await sleep(350)
    const second = await pidOf(holder)
    expect(second).not.toBe(first)
    expect(holder.stats().closedLifetime).toBe(1)
    expect(await eventually(async () => (await pg.backends(name)).map((b) => b.pid).join() === String(second))).toBe(true)
    await holder.close()
  })
})

describe('session hygiene between invocations', () => {
  it('a handler that throws between BEGIN and COMMIT: rolled back, nothing committed, next call starts clean', async () => {
    const name = appName('tx')
    const holder = makeHolder(pg.url, { applicationName: name })
    const pid = await pidOf(holder)
    const mark = await pg.mark()
    const boom = new Error('handler failed mid-transaction')
    await expect(holder.run(async (sql) => {
      await sql`begin`
      await sql`insert into ledger (note) values ('half-done')`
      throw boom
    })).rejects.toBe(boom)
    const [backend] = (await pg.backends(name)).filter((b) => b.pid === pid)
    expect(backend).toMatchObject({ state: 'idle', xact_start: null })
    expect(await notes('half-done')).toBe(0)
    expect(await pg.statements({ pid, since: mark })).toContain('rollback')
    expect(await pg.statements({ pid, since: mark })).not.toContain('commit')
    // The next invocation is on the same (clean) connection and not inside a transaction: what it
    // writes is committed at once and visible to another session.
    const [row] = await holder.run((sql) => sql`insert into ledger (note) values ('next-invocation') returning pg_backend_pid() as pid`)
    expect(Number(row!.pid)).toBe(pid)
    expect(await notes('next-invocation')).toBe(1)
    expect(holder.stats().sessionResets).toBe(1)
    await holder.close()
  })

  it('a transaction aborted by an SQL error (25P02) is rolled back too', async () => {
    const holder = makeHolder(pg.url, { applicationName: appName('aborted') })
    const err = await holder.run(async (sql) => {
      await sql`begin`
      await sql`insert into ledger (note) values ('aborted-tx')`
      await sql`select 1/0`
    }).catch((e: unknown) => e)
    expect((err as { code?: string }).code).toBe('22012')
    expect(await notes('aborted-tx')).toBe(0)
    const [row] = await holder.run((sql) => sql`select count(*)::int as n from ledger`)
    expect(typeof row!.n).toBe('number')
    await holder.close()
  })

  it('a handler that returns with a transaction still open never gets it committed', async () => {
    const holder = makeHolder(pg.url, { applicationName: appName('forgot') })
    await holder.run(async (sql) => {
      await sql`begin`
      await sql`insert into ledger (note) values ('never-committed')`
    })
    await holder.close() // close must not commit either
    expect(await notes('never-committed')).toBe(0)
    expect(holder.stats().sessionResets).toBe(1)
  })

  it('sql.begin keeps working and commits what the caller committed', async () => {
    const holder = makeHolder(pg.url, { applicationName: appName('begin') })
    await holder.run((sql) => sql.begin((tx) => tx`insert into ledger (note) values ('committed-by-caller')`))
    expect(await notes('committed-by-caller')).toBe(1)
    expect(holder.stats().sessionResets).toBe(0)
    await holder.close()
  })
})

describe('writes are never replayed blindly', () => {
  it('a write whose connection dies mid-call is not replayed: ConnectionLostError, written once', async () => {
    const name = appName('lost')
    const holder = makeHolder(pg.url, { applicationName: name })
    const pid = await pidOf(holder)
    const mark = await pg.mark()
    const running = holder.run(async (sql) => {
      await sql`insert into ledger (note) values ('write-once')`
      await sql`select pg_sleep(5)`
    }).catch((e: unknown) => e)
    // Killed once the insert has committed and the sleep runs: the write reached the server.
    expect(await eventually(async () => (await pg.admin`select 1 from pg_stat_activity where pid = ${pid} and query like '%pg_sleep%'`).length === 1)).toBe(true)
    await pg.terminate({ pid })
    const err = await running
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect((err as ConnectionLostError).outcomeUnknown).toBe(true)
    expect(await notes('write-once')).toBe(1)
    const inserts = (await pg.statements({ applicationName: name, since: mark })).filter((s) => s.includes('write-once'))
    expect(inserts).toHaveLength(1)
    expect(holder.stats()).toMatchObject({ replays: 0, failures: 1 })
    await holder.close()
  })

  it('after a kill mid-transaction, later statements of the call fail instead of autocommitting on a new connection', async () => {
    const name = appName('midtx')
    const holder = makeHolder(pg.url, { applicationName: name })
    const outcome = await holder.run(async (sql) => {
      await sql`begin`
      await sql`insert into ledger (note) values ('midtx-first')`
      await pg.terminate({ applicationName: name })
      await eventually(async () => holder.stats().closedBroken === 1)
      await sql`insert into ledger (note) values ('midtx-second')`
      await sql`commit`
    }).then(() => 'succeeded', (e: unknown) => e)
    expect(outcome).toBeInstanceOf(ConnectionLostError)
    expect(await notes('midtx-first')).toBe(0)
    expect(await notes('midtx-second')).toBe(0)
    await holder.close()
  })

  it('an idempotent call is replayed once on a new connection and succeeds', async () => {
    const name = appName('replay')
    const holder = makeHolder(pg.url, { applicationName: name })
    const pid = await pidOf(holder)
    let calls = 0
    const running = holder.run(async (sql) => {
      calls++
      const [row] = await sql`select pg_backend_pid() as pid, pg_sleep(${calls === 1 ? 5 : 0})`
      return Number(row!.pid)
    }, { idempotent: true })
    expect(await eventually(async () => (await pg.backends(name)).some((b) => b.state === 'active'))).toBe(true)
    await pg.terminate({ pid })
    const second = await running
    expect(second).not.toBe(pid)
    expect(calls).toBe(2)
    expect(holder.stats()).toMatchObject({ replays: 1, failures: 0 })
    await holder.close()
  })
})

describe('close()', () => {
  it('waits for a call in flight, then closes every connection; later calls get ClosedError', async () => {
    const name = appName('close')
    const holder = makeHolder(pg.url, { applicationName: name })
    await pidOf(holder)
    const inFlight = holder.run((sql) => sql`select pg_sleep(0.3), 'done' as x`)
    await sleep(50)
    await holder.close({ timeoutMs: 3_000 })
    expect((await inFlight)[0]!.x).toBe('done')
    expect(await pg.backends(name)).toEqual([])
    await expect(holder.run((sql) => sql`select 1`)).rejects.toBeInstanceOf(ClosedError)
  })

  it('destroys what is still busy after the bound', async () => {
    const name = appName('closebound')
    const holder = makeHolder(pg.url, { applicationName: name })
    const stuck = holder.run((sql) => sql`select pg_sleep(10)`).catch((e: unknown) => e)
    await eventually(async () => (await pg.backends(name)).some((b) => b.state === 'active'))
    const started = Date.now()
    await holder.close({ timeoutMs: 200 })
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(await stuck).toBeInstanceOf(Error)
  })
})

describe('secrets never leak', () => {
  it('the password appears in no error, event, stat or console line of a run full of failures', async () => {
    const secret = pg.password
    const printed: string[] = []
    const original = { log: console.log, warn: console.warn, error: console.error }
    for (const k of ['log', 'warn', 'error'] as const) console[k] = (...args: unknown[]) => void printed.push(args.map(String).join(' '))
    const collected: unknown[] = []
    try {
      const name = appName('secret')
      const good = makeHolder(pg.url, { applicationName: name, staleAfterMs: 0 })
      collected.push(recordEvents(good))
      await pidOf(good)
      await pg.terminate({ applicationName: name })
      await pidOf(good)
      const pid = await pidOf(good)
      const lost = good.run(async (sql) => sql`select pg_sleep(5)`).catch((e: unknown) => e)
      await eventually(async () => (await pg.backends(name)).some((b) => b.state === 'active'))
      await pg.terminate({ pid })
      collected.push(await lost)
      collected.push(good.stats())
      await good.close()

      const wrongUser = makeHolder(pg.urlFor({ user: 'nobody', password: secret }))
      collected.push(recordEvents(wrongUser))
      collected.push(await wrongUser.run((sql) => sql`select 1`).catch((e: unknown) => e))
      const refused = makeHolder(pg.urlFor({ port: 1 }), { connectBudgetMs: 300 })
      collected.push(recordEvents(refused))
      collected.push(await refused.run((sql) => sql`select 1`).catch((e: unknown) => e))
      collected.push((() => { try { warmPostgres(`postgres://u:${secret}@[oops/db`) } catch (e) { return e } })())
    } finally {
      Object.assign(console, original)
    }
    const errors = collected.filter((c): c is Error => c instanceof Error)
    expect(errors.map((e) => e.constructor)).toEqual([ConnectionLostError, AuthError, ConnectError, InvalidOptionError])
    const text = JSON.stringify(collected) + errors.map((e) => `${e.message}\n${e.stack}\n${String((e.cause as Error | undefined)?.message)}`).join('\n') + printed.join('\n')
    expect(text.length).toBeGreaterThan(500)
    expect(text).not.toContain(secret)
  })
})
