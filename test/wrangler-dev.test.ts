/**
 * The example Worker runs locally as the README and wrangler.toml say: `npx wrangler dev` with
 * the wrangler this project installs (devDependencies), on the Node that runs the tests. A copy
 * of what a fresh clone has for the Worker (wrangler.toml, functions/, src/, package.json,
 * tsconfig.json; node_modules linked) is served by `wrangler dev` on a free port, with
 * DATABASE_URL from an env file (so no password on a command line); `GET /db` must answer from a
 * backend the test PostgreSQL sees, through the Durable Object. Then wrangler is stopped (its
 * whole process group) and nothing of it is left. This is what failed when wrangler.toml asked
 * for a compatibility date newer than this wrangler knows.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { freePort } from './harness/ports.js'
import { isAlive } from './harness/processes.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const WRANGLER = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js')
/** Hang detectors: wrangler's start (bundling, workerd) and its stop. */
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 10_000

let pg: TestPg
let dir: string
let wrangler: ChildProcess | undefined
let output = ''

beforeAll(async () => {
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-wrangler-dev-'))
  const app = join(dir, 'app')
  mkdirSync(app)
  for (const path of ['wrangler.toml', 'package.json', 'tsconfig.json', 'functions', 'src']) cpSync(join(ROOT, path), join(app, path), { recursive: true })
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir')
  writeFileSync(join(dir, 'dev.env'), `DATABASE_URL=${pg.appUrl}\n`, { mode: 0o600 })
}, 120_000)

afterAll(async () => {
  await stop()
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

async function stop(): Promise<void> {
  const child = wrangler
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  signalGroup(child.pid, 'SIGTERM')
  const hard = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(hard)
  // workerd runs in wrangler's group; a straggler gets the group's SIGKILL.
  signalGroup(child.pid, 'SIGKILL')
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // the group is gone
  }
}

describe('npx wrangler dev (the project\'s wrangler, this Node)', () => {
  it('serves the example Worker from a fresh checkout: GET /db answers from a real backend through the Durable Object, and stopping it leaves no process', async () => {
    const port = await freePort()
    const app = join(dir, 'app')
    // detached: a process group of its own, so wrangler and its workerd stop together.
    wrangler = spawn(process.execPath, [WRANGLER, 'dev', '--ip', '127.0.0.1', '--port', String(port), '--env-file', join(dir, 'dev.env'), '--persist-to', join(dir, 'state'), '--inspector-port', String(await freePort()), '--show-interactive-dev-session=false', '--log-level', 'info'], {
      cwd: app,
      // Its config, logs and metrics consent go to the temporary directory, not the home directory.
      env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), WRANGLER_SEND_METRICS: 'false', CI: 'true', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (/Ready on http/.test(output)) resolve()
      }
      wrangler!.stdout!.on('data', onData)
      wrangler!.stderr!.on('data', onData)
      wrangler!.once('exit', (code, signal) => reject(new Error(`wrangler dev exited (${code ?? signal}) before it was ready:\n${output}`)))
      setTimeout(() => reject(new Error(`wrangler dev not ready within ${READY_TIMEOUT_MS} ms:\n${output}`)), READY_TIMEOUT_MS).unref()
    })
    await ready

    const res = await fetch(`http://127.0.0.1:${port}/db`)
    const body = (await res.json()) as { pid?: number; stats?: { opened?: number } }
    expect(res.status, JSON.stringify(body)).toBe(200)
    const backends = await pg.backends()
    expect(backends.map((b) => b.pid)).toContain(body.pid)
    expect(body.stats?.opened).toBe(1)
    // An unknown route is the app's own 404, not wrangler's.
    const missing = await fetch(`http://127.0.0.1:${port}/nope`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ error: 'not found' })
    expect(output).not.toContain(pg.password)

    const pid = wrangler.pid!
    await stop()
    expect(isAlive(pid)).toBe(false)
  }, 120_000)
})
