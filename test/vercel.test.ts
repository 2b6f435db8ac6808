/**
 * Vercel Fluid compute: an instance must stay alive (waitUntil) until warmconn has closed its
 * idle connections. Tested with the request context Vercel's runtime installs
 * (globalThis[Symbol.for('@vercel/request-context')]) and the variables @vercel/functions checks
 * (VERCEL_URL, VERCEL_REGION): Vercel's own attachDatabasePool over warmPool, and warmconn's
 * attachToVercel for postgres.js, neon and pg holders. Each test waits for every promise handed
 * to waitUntil, then asks the server: no backend of the function may be left.
 */
import { attachDatabasePool } from '@vercel/functions'
import { sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import { WebSocket } from 'ws'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { warmPostgres } from '../src/drivers/postgres.js'
import { warmNeon } from '../src/drivers/neon.js'
import { warmPg, warmPool } from '../src/drivers/pg.js'
import { attachToVercel } from '../src/vercel/index.js'
import type { Holder } from '../src/index.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startRelay, type Relay } from './harness/relay.js'
import { appName, eventually, sleep } from './helpers/core.js'

const CONTEXT = Symbol.for('@vercel/request-context')
const globals = globalThis as unknown as Record<symbol, unknown>

let db: TestPg
let relay: Relay
const saved = { url: process.env.VERCEL_URL, region: process.env.VERCEL_REGION }
beforeAll(async () => {
  db = await startPostgres()
  relay = await startRelay()
  process.env.VERCEL_URL = 'warmconn-test.vercel.app'
  process.env.VERCEL_REGION = 'iad1'
})
afterAll(async () => {
  delete globals[CONTEXT]
  if (saved.url === undefined) delete process.env.VERCEL_URL
  else process.env.VERCEL_URL = saved.url
  if (saved.region === undefined) delete process.env.VERCEL_REGION
  else process.env.VERCEL_REGION = saved.region
  await relay?.close()
  await db?.stop()
})

/** The promises the current "request" was asked to wait for; request() starts a new one. */
let handed: Array<Promise<unknown>>
function request(): Array<Promise<unknown>> {
  const mine: Array<Promise<unknown>> = []
  const context = { waitUntil: (promise: Promise<unknown>) => void mine.push(promise) }
  globals[CONTEXT] = { get: () => context }
  return (handed = mine)
}
beforeEach(() => void request())

/** Resolves when every promise handed to waitUntil so far has, as the runtime would wait. */
async function instanceMaySuspend(all: Array<Array<Promise<unknown>>>): Promise<void> {
  await Promise.all(all.flat())
}

describe("Vercel's attachDatabasePool over warmPool", () => {
  it('keeps the instance alive until warmconn closed the idle connection: no backend left after', async () => {
    const name = appName('vercel-pool')
    const pool = warmPool(db.url, { applicationName: name, idleTimeoutMs: 300, maxConnections: 2 })
    attachDatabasePool(pool)
    const orm = drizzle(pool)
    await Promise.all([orm.execute(sql`select 1`), orm.execute(sql`select 2`)])
    await orm.transaction(async (tx) => void (await tx.execute(sql`select 3`)))
    expect(handed.length).toBeGreaterThan(0)
    expect(await db.backends(name)).not.toEqual([])
    await instanceMaySuspend([handed])
    expect(await db.backends(name)).toEqual([])
    expect(pool.holder.stats()).toMatchObject({ closedIdle: 2, open: 0 })
    await pool.end()
  })
})

describe('attachToVercel', () => {
  // Each driver's holder, and one call on it.
  const drivers: Array<[string, (name: string) => { holder: Holder<unknown>; query: () => Promise<unknown> }]> = [
    ['postgres.js', (name) => {
      const h = warmPostgres(db.url, { applicationName: name, idleTimeoutMs: 300, postgres: { onnotice: () => {} } })
      return { holder: h as Holder<unknown>, query: () => h.run((s) => s`select 1`) }
    }],
    ['neon', (name) => {
      const h = warmNeon(db.url, { applicationName: name, idleTimeoutMs: 300, neon: { ...relay.neonConfig(), webSocketConstructor: WebSocket } })
      return { holder: h as Holder<unknown>, query: () => h.run((c) => c.query('select 1')) }
    }],
    ['pg', (name) => {
      const h = warmPg(db.url, { applicationName: name, idleTimeoutMs: 300 })
      return { holder: h as Holder<unknown>, query: () => h.run((c) => c.query('select 1')) }
    }],
  ]

  for (const [driver, make] of drivers) {
    it(`${driver}: waitUntil resolves once the last idle connection is closed, not before; no backend left`, async () => {
      const name = appName(`vercel-${driver}`)
      const { holder, query } = make(name)
      const detach = attachToVercel(holder)
      try {
        const first = handed
        await query()
        await query()
        const second = request() // a later request on the same instance
        await query()
        expect([first.length, second.length]).toEqual([1, 1]) // once per request, not per call
        let settled = false
        void Promise.all([...first, ...second]).then(() => (settled = true))
        expect(await db.backends(name)).toHaveLength(1)
        expect(settled).toBe(false)
        await instanceMaySuspend([first, second])
        expect(await db.backends(name)).toEqual([])
        expect(holder.stats()).toMatchObject({ closedIdle: 1, open: 0 })
      } finally {
        detach()
        await holder.close()
      }
    })
  }

  it('warmPool: follows the pool\'s holder; a holder closed early ends the wait at once, whatever idleTimeoutMs says', async () => {
    const name = appName('vercel-early')
    const pool = warmPool(db.url, { applicationName: name, idleTimeoutMs: 60_000 })
    attachToVercel(pool)
    await pool.query('select 1')
    expect(handed).toHaveLength(1)
    let settled = false
    void handed[0]!.then(() => (settled = true))
    await sleep(200)
    expect(settled).toBe(false) // the connection is open and idle: the instance must stay up
    await pool.end()
    expect(await eventually(async () => settled)).toBe(true)
    expect(await db.backends(name)).toEqual([])
  })

  it('does nothing outside a request, and nothing once detached', async () => {
    const name = appName('vercel-none')
    const holder = warmPg(db.url, { applicationName: name, idleTimeoutMs: 300 })
    const detach = attachToVercel(holder)
    delete globals[CONTEXT]
    await holder.run((c) => c.query('select 1')) // no request context: no waitUntil, no error
    const mine = request()
    detach()
    await holder.run((c) => c.query('select 1'))
    expect(mine).toEqual([])
    await holder.close()
  })
})
