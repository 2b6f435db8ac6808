/**
 * Lifecycle logic with an in-memory driver and fake clocks. These complement, never replace, the
 * tests against a real server in holder.test.ts: here the clock can jump as it does across a
 * Lambda freeze, and timers can be kept from firing.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Holder, ConnectError, AuthError, CallTimeoutError, ConnectionLostError, InvalidOptionError } from '../src/index.js'
import { fakeDriver } from './helpers/fake-driver.js'

beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }))
afterEach(() => vi.useRealTimers())

describe('holder lifecycle (fake driver, fake clock)', () => {
  it('a connection found past its idle deadline after a freeze is closed and replaced, never used', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver, { idleTimeoutMs: 1_000, staleAfterMs: 500 })
    await holder.run((c) => c)
    // A frozen process: the clock jumps but the idle timer never got to fire.
    vi.setSystemTime(Date.now() + 5_000)
    const used = await holder.run((c) => c)
    expect(used.id).toBe(2)
    expect(conns[0]!.closed).toBe(true)
    expect(conns[0]!.pings).toBe(0)
    expect(holder.stats()).toMatchObject({ closedIdle: 1, opened: 2 })
  })

  it('the idle timer never closes a connection that is in use', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver, { idleTimeoutMs: 1_000 })
    await holder.run((c) => c)
    let release!: () => void
    const busy = holder.run((c) => new Promise<void>((r) => (release = r)).then(() => c))
    await vi.advanceTimersByTimeAsync(5_000)
    expect(conns[0]!.closed).toBe(false)
    release()
    await busy
    await vi.advanceTimersByTimeAsync(1_000)
    expect(conns[0]!.closed).toBe(true)
  })

  it('a hanging ping is abandoned after pingTimeoutMs and the call goes on with a new connection', async () => {
    const { driver, conns } = fakeDriver({ pingHangs: true })
    const holder = new Holder(driver, { staleAfterMs: 100, pingTimeoutMs: 300 })
    await holder.run((c) => c)
    vi.setSystemTime(Date.now() + 200)
    const next = holder.run((c) => c)
    await vi.advanceTimersByTimeAsync(300)
    expect((await next).id).toBe(2)
    expect(conns[0]!.destroyed).toBe(true)
    expect(holder.stats()).toMatchObject({ revalidateFailures: 1, reconnected: 1 })
  })

  it('a call that never settles is cut at callTimeoutMs: typed error, connection destroyed, not replayed unless idempotent', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver, { callTimeoutMs: 1_000 })
    const events: unknown[] = []
    holder.on('callTimeout', (e) => events.push(e))
    let calls = 0
    const stuck = holder.run(() => (calls++, new Promise<never>(() => {}))).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(999)
    expect(conns[0]!.destroyed).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    const err = await stuck
    expect(err).toBeInstanceOf(CallTimeoutError)
    expect(err).toBeInstanceOf(ConnectionLostError) // callers that handle a lost connection handle this too
    expect(err).toMatchObject({ code: 'WARMCONN_CALL_TIMEOUT', timeoutMs: 1_000, outcomeUnknown: true })
    expect(calls).toBe(1)
    expect(conns[0]!.destroyed).toBe(true)
    expect(events).toEqual([{ connectionId: 1, timeoutMs: 1_000 }])
    expect(holder.stats()).toMatchObject({ callTimeouts: 1, replays: 0, failures: 1, open: 0 })
    expect((await holder.run((c) => c)).id).toBe(2)
  })

  it('an idempotent call cut at its deadline is replayed once on a new connection, with a deadline of its own', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver, { callTimeoutMs: 1_000 })
    // Hangs on the first connection only (a reset the driver never reported), answers on the next.
    const answered = holder.run((c) => (c.id === 1 ? new Promise<never>(() => {}) : c.id), { idempotent: true })
    await vi.advanceTimersByTimeAsync(1_000)
    expect(await answered).toBe(2)
    expect(conns[0]!.destroyed).toBe(true)
    expect(holder.stats()).toMatchObject({ callTimeouts: 1, replays: 1, failures: 0 })
    // Twice stuck: one replay only, then the typed error.
    let calls = 0
    const twice = holder.run(() => (calls++, new Promise<never>(() => {})), { idempotent: true }).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(await twice).toBeInstanceOf(CallTimeoutError)
    expect(calls).toBe(2)
    expect(holder.stats()).toMatchObject({ callTimeouts: 3, replays: 2, failures: 1 })
  })

  it('a caller queued behind a stuck call gets a new connection when the stuck one is cut', async () => {
    const { driver } = fakeDriver()
    const holder = new Holder(driver, { callTimeoutMs: 1_000, acquireTimeoutMs: 5_000 })
    const stuck = holder.run(() => new Promise<never>(() => {})).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(0)
    const queued = holder.run((c) => c.id)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(await stuck).toBeInstanceOf(CallTimeoutError)
    expect(await queued).toBe(2)
  })

  it('run({ timeoutMs }) overrides callTimeoutMs for one call; a bad value is refused before any connection is taken', async () => {
    const { driver, attempts } = fakeDriver()
    const holder = new Holder(driver, { callTimeoutMs: 60_000 })
    const stuck = holder.run(() => new Promise<never>(() => {}), { timeoutMs: 50 }).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(50)
    expect(await stuck).toMatchObject({ code: 'WARMCONN_CALL_TIMEOUT', timeoutMs: 50 })
    for (const bad of [0, -1, Number.NaN, '100', Infinity]) {
      const err = await holder.run((c) => c, { timeoutMs: bad as number }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidOptionError)
      expect(err).toMatchObject({ option: 'timeoutMs' })
    }
    expect(attempts()).toBe(1)
  })

  it('a warm call arms no timer of its own: one holder timer serves every deadline, each call cut at its own', async () => {
    const { driver } = fakeDriver()
    const holder = new Holder(driver, { callTimeoutMs: 1_000, idleTimeoutMs: 100_000, maxConnections: 3 })
    await holder.run((c) => c)
    const pending = vi.getTimerCount()
    for (let i = 0; i < 5; i++) await holder.run((c) => c)
    expect(vi.getTimerCount()).toBe(pending)
    // Three stuck calls started at t, t+300 (with its own 200 ms bound) and t+600.
    const cutAt: Record<string, number> = {}
    const t0 = Date.now()
    const stuck = (label: string, options = {}) =>
      holder.run(() => new Promise<never>(() => {}), options).catch(() => void (cutAt[label] = Date.now() - t0))
    const a = stuck('a')
    await vi.advanceTimersByTimeAsync(300)
    const b = stuck('b', { timeoutMs: 200 })
    await vi.advanceTimersByTimeAsync(300)
    const c = stuck('c')
    await vi.advanceTimersByTimeAsync(2_000)
    await Promise.all([a, b, c])
    expect(cutAt).toEqual({ a: 1_000, b: 500, c: 1_600 })
    expect(holder.stats()).toMatchObject({ callTimeouts: 3, failures: 3 })
  })

  it('lifetime is shortened by jitter within maxLifetimeJitterMs', async () => {
    const ages: number[] = []
    for (let i = 0; i < 20; i++) {
      const { driver } = fakeDriver()
      const holder = new Holder(driver, { maxLifetimeMs: 10_000, maxLifetimeJitterMs: 4_000, idleTimeoutMs: 60_000, staleAfterMs: 30_000 })
      holder.on('closeLifetime', (e) => ages.push(e.ageMs))
      await holder.run((c) => c)
      let t = 0
      while (holder.stats().closedLifetime === 0 && t < 12_000) {
        vi.setSystemTime(Date.now() + 250)
        t += 250
        await holder.run((c) => c)
      }
    }
    expect(ages).toHaveLength(20)
    expect(Math.min(...ages)).toBeGreaterThanOrEqual(6_000)
    expect(Math.max(...ages)).toBeLessThanOrEqual(10_250)
    expect(new Set(ages).size).toBeGreaterThan(1)
  })

  it('transient connect failures are retried with bounded backoff; auth failures are not', async () => {
    const flaky = fakeDriver({ failures: ['53300', 'ECONNREFUSED'] })
    const holder = new Holder(flaky.driver, { connectBackoffBaseMs: 100 })
    const ok = holder.run((c) => c)
    await vi.advanceTimersByTimeAsync(1_000)
    expect((await ok).id).toBe(1)
    expect(holder.stats().connectRetries).toBe(2)

    const denied = fakeDriver({ failures: ['28P01'] })
    await expect(new Holder(denied.driver).run((c) => c)).rejects.toBeInstanceOf(AuthError)
    expect(denied.attempts()).toBe(1)

    const down = fakeDriver({ failures: Array(50).fill('ECONNREFUSED') })
    const h = new Holder(down.driver, { connectRetries: 100, connectBudgetMs: 2_000, connectBackoffBaseMs: 100, connectBackoffMaxMs: 400 })
    const failed = h.run((c) => c).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(3_000)
    const err = await failed
    expect(err).toBeInstanceOf(ConnectError)
    expect((err as ConnectError).attempts).toBeLessThan(50)
  })

  it('concurrent first callers share one connect (single-flight)', async () => {
    const { driver, attempts } = fakeDriver()
    const holder = new Holder(driver, { maxConnections: 1 })
    const all = await Promise.all(Array.from({ length: 50 }, () => holder.run((c) => c.id)))
    expect(new Set(all)).toEqual(new Set([1]))
    expect(attempts()).toBe(1)
  })
})

describe('timers of the holder itself', () => {
  it('once the idle close has run, no timer of the holder is left pending (a Durable Object can be evicted)', async () => {
    const { driver } = fakeDriver()
    const holder = new Holder(driver, { idleTimeoutMs: 1_000, callTimeoutMs: 5_000 })
    const before = vi.getTimerCount()
    await holder.run((c) => c)
    expect(vi.getTimerCount()).toBeGreaterThan(before) // the idle timer, and the call timer armed by the call
    await vi.advanceTimersByTimeAsync(1_000)
    expect(holder.stats()).toMatchObject({ closedIdle: 1, open: 0 })
    expect(vi.getTimerCount()).toBe(before)
  })
})
