/**
 * The postgres.js driver through a real PgBouncer 1.18 in transaction mode, the way most
 * serverless deployments reach PostgreSQL. PgBouncer 1.18 has no protocol-level prepared
 * statements, so warmconn is used with `postgres: { prepare: false }`; the last tests show what
 * goes wrong without it. Assertions read PgBouncer's SHOW CLIENTS/POOLS/SERVERS and the real
 * server's pg_stat_activity and rows.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { pgBouncer, startPgBouncer, type TestPgBouncer } from './harness/pgbouncer.js'
import { requires } from './helpers/requires.js'
import { appName, eventually, makeHolder, recordEvents, sleep } from './helpers/core.js'
import { AuthError, ConnectionLostError, type Holder, type HolderOptions } from '../src/index.js'
import type { PostgresOptions, Sql } from '../src/drivers/postgres.js'

const POOL_SIZE = 2 // small, so a pinned server is visible and two clients must share servers

let pg: TestPg
let bouncer: TestPgBouncer
const holders: Holder<Sql>[] = []

/** A holder through PgBouncer as `app`, on its own application_name, closed after the test. */
function viaBouncer(name: string, options: HolderOptions = {}, pgOptions: PostgresOptions = {}): Holder<Sql> {
  const holder = makeHolder(bouncer.url(), { applicationName: name, ...options }, { prepare: false, ...pgOptions })
  holders.push(holder)
  return holder
}

/** postgres.js' onclose option, and a promise that resolves when it is first called. */
function closeSignal(): { closed: Promise<void>; onclose: () => void } {
  let onclose!: () => void
  const closed = new Promise<void>((resolve) => (onclose = resolve))
  return { closed, onclose }
}

const clientsOf = async (name: string) => (await bouncer.showClients()).filter((c) => c.application_name === name)
const pool = async () => (await bouncer.showPools()).find((p) => p.user === 'app' && p.database === 'postgres')
const rows = async () => (await pg.admin<{ note: string }[]>`select note from bouncer_notes order by id`).map((r) => r.note)

describe('warmconn through PgBouncer in transaction mode', requires(pgBouncer), () => {
  beforeAll(async () => {
    pg = await startPostgres({ maxConnections: 20 })
    bouncer = await startPgBouncer(pg, { defaultPoolSize: POOL_SIZE })
    await pg.admin`create table bouncer_notes (id serial primary key, note text not null)`
    await pg.admin`grant all on bouncer_notes, bouncer_notes_id_seq to app`
  })
  afterEach(async () => {
    await Promise.all(holders.splice(0).map((h) => h.close({ timeoutMs: 500 })))
    await pg.admin`truncate bouncer_notes`
  })
  afterAll(async () => {
    await bouncer?.stop()
    await pg?.stop()
  })

  describe('reuse and hygiene', () => {
    it('100 calls use one warmconn connection and one PgBouncer client; the server sees at most the pool', async () => {
      const name = appName('bouncer-reuse')
      const holder = viaBouncer(name)
      for (let i = 0; i < 100; i++) await holder.run((sql) => sql`select ${i}::int as n`)
      expect(holder.stats()).toMatchObject({ opened: 1, runs: 100, failures: 0 })
      expect(await clientsOf(name)).toHaveLength(1)
      expect((await pg.backends()).length).toBeLessThanOrEqual(POOL_SIZE)
    })

    it('a handler that throws between BEGIN and COMMIT commits nothing, and no server is left in a transaction', async () => {
      const holder = viaBouncer(appName('bouncer-throw'))
      const err = await holder
        .run(async (sql) => {
          await sql.unsafe('begin')
          await sql`insert into bouncer_notes (note) values ('half-done')`
          throw new Error('handler failed mid-transaction')
        })
        .catch((e: unknown) => e)
      expect((err as Error).message).toBe('handler failed mid-transaction')
      expect(holder.stats().sessionResets).toBe(1)
      expect(await rows()).toEqual([])
      // The ROLLBACK went through PgBouncer to the pinned server, which PgBouncer then released.
      expect((await pg.backends()).filter((b) => b.xact_start !== null)).toEqual([])
      expect(await pool()).toMatchObject({ sv_active: 0, cl_waiting: 0 })
      // The next call runs in autocommit: its insert is visible to another session at once.
      await holder.run((sql) => sql`insert into bouncer_notes (note) values ('next')`)
      expect(await rows()).toEqual(['next'])
    })

    it('a transaction a handler leaves open is rolled back instead of pinning one of the pooled servers', async () => {
      const holder = viaBouncer(appName('bouncer-open'))
      await holder.run(async (sql) => {
        await sql.unsafe('begin')
        await sql`insert into bouncer_notes (note) values ('never committed')`
      })
      expect(holder.stats().sessionResets).toBe(1)
      expect(await rows()).toEqual([])
      expect(await pool()).toMatchObject({ sv_active: 0 })
      // Every pooled server is usable by other clients at once.
      const others = Array.from({ length: POOL_SIZE }, (_, i) => viaBouncer(appName(`bouncer-other${i}`)))
      await Promise.all(others.map((h) => h.run((sql) => sql.begin((tx) => tx`select pg_sleep(0.05)`))))
    })
  })

  describe('stale connections and killed backends', () => {
    it('a stale connection is revalidated with one ping through PgBouncer', async () => {
      const holder = viaBouncer(appName('bouncer-stale'), { staleAfterMs: 100 })
      await holder.run((sql) => sql`select 1`)
      await sleep(200)
      await holder.run((sql) => sql`select 1`)
      expect(holder.stats()).toMatchObject({ opened: 1, revalidated: 1, revalidateFailures: 0 })
    })

    it('a server backend killed between calls: PgBouncer replaces it unseen, the call succeeds on the same client connection', async () => {
      const name = appName('bouncer-killidle')
      const holder = viaBouncer(name)
      const pidOf = async () => Number((await holder.run((sql) => sql`select pg_backend_pid() as pid`))[0]!.pid)
      const before = await pidOf()
      expect(await pg.terminate({ pid: before })).toBe(1)
      // PgBouncer notices its idle server closing and drops it; the client link is untouched.
      expect(await eventually(async () => (await bouncer.showServers()).every((s) => s.remote_pid !== before))).toBe(true)
      const after = await pidOf()
      expect(after).not.toBe(before)
      expect(holder.stats()).toMatchObject({ opened: 1, closedBroken: 0, failures: 0 })
      expect(await clientsOf(name)).toHaveLength(1)
    })

    it('a server backend killed mid-transaction: PgBouncer closes the client; nothing is committed and the next call succeeds', async () => {
      const name = appName('bouncer-killtx')
      const { closed, onclose } = closeSignal()
      const holder = viaBouncer(name, {}, { onclose })
      await holder.run(async (sql) => {
        await sql.unsafe('begin')
        const [row] = await sql`insert into bouncer_notes (note) values ('in flight') returning pg_backend_pid() as pid`
        await pg.terminate({ pid: Number(row!.pid) })
        // Stop once PgBouncer's close has reached us: statements sent now hit the bug pinned below.
        await closed
      })
      expect(bouncer.log().some((l) => /closing because: server conn crashed\?/.test(l))).toBe(true)
      expect(await rows()).toEqual([])
      await holder.run((sql) => sql`insert into bouncer_notes (note) values ('after')`)
      expect(await rows()).toEqual(['after'])
      expect(holder.stats()).toMatchObject({ opened: 2, reconnected: 1, closedBroken: 1, failures: 0 })
      expect(await clientsOf(name)).toHaveLength(1)
    })

    // Once its connection has died, postgres.js (max: 1) would silently open a new one for the next
    // statement, so the rest of a manual BEGIN ... COMMIT would run in autocommit and be committed:
    // a partial write reported as success. The driver ends the instance on an unexpected close, so
    // the next statement fails instead. The same holds directly against PostgreSQL.
    it('statements after a mid-transaction kill fail typed and nothing of the transaction is committed', async () => {
      const { closed, onclose } = closeSignal()
      const holder = viaBouncer(appName('bouncer-killtx-after'), {}, { onclose })
      const outcome = await holder
        .run(async (sql) => {
          await sql.unsafe('begin')
          const [row] = await sql`insert into bouncer_notes (note) values ('first') returning pg_backend_pid() as pid`
          await pg.terminate({ pid: Number(row!.pid) })
          // Once the close has reached postgres.js (before that, the insert fails on the closing socket).
          await closed
          await sql`insert into bouncer_notes (note) values ('second')`
          await sql.unsafe('commit')
        })
        .then(() => 'succeeded', (e: unknown) => e)
      expect(outcome).toBeInstanceOf(ConnectionLostError)
      expect(await rows()).toEqual([])
      expect(await holder.run((sql) => sql`select 1 as ok`)).toEqual([{ ok: 1 }])
    })

    it('a server backend killed mid-query: a non-idempotent call fails typed; an idempotent one is replayed and succeeds', async () => {
      const holder = viaBouncer(appName('bouncer-killquery'))
      const sleeper = async () =>
        (await pg.admin<{ pid: number }[]>`select pid from pg_stat_activity where state = 'active' and query like 'select pg_sleep(1)%'`)[0]?.pid
      const killDuring = async (idempotent: boolean) => {
        const call = holder.run((sql) => sql`select pg_sleep(1)`, { idempotent }).then(() => 'succeeded', (e: unknown) => e)
        await eventually(async () => (await sleeper()) !== undefined)
        await pg.terminate({ pid: (await sleeper())! })
        return call
      }
      const lost = await killDuring(false)
      expect(lost).toBeInstanceOf(ConnectionLostError)
      expect((lost as ConnectionLostError).causeCode).toBe('CONNECTION_CLOSED')
      expect(await killDuring(true)).toBe('succeeded')
      expect(holder.stats()).toMatchObject({ replays: 1, failures: 1 })
    })
  })

  describe('secrets', () => {
    it('a wrong password fails at once, and no password reaches errors, events, stats or the PgBouncer log', async () => {
      const holder = makeHolder(bouncer.urlFor({ user: 'app', password: 'wrong-through-bouncer' }), { applicationName: appName('bouncer-badpw') }, { prepare: false })
      holders.push(holder)
      const events = recordEvents(holder)
      const err = await holder.run((sql) => sql`select 1`).catch((e: unknown) => e)
      // PgBouncer reports a failed SCRAM login as FATAL 08P01 "SASL authentication failed", not
      // 28P01; the driver still knows it for what it is: an AuthError, never retried.
      expect(err).toBeInstanceOf(AuthError)
      expect(err).toMatchObject({ sqlState: '08P01' })
      expect(holder.stats().connectRetries).toBe(0)
      const good = viaBouncer(appName('bouncer-goodpw'))
      await good.run((sql) => sql`select 1`)
      const output = JSON.stringify([String(err), (err as Error).stack, events, holder.stats(), good.stats(), bouncer.log()])
      for (const secret of [pg.password, 'wrong-through-bouncer']) expect(output).not.toContain(secret)
    })
  })

  describe('prepare: true behind transaction pooling', () => {
    // postgres.js names a prepared statement once per client connection and reuses the name, but
    // PgBouncer hands each transaction whichever server is free, where that name does not exist.
    it('outside a transaction postgres.js hides the miss with a silent retry; the server logs "does not exist" errors', async () => {
      const mark = await pg.mark()
      const clients = Array.from({ length: 4 }, (_, i) => viaBouncer(appName(`bouncer-prep${i}`), {}, { prepare: true }))
      await Promise.all(clients.map(async (h) => {
        for (let i = 0; i < 25; i++) await h.run((sql) => sql`select ${i}::int as n, pg_sleep(0.002)`)
      }))
      expect(clients.map((h) => h.stats().failures)).toEqual([0, 0, 0, 0])
      const misses = (await pg.logRecords(mark)).filter((r) => r.severity === 'ERROR' && /prepared statement .* does not exist/.test(r.message))
      expect(misses.length).toBeGreaterThan(0)
    })

    it('inside a transaction the miss aborts it and fails the call with 26000; prepare: false has no such failure', async () => {
      const runMix = async (prepare: boolean) => {
        const clients = Array.from({ length: 4 }, (_, i) => viaBouncer(appName(`bouncer-preptx${i}`), {}, { prepare }))
        const codes: string[] = []
        await Promise.all(clients.map(async (h) => {
          for (let i = 0; i < 15; i++) {
            // The same statement, first outside a transaction (prepared on one server), then in one.
            await h.run((sql) => sql`select ${i}::int as n, pg_sleep(0.002)`)
            await h.run((sql) => sql.begin((tx) => tx`select ${i}::int as n, pg_sleep(0.002)`)).catch((e: { code?: string }) => codes.push(String(e.code)))
          }
        }))
        return codes
      }
      const withPrepare = await runMix(true)
      expect(withPrepare.length).toBeGreaterThan(0)
      expect(new Set(withPrepare)).toEqual(new Set(['26000']))
      expect(await runMix(false)).toEqual([])
    })

    it('the first 26000 is one warning naming prepare: false, once per holder however many follow; none with prepare: false', async () => {
      const warningsOf = (prepare: boolean) => {
        const clients = Array.from({ length: 4 }, (_, i) => viaBouncer(appName(`bouncer-prepwarn${i}`), {}, { prepare }))
        const warnings = clients.map(() => [] as Array<{ code: string; message: string }>)
        clients.forEach((h, i) => h.on('warning', (w) => warnings[i]!.push(w)))
        return { clients, warnings }
      }
      const run = async (clients: Holder<Sql>[]) => {
        const failed = clients.map(() => 0)
        await Promise.all(clients.map(async (h, c) => {
          for (let i = 0; i < 15; i++) {
            await h.run((sql) => sql`select ${i}::int as n, pg_sleep(0.002)`)
            await h.run((sql) => sql.begin((tx) => tx`select ${i}::int as n, pg_sleep(0.002)`)).catch(() => failed[c]!++)
          }
        }))
        return failed
      }
      const on = warningsOf(true)
      const failed = await run(on.clients)
      expect(failed.some((n) => n > 1)).toBe(true) // a holder that failed more than once still warned once
      on.warnings.forEach((w, i) => {
        expect(w).toHaveLength(failed[i]! > 0 ? 1 : 0)
        for (const { code, message } of w) {
          expect(code).toBe('WARMCONN_WARN_PREPARED_STATEMENTS')
          expect(message).toMatch(/failed with 26000 \(prepared statement does not exist\): a transaction pooler .* Pass postgres: \{ prepare: false \}/)
          expect(message).not.toContain(pg.password)
        }
      })
      const off = warningsOf(false)
      expect(await run(off.clients)).toEqual([0, 0, 0, 0])
      expect(off.warnings.flat()).toEqual([])
    })
  })
})
