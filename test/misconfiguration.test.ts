/**
 * Every way a user can set warmconn up wrong gets one clear message, at construction or the first
 * time it matters, against a real PostgreSQL: a bad call argument fails before any I/O, each
 * connect failure is worded for what happened, and what can only be seen at run time (the
 * server's idle_session_timeout below idleTimeoutMs) is one warning per holder, never a round trip.
 * The environment overrides and the contradictions refused at construction are in options.test.ts;
 * 26000 behind a pooler in pgbouncer.test.ts; the neon driver's 57P05 in neon.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { freePort } from './harness/ports.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { appName, eventually, makeHolder, pidOf } from './helpers/core.js'
import {
  AuthError,
  ConfigRejectedError,
  ConnectError,
  HostNotFoundError,
  InvalidOptionError,
  TlsError,
  type HolderEventName,
  type HolderEvents,
  Holder,
} from '../src/index.js'
import { pgDriver } from '../src/drivers/pg.js'
import type { Sql } from '../src/drivers/postgres.js'

let pg: TestPg
const holders: Holder<Sql>[] = []

beforeAll(async () => {
  pg = await startPostgres()
})
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.close({ timeoutMs: 500 })))
})
afterAll(async () => {
  await pg?.stop()
})

function holder(url: string, options: Parameters<typeof makeHolder>[1] = {}): Holder<Sql> {
  const h = makeHolder(url, options)
  holders.push(h)
  return h
}

async function failure(run: () => Promise<unknown>): Promise<Error> {
  try {
    await run()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a failure')
}

/** Every event of `h`, by name, so a test can show that nothing (no connect) happened. */
function events(h: Holder<Sql>): Array<{ event: HolderEventName; payload: unknown }> {
  const seen: Array<{ event: HolderEventName; payload: unknown }> = []
  const names: HolderEventName[] = ['connectSuccess', 'connectRetry', 'connectFail', 'closeBroken', 'closeIdle', 'warning']
  for (const event of names) h.on(event, (payload: HolderEvents[typeof event]) => seen.push({ event, payload }))
  return seen
}

const select = (sql: Sql) => sql`select 1 as one`

describe('run() validates its arguments before any I/O', () => {
  it.each([
    ['a number for fn', 'fn', [42], /run\(\) expects a function that receives the client, got 42/],
    ['no fn', 'fn', [], /got undefined/],
    ['SQL text for fn', 'fn', ['select 1'], /got a string/],
    ['options that are not an object', 'options', [select, 'idempotent'], /expected an object/],
    ['null options', 'options', [select, null], /got null/],
    ['a misspelt option', 'idempotant', [select, { idempotant: true }], /did you mean idempotent\?/],
    ['idempotent that is not a boolean', 'idempotent', [select, { idempotent: 'yes' }], /expected true or false, got a string/],
    ['a timeoutMs of 0', 'timeoutMs', [select, { timeoutMs: 0 }], /must be at least 1/],
    ['a timeoutMs with a unit', 'timeoutMs', [select, { timeoutMs: '5s' }], /finite number of milliseconds/],
  ])('%s: InvalidOptionError naming %s, and no connect attempt to an unreachable server', async (_, option, args, message) => {
    // Nothing listens on this port: any connect would retry for connectBudgetMs (6 s), then fail as ConnectError.
    const h = holder(pg.urlFor({ port: await freePort() }))
    const seen = events(h)
    const err = await failure(() => (h.run as (...a: unknown[]) => Promise<unknown>)(...args))
    expect(err).toBeInstanceOf(InvalidOptionError)
    expect((err as InvalidOptionError).option).toBe(option)
    expect(err.message).toMatch(message)
    expect(seen).toEqual([])
    expect(h.stats()).toMatchObject({ opened: 0, connectRetries: 0, connectFailures: 0, runs: 0 })
  })

  it('against the real server: a bad call opens no backend and sends nothing; the next good call works', async () => {
    const name = appName('bad-args')
    const h = holder(pg.url, { applicationName: name })
    const mark = await pg.mark()
    await expect((h.run as (fn: unknown) => Promise<unknown>)(42)).rejects.toBeInstanceOf(InvalidOptionError)
    expect(await pg.backends(name)).toEqual([])
    expect(await pg.statements({ applicationName: name, since: mark })).toEqual([])
    expect(await h.run(select)).toEqual([{ one: 1 }])
  })
})

describe('a failed connect says what happened', () => {
  let tlsless: FaultProxy
  beforeAll(async () => {
    // 127.0.0.2 is not a local host name to warmconn, so it asks for verified TLS, which this server does not offer.
    tlsless = await startProxy({ host: pg.host, port: pg.port }, { host: '127.0.0.2' })
  })
  afterAll(async () => {
    await tlsless?.close()
  })

  it('a host name that does not resolve: HostNotFoundError (code unchanged), "no server was reached", not retried', async () => {
    const h = holder('postgres://app:dns-canary-pw@no-such-host.invalid:5432/shop')
    const seen = events(h)
    const err = await failure(() => h.run(select))
    expect(err).toBeInstanceOf(HostNotFoundError)
    expect(err).toBeInstanceOf(ConfigRejectedError)
    expect(err).toMatchObject({ code: 'WARMCONN_CONFIG_REJECTED', sqlState: 'ENOTFOUND', name: 'HostNotFoundError' })
    expect(err.message).toMatch(/app@no-such-host\.invalid:5432\/shop \(postgres\) does not resolve \(DNS lookup failed, ENOTFOUND\): no server was reached/)
    expect(err.message).not.toContain('dns-canary-pw')
    expect(seen.filter((e) => e.event === 'connectRetry')).toEqual([])
  })

  it('a port nobody listens on: ConnectError, "the connection was refused", after the retries', async () => {
    const port = await freePort()
    const h = holder(pg.urlFor({ port }), { connectBudgetMs: 600, connectBackoffBaseMs: 20, connectBackoffMaxMs: 50 })
    const err = await failure(() => h.run(select))
    expect(err).toBeInstanceOf(ConnectError)
    expect(err).toMatchObject({ code: 'WARMCONN_CONNECT_FAILED', causeCode: 'ECONNREFUSED' })
    expect(err.message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}/postgres \\(postgres\\) after \\d+ attempt\\(s\\), .*: the connection was refused: nothing accepts connections at that host and port`))
    expect((err as ConnectError).attempts).toBeGreaterThan(1)
  })

  it('a wrong password: AuthError worded as refused credentials, one attempt on the server, no password', async () => {
    const mark = await pg.mark()
    const err = await failure(() => holder(pg.urlFor({ user: 'app', password: 'wrong-canary-pw' })).run(select))
    expect(err).toBeInstanceOf(AuthError)
    expect(err).toMatchObject({ code: 'WARMCONN_AUTH_FAILED', sqlState: '28P01' })
    expect(err.message).toMatch(/^Authentication failed for app@127\.0\.0\.1:\d+\/postgres \(postgres\): the server refused these credentials \(28P01; not retried/)
    expect(err.message).not.toContain('wrong-canary-pw')
    const refusals = (await pg.logRecords(mark)).filter((r) => /password authentication failed for user "app"/.test(r.message))
    expect(refusals).toHaveLength(1)
  })

  it('a database that does not exist: ConfigRejectedError worded as the server rejecting the settings', async () => {
    const err = await failure(() => holder(pg.urlFor({ database: 'no_such_db' })).run(select))
    expect(err.constructor).toBe(ConfigRejectedError)
    expect(err).toMatchObject({ code: 'WARMCONN_CONFIG_REJECTED', sqlState: '3D000' })
    expect(err.message).toMatch(/^The server at .*\/no_such_db \(postgres\) rejected the connection settings \(3D000; not retried\): database "no_such_db" does not exist/)
  })

  it('TLS asked for (a host that is not local) from a server without it: TlsError naming sslmode, not retried', async () => {
    const u = new URL(pg.url)
    u.hostname = '127.0.0.2'
    u.port = String(tlsless.port)
    const h = holder(u.href)
    const seen = events(h)
    const err = await failure(() => h.run(select))
    expect(err).toBeInstanceOf(TlsError)
    expect(err).toMatchObject({ code: 'WARMCONN_CONFIG_REJECTED', sqlState: 'TLS_REFUSED' })
    expect(err.message).toMatch(/TLS failed for .*: the server does not offer TLS, and TLS was asked for .* add \?sslmode=disable on a network you trust/)
    expect(seen.filter((e) => e.event === 'connectRetry')).toEqual([])
  })
})

describe("the server's idle_session_timeout below idleTimeoutMs", () => {
  afterEach(async () => {
    await pg.resetIdleSessionTimeout()
    vi.restoreAllMocks()
  })

  it('by default it cannot bite: warmconn sets its own, a little above idleTimeoutMs, for its session', async () => {
    await pg.setIdleSessionTimeout(300)
    const name = appName('ist-override')
    const h = holder(pg.url, { applicationName: name, idleTimeoutMs: 5_000 })
    const [row] = await h.run((sql) => sql`select current_setting('idle_session_timeout') as s, pg_backend_pid() as pid`)
    expect(row!.s).toBe('6s') // idleTimeoutMs + max(1 s, 10%)
    await new Promise((r) => setTimeout(r, 800)) // past the server's 300 ms
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([Number(row!.pid)])
  })

  /** A node-postgres holder (it reports the server's 57P05) without warmconn's own setting. */
  function pgHolder(name: string) {
    const h = new Holder(pgDriver(pg.url), { applicationName: name, serverIdleClose: false })
    holders.push(h as unknown as Holder<Sql>)
    return h
  }

  it('with serverIdleClose off, the server ends idle sessions first: one warning event naming both settings, however often', async () => {
    await pg.setIdleSessionTimeout(300)
    const name = appName('ist-warn')
    const h = pgHolder(name) // idleTimeoutMs: the 60 s default
    const warnings: Array<HolderEvents['warning']> = []
    h.on('warning', (w) => warnings.push(w))
    const closes: unknown[] = []
    h.on('closeBroken', (e) => closes.push(e))
    const mark = await pg.mark()
    for (let i = 1; i <= 2; i++) {
      await h.run((c) => c.query('select 1'))
      expect(await eventually(async () => closes.length === i, 5_000)).toBe(true)
    }
    // The server saw it: it ended both sessions itself.
    const ended = (await pg.logRecords(mark)).filter((r) => r.applicationName === name && /idle-session timeout/.test(r.message))
    expect(ended).toHaveLength(2)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.code).toBe('WARMCONN_WARN_IDLE_SESSION_TIMEOUT')
    expect(warnings[0]!.message).toMatch(/idle session to .* after \d+ ms, before idleTimeoutMs \(60000 ms\): its idle_session_timeout is lower/)
    expect(warnings[0]!.message).toMatch(/Set idleTimeoutMs \(WARMCONN_IDLE_TIMEOUT_MS\) below the server's idle_session_timeout/)
    expect(JSON.stringify(warnings)).not.toContain(pg.password)
  })

  it('with nobody listening for "warning": exactly one console.warn, without the password', async () => {
    await pg.setIdleSessionTimeout(300)
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const h = pgHolder(appName('ist-console'))
    let closes = 0
    h.on('closeBroken', () => closes++)
    for (let i = 1; i <= 2; i++) {
      await h.run((c) => c.query('select 1'))
      expect(await eventually(async () => closes === i, 5_000)).toBe(true)
    }
    const ours = warn.mock.calls.filter((args) => String(args[0]).includes('WARMCONN_WARN_'))
    expect(ours).toHaveLength(1)
    expect(String(ours[0]![0])).toMatch(/^warmconn: The server ended an idle session .*\[WARMCONN_WARN_IDLE_SESSION_TIMEOUT\]$/)
    expect(String(ours[0]![0])).not.toContain(pg.password)
  })

  it('idleTimeoutMs below the server setting: warmconn closes first, no warning', async () => {
    await pg.setIdleSessionTimeout(1_500)
    const h = holder(pg.url, { applicationName: appName('ist-fine'), idleTimeoutMs: 300 })
    const seen = events(h)
    await pidOf(h)
    expect(await eventually(async () => seen.some((e) => e.event === 'closeIdle'), 5_000)).toBe(true)
    await new Promise((r) => setTimeout(r, 1_700)) // past the server's timeout too
    expect(seen.map((e) => e.event)).toEqual(['connectSuccess', 'closeIdle'])
  })

  it('a backend terminated by an administrator (57P01): no warning', async () => {
    const name = appName('ist-killed')
    const h = pgHolder(name)
    const warnings: unknown[] = []
    h.on('warning', (w) => warnings.push(w))
    let closes = 0
    h.on('closeBroken', () => closes++)
    await h.run((c) => c.query('select 1'))
    expect(await pg.terminate({ applicationName: name })).toBe(1)
    expect(await eventually(async () => closes === 1, 5_000)).toBe(true)
    expect(warnings).toEqual([])
  })
})

describe('none of the checks costs a round trip on the hot path', () => {
  it('50 warm calls with a warning listener and the server setting read: the server sees exactly the 50 statements', async () => {
    await pg.setIdleSessionTimeout(60_000)
    try {
      const name = appName('hot-path')
      const h = holder(pg.url, { applicationName: name })
      const seen = events(h)
      await h.run((sql) => sql`select ${0}::int as n`)
      const mark = await pg.mark()
      for (let i = 1; i <= 50; i++) await h.run((sql) => sql`select ${i}::int as n`, { idempotent: true, timeoutMs: 5_000 })
      expect(await pg.statements({ applicationName: name, since: mark })).toEqual(Array(50).fill('select $1::int as n'))
      expect(seen.map((e) => e.event)).toEqual(['connectSuccess'])
      expect(h.stats()).toMatchObject({ opened: 1, runs: 51, reused: 50 })
    } finally {
      await pg.resetIdleSessionTimeout()
    }
  })

  it('a new connection sends nothing of its own before the caller\'s statement: no check costs a round trip at connect', async () => {
    const name = appName('connect-query')
    const mark = await pg.mark()
    await holder(pg.url, { applicationName: name }).run(select)
    const sent = (await pg.statements({ applicationName: name, since: mark })).filter((s) => !s.includes('typarray'))
    expect(sent).toEqual(['select 1 as one'])
  })
})
