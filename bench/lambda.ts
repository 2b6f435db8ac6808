/**
 * The Lambda half of the benchmark: each pattern is bundled like a deployable function and run
 * in the emulator, frozen between invocations, so every number includes what Lambda adds.
 */
import { join } from 'node:path'
import { build, startLambda } from '../test/harness/lambda/emulator.js'
import { summarize, type Summary } from './stats.js'

export const LAMBDA_PATTERNS = {
  'a connect per call': { file: 'connect', env: {} },
  'a warmconn, cold every call': { file: 'warmconn', env: { BENCH_IDLE_TIMEOUT_MS: '1' } },
  'b ping every call': { file: 'ping', env: {} },
  'c warmconn': { file: 'warmconn', env: {} },
  'c warmconn, stale read': { file: 'warmconn', env: { BENCH_STALE_AFTER_MS: '0' } },
  'c warmconn, stale write': { file: 'warmconn', env: { BENCH_STALE_AFTER_MS: '0', BENCH_IDEMPOTENT: '0' } },
  'd raw held (limit)': { file: 'raw', env: {} },
} as const

export type LambdaPattern = keyof typeof LAMBDA_PATTERNS

export async function buildLambdas(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const file of new Set(Object.values(LAMBDA_PATTERNS).map((p) => p.file))) {
    out[file] = await build(join('bench', 'functions', `${file}.ts`), join(dir, `${file}.mjs`))
  }
  return out
}

/** Runs `n` warm invocations (after a cold one and two warm-ups) and summarizes their duration. */
export async function runLambda(
  bundle: string,
  env: Record<string, string>,
  n: number,
  flights: () => number,
  onTick: () => void,
): Promise<Summary & { coldMs: number; flights: number }> {
  const lambda = await startLambda({ handlerFile: bundle, env, timeoutMs: 30_000 })
  try {
    const cold = await lambda.invoke({ n: 0 })
    if (cold.error) throw new Error(`${cold.error.errorType}: ${cold.error.errorMessage}`)
    for (let i = 0; i < 2; i++) await lambda.invoke({ n: i })
    const samples: number[] = []
    const before = flights()
    for (let i = 0; i < n; i++) {
      const out = await lambda.invoke({ n: i })
      if (out.error || out.result !== i) throw new Error(`invocation ${i} failed: ${JSON.stringify(out.error ?? out.result)}`)
      samples.push(out.durationMs)
      onTick()
    }
    return { ...summarize(samples), coldMs: cold.durationMs, flights: (flights() - before) / n }
  } finally {
    await lambda.kill()
  }
}
