/**
 * Deployable Cloudflare Worker for the example app (configuration in wrangler.toml).
 * - Durable Object mode (default): the connection stays warm in WarmconnDurableObject, and the
 *   Worker sends each query to it over RPC.
 * - Hyperdrive mode, when a HYPERDRIVE binding exists: a connection per request through Hyperdrive.
 * - Per-request mode, with WARMCONN_MODE = "per-request": a connection per request to DATABASE_URL.
 * DATABASE_URL and the WARMCONN_* overrides are read as on Lambda (optionsFromEnv); a misspelt
 * one is answered 500 naming it and the nearest known name.
 */
import type { DurableObjectLocationHint, DurableObjectNamespace, ExecutionContext } from '@cloudflare/workers-types'
import { InvalidOptionError, optionsFromEnv, type Holder } from '../src/index.js'
import type { Sql } from '../src/drivers/postgres.js'
import {
  WarmconnDurableObject,
  hyperdriveScope,
  warmClient,
  withRequestScope,
  workerEnvNames,
  type ConnectionSettings,
  type HyperdriveBinding,
  type WarmClient,
  type WarmconnEnv,
} from '../src/workers/index.js'
import { createApp, type AppDb, type AppRequest, type AppResponse, type Row } from './app.js'

export { WarmconnDurableObject }

// A type, not an interface, so it can be read as a plain record by optionsFromEnv.
export type Env = WarmconnEnv & {
  WARMCONN: DurableObjectNamespace<WarmconnDurableObject>
  HYPERDRIVE?: HyperdriveBinding
  /** "durable-object" (default) or "per-request". */
  WARMCONN_MODE?: string
  /** Durable Object mode: how many holder objects (connections) to spread requests over. Default 1. */
  WARMCONN_SHARDS?: string
  /** Durable Object mode: where to create the holder objects (e.g. "weur"), near the database. */
  WARMCONN_LOCATION_HINT?: string
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const response = await serve(await appRequest(request), env, ctx)
    return Response.json(response.body, { status: response.status })
  },
}

// An app per request: the app remembers its table check as a promise, and sharing a promise
// between requests would tie one request to another's I/O.
function serve(req: AppRequest, env: Env, ctx: ExecutionContext): Promise<AppResponse> {
  const hyperdrive = env.HYPERDRIVE
  if (hyperdrive) return perRequest(req, ctx, () => hyperdriveScope(hyperdrive, envOptions(env)))
  const mode = env.WARMCONN_MODE || 'durable-object'
  if (mode === 'per-request') {
    return perRequest(req, ctx, () => ({ url: env.DATABASE_URL, options: envOptions(env) }))
  }
  if (mode === 'durable-object') return createApp(clientDb(() => warmClient(env.WARMCONN, clientOptions(env))))(req)
  return createApp(failingDb(new InvalidOptionError('WARMCONN_MODE', 'expected "durable-object" or "per-request"')))(req)
}

async function perRequest(req: AppRequest, ctx: ExecutionContext, settings: () => ConnectionSettings): Promise<AppResponse> {
  try {
    return await withRequestScope(ctx, settings(), (holder) => createApp(holderDb(holder))(req))
  } catch (err) {
    // Only a configuration error gets here (the app answers everything else). The app still
    // routes, so 404 and 405 do not depend on the configuration; database routes answer 500.
    return createApp(failingDb(err))(req)
  }
}

/** The WARMCONN_* overrides; this Worker's own WARMCONN_MODE, _SHARDS and _LOCATION_HINT are not typos. */
function envOptions(env: Env): ReturnType<typeof optionsFromEnv> {
  return optionsFromEnv(env, { allow: workerEnvNames })
}

function holderDb(holder: Holder<Sql>): AppDb {
  return {
    query: (text, params, { idempotent }) => holder.run((sql) => sql.unsafe(text, params as never[]), { idempotent }) as Promise<Row[]>,
    stats: () => holder.stats(),
  }
}

/** Made on first use, so a bad WARMCONN_SHARDS only fails the routes that need the database. */
function clientDb(make: () => WarmClient): AppDb {
  let client: WarmClient | undefined
  const db = () => (client ??= make())
  return {
    query: async (text, params, { idempotent }) => (await db().query(text, params, { idempotent })).rows,
    stats: () => db().stats(),
  }
}

function failingDb(err: unknown): AppDb {
  return { query: () => Promise.reject(err), stats: () => Promise.reject(err) }
}

function clientOptions(env: Env): { shards?: number; locationHint?: DurableObjectLocationHint } {
  const shards = env.WARMCONN_SHARDS
  if (shards !== undefined && !/^\s*[1-9]\d*\s*$/.test(shards)) throw new InvalidOptionError('WARMCONN_SHARDS', 'expected a whole number >= 1')
  return {
    ...(shards === undefined ? {} : { shards: Number(shards) }),
    ...(env.WARMCONN_LOCATION_HINT ? { locationHint: env.WARMCONN_LOCATION_HINT as DurableObjectLocationHint } : {}),
  }
}

async function appRequest(request: Request): Promise<AppRequest> {
  return {
    method: request.method,
    path: new URL(request.url).pathname,
    body: request.body === null ? undefined : await request.text(),
  }
}
