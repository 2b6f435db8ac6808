/**
 * The Worker side of Durable Object mode: calls a holder object over RPC and turns its replies
 * back into results and typed errors.
 * @module
 */
import type { DurableObjectLocationHint, DurableObjectStub } from '@cloudflare/workers-types'
import { InvalidOptionError } from '../errors.js'
import type { ObjectStats, WarmconnDurableObject } from './durable-object.js'
import { checkBatch, checkQuery, type QueryOptions, type QueryResult, type Reply, type Statement } from './protocol.js'
import { decodeError } from './remote-errors.js'

export interface WarmClientOptions {
  /** Holder objects are named `${name}-0` to `${name}-${shards - 1}`. Default `warmconn`. */
  name?: string
  /**
   * How many holder objects (one warm connection each) to spread clients over. Each client picks
   * one at random, so the queries of one request go to one object, in order. Default 1.
   */
  shards?: number
  /** Where a holder object is created, e.g. `weur`: put it near the database. Only honoured when it is first created. */
  locationHint?: DurableObjectLocationHint
}

export interface WarmClient {
  /** The holder object this client talks to. */
  readonly name: string
  /** Runs one statement in the holder object. SQL errors throw SqlError (code = SQLSTATE); warmconn's own, WarmconnError subclasses. */
  query(text: string, params?: unknown[], options?: QueryOptions): Promise<QueryResult>
  /** Runs the statements in one transaction: all commit or none. */
  batch(statements: Statement[], options?: QueryOptions): Promise<QueryResult[]>
  stats(): Promise<ObjectStats>
}

/**
 * What warmClient needs of the binding (`env.WARMCONN`): a Durable Object namespace whose objects
 * have the holder's RPC methods. Structural, so it fits however `Env` is typed: with
 * @cloudflare/workers-types' module types (`import type { DurableObjectNamespace }`) or its
 * global ones (`"types": ["@cloudflare/workers-types"]`, `wrangler types`). A parameter typed
 * with the module's generic `DurableObjectNamespace<T>` made tsc compare the two declarations of
 * that type and give up (TS2589, or TS2345 when `Env` named the class another way).
 */
export interface HolderNamespace {
  idFromName(name: string): unknown
  get(id: never, options?: { locationHint?: DurableObjectLocationHint }): { query: unknown; batch: unknown; stats: unknown }
}

/**
 * A client for the holder objects bound as `namespace`. Cheap: make one per request. It makes a
 * new stub for every call, so even one kept in module scope never reuses another request's I/O.
 * @example
 * const db = warmClient(env.WARMCONN, { locationHint: 'weur' })
 * const { rows } = await db.query('select * from users where id = $1', [id], { idempotent: true })
 */
export function warmClient(namespace: HolderNamespace, options: WarmClientOptions = {}): WarmClient {
  const { name = 'warmconn', shards = 1, locationHint } = options
  if (!Number.isInteger(shards) || shards < 1) throw new InvalidOptionError('shards', `expected a whole number >= 1, got ${shards}`)
  const shard = `${name}-${Math.floor(Math.random() * shards)}`
  const stub = () => namespace.get(namespace.idFromName(shard) as never, locationHint === undefined ? undefined : { locationHint }) as DurableObjectStub<WarmconnDurableObject>
  return {
    name: shard,
    // Checked here too, so a bad call costs no hop to the object.
    query: async (text, params = [], queryOptions = {}) => {
      checkQuery(text, params, queryOptions)
      return unwrap(await stub().query(text, params, queryOptions))
    },
    batch: async (statements, queryOptions = {}) => {
      checkBatch(statements, queryOptions)
      return unwrap(await stub().batch(statements, queryOptions))
    },
    stats: async () => unwrap(await stub().stats()),
  }
}

function unwrap<T>(reply: Reply<T>): T {
  if (reply.ok) return reply.value
  throw decodeError(reply.error)
}
