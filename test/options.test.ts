import { describe, expect, it } from 'vitest'
import { InvalidOptionError, optionsFromEnv, resolveOptions, defaultOptions } from '../src/index.js'
import { warmPostgres } from '../src/drivers/postgres.js'

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
    expect(resolveOptions({ staleAfterMs: 0, idleTimeoutMs: 0 })).toMatchObject({ staleAfterMs: 0, idleTimeoutMs: 0 })
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
