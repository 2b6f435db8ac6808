/**
 * The driver-conformance suite: the lifecycle guarantees every driver must keep, run against a
 * real PostgreSQL (directly, or through a pooler). A new driver is one `ConformanceTarget` plus
 * one line in conformance.test.ts. Assertions read the server (pids, pg_stat_activity, logged
 * statements, committed rows) where the path allows it, and the client's socket (the fault
 * proxy's live connections) where a pooler hides the backend.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Holder, HolderOptions } from '../../src/index.js'
import { AuthError, CallTimeoutError, ConnectionLostError } from '../../src/index.js'
import type { TestPg } from '../harness/pg.js'
import { startProxy, type FaultProxy } from '../harness/proxy.js'
import { appName, eventually, sleep } from '../helpers/core.js'
import { READER_ROLE, sessionConformance } from './session.js'

export type Row = Record<string, unknown>

export interface ConformanceTarget {
  /** e.g. `postgres.js direct`. */
  name: string
  /** The database every URL points at (so `pg.backends()` and row counts are on the right server). */
  pg: () => TestPg
  /** Where the driver should connect: host and port of PostgreSQL or of the pooler in front of it. */
  upstream: () => { host: string; port: number }
  /** A URL for the driver, pointing at `port` (the fault proxy), with `password` if given. */
  url: (port: number, password?: string) => string
  holder: (url: string, options: HolderOptions) => Holder<unknown>
  exec: (client: unknown, text: string, params?: unknown[]) => Promise<Row[]>
  /** The backend pid stays the same for a client connection (false behind a transaction pooler). */
  stableBackend: boolean
  /** What the driver sends as its revalidation ping, as the server logs it. */
  ping: string
}

export function conformance(t: ConformanceTarget): void {
  describe(`driver conformance: ${t.name}`, () => {
    let proxy: FaultProxy
    const holders: Array<Holder<unknown>> = []
    const pg = () => t.pg()
    beforeAll(async () => {
      proxy = await startProxy(t.upstream())
      await pg().admin.unsafe('create table if not exists conformance_ledger (id serial primary key, note text not null)')
      // Poolers connect as the non-superuser role `app`.
      await pg().admin.unsafe('grant all on table conformance_ledger to public; grant all on sequence conformance_ledger_id_seq to public')
      // A role to SET ROLE to (session.ts); every target's user may become it.
      await pg().admin.unsafe(`do $$ begin create role ${READER_ROLE}; exception when duplicate_object then null; end $$`)
      await pg().admin.unsafe(`grant ${READER_ROLE} to app`)
    })
    afterAll(async () => {
      await Promise.all(holders.map((h) => h.close({ timeoutMs: 500 })))
      await proxy?.close()
    })

    function make(options: HolderOptions = {}, password?: string) {
      const name = appName(t.name.replace(/\W+/g, '-'))
      const holder = t.holder(t.url(proxy.port, password), { applicationName: name, ...options })
      holders.push(holder)
      const run = (text: string, params?: unknown[], opts?: { idempotent?: boolean }) => holder.run((c) => t.exec(c, text, params), opts)
      const pid = async (opts?: { idempotent?: boolean }) => Number((await run('select pg_backend_pid() as pid', [], opts))[0]!.pid)
      return { holder, name, run, pid }
    }
    const notes = async (note: string) => Number((await pg().admin`select count(*)::int as n from conformance_ledger where note = ${note}`)[0]!.n)
    const pings = (statements: string[]) => statements.filter((s) => s.trim().toLowerCase() === t.ping).length

    it('reuse: 50 calls over one client connection (and one backend where the path shows it)', async () => {
      const { holder, name, pid } = make()
      const pids = new Set<number>()
      for (let i = 0; i < 50; i++) pids.add(await pid())
      expect(holder.stats()).toMatchObject({ opened: 1, reused: 49, failures: 0 })
      expect(proxy.connections()).toBe(1)
      if (t.stableBackend) {
        expect(pids.size).toBe(1)
        expect((await pg().backends(name)).map((b) => b.pid)).toEqual([...pids])
      }
    })

    it('no ping on the hot path; exactly one after staleAfterMs', async () => {
      const { name, run } = make({ staleAfterMs: 250 })
      await run('select 1 as warm')
      const mark = await pg().mark()
      for (let i = 0; i < 10; i++) await run('select $1::int as i', [i])
      expect(pings(await pg().statements({ applicationName: name, since: mark }))).toBe(0)
      await sleep(350)
      const stale = await pg().mark()
      await run('select 2 as after_idle')
      expect(pings(await pg().statements({ applicationName: name, since: stale }))).toBe(1)
    })

    it('kill recovery: a backend terminated while idle does not fail the next call', async () => {
      const { holder, name, pid } = make()
      await pid()
      await pg().terminate({ applicationName: name })
      const after = await pid({ idempotent: true })
      expect(Number.isInteger(after)).toBe(true)
      expect(holder.stats().failures).toBe(0)
    })

    it('blackhole: a silent socket after an idle gap costs one bounded ping, then a new connection', async () => {
      const { holder, pid } = make({ staleAfterMs: 100, pingTimeoutMs: 400 })
      await pid()
      proxy.blackhole()
      proxy.heal()
      await sleep(150)
      const started = Date.now()
      await pid()
      expect(Date.now() - started).toBeLessThan(400 + 8_000) // a hang detector, not a speed test
      expect(holder.stats()).toMatchObject({ revalidateFailures: 1, opened: 2, failures: 0 })
    })

    it('call deadline: a write stuck on a silent network fails at callTimeoutMs, unreplayed; an idempotent read is replayed on a new connection', async () => {
      const { holder, pid, run } = make({ callTimeoutMs: 600 })
      const first = await pid()
      const before = proxy.connections()
      const note = `deadline-${t.name}`
      // Used a moment ago, so no ping: the statement goes straight into the silence.
      proxy.blackhole()
      proxy.heal()
      const started = Date.now()
      const err = await run('insert into conformance_ledger (note) values ($1)', [note]).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(CallTimeoutError)
      expect((err as CallTimeoutError).code).toBe('WARMCONN_CALL_TIMEOUT')
      expect(Date.now() - started).toBeLessThan(600 + 5_000) // a hang detector: without the deadline it waits for TCP (minutes)
      // Destroyed: the client's socket is gone from the proxy; the insert never reached the server.
      expect(await eventually(async () => proxy.connections() === before - 1)).toBe(true)
      expect(await notes(note)).toBe(0)
      expect(holder.stats()).toMatchObject({ callTimeouts: 1, replays: 0, open: 0 })
      const second = await pid()
      if (t.stableBackend) expect(second).not.toBe(first)
      // The same for a read marked idempotent: replayed once on a new connection, and answered.
      proxy.blackhole()
      proxy.heal()
      const third = await pid({ idempotent: true })
      if (t.stableBackend) expect(third).not.toBe(second)
      expect(holder.stats()).toMatchObject({ callTimeouts: 2, replays: 1, opened: 3, failures: 1 })
    })

    it('idle close: the client socket is closed (and the backend gone where visible)', async () => {
      const { holder, name, pid } = make({ idleTimeoutMs: 300 })
      const before = proxy.connections()
      await pid()
      expect(proxy.connections()).toBe(before + 1)
      expect(await eventually(async () => proxy.connections() === before)).toBe(true)
      expect(holder.stats()).toMatchObject({ closedIdle: 1, open: 0 })
      if (t.stableBackend) expect(await eventually(async () => (await pg().backends(name)).length === 0)).toBe(true)
    })

    it('lifetime: the connection is rotated at maxLifetimeMs', async () => {
      const { holder, pid } = make({ maxLifetimeMs: 300, maxLifetimeJitterMs: 0 })
      await pid()
      await sleep(350)
      await pid()
      expect(holder.stats()).toMatchObject({ opened: 2, closedLifetime: 1, failures: 0 })
    })

    it('single-flight: 50 concurrent first calls share one connect', async () => {
      const { holder, pid } = make()
      await Promise.all(Array.from({ length: 50 }, () => pid()))
      expect(holder.stats().opened).toBe(1)
    })

    it('session hygiene: a call that throws between BEGIN and COMMIT leaves nothing committed and no open transaction', async () => {
      const { holder, run } = make()
      const note = `half-${t.name}`
      await expect(holder.run(async (c) => {
        await t.exec(c, 'begin')
        await t.exec(c, 'insert into conformance_ledger (note) values ($1)', [note])
        throw new Error('handler failed')
      })).rejects.toThrow('handler failed')
      expect(await notes(note)).toBe(0)
      await run('insert into conformance_ledger (note) values ($1)', [`next-${t.name}`])
      expect(await notes(`next-${t.name}`)).toBe(1) // autocommitted: not inside the failed transaction
      expect(holder.stats().sessionResets).toBe(1)
    })

    it('no write replay: a write whose connection dies mid-call fails typed and is written once', async () => {
      const { holder } = make()
      const note = `once-${t.name}`
      await holder.run((c) => t.exec(c, 'select 1'))
      const running = holder.run(async (c) => {
        await t.exec(c, 'insert into conformance_ledger (note) values ($1)', [note])
        await t.exec(c, 'select pg_sleep(5)')
      }).catch((e: unknown) => e)
      await eventually(async () => (await pg().admin`select 1 from pg_stat_activity where query like '%pg_sleep(5)%' and pid <> pg_backend_pid()`).length > 0)
      proxy.resetAll()
      expect(await running).toBeInstanceOf(ConnectionLostError)
      expect(await notes(note)).toBe(1)
      expect(holder.stats().replays).toBe(0)
      await pg().admin`select pg_cancel_backend(pid) from pg_stat_activity where query like '%pg_sleep(5)%' and pid <> pg_backend_pid()`
    })

    it('secrets: a bad password fails once, typed, and no error or event carries the password', async () => {
      const wrong = `wrong-${Math.random().toString(36).slice(2)}`
      const { holder, run } = make({}, wrong)
      const seen: unknown[] = []
      for (const e of ['connectFail', 'connectRetry', 'closeBroken'] as const) holder.on(e, (p) => seen.push(p))
      const err = await run('select 1').catch((e: unknown) => e)
      expect(err).toBeInstanceOf(AuthError)
      expect(holder.stats().connectRetries).toBe(0)
      const text = JSON.stringify(seen) + String((err as Error).message) + String((err as Error).stack) + JSON.stringify(holder.stats())
      expect(text).not.toContain(wrong)
      expect(text).not.toContain(pg().password)
    })

    // Last: its holders keep connections open through the shared proxy, which 'reuse' counts.
    sessionConformance({ pg, make, exec: t.exec, direct: t.stableBackend, proxy: () => proxy })
  })
}
