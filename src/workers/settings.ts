/**
 * Where a Workers holder connects, and the holder made from it. Every holder here is its own,
 * never the module-scope registry of `warmPostgres`: module scope is shared by every request of
 * an isolate (and by every Durable Object instance in it), and a socket must not cross requests.
 * @module
 */
import { Holder } from '../holder.js'
import { postgresDriver, type Sql, type WarmPostgresOptions } from '../drivers/postgres.js'

/**
 * The example Worker's own variables (functions/worker.ts). A Durable Object shares its Worker's
 * env, so the object's default `connection()` accepts these beside the WARMCONN_* overrides
 * instead of taking them for misspelt ones. A subclass whose Worker has others passes its own
 * list: `optionsFromEnv(this.env, { allow: [...workerEnvNames, 'WARMCONN_REGION'] })`.
 */
export const workerEnvNames = ['WARMCONN_MODE', 'WARMCONN_SHARDS', 'WARMCONN_LOCATION_HINT'] as const

export interface ConnectionSettings {
  /** A postgres:// URL: DATABASE_URL, or a Hyperdrive binding's connectionString. */
  url: string | undefined
  /** Holder options, and postgres.js options under `postgres`, as for warmPostgres. */
  options?: WarmPostgresOptions
}

/** A new holder, and the secrets that must never leave it in an error. */
export function holderFor(settings: ConnectionSettings): { holder: Holder<Sql>; secrets: readonly string[] } {
  const { postgres: pgOptions, ...options } = settings.options ?? {}
  const driver = postgresDriver(settings.url, pgOptions)
  return { holder: new Holder(driver, options), secrets: driver.secrets }
}
