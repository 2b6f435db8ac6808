/**
 * postgres.js (`postgres`) under the warmconn lifecycle. Each warmconn connection is a postgres.js
 * instance with `max: 1` and its own timers switched off, so the holder alone decides when to
 * ping, close and replace. Callers get the real `sql`: tagged templates, `sql.begin`, `sql.unsafe`.
 * @module
 */
import postgres from 'postgres'
import type { Classified, Driver, DriverConnection, OpenOptions } from '../driver.js'
import { classifyError, errorCode, nextTxState } from '../classify.js'
import { InvalidOptionError } from '../errors.js'
import { Holder } from '../holder.js'
import type { HolderOptions } from '../options.js'
import { sharedHolder, stableKey } from '../registry.js'
import { parseConnectionUrl, safeDecode, secretsOf, tlsDefault } from '../url.js'
import { ARRAY_TYPES_QUERY, installArrayTypes, knownArrayTypes, rememberArrayTypes, type TypeTables } from './postgres-arrays.js'

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
  const secrets = secretsOf(parsed, ...[pgOptions.password, pgOptions.pass].filter((p): p is string => typeof p === 'string'))
  const user = pgOptions.user ?? pgOptions.username ?? safeDecode(parsed.username)
  const host = pgOptions.host ?? parsed.hostname
  const port = pgOptions.port ?? (parsed.port || 5432)
  const database = pgOptions.database ?? pgOptions.db ?? safeDecode(parsed.pathname.slice(1))

  const connectOptions = withSecureDefault(parsed, host, pgOptions)
  // Array types: looked up once per server and database (see postgres-arrays.ts); not at all if
  // the caller switched fetch_types off.
  const arrays: ArrayTypeSource = { server: pgOptions.fetch_types === false ? undefined : JSON.stringify([host, port, database]) }
  return {
    name: 'postgres',
    secrets,
    target: `${user || '(default user)'}@${host}:${port}/${database || '(default database)'}`,
    open: (options) => openConnection(url!, connectOptions, options, arrays),
    classify: (err): Classified => classifyError(err, errorCode(err)),
  }
}

interface ArrayTypeSource {
  /** Key of the server and database in the array-type cache; undefined when fetch_types is off. */
  server: string | undefined
}

async function openConnection(url: string, pgOptions: PostgresOptions, o: OpenOptions, arrays: ArrayTypeSource): Promise<DriverConnection<Sql>> {
  let inTransaction = false
  let ready = false
  let ending = false
  let rollingBack = false
  const userNotice = pgOptions.onnotice
  const sql = postgres(url, {
    ...pgOptions,
    max: 1,
    // postgres.js's own lookup can crash the process if the connection resets during it; warmconn
    // runs it instead, below, as a query whose failure is an ordinary connect error.
    fetch_types: false,
    idle_timeout: 0,
    max_lifetime: 0,
    connect_timeout: o.connectTimeoutMs / 1000,
    connection: { application_name: o.applicationName, ...pgOptions.connection },
    onclose(id) {
      if (ready && !ending) {
        // postgres.js (max: 1) would silently open a new connection for the next statement; in
        // the middle of a caller's BEGIN ... COMMIT that would autocommit the rest of it. Ending
        // the instance makes every later statement fail (CONNECTION_ENDED) instead.
        ending = true
        void sql.end({ timeout: 0 }).catch(() => {})
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
  // Transaction state is tracked from the statements sent, through postgres.js's debug hook. It
  // is installed after creation on purpose: postgres.js reads `debug` once at creation to decide
  // whether to capture a stack trace for every query (~30 microseconds each, measured), but calls
  // the hook from the live options, so this way only a caller who asked for debug pays for it.
  const sent = (id: number, query: string, parameters: unknown[], types: unknown[]): void => {
    inTransaction = nextTxState(inTransaction, query)
    if (typeof pgOptions.debug === 'function') pgOptions.debug(id, query, parameters, types as never)
  }
  ;(sql.options as unknown as { debug: unknown }).debug = sent
  let backendPid: number | undefined
  try {
    const tables = sql.options as unknown as TypeTables
    const known = arrays.server === undefined ? undefined : knownArrayTypes(arrays.server)
    if (known) installArrayTypes(tables, known)
    // A first query forces the handshake now, so connect errors surface here where the holder
    // retries them, and reports the backend pid. Not sql.reserve(): a failed reserve stays
    // queued inside postgres.js, which reconnects for it later and leaks a connection.
    const [row] = await sql`select pg_backend_pid() as pid`
    backendPid = Number(row?.pid)
    if (arrays.server !== undefined && !known) {
      const rows = await sql.unsafe<Array<{ oid: number; typarray: number }>>(ARRAY_TYPES_QUERY)
      const types = rows.map((r) => [Number(r.oid), Number(r.typarray)] as const)
      installArrayTypes(tables, types)
      rememberArrayTypes(arrays.server, types)
    }
  } catch (err) {
    ending = true
    void sql.end({ timeout: 0 }).catch(() => {})
    throw err
  }
  ready = true
  return {
    client: sql,
    backendPid,
    async ping() {
      await sql`select 1`
    },
    inTransaction: () => inTransaction,
    async rollback() {
      rollingBack = true
      try {
        await sql.unsafe('rollback')
      } finally {
        rollingBack = false
      }
      inTransaction = false
    },
    async close(timeoutMs) {
      ending = true
      await sql.end({ timeout: timeoutMs / 1000 })
    },
    destroy() {
      ending = true
      void sql.end({ timeout: 0 }).catch(() => {})
    },
  }
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




