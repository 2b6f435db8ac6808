/**
 * What a postgres.js connection has been asked to run, seen from outside postgres.js.
 *
 * The holder must know, without a round trip, whether a call left a transaction open. postgres.js
 * reports nothing of the kind, and its `debug` hook, the one place it shows each statement, also
 * makes every PostgresError's `query` and `parameters` enumerable (a logger that prints errors
 * would then print statement parameters). So the `sql` handed to callers is postgres.js's own,
 * behind a Proxy that reads the text of each statement as it is made: tagged templates (once per
 * call site, cached), `unsafe`, and the same on a `reserve()`d connection and inside `sql.begin`
 * (whose transaction postgres.js ends itself, but whose SETs can outlive it). It reads whether a
 * transaction was left open and whether the session may have been changed (session-state.ts).
 * `sql.file` cannot be read in advance, so it counts as possibly having done both (the rollback
 * and reset it may cost are harmless).
 * @module
 */
import type postgres from 'postgres'
import { nextTxState } from '../classify.js'
import { changesSession } from '../session-state.js'
import { NotShareableError } from '../errors.js'

type AnySql = postgres.Sql<Record<string, never>>

/** A query as postgres.js builds it: its `state` is the connection's backend, once it runs. */
export interface BuiltQuery {
  state?: { pid?: number | null } | null
}

export interface Session {
  /** The connection as callers get it. */
  readonly sql: AnySql
  /**
   * The connection as shared calls get it (holder.shared): statements that would open or end a
   * transaction or change the session are refused before they are sent, and so are the methods
   * that hold the connection across statements (begin, reserve, file, listen, subscribe).
   */
  readonly shared: AnySql
  /** Best knowledge, from the statements made, of whether a transaction is open. */
  inTransaction: boolean
  /** A statement made since the last reset may have changed the session (session-state.ts). */
  changed: boolean
  /**
   * The first statement made: it carries a lazy connect's handshake, and then knows the backend
   * pid. null once read, so no later query (and its rows) is kept alive by it.
   */
  first: BuiltQuery | undefined | null
  /** A statement has been made on the instance (its connect has begun): a reserve needs no opener. */
  started: boolean
}

/** What a tagged template's text says, read once per call site: most say nothing. */
interface TemplateText {
  /** The text, if it names a transaction word; else null. */
  tx: string | null
  /** It may change the session. */
  changes: boolean
}
const templates = new WeakMap<TemplateStringsArray, TemplateText>()

/** What the watcher is told of each statement made. */
interface Seen {
  /** Its text, for the transaction state; absent inside sql.begin, which postgres.js ends itself. */
  tx?: (text: string) => void
  session: () => void
  made: (q: BuiltQuery) => void
  /** Whether a statement has been made on the instance yet. */
  started: () => boolean
}

export function watchSession(real: AnySql): Session {
  const session: Session = {
    sql: watched(real, {
      tx: (text) => void (session.inTransaction = nextTxState(session.inTransaction, text)),
      session: () => void (session.changed = true),
      made: (q) => {
        session.started = true
        if (session.first === undefined) session.first = q
      },
      started: () => session.started,
    }),
    // Its statements are made too: a lazy connection's first statement may be a shared call's.
    shared: guarded(real, (q) => {
      session.started = true
      if (session.first === undefined) session.first = q
    }),
    inTransaction: false,
    changed: false,
    first: undefined,
    started: false,
  }
  return session
}

const HOLDING = new Set(['begin', 'reserve', 'file', 'listen', 'subscribe', 'savepoint'])

/** What a shared call may not send: a transaction word, or a change to the session. */
function refusal(text: string): NotShareableError | undefined {
  if (nextTxState(false, text) || nextTxState(true, text) !== true) return new NotShareableError('transaction')
  if (changesSession(text)) return new NotShareableError('session')
  return undefined
}

function guarded(real: AnySql, made: (q: BuiltQuery) => void): AnySql {
  const unsafe = (t: string, ...rest: unknown[]): unknown => {
    const refused = typeof t === 'string' ? refusal(t) : new NotShareableError('session')
    if (refused) throw refused
    const q = (real.unsafe as (...args: unknown[]) => BuiltQuery)(t, ...rest)
    made(q)
    return q
  }
  return new Proxy(real, {
    apply(target, thisArg, args: unknown[]) {
      const strings = args[0] as TemplateStringsArray | undefined
      if (Array.isArray(strings) && Array.isArray((strings as { raw?: unknown }).raw)) {
        let known = templates.get(strings)
        if (known === undefined) {
          const joined = strings.join(' ')
          known = { tx: nextTxState(false, joined) || nextTxState(true, joined) !== true ? joined : null, changes: changesSession(joined) }
          templates.set(strings, known)
        }
        if (known.tx !== null) throw new NotShareableError('transaction')
        if (known.changes) throw new NotShareableError('session')
        const q = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args) as BuiltQuery
        made(q)
        return q
      }
      return Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args)
    },
    get(target, key) {
      if (key === 'unsafe') return unsafe
      if (typeof key === 'string' && HOLDING.has(key)) {
        return () => {
          throw new NotShareableError('method', `sql.${key}()`)
        }
      }
      return Reflect.get(target, key)
    },
  })
}

function watched(real: AnySql, seen: Seen): AnySql {
  const text = (t: string): void => {
    seen.tx?.(t)
    if (changesSession(t)) seen.session()
  }
  const unsafe = (t: string, ...rest: unknown[]): unknown => {
    if (typeof t === 'string') text(t)
    const q = (real.unsafe as (...args: unknown[]) => BuiltQuery)(t, ...rest)
    seen.made(q)
    return q
  }
  const file = (...args: unknown[]): unknown => {
    // Its text cannot be read in advance: it may open a transaction, it may change the session.
    seen.tx?.('begin')
    seen.session()
    const q = (real.file as (...a: unknown[]) => BuiltQuery)(...args)
    seen.made(q)
    return q
  }
  // postgres.js 3.4.9 with fetch_types off never hands over a reserve that started the
  // instance's connect. So a statement made first carries the connect (a lazy connection's
  // handshake, whose failure is then the call's), and the reserve takes the open connection.
  // One round trip more, on the first statement of a new connection only.
  const reserve = async (): Promise<unknown> => {
    if (!seen.started()) {
      const opener = real`select 1`
      seen.made(opener as unknown as BuiltQuery)
      await opener
    }
    return watched((await real.reserve()) as unknown as AnySql, seen)
  }
  // A transaction's statements go through the `sql` postgres.js hands its callback: watched for
  // what they leave in the session (a SET in a transaction that commits outlives it).
  const inner = { session: seen.session, made: seen.made, started: seen.started }
  const scoped = (name: 'begin' | 'savepoint') => (...args: unknown[]): unknown => {
    const fn = args[args.length - 1]
    if (typeof fn === 'function') args[args.length - 1] = (tx: AnySql) => fn(watched(tx, inner))
    return ((real as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!)(...args)
  }
  const begin = scoped('begin')
  const savepoint = scoped('savepoint')
  return new Proxy(real, {
    apply(target, thisArg, args: unknown[]) {
      const strings = args[0] as TemplateStringsArray | undefined
      const q = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args) as BuiltQuery
      if (Array.isArray(strings) && Array.isArray((strings as { raw?: unknown }).raw)) {
        let known = templates.get(strings)
        if (known === undefined) {
          const joined = strings.join(' ')
          const tx = nextTxState(false, joined) || nextTxState(true, joined) !== true ? joined : null
          known = { tx, changes: changesSession(joined) }
          templates.set(strings, known)
        }
        if (known.tx !== null) seen.tx?.(known.tx)
        if (known.changes) seen.session()
        seen.made(q)
      }
      return q
    },
    get(target, key) {
      if (key === 'unsafe') return unsafe
      if (key === 'file') return file
      if (key === 'reserve') return reserve
      if (key === 'begin') return begin
      if (key === 'savepoint' && typeof (target as { savepoint?: unknown }).savepoint === 'function') return savepoint
      // Not the receiver: postgres.js's own getters (parameters) read its closure, not `this`.
      return Reflect.get(target, key)
    },
  })
}
