/**
 * Starts what the demo drives: an embedded PostgreSQL, the example Lambda in the freeze emulator
 * and the example Worker in Miniflare, both configured as deployed (DATABASE_URL and the
 * WARMCONN_*_MS overrides). Each part is handed to the shutdown as soon as its start begins, so
 * a failure or a Ctrl-C halfway through still stops what did start, and nothing new starts after.
 * @module
 */
import { join } from 'node:path'
import { stop as stopEsbuild } from 'esbuild'
import { fileURLToPath } from 'node:url'
import { startPostgres, type TestPg } from '../../test/harness/pg.js'
import { build, startLambda } from '../../test/harness/lambda/emulator.js'
import { startWorker } from '../../test/harness/worker.js'
import { FUNCTION_ENV } from './config.js'
import { lambdaRuntime, workerRuntime, type Runtime } from './runtimes.js'
import type { Screen } from './screen.js'
import type { Shutdown } from './shutdown.js'

export interface Stack {
  pg: TestPg
  runtimes: Runtime[]
}

/** What each function's connections are called in pg_stat_activity. */
const LAMBDA_APP = 'warmconn-lambda'
const WORKER_APP = 'warmconn-worker'

const source = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url))

/** @example const { pg, runtimes } = await startStack(shutdown, screen, tempDir) */
export async function startStack(shutdown: Shutdown, screen: Screen, tempDir: string): Promise<Stack> {
  // startPostgres would use a server named by DATABASE_URL instead; the demo kills backends and
  // creates a table, which it must only ever do on its own throwaway server.
  delete process.env.DATABASE_URL
  // esbuild's service process writes the bundles into the temporary directory, so it must be
  // gone before that directory is removed.
  shutdown.defer('esbuild', stopEsbuild)
  screen.say('starting PostgreSQL, the Lambda and the Worker ...')
  const pgStarting = startPostgres()
  shutdown.defer('PostgreSQL', afterStart(pgStarting, (server) => server.stop()))
  const [pg, lambdaFile] = await Promise.all([
    timed(screen, (server) => `PostgreSQL (embedded) on 127.0.0.1:${server.port}`, () => pgStarting),
    timed(screen, () => 'Lambda bundled as deployed (its process starts on the first request)', () =>
      build(source('functions/lambda.ts'), join(tempDir, 'lambda', 'app.mjs')),
    ),
  ])
  screen.hide(pg.password)
  shutdown.signal.throwIfAborted()
  // Each function shows its own application_name in pg_stat_activity, so what the server saw can
  // be told apart (postgres.js sends URL parameters as startup parameters).
  const url = (appName: string) => pg.urlFor({ params: { application_name: appName } })
  const lambda = await startLambda({ handlerFile: lambdaFile, env: { DATABASE_URL: url(LAMBDA_APP), ...FUNCTION_ENV } })
  shutdown.defer('Lambda', () => lambda.kill())
  shutdown.signal.throwIfAborted()
  const workerStarting = startWorker({ entry: source('functions/worker.ts'), bindings: { DATABASE_URL: url(WORKER_APP), ...FUNCTION_ENV } })
  shutdown.defer('Worker', afterStart(workerStarting, (worker) => worker.dispose()))
  const worker = await timed(screen, () => 'Worker in Miniflare (Durable Object mode)', () => workerStarting)
  // Miniflare has just installed signal handlers of its own.
  shutdown.claimSignals()
  return { pg, runtimes: [lambdaRuntime(lambda, LAMBDA_APP, shutdown.signal), workerRuntime(worker, WORKER_APP, shutdown.signal)] }
}

/**
 * The stop for something still starting: a stop asked for mid-start waits for the start to end
 * (an initdb or workerd abandoned halfway would outlive the demo); a failed start left nothing.
 */
function afterStart<T>(starting: Promise<T>, stop: (started: T) => Promise<unknown>): () => Promise<unknown> {
  return () => starting.then(stop, () => undefined)
}

async function timed<T>(screen: Screen, what: (value: T) => string, start: () => Promise<T>): Promise<T> {
  const started = performance.now()
  const value = await start()
  screen.say(`  ready: ${what(value)} (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  return value
}
