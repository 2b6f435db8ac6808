/**
 * The neon driver (@neondatabase/serverless over a WebSocket) against a real PostgreSQL, through a
 * local relay standing in for Neon's proxy. Each test checks what the server saw: backend pids,
 * statements (log_statement = all), committed rows, log lines.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { neonConfig, Pool, type Client } from '@neondatabase/serverless'
import { sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/neon-serverless'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { freePort } from './harness/ports.js'
import { startProxy } from './harness/proxy.js'
import { startRelay, type Relay } from './harness/relay.js'
import { appName, eventually, sleep } from './helpers/core.js'
import { AuthError, ConnectError, ConnectionLostError, Holder, InvalidOptionError, type HolderOptions } from '../src/index.js'
import { neonDriver, warmNeon, warmPool, type NeonConfigOverrides } from '../src/drivers/neon.js'

let pg: TestPg
let relay: Relay
beforeAll(async () => {
  pg = await startPostgres()
  relay = await startRelay()
  await pg.admin`create table ledger (id serial primary key, note text not null)`
})
afterAll(async () => {
  await relay?.close()
  await pg?.stop()
})

function makeHolder(options: HolderOptions = {}, url = pg.url, neon: NeonConfigOverrides = relay.neonConfig()): Holder<Client> {
  return new Holder(neonDriver(url, neon), options)
}

async function pidOf(holder: Holder<Client>): Promise<number> {
  const { rows } = await holder.run((client) => client.query<{ pid: number }>('select pg_backend_pid() as pid'))
  return rows[0]!.pid
}

async function notes(note: string): Promise<number> {
  const [row] = await pg.admin`select count(*)::int as n from ledger where note = ${note}`
  return row!.n as number
}

const isPing = (s: string) => /^select 1$/i.test(s)

describe('reuse over the WebSocket', () => {
  it('serves 50 calls from one backend pid, named by application_name on the server', async () => {
    const name = appName('neon-reuse')
    const holder = makeHolder({ applicationName: name })
    const reported: Array<number | undefined> = []
    holder.on('connectSuccess', (e) => reported.push(e.backendPid))
    const pids = new Set<number>()
    for (let i = 0; i < 50; i++) pids.add(await pidOf(holder))
    expect(pids.size).toBe(1)
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([...pids])
    expect(reported).toEqual([...pids])
    expect(holder.stats()).toMatchObject({ opened: 1, reused: 49, runs: 50, failures: 0 })
    await holder.close()
  })

  it('the hot path sends the server only the caller\'s statements: no ping', async () => {
    const holder = makeHolder({ applicationName: appName('neon-hot'), staleAfterMs: 60_000 })
    const pid = await pidOf(holder)
    const mark = await pg.mark()
    for (let i = 0; i < 20; i++) await holder.run((client) => client.query('select $1::int as i', [i]))
    await holder.run((client) => client.query('select 42 as answer'))
    const seen = await pg.statements({ pid, since: mark })
    // node-postgres sends a call with parameters by the extended protocol (logged as
    // `execute <unnamed>: ...`) and one without by the simple protocol (`statement: ...`).
    expect(seen).toEqual([...Array.from({ length: 20 }, () => 'select $1::int as i'), 'select 42 as answer'])
    expect(seen.filter(isPing)).toHaveLength(0)
    expect(holder.stats().revalidated).toBe(0)
    await holder.close()
  })

  it('a connection idle past staleAfterMs gets exactly one ping, then the call', async () => {
    const holder = makeHolder({ applicationName: appName('neon-stale'), staleAfterMs: 200 })
    const pid = await pidOf(holder)
    await sleep(300)
    const mark = await pg.mark()
    await holder.run((client) => client.query("select 'after idle' as x"))
    await holder.run((client) => client.query("select 'hot again' as x"))
    expect(await pg.statements({ pid, since: mark })).toEqual(['select 1', "select 'after idle' as x", "select 'hot again' as x"])
    expect(holder.stats()).toMatchObject({ revalidated: 1, opened: 1 })
    await holder.close()
  })
})

describe('the pipelined probe (a stale idempotent call)', () => {
  it('goes out in one flight with the call (a bare Sync), and the server logs no statement for it', async () => {
    // Relay -> fault proxy -> PostgreSQL: the proxy counts what neon's Client sends, in flights.
    const proxy = await startProxy({ host: pg.host, port: pg.port }, { latencyMs: 20 })
    try {
      const holder = makeHolder({ applicationName: appName('neon-probe'), staleAfterMs: 100 }, pg.urlFor({ port: proxy.port }))
      const pid = await pidOf(holder)
      await sleep(150)
      const mark = await pg.mark()
      const flights = proxy.flights()
      const { rows } = await holder.run((client) => client.query("select 'probed' as x"), { idempotent: true })
      expect(rows[0].x).toBe('probed')
      expect(proxy.flights() - flights).toBe(1)
      expect(await pg.statements({ pid, since: mark })).toEqual(["select 'probed' as x"])
      expect(holder.stats()).toMatchObject({ revalidated: 1, opened: 1, failures: 0 })
      await holder.close()
    } finally {
      await proxy.close()
    }
  })
})

describe('recovery', () => {
  it('a backend terminated while idle: the next call succeeds on a new backend', async () => {
    const name = appName('neon-kill')
    const holder = makeHolder({ applicationName: name })
    const before = await pidOf(holder)
    expect(await pg.terminate({ pid: before })).toBe(1)
    // The relay runs in this process, so it needs turns of our event loop to pass the server's
    // goodbye on; a remote proxy would already have delivered it while we were busy elsewhere.
    expect(await eventually(async () => relay.connections() === 0)).toBe(true)
    const after = await pidOf(holder) // not idempotent: nothing may be sent on the dead connection
    expect(after).not.toBe(before)
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([after])
    expect(holder.stats()).toMatchObject({ reconnected: 1, failures: 0, replays: 0 })
    await holder.close()
  })

  it('a WebSocket dropped by the proxy while idle: the next call succeeds on a new backend', async () => {
    const holder = makeHolder({ applicationName: appName('neon-drop') })
    const before = await pidOf(holder)
    relay.dropAll()
    expect(await eventually(async () => holder.stats().closedBroken === 1)).toBe(true)
    expect(await pidOf(holder)).not.toBe(before)
    expect(holder.stats()).toMatchObject({ failures: 0, replays: 0 })
    await holder.close()
  })

  it("the server ends an idle session (57P05) before idleTimeoutMs: the driver passes the code on, one warning", async () => {
    const name = appName('neon-ist')
    // sessionReset 'never': the session setting below must outlive the call that makes it.
    const holder = makeHolder({ applicationName: name, sessionReset: 'never' })
    const warnings: Array<{ code: string; message: string }> = []
    holder.on('warning', (w) => warnings.push(w))
    const closes: Array<string | undefined> = []
    holder.on('closeBroken', (e) => closes.push(e.code))
    // Set in the session, so the driver cannot have read it while connecting: only the 57P05 tells.
    await holder.run((client) => client.query('set idle_session_timeout = 300'))
    expect(await eventually(async () => closes.length === 1, 5_000)).toBe(true)
    expect(closes).toEqual(['57P05'])
    expect(warnings).toEqual([{ code: 'WARMCONN_WARN_IDLE_SESSION_TIMEOUT', message: expect.stringMatching(/^The server ended an idle session to .* before idleTimeoutMs \(60000 ms\): its idle_session_timeout is lower/) }])
    expect(await pidOf(holder)).toBeGreaterThan(0) // and the next call simply reconnects
    await holder.close()
  })

  it('a database that refuses behind the proxy is a transient failure: retried, then ConnectError', async () => {
    const holder = makeHolder({ connectRetries: 2, connectBackoffBaseMs: 10 }, pg.urlFor({ port: await freePort() }))
    const err = await holder.run((client) => client.query('select 1')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectError)
    expect(err).toMatchObject({ attempts: 3, causeCode: 'WS_UNREACHABLE' })
  })
})

describe('session hygiene and write safety', () => {
  it('a handler that throws between BEGIN and COMMIT: rolled back, nothing committed, next call clean', async () => {
    const name = appName('neon-tx')
    const holder = makeHolder({ applicationName: name })
    const pid = await pidOf(holder)
    const mark = await pg.mark()
    const boom = new Error('handler failed mid-transaction')
    await expect(holder.run(async (client) => {
      await client.query('begin')
      await client.query('insert into ledger (note) values ($1)', ['half-done'])
      throw boom
    })).rejects.toBe(boom)
    expect((await pg.backends(name)).find((b) => b.pid === pid)).toMatchObject({ state: 'idle', xact_start: null })
    expect(await notes('half-done')).toBe(0)
    expect(await pg.statements({ pid, since: mark })).toEqual(['begin', 'insert into ledger (note) values ($1)', 'rollback'])
    const { rows } = await holder.run((client) => client.query("insert into ledger (note) values ('next') returning pg_backend_pid() as pid"))
    expect(rows[0].pid).toBe(pid)
    expect(await notes('next')).toBe(1)
    expect(holder.stats().sessionResets).toBe(1)
    await holder.close()
  })

  it('a transaction aborted by an SQL error is rolled back; a committed one costs no extra statement', async () => {
    const holder = makeHolder({ applicationName: appName('neon-aborted') })
    const pid = await pidOf(holder)
    const err = await holder.run(async (client) => {
      await client.query('begin')
      await client.query("insert into ledger (note) values ('aborted')")
      await client.query('select 1/0')
    }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: '22012' })
    const mark = await pg.mark()
    await holder.run(async (client) => {
      await client.query('begin')
      await client.query("insert into ledger (note) values ('committed')")
      await client.query('commit')
    })
    expect(await notes('aborted')).toBe(0)
    expect(await notes('committed')).toBe(1)
    expect(await pg.statements({ pid, since: mark })).toEqual(['begin', "insert into ledger (note) values ('committed')", 'commit'])
    expect(holder.stats().sessionResets).toBe(1)
    await holder.close()
  })

  it('a write whose backend dies mid-call is not replayed: ConnectionLostError, written once', async () => {
    const name = appName('neon-lost')
    const holder = makeHolder({ applicationName: name })
    const pid = await pidOf(holder)
    const running = holder.run(async (client) => {
      await client.query("insert into ledger (note) values ('write-once')")
      await client.query('select pg_sleep(5)')
    }).catch((e: unknown) => e)
    // Committed and visible: from here the call is in pg_sleep, or about to be.
    expect(await eventually(async () => (await notes('write-once')) === 1)).toBe(true)
    await pg.terminate({ pid })
    const err = await running
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect(err).toMatchObject({ causeCode: '57P01', outcomeUnknown: true })
    expect(await notes('write-once')).toBe(1)
    expect(holder.stats()).toMatchObject({ replays: 0, failures: 1 })
    await holder.close()
  })

  it('a write whose WebSocket is dropped mid-call is not replayed either', async () => {
    const name = appName('neon-wslost')
    const holder = makeHolder({ applicationName: name })
    await pidOf(holder)
    const running = holder.run(async (client) => {
      await client.query("insert into ledger (note) values ('ws-write-once')")
      await client.query('select pg_sleep(5)')
    }).catch((e: unknown) => e)
    expect(await eventually(async () => (await notes('ws-write-once')) === 1)).toBe(true)
    relay.dropAll()
    const err = await running
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect(err).toMatchObject({ causeCode: 'CONNECTION_CLOSED' })
    expect(await notes('ws-write-once')).toBe(1)
    expect(holder.stats().replays).toBe(0)
    await holder.close()
  })
})

describe('closing and credentials', () => {
  it('closes a connection idle past idleTimeoutMs: no backend and no WebSocket left', async () => {
    const name = appName('neon-idle')
    const holder = makeHolder({ applicationName: name, idleTimeoutMs: 300 })
    await pidOf(holder)
    expect(await pg.backends(name)).toHaveLength(1)
    expect(await eventually(async () => (await pg.backends(name)).length === 0 && relay.connections() === 0)).toBe(true)
    expect(holder.stats()).toMatchObject({ closedIdle: 1, open: 0 })
  })

  it('a bad password is an AuthError after exactly one attempt, without the password in it', async () => {
    const password = 'not-the-password-x9'
    const holder = makeHolder({}, pg.urlFor({ user: 'app', password }))
    const mark = await pg.mark()
    const err = await holder.run((client) => client.query('select 1')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AuthError)
    expect(err).toMatchObject({ sqlState: '28P01' })
    const failures = (await pg.logRecords(mark)).filter((r) => r.severity === 'FATAL' && r.message.includes('password authentication failed'))
    expect(failures).toHaveLength(1)
    expect(holder.stats()).toMatchObject({ connectRetries: 0, connectFailures: 1 })
    const error = err as AuthError
    expect(`${error.message}\n${error.stack}\n${String((error.cause as Error).message)}`).not.toContain(password)
  })
})

describe('warmPool over neon', () => {
  it("is a neon Pool to Drizzle's neon driver: queries on one backend, a throwing transaction commits nothing", async () => {
    const name = appName('neon-pool')
    const pool = warmPool(pg.url, { applicationName: name, neon: relay.neonConfig() })
    expect(pool).toBeInstanceOf(Pool)
    expect(warmPool(pg.url, { applicationName: name, neon: relay.neonConfig() })).toBe(pool)
    const db = drizzle(pool)
    const pids = new Set<number>()
    for (let i = 0; i < 20; i++) pids.add(Number((await db.execute<{ pid: number }>(sql`select pg_backend_pid() as pid`)).rows[0]!.pid))
    expect([...pids]).toEqual((await pg.backends(name)).map((b) => b.pid))
    await expect(db.transaction(async (tx) => {
      await tx.execute(sql`insert into ledger (note) values ('neon-pool-tx')`)
      throw new Error('handler failed inside the transaction')
    })).rejects.toThrow('handler failed')
    expect(await notes('neon-pool-tx')).toBe(0)
    expect((await pg.backends(name)).map((b) => b.state)).toEqual(['idle'])
    expect(pool.holder.stats()).toMatchObject({ opened: 1, failures: 0 })
    expect(() => warmPool(pg.url, { max: 2, maxConnections: 3, neon: relay.neonConfig() })).toThrow(/maxConnections/)
    // pg.Pool's config as written: connection fields and a password outside the URL.
    const parsed = new URL(pg.url)
    const fromFields = warmPool({ host: parsed.hostname, port: Number(parsed.port), user: 'postgres', database: 'postgres', password: pg.password, max: 2, application_name: `${name}-fields`, neon: relay.neonConfig() })
    expect(fromFields.options.max).toBe(2)
    expect((await fromFields.query('select current_user as u')).rows).toEqual([{ u: 'postgres' }])
    await fromFields.end()
    await pool.end()
    expect(await pg.backends(name)).toEqual([])
  })
})

describe('neon settings are per holder', () => {
  it('two holders on two proxies with other settings each use their own; the global neonConfig is untouched', async () => {
    const globalBefore = { ...neonConfig.opts }
    const other = await startRelay()
    try {
      const a = makeHolder({ applicationName: appName('neon-a') }, pg.url, { ...relay.neonConfig(), coalesceWrites: false })
      const b = makeHolder({ applicationName: appName('neon-b') }, pg.url, other.neonConfig())
      const seen = await Promise.all([a, b].map((h) => h.run((client) => client.neonConfig.coalesceWrites)))
      expect(seen).toEqual([false, true])
      expect([relay.connections(), other.connections()]).toEqual([1, 1])
      await Promise.all([a.close(), b.close()])
    } finally {
      await other.close()
    }
    expect(neonConfig.opts).toEqual(globalBefore)
    // Nothing leaked into the global config: where the runtime has no WebSocket of its own (Node 20;
    // Node 22 and later have a global one), a driver without settings still has none.
    if (typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'undefined') expect(() => neonDriver(pg.url)).toThrow(InvalidOptionError)
  })

  it('warmNeon shares a holder only between equal settings: a wsProxy closure counts by its address', async () => {
    const other = await startRelay()
    try {
      const applicationName = appName('neon-key')
      const mine = warmNeon(pg.url, { applicationName, neon: relay.neonConfig() })
      // neonConfig() builds a new wsProxy function each time: same address, so the same holder.
      expect(warmNeon(pg.url, { applicationName, neon: relay.neonConfig() })).toBe(mine)
      // Same source text, another port: another holder, another connection.
      const theirs = warmNeon(pg.url, { applicationName, neon: other.neonConfig() })
      expect(theirs).not.toBe(mine)
      await Promise.all([pidOf(mine), pidOf(theirs)])
      expect([relay.connections(), other.connections()]).toEqual([1, 1])
      await Promise.all([mine.close(), theirs.close()])
    } finally {
      await other.close()
    }
  })

  it('rejects unknown and global-only neon settings by name', () => {
    expect(() => neonDriver(pg.url, { fetchEndpoint: 'x' } as NeonConfigOverrides)).toThrow(/neon\.fetchEndpoint/)
    expect(() => warmNeon(pg.url, { neon: relay.neonConfig(), idleTimeout: 1 } as HolderOptions)).toThrow(/idleTimeout/)
  })
})

describe('classification of what a WebSocket reports', () => {
  // A WebSocket 'error' reaches callers as the Event itself; `ws` adds the socket error on `.error`.
  it.each([
    [{ type: 'error', error: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) }, 'connection', 'ECONNRESET'],
    [{ type: 'error', message: 'platform WebSocket error' }, 'connection', 'WS_ERROR'],
    [new Error('Connection terminated unexpectedly'), 'connection', 'CONNECTION_CLOSED'],
    [new Error('Client has encountered a connection error and is not queryable'), 'connection', 'CONNECTION_CLOSED'],
    [new Error('my handler failed'), 'query', undefined],
  ])('%o is %s (%s), never safe to replay', (err, kind, code) => {
    expect(neonDriver(pg.url, relay.neonConfig()).classify(err)).toEqual({ kind, code, notSent: false })
  })
})

describe('pipelineConnect (neon\'s default, cleartext password auth)', () => {
  let cleartext: TestPg
  let hbaDir: string
  beforeAll(async () => {
    // pipelineConnect sends the password before the server asks for it, which only cleartext
    // `password` authentication accepts; the shared server uses scram-sha-256.
    hbaDir = mkdtempSync(join(tmpdir(), 'warmconn-hba-'))
    chmodSync(hbaDir, 0o755)
    writeFileSync(join(hbaDir, 'pg_hba.conf'), 'host all all 127.0.0.1/32 password\n', { mode: 0o644 })
    cleartext = await startPostgres({ settings: { hba_file: join(hbaDir, 'pg_hba.conf') } })
  })
  afterAll(async () => {
    await cleartext?.stop()
    rmSync(hbaDir, { recursive: true, force: true })
  })

  it('connects and reuses with the startup pipelined', async () => {
    const name = appName('neon-pipe')
    const holder = makeHolder({ applicationName: name }, cleartext.url, { ...relay.neonConfig(), pipelineConnect: 'password' })
    const first = await pidOf(holder)
    expect(await pidOf(holder)).toBe(first)
    expect((await cleartext.backends(name)).map((b) => b.pid)).toEqual([first])
    await holder.close()
  })

  it('a bad password still fails the connect as an AuthError, not the caller\'s first query', async () => {
    const holder = makeHolder({}, cleartext.urlFor({ user: 'app', password: 'wrong' }), { ...relay.neonConfig(), pipelineConnect: 'password' })
    const err = await holder.run((client) => client.query('select 1')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AuthError)
    expect(holder.stats()).toMatchObject({ opened: 0, connectFailures: 1, replays: 0 })
  })
})
