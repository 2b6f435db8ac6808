/**
 * warmconn/otel in the Lambda emulator (a bundled handler, frozen with SIGSTOP between
 * invocations as Lambda's freezer does), against a real PostgreSQL: what a frozen function can
 * export. A periodic reader exports nothing while the process is frozen; a forceFlush before the
 * handler returns hands over that invocation's samples, with the gauges read at that moment.
 */
import { rmSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { sleep } from './helpers/core.js'

interface Reply {
  pid: number
  exports: Array<{ at: number; idle?: number; used?: number; createTimeCount?: number; useTimeCount?: number }>
}

let pg: TestPg
let dir: string
let fn: LambdaEmulator
beforeAll(async () => {
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-otel-lambda-'))
  const handlerFile = await build('test/fixtures/lambda-otel.ts', join(dir, 'otel.mjs'))
  fn = await startLambda({ handlerFile, env: { DATABASE_URL: pg.urlFor({ params: { application_name: 'wc-otel-lambda' } }) } })
}, 60_000)
afterAll(async () => {
  await fn?.kill()
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('warmconn/otel in a frozen function', () => {
  it('a periodic reader exports nothing while frozen; a flush before returning exports the invocation, gauges as at its end', async () => {
    const first = (await fn.invoke({ flush: true })).result as Reply
    // The flushed export is in this reply: this invocation's connect and call, the connection back to idle.
    const flushed = first.exports.at(-1)!
    expect(flushed).toMatchObject({ createTimeCount: 1, useTimeCount: 1, idle: 1, used: 0 })
    // invoke() resolves once the process is stopped (an export may still run between the reply and the stop).
    expect(fn.isFrozen()).toBe(true)
    const frozenFrom = Date.now()
    await sleep(1_000) // ten export intervals
    const thawedAt = Date.now()
    const second = (await fn.invoke({})).result as Reply
    // Not one export in the second the process was frozen; the overdue timer fires after the thaw.
    expect(second.exports.filter((e) => e.at > frozenFrom && e.at < thawedAt)).toEqual([])
    expect(second.exports.filter((e) => e.at >= thawedAt).length).toBeGreaterThan(0)
    expect(second.pid).toBe(first.pid)
    expect((await pg.backends('wc-otel-lambda')).map((b) => b.pid)).toEqual([first.pid])
    const third = (await fn.invoke({ flush: true })).result as Reply
    // One connect in all (the server saw one backend), three calls measured.
    expect(third.exports.at(-1)).toMatchObject({ createTimeCount: 1, useTimeCount: 3, idle: 1, used: 0 })
  }, 30_000)
})
