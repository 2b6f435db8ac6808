/**
 * The holder's verdicts, as pure functions (src/call-verdict.ts, src/revalidation.ts): what a
 * failed call means, whether it runs again, and how an idle connection is checked. The holder's
 * tests against a real server (holder.faults, shared, lambda.managed) prove the same through it.
 */
import { describe, expect, it } from 'vitest'
import type { DriverConnection } from '../src/driver.js'
import { atInvocationDeadline, mayReplay, verdict } from '../src/call-verdict.js'
import { bounded, checkNeeded, waitedOut } from '../src/revalidation.js'

const seen = (kind: string) => ({ kind, code: undefined, notSent: false }) as never

describe('verdict', () => {
  it('a connect-time error on a connection not yet proven is a failed connect; once proven, a lost connection', () => {
    for (const kind of ['auth', 'config', 'transient', 'connection']) {
      expect(verdict(seen(kind), false)).toBe('connect')
      expect(verdict(seen(kind), true)).toBe('lost')
    }
  })
  it('an SQL error is the call\'s own, proven or not', () => {
    expect(verdict(seen('query'), true)).toBe('query')
    expect(verdict(seen('query'), false)).toBe('query')
  })
})

describe('mayReplay', () => {
  it('only the first attempt, only when running twice is safe, only while open', () => {
    expect(mayReplay(1, true, false, undefined)).toBe(true)
    expect(mayReplay(2, true, false, undefined)).toBe(false)
    expect(mayReplay(1, false, false, undefined)).toBe(false)
    expect(mayReplay(1, true, true, undefined)).toBe(false)
  })
  it('never past the invocation\'s deadline', () => {
    expect(mayReplay(1, true, false, Date.now() + 1_000)).toBe(true)
    expect(mayReplay(1, true, false, Date.now() - 1)).toBe(false)
    expect(atInvocationDeadline(Date.now() - 1)).toBe(true)
    expect(atInvocationDeadline(Date.now() + 1_000)).toBe(false)
    expect(atInvocationDeadline(undefined)).toBe(false)
  })
})

describe('checkNeeded', () => {
  const conn = (probe: boolean, direct: boolean) => ({ direct, ...(probe ? { probe: async () => {} } : {}) }) as unknown as DriverConnection<unknown>
  it('nothing below staleAfterMs; a probe for a call that may run twice on a direct connection; a ping otherwise', () => {
    expect(checkNeeded(conn(true, true), 999, 1_000, true)).toBe('none')
    expect(checkNeeded(conn(true, true), 1_000, 1_000, true)).toBe('probe')
    expect(checkNeeded(conn(true, true), 1_000, 1_000, false)).toBe('ping')
    expect(checkNeeded(conn(true, false), 1_000, 1_000, true)).toBe('ping')
    expect(checkNeeded(conn(false, true), 1_000, 1_000, true)).toBe('ping')
  })
})

describe('bounded checks', () => {
  it('answered in time, failed, or unanswered; never rejects', async () => {
    expect(await bounded(Promise.resolve(), 50)).toMatchObject({ ok: true })
    const failure = new Error('reset')
    expect(await bounded(Promise.reject(failure), 50)).toEqual({ ok: false, error: failure, timedOut: false })
    expect(await bounded(new Promise<void>(() => {}), 20)).toMatchObject({ ok: false, timedOut: true })
  })
  it('idle-time work that outlasts the bound counts as not done', async () => {
    expect(await waitedOut(Promise.resolve(), 50)).toBe(true)
    expect(await waitedOut(new Promise<void>(() => {}), 20)).toBe(false)
    expect(await waitedOut(Promise.reject(new Error('x')), 50)).toBe(false)
  })
})
