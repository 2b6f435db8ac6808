import { describe, expect, it } from 'vitest'
import { Holder, InvalidOptionError, envOptionNames, optionsFromEnv, resolveOptions, defaultOptions } from '../src/index.js'
import { postgresDriver, warmPostgres } from '../src/drivers/postgres.js'
import { workerEnvNames } from '../src/workers/settings.js'

function optionError(fn: () => unknown): InvalidOptionError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError)
    return err as InvalidOptionError
  }
  throw new Error('expected an InvalidOptionError')
}

describe('options are validated at construction', () => {
  it('documents a staleAfterMs default of at most 30 s and fills every default', () => {
    expect(defaultOptions.staleAfterMs).toBeLessThanOrEqual(30_000)
    expect(resolveOptions({})).toEqual(defaultOptions)
  })

  it('keeps 0 as a real value instead of falling back to the default', () => {
    expect(resolveOptions({ staleAfterMs: 0 })).toMatchObject({ staleAfterMs: 0 })
    expect(resolveOptions({ idleTimeoutMs: 0 })).toMatchObject({ idleTimeoutMs: 0 })
  })

  it('an unknown option names the nearest known one', () => {
    expect(optionError(() => resolveOptions({ staleAfter: 100 } as never)).message).toMatch(/"staleAfter": unknown option; did you mean staleAfterMs\?/)
    expect(optionError(() => warmPostgres('postgres://u@localhost/db', { idleTimeoutMS: 100 } as never)).message).toMatch(/did you mean idleTimeoutMs\?/)
  })

  it.each([
    [{ staleAfterMs: -1 }, 'staleAfterMs'],
    [{ idleTimeoutMs: Number.NaN }, 'idleTimeoutMs'],
    [{ maxLifetimeMs: Number.POSITIVE_INFINITY }, 'maxLifetimeMs'],
    [{ pingTimeoutMs: 0 }, 'pingTimeoutMs'],
    [{ connectTimeoutMs: '5000' }, 'connectTimeoutMs'],
    [{ maxConnections: 1.5 }, 'maxConnections'],
    [{ maxConnections: 0 }, 'maxConnections'],
    [{ connectRetries: -2 }, 'connectRetries'],
    [{ applicationName: '' }, 'applicationName'],
    [{ maxLifetimeMs: 1000, maxLifetimeJitterMs: 2000 }, 'maxLifetimeJitterMs'],
    [{ idleTimeout: 5 }, 'idleTimeout'],
  ])('rejects %o naming %s', (input, option) => {
    const err = optionError(() => resolveOptions(input as never))
    expect(err.option).toBe(option)
    expect(err.code).toBe('WARMCONN_INVALID_OPTION')
    expect(err.message).toContain(option)
  })

  it('rejects a missing, malformed or non-postgres URL without echoing it', () => {
    expect(optionError(() => warmPostgres(undefined)).option).toBe('url')
    const malformed = optionError(() => warmPostgres('postgres://user:hunter2-secret@[bad'))
    expect(malformed.option).toBe('url')
    expect(malformed.message).not.toContain('hunter2-secret')
    expect(optionError(() => warmPostgres('mysql://u:p@h/db')).message).toContain('mysql:')
  })

  it('refuses postgres.js options that would fight the lifecycle, pointing to the warmconn option', () => {
    const err = optionError(() => warmPostgres('postgres://u@localhost/db', { postgres: { idle_timeout: 20 } }))
    expect(err.option).toBe('postgres.idle_timeout')
    expect(err.message).toContain('idleTimeoutMs')
  })
})

describe('contradictory settings are refused at construction where the contradiction is certain', () => {
  it.each([
    [{ staleAfterMs: 60_000, idleTimeoutMs: 30_000 }],
    [{ staleAfterMs: 30_000, idleTimeoutMs: 30_000 }],
    [{ staleAfterMs: 0, idleTimeoutMs: 0 }],
  ])('both given, staleAfterMs >= idleTimeoutMs (%o): the ping can never run', (input) => {
    for (const make of [() => resolveOptions(input), () => new Holder(postgresDriver('postgres://u@localhost/db'), input), () => warmPostgres('postgres://u@localhost/db', input)]) {
      const err = optionError(make)
      expect(err.option).toBe('staleAfterMs')
      expect(err.message).toMatch(/is not below idleTimeoutMs .*, so the ping it asks for can never run/)
      expect(err.message).toMatch(/to connect on every call, set only idleTimeoutMs/)
    }
  })

  it('from the environment too, both variables named in the fix', () => {
    const err = optionError(() => new Holder(postgresDriver('postgres://u@localhost/db'), optionsFromEnv({ WARMCONN_STALE_AFTER_MS: '5000', WARMCONN_IDLE_TIMEOUT_MS: '1000' })))
    expect(err.message).toMatch(/WARMCONN_STALE_AFTER_MS.*WARMCONN_IDLE_TIMEOUT_MS/)
  })

  it('not certain, so accepted: only idleTimeoutMs given below the 5 s staleAfterMs default (connect per call, short idle), or only staleAfterMs', () => {
    expect(resolveOptions({ idleTimeoutMs: 1 })).toMatchObject({ idleTimeoutMs: 1, staleAfterMs: 5_000 })
    expect(resolveOptions({ idleTimeoutMs: 300 })).toMatchObject({ idleTimeoutMs: 300 })
    expect(resolveOptions({ staleAfterMs: 120_000 })).toMatchObject({ staleAfterMs: 120_000, idleTimeoutMs: 60_000 })
    expect(resolveOptions({ staleAfterMs: 999, idleTimeoutMs: 1_000 })).toMatchObject({ staleAfterMs: 999 })
  })
})

describe('pooled and serverIdleClose', () => {
  it('take booleans (pooled also undefined: detect), from code or the environment; anything else names the option', () => {
    expect(resolveOptions({})).toMatchObject({ pooled: undefined, serverIdleClose: true })
    expect(resolveOptions({ pooled: true, serverIdleClose: false })).toMatchObject({ pooled: true, serverIdleClose: false })
    expect(() => resolveOptions({ pooled: 'yes' as never })).toThrow(/Invalid option "pooled"/)
    expect(() => resolveOptions({ serverIdleClose: 1 as never })).toThrow(/Invalid option "serverIdleClose"/)
    expect(optionsFromEnv({ WARMCONN_POOLED: 'true', WARMCONN_SERVER_IDLE_CLOSE: 'false' })).toEqual({ pooled: true, serverIdleClose: false })
    expect(() => optionsFromEnv({ WARMCONN_POOLED: 'maybe' })).toThrow(/WARMCONN_POOLED.*expected true or false/)
  })
})

describe('optionsFromEnv', () => {
  it('reads the WARMCONN_*_MS overrides', () => {
    expect(optionsFromEnv({ WARMCONN_STALE_AFTER_MS: '1500', WARMCONN_IDLE_TIMEOUT_MS: '0', OTHER: 'x' })).toEqual({
      staleAfterMs: 1500,
      idleTimeoutMs: 0,
    })
  })

  it('names the variable when a value is not a whole number of milliseconds', () => {
    for (const bad of ['10s', '-5', '1.5', 'abc']) {
      expect(optionError(() => optionsFromEnv({ WARMCONN_PING_TIMEOUT_MS: bad })).option).toBe('WARMCONN_PING_TIMEOUT_MS')
    }
  })
})

describe('optionsFromEnv: every WARMCONN_* variable is known, or refused by name', () => {
  it.each([
    ['WARMCONN_STALEAFTER_MS', 'WARMCONN_STALE_AFTER_MS'],
    ['WARMCONN_IDLE_TIMEOUT', 'WARMCONN_IDLE_TIMEOUT_MS'],
    ['WARMCONN_PINGTIMEOUT_MS', 'WARMCONN_PING_TIMEOUT_MS'],
    ['WARMCONN_MAX_CONNECTION', 'WARMCONN_MAX_CONNECTIONS'],
    ['warmconn_call_timeout_ms', undefined],
  ])('%s: an InvalidOptionError naming it and the nearest known name %s', (name, nearest) => {
    if (nearest === undefined) {
      // Environment variables are case-sensitive; the prefix is upper case, so this one is not ours.
      expect(optionsFromEnv({ [name]: '1' })).toEqual({})
      return
    }
    const err = optionError(() => optionsFromEnv({ [name]: '30000' }))
    expect(err.option).toBe(name)
    expect(err.message).toContain(`not a warmconn variable; did you mean ${nearest}`)
    expect(err.message).not.toContain('30000')
  })

  it('a misspelt name that only lacks _MS says durations are in milliseconds', () => {
    expect(optionError(() => optionsFromEnv({ WARMCONN_IDLE_TIMEOUT: '30000' })).message).toMatch(
      /did you mean WARMCONN_IDLE_TIMEOUT_MS \(durations are in milliseconds, and their variables end in _MS\)\?/,
    )
  })

  it('never echoes the value of an unknown variable (it may be a secret set under the wrong name)', () => {
    const err = optionError(() => optionsFromEnv({ WARMCONN_PASSWORD: 'hunter2-canary' }))
    expect(err.option).toBe('WARMCONN_PASSWORD')
    expect(JSON.stringify({ message: err.message, stack: err.stack })).not.toContain('hunter2-canary')
  })

  it.each([
    ['5s', 'WARMCONN_PING_TIMEOUT_MS=5000'],
    ['500ms', 'WARMCONN_PING_TIMEOUT_MS=500'],
    ['2 min', 'WARMCONN_PING_TIMEOUT_MS=120000'],
    ['1.5s', 'WARMCONN_PING_TIMEOUT_MS=1500'],
    ['1h', 'WARMCONN_PING_TIMEOUT_MS=3600000'],
  ])('a duration with a unit (%s) says milliseconds are expected, and gives %s', (value, fix) => {
    const err = optionError(() => optionsFromEnv({ WARMCONN_PING_TIMEOUT_MS: value }))
    expect(err.option).toBe('WARMCONN_PING_TIMEOUT_MS')
    expect(err.message).toBe(`Invalid option "WARMCONN_PING_TIMEOUT_MS": expected a whole number of milliseconds, without a unit: ${value} is ${fix}`)
  })

  it('a count with a unit, or a fraction, is still a plain error naming the variable', () => {
    expect(optionError(() => optionsFromEnv({ WARMCONN_MAX_CONNECTIONS: '5s' })).message).toMatch(/"WARMCONN_MAX_CONNECTIONS": expected a whole number$/)
    expect(optionError(() => optionsFromEnv({ WARMCONN_IDLE_TIMEOUT_MS: '0.5' })).message).toMatch(/expected a whole number of milliseconds$/)
  })

  it('every holder option has its variable, named after the option', () => {
    expect(Object.values(envOptionNames).sort()).toEqual(Object.keys(defaultOptions).sort())
    for (const [name, option] of Object.entries(envOptionNames)) {
      expect(name).toBe(`WARMCONN_${option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`)
    }
    expect(optionsFromEnv({ WARMCONN_MAX_CONNECTIONS: '3', WARMCONN_CONNECT_BUDGET_MS: '9000', WARMCONN_APPLICATION_NAME: 'api' })).toEqual({
      maxConnections: 3,
      connectBudgetMs: 9_000,
      applicationName: 'api',
    })
  })

  it("the caller's own WARMCONN_* variables pass with { allow }; the example Worker's are known to the Durable Object", () => {
    expect(optionsFromEnv({ WARMCONN_MODE: 'per-request', WARMCONN_IDLE_TIMEOUT_MS: '100' }, { allow: ['WARMCONN_MODE'] })).toEqual({ idleTimeoutMs: 100 })
    const env = { WARMCONN_MODE: 'per-request', WARMCONN_SHARDS: '3', WARMCONN_LOCATION_HINT: 'weur' }
    expect(optionsFromEnv(env, { allow: workerEnvNames })).toEqual({})
    expect(optionError(() => optionsFromEnv(env)).option).toBe('WARMCONN_MODE')
    expect(optionError(() => optionsFromEnv({ WARMCONN_SHARD: '3' }, { allow: workerEnvNames })).message).toContain('did you mean WARMCONN_SHARDS')
  })

  it('bindings (objects, such as a Durable Object namespace bound as WARMCONN_DO) are not variables; JSON numbers are read', () => {
    expect(optionsFromEnv({ WARMCONN_DO: { idFromName() {} }, WARMCONN_IDLE_TIMEOUT_MS: 300 })).toEqual({ idleTimeoutMs: 300 })
  })
})
