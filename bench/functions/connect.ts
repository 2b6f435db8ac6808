// (a) Connect per invocation: what most serverless code does today.
import postgres from 'postgres'
import { query, sslFromEnv } from './query.js'

export const handler = async (event: { n: number }) => {
  const sql = postgres(process.env.DATABASE_URL!, { max: 1, ssl: sslFromEnv(), onnotice: () => {} })
  try {
    const [row] = await query(sql as never, event.n)
    return row!.n
  } finally {
    await sql.end({ timeout: 1 })
  }
}
