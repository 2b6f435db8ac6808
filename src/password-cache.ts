/**
 * A password that costs something to get (a signed token, a secrets-store round trip), cached
 * until shortly before it expires, fetched once for a burst of connects (single flight), and
 * dropped when the server refuses it, so warmconn's one immediate retry gets a fresh one. The
 * failure users report with IAM tokens is a token fetched once at cold start and reused after it
 * expired; this is the cache that does not do that.
 * @module
 */
import { InvalidOptionError } from './errors.js'
import type { PasswordFunction } from './password.js'

export interface CachedPasswordOptions {
  /** How long a fetched password stays valid, from the moment the fetch started. */
  lifetimeMs: number
  /**
   * Fetch a new one this long before the old one expires, so none is used in its last moments
   * (the handshake takes time, clocks drift). Default: a quarter of `lifetimeMs`, at most 60 s.
   */
  refreshBeforeExpiryMs?: number
}

/**
 * Wraps `fetch` so that concurrent callers share one fetch and later ones reuse its result
 * until `lifetimeMs - refreshBeforeExpiryMs` after it started. A failed fetch is not cached.
 * `invalidate(password)` drops the cached value if it is that one (warmconn calls it when the
 * server refused it).
 * @example
 * import { cachedPassword } from 'warmconn'
 * const password = cachedPassword(() => getSecret('db'), { lifetimeMs: 5 * 60_000 })
 * const db = warmPostgres(process.env.DATABASE_URL, { postgres: { password } })
 */
export function cachedPassword(fetch: () => string | Promise<string>, options: CachedPasswordOptions): PasswordFunction {
  if (typeof fetch !== 'function') throw new InvalidOptionError('fetch', 'cachedPassword expects a function that returns the password')
  const { lifetimeMs, refreshBeforeExpiryMs = Math.min(60_000, lifetimeMs / 4), ...unknown } = options ?? ({} as CachedPasswordOptions)
  const extra = Object.keys(unknown)[0]
  if (extra !== undefined) throw new InvalidOptionError(extra, 'unknown option of cachedPassword; known ones are lifetimeMs, refreshBeforeExpiryMs')
  checkMs('lifetimeMs', lifetimeMs, 1)
  checkMs('refreshBeforeExpiryMs', refreshBeforeExpiryMs, 0)
  if (refreshBeforeExpiryMs >= lifetimeMs) throw new InvalidOptionError('refreshBeforeExpiryMs', `must be below lifetimeMs (${lifetimeMs})`)
  const usableMs = lifetimeMs - refreshBeforeExpiryMs

  let cached: { value: string; until: number } | undefined
  let inFlight: Promise<string> | undefined
  const get = (): Promise<string> => {
    // Timestamps, not a timer: a frozen process fires none, and wakes up with the clock moved on.
    if (cached && Date.now() < cached.until) return Promise.resolve(cached.value)
    if (inFlight) return inFlight
    const startedAt = Date.now()
    const fetching = Promise.resolve()
      .then(fetch)
      .then((value) => {
        // From when the fetch started: a token signed then expires no later than that plus its life.
        cached = { value, until: startedAt + usableMs }
        return value
      })
      .finally(() => {
        inFlight = undefined
      })
    inFlight = fetching
    return fetching
  }
  const password: PasswordFunction = Object.assign(get, {
    invalidate(refused: string) {
      if (cached?.value === refused) cached = undefined
    },
  })
  // Shared holders are keyed by their options, a function by its text (registry.ts): every cache
  // has the same text, so it names what it wraps. Configurable: the aws helpers name theirs.
  const name = `cachedPassword(${String(fetch)}, ${lifetimeMs}, ${refreshBeforeExpiryMs})`
  return Object.defineProperty(password, 'toString', { value: () => name, configurable: true, enumerable: false })
}

function checkMs(option: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidOptionError(option, `expected a finite number of milliseconds, at least ${min}`)
  }
}
