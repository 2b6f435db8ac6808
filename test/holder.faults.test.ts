/**
 * Real faults against a real server: terminated backends, a restart, idle_session_timeout, a
 * silent network (blackhole), max_connections, a bad password. Each test checks what the
 * server saw, not only what the library counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy } from './harness/proxy.js'
import { appName, eventually, makeHolder, pidOf, recordEvents, sleep } from './helpers/core.js'
import { AuthError, CallTimeoutError, ConnectError, ConfigRejectedError } from '../src/index.js'

let pg: TestPg
beforeAll(async () => {
  pg = await startPostgres({ maxConnections: 20 })
})
afterAll(async () => {
  await pg?.stop()
})

describe('recovery without failing the call', () => {
  it('a backend terminated while idle: the next call succeeds on a new backend, with one reconnect', async () => {
    const name = appName('kill')
    const holder = makeHolder(pg.url, { applicationName: name })
    const before = await pidOf(holder)
    expect(await pg.terminate({ pid: before })).toBe(1)
    // As between two invocations: the server's goodbye has reached the client before the next call.
    expect(await eventually(async () => holder.stats().closedBroken === 1)).toBe(true)
    const after = await pidOf(holder) // not marked idempotent: nothing is sent on the dead connection
    expect(after).not.toBe(before)
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([after])
    expect(holder.stats()).toMatchObject({ reconnected: 1, failures: 0, replays: 0 })
    await holder.close()
  })

  it('a read racing the kill (sent before the close reached the client) succeeds when marked idempotent', async () => {
    const name = appName('killrace')
    const holder = makeHolder(pg.url, { applicationName: name })
    for (let i = 0; i < 5; i++) {
      const before = await pidOf(holder)
      await pg.terminate({ pid: before })
      const after = await pidOf(holder, { idempotent: true }) // no wait: may hit the dying socket
      expect(after).not.toBe(before)
      expect((await pg.backends(name)).map((b) => b.pid)).toEqual([after])
    }
    expect(holder.stats()).toMatchObject({ reconnected: 5, failures: 0 })
    await holder.close()
  })

  it('a server restart: the next call succeeds on the restarted server', async () => {
    const name = appName('restart')
    const holder = makeHolder(pg.url, { applicationName: name })
    const before = await pidOf(holder)
    await pg.restart()
    const after = await pidOf(holder)
    expect(after).not.toBe(before)
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([after])
    expect(holder.stats().failures).toBe(0)
    await holder.close()
  })

  it('a session ended by idle_session_timeout is replaced before use', async () => {
    const name = appName('idlesession')
    await pg.setIdleSessionTimeout(200)
    try {
      // warmconn's own server idle close would override the server's setting for its session.
      const holder = makeHolder(pg.url, { applicationName: name, serverIdleClose: false })
      const before = await pidOf(holder)
      expect(await eventually(async () => (await pg.backends(name)).length === 0)).toBe(true)
      expect(await eventually(async () => holder.stats().closedBroken === 1)).toBe(true)
      const after = await pidOf(holder)
      expect(after).not.toBe(before)
      expect(holder.stats()).toMatchObject({ failures: 0, reconnected: 1 })
      await holder.close()
    } finally {
      await pg.resetIdleSessionTimeout()
    }
  })

  it('a socket blackholed during an idle gap: the call goes on a new connection after one bounded ping, not after minutes', async () => {
    const proxy = await startProxy({ host: pg.host, port: pg.port })
    try {
      const name = appName('blackhole')
      const holder = makeHolder(pg.urlFor({ port: proxy.port }), { applicationName: name, staleAfterMs: 100, pingTimeoutMs: 300 })
      const events = recordEvents(holder)
      const before = await pidOf(holder)
      proxy.blackhole()
      proxy.heal() // the old connection stays silent (a NAT forgot it); new ones get through
      await sleep(150)
      const started = Date.now()
      const after = await pidOf(holder)
      const elapsed = Date.now() - started
      expect(after).not.toBe(before)
      // A hang detector, not a speed test: the ping bound plus a loopback connect, with wide slack.
      expect(elapsed).toBeLessThan(300 + 5_000)
      expect(events.find((e) => e.event === 'revalidateFail')?.payload).toMatchObject({ timedOut: true })
      expect((await pg.backends(name)).map((b) => b.pid)).toContain(after)
      await holder.close({ timeoutMs: 200 })
      await pg.terminate({ applicationName: name })
    } finally {
      await proxy.close()
    }
  })
})

describe('call deadline', () => {
  it('a transaction cut off at callTimeoutMs commits nothing: the server rolls it back when its statement ends', async () => {
    const name = appName('deadline-tx')
    const holder = makeHolder(pg.url, { applicationName: name, callTimeoutMs: 300 })
    await pg.admin`create table if not exists deadline_rows (note text)`
    const pid = await pidOf(holder)
    const err = await holder.run(async (sql) => {
      await sql`begin`
      await sql`insert into deadline_rows values ('cut off')`
      await sql`select pg_sleep(1.5)`
      await sql`commit`
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CallTimeoutError)
    // The server is not told: the backend finishes its sleep, finds its client gone, and exits
    // without committing (which is why the README asks for statement_timeout as well).
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([pid])
    expect(await eventually(async () => (await pg.backends(name)).length === 0, 5_000)).toBe(true)
    expect((await pg.admin`select count(*)::int as n from deadline_rows`)[0]!.n).toBe(0)
    // The next call gets a new backend.
    expect(await pidOf(holder)).not.toBe(pid)
    await holder.close()
  })
})

describe('connect retries', () => {
  it('too many connections (53300): backs off and succeeds once a slot frees up', async () => {
    const name = appName('full')
    const filler = await pg.fillConnections(0)
    const holder = makeHolder(pg.appUrl, { applicationName: name, connectBackoffBaseMs: 50, connectBackoffMaxMs: 200, connectBudgetMs: 10_000, connectRetries: 100 })
    const retries: string[] = []
    holder.on('connectRetry', (e) => retries.push(String(e.code)))
    const pending = pidOf(holder)
    await eventually(async () => retries.length >= 2)
    await filler.release()
    const pid = await pending
    expect(retries.length).toBeGreaterThanOrEqual(2)
    expect(new Set(retries)).toEqual(new Set(['53300']))
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([pid])
    await holder.close()
  })

  it('a bad password fails at once with AuthError after exactly one attempt on the server', async () => {
    const name = appName('badpw')
    const mark = await pg.mark()
    const holder = makeHolder(pg.urlFor({ password: 'definitely-wrong-pw' }), { applicationName: name })
    const err = await holder.run((sql) => sql`select 1`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AuthError)
    expect((err as AuthError).code).toBe('WARMCONN_AUTH_FAILED')
    expect((err as AuthError).sqlState).toBe('28P01')
    expect((err as Error).message).not.toContain('definitely-wrong-pw')
    expect(holder.stats()).toMatchObject({ connectRetries: 0, connectFailures: 1 })
    await pg.flushLog()
    const failures = (await pg.logRecords(mark)).filter((r) => r.severity === 'FATAL' && /password authentication failed/.test(r.message))
    expect(failures).toHaveLength(1)
  })

  it('an unknown database (3D000) fails at once with ConfigRejectedError', async () => {
    const holder = makeHolder(pg.urlFor({ database: 'no_such_db' }))
    const err = await holder.run((sql) => sql`select 1`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigRejectedError)
    expect(holder.stats().connectRetries).toBe(0)
  })

  it('a server that is down: a typed ConnectError within the budget, then success once it is back', async () => {
    const name = appName('down')
    const holder = makeHolder(pg.url, { applicationName: name, connectBudgetMs: 800, connectBackoffBaseMs: 50 })
    await pidOf(holder)
    await pg.stopServer()
    try {
      const started = Date.now()
      const err = await pidOf(holder, { idempotent: true }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ConnectError)
      expect((err as ConnectError).causeCode).toBe('ECONNREFUSED')
      expect(Date.now() - started).toBeLessThan(800 + 5_000)
    } finally {
      await pg.startServer()
    }
    const pid = await pidOf(holder)
    expect((await pg.backends(name)).map((b) => b.pid)).toEqual([pid])
    await holder.close()
  })
})
