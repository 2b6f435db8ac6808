// (c) warmconn. BENCH_STALE_AFTER_MS=0 forces a revalidation on every call (the stale path; a
// write, not idempotent, with BENCH_IDEMPOTENT=0); BENCH_IDLE_TIMEOUT_MS=1 a new connection per call.
import { warmPostgres } from '../../src/drivers/postgres.js'
import { withWarmconn } from '../../src/lambda/index.js'
import { query, sslFromEnv } from './query.js'

const db = warmPostgres(process.env.DATABASE_URL, {
  staleAfterMs: Number(process.env.BENCH_STALE_AFTER_MS ?? 5_000),
  idleTimeoutMs: Number(process.env.BENCH_IDLE_TIMEOUT_MS ?? 60_000),
  postgres: { ssl: sslFromEnv(), onnotice: () => {} },
})

export const handler = withWarmconn(async (event: { n: number }) => {
  const [row] = await db.run((sql) => query(sql, event.n), { idempotent: process.env.BENCH_IDEMPOTENT !== '0' })
  return row!.n
})
