/**
 * vitest's global setup: one temporary directory for the whole run (every server, bundle and
 * scratch file of every worker lands inside, and it is deleted at the end), the PostgreSQL
 * binaries copied once where the `postgres` OS user can run them if the checkout is out of its
 * reach, and a marker in the environment of every process the run starts, so that whatever
 * outlives the run is found, named and ended.
 * @module
 */
import { randomUUID } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serverOsUser } from './os-user.js'
import { PG_BIN_DIR_ENV, shareableBinaries } from './pg-binaries.js'
import { INSTALL_COMMAND } from './runtimes.js'
import { testedCompatibilityDate, workerRuntime, wranglerConfig, wranglerDateUnsupported } from './workerd.js'
import { describeProcesses, isEsbuildService, killAll, listProcesses, markedWith, RUN_MARKER_ENV, type ProcessInfo } from './processes.js'

const GRACE_MS = 3_000

export default function setup(): () => Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-test-'))
  // The servers run as the `postgres` OS user when we are root: it must pass through (not list).
  chmodSync(dir, 0o711)
  process.env.TMPDIR = dir
  // Every process started from here on carries it (the CI runner may have set one for its suite).
  const marker = (process.env[RUN_MARKER_ENV] ??= randomUUID())
  if (wranglerDateUnsupported && !process.env.WC_TEST_COMPATIBILITY_DATE) {
    console.log(
      `note: the Workers tests run on compatibility date ${testedCompatibilityDate}, the newest workerd ${workerRuntime.workerd} knows; ` +
        `wrangler.toml's ${wranglerConfig.compatibilityDate} needs a newer one: npm test runs it on today's workerd (${INSTALL_COMMAND})`,
    )
  }
  if (!process.env.DATABASE_URL) {
    const shared = shareableBinaries(serverOsUser())
    if (shared) process.env[PG_BIN_DIR_ENV] = shared
  }

  return async function teardown(): Promise<void> {
    // vitest's own children (its workers, still exiting) are vitest's to end; the CI runner checks
    // for them once vitest has exited. What they started is not. esbuild's service process leaves
    // by itself when the worker that started it has gone. A moment's grace for what is exiting.
    const leftOver = (): ProcessInfo[] => {
      const all = listProcesses()
      return markedWith(marker, all).filter((p) => p.pid !== process.pid && p.ppid !== process.pid && !isEsbuildService(p) && !isAncestor(p.pid, all))
    }
    const deadline = Date.now() + GRACE_MS
    let left: ProcessInfo[]
    while ((left = leftOver()).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    killAll(left)
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 })
    if (left.length > 0) {
      process.exitCode = 1 // vitest reports a teardown error but would still exit 0
      throw new Error(`processes left running after the test run (now killed):\n${describeProcesses(left)}`)
    }
  }
}

/** Whether `pid` is this process's parent, grandparent, ... (the runner or npm above us). */
function isAncestor(pid: number, all: ReturnType<typeof listProcesses>): boolean {
  const parentOf = new Map(all.map((p) => [p.pid, p.ppid]))
  for (let p = parentOf.get(process.pid); p !== undefined && p > 1; p = parentOf.get(p)) if (p === pid) return true
  return false
}
