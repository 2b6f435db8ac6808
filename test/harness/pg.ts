/**
 * A throwaway real PostgreSQL per test file, with helpers to observe and break it.
 *
 * Default: an embedded PostgreSQL 18 on a free 127.0.0.1 port, logging every statement. With
 * DATABASE_URL set, the existing server at that URL instead: no restarts/stops and no statement
 * log there, `settings` cannot be applied, `maxConnections` is ignored (fillConnections reads the
 * real max_connections) and appUrl equals url (no role is created on a server we do not own).
 */
import { randomBytes } from 'node:crypto'
import postgres, { type Sql } from 'postgres'
import { statementOf, type LogRecord } from './pg-log.js'
import { startEmbeddedServer, type EmbeddedServer } from './pg-server.js'

export interface StartOptions {
  /** max_connections, default 100. superuser_reserved_connections stays 3. */
  maxConnections?: number
  /** Extra server settings, passed as `-c name=value` (log_line_prefix cannot be overridden). */
  settings?: Record<string, string | number>
}

export interface UrlOptions {
  port?: number
  user?: string
  password?: string
  database?: string
  /** Added as query parameters. */
  params?: Record<string, string>
}

export interface Backend {
  pid: number
  state: string
  application_name: string
  xact_start: Date | null
  backend_xid: string | null
}

export interface StatementFilter {
  pid?: number
  applicationName?: string
  /** A position from mark(): only statements logged after it. */
  since?: number
}

export interface TestPg {
  /** postgres://postgres:<password>@127.0.0.1:<port>/postgres (a superuser). */
  readonly url: string
  /** Same server as the non-superuser role `app` (same password): hits max_connections like an application would. */
  readonly appUrl: string
  readonly host: string
  readonly port: number
  readonly password: string
  readonly database: string
  urlFor(opts?: UrlOptions): string
  /** postgres.js, max 1, application_name 'warmconn-test-admin'. A new instance after a restart: do not keep a reference. */
  readonly admin: Sql
  /** Client backends from pg_stat_activity, without the admin connection. */
  backends(applicationName?: string): Promise<Backend[]>
  /** pg_terminate_backend on matching client backends (all but admin when the filter is empty); resolves once they are gone. */
  terminate(filter: { applicationName?: string; pid?: number }): Promise<number>
  restart(): Promise<void>
  stopServer(): Promise<void>
  startServer(): Promise<void>
  /**
   * ALTER SYSTEM + reload; resolves once a new session sees it. An already open session picks it up
   * only after its next statement (the idle timer is armed when it goes idle). The admin is exempt.
   */
  setIdleSessionTimeout(ms: number): Promise<void>
  resetIdleSessionTimeout(): Promise<void>
  /** Holds connections as `app` until exactly `leaveFree` more `app` connections can be opened. */
  fillConnections(leaveFree: number): Promise<{ release(): Promise<void> }>
  /** Resolves once every log line written before the call has been parsed. */
  flushLog(): Promise<void>
  /** A log position after everything logged so far (flushes first). */
  mark(): Promise<number>
  /**
   * SQL text (trimmed) of statements the server logged, oldest first, excluding the admin's.
   * Bind parameters stay as $1..; each cursor fetch logs its statement again.
   */
  statements(filter?: StatementFilter): Promise<string[]>
  /** Raw parsed log records (e.g. FATAL lines); the admin's are included. */
  logRecords(since?: number): Promise<LogRecord[]>
  /** Stops the server and deletes its data; idempotent. */
  stop(): Promise<void>
}

const ADMIN_APP = 'warmconn-test-admin'
const FILLER_APP = 'warmconn-test-filler'
const APP_ROLE = 'app'
const quiet = { onnotice: () => {} } // postgres.js prints notices to the console by default

interface Target {
  host: string
  port: number
  user: string
  password: string
  database: string
  params: URLSearchParams
}

export async function startPostgres(opts: StartOptions = {}): Promise<TestPg> {
  const external = process.env.DATABASE_URL
  if (external) {
    if (opts.settings) throw new Error('startPostgres: `settings` need the embedded server; unset DATABASE_URL')
    const u = new URL(external)
    const user = decodeURIComponent(u.username)
    return makeTestPg({
      host: u.hostname,
      port: Number(u.port || 5432),
      user,
      password: decodeURIComponent(u.password),
      database: decodeURIComponent(u.pathname.slice(1)) || user,
      params: u.searchParams,
    })
  }
  const password = process.env.WC_TEST_PASSWORD || `wc-pw-${randomBytes(12).toString('hex')}`
  const server = await startEmbeddedServer(password, {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '', // TCP only: no socket files to collide or clean up
    max_connections: String(opts.maxConnections ?? 100),
    // A throwaway server: durability only costs time.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    log_statement: 'all',
    ...Object.fromEntries(Object.entries(opts.settings ?? {}).map(([k, v]) => [k, String(v)])),
  })
  const target = { host: '127.0.0.1', port: server.port, user: 'postgres', password, database: 'postgres', params: new URLSearchParams() }
  try {
    const pg = makeTestPg(target, server)
    await createAppRole(pg.admin, password)
    return pg
  } catch (error) {
    await server.destroy()
    throw error
  }
}

function makeTestPg(target: Target, server?: EmbeddedServer): TestPg {
  const urlFor = (o: UrlOptions = {}): string => {
    const auth = `${encodeURIComponent(o.user ?? target.user)}:${encodeURIComponent(o.password ?? target.password)}`
    const params = new URLSearchParams(target.params)
    for (const [k, v] of Object.entries(o.params ?? {})) params.set(k, v)
    const query = params.toString() ? `?${params}` : ''
    return `postgres://${auth}@${target.host}:${o.port ?? target.port}/${encodeURIComponent(o.database ?? target.database)}${query}`
  }
  const url = urlFor()
  const appUrl = server ? urlFor({ user: APP_ROLE }) : url
  const connectAdmin = (): Sql =>
    postgres(url, {
      max: 1,
      ...quiet,
      // Immune to setIdleSessionTimeout, so assertions never race the admin's own termination.
      connection: { application_name: ADMIN_APP, idle_session_timeout: 0 },
    })
  let admin = connectAdmin()
  const fillers = new Set<Sql>() // open fillConnections() clients, ended by stop()
  let flushes = 0
  let stopped: Promise<void> | undefined

  const embedded = (what: string): EmbeddedServer => {
    if (!server) throw new Error(`${what} needs the embedded server; unset DATABASE_URL to use it`)
    return server
  }

  const backends = async (applicationName?: string): Promise<Backend[]> =>
    admin<Backend[]>`
      select pid, coalesce(state, '') as state, application_name, xact_start, backend_xid::text as backend_xid
      from pg_stat_activity
      where backend_type = 'client backend' and pid <> pg_backend_pid()
        and (${applicationName ?? null}::text is null or application_name = ${applicationName ?? null})
      order by backend_start`

  const waitUntilGone = async (pids: number[]): Promise<void> => {
    await poll(`backends ${pids.join(', ')} to exit`, async () => {
      const [row] = await admin<[{ left: number }]>`select count(*)::int as left from pg_stat_activity where pid = any(${pids}::int[])`
      return row?.left === 0
    })
  }

  const flushLog = async (): Promise<void> => {
    const log = embedded('the statement log').log
    // Whatever a backend logged before this call was written to the server's stderr before the
    // marker, so once the marker has been parsed, so have those lines.
    const token = `warmconn-log-flush-${++flushes}`
    const seen = log.waitFor((r) => r.message.includes(token), log.records.length, 5_000)
    await admin.unsafe(`select '${token}'`)
    await seen
  }

  const pg: TestPg = {
    url,
    appUrl,
    host: target.host,
    port: target.port,
    password: target.password,
    database: target.database,
    urlFor,
    get admin() {
      return admin
    },
    backends,

    async terminate({ applicationName, pid }) {
      const victims = (await backends(applicationName)).filter((b) => pid === undefined || b.pid === pid).map((b) => b.pid)
      if (victims.length === 0) return 0
      await admin`select pg_terminate_backend(pid) from unnest(${victims}::int[]) as pid`
      await waitUntilGone(victims)
      return victims.length
    },

    async restart() {
      await pg.stopServer()
      await pg.startServer()
    },

    async stopServer() {
      const s = embedded('stopServer')
      await admin.end({ timeout: 0 })
      await s.stop()
    },

    async startServer() {
      await embedded('startServer').start()
      admin = connectAdmin()
    },

    async setIdleSessionTimeout(ms) {
      if (!Number.isInteger(ms) || ms < 0) throw new Error(`idle_session_timeout must be a whole number of ms, got ${ms}`)
      await admin.unsafe(`alter system set idle_session_timeout = ${ms}`)
      await reloadUntilNewSessionsSee(String(ms))
    },

    async resetIdleSessionTimeout() {
      await admin.unsafe('alter system reset idle_session_timeout')
      await reloadUntilNewSessionsSee('0')
    },

    async fillConnections(leaveFree) {
      // Slots a non-superuser may still take: superuser_reserved_connections (and, since PG 16,
      // reserved_connections) are kept back from `app`, so max_connections alone overcounts.
      const [row] = await admin<[{ free: number }]>`
        select current_setting('max_connections')::int
             - current_setting('superuser_reserved_connections')::int
             - coalesce(current_setting('reserved_connections', true)::int, 0)
             - (select count(*) from pg_stat_activity where backend_type = 'client backend')::int as free`
      const count = (row?.free ?? 0) - leaveFree
      if (count < 0) throw new Error(`fillConnections(${leaveFree}): only ${row?.free} slots are free`)
      const held = Array.from({ length: count }, () =>
        postgres(appUrl, { max: 1, ...quiet, fetch_types: false, connection: { application_name: FILLER_APP } }),
      )
      const end = async (): Promise<void> => {
        for (const sql of held) fillers.delete(sql)
        await Promise.all(held.map((sql) => sql.end({ timeout: 0 })))
      }
      for (const sql of held) fillers.add(sql)
      let pids: number[]
      try {
        pids = await Promise.all(held.map(async (sql) => (await sql<[{ pid: number }]>`select pg_backend_pid() as pid`)[0]!.pid))
      } catch (error) {
        await end()
        throw error
      }
      return {
        // The client side closes at once but the server frees the slot a moment later; callers
        // count on the slots being free when this resolves.
        release: async () => {
          await end()
          await waitUntilGone(pids)
        },
      }
    },

    flushLog,

    async mark() {
      await flushLog()
      return embedded('mark').log.records.length
    },

    async statements({ pid, applicationName, since = 0 } = {}) {
      const records = await pg.logRecords(since)
      return records
        .filter((r) => r.applicationName !== ADMIN_APP)
        .filter((r) => (pid === undefined || r.pid === pid) && (applicationName === undefined || r.applicationName === applicationName))
        .map(statementOf)
        .filter((sql): sql is string => sql !== undefined)
    },

    async logRecords(since = 0) {
      await flushLog()
      return embedded('logRecords').log.records.slice(since)
    },

    stop() {
      return (stopped ??= (async () => {
        await Promise.all([...fillers].map((sql) => sql.end({ timeout: 0 })))
        await admin.end({ timeout: 0 })
        await server?.destroy()
      })())
    },
  }

  // A fresh session reads the configuration at start, so once one sees `expected`, the postmaster
  // has reloaded and every later session will too.
  const reloadUntilNewSessionsSee = async (expected: string): Promise<void> => {
    await admin`select pg_reload_conf()`
    await poll(`idle_session_timeout = ${expected} in new sessions`, async () => {
      const probe = postgres(url, { max: 1, ...quiet, fetch_types: false, connection: { application_name: ADMIN_APP } })
      try {
        const [row] = await probe<[{ setting: string }]>`select setting from pg_settings where name = 'idle_session_timeout'`
        return row?.setting === expected
      } finally {
        await probe.end({ timeout: 0 })
      }
    })
  }

  return pg
}

/**
 * The role behind appUrl. Its password must not reach the statement log, so this one transaction
 * turns off log_statement (and the error log's copy of a failed statement).
 */
async function createAppRole(admin: Sql, password: string): Promise<void> {
  await admin.begin(async (tx) => {
    await tx.unsafe("set local log_statement = 'none'")
    await tx.unsafe("set local log_min_error_statement = 'panic'")
    await tx.unsafe(`create role ${APP_ROLE} login password '${password.replaceAll("'", "''")}'`)
  })
}

async function poll(what: string, done: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
