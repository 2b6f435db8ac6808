/**
 * warmconn under Bun and Deno (and the project's Node, for comparison), every driver in
 * test/runtimes/child.ts: the built package, installed in a fresh folder and imported by name, in a child process of that
 * runtime, against the test PostgreSQL behind the fault proxy. Each step is checked on the
 * server: reuse, a backend killed while idle, a socket blackholed past staleAfterMs, hygiene
 * after a call that leaves or aborts a transaction, and the idle close that lets the process end
 * by itself.
 *
 * Bun and Deno come from .ci/runtimes (test/harness/runtimes.ts): skipped with a note on a
 * machine without them, a failure on CI.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { runtime, runtimeRequirement } from './harness/runtimes.js'
import { requires, type Requirement } from './helpers/requires.js'
import { sleep } from './helpers/core.js'
import { DRIVERS, type Command, type Message } from './runtimes/child.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CHILD_SOURCE = join(ROOT, 'test', 'runtimes', 'child.ts')
/** The packages the entries of DRIVERS load (warmconn's optional peers). */
const DRIVER_PACKAGES = ['postgres', 'pg']
// allowExitOnIdle off: the last step proves the idle close (test/exit-on-idle.test.ts proves the default).
const OPTIONS = { staleAfterMs: 300, pingTimeoutMs: 500, idleTimeoutMs: 2_000, connectTimeoutMs: 3_000, callTimeoutMs: 10_000, allowExitOnIdle: false }
/** Hang detectors, not timing assertions: a reply or an exit past these is a hang. */
const REPLY_TIMEOUT_MS = 20_000
const EXIT_TIMEOUT_MS = OPTIONS.idleTimeoutMs + 20_000
/** Between a fault and the next call: the connection sits idle (below staleAfterMs). */
const IDLE_GAP_MS = 150

interface Target {
  name: string
  requirement: Requirement
  /** The command that runs a TypeScript file in this runtime. */
  command(file: string): [string, string[]]
  env?: Record<string, string>
}

const tsx = createRequire(import.meta.url).resolve('tsx')
const TARGETS: Target[] = [
  {
    name: `Node ${process.versions.node} (the project's, for comparison)`,
    requirement: { what: 'node', missing: undefined, enable: '' },
    command: (file) => [process.execPath, ['--import', tsx, file]],
  },
  {
    name: runtime('bun').label,
    requirement: runtimeRequirement('bun'),
    command: (file) => [runtime('bun').bin!, [file]],
    // No transpiler cache in the home directory.
    env: { BUN_RUNTIME_TRANSPILER_CACHE_PATH: '0' },
  },
  {
    name: runtime('deno').label,
    requirement: runtimeRequirement('deno'),
    // -A: network, environment and file reads; --no-lock: no deno.lock written into the checkout.
    command: (file) => [runtime('deno').bin!, ['run', '-A', '--no-lock', file]],
    env: { DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1' },
  },
]

let pg: TestPg
let proxy: FaultProxy
/** An application folder with warmconn installed in it, built from this source (see installed()). */
let appDir: string
beforeAll(async () => {
  appDir = installed()
  pg = await startPostgres()
  proxy = await startProxy({ host: pg.host, port: pg.port })
  await pg.admin`create table runtime_rows (tag text not null)`
})
afterAll(async () => {
  await proxy?.close()
  await pg?.stop()
  if (appDir) rmSync(appDir, { recursive: true, force: true })
})

for (const target of TARGETS) {
  describe(target.name, requires(target.requirement), () => {
    for (const driverName of Object.keys(DRIVERS)) {
      describe(`warmconn with ${driverName}`, () => {
        const app = `wc-rt-${target.name.split(' ')[0]!.toLowerCase()}-${driverName}`.slice(0, 63)
        let child: Child
        beforeAll(async () => {
          child = await startChild(target, driverName, app)
        })
        afterAll(() => child?.kill())

        it('reuses one backend for every call', async () => {
          const pids = []
          for (let i = 0; i < 3; i++) pids.push(await child.pid())
          expect(new Set(pids).size).toBe(1)
          expect((await pg.backends(app)).map((b) => b.pid)).toEqual([pids[0]])
          expect(child.stats).toMatchObject({ opened: 1, failures: 0 })
        })

        it('a backend killed while idle: the next call succeeds on a new one', async () => {
          const before = await child.pid()
          const { opened } = child.stats
          await pg.terminate({ pid: before })
          await sleep(IDLE_GAP_MS)
          const next = await child.pid()
          expect(next).not.toBe(before)
          expect((await pg.backends(app)).map((b) => b.pid)).toEqual([next])
          expect(child.stats).toMatchObject({ opened: opened! + 1, failures: 0 })
        })

        it('a socket blackholed past staleAfterMs: one bounded ping fails, the call goes on a new connection', async () => {
          const before = await child.pid()
          const { opened, revalidateFailures } = child.stats
          proxy.blackhole()
          proxy.heal() // the old connection stays silent (a NAT forgot it); new ones get through
          await sleep(OPTIONS.staleAfterMs + 200)
          const next = await child.pid()
          expect(next).not.toBe(before)
          expect(child.events).toContain('revalidateFail')
          expect(child.stats).toMatchObject({ opened: opened! + 1, revalidateFailures: revalidateFailures! + 1, failures: 0 })
          proxy.resetSilenced()
          await pg.terminate({ pid: before }) // the silenced backend's server side, if the reset has not ended it yet
          expect((await pg.backends(app)).map((b) => b.pid)).toEqual([next])
        })

        it('a call that leaves a transaction open, and one that throws inside one: both rolled back, the next call runs clean', async () => {
          const pid = await child.pid()
          const { sessionResets } = child.stats
          const tag = `${app}-${Date.now()}`
          const since = await pg.mark()
          expect(await child.send({ op: 'abandon', statements: ['begin', `insert into runtime_rows values ('${tag}-open')`] })).toMatchObject({ ok: true })
          expect(await child.send({ op: 'throw', statements: ['begin', `insert into runtime_rows values ('${tag}-thrown')`] })).toMatchObject({
            ok: false,
            error: { message: 'thrown on purpose' },
          })
          const clean = await child.send({ op: 'query', text: 'select pg_backend_pid() as pid, pg_current_xact_id_if_assigned() is null as clean, now() = statement_timestamp() as fresh' })
          expect(clean).toMatchObject({ ok: true, rows: [{ pid, clean: true, fresh: true }] })
          const [row] = await pg.admin<[{ n: number }]>`select count(*)::int as n from runtime_rows where tag like ${tag + '%'}`
          expect(row.n).toBe(0)
          const rollbacks = (await pg.statements({ pid, since })).filter((s) => /^rollback$/i.test(s))
          expect(rollbacks).toHaveLength(2)
          expect(child.stats).toMatchObject({ sessionResets: sessionResets! + 2 })
        })

        it('left idle, it closes its connection after idleTimeoutMs and the process ends by itself', async () => {
          child.endInput()
          const { code, signal } = await child.exited(EXIT_TIMEOUT_MS)
          expect({ code, signal }).toEqual({ code: 0, signal: null })
          expect(child.events).toContain('closeIdle')
          expect(child.events).not.toContain('close') // nobody called close(): the idle timer did it
          expect(await pg.backends(app)).toEqual([])
        })
      })
    }
  })
}

/**
 * A fresh application folder in the run's temporary directory, as a user's: node_modules/warmconn
 * holds package.json and a dist/ compiled from this source (into the folder, so the checkout's own
 * dist/, which other tests pack, is never touched), the drivers' packages are the project's copies,
 * and child.ts sits at the top. The runtimes resolve `warmconn/postgres` through its `exports`.
 */
function installed(): string {
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-runtimes-'))
  const pkg = join(dir, 'node_modules', 'warmconn')
  mkdirSync(pkg, { recursive: true })
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', join(pkg, 'dist')], { cwd: ROOT, stdio: 'pipe' })
  copyFileSync(join(ROOT, 'package.json'), join(pkg, 'package.json'))
  // The drivers' own packages: the project's copies (each finds its dependencies where it really is).
  for (const dependency of DRIVER_PACKAGES) symlinkSync(join(ROOT, 'node_modules', dependency), join(dir, 'node_modules', dependency), 'dir')
  const dependencies = Object.fromEntries(['warmconn', ...DRIVER_PACKAGES].map((name) => [name, '*']))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'warmconn-runtimes-check', private: true, type: 'module', dependencies }))
  copyFileSync(CHILD_SOURCE, join(dir, 'child.ts'))
  return dir
}

interface Child {
  pid(): Promise<number>
  send(command: Command): Promise<Message>
  /** The stats of the last reply. */
  readonly stats: Record<string, number>
  readonly events: string[]
  endInput(): void
  exited(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(): void
}

async function startChild(target: Target, driver: string, app: string): Promise<Child> {
  const [bin, args] = target.command(join(appDir, 'child.ts'))
  // Caches (Deno's modules, ...) go to this run's temporary directory, deleted with it.
  const cache = join(tmpdir(), 'runtime-cache')
  mkdirSync(cache, { recursive: true })
  const proc: ChildProcess = spawn(bin, args, {
    cwd: appDir,
    env: {
      ...process.env,
      ...target.env,
      DENO_DIR: join(cache, 'deno'),
      WC_TEST_CHILD: '1',
      WC_TEST_DRIVER: driver,
      DATABASE_URL: pg.urlFor({ port: proxy.port }),
      WC_TEST_OPTIONS: JSON.stringify({ ...OPTIONS, applicationName: app }),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const events: string[] = []
  const replies: Array<(m: Message) => void> = []
  const stderr: string[] = []
  let stats: Record<string, number> = {}
  let ready!: (m: Message) => void
  const readyMessage = new Promise<Message>((resolve) => (ready = resolve))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('close', (code, signal) => resolve({ code, signal }))
    proc.once('error', (error) => {
      stderr.push(`could not start ${bin}: ${error.message}\n`)
      resolve({ code: null, signal: null })
    })
  })
  proc.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')))
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let message: Message
    try {
      message = JSON.parse(line) as Message
    } catch {
      stderr.push(`(stdout) ${line}\n`)
      return
    }
    if ('event' in message) events.push(message.event)
    else if ('ready' in message) ready(message)
    else {
      stats = message.stats
      replies.shift()?.(message)
    }
  })
  const bounded = <T>(what: string, promise: Promise<T>, ms: number): Promise<T> => {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${target.name}: no answer within ${ms} ms while ${what}:\n${stderr.join('')}`)), ms)
    })
    const died = exit.then(({ code, signal }) => Promise.reject(new Error(`${target.name} exited (${code ?? signal}) while ${what}:\n${stderr.join('')}`)))
    return Promise.race([promise, died, late]).finally(() => clearTimeout(timer))
  }
  const send = (command: Command): Promise<Message> => {
    const reply = new Promise<Message>((resolve) => replies.push(resolve))
    proc.stdin!.write(`${JSON.stringify(command)}\n`)
    return bounded(`running ${JSON.stringify(command)}`, reply, REPLY_TIMEOUT_MS)
  }
  const started = await bounded('starting', readyMessage, REPLY_TIMEOUT_MS)
  expect(started).toMatchObject({ runtime: target.name.split(' (')[0] })
  return {
    send,
    async pid() {
      // A read: idempotent, so a connection that died the instant before it is replaced, not an error.
      const reply = await send({ op: 'query', text: 'select pg_backend_pid() as pid', idempotent: true })
      if (!('ok' in reply) || !reply.ok) throw new Error(`the query failed: ${JSON.stringify(reply)}`)
      return Number(reply.rows[0]!.pid)
    },
    get stats() {
      return stats
    },
    events,
    endInput: () => proc.stdin!.end(),
    exited: (ms) => bounded('waiting for it to exit by itself', exit, ms),
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    },
  }
}
