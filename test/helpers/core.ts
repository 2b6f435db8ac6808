/** Small helpers shared by the core tests: a holder on a unique application_name, and waits. */
import { Holder, type HolderEventName, type HolderEvents, type HolderOptions } from '../../src/index.js'
import { postgresDriver, type Sql, type PostgresOptions } from '../../src/drivers/postgres.js'

let n = 0
/** A unique application_name per holder keeps tests from seeing each other's backends. */
export function appName(label: string): string {
  return `wc-${label}-${process.pid}-${++n}`.slice(0, 63)
}

export function makeHolder(url: string, options: HolderOptions = {}, pg: PostgresOptions = {}): Holder<Sql> {
  return new Holder(postgresDriver(url, { onnotice: () => {}, ...pg }), options)
}

export async function pidOf(holder: Holder<Sql>, runOptions?: { idempotent?: boolean }): Promise<number> {
  const [row] = await holder.run((sql) => sql`select pg_backend_pid() as pid`, runOptions)
  return Number(row!.pid)
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Records every event a holder emits, in order, for assertions and secret scans. */
export function recordEvents(holder: Holder<Sql>): Array<{ event: HolderEventName; payload: unknown }> {
  const seen: Array<{ event: HolderEventName; payload: unknown }> = []
  const names: HolderEventName[] = [
    'connectSuccess', 'connectRetry', 'connectFail', 'reuse', 'revalidateSuccess', 'revalidateFail',
    'closeIdle', 'closeLifetime', 'closeBroken', 'sessionReset', 'replay', 'close', 'warning',
  ]
  for (const event of names) holder.on(event, (payload: HolderEvents[typeof event]) => seen.push({ event, payload }))
  return seen
}

/** Polls `check` until it returns true or `ms` pass; returns the last result. */
export async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await sleep(50)
  }
}
