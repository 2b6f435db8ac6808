// (c) warmconn. BENCH_STALE_AFTER_MS=0 forces a revalidation on every call (the stale path).
import { warmPostgres } from '../../src/drivers/postgres.js'
import { withWarmconn } from '../../src/lambda/index.js'
import { query, sslFromEnv } from './query.js'

const db = warmPostgres(process.env.DATABASE_URL, {
  staleAfterMs: Number(process.env.BENCH_STALE_AFTER_MS ?? 5_000),
  postgres: { ssl: sslFromEnv(), onnotice: () => {} },
})

export const handler = withWarmconn(async (event: { n: number }) => {
  const [row] = await db.run((sql) => query(sql, event.n), { idempotent: true })
  return row!.n
})
