/**
 * A local AWS Lambda for tests, the demo and benchmarks. It keeps what matters to a connection
 * held in module scope: one process reused across warm invocations, frozen (SIGSTOP) between
 * them, cold-started again after a timeout or crash, SIGTERM on shutdown only when asked for,
 * several invocations in one process with multi-concurrency.
 *
 * With `managed`, Lambda Managed Instances instead: one runtime process whose main thread starts
 * worker threads, each loading the handler module and running up to `concurrencyPerThread`
 * invocations at once; never frozen; the function timeout not enforced (the handler keeps running
 * and a late answer is still taken, marked `late`); shutdown is SIGTERM, then SIGKILL after the
 * grace time.
 *
 * @example
 * const lambda = await startLambda({ handlerFile: await build('functions/lambda.ts', join(tmp, 'lambda.mjs')) })
 * const { result, coldStart } = await lambda.invoke(httpEvent({ method: 'GET', path: '/health' }))
 * await lambda.kill()
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { access } from 'node:fs/promises'
import { basename, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PendingInvocation, PostedError } from './runtime-api.js'
import { Sandbox, type ExitInfo } from './sandbox.js'

export { build } from './build.js'

/** Lambda's default function timeout. */
const DEFAULT_TIMEOUT_MS = 3_000
/** Lambda's limit for the init phase (loading the handler module). */
const INIT_TIMEOUT_MS = 10_000
/** What Lambda leaves the runtime between SIGTERM and SIGKILL. */
const SHUTDOWN_GRACE_MS = 500

export interface LambdaOptions {
  /** The bundled handler (see build()), named `name.mjs`. */
  handlerFile: string
  /** Default 'handler'. */
  handlerExport?: string
  /** The function's environment variables, on top of those Lambda sets. */
  env?: Record<string, string>
  /** Invocations one process runs at once (Lambda Managed Instances). Default 1. */
  concurrency?: number
  /** SIGSTOP the process between invocations, as Lambda does. Default true. */
  freeze?: boolean
  /** Function timeout. Default 3000, as on Lambda. */
  timeoutMs?: number
  /**
   * Lambda sends SIGTERM before shutdown only when an extension is registered. Default false, and
   * true with `managed` (what Lambda Managed Instances do without an extension is not documented;
   * a test that needs the kill without SIGTERM says false).
   */
  sigtermOnShutdown?: boolean
  /** Lambda Managed Instances: worker threads in one never-frozen process. Excludes `concurrency` and `freeze`. */
  managed?: ManagedOptions
}

export interface ManagedOptions {
  /** Worker threads the runtime starts (AWS_LAMBDA_NODEJS_WORKER_COUNT; on Lambda one per vCPU by default). */
  threads: number
  /** Invocations each thread runs at once (on Lambda PerExecutionEnvironmentMaxConcurrency, shared by the threads). */
  concurrencyPerThread: number
  /**
   * What the runtime's main thread does on SIGTERM: 'none' (no listener, as the open-source
   * runtime interface client's multi-concurrent mode: the signal's default action ends the
   * process) or 'exit' (a listener calling process.exit(0) at once). Default 'none'.
   */
  mainSigterm?: 'none' | 'exit'
}

export interface InvokeError {
  errorType: string
  errorMessage: string
  trace?: string[]
}

export interface InvokeResult {
  requestId: string
  /** What the handler returned, through JSON (undefined becomes null, as on Lambda). */
  result?: unknown
  error?: InvokeError
  /** From invoke() to the answer, process start and init included on a cold start. */
  durationMs: number
  /** The first invocation this process served. */
  coldStart: boolean
  /** Answered after its deadline: only with `managed`, where the timeout is not enforced. */
  late?: boolean
}

export interface ShutdownResult extends ExitInfo {
  durationMs: number
}

export interface LambdaEmulator {
  /** Thaws the process (spawning one if none is alive), runs one event, freezes it again. */
  invoke(event: unknown, opts?: { timeoutMs?: number }): Promise<InvokeResult>
  /** Stops the process now; resolves once the kernel reports it stopped. */
  freeze(): Promise<void>
  thaw(): void
  isFrozen(): boolean
  /** The live process, if any. */
  readonly pid: number | undefined
  /** Every stdout and stderr line of every process so far. */
  logs(): string[]
  /** Lambda's shutdown: SIGTERM and a grace period when configured, then SIGKILL. */
  shutdown(): Promise<ShutdownResult>
  /** SIGKILL the live process, if any; for test cleanup. */
  kill(): Promise<void>
}

const OPTION_KEYS = new Set(['handlerFile', 'handlerExport', 'env', 'concurrency', 'freeze', 'timeoutMs', 'sigtermOnShutdown', 'managed'])

/**
 * Prepares an emulated function. The process starts on the first invoke (an on-demand cold
 * start), so that invoke's durationMs includes process start and init.
 *
 * @example
 * const lambda = await startLambda({ handlerFile, env: { DATABASE_URL: url }, timeoutMs: 1_000 })
 */
export async function startLambda(opts: LambdaOptions): Promise<LambdaEmulator> {
  for (const key of Object.keys(opts)) {
    if (!OPTION_KEYS.has(key)) throw new TypeError(`startLambda: unknown option '${key}'`)
  }
  const handlerFile = resolve(opts.handlerFile)
  // The runtime derives _HANDLER=name.export from the file name, and splits it at the dot.
  if (!/^[^.]+\.mjs$/.test(basename(handlerFile))) {
    throw new TypeError(`startLambda: handlerFile must be named name.mjs, got '${basename(handlerFile)}'`)
  }
  const { managed } = opts
  if (managed && (opts.concurrency !== undefined || opts.freeze)) {
    throw new TypeError('startLambda: managed excludes concurrency (use managed.concurrencyPerThread) and freeze (never frozen)')
  }
  const concurrency = managed?.concurrencyPerThread ?? opts.concurrency ?? 1
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new TypeError(`startLambda: concurrency must be a positive integer, got ${concurrency}`)
  }
  const threads = managed?.threads ?? 0
  if (managed && (!Number.isInteger(threads) || threads < 1)) {
    throw new TypeError(`startLambda: managed.threads must be a positive integer, got ${threads}`)
  }
  // Fail here with the path, not as an init error on the first invoke.
  await access(handlerFile)
  return new Emulator({
    handlerFile,
    handlerExport: opts.handlerExport ?? 'handler',
    env: opts.env ?? {},
    concurrency,
    threads,
    mainSigterm: managed?.mainSigterm ?? 'none',
    freeze: managed ? false : (opts.freeze ?? true),
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    sigtermOnShutdown: opts.sigtermOnShutdown ?? managed !== undefined,
  })
}

interface Settings extends Required<Omit<LambdaOptions, 'managed'>> {
  /** Worker threads (managed); 0: the handler runs in the main thread. */
  threads: number
  mainSigterm: 'none' | 'exit'
}

class Emulator implements LambdaEmulator {
  private box: Sandbox | undefined
  private starting: Promise<Sandbox> | undefined
  private readonly lines: string[] = []

  constructor(private readonly opts: Settings) {}

  get pid(): number | undefined {
    return this.box?.alive ? this.box.pid : undefined
  }

  logs(): string[] {
    return [...this.lines]
  }

  isFrozen(): boolean {
    return this.box?.alive === true && this.box.frozen
  }

  async freeze(): Promise<void> {
    await this.box?.freeze()
  }

  thaw(): void {
    this.box?.thaw()
  }

  async invoke(event: unknown, { timeoutMs = this.opts.timeoutMs }: { timeoutMs?: number } = {}): Promise<InvokeResult> {
    const startedAt = performance.now()
    const box = await this.sandbox()
    box.thaw()
    const coldStart = box.served++ === 0
    box.inFlight++
    const requestId = randomUUID()
    const pending = box.api.deliver({ requestId, payload: JSON.stringify(event) ?? 'null', timeoutMs })
    let deadline = Infinity
    void pending.picked.then(() => (deadline = Date.now() + timeoutMs))
    const answer = this.opts.threads > 0 ? await this.lateAnswer(box, pending, requestId) : await this.answer(box, pending, requestId, timeoutMs)
    const durationMs = performance.now() - startedAt
    box.inFlight--
    if (this.opts.freeze) await this.freezeWhenIdle(box)
    return { requestId, coldStart, durationMs, ...answer, ...(this.opts.threads > 0 && Date.now() > deadline ? { late: true } : {}) }
  }

  async shutdown(): Promise<ShutdownResult> {
    const box = await this.liveBox()
    if (!box) return { exitCode: null, signal: null, durationMs: 0 }
    const startedAt = performance.now()
    box.thaw()
    if (this.opts.sigtermOnShutdown) {
      box.signal('SIGTERM')
      await Promise.race([box.exited, sleep(SHUTDOWN_GRACE_MS, undefined, { ref: false })])
    }
    const exit = await box.kill()
    return { ...exit, durationMs: performance.now() - startedAt }
  }

  async kill(): Promise<void> {
    await (await this.liveBox())?.kill()
  }

  /** The live sandbox, or a new one: several cold invokes at once share one start. */
  private async sandbox(): Promise<Sandbox> {
    if (this.box?.alive) return this.box
    this.starting ??= Sandbox.start({ ...this.opts, onLog: (line) => this.lines.push(line) })
      .then((box) => (this.box = box))
      .finally(() => (this.starting = undefined))
    return this.starting
  }

  private async liveBox(): Promise<Sandbox | undefined> {
    await this.starting?.catch(() => undefined)
    return this.box?.alive ? this.box : undefined
  }

  /** Whichever comes first: the runtime's answer, the process ending, or the time limit. */
  private async answer(
    box: Sandbox,
    pending: PendingInvocation,
    requestId: string,
    timeoutMs: number,
  ): Promise<Pick<InvokeResult, 'result' | 'error'>> {
    const expiry = new AbortController()
    try {
      const first = await Promise.race([
        pending.outcome,
        box.exited.then((exit) => ({ kind: 'exit' as const, exit })),
        expired(box, pending, timeoutMs, expiry.signal).then((phase) => ({ kind: 'timeout' as const, phase })),
      ])
      switch (first.kind) {
        case 'response':
          return { result: JSON.parse(first.body) }
        case 'error':
          return { error: parseError(first) }
        case 'exit':
          return { error: box.api.initError ? parseError(box.api.initError) : exitError(requestId, first.exit) }
        case 'timeout': {
          // Lambda does not wait for a timed-out runtime: it resets the environment.
          await box.kill()
          const limitMs = first.phase === 'Init' ? INIT_TIMEOUT_MS : timeoutMs
          const errorMessage = `RequestId: ${requestId} Error: ${first.phase} timed out after ${(limitMs / 1000).toFixed(2)} seconds`
          return { error: { errorType: 'Sandbox.Timedout', errorMessage } }
        }
      }
    } finally {
      expiry.abort()
    }
  }

  /**
   * Lambda Managed Instances: no function timeout, so the runtime's answer or the process ending,
   * whenever it comes. The init limit still applies.
   */
  private async lateAnswer(box: Sandbox, pending: PendingInvocation, requestId: string): Promise<Pick<InvokeResult, 'result' | 'error'>> {
    // Never settles once the module has loaded: from then on only the answer or the exit counts.
    const initTimeout = Promise.race([box.api.initialised.then(() => false), sleep(INIT_TIMEOUT_MS, true, { ref: false })])
      .then((timedOut) => (timedOut ? { kind: 'init-timeout' as const } : new Promise<never>(() => {})))
    const first = await Promise.race([pending.outcome, box.exited.then((exit) => ({ kind: 'exit' as const, exit })), initTimeout])
    switch (first.kind) {
      case 'response':
        return { result: JSON.parse(first.body) }
      case 'error':
        return { error: parseError(first) }
      case 'exit':
        return { error: box.api.initError ? parseError(box.api.initError) : exitError(requestId, first.exit) }
      case 'init-timeout':
        await box.kill()
        return { error: { errorType: 'Sandbox.Timedout', errorMessage: `RequestId: ${requestId} Error: Init timed out after ${(INIT_TIMEOUT_MS / 1000).toFixed(2)} seconds` } }
    }
  }

  /** Lambda freezes once the runtime has asked for the next event and nothing is in flight. */
  private async freezeWhenIdle(box: Sandbox): Promise<void> {
    if (box.inFlight > 0) return
    await box.whenIdle()
    // Another invocation may have started while the runtime came back to `next`.
    if (box.inFlight === 0) await box.freeze()
  }
}

/** Resolves when the invocation runs out of time: the init limit first, then the function timeout. */
async function expired(
  box: Sandbox,
  pending: PendingInvocation,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<'Init' | 'Task'> {
  const initialised = await Promise.race([
    box.api.initialised.then(() => true),
    sleep(INIT_TIMEOUT_MS, false, { signal }),
  ])
  if (!initialised) return 'Init'
  await pending.picked
  await sleep(timeoutMs, undefined, { signal })
  return 'Task'
}

function parseError({ body }: PostedError): InvokeError {
  const { errorType, errorMessage, trace } = JSON.parse(body) as InvokeError
  return { errorType, errorMessage, trace }
}

/** The error Lambda reports when the runtime process ends before answering. */
function exitError(requestId: string, { exitCode, signal }: ExitInfo): InvokeError {
  const reason =
    exitCode === 0
      ? 'Runtime exited without providing a reason'
      : `Runtime exited with error: ${signal ? `signal: ${signal}` : `exit status ${exitCode}`}`
  return { errorType: 'Runtime.ExitError', errorMessage: `RequestId: ${requestId} Error: ${reason}` }
}
