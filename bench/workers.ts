/**
 * The Workers half of the benchmark (Miniflare/workerd): the example Worker's `GET /db` in
 * Durable Object mode (warm connection in the object), per-request mode (a new connection each
 * request) and Hyperdrive-style per-request (Miniflare's local Hyperdrive: no pool).
 */
import { startWorker } from '../test/harness/worker.js'
import { summarize, type Summary } from './stats.js'

interface Mode {
  bindings: (url: string) => Record<string, string>
  hyperdrives?: (url: string) => Record<string, string>
}

export const WORKER_PATTERNS: Record<string, Mode> = {
  'DO (warm)': { bindings: (url) => ({ DATABASE_URL: url }) },
  'per-request': { bindings: (url) => ({ DATABASE_URL: url, WARMCONN_MODE: 'per-request' }) },
  'per-request via Hyperdrive': { bindings: (url) => ({ DATABASE_URL: url }), hyperdrives: (url) => ({ HYPERDRIVE: url }) },
}

export async function runWorkers(url: string, n: number, onTick: (label: string) => void): Promise<Array<Summary & { pattern: string }>> {
  const out: Array<Summary & { pattern: string }> = []
  for (const [pattern, mode] of Object.entries(WORKER_PATTERNS)) {
    const worker = await startWorker({
      entry: 'functions/worker.ts',
      bindings: mode.bindings(url),
      ...(mode.hyperdrives ? { hyperdrives: mode.hyperdrives(url) } : {}),
    })
    try {
      for (let i = 0; i < 3; i++) await worker.fetch('GET', '/db')
      const samples: number[] = []
      for (let i = 0; i < n; i++) {
        const res = await worker.fetch('GET', '/db')
        if (res.status !== 200) throw new Error(`${pattern}: GET /db answered ${res.status}: ${res.text}`)
        samples.push(res.ms)
        onTick(pattern)
      }
      out.push({ pattern, ...summarize(samples) })
    } finally {
      await worker.dispose()
    }
  }
  return out
}
