/**
 * The lease primitive (checkout until release, as pg.Pool's connect() needs) and the pipelined
 * stale check, on the in-memory driver with fake clocks. The same paths against a real server
 * are in the pg pool and conformance tests.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Holder, AuthError, ConnectError, ConnectionLostError, InvalidOptionError, type HolderEvents } from '../src/index.js'
import { fakeDriver } from './helpers/fake-driver.js'

beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }))
afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('holder.lease (fake driver, fake clock)', () => {
  it('a lease holds its connection exclusively until released; the next caller reuses it', async () => {
    const { driver } = fakeDriver()
    const holder = new Holder(driver, { maxConnections: 1 })
    const lease = await holder.lease()
    let second: number | undefined
    const waiting = holder.run((c) => (second = c.id))
    await vi.advanceTimersByTimeAsync(100)
    expect(second).toBeUndefined()
    expect(holder.stats()).toMatchObject({ inUse: 1, waiting: 1 })
    await lease.release()
    await waiting
    expect(second).toBe(lease.client.id)
    expect(holder.stats()).toMatchObject({ opened: 1, inUse: 0 })
  })

  it('release() rolls back a transaction left open before the connection is reused, never commits', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver)
    const lease = await holder.lease()
    lease.client.inTransaction = true
    await lease.release()
    expect(conns[0]!.rollbacks).toBe(1)
    expect(holder.stats()).toMatchObject({ sessionResets: 1, open: 1 })
    // A second release is a no-op, not a second give-back.
    await lease.release()
    expect(holder.stats().sessionResets).toBe(1)
  })

  it('destroy() drops the connection (pg release(err)); the next caller gets a new one', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver)
    const lease = await holder.lease()
    lease.destroy()
    lease.destroy()
    await lease.release()
    expect(conns[0]!.destroyed).toBe(true)
    expect((await holder.run((c) => c.id))).toBe(2)
    expect(holder.stats()).toMatchObject({ closedBroken: 1, reconnected: 1 })
  })

  it('a lease held past its deadline is cut off: connection destroyed, callTimeout counted, release a no-op', async () => {
    const { driver, conns } = fakeDriver()
    const holder = new Holder(driver, { callTimeoutMs: 10_000 })
    const timeouts: unknown[] = []
    holder.on('callTimeout', (e) => timeouts.push(e))
    const lease = await holder.lease({ timeoutMs: 1_000 })
    await vi.advanceTimersByTimeAsync(999)
    expect(conns[0]!.destroyed).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(conns[0]!.destroyed).toBe(true)
    expect(timeouts).toEqual([{ connectionId: 1, timeoutMs: 1_000 }])
    await lease.release()
    expect(holder.stats()).toMatchObject({ callTimeouts: 1, open: 0, sessionResets: 0 })
  })

  it('a bad lease timeoutMs is refused before any connect', async () => {
    const { driver, attempts } = fakeDriver()
    const holder = new Holder(driver)
    await expect(holder.lease({ timeoutMs: -1 })).rejects.toBeInstanceOf(InvalidOptionError)
    expect(attempts()).toBe(0)
  })

  it('the release event fires once per call and lease, saying whether the connection was kept', async () => {
    const { driver } = fakeDriver()
    const holder = new Holder(driver)
    const seen: Array<HolderEvents['release']> = []
    holder.on('release', (e) => seen.push(e))
    await holder.run((c) => c)
    await holder.run(() => Promise.reject(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).catch(() => {})
    const lease = await holder.lease()
    await lease.release()
    const other = await holder.lease()
    other.destroy()
    expect(seen).toEqual([
      { connectionId: 1, kept: true },
      { connectionId: 1, kept: false },
      { connectionId: 2, kept: true },
      { connectionId: 2, kept: false },
    ])
  })
})

describe('stale idempotent calls: pipelined probe instead of ping-then-send', () => {
  it('an idempotent call on a stale connection is handed out with the probe in flight, no ping', async () => {
    const { driver, conns } = fakeDriver({ probe: 'answer' })
    const holder = new Holder(driver, { staleAfterMs: 100 })
    await holder.run((c) => c)
    vi.setSystemTime(Date.now() + 200)
    let probesWhenCalled = -1
    await holder.run((c) => void (probesWhenCalled = c.probes), { idempotent: true })
    expect(probesWhenCalled).toBe(1) // sent before fn ran, so fn's statement follows it in the same flight
    expect(conns[0]!.pings).toBe(0)
    expect(holder.stats()).toMatchObject({ revalidated: 1, revalidateFailures: 0, opened: 1 })
  })

  it('a call not marked idempotent still pings first and is sent only after the answer', async () => {
    const { driver, conns } = fakeDriver({ probe: 'answer' })
    const holder = new Holder(driver, { staleAfterMs: 100 })
    await holder.run((c) => c)
    vi.setSystemTime(Date.now() + 200)
    let pingsWhenCalled = -1
    await holder.run((c) => void (pingsWhenCalled = c.pings))
    expect(pingsWhenCalled).toBe(1)
    expect(conns[0]!.probes).toBe(0)
  })

  it('an unanswered probe destroys the connection at pingTimeoutMs and the call is replayed once on a new one', async () => {
    const { driver, conns } = fakeDriver({ probe: 'hang' })
    const holder = new Holder(driver, { staleAfterMs: 100, pingTimeoutMs: 500 })
    await holder.run((c) => c)
    vi.setSystemTime(Date.now() + 200)
    const ids: number[] = []
    // fn waits on its connection like a statement would, failing once that connection is destroyed.
    const answered = holder.run(async (c) => {
      ids.push(c.id)
      if (c.id === 1) {
        await vi.waitUntil(() => c.destroyed, { timeout: 10_000, interval: 10 }).catch(() => {})
        throw Object.assign(new Error('destroyed'), { code: 'CONNECTION_DESTROYED' })
      }
      return c.id
    }, { idempotent: true })
    await vi.advanceTimersByTimeAsync(500)
    expect(await answered).toBe(2)
    expect(ids).toEqual([1, 2])
    expect(conns[0]!.destroyed).toBe(true)
    expect(holder.stats()).toMatchObject({ revalidateFailures: 1, replays: 1, opened: 2, failures: 0 })
  })

  it('an unanswered probe under a call whose own error looks like an SQL error still counts as a lost connection', async () => {
    const { driver } = fakeDriver({ probe: 'hang' })
    const holder = new Holder(driver, { staleAfterMs: 100, pingTimeoutMs: 500 })
    await holder.run((c) => c)
    vi.setSystemTime(Date.now() + 200)
    let calls = 0
    const result = holder.run(async (c) => {
      calls++
      if (c.id === 1) {
        await vi.waitUntil(() => c.destroyed, { timeout: 10_000, interval: 10 }).catch(() => {})
        throw new Error('an ORM wrapped the driver error') // no code: reads as a query error
      }
      return 'ok'
    }, { idempotent: true })
    await vi.advanceTimersByTimeAsync(500)
    expect(await result).toBe('ok')
    expect(calls).toBe(2)
  })

  it('replayed at most once: a second loss fails typed', async () => {
    const { driver } = fakeDriver({ probe: 'hang' })
    const holder = new Holder(driver, { staleAfterMs: 100, pingTimeoutMs: 500 })
    await holder.run((c) => c)
    vi.setSystemTime(Date.now() + 200)
    const failed = holder.run(async (c) => {
      if (c.id === 1) await vi.waitUntil(() => c.destroyed, { timeout: 10_000, interval: 10 }).catch(() => {})
      throw Object.assign(new Error('reset'), { code: 'ECONNRESET' })
    }, { idempotent: true }).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(500)
    expect(await failed).toBeInstanceOf(ConnectionLostError)
    expect(holder.stats()).toMatchObject({ replays: 1, failures: 1 })
  })
})

describe('lazy connects: the first statement carries the handshake', () => {
  it('a run may get a lazy connection; it counts as opened once the handshake succeeds', async () => {
    const { driver, conns } = fakeDriver({ lazy: {} })
    const holder = new Holder(driver)
    const connected: Array<HolderEvents['connectSuccess']> = []
    holder.on('connectSuccess', (e) => connected.push(e))
    const seenBefore = await holder.run(async (c) => {
      const before = holder.stats().opened
      await c.send()
      return before
    })
    expect(conns[0]!.lazyAllowed).toBe(true)
    expect(seenBefore).toBe(0)
    expect(connected).toEqual([expect.objectContaining({ connectionId: 1, backendPid: 1001, attempts: 1, replaced: false })])
    expect(holder.stats()).toMatchObject({ opened: 1, failures: 0 })
  })

  it('a transient handshake failure is a failed connect: backoff, fn runs again on a new connection, not its one replay', async () => {
    const { driver, conns } = fakeDriver({ lazy: { failures: ['53300', 'ECONNREFUSED'] } })
    const holder = new Holder(driver, { connectBackoffBaseMs: 100 })
    let calls = 0
    const done = holder.run(async (c) => {
      calls++
      await c.send()
      return c.id
    })
    await vi.advanceTimersByTimeAsync(1_000)
    expect(await done).toBe(3)
    expect(calls).toBe(3)
    expect(conns[0]!.destroyed && conns[1]!.destroyed).toBe(true)
    expect(holder.stats()).toMatchObject({ connectRetries: 2, opened: 1, replays: 0, failures: 0, open: 1 })
  })

  it('a bad password in the handshake: AuthError, never retried, fn not run again', async () => {
    const { driver } = fakeDriver({ lazy: { failures: ['28P01'] } })
    const holder = new Holder(driver)
    let calls = 0
    const err = await holder.run(async (c) => (calls++, c.send())).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AuthError)
    expect(calls).toBe(1)
    expect(holder.stats()).toMatchObject({ connectRetries: 0, connectFailures: 1, failures: 1, open: 0 })
  })

  it('out of budget: a typed ConnectError naming the budget', async () => {
    // The budget, not the retry count, must be what runs out. With the default 10 retries and
    // random jitter that was a coin toss about 1 run in 20 (ten short delays ran out of retries
    // inside the 1 s budget), so the jitter is fixed at its ceiling (delays 100, 200, 200... ms:
    // 6 retries fit in 1 s) and the retries are far more than the budget can use.
    vi.spyOn(Math, 'random').mockReturnValue(0.999)
    const { driver } = fakeDriver({ lazy: { failures: Array(100).fill('ECONNREFUSED') } })
    const holder = new Holder(driver, { connectBudgetMs: 1_000, connectBackoffBaseMs: 100, connectBackoffMaxMs: 200, connectRetries: 50 })
    const failed = holder.run(async (c) => c.send()).catch((e: unknown) => e)
    await vi.advanceTimersByTimeAsync(2_000)
    const err = await failed
    expect(err).toBeInstanceOf(ConnectError)
    expect((err as ConnectError).message).toMatch(/connectBudgetMs \(1000 ms\)/)
    expect(holder.stats().connectRetries).toBeLessThan(10)
  })

  it('a lease never gets a lazy connection: it is connected before it is handed out', async () => {
    const { driver, conns } = fakeDriver({ lazy: {} })
    const holder = new Holder(driver)
    const lease = await holder.lease()
    expect(conns[0]!.lazyAllowed).toBe(false)
    expect(holder.stats().opened).toBe(1)
    await lease.release()
  })

  it('a connection whose call sent nothing stays unconnected: the next call connects it, no ping, even when stale', async () => {
    const { driver, conns } = fakeDriver({ lazy: {} })
    const holder = new Holder(driver, { staleAfterMs: 100 })
    await holder.run(() => 'no statement')
    vi.setSystemTime(Date.now() + 1_000)
    await holder.run((c) => c.send())
    expect(conns).toHaveLength(1)
    expect(conns[0]!.pings).toBe(0)
    expect(holder.stats()).toMatchObject({ opened: 1, revalidated: 0 })
  })
})
