/**
 * Every driver passes the same conformance suite against a real PostgreSQL. Adding a driver
 * (node-postgres `pg`, say) is a target here plus its src/drivers file.
 */
import { WebSocket } from 'ws'
import type { Client } from '@neondatabase/serverless'
import type { Client as PgClient } from 'pg'
import { afterAll, beforeAll, describe } from 'vitest'
import { Holder } from '../src/index.js'
import { postgresDriver, type Sql } from '../src/drivers/postgres.js'
import { neonDriver } from '../src/drivers/neon.js'
import { pgDriver } from '../src/drivers/pg.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startRelay, type Relay } from './harness/relay.js'
import { pgBouncer, startPgBouncer, type TestPgBouncer } from './harness/pgbouncer.js'
import { requires } from './helpers/requires.js'
import { conformance } from './conformance/suite.js'

let pg: TestPg
let relay: Relay
beforeAll(async () => {
  pg = await startPostgres()
  relay = await startRelay()
})
afterAll(async () => {
  await relay?.close()
  await pg?.stop()
})

conformance({
  name: 'postgres.js direct',
  pg: () => pg,
  upstream: () => ({ host: pg.host, port: pg.port }),
  url: (port, password) => pg.urlFor({ port, password }),
  holder: (url, options) => new Holder(postgresDriver(url, { onnotice: () => {} }), options) as Holder<unknown>,
  exec: (client, text, params = []) => (client as Sql).unsafe(text, params as never[]),
  stableBackend: true,
  ping: 'select 1',
})

conformance({
  name: 'neon direct',
  pg: () => pg,
  upstream: () => ({ host: pg.host, port: pg.port }),
  url: (port, password) => pg.urlFor({ port, password }),
  holder: (url, options) => new Holder(neonDriver(url, { ...relay.neonConfig(), webSocketConstructor: WebSocket }), options) as Holder<unknown>,
  exec: async (client, text, params = []) => (await (client as Client).query(text, params)).rows,
  stableBackend: true,
  ping: 'select 1',
})

conformance({
  name: 'pg direct',
  pg: () => pg,
  upstream: () => ({ host: pg.host, port: pg.port }),
  url: (port, password) => pg.urlFor({ port, password }),
  holder: (url, options) => new Holder(pgDriver(url), options) as Holder<unknown>,
  exec: async (client, text, params = []) => (await (client as PgClient).query(text, params)).rows,
  stableBackend: true,
  ping: 'select 1',
})

// Through PgBouncer in transaction mode (prepared statements off: PgBouncer 1.18 cannot route
// them). The backend behind a client connection changes per transaction, so the suite checks
// reuse on the client's socket and the rest on the server's log and rows.
describe('through PgBouncer', requires(pgBouncer), () => {
  let bouncer: TestPgBouncer
  beforeAll(async () => {
    bouncer = await startPgBouncer(pg, { poolMode: 'transaction', defaultPoolSize: 5 })
  })
  afterAll(async () => {
    await bouncer?.stop()
  })

  conformance({
    name: 'postgres.js via PgBouncer',
    pg: () => pg,
    upstream: () => ({ host: bouncer.host, port: bouncer.port }),
    url: (port, password) => bouncer.urlFor({ user: 'app', password }).replace(`:${bouncer.port}/`, `:${port}/`),
    holder: (url, options) => new Holder(postgresDriver(url, { onnotice: () => {}, prepare: false }), options) as Holder<unknown>,
    exec: (client, text, params = []) => (client as Sql).unsafe(text, params as never[]),
    stableBackend: false,
    ping: 'select 1',
  })

  conformance({
    name: 'neon via PgBouncer',
    pg: () => pg,
    upstream: () => ({ host: bouncer.host, port: bouncer.port }),
    url: (port, password) => bouncer.urlFor({ user: 'app', password }).replace(`:${bouncer.port}/`, `:${port}/`),
    holder: (url, options) => new Holder(neonDriver(url, { ...relay.neonConfig(), webSocketConstructor: WebSocket }), options) as Holder<unknown>,
    exec: async (client, text, params = []) => (await (client as Client).query(text, params)).rows,
    stableBackend: false,
    ping: 'select 1',
  })

  conformance({
    name: 'pg via PgBouncer',
    pg: () => pg,
    upstream: () => ({ host: bouncer.host, port: bouncer.port }),
    url: (port, password) => bouncer.urlFor({ user: 'app', password }).replace(`:${bouncer.port}/`, `:${port}/`),
    holder: (url, options) => new Holder(pgDriver(url), options) as Holder<unknown>,
    exec: async (client, text, params = []) => (await (client as PgClient).query(text, params)).rows,
    stableBackend: false,
    ping: 'select 1',
  })
})
