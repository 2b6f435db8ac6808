/**
 * What node-postgres (`pg`) and @neondatabase/serverless share: neon's `Client` is a fork of
 * node-postgres, with the same Client, Connection and protocol events. This file turns either
 * Client into a warmconn connection (listeners, transaction status, backend pid, probe, close)
 * and reads their errors; src/drivers/pg.ts and neon.ts only say how to build the Client.
 * @module
 */
import type { Classified, DriverConnection, OpenOptions } from '../driver.js'
import { classifyError, errorCode, nextTxState } from '../classify.js'
import { withTimeout } from '../timer.js'
import { isServerPid } from '../pooler.js'
import { refusedIdleTimeout, sessionIdleTimeout } from '../server-idle.js'
import { changesSession, RESET_SESSION_SQL, ROLLBACK_AND_RESET_SQL, shareable } from '../session-state.js'
import { NotShareableError } from '../errors.js'

/** The parts of a node-postgres-style Client this file uses (pg.Client and neon's Client both have them). */
export interface NodePgClient {
  readonly connection: {
    on(event: string, listener: (...args: any[]) => void): unknown
    once(event: string, listener: (...args: any[]) => void): unknown
    emit(event: string | symbol, ...args: any[]): boolean
    /** The protocol's Sync message: the server answers ReadyForQuery and runs (and logs) nothing. */
    sync(): void
  }
  connect(): Promise<unknown>
  end(): Promise<void>
  query(text: string): Promise<unknown>
  on(event: 'error' | 'end', listener: (...args: any[]) => void): unknown
}

export interface OpenHooks {
  /** Replaces a failed connect's error, e.g. to tell "the proxy never answered" apart (neon). */
  failedOpen?: (err: unknown) => unknown
  /** The URL names a pooler (pooler.ts), so the connection is not direct whatever its pid says. */
  pooledHost?: boolean
  /** The socket to unref while idle, when it is not the Connection's stream (neon's WebSocket). */
  socket?: (client: NodePgClient) => RefSocket | undefined
}

/** What Node's (and Bun's, Deno's) sockets offer to let a process exit while they are open. */
export interface RefSocket {
  ref?(): unknown
  unref?(): unknown
}

/** The socket behind a Client: pg's Connection stream (a net or TLS socket), or the driver's own. */
function socketOf(client: NodePgClient, hooks: OpenHooks): RefSocket | undefined {
  if (hooks.socket) return hooks.socket(client)
  return (client.connection as { stream?: RefSocket }).stream
}

/** Where a driver's Client connects, for what is remembered per target (server-idle.ts). */
export interface Target {
  host: string
  port: number
}

/**
 * node-postgres's startup `options` (`-c name=value`) with the idle_session_timeout the holder
 * asks for added, if it is to be sent to this target (server-idle.ts).
 */
export function startupOptions(existing: string | undefined, o: OpenOptions, target: Target): string | undefined {
  const ms = sessionIdleTimeout(o.serverIdleTimeoutMs, o.pooled, target.host, target.port)
  if (ms === undefined) return existing
  return [existing, `-c idle_session_timeout=${ms}`].filter(Boolean).join(' ')
}

// node-postgres raises these without a code. "Connection terminated" comes once the socket is
// gone, with or without a statement in flight; "not queryable" is raised by client.query on a
// Client already broken or ended, before anything is written.
const TERMINATED = /^Connection terminated/
const NOT_QUERYABLE = /is not queryable$/
// Severities that end the session, and the codes of errors that do (for servers whose messages,
// severity included, are localized): operator intervention 57P0x, connection exceptions 08xxx,
// idle-in-transaction timeout.
const FATAL = new Set(['FATAL', 'PANIC'])
const SESSION_ENDED = /^(57P0|08|25P03)/
// What node-postgres says when the server answered an SSLRequest with "no".
const TLS_REFUSED = /does not support SSL connections/

/**
 * Connects `client` and wraps it for the holder. Nothing but the handshake is sent: the backend
 * pid comes from BackendKeyData and the transaction status from each ReadyForQuery.
 */
export async function openClient<C extends NodePgClient>(client: C, o: OpenOptions, hooks: OpenHooks = {}): Promise<DriverConnection<C>> {
  const con = client.connection
  let ready = false
  let ending = false
  let reported = false
  // 'I' idle, 'T' in a transaction, 'E' in a failed one: the server's own word, from the
  // ReadyForQuery that ends every statement, so no SQL text has to be parsed to know it.
  let txStatus = 'I'
  // The one probe in flight (see probe below) and how to settle it.
  let probing: { resolve: () => void; reject: (err: Error) => void } | undefined
  let failOpen: (err: unknown) => void = () => {}
  const broken = (code: string | undefined): void => {
    probing?.reject(Object.assign(new Error('Connection terminated during the probe'), { code: 'CONNECTION_CLOSED' }))
    probing = undefined
    if (reported || ending) return
    reported = true
    o.onBroken(code)
  }
  // A listener must exist at all times: an 'error' event without one would crash the process.
  // The server's own goodbye (57P05 idle-session timeout, 57P01 terminated) comes first, with
  // its SQLSTATE, before "Connection terminated unexpectedly" and 'end'.
  client.on('error', (err: unknown) => (ready ? broken(errorCode(err)) : failOpen(err)))
  client.on('end', () => (ready ? broken(undefined) : failOpen(new Error('Connection terminated unexpectedly'))))
  // A FATAL error is the server ending the session (terminated, shutting down, a session
  // timeout): the connection is broken from this moment, before its socket has closed, so a
  // client released in between (a lease, whose caller just got this error) is not reused.
  con.on('errorMessage', (msg: { severity?: unknown; code?: unknown }) => {
    if (ready && (FATAL.has(String(msg.severity)) || SESSION_ENDED.test(String(msg.code)))) broken(typeof msg.code === 'string' ? msg.code : undefined)
  })
  // The pid PostgreSQL gives for cancel requests, free with the handshake. A proxy that rewrites
  // cancel keys (as PgBouncer does) makes it the proxy's number instead.
  let backendPid: number | undefined
  con.once('backendKeyData', (msg: { processID: number }) => void (backendPid = msg.processID))

  const connecting = client.connect()
  // Added after connect(): with neon's pipelineConnect, connect() removes every readyForQuery
  // listener and resolves before the server has checked the password, so open waits for the
  // first real ReadyForQuery: an auth failure must fail here, not the caller.
  const answered = new Promise<void>((resolve, reject) => {
    failOpen = reject
    con.once('readyForQuery', () => resolve())
  })
  con.on('readyForQuery', (msg: { status: string }) => void (txStatus = msg.status))
  // The probe's ReadyForQuery is taken out of the stream before the Client sees it: the Client
  // would read it as the end of whatever statement it has in flight (the caller's, sent in the
  // same flight). Nothing else is in flight when a probe starts, so the first ReadyForQuery after
  // it is its answer. Installed on this one Connection object only.
  const emit = con.emit
  con.emit = function (event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'readyForQuery' && probing) {
      txStatus = (args[0] as { status: string }).status
      const answer = probing
      probing = undefined
      answer.resolve()
      return true
    }
    return emit.call(this, event, ...args)
  }
  try {
    await withTimeout(Promise.all([connecting, answered]), o.connectTimeoutMs, () =>
      Object.assign(new Error(`connect timed out after ${o.connectTimeoutMs} ms`), { code: 'CONNECT_TIMEOUT' }),
    )
  } catch (err) {
    ending = true
    void client.end().catch(() => {})
    throw hooks.failedOpen ? hooks.failedOpen(err) : err
  }
  ready = true
  // What the caller's statements may have left in the session, read from their text as they are
  // made (every way to run one goes through client.query, a named statement's first run
  // included), and from the server's own reports of a changed setting.
  let changed = false
  let resetting = false
  const query = client.query
  ;(client as { query: unknown }).query = function (this: unknown, config: unknown, ...rest: unknown[]): unknown {
    if (!changed) {
      const text = typeof config === 'string' ? config : (config as { text?: unknown } | null | undefined)?.text
      // A submittable whose text cannot be read may do anything.
      if (typeof text !== 'string' || changesSession(text)) changed = true
    }
    return (query as (...args: unknown[]) => unknown).apply(this, [config, ...rest])
  }
  con.on('parameterStatus', () => void (resetting || (changed = true)))
  // node-postgres 8.23+ pipelines when `pipeline` is set (neon's fork has no such mode): shared
  // calls then get a guarded view of the Client, and the Client pipelines only while shared.
  const pipelined = typeof (client as { pipeline?: unknown }).pipeline === 'boolean'
  const sharedClient = pipelined ? guardedClient(client) : undefined
  const direct = o.pooled === false || (o.pooled !== true && !hooks.pooledHost && isServerPid(backendPid))
  return {
    client,
    backendPid,
    direct,
    async ping() {
      await client.query('select 1')
    },
    // A bare Sync: the server answers ReadyForQuery, flushed, before it reads what the caller
    // sends next, and runs nothing, so its log shows no statement.
    probe: () =>
      new Promise<void>((resolve, reject) => {
        if (reported) return reject(Object.assign(new Error('Connection terminated'), { code: 'CONNECTION_CLOSED' }))
        probing = { resolve, reject }
        con.sync()
      }),
    ...(sharedClient ? {
      sharedClient,
      share(on: boolean) {
        ;(client as { pipeline?: boolean }).pipeline = on
      },
    } : {}),
    inTransaction: () => txStatus !== 'I',
    sessionChanged: () => changed,
    async resetSession(rollbackFirst) {
      resetting = true
      try {
        // No parameters: the simple protocol, so the statements go in one message, one flight.
        await client.query(rollbackFirst ? ROLLBACK_AND_RESET_SQL : RESET_SESSION_SQL)
      } finally {
        resetting = false
      }
      changed = false
    },
    async rollback() {
      await client.query('rollback')
    },
    idle: (idle) => socketOf(client, hooks)?.[idle ? 'unref' : 'ref']?.(),
    async close(timeoutMs) {
      ending = true
      socketOf(client, hooks)?.ref?.()
      await withTimeout(client.end(), timeoutMs, () => new Error(`close timed out after ${timeoutMs} ms`))
    },
    destroy() {
      ending = true
      // Out of pipeline mode first: a pipelined Client's end() waits for what is in flight to
      // drain, which never happens on a silent socket; otherwise end() drops it at once.
      if (sharedClient) (client as { pipeline?: boolean }).pipeline = false
      socketOf(client, hooks)?.ref?.()
      // node-postgres drops the socket at once when a statement is in flight or the Client is
      // broken; an idle one says Terminate first.
      void client.end().catch(() => {})
    },
  }
}

/**
 * The Client as shared calls get it: `query` refuses, before sending, a statement that would open
 * or end a transaction or change the session (its text, session-state.ts), and anything whose
 * text cannot be read (a cursor, a stream: they hold a portal, which pipelining cannot carry).
 */
function guardedClient<C extends NodePgClient>(client: C): C {
  const view = new Proxy(client, {
    get(target, key) {
      if (key !== 'query') return Reflect.get(target, key)
      return (config: unknown, ...rest: unknown[]): unknown => {
        const text = typeof config === 'string' ? config : (config as { text?: unknown; submit?: unknown } | null | undefined)?.text
        const submittable = typeof (config as { submit?: unknown } | null | undefined)?.submit === 'function'
        if (typeof text !== 'string' || submittable) throw new NotShareableError('method', 'A cursor or a stream')
        if (!shareable(text)) throw new NotShareableError(nextTxState(false, text) || !nextTxState(true, text) ? 'transaction' : 'session')
        return (target.query as (...args: unknown[]) => unknown).apply(target, [config, ...rest])
      }
    },
  })
  views.set(view, client)
  return view
}

const views = new WeakMap<object, NodePgClient>()

/** The Client behind a shared call's guarded view (or the Client itself): one identity for events. */
export function clientOf<C extends NodePgClient>(client: C): C {
  return (views.get(client) as C | undefined) ?? client
}

/** A driver's own reading of errors node-postgres does not raise (neon's WebSocket failures). */
export interface OwnCodes {
  /** A code for an error that has none, or undefined to read it as node-postgres's. */
  codeOf?: (err: unknown) => string | undefined
  /** What one of those codes means. */
  classify?: (code: string | undefined) => Classified | undefined
}

/**
 * Classifies a node-postgres-style error. "Not queryable" is a lost connection whose statement
 * was not sent; it is not `notSent` here, because in a `run` other statements of the same call
 * may have run before it. A one-shot query, which is one statement, marks it with `sentNothing`.
 */
export function classifyClientError(err: unknown, own: OwnCodes = {}, target?: Target): Classified {
  if (target && refusedIdleTimeout(err, target.host, target.port)) return { kind: 'transient', code: 'STARTUP_PARAMETER_REFUSED', notSent: true, retryNow: true }
  const code = own.codeOf?.(err) ?? codeOf(err)
  if (unsent.has(err as object)) return { kind: 'connection', code, notSent: true }
  return classifyError(err, code, own.classify)
}

/** Whether `err` is node-postgres refusing a statement on a broken or ended Client (nothing was written). */
export function isNotQueryable(err: unknown): boolean {
  return err instanceof Error && errorCode(err) === undefined && NOT_QUERYABLE.test(err.message)
}

const unsent = new WeakSet<object>()

/**
 * Marks a not-queryable error as proof that the whole call sent nothing: for callers whose call
 * is that one statement (a one-shot `pool.query`), so the holder may retry it on a new connection.
 */
export function sentNothing<E>(err: E): E {
  if (isNotQueryable(err)) unsent.add(err as object)
  return err
}

/** The code of a node-postgres error: SQLSTATE or errno, or one of ours for what it says in words. */
function codeOf(err: unknown): string | undefined {
  const code = errorCode(err)
  if (code !== undefined || !(err instanceof Error)) return code
  if (TERMINATED.test(err.message) || NOT_QUERYABLE.test(err.message)) return 'CONNECTION_CLOSED'
  if (TLS_REFUSED.test(err.message)) return 'TLS_REFUSED'
  return undefined
}
