// Proves the test harness itself against a real server: every helper other tests lean on.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import postgres, { type Options, type Sql } from 'postgres'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'

const MAX_CONNECTIONS = 10
// With DATABASE_URL the harness wraps a server it does not control: no restarts, no statement log,
// and appUrl is the same (maybe superuser) role.
const embeddedOnly = it.skipIf(Boolean(process.env.DATABASE_URL))

let pg: TestPg
let proxy: FaultProxy
const clients: Sql[] = []

/** A one-connection postgres.js client, ended after each test. */
function client(url: string, applicationName: string, options: Options<{}> = {}): Sql {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: applicationName }, ...options })
  clients.push(sql)
  return sql
}

/** Settles with 'timeout' if the promise has not settled within ms. */
function within<T>(promise: PromiseLike<T>, ms: number): Promise<T | 'timeout'> {
  const settled = Promise.resolve(promise)
  settled.catch(() => {}) // it may reject after the race is decided (when the client is ended)
  return Promise.race([settled, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms))])
}

async function errorOf(promise: PromiseLike<unknown>): Promise<{ code?: string }> {
  try {
    await promise
  } catch (error) {
    return error as { code?: string }
  }
  throw new Error('expected a rejection')
}

beforeAll(async () => {
  pg = await startPostgres({ maxConnections: MAX_CONNECTIONS })
  proxy = await startProxy({ host: pg.host, port: pg.port })
})

afterEach(async () => {
  await Promise.all(clients.splice(0).map((sql) => sql.end({ timeout: 0 })))
  proxy.heal()
  proxy.setLatencyMs(0)
})

afterAll(async () => {
  await proxy?.close()
  await pg?.stop()
})

describe('startPostgres', () => {
  it('serves queries through the proxy and lists the backend by application_name', async () => {
    const sql = client(pg.urlFor({ port: proxy.port }), 'harness-backends')
    const [row] = await sql<[{ pid: number }]>`select pg_backend_pid() as pid`
    expect(proxy.connections()).toBe(1)
    const backends = await pg.backends('harness-backends')
    expect(backends.map((b) => b.pid)).toEqual([row?.pid])
    expect(backends[0]).toMatchObject({ state: 'idle', application_name: 'harness-backends', xact_start: null, backend_xid: null })
  })

  embeddedOnly('terminate() kills a backend mid-query and the client sees the connection close', async () => {
    const sql = client(pg.url, 'harness-terminate')
    const [row] = await sql<[{ pid: number }]>`select pg_backend_pid() as pid`
    const sleeping = errorOf(sql`select pg_sleep(30)`)
    await expect.poll(async () => (await pg.backends('harness-terminate'))[0]?.state).toBe('active')
    const mark = await pg.mark()
    expect(await pg.terminate({ applicationName: 'harness-terminate' })).toBe(1)
    // The server sends FATAL 57P01, but postgres.js 3.4.9 holds an in-query error until
    // ReadyForQuery, which never comes, so the caller only sees the socket close.
    expect((await sleeping).code).toBe('CONNECTION_CLOSED')
    const fatal = (await pg.logRecords(mark)).filter((r) => r.pid === row?.pid && r.severity === 'FATAL')
    expect(fatal.map((r) => r.message)).toEqual(['terminating connection due to administrator command'])
    expect(await pg.backends('harness-terminate')).toEqual([])
  })

  embeddedOnly('statements() returns what a pid ran, after a mark', async () => {
    const sql = client(pg.url, 'harness-statements')
    const [row] = await sql<[{ pid: number }]>`select pg_backend_pid() as pid`
    const mark = await pg.mark()
    await sql`select 1`
    await sql`select ${2}::int`
    await sql.unsafe('select 1')
    await sql`select
      'two lines'`
    expect(await pg.statements({ pid: row?.pid, since: mark })).toEqual(['select 1', 'select $1::int', 'select 1', "select\n      'two lines'"])
    expect(await pg.statements({ applicationName: 'harness-statements', since: mark })).toHaveLength(4)

    // Unnamed statements (prepare: false, as through a transaction pooler) parse the same way.
    await client(pg.url, 'harness-unprepared', { prepare: false })`select 1`
    expect(await pg.statements({ applicationName: 'harness-unprepared', since: mark })).toContain('select 1')
  })

  embeddedOnly('keeps the app role password out of the server log', async () => {
    const records = await pg.logRecords()
    expect(records.length).toBeGreaterThan(0)
    expect(records.filter((r) => r.message.includes(pg.password))).toEqual([])
  })

  embeddedOnly('restart() and stopServer()/startServer() bring the same server back and the admin reconnects', async () => {
    const sql = client(pg.url, 'harness-restart')
    await sql`create table if not exists survives_restart (id int)`
    await pg.restart()
    const [row] = await pg.admin<[{ n: number }]>`select count(*)::int as n from survives_restart`
    expect(row?.n).toBe(0)

    await pg.stopServer()
    expect((await errorOf(client(pg.url, 'harness-down')`select 1`)).code).toBe('ECONNREFUSED')
    await pg.startServer()
    expect(await pg.admin`select 1`).toHaveLength(1)
  })

  it('setIdleSessionTimeout() makes the server close idle sessions', async () => {
    await pg.setIdleSessionTimeout(200)
    try {
      const sql = client(pg.url, 'harness-idle')
      await sql`select 1`
      expect(await pg.backends('harness-idle')).toHaveLength(1)
      await expect.poll(() => pg.backends('harness-idle'), { timeout: 3_000 }).toEqual([])
    } finally {
      await pg.resetIdleSessionTimeout()
    }
  })

  embeddedOnly('fillConnections(n) leaves exactly n slots for a non-superuser', async () => {
    const filler = await pg.fillConnections(2)
    try {
      const first = client(pg.appUrl, 'harness-fill')
      const second = client(pg.appUrl, 'harness-fill')
      await Promise.all([first`select 1`, second`select 1`])
      expect((await errorOf(client(pg.appUrl, 'harness-fill')`select 1`)).code).toBe('53300')
    } finally {
      await filler.release()
    }
    expect(await pg.backends('warmconn-test-filler')).toEqual([])
  })
})

describe('startProxy', () => {
  it('blackhole() hangs existing and new connections; heal() lets new ones through', async () => {
    const url = pg.urlFor({ port: proxy.port })
    const warm = client(url, 'harness-blackhole')
    await warm`select 1`
    proxy.blackhole()
    expect(await within(warm`select 1`, 500)).toBe('timeout')
    expect(await within(client(url, 'harness-blackhole-new')`select 1`, 500)).toBe('timeout')

    proxy.heal()
    expect(await within(client(url, 'harness-healed')`select 1 as ok`, 2_000)).toEqual([{ ok: 1 }])
    // The silenced connection stays open on both ends, as behind a NAT that forgot it.
    expect(await within(warm`select 1`, 300)).toBe('timeout')
    expect(await pg.backends('harness-blackhole')).toHaveLength(1)
  })

  it('resetAll() makes a client see ECONNRESET', async () => {
    const sql = client(pg.urlFor({ port: proxy.port }), 'harness-reset')
    await sql`select 1`
    const sleeping = errorOf(sql`select pg_sleep(30)`)
    await expect.poll(async () => (await pg.backends('harness-reset'))[0]?.state).toBe('active')
    proxy.resetAll()
    expect((await sleeping).code).toBe('ECONNRESET')
  })

  it('setLatencyMs() adds round-trip delay', async () => {
    const sql = client(pg.urlFor({ port: proxy.port }), 'harness-latency')
    await sql`select 1`
    proxy.setLatencyMs(100)
    const started = performance.now()
    await sql`select 1`
    expect(performance.now() - started).toBeGreaterThan(80)
  })
})
