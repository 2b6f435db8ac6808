/**
 * Holder options from environment variables (`process.env` on Lambda, `env` on Workers). The
 * `WARMCONN_` prefix belongs to warmconn: a variable under it that warmconn does not know is a
 * misspelt override, and is refused by name instead of letting the default apply in silence.
 * @module
 */
import { InvalidOptionError } from './errors.js'
import { nearest } from './nearest.js'
import type { HolderOptions } from './options.js'

/** The environment variable for each holder option: the option's name in UPPER_SNAKE_CASE after `WARMCONN_`. */
export const envOptionNames = {
  WARMCONN_STALE_AFTER_MS: 'staleAfterMs',
  WARMCONN_PING_TIMEOUT_MS: 'pingTimeoutMs',
  WARMCONN_IDLE_TIMEOUT_MS: 'idleTimeoutMs',
  WARMCONN_MAX_LIFETIME_MS: 'maxLifetimeMs',
  WARMCONN_MAX_LIFETIME_JITTER_MS: 'maxLifetimeJitterMs',
  WARMCONN_CONNECT_TIMEOUT_MS: 'connectTimeoutMs',
  WARMCONN_CONNECT_RETRIES: 'connectRetries',
  WARMCONN_CONNECT_BUDGET_MS: 'connectBudgetMs',
  WARMCONN_CONNECT_BACKOFF_BASE_MS: 'connectBackoffBaseMs',
  WARMCONN_CONNECT_BACKOFF_MAX_MS: 'connectBackoffMaxMs',
  WARMCONN_ACQUIRE_TIMEOUT_MS: 'acquireTimeoutMs',
  WARMCONN_MAX_CONNECTIONS: 'maxConnections',
  WARMCONN_MAX_PIPELINED: 'maxPipelined',
  WARMCONN_CALL_TIMEOUT_MS: 'callTimeoutMs',
  WARMCONN_CLOSE_TIMEOUT_MS: 'closeTimeoutMs',
  WARMCONN_APPLICATION_NAME: 'applicationName',
  WARMCONN_POOLED: 'pooled',
  WARMCONN_SERVER_IDLE_CLOSE: 'serverIdleClose',
  WARMCONN_SESSION_RESET: 'sessionReset',
  WARMCONN_ALLOW_EXIT_ON_IDLE: 'allowExitOnIdle',
} as const satisfies Record<string, keyof HolderOptions>

export interface EnvOptions {
  /**
   * Other `WARMCONN_*` variables your code reads itself (the example Worker's `WARMCONN_MODE`,
   * say), so they are not taken for misspelt overrides.
   */
  allow?: readonly string[]
}

const PREFIX = 'WARMCONN_'
// Units a person may write after a duration, and what each is in milliseconds.
const MS_PER_UNIT: Record<string, number> = Object.fromEntries(
  ([
    [1, ['ms', 'msec', 'millisecond', 'milliseconds']],
    [1_000, ['s', 'sec', 'secs', 'second', 'seconds']],
    [60_000, ['m', 'min', 'mins', 'minute', 'minutes']],
    [3_600_000, ['h', 'hr', 'hour', 'hours']],
    [86_400_000, ['d', 'day', 'days']],
  ] as const).flatMap(([ms, units]) => units.map((unit) => [unit, ms])),
)
const WITH_UNIT = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$/i

/**
 * Reads the `WARMCONN_*` overrides from an environment. An unparsable value, a value with a unit
 * (`5s`: durations are whole milliseconds) and an unknown `WARMCONN_*` variable are each an
 * InvalidOptionError naming the variable (and, for an unknown one, the nearest known name).
 * Values are never echoed, except a number with a unit. Bindings (objects) are not variables and
 * are skipped, so a Durable Object namespace bound as `WARMCONN_DO` is fine.
 * @example warmPostgres(process.env.DATABASE_URL, optionsFromEnv(process.env))
 * @example optionsFromEnv(env, { allow: ['WARMCONN_MODE'] })
 */
export function optionsFromEnv(env: Record<string, unknown>, { allow = [] }: EnvOptions = {}): HolderOptions {
  if (env === null || typeof env !== 'object') throw new InvalidOptionError('env', 'expected an object of environment variables')
  if (!Array.isArray(allow)) throw new InvalidOptionError('allow', 'expected an array of variable names')
  const out: Record<string, number | string | boolean> = {}
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(PREFIX) || raw === undefined || (raw !== null && typeof raw === 'object') || typeof raw === 'function') continue
    if (!Object.hasOwn(envOptionNames, name)) {
      if (allow.includes(name)) continue
      throw unknownVariable(name, allow)
    }
    if (raw === '') continue
    const option = envOptionNames[name as keyof typeof envOptionNames]
    // sessionReset's value is checked with the other options (resolveOptions names the choices).
    out[option] = option === 'applicationName' ? String(raw) : option === 'sessionReset' ? String(raw).trim() : option === 'pooled' || option === 'serverIdleClose' || option === 'allowExitOnIdle' ? yesOrNo(name, raw) : wholeNumber(name, raw)
  }
  return out as HolderOptions
}

function yesOrNo(name: string, raw: unknown): boolean {
  const text = String(raw).trim().toLowerCase()
  if (text === 'true' || text === '1') return true
  if (text === 'false' || text === '0') return false
  throw new InvalidOptionError(name, 'expected true or false')
}

function wholeNumber(name: string, raw: unknown): number {
  // Workers vars may be JSON values; a whole number given as one is as good as its text.
  if (typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0) return raw
  const text = typeof raw === 'string' ? raw : ''
  const value = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN
  if (Number.isSafeInteger(value)) return value
  const isDuration = name.endsWith('_MS')
  const withUnit = isDuration ? WITH_UNIT.exec(text) : null
  const perUnit = withUnit ? MS_PER_UNIT[withUnit[2]!.toLowerCase()] : undefined
  if (withUnit && perUnit !== undefined) {
    const ms = Number(withUnit[1]) * perUnit
    const fix = Number.isSafeInteger(ms) ? `: ${withUnit[0].trim()} is ${name}=${ms}` : ''
    throw new InvalidOptionError(name, `expected a whole number of milliseconds, without a unit${fix}`)
  }
  throw new InvalidOptionError(name, isDuration ? 'expected a whole number of milliseconds' : 'expected a whole number')
}

function unknownVariable(name: string, allow: readonly string[]): InvalidOptionError {
  const known = [...Object.keys(envOptionNames), ...allow]
  const guess = nearest(name, known)!
  const unit = Object.hasOwn(envOptionNames, `${name}_MS`) ? ' (durations are in milliseconds, and their variables end in _MS)' : ''
  return new InvalidOptionError(
    name,
    `not a warmconn variable; did you mean ${guess}${unit}? Known: ${known.join(', ')}. ` +
      'A variable of your own under WARMCONN_ goes in optionsFromEnv(env, { allow: [...] })',
  )
}
