/**
 * What one runtime did during the demo, from its own answers (GET /db returns the backend pid
 * and the holder's stats) and from the server (pg_stat_activity).
 * @module
 */
import type { HolderStats } from '../../src/index.js'
import type { Backend } from '../../test/harness/pg.js'
import type { Answer, Runtime } from './runtimes.js'

/** Why a GET /db sample is interesting: what the holder had to do before the query. */
export type Kind = 'cold' | 'warm' | 'stale' | 'killed' | 'idle'

export interface DbAnswer {
  pid: number
  stats: HolderStats
  ms: number
}

export class Tally {
  /** Successful requests of any route. */
  served = 0
  /** The latest stats a GET /db answer carried. */
  stats: HolderStats | undefined
  /** Backend pids in the order they first answered. */
  readonly pids: number[] = []
  /** This runtime's backends in pg_stat_activity, as of the end of the last step. */
  onServer: Backend[] = []
  readonly #samples: Array<{ kind: Kind; ms: number }> = []

  constructor(readonly runtime: Runtime) {}

  /** GET /db, recorded under `kind`. */
  async db(kind: Kind): Promise<DbAnswer> {
    const { body, ms } = await this.request('GET', '/db')
    if (!isDbBody(body)) throw new Error(`${this.runtime.name} GET /db: unexpected answer ${JSON.stringify(body)}`)
    this.stats = body.stats
    if (!this.pids.includes(body.pid)) this.pids.push(body.pid)
    this.#samples.push({ kind, ms })
    return { ...body, ms }
  }

  /** Any other request, counted as served. */
  async request(method: 'GET' | 'POST', path: string, body?: object): Promise<Answer> {
    const answer = await this.runtime.request(method, path, body)
    this.served++
    return answer
  }

  /** Durations of the GET /db samples of one kind, in order. */
  times(kind: Kind): number[] {
    return this.#samples.filter((s) => s.kind === kind).map((s) => s.ms)
  }
}

/** The median (the upper one of an even count); undefined without samples. */
export function p50(values: number[]): number | undefined {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function isDbBody(body: unknown): body is { pid: number; stats: HolderStats } {
  const b = body as { pid?: unknown; stats?: { opened?: unknown } } | null
  return typeof b?.pid === 'number' && typeof b.stats?.opened === 'number'
}
