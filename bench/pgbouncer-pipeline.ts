/**
 * `npm run bench:pgbouncer-pipeline`: how deep a pipeline PgBouncer (1.18 here, transaction mode)
 * carries. One postgres.js connection (`max: 1`, `prepare: false`, as through any transaction
 * pooler) to PgBouncer, N statements pipelined on it at once, repeated; each statement must come
 * back with its own value within 5 s. Counts the statements lost (no answer), answered wrongly,
 * or failed, per depth, and the same through no pooler. warmconn pipelines nothing on a pooled
 * connection (maxPipelined is 1 there); this is the measurement behind that choice.
 */
import postgres from 'postgres'
import { startPostgres } from '../test/harness/pg.js'
import { startPgBouncer } from '../test/harness/pgbouncer.js'

const depths = [1, 2, 4, 8, 16, 64]
const rounds = Number(process.env.ROUNDS ?? 50)
const db = await startPostgres()
const bouncer = await startPgBouncer(db, { poolMode: 'transaction', defaultPoolSize: 2 })
const lines: string[] = []
try {
  for (const [label, url] of [['PgBouncer 1.18, transaction mode', bouncer.url()], ['PostgreSQL directly', db.appUrl]] as const) {
    for (const depth of depths) {
      let lost = 0, wrong = 0, failed = 0
      const sql = postgres(url, { max: 1, prepare: false, fetch_types: false, onnotice: () => {} })
      await sql`select 1`
      for (let r = 0; r < rounds; r++) {
        await Promise.all(Array.from({ length: depth }, async (_, i) => {
          const n = r * 1000 + i
          const answer = await Promise.race([
            sql`select ${n}::int as n`.then((rows) => rows[0]!.n as number, () => 'failed' as const),
            new Promise<'lost'>((resolve) => setTimeout(() => resolve('lost'), 5_000).unref()),
          ])
          if (answer === 'lost') lost++
          else if (answer === 'failed') failed++
          else if (answer !== n) wrong++
        }))
        if (lost > 0) break // a hung pipeline stays hung: stop this depth
      }
      await sql.end({ timeout: 1 })
      lines.push(`| ${label} | ${depth} | ${rounds * depth} | ${lost} | ${wrong} | ${failed} |`)
      console.error(lines.at(-1))
    }
  }
} finally {
  await bouncer.stop()
  await db.stop()
}
console.log(`\nPipelining one connection, ${rounds} rounds per depth (statements lost = no answer within 5 s)\n`)
console.log('| path | depth | statements | lost | wrong answer | failed |')
console.log('|---|---|---|---|---|---|')
for (const line of lines) console.log(line)
