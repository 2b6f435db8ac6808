/**
 * The frozen fleet: instances in child processes, each process frozen (SIGSTOP) once its
 * instances have served a request, as Lambda freezes an idle execution environment. Frozen
 * instances run no timers, so only the server can end their sessions: what the fleet holds is read
 * from the server's pg_stat_activity.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serverIdleTimeoutMs } from '../../src/server-idle.js'
import { withTimeout } from '../../src/timer.js'
import type { TestPg } from '../harness/pg.js'
import { bundle, type InstanceConfig, type Outcome, type Report } from './fleet.js'
import { monitorBackends } from './monitor.js'
import type { Figures } from './scenarios.js'

export const FROZEN_IDLE_TIMEOUT_MS = 2_000
const PER_PROCESS = 10

interface Host {
  child: ChildProcess
  first: number
  count: number
  pending: Map<number, (reply: { outcome?: Outcome; report?: Report }) => void>
}

/**
 * `instances` instances, PER_PROCESS to a process. One process after another serves one request
 * on each of its instances at once and is then frozen, so the server fills with the connections of
 * frozen functions, as a quiet fleet's does. Reports the server's peak, the failures, and how long
 * after the last request the server held none of the fleet's connections (all still frozen).
 */
export async function frozenFleet(pg: TestPg, o: { instances: number; serverIdleClose: boolean; connectBudgetMs: number }): Promise<Figures> {
  const config: InstanceConfig = {
    url: pg.appUrl,
    options: { idleTimeoutMs: FROZEN_IDLE_TIMEOUT_MS, serverIdleClose: o.serverIdleClose, connectBudgetMs: o.connectBudgetMs, connectRetries: 1_000, connectBackoffBaseMs: 50, connectBackoffMaxMs: 500 },
    workMs: 20,
  }
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-frozen-fleet-'))
  const hostFile = join(dir, 'host.mjs')
  writeFileSync(hostFile, await bundle('./process-host.ts'))
  const instanceCode = await bundle('./instance.ts')
  const hosts: Host[] = []
  const monitor = monitorBackends(pg, 'app')
  let seq = 0
  const ask = (h: Host, id: number, type: 'invoke' | 'report' | 'close') =>
    new Promise<{ outcome?: Outcome; report?: Report }>((resolve) => {
      h.pending.set(++seq, resolve)
      h.child.send({ seq, type, id })
    })
  try {
    for (let first = 0; first < o.instances; first += PER_PROCESS) {
      const count = Math.min(PER_PROCESS, o.instances - first)
      const child = fork(hostFile, [], { env: { ...process.env, FLEET_INSTANCE_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      const h: Host = { child, first, count, pending: new Map() }
      const ready = new Promise<void>((resolve, reject) => {
        child.on('message', (m: { ready?: true; seq?: number; outcome?: Outcome; report?: Report }) => {
          if (m.ready) return resolve()
          h.pending.get(m.seq!)?.(m)
          h.pending.delete(m.seq!)
        })
        child.once('exit', (code) => reject(new Error(`fleet host exited (${code})`)))
      })
      child.send({ instanceCode, first, count })
      hosts.push(h)
      await ready
    }
    const outcomes: Outcome[] = []
    for (const h of hosts) {
      const ids = Array.from({ length: h.count }, (_, i) => h.first + i)
      const bound = o.connectBudgetMs + 30_000
      const served = Promise.all(ids.map(async (id) => (await ask(h, id, 'invoke')).outcome!))
      outcomes.push(...(await withTimeout(served, bound, () => new Error(`a wave did not settle within ${bound} ms: a hang`))))
      h.child.kill('SIGSTOP')
    }
    const loadEnded = Date.now()
    const drained = await monitor.until(0, serverIdleTimeoutMs(FROZEN_IDLE_TIMEOUT_MS) + 10_000)
    const drainMs = drained ? Date.now() - loadEnded : undefined
    for (const h of hosts) h.child.kill('SIGCONT')
    const reports = await Promise.all(hosts.flatMap((h) => Array.from({ length: h.count }, (_, i) => ask(h, h.first + i, 'report'))))
    const connectRetries = reports.reduce((n, r) => n + r.report!.stats.connectRetries, 0)
    const retryCodes: Record<string, number> = {}
    for (const r of reports) for (const [k, v] of Object.entries(r.report!.retryCodes)) retryCodes[k] = (retryCodes[k] ?? 0) + v
    const failureKinds: Record<string, number> = {}
    for (const f of outcomes.filter((x) => !x.ok)) {
      const kind = `${f.error?.code ?? f.error?.name}/${f.error?.causeCode ?? '-'}`
      failureKinds[kind] = (failureKinds[kind] ?? 0) + 1
    }
    const latencies = outcomes.map((x) => x.ms).sort((a, b) => a - b)
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] ?? 0
    const [limit] = await pg.admin<[{ n: number }]>`select current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int - coalesce(current_setting('reserved_connections', true)::int, 0) as n`
    return {
      scenario: `frozen fleet, server idle close ${o.serverIdleClose ? 'on' : 'off'}`,
      instances: o.instances,
      invocations: outcomes.length,
      opened: reports.reduce((n, r) => n + r.report!.stats.opened, 0),
      failures: outcomes.filter((x) => !x.ok).length,
      failureKinds,
      peakBackends: monitor.peak,
      limit: limit!.n,
      connectRetries,
      retryCodes,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      maxMs: latencies.at(-1) ?? 0,
      drainMs,
      outcomes,
    }
  } finally {
    for (const h of hosts) h.child.kill('SIGKILL')
    await monitor.stop()
    await pg.terminate({})
    rmSync(dir, { recursive: true, force: true })
  }
}
