/**
 * The Worker-side client against real holder objects over Workers RPC, in Miniflare. Before
 * compatibility date 2026-04-21 an error thrown across RPC loses its class and `code`; after
 * it, it keeps its own properties (a PostgresError's statement and parameters included). warmconn
 * sends errors as data, so callers see the same typed errors, and nothing more, on either date.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { freePort } from './harness/ports.js'
import { startWorker, testedCompatibilityDate, type TestWorker } from './harness/worker.js'

let pg: TestPg
const WRONG_PASSWORD = 'wrong-password-canary'

beforeAll(async () => {
  pg = await startPostgres()
  await pg.admin`create table rpc_items (id int primary key, note text)`
})
afterAll(async () => {
  await pg?.stop()
})

describe.each([
  ['2025-09-01, before enhanced_error_serialization', '2025-09-01'],
  [`${testedCompatibilityDate}, the date under test`, testedCompatibilityDate],
])('Workers RPC on compatibility date %s', (_, compatibilityDate) => {
  let w: TestWorker
  const post = async (path: string, call: Record<string, unknown>) => (await w.fetch('POST', path, JSON.stringify(call))).body

  beforeAll(async () => {
    await pg.admin`truncate rpc_items`
    w = await startWorker({
      entry: 'test/fixtures/workers/rpc.ts',
      compatibilityDate,
      bindings: { DATABASE_URL: pg.url, WRONG_PASSWORD_URL: pg.urlFor({ password: WRONG_PASSWORD }), UNREACHABLE_URL: pg.urlFor({ port: await freePort() }) },
      durableObjects: { WARMCONN: 'WarmconnDurableObject', WRONG_PASSWORD: 'WrongPasswordHolder', UNREACHABLE: 'UnreachableHolder' },
    })
  })
  afterAll(async () => {
    await w?.dispose()
  })

  it('a query returns plain rows with count and command; dates and bytes keep their types', async () => {
    const res = await post('/query', {
      text: `select now() as ts, '\\x0102'::bytea as bytes, 9007199254740993::int8 as big, '{"a":1}'::jsonb as doc, $1::text as param`,
      params: ['p'],
    })
    expect(res).toMatchObject({ count: 1, command: 'SELECT', rows: [{ big: '9007199254740993', doc: { a: 1 }, param: 'p' }] })
    expect(res.types[0]).toMatchObject({ ts: '[object Date]', bytes: '[object Uint8Array]', big: '[object String]' })
  })

  it('an SQL error arrives as SqlError with its SQLSTATE, never with the statement or parameters', async () => {
    const { error } = await post('/query', { text: 'select $1::text as canary, 1/0 as boom', params: ['param-canary'] })
    expect(error).toMatchObject({ name: 'SqlError', code: '22012', isSqlError: true, isWarmconnError: false, message: 'division by zero' })
    expect(error.ownKeys).not.toContain('query')
    expect(error.ownKeys).not.toContain('parameters')
    expect(JSON.stringify(error)).not.toMatch(/param-canary|select \$1/)
  })

  it("warmconn's own errors arrive as their class, e.g. AuthError for a wrong password, without any password", async () => {
    const { error } = await post('/query', { binding: 'WRONG_PASSWORD', text: 'select 1' })
    expect(error).toMatchObject({
      name: 'AuthError',
      constructorName: 'AuthError',
      code: 'WARMCONN_AUTH_FAILED',
      sqlState: '28P01',
      isWarmconnError: true,
    })
    expect(JSON.stringify(error)).not.toContain(WRONG_PASSWORD)
    expect(JSON.stringify(error)).not.toContain(pg.password)
    expect(w.output()).not.toContain(WRONG_PASSWORD)
  })

  it('a query past its timeoutMs arrives as CallTimeoutError, and the object answers the next one on a new connection', async () => {
    const { error } = await post('/query', { text: 'select pg_sleep(2)', options: { timeoutMs: 200 } })
    expect(error).toMatchObject({ name: 'CallTimeoutError', code: 'WARMCONN_CALL_TIMEOUT', timeoutMs: 200, isWarmconnError: true })
    const next = await post('/query', { text: 'select 1 as one' })
    expect(next.rows).toEqual([{ one: 1 }])
    const bad = await post('/query', { text: 'select 1', options: { timeoutMs: -5 } })
    expect(bad.error).toMatchObject({ name: 'InvalidOptionError', code: 'WARMCONN_INVALID_OPTION', option: 'timeoutMs' })
  })

  it('a batch runs in one transaction: all of it commits, or none of it when a statement fails', async () => {
    const ok = await post('/batch', {
      statements: [
        { text: 'insert into rpc_items (id, note) values ($1, $2)', params: [1, 'one'] },
        { text: 'insert into rpc_items (id, note) values ($1, $2)', params: [2, 'two'] },
        { text: 'select count(*)::int as n from rpc_items' },
      ],
    })
    expect(ok.results.map((r: { command: string; count: number }) => [r.command, r.count])).toEqual([['INSERT', 1], ['INSERT', 1], ['SELECT', 1]])
    const failed = await post('/batch', {
      statements: [
        { text: 'insert into rpc_items (id, note) values ($1, $2)', params: [3, 'three'] },
        { text: 'insert into rpc_items (id, note) values ($1, $2)', params: [1, 'again'] },
      ],
    })
    expect(failed.error).toMatchObject({ name: 'SqlError', code: '23505', constraint: 'rpc_items_pkey' })
    const rows = await pg.admin`select id from rpc_items order by id`
    expect(rows.map((r) => r.id)).toEqual([1, 2])
    // The holder's connection is clean afterwards: the next call is served normally.
    expect(await post('/query', { text: 'select 1 as one' })).toMatchObject({ rows: [{ one: 1 }] })
  })

  it('session state: what one request sets (a query, a batch that commits a SET) is gone for the next, on the same backend', async () => {
    const read = { text: "select current_setting('app.tenant', true) as tenant, current_setting('search_path') as path, pg_backend_pid() as pid" }
    const before = (await post('/query', read)).rows[0]
    const set = await post('/query', { text: "select set_config('app.tenant', 'acme', false), pg_backend_pid() as pid" })
    expect(set.rows[0].pid).toBe(before.pid)
    expect((await post('/query', read)).rows[0]).toMatchObject({ tenant: '', pid: before.pid })
    const batch = await post('/batch', { statements: [{ text: 'set search_path = other' }, { text: "select current_setting('search_path') as path" }] })
    expect(batch.results[1].rows[0].path).toBe('other')
    expect((await post('/query', read)).rows[0]).toMatchObject({ path: before.path, pid: before.pid })
  })

  it('a client kept in module scope serves later and concurrent requests (a new stub per call)', async () => {
    const text = 'select pg_backend_pid() as pid'
    const sequential = [await post('/module-client', { text }), await post('/module-client', { text })]
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => post('/module-client', { text })))
    const pids = new Set([...sequential, ...concurrent].map((r) => r.rows?.[0]?.pid))
    expect(pids.size).toBe(1)
    expect(pids.has(undefined)).toBe(false)
  })

  it('shards: clients spread over N holder objects, each with one connection of its own (location hint accepted)', async () => {
    const pidsByShard = new Map<string, Set<number>>()
    for (let i = 0; i < 40; i++) {
      const res = await post('/query', { shards: 4, locationHint: 'weur', text: 'select pg_backend_pid() as pid' })
      const pids = pidsByShard.get(res.shard) ?? new Set<number>()
      pids.add(res.rows[0].pid)
      pidsByShard.set(res.shard, pids)
    }
    expect([...pidsByShard.keys()].sort()).toEqual(['warmconn-0', 'warmconn-1', 'warmconn-2', 'warmconn-3'])
    for (const pids of pidsByShard.values()) expect(pids.size).toBe(1)
    expect(new Set([...pidsByShard.values()].flatMap((p) => [...p])).size).toBe(4)
  })

  it.each([
    ['text not a string', { text: 42 }, 'text', /expected the statement text as a string, got 42/],
    ['params not an array', { text: 'select $1', params: 'x' }, 'params', /expected the parameters as an array/],
    ['a misspelt query option', { text: 'select 1', options: { idempotant: true } }, 'idempotant', /did you mean idempotent\?/],
    ['a timeoutMs of 0', { text: 'select 1', options: { timeoutMs: 0 } }, 'timeoutMs', /must be at least 1/],
    ['batch not an array', { statements: 'select 1' }, 'statements', /expected an array of \{ text, params\? \}/],
    ['a bad statement in a batch', { statements: [{ text: 'select 1' }, { text: 7 }] }, 'statements[1].text', /as a string/],
    ['a misspelt statement field', { statements: [{ text: 'select $1', values: [1] }] }, 'statements[0].values', /unknown field/],
  ])('the object checks its arguments before any I/O: %s is an InvalidOptionError naming %s', async (_, call, option, message) => {
    // UnreachableHolder would fail any connect with ConnectError; the bad call never gets that far.
    const { reply } = await post('/direct', { binding: 'UNREACHABLE', ...call })
    expect(reply).toMatchObject({ ok: false, error: { kind: 'warmconn', name: 'InvalidOptionError', code: 'WARMCONN_INVALID_OPTION', option } })
    expect(reply.error.message).toMatch(message)
    // The same arguments, made valid, do reach for the database.
    const valid = await post('/direct', { binding: 'UNREACHABLE', text: 'select 1' })
    // workerd reports a port nobody listens on as "Network connection lost." (WORKERD_CONNECTION_LOST).
    expect(valid.reply).toMatchObject({ ok: false, error: { code: 'WARMCONN_CONNECT_FAILED', causeCode: expect.stringMatching(/^WORKERD_|^ECONNREFUSED$/) } })
    expect(valid.reply.error.message).toMatch(/is the server running, is the port right\?/)
  })

  it('the client checks the same arguments before the RPC hop, with the same typed error', async () => {
    const { error } = await post('/query', { binding: 'UNREACHABLE', text: 'select 1', options: { idempotent: 'yes' } })
    expect(error).toMatchObject({ name: 'InvalidOptionError', constructorName: 'InvalidOptionError', isWarmconnError: true, option: 'idempotent' })
  })
})
