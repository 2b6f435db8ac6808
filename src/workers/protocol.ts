/**
 * What crosses Workers RPC between the Worker-side client and the holder object. Only plain,
 * structured-clonable data: a postgres.js Result is an Array subclass that arrives as a bare
 * array (its `count` and `command` lost), so results are rebuilt as `QueryResult`; and errors
 * lose their class (and before compatibility date 2026-04-21 their `code`), so every reply is an
 * explicit success-or-error value instead of a thrown error.
 * @module
 */
import type { WireError } from './remote-errors.js'

export type Row = Record<string, unknown>

export interface QueryResult {
  rows: Row[]
  /** Rows affected or returned, as PostgreSQL reports it; null for commands without a count. */
  count: number | null
  /** The command tag: SELECT, INSERT, UPDATE... */
  command: string
}

export interface Statement {
  text: string
  /** Bound to $1, $2... */
  params?: unknown[]
}

export interface QueryOptions {
  /**
   * The call may safely run twice. If the connection dies under it, the holder replays it once on
   * a new connection instead of failing with ConnectionLostError.
   */
  idempotent?: boolean
  /** This call's bound on holding the connection (ms), instead of the object's `callTimeoutMs`. */
  timeoutMs?: number
}

export type Reply<T> = { ok: true; value: T } | { ok: false; error: WireError }

/** A postgres.js result as plain data: rows copied out of the Array subclass, count and command kept. */
export function toQueryResult(result: readonly Row[] & { count?: number | null; command?: string }): QueryResult {
  return { rows: Array.from(result), count: result.count ?? null, command: result.command ?? '' }
}
