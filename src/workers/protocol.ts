/**
 * What crosses Workers RPC between the Worker-side client and the holder object. Only plain,
 * structured-clonable data: a postgres.js Result is an Array subclass that arrives as a bare
 * array (its `count` and `command` lost), so results are rebuilt as `QueryResult`; and errors
 * lose their class (and before compatibility date 2026-04-21 their `code`), so every reply is an
 * explicit success-or-error value instead of a thrown error.
 * @module
 */
import { InvalidOptionError } from '../errors.js'
import { checkRunOptions, describe } from '../options.js'
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

/**
 * Validates a query's arguments before any I/O, naming the one at fault (InvalidOptionError):
 * run by the client before the RPC hop, and again by the object, which may be called directly.
 * @example checkQuery('select $1::int', [1], { idempotent: true })
 */
export function checkQuery(text: unknown, params: unknown, options: unknown): void {
  checkStatement({ text, params }, '')
  if (options !== undefined) checkRunOptions(options)
}

/** Validates a batch's arguments before any I/O, naming the statement at fault (`statements[2].text`). */
export function checkBatch(statements: unknown, options: unknown): void {
  if (!Array.isArray(statements)) {
    throw new InvalidOptionError('statements', `expected an array of { text, params? }, got ${describe(statements)}`)
  }
  statements.forEach((statement: unknown, i) => {
    const where = `statements[${i}].`
    if (typeof statement !== 'object' || statement === null || Array.isArray(statement)) {
      throw new InvalidOptionError(`statements[${i}]`, `expected { text, params? }, got ${describe(statement)}`)
    }
    for (const key of Object.keys(statement)) {
      if (key !== 'text' && key !== 'params') throw new InvalidOptionError(`${where}${key}`, 'unknown field; a statement is { text, params? }')
    }
    checkStatement(statement as { text?: unknown; params?: unknown }, where)
  })
  if (options !== undefined) checkRunOptions(options)
}

function checkStatement({ text, params }: { text?: unknown; params?: unknown }, where: string): void {
  if (typeof text !== 'string') throw new InvalidOptionError(`${where}text`, `expected the statement text as a string, got ${describe(text)}`)
  if (params !== undefined && !Array.isArray(params)) {
    throw new InvalidOptionError(`${where}params`, `expected the parameters as an array (bound to $1, $2...), got ${describe(params)}`)
  }
}
