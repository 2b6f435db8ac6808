/**
 * A setup file for every test file: once the file's own hooks are done, nothing it started may
 * still run. Whatever does (a server, a child process, workerd) is named, killed, and fails the
 * file, so a leak is found where it happens instead of as a hang at the end of the run.
 * @module
 */
import { afterAll } from 'vitest'
import { describeProcesses, descendantsOf, isEsbuildService, killAll, type ProcessInfo } from './processes.js'

/** How long a process that was told to stop may take to be gone (a server's fast shutdown). */
const GRACE_MS = 3_000

// Registered before the file's own hooks, so with vitest's default hook order ('stack') it runs after them.
afterAll(async () => {
  const deadline = Date.now() + GRACE_MS
  let left: ProcessInfo[]
  while ((left = leftOver()).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  if (left.length === 0) return
  killAll(left)
  throw new Error(`processes left running after this file's last hook (now killed):\n${describeProcesses(left)}`)
})

function leftOver(): ProcessInfo[] {
  return descendantsOf(process.pid).filter((p) => !isEsbuildService(p))
}
