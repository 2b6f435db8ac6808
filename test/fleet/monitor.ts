/**
 * Samples how many server connections a role holds, from the server's own pg_stat_activity, so
 * fleet figures come from what PostgreSQL saw rather than what the clients counted.
 */
import type { TestPg } from '../harness/pg.js'

export interface BackendMonitor {
  /** Highest count sampled so far. */
  readonly peak: number
  /** Resolves true once a fresh sample reads `count` or fewer, false if none does within `timeoutMs`. */
  until(count: number, timeoutMs: number): Promise<boolean>
  /** Stops sampling; rejects if a sample failed. */
  stop(): Promise<void>
}

// Often enough to catch a burst's peak, cheap enough not to be a load of its own.
const SAMPLE_EVERY_MS = 50

/** Samples every SAMPLE_EVERY_MS (plus the query's own time) through the superuser admin connection. */
export function monitorBackends(pg: TestPg, role: string): BackendMonitor {
  let peak = 0
  let current = Infinity
  let running = true
  let sampled: () => void = () => {}
  const loop = (async () => {
    while (running) {
      // Client backends only: PgBouncer's server connections count, background workers do not.
      const [row] = await pg.admin<[{ n: number }]>`
        select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and usename = ${role}`
      current = row!.n
      peak = Math.max(peak, current)
      sampled()
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS))
    }
  })()
  loop.catch(() => (running = false)) // reported by stop()
  const nextSample = () => new Promise<void>((resolve) => (sampled = resolve))

  return {
    get peak() {
      return peak
    },
    async until(count, timeoutMs) {
      const deadline = Date.now() + timeoutMs
      while (running && Date.now() <= deadline) {
        await Promise.race([nextSample(), loop])
        if (current <= count) return true
      }
      return false
    },
    async stop() {
      running = false
      await loop
    },
  }
}
