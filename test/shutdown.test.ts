/**
 * Prompt shutdown: once close(), closeAll() or pool.end() has resolved, no timer or socket of
 * warmconn's keeps the process up. Each scenario of test/shutdown/child.ts runs in a child Node
 * process against the test PostgreSQL; the child prints `closed` when its close resolves and
 * must then exit by itself, with code 0, within EXIT_BOUND_MS. That bound is on process exit
 * (before the fix the shutdown's timer kept it up for closeTimeoutMs, 5 s), not a speed figure:
 * it is measured from the `closed` line to the exit, so start-up and the work itself, slow on a
 * loaded machine, do not count. The server then holds no session of the child's.
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startRelay, type Relay } from './harness/relay.js'
import { SCENARIOS, type Scenario } from './shutdown/child.js'

const CHILD = fileURLToPath(new URL('./shutdown/child.ts', import.meta.url))
const tsx = createRequire(import.meta.url).resolve('tsx')
/** From close() resolving to the process gone. */
const EXIT_BOUND_MS = 200
/** A hang detector for the whole child (start-up, work, close). */
const CHILD_TIMEOUT_MS = 30_000

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

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  /** ms from the `closed` line to the exit event; undefined when no such line came. */
  afterClosedMs: number | undefined
  stderr: string
}

function run(scenario: Scenario): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsx, CHILD, scenario, pg.appUrl, String(relay.port)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let closedAt: number | undefined
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      if (closedAt === undefined && stdout.includes('closed\n')) closedAt = performance.now()
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const hang = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS)
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      const exitedAt = performance.now()
      clearTimeout(hang)
      resolve({ code, signal, afterClosedMs: closedAt === undefined ? undefined : exitedAt - closedAt, stderr })
    })
  })
}

describe('a closed process exits at once', () => {
  it.each(Object.keys(SCENARIOS) as Scenario[])('%s: exits by itself within 200 ms of the close resolving, and the server holds no session of it', async (scenario) => {
    const result = await run(scenario)
    expect(result.stderr).toBe('')
    expect(result).toMatchObject({ code: 0, signal: null })
    expect(result.afterClosedMs).toBeDefined()
    expect(result.afterClosedMs!).toBeLessThan(EXIT_BOUND_MS)
    expect(await gone(() => pg.backends('warmconn-shutdown'))).toEqual([])
  })
})

/** A closed session leaves pg_stat_activity a moment after the client said goodbye: poll briefly. */
async function gone<T>(read: () => Promise<T[]>): Promise<T[]> {
  let left = await read()
  for (let i = 0; i < 40 && left.length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    left = await read()
  }
  return left
}
