/**
 * allowExitOnIdle: an idle warm connection does not keep a process alive. A child process runs
 * one query through each driver (postgres.js, pg, warmPool, neon over the WebSocket relay) and
 * then has nothing to do. By default it must end by itself while its connection is still warm:
 * idleTimeoutMs is a minute, and the child reports, as it exits, that no idle close ran. With
 * allowExitOnIdle: false it ends only after the idle close (as before). The server is asked too:
 * the backend the child used is gone once it has exited.
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startRelay, type Relay } from './harness/relay.js'
import { runtime } from './harness/runtimes.js'
import { appName, eventually } from './helpers/core.js'

const CHILD = fileURLToPath(new URL('./runtimes/exit-child.ts', import.meta.url))
const tsx = createRequire(import.meta.url).resolve('tsx')
/** A hang detector, not a timing assertion: a child still running past it was kept alive. */
const EXIT_TIMEOUT_MS = 30_000

let pg: TestPg
let relay: Relay
beforeAll(async () => {
  pg = await startPostgres()
  relay = await startRelay()
})
afterAll(async () => {
  await relay?.close()
  await pg?.stop()
})

interface Exit {
  code: number | null
  pid: number
  events: string[]
  stderr: string
}

function runChild(command: [string, string[]], driver: string, options: Record<string, unknown>): Promise<Exit> {
  const [bin, args] = command
  const child = spawn(bin, args, {
    env: { ...process.env, DATABASE_URL: pg.url, WC_DRIVER: driver, WC_RELAY_PORT: String(relay.port), WC_TEST_OPTIONS: JSON.stringify(options), BUN_RUNTIME_TRANSPILER_CACHE_PATH: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (out += d))
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  return new Promise((resolve, reject) => {
    const hang = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${driver}: the child was still running after ${EXIT_TIMEOUT_MS} ms (kept alive). stdout: ${out} stderr: ${stderr}`))
    }, EXIT_TIMEOUT_MS)
    child.on('exit', (code) => {
      clearTimeout(hang)
      resolve({ code, pid: Number(/pid (\d+)/.exec(out)?.[1]), events: JSON.parse(/events (.*)/.exec(out)?.[1] ?? 'null') ?? [], stderr })
    })
  })
}

const node: [string, string[]] = [process.execPath, ['--import', tsx, CHILD]]
const DRIVERS = ['postgres', 'pg', 'pool', 'neon'] as const

describe('Node: an idle warm connection does not keep the process alive', () => {
  it.each(DRIVERS)('%s: by default the process ends with its connection still warm (no idle close ran)', async (driver) => {
    const applicationName = appName(`exit-${driver}`)
    const exit = await runChild(node, driver, { applicationName, idleTimeoutMs: 60_000, staleAfterMs: 5_000 })
    expect(exit, exit.stderr).toMatchObject({ code: 0, events: [] })
    expect(exit.pid).toBeGreaterThan(0)
    // The server saw the socket close with the process.
    expect(await eventually(async () => (await pg.backends(applicationName)).length === 0, 10_000)).toBe(true)
  })

  it.each(DRIVERS)('%s: allowExitOnIdle: false keeps the process until the idle close', async (driver) => {
    const applicationName = appName(`stay-${driver}`)
    const exit = await runChild(node, driver, { applicationName, idleTimeoutMs: 1_500, allowExitOnIdle: false })
    expect(exit, exit.stderr).toMatchObject({ code: 0, events: ['closeIdle'] })
  })
})

const bun = runtime('bun')
describe.runIf(bun.bin !== undefined)(`${bun.label}: an idle warm connection does not keep the process alive`, () => {
  it.each(['postgres', 'pg', 'pool'] as const)('%s: the process ends with its connection still warm', async (driver) => {
    const applicationName = appName(`exit-bun-${driver}`)
    const exit = await runChild([bun.bin!, [CHILD]], driver, { applicationName, idleTimeoutMs: 60_000 })
    expect(exit, exit.stderr).toMatchObject({ code: 0, events: [] })
  })
})

const deno = runtime('deno')
describe.runIf(deno.bin !== undefined)(`${deno.label}: an idle warm connection does not keep the process alive`, () => {
  it.each(['postgres', 'pg', 'pool'] as const)('%s: the process ends with its connection still warm', async (driver) => {
    const applicationName = appName(`exit-deno-${driver}`)
    const exit = await runChild([deno.bin!, ['run', '-A', '--sloppy-imports', CHILD]], driver, { applicationName, idleTimeoutMs: 60_000 })
    expect(exit, exit.stderr).toMatchObject({ code: 0, events: [] })
  })

  it('allowExitOnIdle: false keeps it until the idle close (so the exit above is the unref, not Deno)', async () => {
    const exit = await runChild([deno.bin!, ['run', '-A', '--sloppy-imports', CHILD]], 'postgres', { applicationName: appName('stay-deno'), idleTimeoutMs: 1_500, allowExitOnIdle: false })
    expect(exit, exit.stderr).toMatchObject({ code: 0, events: ['closeIdle'] })
  })
})
