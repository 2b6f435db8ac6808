/**
 * Reuse and the hot path, proved by what the server saw: backend pids, pg_stat_activity and the
 * statements each backend received (log_statement = all).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { appName, makeHolder, pidOf, sleep } from './helpers/core.js'
import { warmPostgres } from '../src/drivers/postgres.js'

let pg: TestPg
beforeAll(async () => {
  pg = await startPostgres()
})
afterAll(async () => {
  await pg?.stop()
})

const isPing = (s: string) => /^select 1$/i.test(s)

describe('reuse across calls', () => {
  it('serves 100 calls from one backend pid, named by application_name on the server', async () => {
    const name = appName('reuse')
    const holder = makeHolder(pg.url, { applicationName: name })
    const pids = new Set<number>()
    for (let i = 0; i < 100; i++) pids.add(await pidOf(holder))
    expect(pids.size).toBe(1)
    const backends = await pg.backends(name)
    expect(backends.map((b) => b.pid)).toEqual([...pids])
    expect(holder.stats()).toMatchObject({ opened: 1, reused: 99, runs: 100, failures: 0 })
    await holder.close()
  })

  it('the hot path (used within staleAfterMs) sends the server no ping at all', async () => {
    const name = appName('hot')
    const holder = makeHolder(pg.url, { applicationName: name, staleAfterMs: 60_000 })
    const pid = await pidOf(holder)
    const mark = await pg.mark()
    for (let i = 0; i < 20; i++) await holder.run((sql) => sql`select ${i}::int as i`)
    const seen = await pg.statements({ pid, since: mark })
    expect(seen).toHaveLength(20)
    expect(seen.filter(isPing)).toHaveLength(0)
    expect(holder.stats().revalidated).toBe(0)
    await holder.close()
  })

  it('a connection idle past staleAfterMs gets exactly one ping, then the call', async () => {
    const name = appName('stale')
    const holder = makeHolder(pg.url, { applicationName: name, staleAfterMs: 200 })
    const pid = await pidOf(holder)
    await sleep(300)
    const mark = await pg.mark()
    await holder.run((sql) => sql`select 'after idle' as x`)
    await holder.run((sql) => sql`select 'hot again' as x`)
    const seen = await pg.statements({ pid, since: mark })
    expect(seen.filter(isPing)).toHaveLength(1)
    expect(seen).toHaveLength(3)
    expect(isPing(seen[0]!)).toBe(true)
    expect(holder.stats()).toMatchObject({ revalidated: 1, opened: 1 })
    await holder.close()
  })

  it('50 concurrent first callers share one connect: one backend on the server', async () => {
    const name = appName('flight')
    const holder = makeHolder(pg.url, { applicationName: name })
    const pids = await Promise.all(Array.from({ length: 50 }, () => pidOf(holder)))
    expect(new Set(pids).size).toBe(1)
    expect(await pg.backends(name)).toHaveLength(1)
    expect(holder.stats().opened).toBe(1)
    await holder.close()
  })

  it('with maxConnections 3, 50 concurrent callers open at most 3 backends', async () => {
    const name = appName('max3')
    const holder = makeHolder(pg.url, { applicationName: name, maxConnections: 3 })
    const pids = await Promise.all(Array.from({ length: 50 }, () => holder.run(async (sql) => {
      const [row] = await sql`select pg_backend_pid() as pid, pg_sleep(0.01)`
      return Number(row!.pid)
    })))
    expect(new Set(pids).size).toBeLessThanOrEqual(3)
    expect(new Set(pids).size).toBeGreaterThan(1)
    expect(holder.stats().opened).toBeLessThanOrEqual(3)
    await holder.close()
  })

  it('module-scope holders are keyed by config: same URL, same holder; another role or database, another connection', async () => {
    const a1 = warmPostgres(pg.url, { applicationName: appName('key') })
    const a2 = warmPostgres(pg.url, { applicationName: a1.options.applicationName })
    expect(a2).toBe(a1)
    const other = warmPostgres(pg.appUrl, { applicationName: a1.options.applicationName })
    expect(other).not.toBe(a1)
    const [mine] = await a1.run((sql) => sql`select current_user as u, pg_backend_pid() as pid`)
    const [theirs] = await other.run((sql) => sql`select current_user as u, pg_backend_pid() as pid`)
    expect(mine!.u).toBe('postgres')
    expect(theirs!.u).toBe('app')
    expect(theirs!.pid).not.toBe(mine!.pid)
    await a1.close()
    await other.close()
    // A closed holder is forgotten: the next call for the same config builds a new one.
    expect(warmPostgres(pg.url, { applicationName: a1.options.applicationName })).not.toBe(a1)
  })

  it("a caller's postgres.js debug hook still sees every statement the server received, in order", async () => {
    const name = appName('debug')
    const seen: string[] = []
    const holder = makeHolder(pg.url, { applicationName: name }, { debug: (_id, query) => void seen.push(query) })
    const pid = await pidOf(holder)
    const mark = await pg.mark()
    await holder.run(async (sql) => {
      await sql`begin`
      await sql`select ${1}::int as one`
      throw new Error('handler failed') // left open: warmconn rolls it back, and the hook sees that too
    }).catch(() => {})
    const server = await pg.statements({ pid, since: mark })
    expect(server).toEqual(['begin', 'select $1::int as one', 'rollback'])
    expect(seen.slice(-3)).toEqual(server)
    await holder.close()
  })

  it('sets application_name (default "warmconn") so the connection is visible in pg_stat_activity', async () => {
    const holder = makeHolder(pg.url)
    const pid = await pidOf(holder)
    const [row] = await pg.admin`select application_name from pg_stat_activity where pid = ${pid}`
    expect(row!.application_name).toBe('warmconn')
    await holder.close()
  })
})
