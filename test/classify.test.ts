import { describe, expect, it } from 'vitest'
import { classifyCode } from '../src/classify.js'
import { nextTxState } from '../src/classify.js'
import { redact, safeCause } from '../src/errors.js'

describe('error classification decides retry and replay', () => {
  it.each([
    ['28P01', 'auth', true],
    ['3D000', 'config', true],
    ['53300', 'transient', true],
    ['57P03', 'transient', true],
    ['ECONNREFUSED', 'transient', true],
    ['57P01', 'connection', false],
    ['ECONNRESET', 'connection', false],
    ['CONNECTION_CLOSED', 'connection', false],
    ['23505', 'query', false],
    [undefined, 'query', false],
  ])('%s is %s (notSent %s)', (code, kind, notSent) => {
    expect(classifyCode(code)).toEqual({ kind, code, notSent })
  })
})

describe('transaction tracking from statements sent', () => {
  it.each([
    [false, 'BEGIN', true],
    [false, '  /* c */ start transaction isolation level serializable', true],
    [true, 'commit', false],
    [true, 'ROLLBACK', false],
    [true, 'rollback to savepoint a', true],
    [true, 'insert into t values (1)', true],
    [false, 'begin; insert into t values (1); commit', false],
    [false, 'select 1', false],
    [true, 'commit and chain', true],
  ])('open=%s then %j -> open=%s', (before, sql, after) => {
    expect(nextTxState(before, sql)).toBe(after)
  })
})

describe('redaction', () => {
  it('removes secrets and URL passwords', () => {
    const text = 'connect to postgres://app:s3cr%40t@db:5432/x failed; password s3cr@t'
    const out = redact(text, ['s3cr@t'])
    expect(out).not.toContain('s3cr')
    expect(out).toContain('postgres://app:***@db:5432/x')
  })

  it('replaces a cause that holds a secret, keeping its code', () => {
    const err = Object.assign(new Error('bad pw hunter2'), { code: '28P01' })
    const clean = safeCause(err, ['hunter2']) as Error & { code: string }
    expect(clean.message).not.toContain('hunter2')
    expect(clean.code).toBe('28P01')
    const harmless = new Error('nothing here')
    expect(safeCause(harmless, ['hunter2'])).toBe(harmless)
  })
})

describe('messages that carry the meaning when the code does not', () => {
  it('a pooler\'s 08P01 "authentication failed" is auth; workerd\'s refused connect is transient', async () => {
    const { classifyError } = await import('../src/classify.js')
    expect(classifyError(new Error('SASL authentication failed'), '08P01').kind).toBe('auth')
    expect(classifyError(new Error('protocol violation'), '08P01').kind).toBe('query')
    expect(classifyError(new Error('proxy request failed, cannot connect to the specified address'), undefined)).toEqual({ kind: 'transient', code: 'WORKERD_CONNECT_FAILED', notSent: true })
    // workerd's reset, seen when the server restarts behind a proxy: a lost connection (retried at connect).
    expect(classifyError(new Error('Network connection lost.'), undefined)).toEqual({ kind: 'connection', code: 'WORKERD_CONNECTION_LOST', notSent: false })
    expect(classifyError(new Error('select failed: Network connection lost. (user text)'), undefined).kind).toBe('query')
  })
})

describe('server-enforced idle close (server-idle.ts)', () => {
  it('the server ends the session at idleTimeoutMs plus the larger of 1 s and 10%', async () => {
    const { serverIdleTimeoutMs } = await import('../src/server-idle.js')
    expect(serverIdleTimeoutMs(500)).toBe(1_500)
    expect(serverIdleTimeoutMs(60_000)).toBe(66_000)
    // Never more than the larger of 1 s and 20% past it (the bound).
    for (const ms of [1, 300, 5_000, 60_000, 3_600_000]) expect(serverIdleTimeoutMs(ms) - ms).toBeLessThanOrEqual(Math.max(1_000, ms / 5))
  })

  it("the server's 57P05 goodbye is a closed connection", () => {
    expect(classifyCode('57P05')).toMatchObject({ kind: 'connection' })
  })

  it('sent only where safe: not when off, not to a pooler (said or by its host/port), not to a target that refused it', async () => {
    const { refusedIdleTimeout, sessionIdleTimeout } = await import('../src/server-idle.js')
    expect(sessionIdleTimeout(1_500, undefined, 'db.internal', 5432)).toBe(1_500)
    expect(sessionIdleTimeout(undefined, undefined, 'db.internal', 5432)).toBeUndefined()
    expect(sessionIdleTimeout(1_500, true, 'db.internal', 5432)).toBeUndefined()
    expect(sessionIdleTimeout(1_500, undefined, 'ep-cool-123-pooler.us-east-2.aws.neon.tech', 5432)).toBeUndefined()
    expect(sessionIdleTimeout(1_500, undefined, 'db.internal', 6432)).toBeUndefined()
    expect(sessionIdleTimeout(1_500, false, 'db.internal', 6432)).toBe(1_500) // pooled: false overrides the guess
    // PgBouncer's refusal is news once: remembered for the target, then no longer about us.
    const refusal = Object.assign(new Error('unsupported startup parameter: idle_session_timeout'), { code: '08P01' })
    expect(refusedIdleTimeout(new Error('password authentication failed'), 'pgb.internal', 5432)).toBe(false)
    expect(refusedIdleTimeout(refusal, 'pgb.internal', 5432)).toBe(true)
    expect(sessionIdleTimeout(1_500, undefined, 'pgb.internal', 5432)).toBeUndefined()
    expect(refusedIdleTimeout(refusal, 'pgb.internal', 5432)).toBe(false)
    // PostgreSQL before 14 does not know the setting.
    expect(refusedIdleTimeout(Object.assign(new Error('unrecognized configuration parameter "idle_session_timeout"'), { code: '42704' }), 'pg13.internal', 5432)).toBe(true)
  })
})
