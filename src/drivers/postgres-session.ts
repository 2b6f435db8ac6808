/**
 * What a postgres.js connection has been asked to run, seen from outside postgres.js.
 *
 * The holder must know, without a round trip, whether a call left a transaction open. postgres.js
 * reports nothing of the kind, and its `debug` hook, the one place it shows each statement, also
 * makes every PostgresError's `query` and `parameters` enumerable (a logger that prints errors
 * would then print statement parameters). So the `sql` handed to callers is postgres.js's own,
 * behind a Proxy that reads the text of each statement as it is made: tagged templates (once per
 * call site, cached), `unsafe`, and the same on a `reserve()`d connection. `sql.begin` needs no
 * watching: postgres.js ends its transaction itself. `sql.file` cannot be read in advance, so it
 * counts as possibly having opened one (the rollback it may cost is harmless).
 * @module
 */
import type postgres from 'postgres'
import { nextTxState } from '../classify.js'

type AnySql = postgres.Sql<Record<string, never>>

/** A query as postgres.js builds it: its `state` is the connection's backend, once it runs. */
export interface BuiltQuery {
  state?: { pid?: number | null } | null
}

export interface Session {
  /** The connection as callers get it. */
  readonly sql: AnySql
  /** Best knowledge, from the statements made, of whether a transaction is open. */
  inTransaction: boolean
  /**
   * The first statement made: it carries a lazy connect's handshake, and then knows the backend
   * pid. null once read, so no later query (and its rows) is kept alive by it.
   */
  first: BuiltQuery | undefined | null
  /** A statement has been made on the instance (its connect has begun): a reserve needs no opener. */
  started: boolean
}

// Whether a tagged template's text names a transaction word (most never do), per call site.
const templates = new WeakMap<TemplateStringsArray, string | null>()

export function watchSession(real: AnySql): Session {
  const seen = (text: string): void => {
    session.inTransaction = nextTxState(session.inTransaction, text)
  }
  const made = (q: BuiltQuery): void => {
    session.started = true
    if (session.first === undefined) session.first = q
  }
  const session: Session = { sql: watched(real, seen, made, () => session.started), inTransaction: false, first: undefined, started: false }
  return session
}

function watched(real: AnySql, seen: (text: string) => void, made: (q: BuiltQuery) => void, started: () => boolean): AnySql {
  const unsafe = (text: string, ...rest: unknown[]): unknown => {
    if (typeof text === 'string') seen(text)
    const q = (real.unsafe as (...args: unknown[]) => BuiltQuery)(text, ...rest)
    made(q)
    return q
  }
  const file = (...args: unknown[]): unknown => {
    seen('begin')
    const q = (real.file as (...a: unknown[]) => BuiltQuery)(...args)
    made(q)
    return q
  }
  // postgres.js 3.4.9 with fetch_types off never hands over a reserve that started the
  // instance's connect. So a statement made first carries the connect (a lazy connection's
  // handshake, whose failure is then the call's), and the reserve takes the open connection.
  // One round trip more, on the first statement of a new connection only.
  const reserve = async (): Promise<unknown> => {
    if (!started()) {
      const opener = real`select 1`
      made(opener as unknown as BuiltQuery)
      await opener
    }
    const reserved = await real.reserve()
    return watched(reserved as unknown as AnySql, seen, made, () => true)
  }
  return new Proxy(real, {
    apply(target, thisArg, args: unknown[]) {
      const strings = args[0] as TemplateStringsArray | undefined
      const q = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args) as BuiltQuery
      if (Array.isArray(strings) && Array.isArray((strings as { raw?: unknown }).raw)) {
        let text = templates.get(strings)
        if (text === undefined) {
          const joined = strings.join(' ')
          text = nextTxState(false, joined) || nextTxState(true, joined) !== true ? joined : null
          templates.set(strings, text)
        }
        if (text !== null) seen(text)
        made(q)
      }
      return q
    },
    get(target, key) {
      if (key === 'unsafe') return unsafe
      if (key === 'file') return file
      if (key === 'reserve') return reserve
      // Not the receiver: postgres.js's own getters (parameters) read its closure, not `this`.
      return Reflect.get(target, key)
    },
  })
}
