// @ts-check
/**
 * The runtime inside an emulated Lambda execution environment: what `/var/runtime/index.mjs`
 * does for the nodejs20.x runtime, reduced to what matters for connection handling. Plain
 * JavaScript because it runs under bare `node` beside an esbuild-bundled handler, with no tsx
 * loader to change module loading or timing.
 *
 * Behaviour taken from the AWS Node.js runtime interface client:
 * - the response to a `callback(null, result)` is posted only when the event loop is empty
 *   ('beforeExit') unless `context.callbackWaitsForEmptyEventLoop` is false, and it is
 *   serialised then, so work finishing before that still shows in it;
 * - a returned promise, `context.done/succeed/fail` post at once;
 * - only the first of callback / done / succeed / fail / promise counts;
 * - a handler that never finishes before the event loop empties answers null, or an error when
 *   it returned a promise (the real runtime decides by `async` function, here by the return);
 * - errors are logged as `Invoke Error` with their enumerable fields, then posted;
 * - an uncaught exception or unhandled rejection is posted against the invocations in flight
 *   (or as an init error) and ends the process (exit 129 / 128);
 * - with multi-concurrency, callback-style handlers are refused at init, as Lambda Managed
 *   Instances do.
 *
 * Lambda Managed Instances (LAMBDA_EMULATOR_THREADS > 0), as the runtime interface client's
 * multi-concurrent mode does it (aws-lambda-nodejs-runtime-interface-client, src/worker/): the main
 * thread loads no handler and only starts the worker threads, each from this same file with
 * `env: process.env` and the main thread's execArgv, and waits for them to exit; it installs no
 * SIGTERM listener, so SIGTERM's default action ends the process unless something (a preload)
 * listens. Each worker runs the runtime below: its own module scope, its own polling loops. A
 * worker that crashes ends only its thread; the process ends when every thread has.
 * LAMBDA_EMULATOR_MAIN_SIGTERM=exit gives the main thread a SIGTERM listener that calls
 * process.exit(0) at once instead: AWS's managed runtime is not published, and either is possible.
 *
 * Environment: AWS_LAMBDA_RUNTIME_API, LAMBDA_TASK_ROOT, _HANDLER (`file.export`, the file being
 * `file.mjs` in the task root), LAMBDA_EMULATOR_CONCURRENCY (polling loops per thread, default 1),
 * LAMBDA_EMULATOR_THREADS (worker threads, default 0: the handler runs in the main thread).
 */
import http from 'node:http'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { isMainThread, Worker } from 'node:worker_threads'

const env = process.env
const threads = Number(env.LAMBDA_EMULATOR_THREADS ?? '0')
const [host, port] = required('AWS_LAMBDA_RUNTIME_API').split(':')
const concurrency = Number(env.LAMBDA_EMULATOR_CONCURRENCY ?? '1')
const API = '/2018-06-01/runtime'
// The runtime's own connections must not be shared with the handler's HTTP traffic. Idle
// keep-alive sockets are unref'd by Node, so they do not keep the event loop busy.
const agent = new http.Agent({ keepAlive: true })

/** @type {Set<string>} requests being handled, so a crash can be reported against them */
const inFlight = new Set()
let initialised = false
/** @type {Map<string, () => void>} what each invocation does when the event loop runs empty */
const onEventLoopEmpty = new Map()

if (threads > 0 && isMainThread) startWorkers(threads)
else runtime()

function runtime() {
  process.on('beforeExit', () => [...onEventLoopEmpty.values()].forEach((listener) => listener()))
  process.on('uncaughtException', (error) => crash(error, 129))
  process.on('unhandledRejection', (reason) =>
    crash(runtimeError('UnhandledPromiseRejection', String(reason)), 128),
  )

  // Not awaited at top level: a pending top-level await would end the process when the loop
  // drains, and draining the loop is exactly what callbackWaitsForEmptyEventLoop waits for.
  loadHandler().then((handler) => {
    initialised = true
    for (let i = 0; i < concurrency; i++) pollForever(handler).catch(exitOnRuntimeApiFailure)
  }, (error) => crash(error, 129))
}

/** @param {number} count */
function startWorkers(count) {
  if (env.LAMBDA_EMULATOR_MAIN_SIGTERM === 'exit') process.on('SIGTERM', () => process.exit(0))
  for (let i = 0; i < count; i++) {
    const worker = new Worker(new URL(import.meta.url), { env: process.env, execArgv: process.execArgv })
    worker.on('error', (error) => console.error(`Worker ${i} error:`, String(error)))
    worker.on('exit', (code) => {
      if (code === 0) return
      console.error(`Worker ${i} exited with code ${code}`)
      process.exitCode = code
    })
  }
}

/** @returns {Promise<Function>} */
async function loadHandler() {
  const handlerName = required('_HANDLER')
  const [file, name = ''] = handlerName.split('.')
  const module = await import(pathToFileURL(join(required('LAMBDA_TASK_ROOT'), `${file}.mjs`)).href)
  const handler = module[name]
  if (typeof handler !== 'function') {
    throw runtimeError('HandlerNotFound', `${handlerName} is undefined or not exported`)
  }
  if ((concurrency > 1 || threads > 0) && handler.length >= 3) {
    throw runtimeError('CallbackHandlerDeprecated', 'callback-style handlers cannot run with multi-concurrency')
  }
  return handler
}

/** @param {Function} handler */
async function pollForever(handler) {
  for (;;) {
    const next = await request('GET', `${API}/invocation/next`)
    await invokeOnce(handler, JSON.parse(next.body), next.headers)
  }
}

/**
 * Runs one invocation; resolves once its outcome has been posted.
 * @param {Function} handler
 * @param {unknown} event
 * @param {http.IncomingHttpHeaders} headers
 * @returns {Promise<void>}
 */
function invokeOnce(handler, event, headers) {
  const id = String(headers['lambda-runtime-aws-request-id'])
  const deadlineMs = Number(headers['lambda-runtime-deadline-ms'])
  if (concurrency === 1 && threads === 0) env._X_AMZN_TRACE_ID = String(headers['lambda-runtime-trace-id'])
  inFlight.add(id)

  return new Promise((resolve) => {
    let finished = false
    /** @type {<A extends unknown[]>(fn: (...args: A) => void) => (...args: A) => void} */
    const firstCallOnly = (fn) => (...args) => {
      if (finished) return
      finished = true
      fn(...args)
    }
    /**
     * @param {unknown} error
     * @param {unknown} [result]
     */
    const post = (error, result) => {
      onEventLoopEmpty.delete(id)
      postOutcome(id, error, result).then(() => {
        inFlight.delete(id)
        resolve()
      }, exitOnRuntimeApiFailure)
    }

    const context = {
      awsRequestId: id,
      invokedFunctionArn: String(headers['lambda-runtime-invoked-function-arn']),
      functionName: env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => deadlineMs - Date.now(),
      done: firstCallOnly(post),
      succeed: firstCallOnly((/** @type {unknown} */ result) => post(null, result)),
      fail: firstCallOnly((/** @type {unknown} */ error) => post(error ?? 'handled')),
    }
    /**
     * @param {unknown} error
     * @param {unknown} [result]
     */
    const callbackOnce = (error, result) => {
      if (error != null || !context.callbackWaitsForEmptyEventLoop) return post(error, result)
      onEventLoopEmpty.set(id, () => {
        onEventLoopEmpty.delete(id)
        setImmediate(() => post(null, result))
      })
    }
    const callback = firstCallOnly(callbackOnce)

    let returnedPromise = false
    onEventLoopEmpty.set(
      id,
      firstCallOnly(() =>
        returnedPromise
          ? post(runtimeError('NodeJsExit', 'Runtime exited without providing a reason'))
          : post(null, null),
      ),
    )
    try {
      const result = handler(event, context, callback)
      if (typeof result?.then === 'function') {
        returnedPromise = true
        result.then(context.succeed, context.fail)
      }
    } catch (error) {
      callback(error)
    }
  })
}

/**
 * @param {string} id
 * @param {unknown} error null or undefined for success
 * @param {unknown} [result]
 */
function postOutcome(id, error, result) {
  if (error == null) {
    let body
    try {
      body = JSON.stringify(result ?? null)
    } catch {
      return postOutcome(id, runtimeError('JSONStringifyError', 'Unable to stringify response body'))
    }
    return request('POST', `${API}/invocation/${id}/response`, body)
  }
  console.error('Invoke Error', formatForLog(error))
  return postError(`${API}/invocation/${id}/error`, error)
}

/**
 * @param {unknown} error
 * @param {number} exitCode
 */
function crash(error, exitCode) {
  console.error(initialised ? 'Uncaught Exception' : 'Init Error', formatForLog(error))
  const posts = initialised
    ? [...inFlight].map((id) => postError(`${API}/invocation/${id}/error`, error))
    : [postError(`${API}/init/error`, error)]
  void Promise.allSettled(posts).then(() => process.exit(exitCode))
}

/** @param {unknown} error */
function exitOnRuntimeApiFailure(error) {
  // The emulator went away; nothing can be reported any more.
  console.error('Runtime API unreachable', String(error))
  process.exit(1)
}

/**
 * @param {string} path
 * @param {unknown} error
 */
function postError(path, error) {
  const body = toRapidError(error)
  return request('POST', path, JSON.stringify(body), { 'Lambda-Runtime-Function-Error-Type': body.errorType })
}

/**
 * The error body the real runtime posts.
 * @param {unknown} error
 * @returns {{ errorType: string, errorMessage: string, trace: string[] }}
 */
function toRapidError(error) {
  if (error instanceof Error) {
    return { errorType: error.name, errorMessage: error.message, trace: (error.stack ?? '').split('\n') }
  }
  return { errorType: typeof error, errorMessage: String(error), trace: [] }
}

/**
 * The log form of an error: enumerable fields included, as the real runtime logs them. This is
 * where a password carried by a driver error would surface in CloudWatch.
 * @param {unknown} error
 */
function formatForLog(error) {
  try {
    return `\t${JSON.stringify(error, (_key, value) => (value instanceof Error ? withEnumerableFields(value) : value))}`
  } catch {
    return `\t${JSON.stringify(toRapidError(error))}`
  }
}

/** @param {Error} error */
function withEnumerableFields(error) {
  const { code } = /** @type {{ code?: unknown }} */ (error)
  return { errorType: error.name, errorMessage: error.message, code, ...error, stack: error.stack?.split('\n') }
}

/**
 * @param {string} name
 * @param {string} message
 */
function runtimeError(name, message) {
  const error = new Error(message)
  error.name = `Runtime.${name}`
  return error
}

/** @param {string} name */
function required(name) {
  const value = env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

/**
 * @param {string} method
 * @param {string} path
 * @param {string} [body]
 * @param {Record<string, string>} [headers]
 * @returns {Promise<{ body: string, headers: http.IncomingHttpHeaders }>}
 */
function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path, method, agent, headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => resolve({ body: text, headers: res.headers }))
    })
    req.on('error', reject)
    if (body !== undefined) req.setHeader('content-type', 'application/json')
    req.end(body)
  })
}
