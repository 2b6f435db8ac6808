/**
 * One simulated function instance: a module, as deployed. host.ts evaluates this bundle once per
 * instance, so each instance has its own module scope and therefore its own warmconn registry
 * and holder, as a serverless instance has (only postgres.js' code is shared, see fleet.ts). An
 * invocation runs a query that holds its connection for `workMs`.
 */
import { workerData } from 'node:worker_threads'
import { warmPostgres } from '../../src/drivers/postgres.js'
import type { InstanceConfig, Outcome, Report } from './fleet.js'

// From the worker thread's data, or (a child process host, which can be frozen) the environment.
const config = ((workerData as { config: InstanceConfig } | null)?.config ?? JSON.parse(process.env.FLEET_INSTANCE_CONFIG!)) as InstanceConfig
// Module scope, as in a deployed function: created on load, reused by every warm invocation.
const db = warmPostgres(config.url, config.options)
const retryCodes: Record<string, number> = {}
db.on('connectRetry', ({ code }) => {
  const key = code ?? 'unknown'
  retryCodes[key] = (retryCodes[key] ?? 0) + 1
})

export async function handler(): Promise<Outcome> {
  const started = performance.now()
  try {
    await db.run((sql) => sql`select pg_sleep(${config.workMs / 1000})`, { idempotent: true })
    return { ok: true, ms: performance.now() - started }
  } catch (err) {
    const e = err as Error & { code?: string; causeCode?: string }
    return { ok: false, ms: performance.now() - started, error: { name: e.name, code: e.code, causeCode: e.causeCode, message: e.message } }
  }
}

export function report(): Report {
  return { stats: db.stats(), retryCodes }
}

export async function close(): Promise<void> {
  await db.close({ timeoutMs: 1_000 })
}
