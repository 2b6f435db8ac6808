/**
 * A fleet of simulated function instances (instance.ts), spread over a few worker threads
 * (host.ts), driven in bursts like real traffic. Each instance evaluates warmconn afresh, so the
 * fleet holds one warm connection per instance, as N serverless instances do.
 */
import { build, type Plugin } from 'esbuild'
import { availableParallelism } from 'node:os'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { WarmPostgresOptions } from '../../src/drivers/postgres.js'
import type { HolderStats } from '../../src/index.js'

export interface InstanceConfig {
  url: string
  /** Plain data only: it is copied into each worker. */
  options: WarmPostgresOptions
  /** How long each invocation holds its connection (pg_sleep). */
  workMs: number
}

export interface HostRequest {
  seq: number
  type: 'invoke' | 'report' | 'close'
  /** The instance addressed. */
  id: number
}

export interface Outcome {
  ok: boolean
  /** Latency of the invocation inside the instance, connect waits included. */
  ms: number
  error?: { name: string; code?: string | undefined; causeCode?: string | undefined; message: string }
}

export interface Report {
  stats: HolderStats
  /** Connect retries by the code of the failure that caused them. */
  retryCodes: Record<string, number>
}

export interface Fleet {
  readonly size: number
  /** Invokes `count` distinct instances, picked at random, all at once. */
  burst(count: number): Promise<Outcome[]>
  /** Every instance's holder stats, summed, and their connect retries by code. */
  report(): Promise<Report>
  /** Closes every holder, then ends the workers. */
  stop(): Promise<void>
}

type Reply = { seq: number; outcome?: Outcome; report?: Report }

interface Host {
  worker: Worker
  pending: Map<number, (reply: Reply) => void>
}

// Bundled once per process, run from data: URLs, so nothing is written to disk.
let bundles: Promise<{ host: URL; instanceCode: string }> | undefined

/**
 * postgres.js stays outside the bundle, imported by absolute URL, so all instances share one
 * compiled copy of it. Compiling a private copy on each instance's first connect took seconds of
 * CPU per thread with 33 instances each, which delayed connect timers and turned 53300 into
 * CONNECT_TIMEOUT. warmconn, whose module state is what each instance must own, is bundled in.
 */
const sharedPostgres: Plugin = {
  name: 'shared-postgres',
  setup(b) {
    b.onResolve({ filter: /^postgres$/ }, async (args) => {
      if (args.pluginData === 'shared') return undefined
      const found = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: 'shared' })
      return { path: pathToFileURL(found.path).href, external: true }
    })
  },
}

export function bundle(entry: string): Promise<string> {
  return build({
    entryPoints: [new URL(entry, import.meta.url).pathname],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    write: false,
    logLevel: 'warning',
    plugins: [sharedPostgres],
  }).then((out) => out.outputFiles[0]!.text)
}

/**
 * Starts `size` instances configured alike, as one deployed function scaled out to `size`
 * instances, on a few threads: one per core plus one keeps both cores busy without 200 isolates.
 */
export async function startFleet(size: number, config: InstanceConfig, threads = availableParallelism() + 1): Promise<Fleet> {
  const { host, instanceCode } = await (bundles ??= Promise.all([bundle('./host.ts'), bundle('./instance.ts')]).then(([h, instanceCode]) => ({
    host: new URL(`data:text/javascript;base64,${Buffer.from(h).toString('base64')}`),
    instanceCode,
  })))
  const perHost = Math.ceil(size / threads)
  const hosts: Host[] = []
  const owner: Host[] = [] // instance id -> its host
  const loaded: Promise<void>[] = []
  try {
    for (let first = 0; first < size; first += perHost) {
      const count = Math.min(perHost, size - first)
      const h: Host = { worker: new Worker(host, { workerData: { instanceCode, first, count, config } }), pending: new Map() }
      loaded.push(listen(h))
      hosts.push(h)
      for (let i = 0; i < count; i++) owner.push(h)
    }
    await Promise.all(loaded)
  } catch (error) {
    await Promise.all(hosts.map((h) => h.worker.terminate()))
    throw error
  }

  let seq = 0
  const ask = (id: number, type: HostRequest['type']) =>
    new Promise<Reply>((resolve) => {
      const h = owner[id]!
      const request: HostRequest = { seq: ++seq, type, id }
      h.pending.set(request.seq, resolve)
      h.worker.postMessage(request)
    })
  const ids = owner.map((_, id) => id)

  return {
    size,
    burst: (count) => Promise.all(shuffle(ids).slice(0, count).map(async (id) => (await ask(id, 'invoke')).outcome!)),
    async report() {
      const reports = await Promise.all(ids.map(async (id) => (await ask(id, 'report')).report!))
      const stats = { ...reports[0]!.stats }
      const retryCodes: Record<string, number> = {}
      for (const r of reports.slice(1)) for (const [k, v] of Object.entries(r.stats)) stats[k as keyof HolderStats] += v
      for (const r of reports) for (const [k, v] of Object.entries(r.retryCodes)) retryCodes[k] = (retryCodes[k] ?? 0) + v
      return { stats, retryCodes }
    },
    async stop() {
      // Graceful closes let the server see clean disconnects; a stuck host must not stall the stop.
      let timer: NodeJS.Timeout | undefined
      const stuck = new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))
      await Promise.race([Promise.all(ids.map((id) => ask(id, 'close'))), stuck])
      clearTimeout(timer)
      await Promise.all(hosts.map((h) => h.worker.terminate()))
    },
  }
}

/** Routes replies to their callers; resolves once the host has loaded its instances. */
function listen(h: Host): Promise<void> {
  return new Promise((resolve, reject) => {
    h.worker.on('message', (reply: Reply | { ready: true }) => {
      if ('ready' in reply) return resolve()
      h.pending.get(reply.seq)?.(reply)
      h.pending.delete(reply.seq)
    })
    // A host that dies fails its callers at once instead of leaving them waiting forever.
    h.worker.on('error', (err) => {
      reject(err)
      for (const settle of h.pending.values()) settle({ seq: 0, outcome: { ok: false, ms: 0, error: { name: 'HostError', message: err.message } } })
      h.pending.clear()
    })
  })
}

function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}
