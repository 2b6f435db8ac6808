/**
 * The fleet scenarios shared by test/fleet.test.ts (which asserts on them) and scripts/fleet.ts
 * (which prints them): a fleet of instances, each with its own warm connection, hits a
 * PostgreSQL limited to 40 connections in bursts with idle gaps, through PgBouncer or directly.
 */
import { defaultOptions } from '../../src/index.js'
import { withTimeout } from '../../src/timer.js'
import type { TestPg } from '../harness/pg.js'
import type { TestPgBouncer } from '../harness/pgbouncer.js'
import { startFleet, type InstanceConfig, type Outcome } from './fleet.js'
import { monitorBackends } from './monitor.js'

/** Every instance closes its connection after this much idle time, so a quiet fleet lets go. */
export const IDLE_TIMEOUT_MS = 500
/** PgBouncer's server connections: well under the server's limit. */
export const POOL_SIZE = 20
/** The PgBouncer the fleet goes through: room for all 200 instances as clients. */
export const BOUNCER_OPTIONS = { poolMode: 'transaction', defaultPoolSize: POOL_SIZE, maxClientConn: 250 } as const
/** The connect budget of the scenario that must fail fast. */
export const OVER_BUDGET_MS = 3_000
/** The role every instance (and PgBouncer) connects as; the monitor counts its backends. */
const ROLE = 'app'

export interface Figures {
  scenario: string
  instances: number
  invocations: number
  /** Connections the instances opened, reopens after an idle close included. */
  opened: number
  failures: number
  /** Failures by `code/causeCode`, e.g. `WARMCONN_CONNECT_FAILED/53300`. */
  failureKinds: Record<string, number>
  /** Most server connections of the fleet's role seen at once (sampled every ~50 ms). */
  peakBackends: number
  /** Most it may hold: PgBouncer's pool, or max_connections minus the superuser reserve. */
  limit: number
  connectRetries: number
  /** Connect retries by the failure that caused them. */
  retryCodes: Record<string, number>
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** From the end of the load until the fleet held no connection: its own to PgBouncer, or to the server. */
  drainMs: number | undefined
  outcomes: Outcome[]
}

/** The load: bursts of simultaneous invocations separated by idle gaps, some shorter and some longer than IDLE_TIMEOUT_MS. */
interface Traffic {
  bursts: number[]
  gapsMs: number[]
}

const steady: Traffic = { bursts: [60, 60, 60, 60, 60, 60], gapsMs: [300, 800, 200, 1_000, 400] }

/**
 * 200 instances through PgBouncer in transaction mode: a 200-way burst, then steady bursts. Each
 * instance keeps its own client connection to PgBouncer; PgBouncer multiplexes them on its pool.
 */
export async function throughPgBouncer(pg: TestPg, bouncer: TestPgBouncer): Promise<Figures> {
  // The server keeps PgBouncer's pool (server_idle_timeout is 10 min); the fleet's own
  // connections are its clients at PgBouncer.
  const released = async (timeoutMs: number): Promise<boolean> => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() <= deadline) {
      if ((await bouncer.showClients()).every((c) => c.user !== ROLE)) return true
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return false
  }
  return runScenario(pg, {
    scenario: `via PgBouncer, pool ${POOL_SIZE}`,
    instances: 200,
    config: {
      url: bouncer.url(ROLE),
      // 200 SCRAM handshakes at once on two busy cores took 2-4.5 s here, and the default 5 s
      // connect timeout did not always cover them: waiting for the handshake is part of the test.
      options: { idleTimeoutMs: IDLE_TIMEOUT_MS, connectTimeoutMs: 20_000, connectBudgetMs: 30_000, postgres: { prepare: false } },
      workMs: 20,
    },
    traffic: { bursts: [200, ...steady.bursts.slice(1)], gapsMs: steady.gapsMs },
    limit: POOL_SIZE,
    released,
  })
}

/**
 * 200 instances straight to PostgreSQL, with a connect budget generous enough that an instance
 * finding the server full waits (backs off) for a slot rather than fails.
 */
export async function directWaiting(pg: TestPg): Promise<Figures> {
  return runScenario(pg, {
    scenario: 'direct, 20 s connect budget',
    instances: 200,
    config: {
      url: pg.appUrl,
      options: { idleTimeoutMs: IDLE_TIMEOUT_MS, connectBudgetMs: 20_000, connectRetries: 200, connectBackoffBaseMs: 50, connectBackoffMaxMs: 500 },
      workMs: 20,
    },
    traffic: steady,
    limit: await roleLimit(pg),
  })
}

/**
 * 100 instances straight to PostgreSQL, all at once, each holding its connection for 6 s, with a
 * 3 s connect budget: more simultaneous connections than the server has, and no time to wait.
 */
export async function directOverBudget(pg: TestPg): Promise<Figures> {
  return runScenario(pg, {
    scenario: 'direct, 3 s budget, 6 s work',
    instances: 100,
    config: {
      url: pg.appUrl,
      options: { idleTimeoutMs: IDLE_TIMEOUT_MS, connectBudgetMs: OVER_BUDGET_MS, connectRetries: 100, connectBackoffBaseMs: 50, connectBackoffMaxMs: 200 },
      workMs: 6_000,
    },
    traffic: { bursts: [100], gapsMs: [] },
    limit: await roleLimit(pg),
  })
}

interface Scenario {
  scenario: string
  instances: number
  config: InstanceConfig
  traffic: Traffic
  limit: number
  /** Whether the fleet holds no connection within `timeoutMs`; by default, the server shows none of the role. */
  released?: (timeoutMs: number) => Promise<boolean>
}

async function runScenario(pg: TestPg, s: Scenario): Promise<Figures> {
  const fleet = await startFleet(s.instances, s.config)
  const monitor = monitorBackends(pg, ROLE)
  try {
    const outcomes: Outcome[] = []
    for (const [i, size] of s.traffic.bursts.entries()) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, s.traffic.gapsMs[i - 1]))
      outcomes.push(...(await hangDetector(fleet.burst(size), s.config, size)))
    }
    const loadEnded = Date.now()
    const released = s.released ?? ((timeoutMs: number) => monitor.until(0, timeoutMs))
    const drainMs = (await released(IDLE_TIMEOUT_MS + 10_000)) ? Date.now() - loadEnded : undefined
    const { stats, retryCodes } = await fleet.report()
    const latencies = outcomes.map((o) => o.ms).sort((a, b) => a - b)
    const failureKinds: Record<string, number> = {}
    for (const o of outcomes) {
      if (o.ok) continue
      const kind = `${o.error?.code ?? o.error?.name}/${o.error?.causeCode ?? '-'}`
      failureKinds[kind] = (failureKinds[kind] ?? 0) + 1
    }
    return {
      scenario: s.scenario,
      instances: s.instances,
      invocations: outcomes.length,
      opened: stats.opened,
      failures: outcomes.filter((o) => !o.ok).length,
      failureKinds,
      peakBackends: monitor.peak,
      limit: s.limit,
      connectRetries: stats.connectRetries,
      retryCodes,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies.at(-1) ?? 0,
      drainMs,
      outcomes,
    }
  } finally {
    await Promise.all([fleet.stop(), monitor.stop()])
  }
}

/** Rejects if a burst outlives its worst case by far: connect budget, work, and 30 s of slack for a busy machine. */
function hangDetector<T>(burst: Promise<T>, config: InstanceConfig, size: number): Promise<T> {
  const boundMs = (config.options.connectBudgetMs ?? defaultOptions.connectBudgetMs) + config.workMs + 30_000
  return withTimeout(burst, boundMs, () => new Error(`a burst of ${size} invocations did not settle within ${boundMs} ms: a hang`))
}

/** Connections the role may open: what max_connections leaves after the superuser reserve. */
async function roleLimit(pg: TestPg): Promise<number> {
  const [row] = await pg.admin<[{ n: number }]>`
    select current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int
         - coalesce(current_setting('reserved_connections', true)::int, 0) as n`
  return row!.n
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!
}

/** The figures as a plain-text table, one scenario per row, with retry and failure causes below. */
export function formatTable(rows: Figures[]): string {
  const head = ['scenario', 'instances', 'calls', 'opened', 'failures', 'peak/limit', 'retries', 'p50 ms', 'p99 ms', 'max ms', 'drained ms']
  const body = rows.map((f) => [
    f.scenario,
    String(f.instances),
    String(f.invocations),
    String(f.opened),
    String(f.failures),
    `${f.peakBackends}/${f.limit}`,
    String(f.connectRetries),
    f.p50Ms.toFixed(0),
    f.p99Ms.toFixed(0),
    f.maxMs.toFixed(0),
    f.drainMs === undefined ? 'not drained' : String(f.drainMs),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  const causes = rows.map((f) => `  ${f.scenario}: retries ${describe(f.retryCodes)}; failures ${describe(f.failureKinds)}`)
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line), '', 'causes:', ...causes].join('\n')
}

function describe(counts: Record<string, number>): string {
  const entries = Object.entries(counts)
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} x${v}`).join(', ')
}
