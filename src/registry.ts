/**
 * Holders live in module scope, keyed by everything that identifies the connection they make
 * (driver, target, role, password, options), so a warm invocation gets the same live connection
 * and two databases, roles or tenants never share one. Keys stay in this module: they may hold a
 * password and are never printed.
 * @module
 */
import type { Holder } from './holder.js'

const holders = new Map<string, Holder<unknown>>()

export function sharedHolder<C>(key: string, create: (forget: () => void) => Holder<C>): Holder<C> {
  const existing = holders.get(key)
  if (existing && !existing.closed) return existing as Holder<C>
  const holder = create(() => {
    if (holders.get(key) === (holder as Holder<unknown>)) holders.delete(key)
  })
  holders.set(key, holder as Holder<unknown>)
  return holder
}

/** Closes every shared holder; for process shutdown (SIGTERM) and tests. */
export async function closeAll(options?: { timeoutMs?: number }): Promise<void> {
  await Promise.all([...holders.values()].map((h) => h.close(options)))
}

/** Deterministic JSON for use in a key: object keys sorted, functions by their source. */
export function stableKey(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => {
    if (typeof v === 'function') return `fn:${String(v)}`
    if (typeof v === 'bigint') return `bigint:${v}`
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    }
    return v
  })
}
