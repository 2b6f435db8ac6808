/**
 * What a statement's text says about the session it runs in: whether it may leave state behind
 * for the next caller of the connection (a setting, a role, a lock, a temp table...), and the one
 * statement that clears such state. The drivers show the holder every statement's text; reading
 * it here costs one regular-expression test for the statements that name none of these words,
 * which is nearly all of them, so a clean call is known clean without a round trip.
 *
 * Conservative by design: a false "changed" costs one reset statement off the caller's path; a
 * false "clean" would hand another caller a role or a tenant id. What text cannot show (a
 * PL/pgSQL function that calls set_config) is what `sessionReset: 'always'` is for.
 * @module
 */

import { nextTxState } from './classify.js'

/** The option: reset after a call that may have changed the session, after every call, or never. */
export type SessionResetMode = 'changed' | 'always' | 'never'

export const SESSION_RESET_MODES: readonly SessionResetMode[] = ['changed', 'always', 'never']

// One scan first: a statement that names none of these cannot change the session.
const WORDS = /\b(set|reset|set_config|pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock|pg_try_advisory_lock_shared|temp|temporary|pg_temp|listen|unlisten|hold|prepare|load|discard|deallocate)\b/i

// Statements that change the session when they begin a statement: SET (not SET LOCAL, SET
// TRANSACTION, SET CONSTRAINTS, which end with the transaction), RESET, LISTEN, PREPARE (SQL
// level; not PREPARE TRANSACTION), LOAD, DISCARD, DEALLOCATE.
const LEADING = /^(set\s+(?!local\b|transaction\b|constraints\b)|reset\b|listen\b|unlisten\b|prepare\s+(?!transaction\b)|load\b|discard\b|deallocate\b)/
// Anywhere in a statement: a session advisory lock (the _xact_ ones end with the transaction),
// a temporary table, a cursor kept past its transaction. (A sequence's currval, which any
// INSERT into a serial column sets, is not tracked: the reset clears it when it runs at all.)
const ANYWHERE = /\b(pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock|pg_try_advisory_lock_shared|pg_temp)\b|\bcreate\s+(?:(?:global|local)\s+)?(?:temp|temporary)\b|\bwith\s+hold\b/
// set_config(name, value, is_local): session-wide unless is_local is literally true.
const SET_CONFIG = /\bset_config\s*\(/g

/**
 * Whether `text` (one or more statements) may leave session state behind.
 * @example changesSession("select set_config('app.tenant', $1, false)") // true
 * @example changesSession('update t set x = 1') // false: SET only counts at a statement's start
 */
export function changesSession(text: string): boolean {
  if (!WORDS.test(text)) return false
  const lower = text.toLowerCase()
  if (ANYWHERE.test(lower)) return true
  if (lower.includes('set_config') && sessionSetConfig(lower)) return true
  for (const raw of lower.split(';')) {
    if (LEADING.test(raw.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/)*/, ''))) return true
  }
  return false
}

/** Whether a set_config call in `lower` may be session-wide: its third argument is not the literal `true`. */
function sessionSetConfig(lower: string): boolean {
  SET_CONFIG.lastIndex = 0
  for (let m = SET_CONFIG.exec(lower); m; m = SET_CONFIG.exec(lower)) {
    const args = argumentsAt(lower, m.index + m[0].length)
    if (args === undefined || args.length < 3 || args[2]!.trim() !== 'true') return true
  }
  return false
}

/** The top-level arguments of a call whose "(" ends just before `from`; undefined if unbalanced or quoted. */
function argumentsAt(text: string, from: number): string[] | undefined {
  const args: string[] = []
  let depth = 0
  let start = from
  for (let i = from; i < text.length; i++) {
    const c = text[i]
    // A dollar-quoted literal: not worth reading through; the call counts as session-wide.
    if (c === '$' && !/\d/.test(text[i + 1] ?? '')) return undefined
    if (c === "'" || c === '"') {
      // A literal may hold a comma or a parenthesis: skip to its end (a doubled quote reads as two literals).
      const end = text.indexOf(c, i + 1)
      if (end < 0) return undefined
      i = end
    } else if (c === '(') depth++
    else if (c === ')') {
      if (depth-- === 0) {
        args.push(text.slice(start, i))
        return args
      }
    } else if (c === ',' && depth === 0) {
      args.push(text.slice(start, i))
      start = i + 1
    }
  }
  return undefined
}

/**
 * Clears what a caller may have left in the session, in one statement (one simple-query message,
 * so one flight), keeping what must survive: the drivers' own protocol-level prepared statements
 * (no DEALLOCATE ALL, no DISCARD ALL: postgres.js and pg would then fail with 26000) and the
 * startup packet's settings, which are RESET ALL's values (application_name,
 * idle_session_timeout, postgres.js `connection`, pg `options`). It is DISCARD ALL's list
 * otherwise: cursors, session authorization and role, settings, LISTEN, session advisory locks,
 * temporary tables, sequence state, and SQL-level PREPAREd statements (`from_sql`) one by one.
 * Must run outside a transaction (the holder rolls back first, in the same message).
 */
export const RESET_SESSION_SQL = [
  'close all',
  'set session authorization default',
  'reset all',
  'unlisten *',
  'select pg_advisory_unlock_all()',
  'discard temp',
  'discard sequences',
  "do $warmconn$declare r record; begin for r in select name from pg_prepared_statements where from_sql loop execute format('deallocate %I', r.name); end loop; end$warmconn$",
].join('; ')

/** The reset, after ending a transaction the caller left open or aborted (never committed). */
export const ROLLBACK_AND_RESET_SQL = `rollback; ${RESET_SESSION_SQL}`

/**
 * Whether `text` may run on a connection whose statements are pipelined with other callers'
 * (holder.shared): it neither opens nor ends a transaction nor changes the session.
 * @example shareable('select * from users where id = $1') // true
 * @example shareable('begin') // false
 */
export function shareable(text: string): boolean {
  return !nextTxState(false, text) && nextTxState(true, text) && !changesSession(text)
}
