/**
 * The postgres.js driver follows transactions from the statements callers make (no debug hook),
 * so that hygiene costs no round trip when no transaction was left open, and postgres.js errors
 * keep `query` and `parameters` out of sight. Proved by what the server logged and by the error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { appName, makeHolder, pidOf } from './helpers/core.js'

let pg: TestPg
beforeAll(async () => {
  pg = await startPostgres()
})
afterAll(async () => {
  await pg?.stop()
})

/** What the server received on one backend during `fn`. */
async function serverSaw(fn: (holder: ReturnType<typeof makeHolder>) => Promise<unknown>): Promise<string[]> {
  const holder = makeHolder(pg.url, { applicationName: appName('session') })
  const pid = await pidOf(holder)
  const mark = await pg.mark()
  await fn(holder).catch(() => {})
  // The server holds no transaction for the connection, whatever fn left.
  const [backend] = (await pg.backends(holder.options.applicationName)).filter((b) => b.pid === pid)
  expect(backend).toMatchObject({ state: 'idle', xact_start: null })
  await holder.close()
  return pg.statements({ pid, since: mark })
}

describe('transactions left open are rolled back, whichever way they were opened', () => {
  it.each([
    ['a tagged template', (h: ReturnType<typeof makeHolder>) => h.run(async (sql) => void (await sql`begin`))],
    ['sql.unsafe', (h: ReturnType<typeof makeHolder>) => h.run(async (sql) => void (await sql.unsafe('BEGIN ISOLATION LEVEL SERIALIZABLE')))],
    ['a multi-statement unsafe', (h: ReturnType<typeof makeHolder>) => h.run(async (sql) => void (await sql.unsafe('select 1; start transaction; select 2')))],
    ['a comment before BEGIN', (h: ReturnType<typeof makeHolder>) => h.run(async (sql) => void (await sql.unsafe('/* app */ -- note\n begin')))],
    ['a reserved connection', (h: ReturnType<typeof makeHolder>) => h.run(async (sql) => {
      const reserved = await sql.reserve()
      await reserved`begin`
      reserved.release()
    })],
  ])('%s', async (_label, open) => {
    const seen = await serverSaw(open)
    expect(seen.at(-1)).toBe('rollback')
  })

  it('a call that committed (or never opened one) costs no statement of warmconn at all', async () => {
    const seen = await serverSaw((h) => h.run(async (sql) => {
      await sql`begin`
      await sql`select 1 as inside`
      await sql`commit`
      await sql.begin((tx) => tx`select 2 as in_begin`)
    }))
    expect(seen).not.toContain('rollback')
    expect(seen.slice(0, 3)).toEqual(['begin', 'select 1 as inside', 'commit'])
  })

  it('ROLLBACK TO SAVEPOINT keeps the transaction open, so it is still rolled back', async () => {
    const seen = await serverSaw((h) => h.run(async (sql) => {
      await sql.unsafe('begin; savepoint a')
      await sql.unsafe('rollback to savepoint a')
    }))
    expect(seen.at(-1)).toBe('rollback')
  })
})

describe('errors', () => {
  it("a PostgresError's query and parameters are not enumerable, so a logger cannot print them", async () => {
    const holder = makeHolder(pg.url, { applicationName: appName('enumerable') })
    const secretParam = `card-${Math.random().toString(36).slice(2)}`
    const err = await holder.run((sql) => sql`select ${secretParam}::int as n`).catch((e: unknown) => e) as Record<string, unknown>
    expect(err.code).toBe('22P02') // invalid input syntax for type integer
    expect(Object.keys(err)).not.toContain('query')
    expect(Object.keys(err)).not.toContain('parameters')
    expect(JSON.stringify(err)).not.toContain(secretParam)
    // Still there for whoever asks for them by name, as postgres.js documents.
    expect(err.parameters).toEqual([secretParam])
    await holder.close()
  })
})
