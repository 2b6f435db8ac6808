/**
 * The demo itself, run by scripts/demo.ts in a process group of its own: start the stack, run
 * the steps against both runtimes, refresh the report after each, stop everything.
 * @module
 */
import { IDLE_TIMEOUT_MS, STALE_AFTER_MS } from './config.js'
import { report } from './report.js'
import { createScreen } from './screen.js'
import { Shutdown } from './shutdown.js'
import { startStack } from './stack.js'
import { STEPS } from './steps.js'
import { Tally } from './tally.js'
import { scopeTempDir } from './temp.js'

// First, before anything creates a temporary file.
const tempDir = scopeTempDir()
const screen = createScreen()
const shutdown = new Shutdown(screen.say)
shutdown.listen()

try {
  screen.say(`warmconn demo: staleAfterMs ${STALE_AFTER_MS}, idleTimeoutMs ${IDLE_TIMEOUT_MS} (shortened so both happen within the demo)`)
  const { pg, runtimes } = await startStack(shutdown, screen, tempDir)
  const tallies = runtimes.map((runtime) => new Tally(runtime))
  for (const [i, step] of STEPS.entries()) {
    screen.say(`\nstep ${i + 1}/${STEPS.length}: ${step.title}`)
    screen.say(`  ${step.why}`)
    await step.run({ pg, tallies, say: screen.say })
    for (const t of tallies) t.onServer = await pg.backends(t.runtime.appName)
    screen.show(report(tallies, `after step ${i + 1}/${STEPS.length}`))
  }
  screen.say('\ndone')
  await shutdown.exit(0)
} catch (error) {
  // Once stopping, requests fail because their runtime is gone: that is not news.
  if (!shutdown.signal.aborted) screen.say(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`)
  await shutdown.exit(1)
}
