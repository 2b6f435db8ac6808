/**
 * What an ORM over warmPool must survive, run against a real PostgreSQL behind the fault proxy:
 * the same scenarios for Drizzle, Kysely and Prisma (one `OrmTarget` each, one test file each).
 * Plain pg.Pool failed three of them here (a crash on an idle backend's death, a crash on a
 * backend killed mid-write, a hang on a blackholed socket). Assertions read the server: backend
 * pids, pg_stat_activity, committed rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { warmPool, type WarmPgPool, type WarmPgPoolOptions } from '../../src/drivers/pg.js'
import { startPostgres, type TestPg } from '../harness/pg.js'
import { startProxy, type FaultProxy } from '../harness/proxy.js'
import { appName, eventually, sleep } from '../helpers/core.js'
import { freePort } from '../harness/ports.js'

/** One ORM's way of doing each thing the scenarios need, over a given pool. */
export interface Orm {
  /** `select pg_backend_pid()` through the ORM. */
  pid(): Promise<number>
  /** An ORM insert into orm_notes (one statement, not marked idempotent). */
  insert(note: string): Promise<unknown>
  /** The ORM's own transaction: inserts `note`, then throws. */
  failingTransaction(note: string): Promise<unknown>
  /** Whatever the ORM does to let go (Kysely's destroy() ends the pool). */
  close(): Promise<void>
}

export interface OrmTarget {
  name: string
  /** Once per file, before any test (Prisma generates its client here). */
  setup?: () => Promise<void>
  teardown?: () => Promise<void>
  open: (pool: WarmPgPool) => Orm
  /** warmPool options the ORM is used with (an idempotent predicate for its reads, say). */
  poolOptions?: WarmPgPoolOptions
  /**
   * Asserts that `err`, what the ORM threw for a connection failure, is the ORM's own typed error
   * for it, built from the driver's `code` (ECONNREFUSED with syscall and errno, or 57P01).
   */
  connectionError(err: unknown, code: 'ECONNREFUSED' | '57P01'): void
}

// Inserting a note that starts with "slow-" takes 5 s: a write in flight long enough to kill.
const SCHEMA = `
  create table orm_notes (id serial primary key, note text not null);
  create function orm_slow() returns trigger language plpgsql as $$
  begin
    if new.note like 'slow-%' then perform pg_sleep(5); end if;
    return new;
  end $$;
  create trigger orm_slow before insert on orm_notes for each row execute function orm_slow();
`

export function ormScenarios(t: OrmTarget): void {
  describe(`${t.name} over warmPool`, () => {
    let db: TestPg
    let proxy: FaultProxy
    const opened: Orm[] = []
    beforeAll(async () => {
      db = await startPostgres()
      proxy = await startProxy({ host: db.host, port: db.port })
      await db.admin.unsafe(SCHEMA)
      await t.setup?.()
    })
    afterAll(async () => {
      for (const orm of opened) await orm.close().catch(() => {})
      await t.teardown?.()
      await proxy?.close()
      await db?.stop()
    })

    function make(options: WarmPgPoolOptions = {}) {
      const name = appName(t.name.toLowerCase())
      const pool = warmPool(db.urlFor({ port: proxy.port }), { ...t.poolOptions, applicationName: name, ...options })
      const orm = t.open(pool)
      opened.push(orm)
      return { pool, name, orm }
    }
    const notes = async (note: string) => Number((await db.admin`select count(*)::int as n from orm_notes where note = ${note}`)[0]!.n)

    it("a refused connection surfaces as the ORM's own error for it, built from the driver's code", async () => {
      const pool = warmPool({ connectionString: db.urlFor({ port: await freePort() }), connectionTimeoutMillis: 1_000, ...t.poolOptions })
      const orm = t.open(pool)
      opened.push(orm)
      const err = await orm.pid().then(() => undefined, (e: unknown) => e)
      t.connectionError(err, 'ECONNREFUSED')
    })

    it("a backend terminated mid-write surfaces as the ORM's own error, with the server's 57P01", async () => {
      const { name, orm } = make()
      await orm.pid()
      const writing = orm.insert(`slow-${name}`).then(() => undefined, (e: unknown) => e)
      expect(await eventually(async () => (await db.admin`select 1 from pg_stat_activity where application_name = ${name} and query like '%orm_notes%'`).length === 1)).toBe(true)
      await db.terminate({ applicationName: name })
      t.connectionError(await writing, '57P01')
    })

    it('many queries run on one server backend', async () => {
      const { pool, name, orm } = make()
      const pids = new Set<number>()
      for (let i = 0; i < 50; i++) pids.add(await orm.pid())
      expect(pids.size).toBe(1)
      expect((await db.backends(name)).map((b) => b.pid)).toEqual([...pids])
      expect(pool.holder.stats()).toMatchObject({ opened: 1, failures: 0 })
    })

    it('a transaction that throws commits nothing and leaves no backend idle in transaction', async () => {
      const { name, orm } = make()
      const note = `tx-${name}`
      await expect(orm.failingTransaction(note)).rejects.toThrow()
      expect(await notes(note)).toBe(0)
      const states = (await db.backends(name)).map((b) => b.state)
      expect(states.length).toBeGreaterThan(0)
      expect(states.filter((s) => s.startsWith('idle in transaction'))).toEqual([])
      // The connection is clean: the next write autocommits on its own.
      await orm.insert(`${note}-next`)
      expect(await notes(`${note}-next`)).toBe(1)
    })

    it('a backend killed while idle: the next query succeeds, on a new backend', async () => {
      const { pool, orm } = make()
      const before = await orm.pid()
      await db.terminate({ pid: before })
      expect(await eventually(async () => pool.holder.stats().closedBroken === 1)).toBe(true)
      const after = await orm.pid()
      expect(after).not.toBe(before)
      expect(pool.holder.stats()).toMatchObject({ failures: 0, reconnected: 1 })
    })

    it('a socket blackholed after staleAfterMs: answered within pingTimeoutMs plus a connect', async () => {
      const { pool, orm } = make({ staleAfterMs: 100, pingTimeoutMs: 400 })
      const before = await orm.pid()
      proxy.blackhole()
      proxy.heal() // the old flow is dead (a NAT forgot it); new connections get through
      await sleep(150)
      const started = Date.now()
      const after = await orm.pid()
      expect(Date.now() - started).toBeLessThan(400 + 5_000) // a hang detector, not a speed test
      expect(after).not.toBe(before)
      expect(pool.holder.stats()).toMatchObject({ revalidateFailures: 1, failures: 0 })
    })

    it('idle close leaves no backend on the server', async () => {
      const { pool, name, orm } = make({ idleTimeoutMs: 300 })
      await orm.pid()
      expect(await db.backends(name)).toHaveLength(1)
      expect(await eventually(async () => (await db.backends(name)).length === 0)).toBe(true)
      expect(pool.holder.stats()).toMatchObject({ closedIdle: 1, open: 0 })
    })

    it('a backend killed mid-write fails that write, which is in the table at most once', async () => {
      const { pool, name, orm } = make()
      await orm.pid()
      const note = `slow-${name}`
      const writing = orm.insert(note).then(() => undefined, (e: unknown) => e)
      const running = async () => (await db.admin`select pid from pg_stat_activity where application_name = ${name} and query like '%orm_notes%' and state = 'active'`)
      expect(await eventually(async () => (await running()).length === 1)).toBe(true)
      await db.terminate({ pid: Number((await running())[0]!.pid) })
      expect(await writing).toBeInstanceOf(Error)
      expect(await notes(note)).toBeLessThanOrEqual(1)
      expect(pool.holder.stats().replays).toBe(0)
      expect(Number.isInteger(await orm.pid())).toBe(true)
    })

    it("never crashes the process for want of an 'error' listener", async () => {
      const uncaught: unknown[] = []
      const record = (err: unknown) => uncaught.push(err)
      process.on('uncaughtException', record)
      try {
        const { pool, name, orm } = make()
        pool.removeAllListeners('error') // pg-pool would now crash on an idle client's error
        expect(pool.listenerCount('error')).toBe(0)
        // Killed while idle, then while a write is in flight.
        await db.terminate({ pid: await orm.pid() })
        expect(await eventually(async () => pool.holder.stats().closedBroken === 1)).toBe(true)
        await orm.pid()
        const writing = orm.insert(`slow-crash-${name}`).catch(() => {})
        expect(await eventually(async () => (await db.backends(name)).some((b) => b.state === 'active'))).toBe(true)
        await db.terminate({ applicationName: name })
        await writing
        await sleep(100) // let any late socket event land
        expect(Number.isInteger(await orm.pid())).toBe(true)
      } finally {
        process.off('uncaughtException', record)
      }
      expect(uncaught).toEqual([])
    })
  })
}
