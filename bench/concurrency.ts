/**
 * `npm run bench:concurrency [-- --quick]`: only the concurrency table of `npm run bench`
 * (bench/concurrency-run.ts), printed, no files written.
 */
import { startPostgres } from '../test/harness/pg.js'
import { startProxy } from '../test/harness/proxy.js'
import { concurrencyReport, runConcurrency } from './concurrency-run.js'

const db = await startPostgres()
const proxy = await startProxy({ host: db.host, port: db.port })
try {
  const run = await runConcurrency(db, proxy, process.argv.includes('--quick'), (label) => console.error(label))
  console.log(`\n${concurrencyReport(run).join('\n')}`)
} finally {
  await proxy.close()
  await db.stop()
}
