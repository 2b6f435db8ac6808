import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { httpEvent } from './harness/lambda/apigw.js'
import { build, startLambda, type LambdaEmulator, type LambdaOptions } from './harness/lambda/emulator.js'

const FIXTURES = fileURLToPath(new URL('./fixtures/lambda', import.meta.url))
const EMULATOR = fileURLToPath(new URL('./harness/lambda/emulator.ts', import.meta.url))
const run = promisify(execFile)

let outDir: string
const bundles = new Map<string, string>()
let lambda: LambdaEmulator | undefined

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'warmconn-lambda-'))
  const sources = (await readdir(FIXTURES)).filter((file) => file.endsWith('.ts'))
  await Promise.all(
    sources.map(async (file) => {
      const name = basename(file, '.ts').replaceAll('-', '_')
      bundles.set(name, await build(join(FIXTURES, file), join(outDir, `${name}.mjs`)))
    }),
  )
})

afterEach(async () => {
  await lambda?.kill()
  lambda = undefined
})

afterAll(async () => {
  await rm(outDir, { recursive: true, force: true })
})

async function start(fixture: string, opts: Omit<LambdaOptions, 'handlerFile'> = {}): Promise<LambdaEmulator> {
  const handlerFile = bundles.get(fixture)
  if (!handlerFile) throw new Error(`no fixture ${fixture}`)
  lambda = await startLambda({ handlerFile, ...opts })
  return lambda
}

/**
 * The state letter from the kernel, read here rather than through the emulator so the test checks
 * the emulator; undefined once the process is gone.
 */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2]
  } catch {
    return undefined
  }
}

/** True once the pid is gone or a zombie: SIGKILL is delivered asynchronously. */
async function exitsWithin(pid: number, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(10)) {
    const state = processState(pid)
    if (state === undefined || state === 'Z') return true
  }
  return false
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('warm invocations', () => {
  it('keep module state in one process and report a cold start only on the first', async () => {
    const fn = await start('counter')

    const runs = [await fn.invoke({}), await fn.invoke({}), await fn.invoke({})]

    expect(runs.map((run) => run.result)).toEqual([1, 2, 3].map((count) => ({ count, pid: fn.pid })))
    expect(runs.map((run) => run.coldStart)).toEqual([true, false, false])
  })

  it('pass an API Gateway HTTP API event through unchanged', async () => {
    const fn = await start('echo')
    const event = httpEvent({ method: 'post', path: '/todos', body: { title: 'x' }, query: { page: '2' } })

    const { result } = await fn.invoke(event)

    expect(result).toEqual(event)
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: '$default',
      rawPath: '/todos',
      rawQueryString: 'page=2',
      queryStringParameters: { page: '2' },
      body: '{"title":"x"}',
      isBase64Encoded: false,
      headers: { 'content-type': 'application/json', 'content-length': '13' },
      requestContext: { http: { method: 'POST', path: '/todos' }, stage: '$default' },
    })
  })
})

describe('freezing', () => {
  it('stops the process between invocations so its timers do not run', async () => {
    const fn = await start('ticker')
    await fn.invoke({})
    const pid = fn.pid as number

    const frozenAt = Date.now()
    const stateWhileFrozen = processState(pid)
    await sleep(200)
    const thawedAt = Date.now()
    const { result } = await fn.invoke({})

    expect(stateWhileFrozen).toBe('T')
    expect(fn.isFrozen()).toBe(true)
    expect(processState(pid)).toBe('T')
    const { ticks } = result as { ticks: number[] }
    expect(ticks.filter((tick) => tick > frozenAt && tick < thawedAt)).toEqual([])
    // The timer itself works: overdue, it fires again before the handler's own 50 ms timer.
    expect(ticks.filter((tick) => tick >= thawedAt).length).toBeGreaterThan(0)
  })

  it('leaves the process running when freezing is off', async () => {
    const fn = await start('ticker', { freeze: false })
    await fn.invoke({})

    const idleFrom = Date.now()
    await sleep(200)
    const idleUntil = Date.now()
    const { result } = await fn.invoke({})

    expect(fn.isFrozen()).toBe(false)
    const { ticks } = result as { ticks: number[] }
    expect(ticks.filter((tick) => tick > idleFrom && tick < idleUntil).length).toBeGreaterThan(0)
  })
})

describe('errors', () => {
  it('reports a thrown error as an error response and keeps the process warm', async () => {
    const fn = await start('throws')

    const failed = await fn.invoke({ fail: true })
    const next = await fn.invoke({ fail: false })

    expect(failed.error).toMatchObject({ errorType: 'TypeError', errorMessage: 'boom on call 1' })
    expect(failed.result).toBeUndefined()
    expect(next).toMatchObject({ result: { calls: 2 }, coldStart: false })
    expect(fn.logs().some((line) => line.includes('Invoke Error') && line.includes('boom on call 1'))).toBe(true)
  })

  it('reports an init failure and starts from scratch on the next invoke', async () => {
    const fn = await start('init_error')

    const first = await fn.invoke({})
    const second = await fn.invoke({})

    expect(first.error).toMatchObject({ errorType: 'Error', errorMessage: 'DATABASE_URL is not set' })
    expect(second).toMatchObject({ coldStart: true, error: { errorMessage: 'DATABASE_URL is not set' } })
  })

  it.each([
    ['a missing export', 'counter', { handlerExport: 'missing' }, 'Runtime.HandlerNotFound'],
    ['a callback handler under multi-concurrency', 'callback', { concurrency: 2 }, 'Runtime.CallbackHandlerDeprecated'],
  ])('refuses %s at init', async (_case, fixture, opts, errorType) => {
    const fn = await start(fixture, opts)

    const { error } = await fn.invoke({})

    expect(error?.errorType).toBe(errorType)
  })

  it('reports an uncaught exception against the invocation and ends the process', async () => {
    const fn = await start('uncaught')

    const { error } = await fn.invoke({})

    expect(error).toMatchObject({ errorType: 'Error', errorMessage: 'connection terminated unexpectedly' })
    expect(fn.pid).toBeUndefined()
  })

  it('times out, kills the process and cold-starts a new one', async () => {
    const fn = await start('sleepy', { timeoutMs: 300 })
    await fn.invoke({ sleepMs: 0 })
    const firstPid = fn.pid as number

    const timedOut = await fn.invoke({ sleepMs: 10_000 })
    const after = await fn.invoke({ sleepMs: 0 })

    expect(timedOut.error).toEqual({
      errorType: 'Sandbox.Timedout',
      errorMessage: `RequestId: ${timedOut.requestId} Error: Task timed out after 0.30 seconds`,
    })
    expect(isRunning(firstPid)).toBe(false)
    expect(after.coldStart).toBe(true)
    expect(after.result).toEqual({ pid: fn.pid })
    expect(fn.pid).not.toBe(firstPid)
  })
})

describe('callback-style handlers', () => {
  it('post the response only once the event loop is empty', async () => {
    const fn = await start('callback')

    const { result } = await fn.invoke({ waitForEmptyEventLoop: true })

    expect(result).toEqual({ timerFired: true })
  })

  it('post at once when callbackWaitsForEmptyEventLoop is false', async () => {
    const fn = await start('callback')

    const { result } = await fn.invoke({ waitForEmptyEventLoop: false })

    expect(result).toEqual({ timerFired: false })
  })
})

describe('multi-concurrency', () => {
  it('runs two invocations at once in one process', async () => {
    const fn = await start('concurrent', { concurrency: 2, timeoutMs: 10_000 })

    const runs = await Promise.all([fn.invoke({ expected: 2 }), fn.invoke({ expected: 2 })])

    expect(runs.map((run) => run.error)).toEqual([undefined, undefined])
    expect(runs.map((run) => run.result)).toEqual([
      { peak: 2, pid: fn.pid },
      { peak: 2, pid: fn.pid },
    ])
    expect(fn.isFrozen()).toBe(true)
  })
})

describe('cleanup', () => {
  it('kills its runtime processes when the test process exits without cleaning up', async () => {
    const script = [
      `import { startLambda } from ${JSON.stringify(EMULATOR)}`,
      `const fn = await startLambda({ handlerFile: ${JSON.stringify(bundles.get('counter'))} })`,
      'await fn.invoke({})',
      'console.log(fn.pid)',
      // As a crashed test run would: no kill(), no shutdown().
      'process.exit(0)',
    ].join('\n')

    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script])

    const pid = Number(stdout.trim())
    expect(pid).toBeGreaterThan(0)
    expect(await exitsWithin(pid, 2_000)).toBe(true)
  })
})

describe('shutdown', () => {
  it('delivers SIGTERM to the handler module when an extension would be registered', async () => {
    const fn = await start('sigterm', { sigtermOnShutdown: true })
    await fn.invoke({})

    const exit = await fn.shutdown()

    // Exit code 0, not SIGKILL: the module's listener ran and exited within the grace period.
    expect(exit).toMatchObject({ exitCode: 0, signal: null })
    expect(fn.logs()).toContain('SIGTERM received: closing connections')
  })

  it('kills without warning by default, as Lambda does without extensions', async () => {
    const fn = await start('sigterm')
    await fn.invoke({})

    const exit = await fn.shutdown()

    expect(exit).toMatchObject({ exitCode: null, signal: 'SIGKILL' })
    expect(fn.logs()).not.toContain('SIGTERM received: closing connections')
  })
})
