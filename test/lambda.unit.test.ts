/** The Lambda wrapper's own contract, in-process (the emulator tests cover it end to end). */
import type { Context } from 'aws-lambda'
import { describe, expect, it } from 'vitest'
import { isColdStart, withWarmconn } from '../src/lambda/index.js'
import { InvalidOptionError } from '../src/index.js'

const context = () => ({ callbackWaitsForEmptyEventLoop: true, awsRequestId: 'r1' }) as unknown as Context

describe('withWarmconn', () => {
  it('reports a cold start during the first invocation only', async () => {
    const seen: boolean[] = []
    const handler = withWarmconn(async () => void seen.push(isColdStart()), { closeOnSigterm: false })
    await handler({}, context())
    await handler({}, context())
    expect(seen).toEqual([true, false])
  })

  it('turns off callbackWaitsForEmptyEventLoop so a warm socket never holds up the answer', async () => {
    const ctx = context()
    await withWarmconn(async () => 1, { closeOnSigterm: false })({}, ctx)
    expect(ctx.callbackWaitsForEmptyEventLoop).toBe(false)
  })

  it('adapts callback-style handlers, results and errors', async () => {
    const ok = withWarmconn((event: { n: number }, _ctx: Context, cb: (e: Error | null, r?: number) => void) => void setTimeout(() => cb(null, event.n * 2), 1), { closeOnSigterm: false })
    expect(await ok({ n: 21 }, context())).toBe(42)
    const failing = withWarmconn((_e: unknown, _c: Context, cb: (e: Error | null) => void) => cb(new Error('nope')), { closeOnSigterm: false })
    await expect(failing({}, context())).rejects.toThrow('nope')
    const throwing = withWarmconn((_e: unknown, _c: Context, _cb: unknown) => { throw new Error('sync throw') }, { closeOnSigterm: false })
    await expect(throwing({}, context())).rejects.toThrow('sync throw')
  })

  it('rejects bad options with an InvalidOptionError naming them', () => {
    for (const [options, name] of [[{ sigtermTimeoutMs: -1 }, 'sigtermTimeoutMs'], [{ closeOnSigterm: 'yes' }, 'closeOnSigterm'], [{ sigtermTimeout: 5 }, 'sigtermTimeout']] as const) {
      let caught: unknown
      try {
        withWarmconn(async () => 1, options as never)
      } catch (err) {
        caught = err
      }
      expect(caught).toBeInstanceOf(InvalidOptionError)
      expect((caught as InvalidOptionError).option).toBe(name)
    }
  })
})
