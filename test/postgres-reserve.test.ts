/**
 * The `sql` warmconn hands out is postgres.js's, also for a call that starts with `sql.reserve()`:
 * postgres.js 3.4.9 with fetch_types off never hands over a reserve that started the instance's
 * connect, and warmconn's connections are lazy (the first statement carries the handshake).
 * Proved on a fresh holder per case, against the server: the reserved statements ran on one
 * backend, inside the transaction they opened, and the connect failure case fails, not hangs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConnectError } from '../src/index.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { appName, makeHolder } from './helpers/core.js'
import { freePort } from './harness/ports.js'

let pg: TestPg
beforeAll(async () => {
  pg = await startPostgres()
})
afterAll(async () => {
  await pg?.stop()
})

describe('sql.reserve() as the first statement of a new connection', () => {
  it('resolves, and the reserved connection runs a transaction on one backend', async () => {
    const name = appName('reserve')
    const holder = makeHolder(pg.url, { applicationName: name, callTimeoutMs: 5_000 })
    try {
      const seen = await holder.run(async (sql) => {
        const reserved = await sql.reserve()
        try {
          await reserved`begin`
          const [row] = await reserved<Array<{ pid: number; tx: boolean }>>`select pg_backend_pid() as pid, now() = statement_timestamp() as tx`
          await reserved`commit`
          return row!
        } finally {
          reserved.release()
        }
      })
      // now() is the transaction's start, statement_timestamp() this statement's: they differ inside a transaction.
      expect(seen.tx).toBe(false)
      expect((await pg.backends(name)).map((b) => b.pid)).toEqual([seen.pid])
      expect(holder.stats()).toMatchObject({ opened: 1, failures: 0, callTimeouts: 0 })
      // The next call reuses the connection, reserve again included.
      const again = await holder.run(async (sql) => {
        const r = await sql.reserve()
        try {
          return (await r<Array<{ pid: number }>>`select pg_backend_pid() as pid`)[0]!.pid
        } finally {
          r.release()
        }
      })
      expect(again).toBe(seen.pid)
    } finally {
      await holder.close()
    }
  })

  it('sql.begin and sql.unsafe work as the first statement of a new connection', async () => {
    for (const first of [
      (sql: Parameters<Parameters<ReturnType<typeof makeHolder>['run']>[0]>[0]) => sql.begin(async (tx) => (await tx<Array<{ n: number }>>`select 1 as n`)[0]!.n),
      (sql: Parameters<Parameters<ReturnType<typeof makeHolder>['run']>[0]>[0]) => sql.unsafe('select 1 as n').then((rows) => Number(rows[0]!.n)),
    ]) {
      const holder = makeHolder(pg.url, { applicationName: appName('first'), callTimeoutMs: 5_000 })
      try {
        expect(await holder.run(first)).toBe(1)
      } finally {
        await holder.close()
      }
    }
  })

  it('with fetch_types on (the connect is not lazy then) it resolves too', async () => {
    const holder = makeHolder(pg.url, { applicationName: appName('reserve-types'), callTimeoutMs: 5_000 }, { fetch_types: true })
    try {
      const n = await holder.run(async (sql) => {
        const r = await sql.reserve()
        try {
          return (await r<Array<{ n: number }>>`select 41 + 1 as n`)[0]!.n
        } finally {
          r.release()
        }
      })
      expect(n).toBe(42)
    } finally {
      await holder.close()
    }
  })

  it('a connect that fails under a first reserve fails the call with ConnectError, not a hang until callTimeoutMs', async () => {
    const port = await freePort()
    const holder = makeHolder(pg.urlFor({ port }), { connectRetries: 1, connectBudgetMs: 2_000, callTimeoutMs: 20_000 })
    try {
      const err = await holder.run(async (sql) => (await sql.reserve()).release()).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ConnectError)
      expect(err).toMatchObject({ causeCode: 'ECONNREFUSED' })
      expect(holder.stats().callTimeouts).toBe(0)
    } finally {
      await holder.close()
    }
  })
})
