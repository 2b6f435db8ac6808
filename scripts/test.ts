/**
 * `npm test`: every suite, on every runtime CI tests, one after the other, each bounded.
 *
 *   this machine's Node   every test file (Bun and Deno run inside it: test/runtimes.test.ts)
 *   Node 22, Node 24      every file but the Workers, Bun/Deno, soak and fleet ones (Lambda's runtimes)
 *   today's workerd       the Workers tests on miniflare 5 under Node 22, on a compatibility date
 *                         before 2026-10-01 and on one after it (DATE_BEFORE, DATE_AFTER); the
 *                         project's own workerd runs them on wrangler.toml's date
 *   today's wrangler      `wrangler deploy --dry-run` of the example Worker under Node 22
 *
 * The extra runtimes come from .ci/runtimes (npm run runtimes:install). Without them a suite is
 * skipped with a line saying how to enable it; on CI (CI=true) that is a failure instead.
 *
 * Each suite runs in a process group of its own, with a marker in its environment and a time
 * bound. A suite that outlives its bound is stopped, naming the tests and hooks still running and
 * the processes left; whatever a suite leaves running after it exits is named and killed, and the
 * run fails. Its temporary directory is removed. `npm test -- <filters>` runs only the first
 * suite, on the matching files.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describeProcesses, killAll, listProcesses, markedWith, RUN_MARKER_ENV, type ProcessInfo } from '../test/harness/processes.js'
import { PROGRESS_FILE_ENV } from '../test/harness/reporter.js'
import { INSTALL_COMMAND, miniflareVersions, runtime, RUNTIMES_MODULES, type Runtime } from '../test/harness/runtimes.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
// Its bin (vitest.mjs) is not in its exports: found beside its package.json, which is.
const VITEST = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs')
const onCi = Boolean(process.env.CI)
/** The whole run's bound; each suite also has its own. */
const BUDGET_S = Number(process.env.WC_TEST_BUDGET_S ?? 20 * 60)
/** After SIGTERM to a stopped suite's group, how long before SIGKILL. */
const KILL_GRACE_MS = 5_000
/**
 * Today's workerd runs the Workers tests on a date before 2026-10-01 and on one after it (from
 * then pending timers keep a Durable Object alive: durable_object_io_tasks_prevent_eviction).
 * Named here, not read from wrangler.toml: wrangler.toml's date is one the project's own wrangler
 * (4.86, the newest on Node 20) can run with `wrangler dev`, so it cannot be after 2026-05-03.
 */
const DATE_BEFORE = '2026-04-21'
const DATE_AFTER = '2026-11-17'

/**
 * On Node 22 and 24: every test file but the Workers tests (the workerd suites run those), the
 * Bun/Deno file (its runtimes are not Node's), and the long soak and fleet workloads. New files
 * are included by default.
 */
const NODE_ONLY_EXCLUDED = ['test/workers.*', 'test/runtimes.test.ts', 'test/soak.test.ts', 'test/fleet.test.ts']
const NODE_ARGS = NODE_ONLY_EXCLUDED.flatMap((glob) => ['--exclude', glob])
const WORKERS_FILES = ['test/workers.']

interface Suite {
  name: string
  /** What it needs besides this machine's Node; missing: skipped (or failed on CI). */
  needs: Runtime[]
  boundS: number
  command(dir: string): [string, string[]]
  env?(dir: string): Record<string, string>
  /** Checked after a clean exit (e.g. the dry run wrote its bundle). */
  check?(dir: string): string | undefined
}

function suites(filters: string[]): Suite[] {
  const node22 = runtime('node22')
  const node24 = runtime('node24')
  const vitest = (node: string, files: string[]) => (): [string, string[]] => [node, [VITEST, 'run', ...files]]
  const main: Suite = { name: `Node ${process.versions.node} (this machine's): every test file, Bun and Deno included`, needs: [], boundS: 12 * 60, command: vitest(process.execPath, filters) }
  if (filters.length > 0) return [{ ...main, name: `Node ${process.versions.node}: ${filters.join(' ')}` }]
  const mf = miniflareVersions()
  const workerd = mf ? `workerd ${mf.workerd} (miniflare ${mf.miniflare})` : "today's workerd"
  const workers = (date: string, why: string): Suite => ({
    name: `${workerd} on ${node22.label}, compatibility date ${date} (${why}): the Workers tests`,
    needs: [node22, runtime('wrangler')],
    boundS: 5 * 60,
    command: vitest(node22.bin ?? 'node', WORKERS_FILES),
    env: () => ({ WC_TEST_MINIFLARE_DIR: RUNTIMES_MODULES, WC_TEST_COMPATIBILITY_DATE: date }),
  })
  const wrangler = runtime('wrangler')
  return [
    main,
    { name: `${node22.label} (Lambda nodejs22.x): every file but the Workers, Bun/Deno, soak and fleet ones`, needs: [node22], boundS: 8 * 60, command: vitest(node22.bin ?? 'node', NODE_ARGS) },
    { name: `${node24.label} (Lambda nodejs24.x): every file but the Workers, Bun/Deno, soak and fleet ones`, needs: [node24], boundS: 8 * 60, command: vitest(node24.bin ?? 'node', NODE_ARGS) },
    workers(DATE_BEFORE, 'before 2026-10-01'),
    workers(DATE_AFTER, 'after 2026-10-01'),
    {
      name: `${wrangler.label} on ${node22.label}: wrangler deploy --dry-run of the example Worker`,
      needs: [node22, wrangler],
      boundS: 2 * 60,
      command: (dir) => [node22.bin ?? 'node', [wrangler.bin ?? 'wrangler', 'deploy', '--dry-run', '--outdir', join(dir, 'wrangler-out')]],
      // Its config, logs and metrics consent go to the suite's directory, not the home directory.
      env: (dir) => ({ WRANGLER_SEND_METRICS: 'false', HOME: dir, XDG_CONFIG_HOME: join(dir, 'config') }),
      check: (dir) => (existsSync(join(dir, 'wrangler-out', 'worker.js')) ? undefined : 'no worker.js in its --outdir'),
    },
  ]
}

type Outcome = 'passed' | 'failed' | 'skipped'

async function main(): Promise<number> {
  const filters = process.argv.slice(2)
  const runDir = mkdtempSync(join(tmpdir(), 'warmconn-ci-'))
  chmodSync(runDir, 0o711) // the test servers run as the `postgres` OS user when we are root
  const wranglerDirExisted = existsSync(join(ROOT, '.wrangler'))
  const started = Date.now()
  const results: Array<{ name: string; outcome: Outcome; seconds: number; note?: string }> = []
  let stopping = false
  let current: { stop(reason: string): void } | undefined
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      stopping = true
      current?.stop(`${signal} received`)
    })
  }
  try {
    const all = suites(filters)
    for (const [index, suite] of all.entries()) {
      const missing = suite.needs.filter((r) => r.missing)
      if (missing.length > 0) {
        const why = missing.map((r) => `${r.label} (${r.source}): ${r.missing}`).join('; ')
        if (onCi) {
          console.error(`\nFAIL: cannot run "${suite.name}": ${why}. .ci/run installs these with npm ci --prefix .ci/runtimes; that step failed or did not run.`)
          results.push({ name: suite.name, outcome: 'failed', seconds: 0, note: 'runtime missing' })
        } else {
          results.push({ name: suite.name, outcome: 'skipped', seconds: 0, note: `${why}; to run it: ${INSTALL_COMMAND}` })
        }
        continue
      }
      const remainingS = BUDGET_S - (Date.now() - started) / 1000
      if (stopping || remainingS < 10) {
        results.push({ name: suite.name, outcome: 'failed', seconds: 0, note: stopping ? 'not run: stopped' : `not run: the run's ${BUDGET_S} s budget is spent` })
        continue
      }
      const dir = join(runDir, `suite-${index + 1}`)
      mkdirSync(dir, { mode: 0o711 })
      chmodSync(dir, 0o711)
      console.log(`\n=== ${suite.name}`)
      const t0 = Date.now()
      const run = runSuite(suite, dir, Math.min(suite.boundS, remainingS))
      current = run
      const failure = await run.done
      current = undefined
      const seconds = (Date.now() - t0) / 1000
      results.push({ name: suite.name, outcome: failure ? 'failed' : 'passed', seconds, ...(failure ? { note: failure } : {}) })
      console.log(`=== ${failure ? 'FAILED' : 'passed'} in ${clock(seconds)}: ${suite.name}${failure ? ` (${failure})` : ''}`)
    }
  } finally {
    rmSync(runDir, { recursive: true, force: true, maxRetries: 5 })
    if (!wranglerDirExisted) rmSync(join(ROOT, '.wrangler'), { recursive: true, force: true })
  }
  report(results, (Date.now() - started) / 1000)
  return results.some((r) => r.outcome === 'failed') ? 1 : 0
}

/** Runs one suite; `done` resolves with why it failed, or undefined. */
function runSuite(suite: Suite, dir: string, boundS: number): { done: Promise<string | undefined>; stop(reason: string): void } {
  const marker = randomUUID()
  const progressFile = join(dir, 'progress')
  const env = { ...process.env, ...suite.env?.(dir), TMPDIR: dir, [RUN_MARKER_ENV]: marker, [PROGRESS_FILE_ENV]: progressFile }
  const [bin, args] = suite.command(dir)
  // A process group of its own: on a hang the whole suite can be stopped at once.
  const child = spawn(bin, args, { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'], detached: true })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (error) => {
      console.error(`could not start ${bin}: ${error.message}`)
      resolve({ code: 127, signal: null })
    })
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  const ours = (): ProcessInfo[] => {
    const all = listProcesses()
    const marked = new Set(markedWith(marker, all).map((p) => p.pid))
    return all.filter((p) => p.pid !== process.pid && (marked.has(p.pid) || (child.pid !== undefined && p.pgid === child.pid)))
  }
  let stopped: string | undefined
  const stop = (reason: string): void => {
    if (stopped) return
    stopped = reason
    const running = readProgress(progressFile)
    const left = ours()
    console.error(`\n${reason}: stopping "${suite.name}".`)
    console.error(running.length > 0 ? `Still running:\n${running.join('\n')}` : 'Still running: no test or hook (a teardown, or a process that would not exit).')
    console.error(left.length > 0 ? `Processes left:\n${describeProcesses(left)}` : 'Processes left: none')
    signalGroup(child.pid, 'SIGTERM')
    setTimeout(() => {
      signalGroup(child.pid, 'SIGKILL')
      killAll(ours())
    }, KILL_GRACE_MS).unref()
  }
  const timer = setTimeout(() => stop(`TIMEOUT after ${Math.round(boundS)} s`), boundS * 1000)
  const done = (async (): Promise<string | undefined> => {
    const { code, signal } = await exited
    clearTimeout(timer)
    // A moment for whatever the suite told to stop, then everything of it that is left goes.
    let left = ours()
    for (let i = 0; i < 20 && left.length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      left = ours()
    }
    if (left.length > 0) {
      console.error(`\nprocesses left running by "${suite.name}" after it exited (now killed):\n${describeProcesses(left)}`)
      signalGroup(child.pid, 'SIGKILL')
      killAll(left)
    }
    if (stopped) return stopped
    if (code !== 0) return `exit ${code ?? signal}`
    if (left.length > 0) return `${left.length} process(es) left running`
    return suite.check?.(dir)
  })()
  return { done, stop }
}

function signalGroup(pgid: number | undefined, signal: NodeJS.Signals): void {
  if (pgid === undefined) return
  try {
    process.kill(-pgid, signal)
  } catch {
    // the group is gone
  }
}

/** The reporter's progress file: what ran when the suite was stopped, with for how long. */
function readProgress(file: string): string[] {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const now = Date.now()
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [since, what] = line.split('\t')
      return `  ${what} (for ${Math.round((now - Number(since)) / 1000)} s)`
    })
}

function report(results: Array<{ name: string; outcome: Outcome; seconds: number; note?: string }>, totalS: number): void {
  console.log(`\n=== Summary (${clock(totalS)} in all)`)
  for (const r of results) console.log(`${r.outcome.padEnd(7)} ${clock(r.seconds).padStart(6)}  ${r.name}${r.note && r.outcome !== 'skipped' ? `: ${r.note}` : ''}`)
  for (const r of results.filter((x) => x.outcome === 'skipped')) console.log(`skipped: ${r.name}: ${r.note}`)
  const count = (o: Outcome) => results.filter((r) => r.outcome === o).length
  const skipped = count('skipped')
  console.log(`suites: ${count('passed')} passed, ${count('failed')} failed${skipped ? `, ${skipped} skipped` : ''}`)
}

function clock(seconds: number): string {
  const s = Math.round(seconds)
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
}

process.exitCode = await main()
