/**
 * Session state beyond the conformance suite (test/conformance/session.ts, every driver): the
 * statement-text reading itself, the option, the other ways in (warmPool's query and
 * connect/release, postgres.js's sql.begin and reserve), the 26000 warning on a direct
 * connection, and a Lambda frozen between an invocation that sets a role and a tenant and one
 * that reads them. Assertions read the server.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Holder, InvalidOptionError, optionsFromEnv, type HolderOptions } from '../src/index.js'
import { postgresDriver, type Sql } from '../src/drivers/postgres.js'
import { warmPool } from '../src/drivers/pg.js'
import { changesSession, RESET_SESSION_SQL } from '../src/session-state.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { appName } from './helpers/core.js'

describe('reading statement text', () => {
  it.each([
    ['set search_path = other', true],
    ['SET SESSION statement_timeout TO 5', true],
    ['  /* c */ -- line\n set role reader', true],
    ['set session authorization reader', true],
    ['reset search_path', true],
    ["select set_config('app.tenant', 'acme', false)", true],
    ["select set_config('app.tenant', $1, $2)", true],
    ["select set_config('app.tenant', $1, true)", false],
    ["select set_config('app.x', 'a,b(c)', true), set_config('app.y', 'z', false)", true],
    ['select pg_advisory_lock(1)', true],
    ['select pg_try_advisory_lock_shared(1)', true],
    ['select pg_advisory_xact_lock(1)', false],
    ['create temporary table t (x int)', true],
    ['create temp table t (x int)', true],
    ['create table pg_temp.t (x int)', true],
    ['listen chan', true],
    ['declare c cursor with hold for select 1', true],
    ['declare c cursor for select 1', false],
    ['prepare p as select 1', true],
    ["prepare transaction 'x'", false],
    ['set local search_path = other', false],
    ['set transaction isolation level serializable', false],
    ['set constraints all deferred', false],
    ['begin; set search_path = other; commit', true],
    ['update t set x = 1 where id = $1', false],
    ["select 'set role' as label", false],
    ['select * from settings where reset = true', false],
    ['insert into t (temp) values (1)', false],
  ])('%s -> %s', (text, expected) => {
    expect(changesSession(text)).toBe(expected)
  })

  it('the reset keeps the drivers\' prepared statements (no DEALLOCATE ALL, no DISCARD ALL)', () => {
    expect(RESET_SESSION_SQL).not.toMatch(/deallocate all|discard all/i)
  })
})

describe('the sessionReset option', () => {
  it('takes changed, always and never; anything else is an InvalidOptionError naming it', () => {
    const driver = postgresDriver('postgres://u@127.0.0.1:1/d')
    for (const mode of ['changed', 'always', 'never'] as const) expect(new Holder(driver, { sessionReset: mode }).options.sessionReset).toBe(mode)
    expect(new Holder(driver).options.sessionReset).toBe('changed')
    const err = (() => {
      try {
        new Holder(driver, { sessionReset: 'sometimes' as never })
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(InvalidOptionError)
    expect((err as InvalidOptionError).message).toMatch(/sessionReset.*'changed', 'always', 'never'/)
  })

  it('WARMCONN_SESSION_RESET sets it', () => {
    expect(optionsFromEnv({ WARMCONN_SESSION_RESET: 'always' })).toEqual({ sessionReset: 'always' })
    expect(() => new Holder(postgresDriver('postgres://u@127.0.0.1:1/d'), optionsFromEnv({ WARMCONN_SESSION_RESET: 'nope' }))).toThrow(InvalidOptionError)
  })
})

describe('against PostgreSQL', () => {
  let db: TestPg
  let dir: string
  const holders: Array<{ close(): Promise<void> }> = []
  beforeAll(async () => {
    db = await startPostgres()
    await db.admin.unsafe(`do $$ begin create role warmconn_reader; exception when duplicate_object then null; end $$`)
    dir = mkdtempSync(join(tmpdir(), 'warmconn-session-'))
  })
  afterAll(async () => {
    await Promise.all(holders.map((h) => h.close()))
    await db?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  function postgresHolder(options: HolderOptions = {}) {
    const name = appName('session')
    const holder = new Holder(postgresDriver(db.url, { onnotice: () => {} }), { applicationName: name, ...options })
    holders.push(holder)
    return { holder, name }
  }
  const readState = (sql: Sql) => sql`select current_user::text as role, current_setting('search_path') as path, current_setting('app.tenant', true) as tenant, pg_backend_pid() as pid`

  it('postgres.js: a SET inside sql.begin that committed, and set_config on a reserved connection, are gone for the next call', async () => {
    const { holder } = postgresHolder()
    const [before] = await holder.run(readState)
    await holder.run((sql) => sql.begin(async (tx) => {
      await tx`set search_path = other`
      await tx`select 1`
    }))
    const [afterBegin] = await holder.run(readState)
    expect(afterBegin).toMatchObject({ path: before!.path, pid: before!.pid })
    await holder.run(async (sql) => {
      const reserved = await sql.reserve()
      try {
        await reserved`select set_config('app.tenant', 'reserved', false)`
      } finally {
        reserved.release()
      }
    })
    const [afterReserve] = await holder.run(readState)
    expect(afterReserve!.tenant || undefined).toBeUndefined()
    expect(afterReserve!.pid).toBe(before!.pid)
  })

  it('warmPool: what pool.query and a connect()ed client set is gone for the next query, on the same backend', async () => {
    const name = appName('session-pool')
    const pool = warmPool(db.url, { applicationName: name, maxConnections: 1 })
    holders.push({ close: () => pool.end() })
    const read = "select current_user::text as role, current_setting('app.tenant', true) as tenant, pg_backend_pid() as pid"
    const first = (await pool.query(read)).rows[0]
    await pool.query("select set_config('app.tenant', 'acme', false)")
    expect((await pool.query(read)).rows[0]).toMatchObject({ tenant: '', pid: first.pid, role: first.role })
    const client = await pool.connect()
    await client.query('set role warmconn_reader')
    expect((await client.query(read)).rows[0].role).toBe('warmconn_reader')
    client.release()
    expect((await pool.query(read)).rows[0]).toMatchObject({ role: first.role, pid: first.pid })
    expect((await db.backends(name)).map((b) => b.pid)).toEqual([first.pid])
  })

  it("26000 from the caller's own DEALLOCATE or EXECUTE on a direct connection is not a pooler warning", async () => {
    const { holder } = postgresHolder()
    const warnings: string[] = []
    holder.on('warning', (w) => warnings.push(w.code))
    const err = await holder.run((sql) => sql.unsafe('deallocate no_such_statement')).catch((e: unknown) => e)
    expect((err as { code?: string }).code).toBe('26000')
    const err2 = await holder.run((sql) => sql.unsafe('execute no_such_statement')).catch((e: unknown) => e)
    expect((err2 as { code?: string }).code).toBe('26000')
    expect(warnings).toEqual([])
  })

  describe('in the Lambda emulator', () => {
    let lambda: LambdaEmulator | undefined
    afterAll(async () => {
      await lambda?.kill()
    })

    it('an invocation sets a role and a tenant; frozen; the next invocation, on the same backend, sees neither', async () => {
      const file = await build('test/fixtures/lambda-session.ts', join(dir, 'session.mjs'))
      lambda = await startLambda({ handlerFile: file, env: { DATABASE_URL: db.url }, timeoutMs: 15_000 })
      const invoke = async (event: object) => {
        const out = await lambda!.invoke(event)
        if (out.error) throw new Error(`${out.error.errorType}: ${out.error.errorMessage}`)
        return out.result as { role: string; tenant: string | null; pid: number; stats: { sessionResets: number } }
      }
      const clean = await invoke({ action: 'read' })
      const set = await invoke({ action: 'set', role: 'warmconn_reader', tenant: 'acme' })
      expect(set).toMatchObject({ role: 'warmconn_reader', tenant: 'acme', pid: clean.pid })
      expect(lambda.isFrozen()).toBe(true)
      const next = await invoke({ action: 'read' })
      expect(next).toMatchObject({ role: clean.role, pid: clean.pid })
      expect(next.tenant || undefined).toBeUndefined()
      expect(next.stats.sessionResets).toBe(1)
      // The server agrees: one backend, its role back to the login role.
      const [row] = await db.admin`select usename, backend_type from pg_stat_activity where pid = ${clean.pid}`
      expect(row).toMatchObject({ usename: clean.role })
    })
  })
})
