/**
 * Why warmconn/workers exists. A connection kept in module scope, the way a Node server or a
 * Lambda keeps it, cannot serve a second Workers request: the runtime binds every socket to the
 * request that opened it. The naive postgres.js pattern fails every second request with the
 * runtime's error (or is cancelled as hung); warmPostgres, whose registry is module scope too,
 * refuses instead with a typed CrossRequestError that names the three modes that work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, type TestWorker } from './harness/worker.js'
import { eventually } from './helpers/core.js'

let pg: TestPg

beforeAll(async () => {
  pg = await startPostgres()
})
afterAll(async () => {
  await pg?.stop()
})

function moduleScopeWorker(entry: string, app: string): Promise<TestWorker> {
  return startWorker({ entry, bindings: { DATABASE_URL: pg.urlFor({ params: { application_name: app } }) }, durableObjects: {} })
}

describe('the naive pattern: a postgres.js client in module scope', () => {
  let w: TestWorker
  beforeAll(async () => {
    w = await moduleScopeWorker('test/fixtures/workers/naive.ts', 'wc-naive')
  })
  afterAll(async () => {
    await w?.dispose()
  })

  it("fails the second request with the runtime's cross-request error, and every second one after", async () => {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      const res = await w.fetch('GET', '/')
      statuses.push(res.status)
      if (res.status === 500) expect(res.body.error.message).toMatch(/Cannot perform I\/O on behalf of a different request/)
    }
    expect(statuses).toEqual([200, 500, 200, 500])
  })

  it('a concurrent second request waits on the first one\'s connection and is cancelled as hung', async () => {
    // The last request failed and postgres.js dropped that connection: the next one opens anew.
    const [busy, other] = await Promise.all([w.fetch('GET', '/?sleepMs=300'), w.fetch('GET', '/')])
    expect(busy.status).toBe(200)
    expect(other.status).toBe(500)
    expect(other.text).toMatch(/canceled this request because it detected that your Worker's code had hung/)
  })
})

describe('warmPostgres in module scope', () => {
  const app = 'wc-module-scope'
  let w: TestWorker
  beforeAll(async () => {
    w = await moduleScopeWorker('test/fixtures/workers/module-scope.ts', app)
  })
  afterAll(async () => {
    await w?.dispose()
  })

  it('refuses the connection of an earlier request with a typed CrossRequestError', async () => {
    const first = await w.fetch('GET', '/')
    expect(first.status).toBe(200)
    const second = await w.fetch('GET', '/')
    expect(second.status).toBe(503)
    expect(second.body.error).toMatchObject({
      name: 'CrossRequestError',
      code: 'WARMCONN_CROSS_REQUEST',
      isWarmconnError: true,
      isCrossRequestError: true,
    })
    expect(second.body.error.message).toMatch(/Durable Object.*withRequestScope.*hyperdriveScope/)
    // The refused connection is let go, not touched: the next request opens its own.
    const third = await w.fetch('GET', '/')
    expect(third.status).toBe(200)
    expect(third.body.pid).not.toBe(first.body.pid)
  })

  it('refuses it too when the request that opened it is still running (no hang, no runtime error)', async () => {
    // Clear the connection the last test left (refused, so forgotten): the pair starts with none.
    expect((await w.fetch('GET', '/')).status).toBe(503)
    const [busy, waiting] = await Promise.all([w.fetch('GET', '/?sleepMs=300'), w.fetch('GET', '/')])
    const statuses = [busy.status, waiting.status]
    // Whichever request opened the connection is served; the other is refused once it is handed
    // that connection, which happens when the first is done with it.
    expect(statuses.sort()).toEqual([200, 503])
    const refused = busy.status === 503 ? busy : waiting
    expect(refused.body.error).toMatchObject({ code: 'WARMCONN_CROSS_REQUEST', isCrossRequestError: true })
    expect(w.output()).not.toMatch(/Cannot perform I\/O|hung/)
  })

  it('leaves no backend behind: the runtime closes each socket with its request', async () => {
    expect(await eventually(async () => (await pg.backends(app)).length === 0, 3_000)).toBe(true)
  })
})
