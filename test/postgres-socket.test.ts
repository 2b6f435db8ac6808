/**
 * The TCP socket under warmconn's postgres.js connections has Nagle's algorithm off, as libpq's
 * and node-postgres's do (postgres.js leaves it on). With it on, a statement written while the
 * connection's previous flight is unacknowledged (every pipelined shared call, a probe then the
 * statement) waits for that ACK, which the peer may delay 40 ms: `npm run bench:concurrency`
 * measures what that costs. Checked on the socket the server sees as the backend's client port.
 */
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { appName, makeHolder } from './helpers/core.js'

let pg: TestPg
const sockets: net.Socket[] = []
const connect = net.Socket.prototype.connect
beforeAll(async () => {
  pg = await startPostgres()
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    sockets.push(this)
    return (connect as (...a: unknown[]) => net.Socket).apply(this, args)
  } as typeof connect
})
afterAll(async () => {
  net.Socket.prototype.connect = connect
  await pg?.stop()
})

/** Node keeps the flag it last set on the socket under an internal symbol (Node 20 to 24). */
function noDelay(socket: net.Socket): unknown {
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kSetNoDelay')
  return key === undefined ? undefined : (socket as unknown as Record<symbol, unknown>)[key]
}

describe('the postgres.js connection socket', () => {
  it('has TCP_NODELAY set, on both connections of a shared holder', async () => {
    const name = appName('nodelay')
    const holder = makeHolder(pg.url, { applicationName: name, maxConnections: 2 })
    try {
      const pids = await Promise.all(Array.from({ length: 8 }, () => holder.shared((sql) => sql<Array<{ pid: number }>>`select pg_backend_pid() as pid, pg_sleep(0.05)`)))
      const backends = await pg.admin<Array<{ pid: number; port: number }>>`select pid, client_port as port from pg_stat_activity where application_name = ${name}`
      expect(new Set(pids.map(([r]) => r!.pid)).size).toBe(2)
      expect(backends).toHaveLength(2)
      for (const backend of backends) {
        const socket = sockets.find((s) => s.localPort === backend.port)
        expect(socket, `the socket on client port ${backend.port}`).toBeDefined()
        expect(noDelay(socket!)).toBe(true)
      }
    } finally {
      await holder.close()
    }
  })
})
