/**
 * What PgBouncer in transaction mode does with session state, measured (the README's table under
 * "Session state" comes from this test): two clients of one PgBouncer pool of ONE server
 * connection, client A changes its session, client B, in its next transaction on that same
 * server, reads it. PgBouncer 1.18 restores only the parameters it tracks per client
 * (client_encoding, DateStyle, TimeZone, standard_conforming_strings, application_name), so
 * every kind below reaches B. That is why warmconn sends no reset there (the session is the
 * pooler's, shared with its other clients) and warns instead (test/conformance/session.ts).
 */
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { pgBouncer, startPgBouncer, type TestPgBouncer } from './harness/pgbouncer.js'
import { requires } from './helpers/requires.js'

type Sql = postgres.Sql<Record<string, never>>

const KINDS: Array<{ kind: string; sets: string[]; reads: string; leaked: (v: unknown) => boolean }> = [
  { kind: 'SET search_path', sets: ['set search_path = other'], reads: "select current_setting('search_path') as v", leaked: (v) => v === 'other' },
  { kind: 'SET statement_timeout', sets: ['set statement_timeout = 1234'], reads: "select current_setting('statement_timeout') as v", leaked: (v) => v === '1234ms' },
  { kind: 'SET ROLE', sets: ['set role warmconn_reader'], reads: 'select current_user::text as v', leaked: (v) => v === 'warmconn_reader' },
  { kind: 'set_config(..., false)', sets: ["select set_config('app.tenant', 'acme', false)"], reads: "select current_setting('app.tenant', true) as v", leaked: (v) => v === 'acme' },
  { kind: 'SET inside a committed transaction', sets: ['begin', 'set search_path = other', 'commit'], reads: "select current_setting('search_path') as v", leaked: (v) => v === 'other' },
  { kind: 'session advisory lock', sets: ['select pg_advisory_lock(4242)'], reads: "select count(*)::int as v from pg_locks where locktype = 'advisory' and objid = 4242 and pid = pg_backend_pid()", leaked: (v) => Number(v) > 0 },
  { kind: 'temp table', sets: ['create temp table bouncer_leak (x int)'], reads: 'select count(*)::int as v from pg_class where relnamespace = pg_my_temp_schema()', leaked: (v) => Number(v) > 0 },
  { kind: 'LISTEN', sets: ['listen bouncer_leak'], reads: 'select count(*)::int as v from pg_listening_channels()', leaked: (v) => Number(v) > 0 },
  { kind: 'cursor WITH HOLD', sets: ['begin', 'declare bouncer_leak cursor with hold for select 1', 'commit'], reads: 'select count(*)::int as v from pg_cursors', leaked: (v) => Number(v) > 0 },
  { kind: 'SQL PREPARE', sets: ['prepare bouncer_leak as select 1'], reads: 'select count(*)::int as v from pg_prepared_statements where from_sql', leaked: (v) => Number(v) > 0 },
]

describe('PgBouncer 1.18, transaction mode, one server connection: session state set by one client reaches another', requires(pgBouncer), () => {
  let pg: TestPg
  let bouncer: TestPgBouncer
  let a: Sql
  let b: Sql
  const table: string[] = []
  beforeAll(async () => {
    pg = await startPostgres()
    await pg.admin.unsafe(`do $$ begin create role warmconn_reader; exception when duplicate_object then null; end $$`)
    await pg.admin.unsafe('grant warmconn_reader to app')
    bouncer = await startPgBouncer(pg, { poolMode: 'transaction', defaultPoolSize: 1 })
    const client = () => postgres(bouncer.url(), { max: 1, prepare: false, fetch_types: false, onnotice: () => {} }) as unknown as Sql
    a = client()
    b = client()
  })
  afterAll(async () => {
    console.log(`PgBouncer transaction mode, what client B sees of client A's session:\n${table.join('\n')}`)
    await Promise.all([a?.end({ timeout: 1 }), b?.end({ timeout: 1 })])
    await bouncer?.stop()
    await pg?.stop()
  })

  for (const { kind, sets, reads, leaked } of KINDS) {
    it(`${kind}: leaks to the other client`, async () => {
      for (const text of sets) await a.unsafe(text)
      const [row] = await b.unsafe(reads)
      const [server] = await pg.admin`select count(*)::int as n from pg_stat_activity where usename = 'app' and backend_type = 'client backend'`
      expect(server!.n).toBe(1) // one server connection, so B ran on A's session
      table.push(`| ${kind} | ${leaked(row!.v) ? 'reaches the other client' : 'not seen'} |`)
      expect(leaked(row!.v)).toBe(true)
      // What PgBouncer's session mode would run (server_reset_query), to start the next kind clean.
      await a.unsafe('discard all')
    })
  }
})
