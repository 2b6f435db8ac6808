/**
 * A password given as a function (an RDS IAM or Aurora DSQL token, a secret that rotates): asked
 * once for each new connection, when it is opened, never at construction and never for a warm
 * call. An open session outlives the token it was opened with, so a warm connection is kept
 * across rotations; only new connections need a fresh one.
 *
 * The drivers ask here and hand the driver library a plain string, so what happens around the
 * call is warmconn's, the same on every driver: bounded by connectTimeoutMs, a failure is a
 * ConnectError (retried like a transient failure within connectRetries and connectBudgetMs), the
 * result goes into the driver's secrets before anything can print it, and a password the server
 * refuses is fetched again once, at once (it may have expired between fetch and use), then fails
 * with AuthError.
 * @module
 */
import type { Classified, OpenOptions } from './driver.js'
import { InvalidOptionError, WarmconnError } from './errors.js'
import type { SecretList } from './secret-list.js'
import { withTimeout } from './timer.js'

/**
 * A password for each new connection: a function returning it (or a promise of it).
 * `invalidate`, if present, is called with a password the server refused, before the function is
 * asked again, so a cache can drop it (`cachedPassword` and the `warmconn/aws` helpers have one).
 * @example
 * const password: PasswordFunction = async () => (await secrets.get('db-password')).value
 */
export interface PasswordFunction {
  (): string | Promise<string>
  invalidate?(refused: string): void
}

/** The codes of a connect that failed in the password function (ConnectError's `causeCode`). */
export const PASSWORD_FAILED = 'PASSWORD_FUNCTION_FAILED'
export const PASSWORD_TIMEOUT = 'PASSWORD_FUNCTION_TIMEOUT'
export const PASSWORD_UNUSABLE = 'PASSWORD_FUNCTION_UNUSABLE'

/** One connect attempt's password, and what became of it. */
export interface Grant {
  readonly password: string
  /** Fetched after the server refused a password: a refusal now is final. */
  readonly retry: boolean
  /** How a refusal of it was classified, so that asking twice changes nothing. */
  decided: Classified | undefined
}

// A refusal owes the next attempt a fresh password; the holder makes that attempt at once, so a
// debt older than this was never collected (connectRetries ran out, the holder closed).
const DEBT_TTL_MS = 5_000

/** Checks an option that takes a password: a string, or a function returning one. */
export function checkPassword(option: string, value: unknown): void {
  if (value === undefined || typeof value === 'string' || typeof value === 'function') return
  throw new InvalidOptionError(option, 'expected a string or a function returning one (or a promise of one)')
}

/** A driver's source of passwords from a function; see the module doc. */
export class PasswordSource {
  readonly #fn: PasswordFunction
  readonly #option: string
  readonly #secrets: SecretList
  readonly #grants = new WeakMap<object, Grant>()
  #owed = 0
  #owedAt = 0

  constructor(fn: PasswordFunction, option: string, secrets: SecretList) {
    this.#fn = fn
    this.#option = option
    this.#secrets = secrets
  }

  /** Asks the function for one connect attempt, within `timeoutMs`. Rejects with an error whose code the holder retries (or not). */
  async take(timeoutMs: number): Promise<Grant> {
    if (this.#owed > 0 && Date.now() - this.#owedAt > DEBT_TTL_MS) this.#owed = 0
    const retry = this.#owed > 0
    if (retry) this.#owed--
    let value: unknown
    try {
      value = await withTimeout(Promise.resolve().then(() => this.#fn()), timeoutMs, () => new PasswordTimeout())
    } catch (err) {
      if (err instanceof PasswordTimeout) {
        throw failure(PASSWORD_TIMEOUT, `the password function (${this.#option}) did not return within connectTimeoutMs (${timeoutMs} ms)`)
      }
      // An error that says it cannot work (a missing package, a bad option) is not worth retrying.
      const code = err instanceof WarmconnError || isMissingModule(err) ? PASSWORD_UNUSABLE : PASSWORD_FAILED
      throw failure(code, `the password function (${this.#option}) failed: ${err instanceof Error ? err.message : String(err)}`, err)
    }
    if (typeof value !== 'string' || value.length === 0) {
      throw failure(PASSWORD_UNUSABLE, `the password function (${this.#option}) returned ${value === '' ? 'an empty string' : typeof value}, not a password`)
    }
    // Before the driver library sees it: from here on no output of this driver can show it.
    this.#secrets.remember(value)
    return { password: value, retry, decided: undefined }
  }

  /**
   * Opens a connection with a password from the function: asked first, within connectTimeoutMs,
   * and the driver's own attempt given what is left of it.
   * @example open: (o) => source.open(o, (o, password) => connectWith(o, password))
   */
  async open<T>(o: OpenOptions, connect: (o: OpenOptions, password: string) => Promise<T>): Promise<T> {
    const startedAt = Date.now()
    const grant = await this.take(o.connectTimeoutMs)
    const left = Math.max(1, o.connectTimeoutMs - (Date.now() - startedAt))
    try {
      const conn = await connect({ ...o, connectTimeoutMs: left }, grant.password)
      this.bind(conn, grant)
      return conn
    } catch (err) {
      this.bind(err, grant)
      throw err
    }
  }

  /** Notes that the connect behind `target` (its connection, or the error its attempt failed with) used `grant`. */
  bind(target: unknown, grant: Grant): void {
    if (target !== null && (typeof target === 'object' || typeof target === 'function')) this.#grants.set(target, grant)
  }

  /**
   * The driver's reading `seen` of an error, amended: an auth failure of a connect whose password
   * came from the function, not itself fetched after a refusal, is retried at once (`retryNow`).
   * Either way the function's cache is told to drop that password. A second refusal is final.
   */
  classify(err: unknown, conn: unknown, seen: Classified): Classified {
    if (seen.kind !== 'auth') return seen
    const grant = this.#grantOf(err) ?? this.#grantOf(conn)
    if (!grant) return seen
    if (grant.decided) return grant.decided
    // Whatever follows, a refused password must not be served again from a cache.
    try {
      this.#fn.invalidate?.(grant.password)
    } catch {
      // A cache that cannot drop it is still asked again; a second refusal is final anyway.
    }
    if (grant.retry) {
      grant.decided = { ...seen, hint: `a fresh password from the password function (${this.#option}) was refused too; ${AUTH_HINT}` }
      return grant.decided
    }
    this.#owed++
    this.#owedAt = Date.now()
    grant.decided = { ...seen, retryNow: true }
    return grant.decided
  }

  #grantOf(target: unknown): Grant | undefined {
    return target !== null && (typeof target === 'object' || typeof target === 'function') ? this.#grants.get(target) : undefined
  }
}

const AUTH_HINT =
  'check the user name in the URL, that the token is signed for this host, port, user and region, and (RDS IAM, DSQL) that the IAM policy allows rds-db:connect or dsql:DbConnect'

class PasswordTimeout extends Error {}

function failure(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code })
}

function isMissingModule(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}
