/**
 * A fleet of 200 simulated function instances, each with its own module scope and so its own
 * warm connection, against a PostgreSQL with max_connections 40: through PgBouncer, and directly
 * with connect backoff. Figures come from the server's pg_stat_activity; the table is printed at
 * the end (`npx tsx scripts/fleet.ts` prints the same table on its own).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { pgBouncer, startPgBouncer } from './harness/pgbouncer.js'
import { requires } from './helpers/requires.js'
import { BOUNCER_OPTIONS, directOverBudget, directWaiting, formatTable, IDLE_TIMEOUT_MS, OVER_BUDGET_MS, POOL_SIZE, throughPgBouncer, type Figures } from './fleet/scenarios.js'

// Fleets of 200 on two cores, maybe next to other test runs: time is bounded by the hang
// detectors inside the scenarios, not by vitest's default.
const SCENARIO_TIMEOUT_MS = 120_000
// The brief's bound for the fleet letting go of the server after the load stops.
const DRAIN_BOUND_MS = IDLE_TIMEOUT_MS + 1_000

let pg: TestPg
const figures: Figures[] = []

beforeAll(async () => {
  pg = await startPostgres({ maxConnections: 40 })
})
afterAll(async () => {
  if (figures.length > 0) console.log(`\nFleet figures (max_connections 40):\n${formatTable(figures)}\n`)
  await pg?.stop()
})

/** No failure message may carry the password, whatever went wrong. */
function expectNoSecret(f: Figures): void {
  for (const o of f.outcomes) expect(o.error?.message ?? '').not.toContain(pg.password)
}

describe('through PgBouncer (transaction mode)', requires(pgBouncer), () => {
  it('a 200-way burst and steady bursts all succeed; the server never sees more than the pool', async () => {
    const bouncer = await startPgBouncer(pg, BOUNCER_OPTIONS)
    try {
      const f = await throughPgBouncer(pg, bouncer)
      figures.push(f)
      expect(f.failures).toBe(0)
      // Each instance has its own holder (its own module scope): the 200-way burst alone opened 200.
      expect(f.opened).toBeGreaterThanOrEqual(200)
      expect(f.peakBackends).toBeLessThanOrEqual(POOL_SIZE)
      expect(f.connectRetries).toBe(0)
      // Every instance let go of its PgBouncer client connection once idle.
      expect(f.drainMs).toBeLessThanOrEqual(DRAIN_BOUND_MS)
      expectNoSecret(f)
    } finally {
      await bouncer.stop() // its server connections go with it, freeing the server for the next scenarios
    }
  }, SCENARIO_TIMEOUT_MS)
})

describe('directly, without a pooler', () => {
  it('bursts beyond the free slots wait out 53300 with backoff and all succeed; the server lets go after idleTimeout', async () => {
    const f = await directWaiting(pg)
    figures.push(f)
    expect(f.failures).toBe(0)
    expect(f.peakBackends).toBeLessThanOrEqual(f.limit)
    // The server really was full: instances were turned away and retried.
    expect(f.retryCodes['53300']).toBeGreaterThan(0)
    expect(f.drainMs).toBeLessThanOrEqual(DRAIN_BOUND_MS)
    expectNoSecret(f)
  }, SCENARIO_TIMEOUT_MS)

  it('more simultaneous connections than the server has, with a short budget: a typed ConnectError after the budget, never a hang', async () => {
    const f = await directOverBudget(pg)
    figures.push(f)
    expect(f.peakBackends).toBeLessThanOrEqual(f.limit)
    expect(f.invocations - f.failures).toBeLessThanOrEqual(f.limit)
    expect(f.failures).toBeGreaterThanOrEqual(f.instances - f.limit)
    for (const o of f.outcomes.filter((o) => !o.ok)) {
      expect(o.error).toMatchObject({ name: 'ConnectError', code: 'WARMCONN_CONNECT_FAILED' })
      // The server was full (53300), but the holder starts a last attempt with whatever sliver of
      // budget is left (down to 1 ms); when that attempt times out, its timeout is the reported cause.
      expect(['53300', 'CONNECT_TIMEOUT']).toContain(o.error!.causeCode)
      // A hang detector, not a speed test: the budget plus wide slack for a busy machine.
      expect(o.ms).toBeLessThan(OVER_BUDGET_MS + 10_000)
    }
    expect(f.retryCodes['53300']).toBeGreaterThan(0)
    expect(f.drainMs).toBeLessThanOrEqual(DRAIN_BOUND_MS)
    expectNoSecret(f)
  }, SCENARIO_TIMEOUT_MS)
})
