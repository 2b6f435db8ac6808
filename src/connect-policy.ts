/**
 * The connect policy: how long one attempt may take, what a failed attempt means (retry after a
 * backoff, or the typed error that ends the connect), and a bound on an attempt that holds even
 * if the driver ignores its own timeout. Pure policy: the holder (holder.ts) runs the attempts,
 * counts the retries and reports them.
 * @module
 */
import type { Classified, Driver, DriverConnection, OpenOptions } from './driver.js'
import { redact, safeCause } from './errors.js'
import { connectFailure } from './connect-failure.js'
import type { ResolvedOptions } from './options.js'
import type { ConnectTry } from './slot.js'
import { withTimeout } from './timer.js'

/** The least time worth giving a connect attempt (loopback TCP + SCRAM take ~20 ms here). */
const MIN_ATTEMPT_MS = 250
/** The driver's own connect timer should win; ours only guards against a driver that hangs. */
const GRACE_MS = 250

type Target = Pick<Driver<unknown>, 'name' | 'target' | 'secrets'>

/** The bound on the next attempt of `connect`: connectTimeoutMs, or what is left of connectBudgetMs. */
export function attemptTimeoutMs(o: ResolvedOptions, connect: ConnectTry): number {
  const remaining = o.connectBudgetMs - (Date.now() - connect.startedAt)
  return Math.max(1, Math.min(o.connectTimeoutMs, remaining))
}

/**
 * What a failed connect attempt means: throws the typed error that ends the connect (bad
 * credentials or configuration, not transient, out of retries or budget, the holder closing), or
 * returns the next attempt's backoff (full jitter below a doubling ceiling), `counted` as a
 * retry, or at once and not counted for a failure the driver has learnt to avoid (`retryNow`).
 */
export function retryDelay(o: ResolvedOptions, driver: Target, err: unknown, seen: Classified, connect: ConnectTry, closing: boolean): { delayMs: number; counted: boolean } {
  const attempt = connect.attempts
  const secrets = driver.secrets
  if (seen.retryNow && attempt <= o.connectRetries) return { delayMs: 0, counted: false }
  const detail = redact(err instanceof Error ? err.message : String(err), secrets)
  const failure = { seen, detail, where: `${driver.target} (${driver.name})`, cause: { cause: safeCause(err, secrets) }, attempts: attempt }
  // Worded for what happened (connect-failure.ts): no such host, TLS, refused credentials...
  if (seen.kind === 'auth' || seen.kind === 'config') throw connectFailure(failure)
  const ceiling = Math.min(o.connectBackoffMaxMs, o.connectBackoffBaseMs * 2 ** (attempt - 1))
  const delayMs = Math.random() * ceiling
  const retryable = seen.kind === 'transient' || seen.kind === 'connection'
  // An attempt squeezed into the budget's last milliseconds could only time out, and would
  // then report CONNECT_TIMEOUT instead of the failure that actually drove the retries.
  const minAttemptMs = Math.min(o.connectTimeoutMs, MIN_ATTEMPT_MS)
  const outOfBudget = Date.now() - connect.startedAt + delayMs + minAttemptMs > o.connectBudgetMs
  if (!retryable || attempt > o.connectRetries || outOfBudget || closing) {
    const gaveUp = !retryable ? 'not a transient failure' : outOfBudget ? `another retry would pass connectBudgetMs (${o.connectBudgetMs} ms)` : `connectRetries (${o.connectRetries}) exhausted`
    throw connectFailure({ ...failure, gaveUp })
  }
  return { delayMs, counted: true }
}

/** One attempt, bounded even if the driver ignores its own timeout; a late success is destroyed. */
export function openOnce<C>(driver: Driver<C>, options: OpenOptions): Promise<DriverConnection<C>> {
  let abandoned = false
  const opening = driver.open(options)
  opening.then((conn) => abandoned && conn.destroy(), () => {})
  return withTimeout(opening, options.connectTimeoutMs + GRACE_MS, () => {
    abandoned = true
    return Object.assign(new Error(`connect timed out after ${options.connectTimeoutMs} ms`), { code: 'CONNECT_TIMEOUT' })
  })
}
