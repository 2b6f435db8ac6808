/**
 * An idle Durable Object in Durable Object mode: warmconn closes its connection once it has been
 * idle for idleTimeoutMs (its timer, the alarm as a backstop), and after that holds nothing that
 * keeps the object in memory, so the runtime can evict it. workerd evicts an object about 10 s
 * after its last event unless something still holds it: locally a pending timer or an open
 * socket does on every compatibility date (seen with workerd 1.20260426 and 1.20261117), and in
 * production pending timers do from 2026-10-01 (durable_object_io_tasks_prevent_eviction) and
 * an open outbound socket for up to 15 minutes. A new instance answering is the eviction; a
 * plain object holding a timer, which must keep its instance, shows the check can fail.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, testedCompatibilityDate, workerRuntime, type TestWorker } from './harness/worker.js'
import { eventually, sleep } from './helpers/core.js'

const APP = 'wc-worker-eviction'
const IDLE_MS = 2_000
/** workerd's delay between an object's last event and its eviction (server.c++, handleShutdown). */
const EVICTION_DELAY_MS = 10_000
/** Generous: a busy 2-core machine runs timers late. This bounds a wait, it measures nothing. */
const SLACK_MS = 5_000

let pg: TestPg
let worker: TestWorker
beforeAll(async () => {
  pg = await startPostgres()
  worker = await startWorker({
    entry: 'test/fixtures/workers/eviction.ts',
    bindings: { DATABASE_URL: pg.urlFor({ params: { application_name: APP } }), WARMCONN_IDLE_TIMEOUT_MS: String(IDLE_MS) },
    durableObjects: { WARMCONN: 'InstanceHolder', PINNED: 'TimerHolder' },
  })
})
afterAll(async () => {
  await worker?.dispose()
  await pg?.stop()
})

describe(`an idle Durable Object (workerd ${workerRuntime.workerd}, compatibility date ${testedCompatibilityDate})`, () => {
  it('closes its connection after idleTimeoutMs, then holds nothing: it is evicted, while one holding a timer is not', async () => {
    const first = await worker.fetch('GET', '/query')
    expect(first.status).toBe(200)
    const pinned = await worker.fetch('GET', `/hold?ms=${10 * (EVICTION_DELAY_MS + SLACK_MS)}`)
    const lastCall = Date.now()
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([first.body.pid])

    // The idle close, seen by the server.
    expect(await eventually(async () => (await pg.backends(APP)).length === 0, IDLE_MS + SLACK_MS)).toBe(true)

    // No request in between: any call would count as activity and restart the runtime's countdown.
    await sleep(lastCall + IDLE_MS + EVICTION_DELAY_MS + SLACK_MS - Date.now())
    const later = await worker.fetch('GET', '/instances')
    expect(later.body.pinned).toBe(pinned.body.instance)
    // Evicted: no timer of warmconn's outlived the idle close (the call-deadline timer is cancelled
    // once the holder has no connection left), so a new instance answers.
    expect(later.body.holder).not.toBe(first.body.instance)
  })
})
