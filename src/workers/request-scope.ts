/**
 * Per-request mode: one connection made for a request, shared by every query of that request,
 * and closed once the handler is done, without holding up the response.
 * @module
 */
import type { Holder } from '../holder.js'
import type { Sql } from '../drivers/postgres.js'
import { holderFor, type ConnectionSettings } from './settings.js'

/** The part of an ExecutionContext (fetch, queue, scheduled) this needs. */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void
}

/**
 * Runs `fn` with a holder of its own (the core lifecycle, not shared with any other request) and
 * closes it with `ctx.waitUntil` once `fn` settles. A response body that streams must finish
 * its queries before `fn` returns.
 * @example
 * export default {
 *   fetch: (request, env, ctx) =>
 *     withRequestScope(ctx, { url: env.DATABASE_URL }, async (db) =>
 *       Response.json(await db.run((sql) => sql`select now()`))),
 * }
 */
export async function withRequestScope<T>(ctx: WaitUntil, settings: ConnectionSettings, fn: (db: Holder<Sql>) => Promise<T>): Promise<T> {
  const { holder } = holderFor(settings)
  try {
    return await fn(holder)
  } finally {
    ctx.waitUntil(holder.close())
  }
}
