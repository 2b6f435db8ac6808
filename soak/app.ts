/**
 * The example app as the soak's clients see it: one request in, one reply out, whatever runs it.
 * Lambda: the bundled functions/lambda.ts in the emulator, frozen between invocations. Workers:
 * functions/worker.ts in Miniflare, its connection warm in the Durable Object.
 * @module
 */
import { httpEvent } from '../test/harness/lambda/apigw.js'
import { startLambda } from '../test/harness/lambda/emulator.js'
import { startWorker } from '../test/harness/worker.js'
import { withTimeout } from '../src/timer.js'

export interface AppRequest {
  method: string
  path: string
  body?: string
}

export interface Reply {
  /** The HTTP status, or undefined when the invocation itself failed (timed out, crashed). */
  status: number | undefined
  /** The response body, or the runtime's error for a failed invocation. */
  text: string
  /** The runtime's error type for a failed invocation, e.g. `Sandbox.Timedout`. */
  error: string | undefined
  durationMs: number
  /** The process (or isolate) that answered: stats are per instance. */
  instance: string
  coldStart: boolean
}

export interface SoakApp {
  readonly name: string
  /** Between two requests Lambda freezes the process; a Worker's Durable Object just idles. */
  readonly runtime: 'lambda' | 'worker'
  request(req: AppRequest): Promise<Reply>
  /** Every line the app's processes printed so far, for the password scan. */
  logs(): string[]
  close(): Promise<void>
}

export interface LambdaAppOptions {
  name: string
  /** The bundled functions/lambda.ts. */
  handlerFile: string
  env: Record<string, string>
  /** Invocations one process runs at once (Lambda Managed Instances). */
  concurrency: number
  timeoutMs: number
}

export async function startLambdaApp(o: LambdaAppOptions): Promise<SoakApp> {
  const lambda = await startLambda({ handlerFile: o.handlerFile, env: o.env, concurrency: o.concurrency, timeoutMs: o.timeoutMs })
  return {
    name: o.name,
    runtime: 'lambda',
    async request({ method, path, body }) {
      const out = await lambda.invoke(httpEvent({ method, path, body }))
      const common = { durationMs: out.durationMs, instance: `${o.name}:${lambda.pid ?? 'gone'}`, coldStart: out.coldStart }
      if (out.error) return { ...common, status: undefined, error: out.error.errorType, text: `${out.error.errorType}: ${out.error.errorMessage}` }
      const res = out.result as { statusCode: number; body: string }
      return { ...common, status: res.statusCode, error: undefined, text: res.body }
    },
    logs: () => lambda.logs(),
    close: () => lambda.kill(),
  }
}

export interface WorkerAppOptions {
  name: string
  /** Bindings: DATABASE_URL and the WARMCONN_* overrides. */
  env: Record<string, string>
  /**
   * The client gives up after this long, as a browser or an API gateway would. Locally nothing
   * else ends a request whose Durable Object waits on a socket that went silent.
   */
  timeoutMs: number
}

export async function startWorkerApp(o: WorkerAppOptions): Promise<SoakApp> {
  const worker = await startWorker({ entry: 'functions/worker.ts', bindings: o.env })
  let served = 0
  return {
    name: o.name,
    runtime: 'worker',
    async request({ method, path, body }) {
      const started = performance.now()
      const common = { instance: `${o.name}:durable-object`, coldStart: served++ === 0 }
      const abort = new AbortController()
      const exchange = (async () => {
        const res = await worker.mf.dispatchFetch(`http://worker.test${path}`, {
          method,
          signal: abort.signal,
          ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
        })
        return { status: res.status, text: await res.text() }
      })()
      try {
        // Our own timer decides, not the abort alone: a dispatch into a stuck Durable Object was
        // seen to ignore its signal, and a client must never wait forever.
        const { status, text } = await withTimeout(exchange, o.timeoutMs, () => (abort.abort(), new Error(`no answer within ${o.timeoutMs} ms`)))
        return { ...common, status, error: undefined, text, durationMs: performance.now() - started }
      } catch (err) {
        const error = abort.signal.aborted ? 'ClientTimeout' : 'FetchFailed'
        return { ...common, status: undefined, error, text: `${error}: ${String(err)}`, durationMs: performance.now() - started }
      }
    },
    logs: () => worker.output().split('\n'),
    close: () => worker.dispose(),
  }
}
