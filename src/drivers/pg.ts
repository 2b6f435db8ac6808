/**
 * node-postgres (`pg`) under the warmconn lifecycle. `warmPg` hands `run` a real `pg.Client`;
 * `warmPool` is a pg.Pool-shaped pool (src/pool.ts) for Drizzle, Kysely, Prisma and Vercel's
 * attachDatabasePool. What pg shares with neon's Client lives in pg-client.ts.
 * @module
 */
import pg from 'pg'
import type { Classified, Driver, DriverConnection, OpenOptions } from '../driver.js'
import { InvalidOptionError } from '../errors.js'
import { Holder } from '../holder.js'
import type { HolderOptions } from '../options.js'
import { POOL_MAX_CONNECTIONS, poolOptions, sharedPool, type WarmPoolOptions } from '../pool.js'
import { mergeClientOptions } from '../pool-config.js'
import { sharedHolder, stableKey } from '../registry.js'
import { parseConnectionUrl, safeDecode, secretsOf, tlsDefault } from '../url.js'
import { classifyClientError, openClient, startupOptions, type Target } from './pg-client.js'
import { looksLikePooler } from '../pooler.js'
import { checkPassword, PasswordSource, type PasswordFunction } from '../password.js'
import { secretList } from '../secret-list.js'

export { type PoolQuery, type PooledClient, type WarmPoolOptions } from '../pool.js'

/** pg.Client settings passed through (ssl, types, statement_timeout, keepAlive...), except what warmconn owns. */
export type PgOptions = Omit<pg.ClientConfig, keyof typeof OWNED>

export interface WarmPgOptions extends HolderOptions {
  pg?: PgOptions
}

export interface WarmPgPoolOptions extends WarmPoolOptions {
  pg?: PgOptions
}

/** What warmPool takes: pg.Pool's config (Client options included), warmconn's options beside it. */
export type WarmPgPoolConfig = Omit<pg.PoolConfig, 'Client' | 'log' | 'query_timeout'> & WarmPgPoolOptions

/** warmPool's pool: a pg.Pool to every library that takes one, on the holder's lifecycle. */
export type WarmPgPool = pg.Pool & {
  /** The holder behind the pool: `stats()`, and warmconn's events with `on(...)`. */
  readonly holder: Holder<pg.Client>
  /** A query config may mark itself safe to run twice (see WarmPoolOptions.idempotent). */
  query<R extends pg.QueryResultRow = any>(config: pg.QueryConfig & { idempotent?: boolean }, values?: unknown[]): Promise<pg.QueryResult<R>>
}

// What warmconn owns, and what to use instead. The connection's identity comes from the URL
// alone (node-postgres lets the URL win over host, user... so they would be ignored), so the
// holder key, the messages and the TLS default all read one source.
const OWNED = {
  connectionString: 'pass the URL as the first argument',
  host: 'put it in the URL',
  port: 'put it in the URL',
  user: 'put it in the URL',
  database: 'put it in the URL',
  application_name: 'use the "applicationName" option',
  connectionTimeoutMillis: 'use the "connectTimeoutMs" option',
  // pg's read timeout gives up on a statement without ending it: the connection stays busy
  // under the next caller. callTimeoutMs destroys the connection instead.
  query_timeout: 'use the "callTimeoutMs" option (or run(fn, { timeoutMs }))',
} as const

/**
 * The shared holder for this URL and these options: created on first call, the same live one on
 * every later call (a warm invocation), a different one for another database, role or option set.
 * @example
 * const db = warmPg(process.env.DATABASE_URL)
 * export const handler = () => db.run((client) => client.query('select now()'), { idempotent: true })
 */
export function warmPg(url: string | undefined, options: WarmPgOptions = {}): Holder<pg.Client> {
  const { pg: pgOptions, ...holderOptions } = options ?? {}
  const driver = pgDriver(url, pgOptions)
  const key = stableKey({ driver: 'pg', url, pgOptions, holderOptions })
  return sharedHolder(key, (forget) => new Holder(driver, holderOptions, { onClose: forget }))
}

/**
 * A pg.Pool for libraries that take one, on warmconn's lifecycle: the shared pool for this config
 * (a warm invocation gets the same one). It takes what `new pg.Pool(config)` takes
 * (`connectionString` or host/port/user/password/database, `ssl`, `max`, `idleTimeoutMillis`,
 * `connectionTimeoutMillis`, `maxLifetimeSeconds`, `maxUses`, `onConnect`, Client options...),
 * warmconn's options beside them, or a URL first. `pool.end()` closes it for every holder of it;
 * the next warmPool() call makes a new one. The README's warmPool table lists what differs.
 * @example
 * import { drizzle } from 'drizzle-orm/node-postgres'
 * const db = drizzle(warmPool({ connectionString: process.env.DATABASE_URL, max: 10, idleTimeoutMillis: 10_000 }))
 */
export function warmPool(config?: WarmPgPoolConfig): WarmPgPool
export function warmPool(url: string | undefined, options?: WarmPgPoolConfig): WarmPgPool
export function warmPool(first?: string | WarmPgPoolConfig, second?: WarmPgPoolConfig): WarmPgPool {
  const { url, rest, client, facade, idempotent } = poolOptions(first, second)
  const { pg: pgSub, ...holderOptions } = rest
  const pgOptions = mergeClientOptions(client, pgSub, 'pg') as PgOptions
  const driver = pgDriver(url, pgOptions)
  const withDefaults = { maxConnections: POOL_MAX_CONNECTIONS, ...holderOptions } as HolderOptions
  const key = stableKey({ driver: 'pg', api: 'pool', url, pgOptions, holderOptions: withDefaults, idempotent, facade })
  const holder = sharedHolder(key, (forget) => new Holder(driver, withDefaults, { onClose: forget }))
  // The facade implements pg.Pool's public surface (and is instanceof pg.Pool); see pool.ts.
  return sharedPool(holder, pg.Pool, { idempotent, secrets: driver.secrets, facade }) as unknown as WarmPgPool
}

/** The driver alone, for building a holder by hand: `new Holder(pgDriver(url, { ssl }), options)`. */
export function pgDriver(url: string | undefined, pgOptions: PgOptions = {}): Driver<pg.Client> {
  const parsed = parseConnectionUrl(url)
  if (pgOptions === null || typeof pgOptions !== 'object' || Array.isArray(pgOptions)) throw new InvalidOptionError('pg', 'expected an object of pg.Client options')
  for (const [key, instead] of Object.entries(OWNED)) {
    if (key in pgOptions) throw new InvalidOptionError(`pg.${key}`, `warmconn manages this: ${instead}`)
  }
  const { password } = pgOptions
  if (password !== undefined && parsed.password !== '') {
    throw new InvalidOptionError('pg.password', 'the URL has a password already (node-postgres would use the URL\'s)')
  }
  checkPassword('pg.password', password)
  const user = safeDecode(parsed.username)
  const database = safeDecode(parsed.pathname.slice(1))
  // node-postgres reads PGSSLMODE when nothing else says; that counts as the caller deciding.
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
  const tls = tlsDefault(parsed, [parsed.hostname], 'ssl' in pgOptions || env?.PGSSLMODE !== undefined)
  // node-postgres checks the certificate against the host it connected to, IP addresses included.
  const config: pg.ClientConfig = tls ? { ...pgOptions, ssl: true } : { ...pgOptions }
  const target = { host: parsed.hostname, port: Number(parsed.port || 5432) }
  const secrets = secretList(secretsOf(parsed, typeof password === 'string' ? password : undefined))
  // A function is asked by warmconn for each new connection (password.ts), not by node-postgres.
  const source = typeof password === 'function' ? new PasswordSource(password as PasswordFunction, 'pg.password', secrets) : undefined
  return {
    name: 'pg',
    secrets: secrets.all,
    target: `${user || '(default user)'}@${parsed.hostname}:${parsed.port || 5432}/${database || '(default database)'}`,
    open: (options) => (source ? source.open(options, (o, pw) => openConnection(url!, { ...config, password: pw }, o, target)) : openConnection(url!, config, options, target)),
    classify: (err, conn): Classified => {
      const seen = classifyClientError(err, {}, target)
      return source ? source.classify(err, conn, seen) : seen
    },
  }
}

function openConnection(url: string, config: pg.ClientConfig, o: OpenOptions, target: Target): Promise<DriverConnection<pg.Client>> {
  const options = startupOptions(config.options, o, target)
  const client = new pg.Client({ ...config, connectionString: url, application_name: o.applicationName, ...(options ? { options } : {}) })
  // node-postgres lays the parsed URL over the options, its missing password included, so a
  // password given apart from the URL (a function for IAM tokens, say) is set on the Client.
  if (config.password !== undefined) client.password = config.password as string
  return openClient(client, o, { pooledHost: looksLikePooler(target.host, target.port) })
}
