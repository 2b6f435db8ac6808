/**
 * One emulated execution environment: a `node` process running the bootstrap, its own Runtime
 * API, and the freezer (SIGSTOP / SIGCONT). A new sandbox per process means a dying process can
 * never steal an event meant for its successor.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { RuntimeApi } from './runtime-api.js'

const BOOTSTRAP = fileURLToPath(new URL('./bootstrap.mjs', import.meta.url))
const FUNCTION_NAME = 'warmconn-emulated'
const REGION = 'us-east-1'
const FUNCTION_ARN = `arn:aws:lambda:${REGION}:123456789012:function:${FUNCTION_NAME}`
/** How long the runtime may take to come back to `next` before it is frozen anyway. */
const IDLE_WAIT_MS = 1_000
/** A SIGSTOP takes effect in microseconds; longer means something is wrong. */
const STOP_WAIT_MS = 2_000

// A stopped child can outlive a test run that never cleaned up: kill every live one on exit.
const live = new Set<ChildProcess>()
process.on('exit', () => live.forEach((child) => child.kill('SIGKILL')))

export interface SandboxOptions {
  /** Bundled ESM handler, `name.mjs` with no other dot in the name. */
  handlerFile: string
  handlerExport: string
  env: Record<string, string>
  /** Polling loops per runtime thread. */
  concurrency: number
  /** Worker threads the runtime's main thread starts (Lambda Managed Instances); 0: none. */
  threads: number
  /** What the runtime's main thread does on SIGTERM (threads > 0). */
  mainSigterm: 'none' | 'exit'
  onLog: (line: string) => void
}

export interface ExitInfo {
  exitCode: number | null
  signal: NodeJS.Signals | null
}

export class Sandbox {
  readonly pid: number
  /** Resolves once the process has exited and its output has been read to the end. */
  readonly exited: Promise<ExitInfo>
  alive = true
  frozen = false
  /** Invocations handed to this process so far; the first one is the cold start. */
  served = 0
  inFlight = 0

  private constructor(
    private readonly child: ChildProcess & { pid: number },
    readonly api: RuntimeApi,
    /** Polls that wait at once when every loop of every thread is idle. */
    private readonly loops: number,
    onLog: (line: string) => void,
  ) {
    this.pid = child.pid
    live.add(child)
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLog)
    }
    child.on('error', (error) => onLog(`[emulator] ${error.message}`))
    this.exited = new Promise((resolve) =>
      child.once('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
        this.alive = false
        live.delete(child)
        void api.close()
        resolve({ exitCode, signal })
      }),
    )
  }

  /** Starts the Runtime API and spawns the runtime: the start of a cold start. */
  static async start(opts: SandboxOptions): Promise<Sandbox> {
    const api = await RuntimeApi.start(FUNCTION_ARN)
    const child = spawn(process.execPath, [BOOTSTRAP], {
      cwd: dirname(opts.handlerFile),
      env: lambdaEnv(opts, api.address),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    if (!hasPid(child)) {
      const [error] = await once(child, 'error')
      await api.close()
      throw error
    }
    return new Sandbox(child, api, opts.concurrency * Math.max(1, opts.threads), opts.onLog)
  }

  /**
   * Resolves when every polling loop of the runtime waits in `next` (Lambda freezes at that
   * point), the process is gone, or IDLE_WAIT_MS passed: handler code that blocks the event loop
   * after the response must not hang the caller.
   */
  async whenIdle(): Promise<void> {
    await Promise.race([
      this.api.whenPolling(this.loops),
      this.exited,
      sleep(IDLE_WAIT_MS, undefined, { ref: false }),
    ])
  }

  /** Stops the process and waits until the kernel reports it stopped. */
  async freeze(): Promise<void> {
    if (!this.alive || this.frozen) return
    this.frozen = true
    this.child.kill('SIGSTOP')
    // kill() only queues the signal; callers must be able to rely on a real stop.
    const deadline = Date.now() + STOP_WAIT_MS
    let state = await processState(this.pid)
    while (this.frozen && this.alive && state !== undefined && state !== 'T') {
      if (Date.now() > deadline) throw new Error(`process ${this.pid} did not stop after SIGSTOP (state ${state})`)
      await sleep(1)
      state = await processState(this.pid)
    }
  }

  thaw(): void {
    if (!this.frozen) return
    this.frozen = false
    if (this.alive) this.child.kill('SIGCONT')
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.child.kill(signal)
  }

  /** SIGKILL (which also ends a stopped process) and wait for the exit. */
  kill(): Promise<ExitInfo> {
    this.signal('SIGKILL')
    return this.exited
  }
}

/**
 * The environment Lambda gives a Node.js runtime, not the parent's: a test must not pass by
 * accident because of a variable only the developer's shell has. `extra` (the function's own
 * configuration) comes last, as it does on Lambda.
 */
function lambdaEnv(opts: SandboxOptions, runtimeApi: string): Record<string, string> {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/')
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs20.x',
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    AWS_LAMBDA_FUNCTION_NAME: FUNCTION_NAME,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '128',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${FUNCTION_NAME}`,
    AWS_LAMBDA_LOG_STREAM_NAME: `${day}/[$LATEST]${randomBytes(16).toString('hex')}`,
    AWS_LAMBDA_RUNTIME_API: runtimeApi,
    LAMBDA_TASK_ROOT: dirname(opts.handlerFile),
    LAMBDA_RUNTIME_DIR: dirname(BOOTSTRAP),
    _HANDLER: `${basename(opts.handlerFile, '.mjs')}.${opts.handlerExport}`,
    LAMBDA_EMULATOR_CONCURRENCY: String(opts.concurrency),
    // How Lambda Managed Instances tell a runtime it may run invocations concurrently (the
    // environment's total), and how many worker threads the Node runtime starts.
    ...(opts.concurrency > 1 || opts.threads > 0
      ? { AWS_LAMBDA_MAX_CONCURRENCY: String(opts.concurrency * Math.max(1, opts.threads)) }
      : {}),
    ...(opts.threads > 0
      ? { LAMBDA_EMULATOR_THREADS: String(opts.threads), AWS_LAMBDA_NODEJS_WORKER_COUNT: String(opts.threads), LAMBDA_EMULATOR_MAIN_SIGTERM: opts.mainSigterm }
      : {}),
    ...opts.env,
  }
}

function hasPid(child: ChildProcess): child is ChildProcess & { pid: number } {
  return child.pid !== undefined
}

/** The state letter from /proc/<pid>/stat (`T` = stopped); undefined once the process is gone. */
async function processState(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // The command name in parentheses may itself contain spaces and parentheses.
    return stat[stat.lastIndexOf(')') + 2]
  } catch {
    return undefined
  }
}
