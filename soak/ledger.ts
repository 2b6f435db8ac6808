/**
 * The write ledger: every key a client sent, every answer it got, and at the end what the table
 * holds. A key acknowledged with a 2xx must be in the table once, with the id it was given; a
 * key must never be reported created (201) twice; after the final retries every key sent must
 * be in the table.
 * @module
 */

interface Entry {
  attempts: number
  /** Ids returned with 2xx answers; all must be equal. */
  ids: Set<number>
  /** 201 answers: more than one means the key was inserted twice. */
  created: number
}

export interface LedgerResult {
  keys: number
  acked: number
  /** Keys that needed more than one attempt. */
  retried: number
  /** Acknowledged but missing from the table, or in it under another id. */
  lost: number
  /** More than one row, more than one 201, or different ids in the answers. */
  duplicated: number
  /** Sent but not in the table after the final retries. */
  missing: number
  /** Never acknowledged with a 2xx, even by the final retries (in the table or not). */
  unacked: number
  /** Rows carrying this run's prefix that no client sent. */
  unexpected: number
  /** Up to five offending keys per problem, for the report. */
  examples: string[]
}

export class Ledger {
  readonly #entries = new Map<string, Entry>()
  #next = 0

  constructor(readonly prefix: string) {}

  /** A key no client has used: the prefix, the lane, a sequence number. */
  newKey(lane: string): string {
    const key = `${this.prefix}${lane}-${++this.#next}`
    this.#entries.set(key, { attempts: 0, ids: new Set(), created: 0 })
    return key
  }

  attempt(key: string): void {
    this.#entry(key).attempts++
  }

  ack(key: string, status: number, id: number): void {
    const entry = this.#entry(key)
    entry.ids.add(id)
    if (status === 201) entry.created++
  }

  /** Keys acknowledged so far. */
  acked(): number {
    let n = 0
    for (const e of this.#entries.values()) if (e.ids.size > 0) n++
    return n
  }

  unacked(): string[] {
    return [...this.#entries].filter(([, e]) => e.ids.size === 0).map(([key]) => key)
  }

  /** Compares with the rows the table holds for this run: `count` rows per key, under `id`. */
  check(rows: ReadonlyArray<{ key: string; id: number; count: number }>): LedgerResult {
    const table = new Map(rows.map((r) => [r.key, r]))
    const result: LedgerResult = { keys: this.#entries.size, acked: 0, retried: 0, lost: 0, duplicated: 0, missing: 0, unacked: 0, unexpected: 0, examples: [] }
    const example = (what: string, key: string): void => {
      if (result.examples.length < 5) result.examples.push(`${what}: ${key}`)
    }
    for (const [key, e] of this.#entries) {
      const row = table.get(key)
      if (e.attempts > 1) result.retried++
      if (e.ids.size > 0) result.acked++
      if (e.ids.size > 0 && (!row || !e.ids.has(row.id))) (result.lost++, example('lost', key))
      if ((row?.count ?? 0) > 1 || e.created > 1 || e.ids.size > 1) (result.duplicated++, example('duplicated', key))
      if (!row) (result.missing++, example('missing', key))
      if (e.ids.size === 0) (result.unacked++, example('unacked', key))
    }
    for (const key of table.keys()) if (!this.#entries.has(key)) (result.unexpected++, example('unexpected', key))
    return result
  }

  #entry(key: string): Entry {
    const entry = this.#entries.get(key)
    if (!entry) throw new Error(`ledger: unknown key ${key}`)
    return entry
  }
}
