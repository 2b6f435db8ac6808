import type { Sql } from 'postgres'

// The one query every benchmarked pattern runs. A tagged template is prepared once per
// connection, so on a held connection it costs exactly one round trip.
export const query = (sql: Sql<Record<string, never>>, n: number) => sql`select ${n}::int as n`

export const sslFromEnv = (): false | { ca: string; servername: string } =>
  process.env.BENCH_TLS_CA ? { ca: process.env.BENCH_TLS_CA, servername: 'localhost' } : false
