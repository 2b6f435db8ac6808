/**
 * The scripted workload, one step at a time, each run against both runtimes in turn so neither
 * sits idle (and goes stale) while the other works. Each step prints what it does and why, then
 * per runtime what happened: latency, backend pid, and which holder counters moved.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { HolderStats } from '../../src/index.js'
import type { TestPg } from '../../test/harness/pg.js'
import { IDLE_TIMEOUT_MS, STALE_AFTER_MS } from './config.js'
import { ms } from './report.js'
import { p50, type Kind, type Tally } from './tally.js'

export interface StepContext {
  pg: TestPg
  tallies: Tally[]
  say(line: string): void
}

export interface Step {
  title: string
  /** One line: what to look for. */
  why: string
  run(ctx: StepContext): Promise<void>
}

const WARM_REQUESTS = 20
/** Past the threshold by enough that a slow request in between cannot keep it from being crossed. */
const MARGIN_MS = 500
/** The idle timer and the alarm may fire a little late; the server then needs a moment to see the close. */
const IDLE_MARGIN_MS = 1_500
/** The counters that tell what the holder did, in the order they are printed. */
const COUNTERS = ['opened', 'reused', 'revalidated', 'revalidateFailures', 'closedBroken', 'reconnected', 'closedIdle', 'replays', 'failures'] as const

export const STEPS: Step[] = [
  {
    title: 'cold start',
    why: 'the first request starts the function and opens its connection: TCP, SCRAM, a new server process',
    run: ({ tallies, say }) => each(tallies, async (t) => say(await observe(t, 'cold'))),
  },
  {
    title: `${WARM_REQUESTS} warm requests`,
    why: 'each one reuses the open connection with no extra round trip: no ping, no handshake, same backend',
    async run({ tallies, say }) {
      const before = tallies.map((t) => t.stats)
      for (let i = 0; i < WARM_REQUESTS; i++) await each(tallies, (t) => t.db('warm'))
      tallies.forEach((t, i) => say(line(t, `p50 ${ms(p50(t.times('warm')))}`, `backend ${t.pids.at(-1)}`, changes(before[i], t.stats))))
    },
  },
  {
    title: `a pause of ${seconds(STALE_AFTER_MS + MARGIN_MS)} (longer than staleAfterMs, ${seconds(STALE_AFTER_MS)})`,
    why: 'the Lambda is frozen (SIGSTOP), the Worker idle; the next request (an idempotent read) is checked in the same flight as its query: no extra round trip',
    async run({ tallies, say }) {
      await wait(STALE_AFTER_MS + MARGIN_MS, say)
      await each(tallies, async (t) => say(await observe(t, 'stale')))
    },
  },
  {
    title: 'the server kills each backend (pg_terminate_backend)',
    why: 'as a failover would; the next request still succeeds, on a new connection (an idempotent query may be replayed)',
    run: ({ pg, tallies, say }) =>
      each(tallies, async (t) => {
        const pid = t.pids.at(-1)
        // Without a pid, terminate() would end every client backend on the server.
        if (pid === undefined) throw new Error(`${t.runtime.name}: no backend to kill yet`)
        await pg.terminate({ pid })
        say(await observe(t, 'killed'))
      }),
  },
  {
    title: `idle for ${seconds(IDLE_TIMEOUT_MS + IDLE_MARGIN_MS)} (longer than idleTimeoutMs, ${seconds(IDLE_TIMEOUT_MS)})`,
    why: "the Worker's idle timer closes its connection; a frozen Lambda runs no timers, so the server ends its session (idle_session_timeout, asked for at connect)",
    async run({ pg, tallies, say }) {
      await wait(IDLE_TIMEOUT_MS + IDLE_MARGIN_MS, say)
      await each(tallies, async (t) => {
        const left = await pg.backends(t.runtime.appName)
        const pids = left.map((b) => b.pid).join(', ')
        say(line(t, `server: ${left.length ? `backend ${pids} still open` : 'no backend left'} (pg_stat_activity, ${t.runtime.appName})`))
      })
      await each(tallies, async (t) => say(await observe(t, 'idle')))
    },
  },
  {
    title: 'writes: POST /visits three times, the third repeating the first key',
    why: 'an upsert keyed by the client: a retried request gets the same row back (200, not 201)',
    run: ({ tallies, say }) =>
      each(tallies, async (t) => {
        const before = t.stats
        const keys = [`${t.runtime.name}-1`, `${t.runtime.name}-2`, `${t.runtime.name}-1`]
        const posted: string[] = []
        for (const key of keys) {
          const { status, body } = await t.request('POST', '/visits', { key })
          posted.push(`${status} id ${(body as { id?: unknown }).id}`)
        }
        const { body } = await t.request('GET', '/visits/count')
        const last = await t.db('warm')
        say(line(t, posted.join(', '), `rows in visits: ${(body as { count?: unknown }).count}`, changes(before, last.stats)))
      }),
  },
]

/** Runs `fn` for each runtime in turn, never at once: their latencies must not disturb each other. */
async function each(tallies: Tally[], fn: (t: Tally) => Promise<unknown>): Promise<void> {
  for (const t of tallies) await fn(t)
}

/** One GET /db, described against what the runtime had before it. */
async function observe(t: Tally, kind: Kind): Promise<string> {
  const before = { stats: t.stats, pid: t.pids.at(-1) }
  const answer = await t.db(kind)
  const backend = before.pid === undefined || before.pid === answer.pid ? `backend ${answer.pid}` : `backend ${before.pid} -> ${answer.pid}`
  return line(t, ms(answer.ms), backend, changes(before.stats, answer.stats))
}

async function wait(durationMs: number, say: (line: string) => void): Promise<void> {
  say(`  waiting ${seconds(durationMs)} ...`)
  await sleep(durationMs)
}

function changes(before: HolderStats | undefined, after: HolderStats | undefined): string {
  if (!after) return ''
  const moved = COUNTERS.map((key) => [key, after[key] - (before?.[key] ?? 0)] as const).filter(([, delta]) => delta !== 0)
  return moved.map(([key, delta]) => `${key} +${delta}`).join(', ')
}

function line(t: Tally, ...parts: string[]): string {
  return `  ${t.runtime.name.padEnd(7)} ${parts.filter(Boolean).join('   ')}`
}

function seconds(durationMs: number): string {
  return `${(durationMs / 1000).toFixed(1)} s`
}
