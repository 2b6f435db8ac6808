/**
 * One directory for every temporary file of the run.
 * @module
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Creates the run's directory and points TMPDIR at it. Call it before anything asks os.tmpdir():
 * the PostgreSQL data directory (and the password file initdb reads), the Worker bundle,
 * Miniflare's scratch space and the Lambda bundle then all land inside, and one synchronous
 * removal on exit leaves none of them behind, however the process exits, even when a library's
 * own handler ends it first (a SIGKILL, of course, runs nothing).
 * @example const dir = scopeTempDir() // /tmp/warmconn-demo-Ab12Cd
 */
export function scopeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-demo-'))
  // Run as root, PostgreSQL runs as the `postgres` OS user, which must reach its data directory.
  chmodSync(dir, 0o755)
  process.env.TMPDIR = dir
  process.on('exit', () => {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
    } catch (error) {
      // A throw here would replace the exit code and print a stack; one line says enough.
      console.error(`could not remove ${dir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`)
    }
  })
  return dir
}
