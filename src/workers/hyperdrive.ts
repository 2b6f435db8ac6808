/**
 * Hyperdrive mode. Hyperdrive pools the database connections itself, near the database, and
 * wants a client per request (a connection made in one request cannot be used in another). This
 * builds the settings for `withRequestScope`.
 * @module
 */
import { InvalidOptionError } from '../errors.js'
import type { WarmPostgresOptions } from '../drivers/postgres.js'
import type { ConnectionSettings } from './settings.js'

/** The part of a Hyperdrive binding this needs. */
export interface HyperdriveBinding {
  readonly connectionString: string
}

/**
 * Settings for a per-request holder through Hyperdrive: up to 5 connections per request
 * (override with `options`), marked `pooled`. Array types are looked up once per isolate, not per request (see
 * drivers/postgres-arrays.ts), so unlike plain postgres.js they need not be switched off here.
 * @example
 * withRequestScope(ctx, hyperdriveScope(env.HYPERDRIVE), (db) => db.run((sql) => sql`select 1`))
 */
export function hyperdriveScope(binding: HyperdriveBinding, options: WarmPostgresOptions = {}): ConnectionSettings {
  if (typeof binding?.connectionString !== 'string') {
    throw new InvalidOptionError('hyperdrive', 'expected a Hyperdrive binding (env.HYPERDRIVE) with a connectionString')
  }
  const { postgres: pgOptions, ...holderOptions } = options
  return {
    url: binding.connectionString,
    // Hyperdrive is a transaction pooler: nothing pipelined, no session settings (pooler.ts).
    options: { maxConnections: 5, pooled: true, ...holderOptions, ...(pgOptions ? { postgres: pgOptions } : {}) },
  }
}
