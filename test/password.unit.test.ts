/**
 * The password cache (expiry on the clock, single flight, invalidation), the bounded secret list
 * and the password source's retry-once rule, with fake clocks and no server. The behaviour
 * against real PostgreSQL is proven in credentials.test.ts and lambda.credentials.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { InvalidOptionError, cachedPassword, redact } from '../src/index.js'
import { PasswordSource } from '../src/password.js'
import { secretList } from '../src/secret-list.js'
import { rdsIamPassword } from '../src/aws/index.js'

beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }))
afterEach(() => vi.useRealTimers())

/** A fetch that counts its calls and answers when told to (or at once). */
function fetcher(auto = true) {
  const pending: Array<(v: string) => void> = []
  let calls = 0
  const fetch = (): Promise<string> | string => {
    calls++
    if (auto) return `token-${calls}`
    return new Promise<string>((resolve) => pending.push(resolve))
  }
  return { fetch, calls: () => calls, answer: (v: string) => pending.shift()!(v) }
}

describe('cachedPassword', () => {
  it('reuses a password until refreshBeforeExpiryMs before it expires, then fetches a new one', async () => {
    const f = fetcher()
    const password = cachedPassword(f.fetch, { lifetimeMs: 900_000, refreshBeforeExpiryMs: 60_000 })
    expect(await password()).toBe('token-1')
    vi.setSystemTime(Date.now() + 839_999)
    expect(await password()).toBe('token-1')
    vi.setSystemTime(Date.now() + 1)
    expect(await password()).toBe('token-2')
    expect(f.calls()).toBe(2)
  })

  it('a frozen process that wakes past the expiry never gets the old password (timestamps, not timers)', async () => {
    const f = fetcher()
    const password = cachedPassword(f.fetch, { lifetimeMs: 900_000 })
    await password()
    vi.setSystemTime(Date.now() + 3_600_000) // no timer ran meanwhile
    expect(await password()).toBe('token-2')
  })

  it('single flight: a burst of concurrent callers shares one fetch', async () => {
    const f = fetcher(false)
    const password = cachedPassword(f.fetch, { lifetimeMs: 900_000 })
    const burst = Array.from({ length: 50 }, () => password())
    await Promise.resolve()
    expect(f.calls()).toBe(1)
    f.answer('signed-once')
    expect(new Set(await Promise.all(burst))).toEqual(new Set(['signed-once']))
    expect(await password()).toBe('signed-once')
    expect(f.calls()).toBe(1)
  })

  it('a failed fetch is not cached: every waiter gets the failure, the next call fetches again', async () => {
    let calls = 0
    const password = cachedPassword(async () => {
      calls++
      if (calls === 1) throw new Error('no credentials yet')
      return 'late'
    }, { lifetimeMs: 900_000 })
    const [a, b] = await Promise.allSettled([password(), password()])
    expect(a).toMatchObject({ status: 'rejected' })
    expect(b).toMatchObject({ status: 'rejected' })
    expect(await password()).toBe('late')
    expect(calls).toBe(2)
  })

  it('invalidate(refused) drops the cached password only if it is that one', async () => {
    const f = fetcher()
    const password = cachedPassword(f.fetch, { lifetimeMs: 900_000 })
    expect(await password()).toBe('token-1')
    password.invalidate!('some-older-token')
    expect(await password()).toBe('token-1')
    password.invalidate!('token-1')
    expect(await password()).toBe('token-2')
    expect(f.calls()).toBe(2)
  })

  it('names what it wraps, so two caches of different fetches never share a holder (holders are keyed by function text)', () => {
    const a = cachedPassword(() => 'from-a', { lifetimeMs: 1_000 })
    const b = cachedPassword(() => 'from-b', { lifetimeMs: 1_000 })
    expect(String(a)).not.toBe(String(b))
    const rds = (username: string) => rdsIamPassword({ hostname: 'h', port: 5432, username, credentials: { accessKeyId: 'AKID', secretAccessKey: 'never-in-a-key' } })
    expect(String(rds('alice'))).not.toBe(String(rds('bob')))
    expect(String(rds('alice'))).not.toContain('never-in-a-key')
  })

  it('checks its options, naming the one at fault', () => {
    expect(() => cachedPassword('x' as never, { lifetimeMs: 1 })).toThrow(InvalidOptionError)
    expect(() => cachedPassword(() => 'x', { lifetimeMs: 0 })).toThrow(/lifetimeMs/)
    expect(() => cachedPassword(() => 'x', { lifetimeMs: 1000, refreshBeforeExpiryMs: 1000 })).toThrow(/refreshBeforeExpiryMs.*below lifetimeMs/)
    expect(() => cachedPassword(() => 'x', { lifetimeMs: 1000, ttl: 5 } as never)).toThrow(/"ttl".*unknown option/)
  })
})

describe('rdsIamPassword, with the real signer and a fake clock', () => {
  it('signs once per token lifetime: 14 minutes on one token, a new one at 14 (15 minus the 60 s margin)', async () => {
    let signings = 0
    const password = rdsIamPassword({
      hostname: 'db.example.com', port: 5432, username: 'app', region: 'eu-west-1',
      credentials: async () => (signings++, { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'secret' }),
    })
    const first = await password()
    vi.setSystemTime(Date.now() + 839_000)
    expect(await password()).toBe(first)
    vi.setSystemTime(Date.now() + 1_000)
    const second = await password()
    expect(second).not.toBe(first) // signed at a later X-Amz-Date
    expect(signings).toBe(2)
  })
})

describe('secretList', () => {
  it('keeps the fixed secrets for good and the newest passwords up to its capacity, with their printable forms', () => {
    const list = secretList(['static-pw'], 3)
    for (const p of ['p/1', 'p/2', 'p/2', 'p/3', 'p/4']) list.remember(p)
    expect(list.all).toContain('static-pw')
    expect(list.all).not.toContain('p/1') // the oldest, past capacity
    for (const p of ['p/2', 'p/3', 'p/4']) {
      expect(list.all).toContain(p)
      expect(list.all).toContain(encodeURIComponent(p))
    }
    for (let i = 0; i < 1000; i++) list.remember(`rotated-${i}`)
    expect(list.all.length).toBeLessThanOrEqual(1 + 3 * 3)
  })

  it('an AWS token is redacted whole, and its signature and session token on their own', () => {
    const token = 'db:5432/?Action=connect&DBUser=app&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEA%2Fsession%2Btoken&X-Amz-Signature=0123456789abcdef0123456789abcdef&X-Amz-SignedHeaders=host'
    const list = secretList([])
    list.remember(token)
    expect(redact(`connect with ${token} failed`, list.all)).toBe('connect with *** failed')
    expect(redact('sig=0123456789abcdef0123456789abcdef', list.all)).toBe('sig=***')
    expect(redact('tok=IQoJb3JpZ2luX2VjEA/session+token', list.all)).toBe('tok=***')
  })
})

describe('PasswordSource: a refused password is fetched again once', () => {
  const auth = { kind: 'auth' as const, code: '28P01', notSent: true }
  it('first refusal: retryNow and the cache told; a refusal of the fresh one is final; every result in the secrets', async () => {
    const refused: string[] = []
    let n = 0
    const fn = Object.assign(() => `pw-${++n}`, { invalidate: (p: string) => void refused.push(p) })
    const secrets = secretList([])
    const source = new PasswordSource(fn, 'postgres.password', secrets)
    const first = await source.take(1_000)
    const err1 = new Error('password authentication failed')
    source.bind(err1, first)
    expect(source.classify(err1, undefined, auth)).toMatchObject({ kind: 'auth', retryNow: true })
    // Asked twice about the same failure: the same answer, no second debt.
    expect(source.classify(err1, undefined, auth)).toMatchObject({ retryNow: true })
    const second = await source.take(1_000)
    expect(second.retry).toBe(true)
    const conn = {}
    source.bind(conn, second)
    const final = source.classify(new Error('again'), conn, auth)
    expect(final.retryNow).toBeUndefined()
    expect(final.hint).toMatch(/was refused too/)
    expect(refused).toEqual(['pw-1', 'pw-2'])
    expect(secrets.all).toEqual(expect.arrayContaining(['pw-1', 'pw-2']))
    // A new connect later starts afresh: its first refusal is retried again.
    const third = await source.take(1_000)
    expect(third.retry).toBe(false)
  })

  it('an error that is not an auth failure, or not from a connect with a password from the function, is left alone', async () => {
    const source = new PasswordSource(() => 'pw', 'pg.password', secretList([]))
    const grant = await source.take(1_000)
    const err = new Error('x')
    source.bind(err, grant)
    const transient = { kind: 'transient' as const, code: '53300', notSent: true }
    expect(source.classify(err, undefined, transient)).toBe(transient)
    expect(source.classify(new Error('other'), undefined, auth)).toBe(auth)
  })
})
