/**
 * The fault injector: at random, one fault at a time, it kills backends, stops and restarts the
 * server, blackholes or resets every connection through the proxy, and fills max_connections.
 * Each fault is recorded as a window on the run's clock so every failure can be blamed on what
 * was going on while it happened. Client pauses (a Lambda process left frozen, a Durable Object
 * left idle) are the clients' doing, see clients.ts.
 * @module
 */
import type { TestPg } from '../test/harness/pg.js'
import type { FaultProxy } from '../test/harness/proxy.js'
import type { Rng } from './random.js'

export type FaultKind = 'kill' | 'restart' | 'blackhole' | 'reset' | 'fill'
export const FAULT_KINDS: readonly FaultKind[] = ['kill', 'restart', 'blackhole', 'reset', 'fill']

/**
 * Faults during which a call that needs a new connection cannot get one: the server is stopped,
 * the network in front of it is silent, or max_connections is full. Only these may fail a read.
 */
export const DOWN: ReadonlySet<string> = new Set<FaultKind>(['restart', 'blackhole', 'fill'])

export interface FaultWindow {
  kind: FaultKind
  /** Milliseconds on the run's clock. */
  start: number
  end: number
}

export interface FaultTiming {
  /** Pause between two faults, milliseconds. */
  gapMs: [number, number]
  /** How long the server stays stopped before it is started again. */
  downMs: [number, number]
  /**
   * How long the network stays silent. Longer than staleAfterMs, so a connection idle through the
   * whole blackhole is pinged (and replaced) on its next use instead of handed out unchecked.
   */
  blackholeMs: [number, number]
  /**
   * After the network is back, how long until the flows it silenced are answered with a RST, as
   * a NAT that lost their state does once the client's TCP retransmits on them. Until then a
   * query already sent on such a flow waits, and so does whatever queues behind it.
   */
  forgetMs: [number, number]
  /** How long max_connections stays full: within connectBudgetMs, so a connect retried for its whole budget gets through. */
  fillMs: [number, number]
}

export interface Injector {
  readonly windows: FaultWindow[]
  /** Faults that could not be applied, with why (e.g. no free slot to fill). */
  readonly skipped: string[]
  /** The fault being applied now, if any. */
  active(): FaultKind | undefined
  /** Ends the current fault early, restores everything, and resolves once all is healthy. */
  stop(): Promise<void>
}

export function startFaults(pg: TestPg, proxy: FaultProxy, rng: Rng, now: () => number, timing: FaultTiming): Injector {
  const windows: FaultWindow[] = []
  const skipped: string[] = []
  const stopping = new AbortController()
  let active: FaultKind | undefined
  const pause = ([min, max]: [number, number]) => sleep(rng.between(min, max), stopping.signal)

  const apply: Record<FaultKind, () => Promise<void>> = {
    async kill() {
      // All of the app's backends, or one of them.
      const backends = await pg.backends('warmconn')
      if (backends.length === 0) return
      await pg.terminate(rng.chance(0.5) ? { applicationName: 'warmconn' } : { pid: rng.pick(backends).pid })
    },
    async restart() {
      await pg.stopServer()
      try {
        await pause(timing.downMs)
      } finally {
        await pg.startServer()
      }
    },
    async blackhole() {
      proxy.blackhole()
      try {
        await pause(timing.blackholeMs)
      } finally {
        proxy.heal()
      }
      try {
        await pause(timing.forgetMs)
      } finally {
        proxy.resetSilenced()
      }
    },
    async reset() {
      proxy.resetAll()
    },
    async fill() {
      const held = await pg.fillConnections(0)
      try {
        await pause(timing.fillMs)
      } finally {
        await held.release()
      }
    },
  }

  // Shuffled rounds: every kind comes up once per round, so even a short run sees them all.
  const loop = (async () => {
    while (!stopping.signal.aborted) {
      for (const kind of rng.shuffle(FAULT_KINDS)) {
        await pause(timing.gapMs)
        if (stopping.signal.aborted) return
        const start = now()
        active = kind
        try {
          await apply[kind]()
        } catch (err) {
          skipped.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`)
        } finally {
          // A window even when it failed: whatever part of the fault happened may have hurt someone.
          windows.push({ kind, start, end: now() })
          active = undefined
        }
      }
    }
  })()

  return {
    windows,
    skipped,
    active: () => active,
    async stop() {
      stopping.abort()
      await loop
    },
  }
}

/** Overlap of [start, end] with the windows, as a sorted, de-duplicated label like `blackhole+kill`. */
export function blame(windows: readonly FaultWindow[], start: number, end: number, extra: string[] = []): string {
  const kinds = new Set(extra)
  for (const w of windows) if (w.start <= end && w.end >= start) kinds.add(w.kind)
  return kinds.size === 0 ? 'none' : [...kinds].sort().join('+')
}

/** A sleep that ends early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = (): void => {
      clearTimeout(handle)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const handle = setTimeout(done, ms)
    signal?.addEventListener('abort', done)
  })
}
