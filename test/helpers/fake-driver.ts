/**
 * An in-memory driver for the lifecycle unit tests (fake clocks): connections that can be told to
 * fail, hang their ping or probe, or report an open transaction. The tests against a real server
 * prove the same paths with real sockets; this one lets the clock jump as across a freeze.
 */
import type { Driver, DriverConnection } from '../../src/index.js'
import { classifyCode } from '../../src/classify.js'

export interface FakeConn {
  id: number
  closed: boolean
  destroyed: boolean
  pings: number
  probes: number
  rollbacks: number
  /** Set by a test: the next release finds a transaction open. */
  inTransaction: boolean
  /** What `open` was asked: may this connection be lazy? */
  lazyAllowed: boolean
  /** A statement: on a lazy connection the first one carries the handshake (and may fail). */
  send(): Promise<void>
}

export interface FakeScript {
  /** Codes thrown by successive open() calls before one succeeds. */
  failures?: string[]
  pingHangs?: boolean
  /** Offer probe(); `hang` never answers it. */
  probe?: 'answer' | 'hang'
  /** Open lazily when allowed; codes thrown by successive handshakes (first statements) before one succeeds. */
  lazy?: { failures?: string[] }
}

export function fakeDriver(script: FakeScript = {}) {
  const conns: FakeConn[] = []
  const failures = [...(script.failures ?? [])]
  let attempts = 0
  const driver: Driver<FakeConn> = {
    name: 'fake',
    secrets: ['pw'],
    target: 'fake@localhost/db',
    async open(options) {
      attempts++
      const code = failures.shift()
      if (code) throw Object.assign(new Error(`fail ${code}`), { code })
      const lazy = script.lazy !== undefined && options.lazy
      let connected = !lazy
      const c: FakeConn = {
        id: conns.length + 1, closed: false, destroyed: false, pings: 0, probes: 0, rollbacks: 0, inTransaction: false,
        lazyAllowed: options.lazy,
        async send() {
          if (connected) return
          const failure = script.lazy?.failures?.shift()
          if (failure) throw Object.assign(new Error(`handshake failed: ${failure}`), { code: failure })
          connected = true
          options.onReady(1000 + c.id)
        },
      }
      conns.push(c)
      const conn: DriverConnection<FakeConn> = {
        client: c,
        ping: () => (c.pings++, script.pingHangs ? new Promise<void>(() => {}) : Promise.resolve()),
        inTransaction: () => c.inTransaction,
        rollback: async () => void (c.rollbacks++, (c.inTransaction = false)),
        close: async () => void (c.closed = true),
        destroy: () => void (c.destroyed = true),
      }
      if (lazy) Object.assign(conn, { lazy: true })
      if (script.probe) Object.assign(conn, { direct: true })
      if (script.probe) conn.probe = () => (c.probes++, script.probe === 'hang' ? new Promise<void>(() => {}) : Promise.resolve())
      return conn
    },
    classify: (err) => classifyCode((err as { code?: string }).code),
  }
  return { driver, conns, attempts: () => attempts }
}
