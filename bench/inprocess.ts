/**
 * The patterns called in-process, as a long-running Node server would: no emulator overhead in
 * the numbers, so warmconn's own per-call cost is as visible as it gets. Besides postgres.js,
 * node-postgres: a plain pg.Pool, a Client per call, and warmconn's warmPool, each also under
 * Drizzle (drizzle-orm/node-postgres), so a drop-in replacement is measured against what it replaces.
 */
import { sql as drizzleSql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import pg from 'pg'
import postgres from 'postgres'
import { Holder, type HolderOptions } from '../src/index.js'
import { postgresDriver } from '../src/drivers/postgres.js'
import { warmPool } from '../src/drivers/pg.js'
import { query } from './functions/query.js'
import { summarize, type Summary } from './stats.js'

type Call = (n: number) => Promise<unknown>
type Tls = false | { ca: string; servername: string }
type Pattern = { pg?: true; setup(url: string, ssl: Tls): Promise<{ call: Call; teardown(): Promise<void> }> }

const quiet = { onnotice: () => {} }
const PG_QUERY = 'select $1::int as n'

export const INPROCESS_PATTERNS: Record<string, Pattern> = {
  // The fastest raw connect: no array-type lookup (fetch_types: false), the cold-call baseline.
  'a connect per call': {
    async setup(url, ssl) {
      const call: Call = async (n) => {
        const sql = postgres(url, { max: 1, ssl, fetch_types: false, ...quiet })
        try {
          return await query(sql as never, n)
        } finally {
          await sql.end({ timeout: 1 })
        }
      }
      return { call, teardown: async () => {} }
    },
  },
  // A new holder (as a cold process has) for each call: connect, the call, close.
  'a warmconn, cold every call': {
    async setup(url, ssl) {
      const call: Call = async (n) => {
        const holder = new Holder(postgresDriver(url, { ssl, ...quiet }))
        try {
          return await holder.run((sql) => query(sql, n), { idempotent: true })
        } finally {
          await holder.close({ timeoutMs: 1_000 })
        }
      }
      return { call, teardown: async () => {} }
    },
  },
  'b ping every call': {
    async setup(url, ssl) {
      const sql = postgres(url, { max: 1, ssl, ...quiet })
      return { call: async (n) => (await sql`select 1`, query(sql as never, n)), teardown: () => sql.end({ timeout: 1 }) }
    },
  },
  'c warmconn': warmconn({}, true),
  'c warmconn, stale read': warmconn({ staleAfterMs: 0 }, true),
  'c warmconn, stale write': warmconn({ staleAfterMs: 0 }, false),
  // Session state (issue 18): a call that sets a tenant for its session, so warmconn resets the
  // session when it gives the connection back (one statement more, which the next call awaits
  // when it comes at once); the raw connection leaks it to the next call instead.
  'c warmconn, sets a tenant (reset)': warmconn({}, true, (sql, n) => sql`select set_config('app.tenant', ${String(n)}, false), ${n}::int as n`),
  "c warmconn, sessionReset 'always'": warmconn({ sessionReset: 'always' }, true),
  'd raw held, sets a tenant (leaks)': {
    async setup(url, ssl) {
      const sql = postgres(url, { max: 1, ssl, ...quiet })
      return { call: (n) => sql`select set_config('app.tenant', ${String(n)}, false), ${n}::int as n`, teardown: () => sql.end({ timeout: 1 }) }
    },
  },
  'd raw held (limit)': {
    async setup(url, ssl) {
      const sql = postgres(url, { max: 1, ssl, ...quiet })
      return { call: (n) => query(sql as never, n), teardown: () => sql.end({ timeout: 1 }) }
    },
  },
  'pg: a Client per call': {
    pg: true,
    async setup(url) {
      const call: Call = async (n) => {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        try {
          return (await client.query(PG_QUERY, [n])).rows
        } finally {
          await client.end()
        }
      }
      return { call, teardown: async () => {} }
    },
  },
  'pg: pg.Pool': {
    pg: true,
    async setup(url) {
      const pool = new pg.Pool({ connectionString: url, max: 1 })
      return { call: async (n) => (await pool.query(PG_QUERY, [n])).rows, teardown: () => pool.end() }
    },
  },
  'pg: warmPool': {
    pg: true,
    async setup(url) {
      const pool = warmPool(url, { maxConnections: 1 })
      return { call: async (n) => (await pool.query(PG_QUERY, [n])).rows, teardown: () => pool.end() }
    },
  },
  'pg: Drizzle + pg.Pool': {
    pg: true,
    async setup(url) {
      const pool = new pg.Pool({ connectionString: url, max: 1 })
      const db = drizzle(pool)
      return { call: (n) => db.execute(drizzleSql`select ${n}::int as n`), teardown: () => pool.end() }
    },
  },
  'pg: Drizzle + warmPool': {
    pg: true,
    async setup(url) {
      const pool = warmPool(url, { maxConnections: 1 })
      const db = drizzle(pool)
      return { call: (n) => db.execute(drizzleSql`select ${n}::int as n`), teardown: () => pool.end() }
    },
  },
}

function warmconn(options: HolderOptions, idempotent: boolean, statement: typeof query = query): Pattern {
  return {
    async setup(url, ssl) {
      const holder = new Holder(postgresDriver(url, { ssl, ...quiet }), options)
      return { call: (n) => holder.run((sql) => statement(sql, n), { idempotent }), teardown: () => holder.close() }
    },
  }
}

/**
 * Three warm-up calls (the first connects, and postgres.js prepares the statement), then `n`
 * timed ones. `flights` counts client-to-server flights through the latency proxy over the timed
 * calls, so "one round trip" is counted, not inferred.
 */
export async function runInProcess(pattern: Pattern, url: string, ssl: Tls, n: number, flights: () => number, onTick: () => void): Promise<Summary & { flights: number }> {
  const { call, teardown } = await pattern.setup(url, ssl)
  try {
    for (let i = 0; i < 3; i++) await call(i)
    const samples: number[] = []
    const before = flights()
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await call(i)
      samples.push(performance.now() - t)
      onTick()
    }
    return { ...summarize(samples), flights: (flights() - before) / n }
  } finally {
    await teardown()
  }
}
