/**
 * Kysely (PostgresDialect) over warmPool: every ORM scenario (test/orm/scenarios.ts). Kysely
 * checks a client out (pool.connect) for every query and releases it after, so each query is a
 * lease on the holder: never replayed, a stale connection pinged before use.
 */
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely'
import { expect } from 'vitest'
import { ormScenarios } from './orm/scenarios.js'

interface Database {
  orm_notes: { id: Generated<number>; note: string }
}

ormScenarios({
  name: 'Kysely',
  // Kysely has no error class of its own: it hands on the driver's error, so `code` is what callers switch on.
  connectionError(err, code) {
    expect(err).toBeInstanceOf(Error)
    expect((err as { code?: unknown }).code).toBe(code)
    if (code === 'ECONNREFUSED') expect([(err as { syscall?: unknown }).syscall, typeof (err as { errno?: unknown }).errno]).toEqual(['connect', 'number'])
  },
  open(pool) {
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
    return {
      pid: async () => Number((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0]!.pid),
      insert: (note) => db.insertInto('orm_notes').values({ note }).execute(),
      failingTransaction: (note) =>
        db.transaction().execute(async (tx) => {
          await tx.insertInto('orm_notes').values({ note }).execute()
          const row = await tx.selectFrom('orm_notes').select((eb) => eb.fn.countAll<number>().as('n')).where('note', '=', note).executeTakeFirst()
          if (Number(row?.n) !== 1) throw new Error('the insert should be visible inside its transaction')
          throw new Error('handler failed inside the transaction')
        }),
      close: () => db.destroy(), // ends the pool, as Kysely does
    }
  },
})
