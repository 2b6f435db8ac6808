/**
 * `npx tsx scripts/fleet.ts`: the fleet scenarios of test/fleet.test.ts on their own, printing the
 * figures table. Starts its own PostgreSQL (max_connections 40) and PgBouncer and stops both;
 * Ctrl-C cleans up too. Without pgbouncer installed, the PgBouncer row is left out.
 */
import { startPostgres, type TestPg } from '../test/harness/pg.js'
import { pgBouncerBinary, startPgBouncer } from '../test/harness/pgbouncer.js'
import { BOUNCER_OPTIONS, directOverBudget, directWaiting, formatTable, throughPgBouncer, type Figures } from '../test/fleet/scenarios.js'
import { frozenFleet } from '../test/fleet/frozen.js'

// The harnesses clean up in 'exit' handlers, which a signal would skip.
process.once('SIGINT', () => process.exit(130))
process.once('SIGTERM', () => process.exit(143))

let pg: TestPg | undefined
try {
  console.log('starting PostgreSQL (max_connections 40) ...')
  pg = await startPostgres({ maxConnections: 40 })
  const figures: Figures[] = []
  if (pgBouncerBinary) {
    console.log('fleet of 200 through PgBouncer ...')
    const bouncer = await startPgBouncer(pg, BOUNCER_OPTIONS)
    try {
      figures.push(await throughPgBouncer(pg, bouncer))
    } finally {
      await bouncer.stop()
    }
  } else {
    console.log('pgbouncer is not installed: skipping the PgBouncer scenario')
  }
  console.log('fleet of 200 directly, waiting for slots ...')
  figures.push(await directWaiting(pg))
  console.log('fleet of 100 directly, over capacity with a short budget ...')
  figures.push(await directOverBudget(pg))
  console.log('frozen fleet of 200 directly, server idle close on ...')
  figures.push(await frozenFleet(pg, { instances: 200, serverIdleClose: true, connectBudgetMs: 8_000 }))
  console.log('frozen fleet of 80 directly, server idle close off ...')
  figures.push(await frozenFleet(pg, { instances: 80, serverIdleClose: false, connectBudgetMs: 3_000 }))
  console.log(`\n${formatTable(figures)}`)
} finally {
  await pg?.stop()
}
