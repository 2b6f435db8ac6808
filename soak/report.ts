/**
 * Turns what the clients saw into figures: invocations, failures by kind and by the faults they
 * overlapped, reconnects from the apps' own stats, latency, the latency bound, the write ledger,
 * the read target and the password scan.
 * @module
 */
import type { Invocation } from './clients.js'
import { DOWN, blame, type FaultWindow } from './faults.js'
import type { LedgerResult } from './ledger.js'

export interface Failure {
  runtime: Invocation['runtime']
  op: Invocation['op']
  /** HTTP status or the runtime's error type. */
  kind: string
  /** The faults the invocation overlapped, e.g. `blackhole+freeze`, or `none`. */
  during: string
  count: number
  /** What the first one answered, shortened: the runtime's message or the response body. */
  example: string
}

export interface Report {
  seconds: number
  seed: number
  apps: string[]
  invocations: number
  byRuntime: Record<string, number>
  writes: number
  reads: number
  coldStarts: number
  /** Invocations after the faults stopped: the final retries and one GET /db per app. */
  afterFaults: number
  faults: Record<string, number>
  pauses: number
  /** Faults that could not be applied, and why. */
  skipped: string[]
  failures: Failure[]
  /** Summed over every app instance, from the last stats it reported. */
  stats: Record<string, number>
  instances: number
  latency: { p50: number; p99: number; max: number; maxWas: string }
  /**
   * pingTimeoutMs + connectBudgetMs + callTimeoutMs + allowance, and the invocations that took
   * longer (the target: 0, blackholes included: a stale connection's ping, a connect and a call
   * stuck on a silent network are each bounded), with those that overlapped no blackhole.
   */
  bound: { ms: number; over: number; overDuring: Record<string, number>; outsideBlackhole: number }
  ledger: LedgerResult
  /** Reads that failed, and how many of them outside every DOWN fault (the target: 0). */
  failedReads: { total: number; outsideDown: number }
  /** The error code behind each 503, from the apps' own log lines, by runtime. */
  causes: Record<string, number>
  password: { scanned: number; foundIn: string[] }
}

export interface Verdict {
  ledger: boolean
  reads: boolean
  bound: boolean
  password: boolean
}

const STAT_KEYS = ['opened', 'reconnected', 'revalidateFailures', 'replays', 'connectRetries', 'closedBroken', 'closedIdle', 'failures']

export interface ReportInput {
  seconds: number
  seed: number
  apps: string[]
  invocations: readonly Invocation[]
  windows: readonly FaultWindow[]
  skipped: string[]
  pauses: number
  stats: ReadonlyMap<string, Record<string, number>>
  boundMs: number
  ledger: LedgerResult
}

export function buildReport(i: ReportInput): Omit<Report, 'password' | 'causes'> {
  const during = (inv: Invocation): string =>
    inv.final ? 'final retries' : blame(i.windows, inv.start, inv.end, inv.pausedBeforeMs > 0 ? [inv.runtime === 'lambda' ? 'freeze' : 'idle'] : [])
  const failed = i.invocations.filter((inv) => inv.status === undefined || inv.status >= 400)
  const failures = new Map<string, Failure>()
  for (const inv of failed) {
    const f = { runtime: inv.runtime, op: inv.op, kind: inv.error ?? String(inv.status), during: during(inv), count: 0, example: inv.text.slice(0, 120) }
    const key = `${f.runtime} ${f.op} ${f.kind} ${f.during}`
    ;(failures.get(key) ?? failures.set(key, f).get(key)!).count++
  }
  const durations = i.invocations.map((inv) => inv.durationMs).sort((a, b) => a - b)
  const slowest = i.invocations.reduce<Invocation | undefined>((a, b) => (a && a.durationMs >= b.durationMs ? a : b), undefined)
  const overDuring: Record<string, number> = {}
  for (const inv of i.invocations) if (inv.durationMs > i.boundMs) overDuring[during(inv)] = (overDuring[during(inv)] ?? 0) + 1
  const failedReads = failed.filter((inv) => inv.op === 'read')
  const stats = Object.fromEntries(STAT_KEYS.map((k) => [k, [...i.stats.values()].reduce((sum, s) => sum + (s[k] ?? 0), 0)]))
  return {
    seconds: i.seconds,
    seed: i.seed,
    apps: i.apps,
    invocations: i.invocations.length,
    byRuntime: count(i.invocations.map((inv) => inv.runtime)),
    writes: i.invocations.filter((inv) => inv.op === 'write').length,
    reads: i.invocations.filter((inv) => inv.op === 'read').length,
    coldStarts: i.invocations.filter((inv) => inv.coldStart).length,
    afterFaults: i.invocations.filter((inv) => inv.final).length,
    faults: count(i.windows.map((w) => w.kind)),
    pauses: i.pauses,
    skipped: i.skipped,
    failures: [...failures.values()].sort((a, b) => b.count - a.count),
    stats,
    instances: i.stats.size,
    latency: {
      p50: percentile(durations, 0.5),
      p99: percentile(durations, 0.99),
      max: durations.at(-1) ?? 0,
      maxWas: slowest ? `${slowest.op} -> ${slowest.error ?? slowest.status}, during ${during(slowest)}` : 'none',
    },
    bound: {
      ms: i.boundMs,
      over: Object.values(overDuring).reduce((a, b) => a + b, 0),
      overDuring,
      outsideBlackhole: Object.entries(overDuring).filter(([d]) => !d.split('+').includes('blackhole')).reduce((a, [, n]) => a + n, 0),
    },
    ledger: i.ledger,
    failedReads: {
      total: failedReads.length,
      outsideDown: failedReads.filter((inv) => !during(inv).split('+').some((kind) => DOWN.has(kind))).length,
    },
  }
}

export function verdict(r: Report): Verdict {
  const l = r.ledger
  return {
    ledger: l.lost === 0 && l.duplicated === 0 && l.missing === 0 && l.unexpected === 0,
    reads: r.failedReads.outsideDown === 0,
    bound: r.bound.over === 0,
    password: r.password.foundIn.length === 0,
  }
}

export function formatReport(r: Report): string {
  const v = verdict(r)
  const l = r.ledger
  const s = r.stats
  const ms = (n: number) => `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`
  const list = (o: Record<string, number>) => Object.entries(o).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'
  const lines = [
    `warmconn soak: ${r.seconds} s of faults, seed ${r.seed}, apps: ${r.apps.join(', ')}`,
    `invocations   ${r.invocations} (${Math.round(r.invocations / r.seconds)}/s; ${list(r.byRuntime)}): ${r.writes} writes, ${r.reads} reads, ${r.coldStarts} cold starts, ${r.afterFaults} after the faults stopped`,
    `faults        ${list(r.faults)}; ${r.pauses} client pauses (Lambda frozen, Worker idle)${r.skipped.length ? `; not applied: ${r.skipped.join('; ')}` : ''}`,
    `failures      ${r.failures.reduce((a, f) => a + f.count, 0)}${r.failures.length ? ' (runtime, op, status or error, during, first answer):' : ''}`,
    ...r.failures.map((f) => `  ${String(f.count).padStart(6)}  ${f.runtime.padEnd(6)} ${f.op.padEnd(5)} ${f.kind.padEnd(20)} ${f.during.padEnd(28)} ${f.example}`),
    `503 causes    ${list(r.causes)}`,
    `reconnects    ${s.reconnected} (from ${r.instances} instances' stats: opened ${s.opened}, stale pings failed ${s.revalidateFailures}, ` +
      `replays ${s.replays}, connect retries ${s.connectRetries}, closed broken ${s.closedBroken}, closed idle ${s.closedIdle}, failed runs ${s.failures})`,
    `latency       p50 ${ms(r.latency.p50)}, p99 ${ms(r.latency.p99)}, max ${ms(r.latency.max)} (${r.latency.maxWas})`,
    `bound         ${ms(r.bound.ms)} (pingTimeoutMs + connectBudgetMs + callTimeoutMs + allowance): ${r.bound.over} over` +
      (r.bound.over ? ` (${list(r.bound.overDuring)}), ${r.bound.outsideBlackhole} of them outside blackholes` : ''),
    `ledger        ${l.keys} keys, ${l.acked} acked (${l.retried} retried), lost ${l.lost}, duplicated ${l.duplicated}, missing ${l.missing}, ` +
      `never acked ${l.unacked}, unexpected rows ${l.unexpected}${l.examples.length ? `: ${l.examples.join(', ')}` : ''}`,
    `reads         ${r.failedReads.total} failed, ${r.failedReads.outsideDown} of them outside restarts, blackholes and fills`,
    `password      ${r.password.foundIn.length ? `FOUND in ${r.password.foundIn.join(', ')}` : 'not found'} in ${r.password.scanned} lines scanned`,
    `targets       ledger ${met(v.ledger)}, reads fail only while the database is down or full ${met(v.reads)}, ` +
      `latency bound ${met(v.bound)}, no password ${met(v.password)}`,
  ]
  return lines.join('\n')
}

const met = (ok: boolean) => (ok ? 'met' : 'NOT MET')

function count(labels: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const label of labels) out[label] = (out[label] ?? 0) + 1
  return out
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!
}
