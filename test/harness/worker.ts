/**
 * Runs a Worker in Miniflare (workerd) for tests: bundled with esbuild the way wrangler bundles
 * it (the `workerd` export condition picks postgres.js's Workers build), on the compatibility
 * date and flags of wrangler.toml, talking to the test PostgreSQL over loopback.
 *
 * Which miniflare, and which date: see workerd.ts. Today's (miniflare 5) takes its options in a
 * new shape; they are converted from the v4 shape with its own convertV4MiniflareOptions.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { build } from 'esbuild'
import type { Miniflare, MiniflareOptions } from 'miniflare'
import { fromWorkerModules, testedCompatibilityDate, wranglerConfig } from './workerd.js'

export { testedCompatibilityDate, workerRuntime, wranglerConfig } from './workerd.js'

const miniflare = fromWorkerModules('miniflare') as typeof import('miniflare') & {
  convertV4MiniflareOptions?: (options: MiniflareOptions) => MiniflareOptions
}

export interface WorkerOptions {
  /** Entry file (TypeScript), e.g. functions/worker.ts. */
  entry: string
  /** Plain-text bindings (vars and secrets): DATABASE_URL, WARMCONN_*. */
  bindings?: Record<string, string>
  hyperdrives?: Record<string, string>
  /** Default: testedCompatibilityDate (wrangler.toml's where this workerd knows it). */
  compatibilityDate?: string
  /** Default: wrangler.toml's. */
  compatibilityFlags?: string[]
  /** Durable Object bindings to exported classes; default { WARMCONN: 'WarmconnDurableObject' } as in wrangler.toml. */
  durableObjects?: Record<string, string>
}

export interface WorkerResponse {
  status: number
  /** Parsed JSON, or the text when it is not JSON. */
  body: any
  text: string
  /** Round trip through dispatchFetch. */
  ms: number
}

export interface TestWorker {
  readonly mf: Miniflare
  fetch(method: string, path: string, body?: string): Promise<WorkerResponse>
  /** Everything the Worker wrote to stdout and stderr (console.log, uncaught errors). */
  output(): string
  dispose(): Promise<void>
}

/** Bundles `entry` into one ESM module for workerd and returns its path (in a fresh temp dir). */
export async function bundleWorker(entry: string): Promise<{ file: string; cleanup(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-worker-'))
  const file = join(dir, 'worker.js')
  await build({
    entryPoints: [entry],
    outfile: file,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    // `workerd` selects postgres/cf/src (cloudflare:sockets); without it esbuild picks the Node build.
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    external: ['cloudflare:*', 'node:*'],
    logLevel: 'warning',
  })
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export async function startWorker(options: WorkerOptions): Promise<TestWorker> {
  const bundle = await bundleWorker(options.entry)
  const durableObjects = options.durableObjects ?? { WARMCONN: 'WarmconnDurableObject' }
  const lines: string[] = []
  const config: MiniflareOptions = {
    modules: true,
    scriptPath: bundle.file,
    modulesRoot: dirname(bundle.file), // module names must not climb out of it with ".."
    compatibilityDate: options.compatibilityDate ?? testedCompatibilityDate,
    compatibilityFlags: options.compatibilityFlags ?? wranglerConfig.compatibilityFlags,
    bindings: options.bindings ?? {},
    hyperdrives: options.hyperdrives ?? {},
    durableObjects: Object.fromEntries(Object.entries(durableObjects).map(([binding, className]) => [binding, { className, useSQLite: true }])),
    // No network beyond loopback here: do not fetch Request.cf from Cloudflare.
    cf: false,
    // console output and uncaught errors, one record per line, from every miniflare version.
    handleStructuredLogs: ({ message }: { message: string }) => {
      lines.push(`${message}\n`)
    },
  }
  const mf = new miniflare.Miniflare(miniflare.convertV4MiniflareOptions?.(config) ?? config)
  try {
    await mf.ready
  } catch (error) {
    await mf.dispose().catch(() => {})
    bundle.cleanup()
    // The runtime's own explanation is in its output, which this harness captures.
    throw new Error(`workerd did not start: ${String(error)}\n${lines.join('')}`, { cause: error })
  }
  return {
    mf,
    async fetch(method, path, body) {
      const started = performance.now()
      const res = await mf.dispatchFetch(`http://worker.test${path}`, {
        method,
        ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
      })
      const text = await res.text()
      const ms = performance.now() - started
      let parsed: unknown = text
      try {
        parsed = JSON.parse(text)
      } catch {
        // not JSON: keep the text (e.g. the runtime's own error page)
      }
      return { status: res.status, body: parsed, text, ms }
    },
    output: () => lines.join(''),
    async dispose() {
      await mf.dispose()
      bundle.cleanup()
    },
  }
}
