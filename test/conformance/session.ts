/**
 * Session state in the conformance suite: what one call leaves in its session never reaches the
 * next caller of the connection, on every driver; a clean call sends nothing extra; behind a
 * transaction pooler nothing is reset (the session is the pooler's) and the user is warned.
 * Assertions read the server: current_setting, current_user, pg_locks, pg_listening_channels(),
 * pg_cursors, pg_prepared_statements, and the statements it logged.
 */
import { expect, it } from 'vitest'
import type { Holder, HolderOptions } from '../../src/index.js'
import type { TestPg } from '../harness/pg.js'
import type { FaultProxy } from '../harness/proxy.js'
import { eventually } from '../helpers/core.js'

type Row = Record<string, unknown>

export interface SessionTarget {
  pg: () => TestPg
  make: (options?: HolderOptions) => {
    holder: Holder<unknown>
    name: string
    run: (text: string, params?: unknown[]) => Promise<Row[]>
    pid: () => Promise<number>
  }
  exec: (client: unknown, text: string, params?: unknown[]) => Promise<Row[]>
  /** PostgreSQL itself: the session is the client's (false behind a transaction pooler). */
  direct: boolean
  /** The fault proxy every connection of `make` goes through. */
  proxy: () => FaultProxy
}

export const READER_ROLE = 'warmconn_reader'

/** Each kind of session state: the statements one call runs, and what the next call reads of it. */
const KINDS: Array<{ kind: string; sets: string[]; reads: string; leaked: (row: Row) => boolean }> = [
  { kind: 'SET search_path', sets: ['set search_path = other'], reads: "select current_setting('search_path') as v", leaked: (r) => r.v === 'other' },
  { kind: 'SET statement_timeout', sets: ['set statement_timeout = 1234'], reads: "select current_setting('statement_timeout') as v", leaked: (r) => r.v === '1234ms' },
  { kind: 'SET ROLE', sets: [`set role ${READER_ROLE}`], reads: 'select current_user::text as v', leaked: (r) => r.v === READER_ROLE },
  { kind: 'SET SESSION AUTHORIZATION', sets: [`set session authorization ${READER_ROLE}`], reads: 'select session_user::text as v', leaked: (r) => r.v === READER_ROLE },
  { kind: "set_config(..., false)", sets: ["select set_config('app.tenant', 'acme', false)"], reads: "select current_setting('app.tenant', true) as v", leaked: (r) => r.v === 'acme' },
  { kind: 'SET inside a committed transaction', sets: ['begin', 'set search_path = other', 'commit'], reads: "select current_setting('search_path') as v", leaked: (r) => r.v === 'other' },
  { kind: 'session advisory lock', sets: ['select pg_advisory_lock(424242)'], reads: "select count(*)::int as v from pg_locks where locktype = 'advisory' and objid = 424242 and pid = pg_backend_pid()", leaked: (r) => Number(r.v) > 0 },
  { kind: 'temp table', sets: ['create temp table session_leak (x int)'], reads: 'select count(*)::int as v from pg_class where relnamespace = pg_my_temp_schema()', leaked: (r) => Number(r.v) > 0 },
  { kind: 'LISTEN', sets: ['listen session_leak'], reads: 'select count(*)::int as v from pg_listening_channels()', leaked: (r) => Number(r.v) > 0 },
  { kind: 'cursor WITH HOLD', sets: ['begin', 'declare session_leak cursor with hold for select 1', 'commit'], reads: 'select count(*)::int as v from pg_cursors', leaked: (r) => Number(r.v) > 0 },
  { kind: 'SQL PREPARE', sets: ['prepare session_leak as select 1'], reads: 'select count(*)::int as v from pg_prepared_statements where from_sql', leaked: (r) => Number(r.v) > 0 },
]

export function sessionConformance(t: SessionTarget): void {
  if (!t.direct) return pooledSession(t)

  for (const { kind, sets, reads, leaked } of KINDS) {
    it(`session state: ${kind} set by one call is gone for the next, on the same backend`, async () => {
      const { holder, run, pid } = t.make()
      const first = await pid()
      // The setting call really did change its session: its own read, in the same call, sees it.
      const [inside] = await holder.run(async (client) => {
        for (const text of sets) await t.exec(client, text)
        return t.exec(client, reads)
      })
      expect(leaked(inside!)).toBe(true)
      const [after] = await run(reads)
      expect(leaked(after!)).toBe(false)
      expect(await pid()).toBe(first)
    })
  }

  it('session state: a clean call sends nothing but its own statements; a changing call adds one reset statement', async () => {
    const { run, name } = t.make()
    await run('select 1 as warm')
    const clean = await t.pg().mark()
    await run('select $1::int as a', [1])
    await run("update pg_class set relname = relname where false")
    await run('select $1::int as b', [2])
    expect(await t.pg().statements({ applicationName: name, since: clean })).toEqual([
      'select $1::int as a',
      'update pg_class set relname = relname where false',
      'select $1::int as b',
    ])
    const changing = await t.pg().mark()
    await run("select set_config('app.tenant', 'acme', false)")
    await run('select $1::int as c', [3])
    const seen = await t.pg().statements({ applicationName: name, since: changing })
    expect(seen[0]).toBe("select set_config('app.tenant', 'acme', false)")
    expect(seen.at(-1)).toBe('select $1::int as c')
    // One message, one logged statement, between the two calls: the reset.
    expect(seen.slice(1, -1)).toHaveLength(1)
    expect(seen[1]).toMatch(/reset all/)
    expect(seen[1]).not.toMatch(/deallocate all|discard all/i)
  })

  it("session state: the driver's own prepared statements and the startup settings survive a reset", async () => {
    const { run, holder } = t.make({ applicationName: 'warmconn-session-keep' })
    await run('select $1::int as p', [1])
    const before = Number((await run('select count(*)::int as n from pg_prepared_statements where not from_sql'))[0]!.n)
    await run("select set_config('app.tenant', 'acme', false)")
    // The same statement again: a driver that names statements reuses its own.
    expect((await run('select $1::int as p', [2]))[0]!.p).toBe(2)
    const after = Number((await run('select count(*)::int as n from pg_prepared_statements where not from_sql'))[0]!.n)
    expect(after).toBeGreaterThanOrEqual(before)
    expect((await run("select current_setting('application_name') as v"))[0]!.v).toBe('warmconn-session-keep')
    expect(holder.stats()).toMatchObject({ failures: 0, opened: 1 })
  })

  it('session state: 30 concurrent calls on 2 connections, each setting its own tenant or none: none reads another\'s', async () => {
    const { holder } = t.make({ maxConnections: 2 })
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        holder.run(async (client) => {
          const own = i % 3 === 0 ? undefined : `tenant-${i}`
          if (own) await t.exec(client, 'select set_config($1, $2, false)', ['app.tenant', own])
          const [row] = await t.exec(client, "select current_setting('app.tenant', true) as v, pg_backend_pid() as pid")
          return { own, seen: (row!.v as string | null) || undefined, pid: Number(row!.pid) }
        }),
      ),
    )
    for (const r of results) expect(r.seen).toBe(r.own)
    expect(new Set(results.map((r) => r.pid)).size).toBeLessThanOrEqual(2)
    // 20 calls set a tenant: each one's session was reset (the last ones after their call returned).
    expect(await eventually(async () => holder.stats().sessionResets === 20)).toBe(true)
  })

  it("session state: sessionReset 'always' clears what text cannot show (set_config inside a function); 'changed' cannot; 'never' keeps all", async () => {
    await t.pg().admin.unsafe(
      "create or replace function warmconn_set_tenant(t text) returns void language plpgsql as $$ begin perform set_config('app.tenant', t, false); end $$",
    )
    const read = "select current_setting('app.tenant', true) as v"
    const changed = t.make()
    await changed.run("select warmconn_set_tenant('hidden')")
    expect((await changed.run(read))[0]!.v).toBe('hidden')
    const always = t.make({ sessionReset: 'always' })
    await always.run("select warmconn_set_tenant('hidden')")
    expect((await always.run(read))[0]!.v || undefined).toBeUndefined()
    const never = t.make({ sessionReset: 'never' })
    await never.run("select set_config('app.tenant', 'kept', false)")
    expect((await never.run(read))[0]!.v).toBe('kept')
    expect(never.holder.stats().sessionResets).toBe(0)
  })

  it('session state: a reset that goes unanswered drops the connection instead of handing it on', async () => {
    const { holder, pid } = t.make({ pingTimeoutMs: 300 })
    const first = await pid()
    const resets: boolean[] = []
    holder.on('sessionReset', (e) => resets.push(e.ok))
    await holder.run(async (client) => {
      await t.exec(client, `set role ${READER_ROLE}`)
      // Answered; from now on this connection's socket is silent, so the reset sent when the call
      // returns can never be answered. New connections get through.
      t.proxy().blackhole()
      t.proxy().heal()
    })
    const next = await holder.run(async (client) => (await t.exec(client, 'select pg_backend_pid() as pid, current_user::text as role'))[0]!)
    expect(Number(next.pid)).not.toBe(first)
    expect(next.role).not.toBe(READER_ROLE)
    expect(holder.stats()).toMatchObject({ revalidateFailures: 1, opened: 2, failures: 0 })
    expect(await eventually(async () => resets.length === 1)).toBe(true)
    expect(resets).toEqual([false])
  })
}

/** Behind a transaction pooler: nothing is reset (no statement of warmconn's), and the user is warned once. */
function pooledSession(t: SessionTarget): void {
  it('session state: behind a transaction pooler a session change is warned about once and not reset', async () => {
    const { holder, run } = t.make()
    const warnings: string[] = []
    holder.on('warning', (w) => warnings.push(w.code))
    await run('select 1 as warm')
    const mark = await t.pg().mark()
    await run("select set_config('app.tenant', 'acme', false)")
    await run("select set_config('app.tenant', 'acme', false)")
    await run('select 2 as after')
    expect(warnings).toEqual(['WARMCONN_WARN_SESSION_STATE_POOLED'])
    const logged = await t.pg().statements({ since: mark })
    expect(logged.filter((s) => /reset all/.test(s))).toEqual([])
    expect(holder.stats().sessionResets).toBe(0)
  })
}
