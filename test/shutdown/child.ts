/**
 * A process that does some work with warmconn, closes it one way, and then should end by itself
 * at once. Run by test/shutdown.test.ts as `node --import tsx child.ts <scenario> <url> <relay port>`
 * (the relay: test/harness/relay.ts, Neon's WebSocket proxy stand-in). It
 * prints `closed` the moment the close resolves; the parent times the exit from that line.
 */
import { closeAll } from '../../src/index.js'
import { warmPg, warmPool } from '../../src/drivers/pg.js'
import { warmPostgres } from '../../src/drivers/postgres.js'
import { warmNeon, warmPool as warmNeonPool, type NeonConfigOverrides } from '../../src/drivers/neon.js'
import { WebSocket } from 'ws'

// Long enough that a timer of these would show (5 s close bound, 60 s idle), short enough to end a hung test.
const OPTIONS = { idleTimeoutMs: 60_000, closeTimeoutMs: 5_000, applicationName: 'warmconn-shutdown' }

export const SCENARIOS = {
  /** holder.close() after a call, the connection idle. */
  async close(url: string) {
    const db = warmPostgres(url, OPTIONS)
    await db.run((sql) => sql`select 1`)
    await db.close()
  },
  /** closeAll() with two shared holders (postgres.js and pg), both idle. */
  async closeAll(url: string) {
    const a = warmPostgres(url, OPTIONS)
    const b = warmPg(url, OPTIONS)
    await a.run((sql) => sql`select 1`)
    await b.run((client) => client.query('select 1'))
    await closeAll()
  },
  /** pool.end() on warmPool after a query and a lease. */
  async poolEnd(url: string) {
    const pool = warmPool(url, OPTIONS)
    await pool.query('select 1')
    const client = await pool.connect()
    await client.query('select 1')
    client.release()
    await pool.end()
  },
  /** Neon over the relay: closeAll() of a warmNeon holder, and pool.end() of neon's warmPool. */
  async neon(url: string, relayPort: string) {
    const neon = neonOverRelay(relayPort)
    const db = warmNeon(url, { ...OPTIONS, neon })
    await db.run((client) => client.query('select 1'))
    const pool = warmNeonPool(url, { ...OPTIONS, applicationName: 'warmconn-shutdown', neon, maxConnections: 1 })
    await pool.query('select 1')
    await pool.end()
    await closeAll()
  },
  /** close() while a call is in flight: it waits for the call, then closes. */
  async closeInFlight(url: string) {
    const db = warmPostgres(url, OPTIONS)
    const call = db.run((sql) => sql`select pg_sleep(0.2)`)
    await new Promise((resolve) => setTimeout(resolve, 50))
    await Promise.all([db.close(), call])
  },
  /** close() before any call: nothing was ever opened. */
  async closeUnused(url: string) {
    await warmPostgres(url, OPTIONS).close()
  },
} satisfies Record<string, (url: string, relayPort: string) => Promise<void>>

export type Scenario = keyof typeof SCENARIOS

/** The per-client settings test/harness/relay.ts's neonConfig() gives, rebuilt here from its port. */
function neonOverRelay(port: string): NeonConfigOverrides {
  return {
    webSocketConstructor: WebSocket,
    wsProxy: (host, targetPort) => `127.0.0.1:${port}/v1?address=${host}:${targetPort}`,
    useSecureWebSocket: false,
    pipelineTLS: false,
    pipelineConnect: false,
  }
}

const [scenario, url, relayPort = ''] = process.argv.slice(2)
if (scenario && url) {
  await SCENARIOS[scenario as Scenario](url, relayPort)
  process.stdout.write('closed\n')
}
