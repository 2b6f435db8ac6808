/**
 * The same four patterns called in-process, as a long-running Node server would: no emulator
 * overhead in the numbers, so warmconn's own per-call cost (timestamp checks, one setImmediate)
 * is as visible as it gets.
 */
import postgres from 'postgres'
import { Holder } from '../src/index.js'
import { postgresDriver } from '../src/drivers/postgres.js'
import { query } from './functions/query.js'
import { summarize, type Summary } from './stats.js'

type Call = (n: number) => Promise<unknown>
type Pattern = { setup(url: string, ssl: false | { ca: string; servername: string }): Promise<{ call: Call; teardown(): Promise<void> }> }

const quiet = { onnotice: () => {} }

export const INPROCESS_PATTERNS: Record<string, Pattern> = {
  'a connect per call': {
    async setup(url, ssl) {
      const call: Call = async (n) => {
        const sql = postgres(url, { max: 1, ssl, ...quiet })
        try {
          return await query(sql as never, n)
        } finally {
          await sql.end({ timeout: 1 })
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
  'c warmconn': warmconn(5_000),
  'c warmconn, stale': warmconn(0),
  'd raw held (limit)': {
    async setup(url, ssl) {
      const sql = postgres(url, { max: 1, ssl, ...quiet })
      return { call: (n) => query(sql as never, n), teardown: () => sql.end({ timeout: 1 }) }
    },
  },
}

function warmconn(staleAfterMs: number): Pattern {
  return {
    async setup(url, ssl) {
      const holder = new Holder(postgresDriver(url, { ssl, ...quiet }), { staleAfterMs })
      return { call: (n) => holder.run((sql) => query(sql, n), { idempotent: true }), teardown: () => holder.close() }
    },
  }
}

export async function runInProcess(pattern: Pattern, url: string, ssl: false | { ca: string; servername: string }, n: number, onTick: () => void): Promise<Summary> {
  const { call, teardown } = await pattern.setup(url, ssl)
  try {
    for (let i = 0; i < 3; i++) await call(i)
    const samples: number[] = []
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await call(i)
      samples.push(performance.now() - t)
      onTick()
    }
    return summarize(samples)
  } finally {
    await teardown()
  }
}
