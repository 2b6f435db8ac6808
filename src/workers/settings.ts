/**
 * Where a Workers holder connects, and the holder made from it. Every holder here is its own,
 * never the module-scope registry of `warmPostgres`: module scope is shared by every request of
 * an isolate (and by every Durable Object instance in it), and a socket must not cross requests.
 * @module
 */
import { Holder } from '../holder.js'
import { postgresDriver, type Sql, type WarmPostgresOptions } from '../drivers/postgres.js'

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
