/**
 * postgres.js (`postgres`) under the warmconn lifecycle. Each warmconn connection is a postgres.js
 * instance with `max: 1` and its own timers switched off, so the holder alone decides when to
 * ping, close and replace. Callers get the real `sql`: tagged templates, `sql.begin`, `sql.unsafe`.
 * @module
 */
import postgres from 'postgres'
import type { Classified, Driver, DriverConnection, OpenOptions } from '../driver.js'
import { classifyError, errorCode } from '../classify.js'
import { InvalidOptionError } from '../errors.js'
import { Holder } from '../holder.js'
import { describe, type HolderOptions } from '../options.js'
import { sharedHolder, stableKey } from '../registry.js'
import { parseConnectionUrl, safeDecode, secretsOf, tlsDefault } from '../url.js'
import { ARRAY_TYPES_QUERY, BUILT_IN_ARRAY_TYPES, installArrayTypes, knownArrayTypes, rememberArrayTypes, type TypeTables } from './postgres-arrays.js'
import { watchSession, type BuiltQuery } from './postgres-session.js'
import { isServerPid, looksLikePooler } from '../pooler.js'
import { refusedIdleTimeout, sessionIdleTimeout } from '../server-idle.js'
import { RESET_SESSION_SQL, ROLLBACK_AND_RESET_SQL } from '../session-state.js'
import { checkPassword, PasswordSource, type PasswordFunction } from '../password.js'
import { secretList } from '../secret-list.js'

export type Sql = postgres.Sql<Record<string, never>>
export type PostgresOptions = postgres.Options<Record<string, never>>

export interface WarmPostgresOptions extends HolderOptions {
  /** Passed through to postgres.js (ssl, prepare, types, transform...), except what warmconn owns. */
  postgres?: PostgresOptions
}

// The holder owns pool size and every timer; letting postgres.js run its own would close or
// reconnect behind the holder's back.
const OWNED = {
  max: 'maxConnections',
  idle_timeout: 'idleTimeoutMs',
  max_lifetime: 'maxLifetimeMs',
  connect_timeout: 'connectTimeoutMs',
  timeout: 'idleTimeoutMs',
} as const

/**
 * The shared holder for this URL and these options: created on first call, the same live one on
 * every later call (a warm invocation), a different one for another database, role or option set.
 * @example
 * const db = warmPostgres(process.env.DATABASE_URL)
 * export const handler = () => db.run((sql) => sql`select now()`)
 */
export function warmPostgres(url: string | undefined, options: WarmPostgresOptions = {}): Holder<Sql> {
  const { postgres: pgOptions, ...holderOptions } = options ?? {}
  const driver = postgresDriver(url, pgOptions)
  const key = stableKey({ driver: 'postgres', url, pgOptions, holderOptions })
  return sharedHolder(key, (forget) => new Holder(driver, holderOptions, { onClose: forget }))
}

/** The driver alone, for building a holder by hand: `new Holder(postgresDriver(url), options)`. */
export function postgresDriver(url: string | undefined, pgOptions: PostgresOptions = {}): Driver<Sql> {
  const parsed = parseConnectionUrl(url)
  if (pgOptions === null || typeof pgOptions !== 'object') throw new InvalidOptionError('postgres', 'expected an object of postgres.js options')
  for (const [key, instead] of Object.entries(OWNED)) {
    if (key in pgOptions) throw new InvalidOptionError(`postgres.${key}`, `warmconn manages this; use the "${instead}" option instead`)
  }
  const given = pgOptions.password ?? pgOptions.pass
  checkPassword(pgOptions.password === undefined ? 'postgres.pass' : 'postgres.password', given)
  if (typeof given === 'function' && parsed.password !== '') {
    throw new InvalidOptionError('postgres.password', 'the URL has a password already; leave it out of the URL when a function gives it')
  }
  const secrets = secretList(secretsOf(parsed, ...[pgOptions.password, pgOptions.pass].filter((p): p is string => typeof p === 'string')))
  const source = typeof given === 'function' ? new PasswordSource(given as PasswordFunction, 'postgres.password', secrets) : undefined
  checkIdentity(pgOptions)
  const user = pgOptions.user ?? pgOptions.username ?? safeDecode(parsed.username)
  const host = pgOptions.host ?? parsed.hostname
  const port = pgOptions.port ?? (parsed.port || 5432)
  const database = pgOptions.database ?? pgOptions.db ?? safeDecode(parsed.pathname.slice(1))

  const connectOptions = withSecureDefault(parsed, host, pgOptions)
  const pooledHost = [host].flat().some((h) => looksLikePooler(String(h), Number(port)))
  const firstHost = String([host].flat()[0] ?? '').split(',')[0]!
  // Array types: looked up once per server and database (see postgres-arrays.ts); not at all if
  // the caller switched fetch_types off.
  const arrays: ArrayTypeSource = {
    server: pgOptions.fetch_types === false ? undefined : JSON.stringify([host, port, database]),
    before: pgOptions.fetch_types === true,
  }
  const open = (o: OpenOptions, pgOpts: PostgresOptions): Promise<DriverConnection<Sql>> =>
    openConnection(url!, pgOpts, o, arrays, pooledHost, sessionIdleTimeout(o.serverIdleTimeoutMs, o.pooled, firstHost, Number(port)))
  return {
    name: 'postgres',
    secrets: secrets.all,
    target: `${user || '(default user)'}@${host}:${port}/${database || '(default database)'}`,
    // postgres.js names its prepared statements unless told not to (prepare: false).
    namedStatements: pgOptions.prepare !== false,
    open: (options) => (source ? source.open(options, (o, password) => open(o, { ...withoutPassword(connectOptions), pass: password })) : open(options, connectOptions)),
    classify: (err, conn): Classified => {
      const seen: Classified = refusedIdleTimeout(err, firstHost, Number(port))
        ? { kind: 'transient', code: 'STARTUP_PARAMETER_REFUSED', notSent: true, retryNow: true }
        : sqlLevelStatement(classifyError(err, errorCode(err)), err)
      return source ? source.classify(err, conn, seen) : seen
    },
  }
}

/** The connection's identity given as options: strings, and a port number (or one per host); messages and keys read them. */
function checkIdentity(pgOptions: PostgresOptions): void {
  const o = pgOptions as Record<string, unknown>
  for (const key of ['user', 'username', 'database', 'db']) {
    if (o[key] !== undefined && typeof o[key] !== 'string') throw new InvalidOptionError(`postgres.${key}`, `expected a string, got ${describe(o[key])}`)
  }
  const ports = [o.port].flat()
  const isPort = (p: unknown): boolean => (typeof p === 'number' || (typeof p === 'string' && /^\d+$/.test(p))) && Number(p) > 0 && Number(p) < 65536 && Number.isInteger(Number(p))
  if (o.port !== undefined && !ports.every(isPort)) {
    throw new InvalidOptionError('postgres.port', 'expected a port number (1 to 65535), or an array of them for several hosts')
  }
}

interface ArrayTypeSource {
  /** Key of the server and database in the array-type cache; undefined when fetch_types is off. */
  server: string | undefined
  /** `fetch_types: true` given: look the database's own array types up before the first statement. */
  before: boolean
}

async function openConnection(
  url: string,
  pgOptions: PostgresOptions,
  o: OpenOptions,
  arrays: ArrayTypeSource,
  pooledHost: boolean,
  idleSessionTimeoutMs: number | undefined,
): Promise<DriverConnection<Sql>> {
  let ending = false
  let rollingBack = false
  let authenticated = false
  // Set once the handshake's own ParameterStatus reports are in; during our reset, reports are expected.
  let reporting = false
  let resetting = false
  let backendPid: number | undefined
  const userNotice = pgOptions.onnotice
  const end = (): void => {
    ending = true
    void real.end({ timeout: 0 }).catch(() => {})
  }
  // The socket made here, not by postgres.js, so an idle connection can be unref'd (postgres.js
  // keeps its socket to itself). Only where postgres.js would make a plain node:net socket itself.
  const own = ownSocket(pgOptions)
  let socket: NodeSocket | undefined
  const real = postgres(url, {
    ...pgOptions,
    ...(own ? { socket: async (opts: SocketOptions) => (socket = await own(opts)) } : {}),
    max: 1,
    // postgres.js's own lookup can crash the process if the connection resets during it, and
    // costs a round trip per connection; see postgres-arrays.ts.
    fetch_types: false,
    idle_timeout: 0,
    max_lifetime: 0,
    connect_timeout: o.connectTimeoutMs / 1000,
    // idle_session_timeout: the server ends the session if a frozen process never comes back (server-idle.ts).
    connection: {
      application_name: o.applicationName,
      ...(idleSessionTimeoutMs === undefined ? {} : { idle_session_timeout: idleSessionTimeoutMs }),
      ...pgOptions.connection,
    },
    // The server reports its parameters once it has authenticated the connection: for a lazy
    // connect, the moment it is known to work. Handled after the rest of that packet, by when
    // the first statement has been sent and knows its backend.
    onparameter(key, value) {
      if (!authenticated) {
        authenticated = true
        queueMicrotask(() => {
          reporting = true
          if (ending) return
          backendPid ??= pidOf(session.first ?? undefined)
          session.first = null
          if (lazy) o.onReady(backendPid)
        })
      } else if (reporting && !resetting) {
        // Past the handshake's reports, the server reports a setting it was asked to change
        // (application_name, TimeZone, DateStyle, a role's is_superuser...): the session changed.
        session.changed = true
      }
      pgOptions.onparameter?.(key, value)
    },
    onclose(id) {
      if (!ending) {
        // postgres.js (max: 1) would silently open a new connection for the next statement; in
        // the middle of a caller's BEGIN ... COMMIT that would autocommit the rest of it, and
        // after a failed connect it would retry behind the holder's back. Ending the instance
        // makes every later statement fail (CONNECTION_ENDED) instead.
        end()
        o.onBroken()
      }
      pgOptions.onclose?.(id)
    },
    // Our own hygiene ROLLBACK may find no transaction; that warning (25P01) is expected then,
    // but a caller's COMMIT that finds none is news, so it is passed on.
    onnotice(notice) {
      if (notice.code === '25P01' && rollingBack) return
      if (userNotice) userNotice(notice)
      else console.log(notice)
    },
  }) as unknown as Sql
  const session = watchSession(real)
  const tables = real.options as unknown as TypeTables
  if (arrays.server !== undefined) {
    installArrayTypes(tables, BUILT_IN_ARRAY_TYPES)
    const known = knownArrayTypes(arrays.server)
    if (known) installArrayTypes(tables, known)
  }
  const needsLookup = (): boolean => arrays.server !== undefined && !knownArrayTypes(arrays.server)
  // The database's own array types, once per server and database (see postgres-arrays.ts).
  let lookup: BuiltQuery | undefined
  const lookUpArrays = async (): Promise<void> => {
    const query = real.unsafe<Array<{ oid: number; typarray: number }>>(ARRAY_TYPES_QUERY)
    lookup = query as unknown as BuiltQuery
    const types = (await query).map((r) => [Number(r.oid), Number(r.typarray)] as const)
    installArrayTypes(tables, types)
    rememberArrayTypes(arrays.server!, types)
  }

  // A lazy connection does no I/O here: the caller's first statement carries the handshake.
  // `fetch_types: true` asks for the database's own array types before that statement.
  const lazy = o.lazy && !(arrays.before && needsLookup())
  if (!lazy) {
    // Connect now, so a connect error surfaces here, where the holder retries it. Not
    // sql.reserve(): with fetch_types off a reserve on a new instance never resolves
    // (postgres.js 3.4.9), and a failed one stays queued and reconnects later, leaking a socket.
    try {
      if (arrays.before && needsLookup()) {
        session.started = true
        await lookUpArrays()
        backendPid = pidOf(lookup)
      } else {
        const opener = real`select 1`
        session.started = true
        await opener
        backendPid = pidOf(opener as unknown as BuiltQuery)
      }
    } catch (err) {
      end()
      throw err
    }
  }

  return {
    client: session.sql,
    sharedClient: session.shared,
    backendPid,
    lazy,
    get direct() {
      return o.pooled === false || (o.pooled !== true && !pooledHost && isServerPid(backendPid))
    },
    // After the first call, not before it: the first statement of a process costs no lookup, and
    // nothing is pipelined behind the lookup (the holder waits for it before the next call).
    maintain: () => (needsLookup() ? lookUpArrays() : undefined),
    ping: async () => void (await real`select 1`),
    // Made before the caller's first statement, it is written with it (postgres.js pipelines on
    // one connection and writes once per event-loop turn), and its answer comes back first.
    probe: async () => void (await real`select 1`),
    inTransaction: () => session.inTransaction,
    sessionChanged: () => session.changed,
    async resetSession(rollbackFirst) {
      rollingBack = rollbackFirst
      resetting = true
      try {
        // Simple protocol: several statements in one message, one flight, no prepared statement.
        await real.unsafe(rollbackFirst ? ROLLBACK_AND_RESET_SQL : RESET_SESSION_SQL).simple()
      } finally {
        rollingBack = false
        resetting = false
      }
      session.inTransaction = false
      session.changed = false
    },
    async rollback() {
      rollingBack = true
      try {
        await real.unsafe('rollback')
      } finally {
        rollingBack = false
      }
      session.inTransaction = false
    },
    idle: (idle) => void (idle ? socket?.unref?.() : socket?.ref?.()),
    async close(timeoutMs) {
      ending = true
      socket?.ref?.()
      await real.end({ timeout: timeoutMs / 1000 })
    },
    destroy: () => (socket?.ref?.(), end()),
  }
}

/**
 * A 26000 raised by the caller's own EXECUTE or DEALLOCATE names an SQL-level statement (its
 * own, missing), not one of postgres.js's: postgres.js keeps the failed statement's text in `query`.
 */
function sqlLevelStatement(seen: Classified, err: unknown): Classified {
  if (seen.code !== '26000') return seen
  const query = (err as { query?: unknown } | null)?.query
  return typeof query === 'string' && /^\s*(execute|deallocate)\b/i.test(query) ? { ...seen, sqlLevel: true } : seen
}

/** The options with the caller's password function taken out: postgres.js is given each attempt's string instead. */
function withoutPassword(pgOptions: PostgresOptions): PostgresOptions {
  const { password: _password, pass: _pass, ...rest } = pgOptions
  return rest
}

interface NodeSocket {
  ref?(): unknown
  unref?(): unknown
}

/**
 * A factory for the connection's TCP socket, made and connected as postgres.js would (one host,
 * no Unix socket path, no socket of the caller's): undefined where that cannot hold (workerd,
 * where postgres.js's own build makes a Workers socket).
 */
function ownSocket(o: PostgresOptions): ((opts: SocketOptions) => Promise<NodeSocket>) | undefined {
  const g = globalThis as { process?: { versions?: { node?: string } }; navigator?: { userAgent?: string } }
  if (typeof g.process?.versions?.node !== 'string' || g.navigator?.userAgent === 'Cloudflare-Workers') return undefined
  const opts = o as { socket?: unknown; host?: unknown }
  // Several hosts: postgres.js moves to the next one on its own; leave the socket to it.
  if (opts.socket !== undefined || (Array.isArray(opts.host) && opts.host.length > 1) || String(opts.host ?? '').includes(',')) return undefined
  return async ({ host, port, path }) => {
    const net = await import('node:net')
    const s = new net.Socket() as InstanceType<typeof net.Socket> & { host?: string; port?: number }
    // postgres.js reads these for TLS (the server name) and its error messages.
    s.host = host[0]!
    s.port = port[0]!
    // No Nagle, as libpq and node-postgres: postgres.js leaves it on, so a statement written
    // while the connection's last flight is unacknowledged (pipelining, or a probe then the
    // statement) waits for that ACK, which the peer may delay by up to 40 ms (Linux).
    s.setNoDelay(true)
    if (path) s.connect(path)
    else s.connect(port[0]!, host[0]!)
    return s
  }
}

interface SocketOptions {
  host: string[]
  port: number[]
  path: string | false | undefined
}
function pidOf(query: BuiltQuery | undefined): number | undefined {
  const pid = query?.state?.pid
  return typeof pid === 'number' ? pid : undefined
}

/** warmconn's TLS default (see tlsDefault in url.ts), in postgres.js's words. */
function withSecureDefault(url: URL, host: string | string[] | undefined, pgOptions: PostgresOptions): PostgresOptions {
  const list = Array.isArray(host) ? host : [host ?? '']
  if (!list.every((h) => typeof h === 'string')) throw new InvalidOptionError('postgres.host', 'expected a host name or an array of them')
  const tls = tlsDefault(url, list.flatMap((h) => h.split(',')), 'ssl' in pgOptions)
  if (!tls) return pgOptions
  // postgres.js sends no server name for an IP address, and Node then checks the certificate
  // against "localhost"; naming the host makes the check be against the address itself.
  if (tls.ipAddress) return { ...pgOptions, ssl: { host: tls.ipAddress } as never }
  return { ...pgOptions, ssl: 'verify-full' }
}




