/**
 * Histogram samples held until the SDK collects. The SDK's `Histogram.record` hashes the
 * attributes (a JSON.stringify) on every call, most of what instrumenting a call cost in
 * `npm run bench:overhead`; storing a number costs next to nothing. So a call only stores its
 * sample, and the samples are recorded when the SDK collects (from the batch
 * observable callback, which the SDK runs before it reads the histograms, so they land in that
 * same collection), or at once when the buffer is full (a reader that never collects).
 * @module
 */
import type { Attributes, Histogram } from '@opentelemetry/api'

/** Samples held at most; 32 KB of Float64Array per histogram. */
const CAPACITY = 4096

export class DeferredHistogram {
  readonly #samples = new Float64Array(CAPACITY)
  #count = 0

  constructor(
    readonly histogram: Histogram,
    readonly attributes: Attributes,
  ) {}

  /** Keeps one sample for the next collection. */
  record(value: number): void {
    this.#samples[this.#count++] = value
    if (this.#count === CAPACITY) this.flush()
  }

  /** Records every sample held into the SDK's histogram. */
  flush(): void {
    const n = this.#count
    this.#count = 0
    for (let i = 0; i < n; i++) this.histogram.record(this.#samples[i]!, this.attributes)
  }
}
