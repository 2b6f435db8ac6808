// (b) The old global-variable pattern: a module-scope client pinged with SELECT 1 before every use.
import postgres from 'postgres'
import { query, sslFromEnv } from './query.js'

const sql = postgres(process.env.DATABASE_URL!, { max: 1, ssl: sslFromEnv(), onnotice: () => {} })

export const handler = async (event: { n: number }) => {
  await sql`select 1`
  const [row] = await query(sql as never, event.n)
  return row!.n
}
