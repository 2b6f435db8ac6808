/**
 * warmconn/otel without a database (the in-memory fake driver), with the real SDK: nothing is
 * measured unless instrumented (the holder reads no extra clock), instrumenting twice counts once, two
 * holders report as two pools, leases are measured like calls.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Holder, InvalidOptionError } from '../src/index.js'
import { instrument, poolNameOf } from '../src/otel/index.js'
import { fakeDriver } from './helpers/fake-driver.js'
import { pointOf, testMeter } from './helpers/otel.js'

afterEach(() => {
  vi.restoreAllMocks()
})

const POOL = 'db.client.connection.pool.name'
const noop = async () => 1

describe('warmconn/otel, in memory', () => {
  it('no cost when unused: warm calls read no extra clock (performance.now); instrumented they do; after stop() none again', async () => {
    const holder = new Holder(fakeDriver().driver)
    const meter = testMeter()
    await holder.run(noop) // the connect, outside the counted calls
    const now = vi.spyOn(performance, 'now')
    for (let i = 0; i < 100; i++) await holder.run(noop)
    expect(now).toHaveBeenCalledTimes(0)
    const stop = instrument(holder, { meterProvider: meter.provider })
    for (let i = 0; i < 100; i++) await holder.run(noop)
    // Per call: the holder's two (asked, got) and warmconn/otel's two (borrowed, given back).
    expect(now).toHaveBeenCalledTimes(400)
    stop()
    now.mockClear()
    for (let i = 0; i < 100; i++) await holder.run(noop)
    expect(now).toHaveBeenCalledTimes(0)
    await holder.close()
    await meter.shutdown()
  })

  it('instrumenting the same holder twice for one provider counts each call once and returns the same stop', async () => {
    const holder = new Holder(fakeDriver().driver)
    const meter = testMeter()
    const stop = instrument(holder, { meterProvider: meter.provider })
    expect(instrument(holder, { meterProvider: meter.provider })).toBe(stop)
    expect(() => instrument(holder, { meterProvider: meter.provider, poolName: 'other' })).toThrow(InvalidOptionError)
    for (let i = 0; i < 5; i++) await holder.run(noop)
    const r = await meter.read()
    expect(pointOf(r, 'db.client.connection.wait_time', { [POOL]: 'localhost/db' })?.count).toBe(5)
    expect(pointOf(r, 'db.client.connection.use_time', { [POOL]: 'localhost/db' })?.count).toBe(5)
    expect(pointOf(r, 'warmconn.calls', { [POOL]: 'localhost/db' })?.value).toBe(5)
    stop()
    // Stopped: a new registration, under another name, is allowed.
    const again = instrument(holder, { meterProvider: meter.provider, poolName: 'other' })
    expect(again).not.toBe(stop)
    again()
    await holder.close()
    await meter.shutdown()
  })

  it('two holders on one provider: two pools, each with its own points', async () => {
    const a = new Holder(fakeDriver().driver, { maxConnections: 3 })
    const b = new Holder(fakeDriver().driver, { maxConnections: 2 })
    const meter = testMeter()
    const stops = [instrument(a, { meterProvider: meter.provider, poolName: 'a' }), instrument(b, { meterProvider: meter.provider, poolName: 'b' })]
    await a.run(noop)
    await a.run(noop)
    await b.run(noop)
    const r = await meter.read()
    expect(pointOf(r, 'db.client.connection.max', { [POOL]: 'a' })?.value).toBe(3)
    expect(pointOf(r, 'db.client.connection.max', { [POOL]: 'b' })?.value).toBe(2)
    expect(pointOf(r, 'db.client.connection.use_time', { [POOL]: 'a' })?.count).toBe(2)
    expect(pointOf(r, 'db.client.connection.use_time', { [POOL]: 'b' })?.count).toBe(1)
    expect(pointOf(r, 'db.client.connection.create_time', { [POOL]: 'a' })?.count).toBe(1)
    for (const stop of stops) stop()
    await Promise.all([a.close(), b.close()])
    await meter.shutdown()
  })

  it('a lease is measured like a call: one wait, one use (released or destroyed)', async () => {
    const holder = new Holder(fakeDriver().driver)
    const meter = testMeter()
    const stop = instrument(holder, { meterProvider: meter.provider, poolName: 'p' })
    const first = await holder.lease()
    await first.release()
    const second = await holder.lease()
    second.destroy()
    const r = await meter.read()
    expect(pointOf(r, 'db.client.connection.wait_time', { [POOL]: 'p' })?.count).toBe(2)
    expect(pointOf(r, 'db.client.connection.use_time', { [POOL]: 'p' })?.count).toBe(2)
    expect(pointOf(r, 'warmconn.closes', { [POOL]: 'p', 'warmconn.close.reason': 'broken' })?.value).toBe(1)
    stop()
    await holder.close()
    await meter.shutdown()
  })

  it('the pool name drops the user whatever the target looks like', () => {
    expect(poolNameOf('fake@localhost/db')).toBe('localhost/db')
    expect(poolNameOf('a@b@h:1/d@x')).toBe('h:1/d@x')
    expect(poolNameOf('(default user)@h:5432/(default database)')).toBe('h:5432/(default database)')
    expect(poolNameOf('memory')).toBe('memory')
  })
})
