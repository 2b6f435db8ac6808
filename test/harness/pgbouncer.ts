/**
 * A throwaway PgBouncer in front of a test PostgreSQL (see pg.ts), to run the drivers through a
 * real transaction pooler. Config and userlist live in a temp directory that stop() deletes; a
 * process exit handler and an orphan sweep on the next start clean up after a crashed run.
 *
 * PgBouncer refuses to run as root, so as root it is started with `-u postgres` (the OS user the
 * embedded server runs as, see os-user.ts) and its directory is handed to that user.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, chownSync, constants, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { createInterface } from 'node:readline'
import postgres, { type Sql } from 'postgres'
import type { TestPg, UrlOptions } from './pg.js'
import { freePort } from './ports.js'
import { serverOsUser } from './os-user.js'
import { isAlive } from './processes.js'
import type { Requirement } from '../helpers/requires.js'

export interface PgBouncerOptions {
  /** Default 'transaction', the mode serverless poolers (RDS Proxy, Supavisor, Hyperdrive) use. */
  poolMode?: 'transaction' | 'session'
  /** Server connections per database/user pair; default 20. */
  defaultPoolSize?: number
  /** Client connections PgBouncer accepts; default 250. */
  maxClientConn?: number
  /** client_idle_timeout, whole seconds: PgBouncer closes a client connection idle this long. Default off. */
  clientIdleTimeoutSeconds?: number
}

/** A row of SHOW POOLS: one pool per database/user pair. */
export interface PoolRow {
  database: string
  user: string
  /** Clients linked to a server, or idle with nothing to send. */
  cl_active: number
  /** Clients with a query queued for a free server connection. */
  cl_waiting: number
  sv_active: number
  sv_idle: number
  sv_used: number
  sv_login: number
  pool_mode: string
}

/** A row of SHOW SERVERS / SHOW CLIENTS (the same columns). */
export interface ConnRow {
  type: 'S' | 'C'
  user: string
  database: string
  state: string
  /** For a server: the PostgreSQL backend pid behind it. */
  remote_pid: number
  application_name: string
}

export interface TestPgBouncer {
  readonly host: string
  readonly port: number
  /** The test server's URL, through PgBouncer, as `app` (default) or the superuser. */
  url(user?: 'app' | 'postgres'): string
  /** pg.urlFor with PgBouncer's port: another password, database or parameters. */
  urlFor(opts?: Omit<UrlOptions, 'port'>): string
  /** SHOW POOLS, without PgBouncer's own admin pool. */
  showPools(): Promise<PoolRow[]>
  /** SHOW SERVERS: PgBouncer's connections to PostgreSQL, with their backend pids. */
  showServers(): Promise<ConnRow[]>
  /** SHOW CLIENTS, without the admin console connection these helpers use. */
  showClients(): Promise<ConnRow[]>
  /** PgBouncer's log lines so far (connections, closes and why). */
  log(): string[]
  /** Stops PgBouncer (its server connections close) and deletes its directory; idempotent. */
  stop(): Promise<void>
}

const DIR_PREFIX = 'warmconn-pgbouncer-'
const ADMIN_APP = 'warmconn-test-pgbouncer-admin'

/** The pgbouncer binary: $PGBOUNCER, then PATH, then /usr/sbin (Debian installs it there). */
export const pgBouncerBinary = [
  process.env.PGBOUNCER,
  ...(process.env.PATH ?? '').split(delimiter).map((dir) => dir && join(dir, 'pgbouncer')),
  '/usr/sbin/pgbouncer',
].find((path): path is string => Boolean(path) && isExecutable(path!))

/**
 * For `describe(name, requires(pgBouncer), ...)`: skipped where PgBouncer is not installed, except
 * on CI, where `.ci/run` installs it, so a missing binary fails the run (startPgBouncer throws).
 */
export const pgBouncer: Requirement = {
  what: 'pgbouncer',
  missing: pgBouncerBinary === undefined ? 'pgbouncer is not installed' : undefined,
  enable: 'apt-get install pgbouncer (as .ci/run does), or set PGBOUNCER=/path/to/pgbouncer',
}

/** For branches written before requires(): skips without the line at the end of `npm test`. Prefer requires(pgBouncer). */
export const skipPgBouncer = pgBouncer.missing !== undefined && !process.env.CI

const live = new Map<string, ChildProcess>() // temp dir -> running pgbouncer
// An 'exit' handler may only do synchronous work: kill hard and delete.
process.on('exit', () => {
  for (const [dir, child] of live) {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

/**
 * Starts PgBouncer on a free 127.0.0.1 port in front of `pg`, authenticating clients and servers
 * with SCRAM from a plain-text userlist, and resolves once it accepts connections.
 * @example const bouncer = await startPgBouncer(pg, { defaultPoolSize: 5 }); warmPostgres(bouncer.url(), { postgres: { prepare: false } })
 */
export async function startPgBouncer(pg: TestPg, opts: PgBouncerOptions = {}): Promise<TestPgBouncer> {
  if (!pgBouncerBinary) throw new Error('pgbouncer is not installed (apt-get install pgbouncer, as .ci/run does)')
  removeOrphans()
  const superuser = decodeURIComponent(new URL(pg.url).username)
  const appUser = decodeURIComponent(new URL(pg.appUrl).username)
  const dir = join(tmpdir(), `${DIR_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`)
  mkdirSync(dir, { mode: 0o700 })
  try {
    // scram-sha-256 with plain-text passwords: PgBouncer can then both check a client's SCRAM
    // proof and log in to the server with SCRAM (the embedded server's auth method).
    const users = [...new Set([superuser, appUser])]
    writeFileSync(join(dir, 'userlist.txt'), users.map((u) => `${quote(u)} ${quote(pg.password)}\n`).join(''), { mode: 0o600 })
    const owner = serverOsUser()
    // A port taken between freePort() and PgBouncer's bind is retried with another one.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      writeFileSync(join(dir, 'pgbouncer.ini'), ini({ dir, port, pg, superuser, opts }))
      if (owner) for (const name of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(join(dir, name), owner.uid, owner.gid)
      const child = spawn(pgBouncerBinary, [...(owner ? ['-u', owner.name] : []), join(dir, 'pgbouncer.ini')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      live.set(dir, child)
      // 'close', not 'exit': by then every line it wrote has been read.
      const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
      const lines: string[] = []
      // Its own log line, not a TCP probe, says it is up: a probe could reach another process
      // that took the port first.
      const up = await new Promise<boolean>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`pgbouncer did not listen on port ${port} within 10 s`)), 10_000)
        const done = (ok: boolean): void => (clearTimeout(timer), resolve(ok))
        for (const input of [child.stdout!, child.stderr!]) {
          createInterface({ input }).on('line', (line) => {
            lines.push(line)
            if (line.includes(`listening on 127.0.0.1:${port}`)) done(true)
          })
        }
        void exited.then(() => done(false))
      })
      if (up) return handle({ dir, port, child, exited, lines, pg, superuser, appUser })
      live.delete(dir)
      const why = lines.slice(-5).join('\n')
      if (attempt < 3 && /Address already in use/.test(why)) continue
      throw new Error(`pgbouncer did not start on port ${port}:\n${why}`)
    }
  } catch (error) {
    live.get(dir)?.kill('SIGKILL')
    live.delete(dir)
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

function ini(c: { dir: string; port: number; pg: TestPg; superuser: string; opts: PgBouncerOptions }): string {
  return `[databases]
; any database name maps to the same name on the test server
* = host=${c.pg.host} port=${c.pg.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${c.port}
; TCP only: no socket file to collide or clean up
unix_socket_dir =
pidfile = ${join(c.dir, 'pgbouncer.pid')}
auth_type = scram-sha-256
auth_file = ${join(c.dir, 'userlist.txt')}
admin_users = ${c.superuser}
pool_mode = ${c.opts.poolMode ?? 'transaction'}
default_pool_size = ${c.opts.defaultPoolSize ?? 20}
max_client_conn = ${c.opts.maxClientConn ?? 250}
client_idle_timeout = ${c.opts.clientIdleTimeoutSeconds ?? 0}
`
}

interface Running {
  dir: string
  port: number
  child: ChildProcess
  exited: Promise<void>
  lines: string[]
  pg: TestPg
  superuser: string
  appUser: string
}

function handle(r: Running): TestPgBouncer {
  const urlFor = (o: Omit<UrlOptions, 'port'> = {}): string => r.pg.urlFor({ ...o, port: r.port })
  let admin: Sql | undefined
  // The admin console speaks only the simple protocol: sql.unsafe without parameters uses it, and
  // fetch_types would send a query the console does not know.
  const adminConsole = (): Sql =>
    (admin ??= postgres(urlFor({ user: r.superuser, database: 'pgbouncer' }), {
      max: 1,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: ADMIN_APP },
    }))
  const show = async <T>(what: string): Promise<T[]> => [...(await adminConsole().unsafe<T[]>(`SHOW ${what}`))]
  let stopped: Promise<void> | undefined

  return {
    host: '127.0.0.1',
    port: r.port,
    url: (user = 'app') => urlFor({ user: user === 'app' ? r.appUser : r.superuser }),
    urlFor,
    showPools: async () => (await show<PoolRow>('POOLS')).filter((p) => p.database !== 'pgbouncer'),
    showServers: () => show<ConnRow>('SERVERS'),
    showClients: async () => (await show<ConnRow>('CLIENTS')).filter((c) => c.application_name !== ADMIN_APP),
    log: () => [...r.lines],
    stop: () =>
      (stopped ??= (async () => {
        await admin?.end({ timeout: 0 })
        r.child.kill('SIGTERM') // immediate shutdown: server and client connections are closed
        const killer = setTimeout(() => r.child.kill('SIGKILL'), 5_000)
        await r.exited
        clearTimeout(killer)
        live.delete(r.dir)
        rmSync(r.dir, { recursive: true, force: true })
      })()),
  }
}

/** Kills PgBouncers whose test process died without its exit handler (SIGKILL, OOM) and deletes their directories. */
function removeOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    const owner = name.startsWith(DIR_PREFIX) ? Number(name.slice(DIR_PREFIX.length).split('-')[0]) : NaN
    if (!Number.isInteger(owner) || isAlive(owner)) continue
    const dir = join(tmpdir(), name)
    try {
      const pid = Number(readFileSync(join(dir, 'pgbouncer.pid'), 'utf8').trim())
      // Only if that pid still runs our config: pids get reused.
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) process.kill(pid, 'SIGKILL')
    } catch {
      // no pid file or no such process: nothing to kill
    }
    rmSync(dir, { recursive: true, force: true })
  }
}


function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** A userlist.txt field: double-quoted, with " doubled. */
function quote(s: string): string {
  return `"${s.replaceAll('"', '""')}"`
}
