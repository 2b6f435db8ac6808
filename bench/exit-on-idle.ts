// How long a Node script that ran one warmPool query takes to end by itself, with
// allowExitOnIdle (the default) and without. Run: npx tsx bench/exit-on-idle.ts
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { startPostgres } from '../test/harness/pg.js'

const child = fileURLToPath(new URL('../test/runtimes/exit-child.ts', import.meta.url))
const tsx = createRequire(import.meta.url).resolve('tsx')
const pg = await startPostgres()
try {
  for (const [label, options] of [['allowExitOnIdle: true (default)', {}], ['allowExitOnIdle: false', { allowExitOnIdle: false }]] as const) {
    for (const driver of ['pool', 'postgres']) {
      const started = Date.now()
      const run = spawnSync(process.execPath, ['--import', tsx, child], { env: { ...process.env, DATABASE_URL: pg.url, WC_DRIVER: driver, WC_TEST_OPTIONS: JSON.stringify(options) }, encoding: 'utf8' })
      console.log(`${driver}, ${label}: exited ${run.status} after ${Date.now() - started} ms; ${run.stdout.trim().replace(/\n/g, ', ')}`)
    }
  }
} finally {
  await pg.stop()
}
