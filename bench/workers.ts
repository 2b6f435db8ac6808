/**
 * The Workers half of the benchmark (Miniflare): Durable Object mode vs per-request connections
 * vs Hyperdrive-style per-request. Filled in once the Workers adapter lands; until then no rows.
 */
import type { Summary } from './stats.js'

export const WORKER_PATTERNS: Record<string, string> = {}

export async function runWorkers(_url: string, _n: number, _onTick: (label: string) => void): Promise<Array<Summary & { pattern: string }>> {
  return []
}
