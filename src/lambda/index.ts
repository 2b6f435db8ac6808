/**
 * AWS Lambda adapter: wraps a handler so warm invocations reuse the module-scope connection
 * safely. The connection itself is the holder's business; this file only knows Lambda: cold
 * starts, the event-loop flag, SIGTERM at shutdown, and not holding up the end of an invocation.
 * In a worker thread (Lambda Managed Instances) SIGTERM never arrives: the thread joins the
 * main-thread relay instead (threads.ts, loaded there by `warmconn/lambda/shutdown`).
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { isMainThread } from 'node:worker_threads'
import type { Callback, Context } from 'aws-lambda'
import { provideDeadline } from '../call-scope.js'
import { InvalidOptionError } from '../errors.js'
import { closeAll } from '../registry.js'
import { joinShutdown } from './threads.js'

// Each invocation's deadline, for the calls it starts (call-scope.ts). On Lambda Managed
// Instances up to 64 invocations run at once in one module scope, and Lambda does not stop one
// at its timeout: its calls must end there by themselves.
const invocation = new AsyncLocalStorage<number>()
provideDeadline(() => invocation.getStore())

export type AsyncHandler<E, R> = (event: E, context: Context) => Promise<R>
export type CallbackHandler<E, R> = (event: E, context: Context, callback: Callback<R>) => void

export interface WarmLambdaOptions {
  /**
   * Close every warm connection when Lambda sends SIGTERM. Lambda only sends it to functions with
   * an extension registered; without one the process is killed and the server ends the session.
   * In a worker thread (Lambda Managed Instances) the signal reaches only the main thread: this
   * thread's connections are closed when `warmconn/lambda/shutdown` is preloaded there.
   */
  closeOnSigterm?: boolean
  /**
   * Time the SIGTERM close may take; Lambda allows the runtime about 300 ms in all. In a worker
   * thread, invocations in flight first finish within it, then the connections close.
   */
  sigtermTimeoutMs?: number
}

let coldStart = true
let sigtermInstalled = false
/** Invocations of this module scope in flight, and who waits for there to be none (worker shutdown). */
let inFlight = 0
let drained: Array<() => void> = []

/** True during the first invocation of this execution environment (process). */
export function isColdStart(): boolean {
  return coldStart
}

/**
 * Wraps an async or callback-style handler.
 * @example
 * const db = warmPostgres(process.env.DATABASE_URL)
 * export const handler = withWarmconn(async (event) => db.run((sql) => sql`select 1`))
 */
export function withWarmconn<E, R>(
  handler: AsyncHandler<E, R> | CallbackHandler<E, R>,
  options: WarmLambdaOptions = {},
): AsyncHandler<E, R> {
  if (typeof handler !== 'function') throw new InvalidOptionError('handler', 'expected a function')
  for (const key of Object.keys(options ?? {})) {
    if (key !== 'closeOnSigterm' && key !== 'sigtermTimeoutMs') {
      throw new InvalidOptionError(key, 'unknown option; known options are closeOnSigterm, sigtermTimeoutMs')
    }
  }
  const { closeOnSigterm = true, sigtermTimeoutMs = 200 } = options ?? {}
  if (typeof sigtermTimeoutMs !== 'number' || !Number.isFinite(sigtermTimeoutMs) || sigtermTimeoutMs < 0) {
    throw new InvalidOptionError('sigtermTimeoutMs', 'expected a finite number of milliseconds >= 0')
  }
  if (typeof closeOnSigterm !== 'boolean') throw new InvalidOptionError('closeOnSigterm', 'expected true or false')
  if (closeOnSigterm) installSigterm(sigtermTimeoutMs)
  let invocations = 0
  return async function warmconnHandler(event: E, context: Context): Promise<R> {
    // The warm connection's socket and unref'd timers must never make Lambda wait for an empty
    // event loop before it answers a callback-style handler.
    if (context && typeof context === 'object') context.callbackWaitsForEmptyEventLoop = false
    coldStart = invocations++ === 0 && coldStart
    const remainingMs = typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : undefined
    const run = (): Promise<R> => handler.length >= 3
      ? callbackToPromise(handler as CallbackHandler<E, R>, event, context)
      : (handler as AsyncHandler<E, R>)(event, context)
    inFlight++
    try {
      return Number.isFinite(remainingMs) && remainingMs! > 0 ? await invocation.run(Date.now() + remainingMs!, run) : await run()
    } finally {
      coldStart = false
      if (--inFlight === 0) for (const resolve of drained.splice(0)) resolve()
    }
  }
}

function callbackToPromise<E, R>(handler: CallbackHandler<E, R>, event: E, context: Context): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    let settled = false
    const callback: Callback<R> = (err, result) => {
      if (settled) return
      settled = true
      if (err) reject(typeof err === 'string' ? new Error(err) : err)
      else resolve(result as R)
    }
    try {
      const returned = (handler as (...args: unknown[]) => unknown)(event, context, callback)
      // A handler declared with three parameters may still return a promise.
      if (returned && typeof (returned as Promise<R>).then === 'function') {
        ;(returned as Promise<R>).then((value) => callback(null, value), (err: Error) => callback(err))
      }
    } catch (err) {
      callback(err as Error)
    }
  })
}

/** Resolves once no invocation is in flight, or after timeoutMs. */
function drain(timeoutMs: number): Promise<void> {
  if (inFlight === 0) return Promise.resolve()
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs)
    drained.push(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}

function installSigterm(timeoutMs: number): void {
  if (sigtermInstalled) return
  sigtermInstalled = true
  if (!isMainThread) {
    joinShutdown(timeoutMs, drain, (closeMs) => closeAll({ timeoutMs: closeMs }))
    return
  }
  process.once('SIGTERM', () => {
    // Send Terminate to each server so its backend ends now instead of lingering until TCP
    // keepalive notices; anything uncommitted is rolled back by the server, never committed.
    const done = closeAll({ timeoutMs }).catch(() => {})
    void done.then(() => {
      // Exit only if nobody else listens: another listener (an extension, the user) owns shutdown.
      if (process.listenerCount('SIGTERM') === 0) process.exit(0)
    })
  })
}
