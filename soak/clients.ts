/**
 * The clients: lanes that each drive one app as fast as it answers, mixing writes of new keys
 * (retried after a 5xx, a timeout or a failed invocation, as a careful client does) with reads,
 * and now and then leaving the app alone for a while: a Lambda process stays frozen meanwhile,
 * as between real invocations; a Durable Object idles.
 * @module
 */
import type { AppRequest, Reply, SoakApp } from './app.js'
import { sleep } from './faults.js'
import type { Ledger } from './ledger.js'
import type { Rng } from './random.js'

export type Op = 'write' | 'read'

export interface Invocation {
  app: string
  op: Op
  /** Milliseconds on the run's clock. */
  start: number
  end: number
  /** As measured by the app's runtime (thaw and cold start included). */
  durationMs: number
  status: number | undefined
  error: string | undefined
  coldStart: boolean
  /** How long the app had been left alone (frozen, or idle) before this request; 0 if it was in use. */
  pausedBeforeMs: number
  runtime: SoakApp['runtime']
  /** One of the final retries, after the faults stopped. */
  final: boolean
  /** The response body or the runtime's error message. */
  text: string
}

/** What the lanes saw, shared by all of them. */
export class Recorder {
  readonly invocations: Invocation[] = []
  /** The latest stats each app instance reported through GET /db. */
  readonly stats = new Map<string, Record<string, number>>()
  pauses = 0

  /** `instance` is the process (or isolate) that answered. */
  add(inv: Invocation, instance: string): void {
    this.invocations.push(inv)
    if (inv.status !== 200 || !inv.text.includes('"stats"')) return
    const stats = (JSON.parse(inv.text) as { stats?: Record<string, number> }).stats
    // Counters only grow within an instance: the reply with the most runs is the latest.
    if (stats && (this.stats.get(instance)?.runs ?? -1) < stats.runs!) this.stats.set(instance, stats)
  }
}

export interface LaneContext {
  rng: Rng
  /** The run's clock, milliseconds. */
  now(): number
  /** No new key is started after this (run clock). */
  deadline: number
  ledger: Ledger
  recorder: Recorder
  /** Attempts per key while faults run; what is left goes to the final retries. */
  attempts: number
  /** Chance, after each request, of leaving the app alone for a span of `pauseMs` (a Lambda stays frozen). */
  pauseChance: number
  pauseMs: [number, number]
}

/** One client: sequential requests against `app` until the deadline. */
export async function runLane(app: SoakApp, lane: string, ctx: LaneContext): Promise<void> {
  const state = { pausedBeforeMs: 0 }
  while (ctx.now() < ctx.deadline) {
    const roll = ctx.rng.next()
    if (roll < 0.5) await write(() => app, ctx.ledger.newKey(lane), ctx, state, ctx.attempts, false)
    else await request(app, roll < 0.8 ? { method: 'GET', path: '/visits/count' } : { method: 'GET', path: '/db' }, 'read', ctx, state, false)
    if (ctx.rng.chance(ctx.pauseChance)) {
      // On Lambda the emulator froze the process when it answered; it stays stopped this long.
      state.pausedBeforeMs = ctx.rng.between(...ctx.pauseMs)
      ctx.recorder.pauses++
      await sleep(state.pausedBeforeMs)
    }
  }
}

/**
 * After the faults: every key still unacknowledged is retried until acknowledged, `attempts`
 * times at most, and none is started after `until` (run clock). Each attempt goes to the next
 * app, as a client behind a load balancer would land on another instance.
 */
export async function retryUnacked(apps: readonly SoakApp[], ctx: LaneContext, attempts: number, until: number): Promise<void> {
  const state = { pausedBeforeMs: 0 }
  let turn = 0
  const next = (): SoakApp => apps[turn++ % apps.length]!
  for (const key of ctx.ledger.unacked()) {
    if (ctx.now() > until) return
    await write(next, key, ctx, state, attempts, true)
  }
}

/** A GET /db after the faults, for the latest stats of the instance that answers. */
export async function finalRead(app: SoakApp, ctx: LaneContext): Promise<void> {
  await request(app, { method: 'GET', path: '/db' }, 'read', ctx, { pausedBeforeMs: 0 }, true)
}

/**
 * POST /visits for `key`, each attempt to the app `next` gives, until a 2xx, a 4xx (a bug: it is
 * reported, and retrying cannot help) or `attempts` run out.
 */
async function write(next: () => SoakApp, key: string, ctx: LaneContext, state: { pausedBeforeMs: number }, attempts: number, final: boolean): Promise<void> {
  for (let attempt = 1; attempt <= attempts; attempt++) {
    ctx.ledger.attempt(key)
    const reply = await request(next(), { method: 'POST', path: '/visits', body: JSON.stringify({ key }) }, 'write', ctx, state, final)
    if (reply.status !== undefined && reply.status < 300) {
      ctx.ledger.ack(key, reply.status, (JSON.parse(reply.text) as { id: number }).id)
      return
    }
    if (reply.status !== undefined && reply.status < 500) return
    if (attempt < attempts) await sleep(ctx.rng.between(50, 400))
  }
}

async function request(app: SoakApp, req: AppRequest, op: Op, ctx: LaneContext, state: { pausedBeforeMs: number }, final: boolean): Promise<Reply> {
  const start = ctx.now()
  const reply = await app.request(req)
  const inv: Invocation = {
    app: app.name, op, start, end: ctx.now(), durationMs: reply.durationMs, status: reply.status, error: reply.error,
    coldStart: reply.coldStart, pausedBeforeMs: state.pausedBeforeMs, runtime: app.runtime, final, text: reply.text,
  }
  state.pausedBeforeMs = 0
  ctx.recorder.add(inv, reply.instance)
  return reply
}
