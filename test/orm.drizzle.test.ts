/**
 * Drizzle (drizzle-orm/node-postgres) over warmPool: every ORM scenario (test/orm/scenarios.ts).
 * Drizzle runs plain queries with pool.query and checks a client out (pool.connect) for a
 * transaction, because warmPool's class is a Pool (instanceof pg.Pool, name contains "Pool").
 * Its reads are marked idempotent by a predicate, as the README suggests.
 */
import { count, eq, sql } from 'drizzle-orm'
import { DrizzleQueryError } from 'drizzle-orm/errors'
import { drizzle } from 'drizzle-orm/node-postgres'
import { expect } from 'vitest'
import { pgTable, serial, text } from 'drizzle-orm/pg-core'
import { ormScenarios } from './orm/scenarios.js'

const notes = pgTable('orm_notes', { id: serial('id').primaryKey(), note: text('note').notNull() })

ormScenarios({
  name: 'Drizzle',
  poolOptions: { idempotent: (query) => /^\s*select\b/i.test(query.text) },
  // Drizzle wraps a failed query in its DrizzleQueryError; the cause is the pool's error, with the driver's code.
  connectionError(err, code) {
    expect(err).toBeInstanceOf(DrizzleQueryError)
    const cause = (err as DrizzleQueryError).cause as { code?: unknown; syscall?: unknown; errno?: unknown }
    expect(cause.code).toBe(code)
    if (code === 'ECONNREFUSED') expect([cause.syscall, typeof cause.errno]).toEqual(['connect', 'number'])
  },
  open(pool) {
    const db = drizzle(pool)
    return {
      pid: async () => Number((await db.execute<{ pid: number }>(sql`select pg_backend_pid() as pid`)).rows[0]!.pid),
      insert: (note) => db.insert(notes).values({ note }),
      failingTransaction: (note) =>
        db.transaction(async (tx) => {
          await tx.insert(notes).values({ note })
          const [row] = await tx.select({ n: count() }).from(notes).where(eq(notes.note, note))
          if (row?.n !== 1) throw new Error('the insert should be visible inside its transaction')
          throw new Error('handler failed inside the transaction')
        }),
      close: () => pool.end(),
    }
  },
})
