/**
 * Security: credentials never show in anything warmconn or the example apps produce, even when
 * everything fails; TLS verification stays on by default for a host that is not local and
 * `sslmode` in the URL is honoured; a holder never hands one role's or database's connection to
 * another. Against real servers; 127.0.0.2 is loopback, but not in the driver's local-host list.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuthError, CallTimeoutError, ConfigRejectedError, ConnectError, ConnectionLostError, Holder, TlsError, closeAll, type HolderEventName } from '../src/index.js'
import { postgresDriver, warmPostgres, type Sql } from '../src/drivers/postgres.js'
import { pgDriver, warmPg, warmPool } from '../src/drivers/pg.js'
import { enableTls, makeCa, type TestCa } from './fixtures/security-tls.js'
import { httpEvent } from './harness/lambda/apigw.js'
import { build, startLambda } from './harness/lambda/emulator.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { freePort } from './harness/ports.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { startWorker } from './harness/worker.js'
import { eventually } from './helpers/core.js'

// Every event, as a record so that the typecheck fails when a new event is not listed here.
const EVENT_NAMES: Record<HolderEventName, true> = {
  connectSuccess: true, connectRetry: true, connectFail: true, reuse: true, revalidateSuccess: true, revalidateFail: true,
  closeIdle: true, closeLifetime: true, closeBroken: true, sessionReset: true, replay: true, callTimeout: true, release: true, close: true, warning: true,
  acquire: true, acquireTimeout: true,
}
const EVENTS = Object.keys(EVENT_NAMES) as HolderEventName[]
// A wrong password with every character a URL must escape, so each encoded form is scanned too.
const WRONG = 'wr0ng/p@ss:w#rd%20?&'

let pg: TestPg
let dir: string
let appFile: string
/** A proxy on 127.0.0.2 in front of `pg` (no TLS). */
let remote: FaultProxy

beforeAll(async () => {
  pg = await startPostgres()
  remote = await startProxy({ host: pg.host, port: pg.port }, { host: '127.0.0.2' })
  dir = mkdtempSync(join(tmpdir(), 'warmconn-security-'))
  appFile = await build('functions/lambda.ts', join(dir, 'app.mjs'))
})
afterAll(async () => {
  await closeAll()
  await remote?.close()
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** `url` with its host and port replaced, everything else (credentials, database) kept. */
function via(url: string, host: string, port: number): string {
  const u = new URL(url)
  u.hostname = host
  u.port = String(port)
  return u.href
}

/** Everything an error can show: message, stack, inspection with hidden fields, JSON, causes. */
function describeError(err: unknown): string {
  const parts = [String(err), inspect(err, { depth: 8, showHidden: true }), JSON.stringify(err) ?? '']
  for (let e: unknown = err; e instanceof Error; e = e.cause) parts.push(e.message, e.stack ?? '')
  return parts.join('\n')
}

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run()
  } catch (err) {
    return err
  }
  throw new Error('expected a failure')
}

describe('credentials never appear in output', () => {
  it('errors, events and stats of holders failing in every way, and the example apps answering through it all', async () => {
    const seen: string[] = []
    const holders: Array<Holder<Sql>> = []
    const holder = (url: string, options = {}): Holder<Sql> => {
      const h = warmPostgres(url, { connectBudgetMs: 1_500, connectTimeoutMs: 500, pingTimeoutMs: 300, ...options, postgres: { onnotice: () => {} } })
      for (const event of EVENTS) h.on(event, (payload) => seen.push(JSON.stringify(payload)))
      holders.push(h)
      return h
    }
    const errors: unknown[] = []
    const keep = (type: new (...args: never[]) => unknown, err: unknown): void => {
      expect(err, `${type.name}: ${describeError(err)}`).toBeInstanceOf(type)
      errors.push(err)
    }
    const expectError = async (type: new (...args: never[]) => unknown, run: () => Promise<unknown>): Promise<void> => keep(type, await failure(run))
    const select = (h: Holder<Sql>) => h.run((sql) => sql`select 1`)

    await expectError(AuthError, () => select(holder(pg.urlFor({ password: WRONG }))))
    await expectError(AuthError, () => select(holder(pg.urlFor({ user: 'app', password: WRONG }))))
    await expectError(ConfigRejectedError, () => select(holder(pg.urlFor({ database: 'no_such_db' }))))
    await expectError(ConnectError, async () => select(holder(pg.urlFor({ port: await freePort() }))))
    await expectError(Error, () => select(holder(via(pg.url, '127.0.0.2', remote.port)))) // TLS asked, not offered

    const proxy = await startProxy({ host: pg.host, port: pg.port })
    try {
      const silent = holder(pg.urlFor({ port: proxy.port }), { staleAfterMs: 0 })
      await select(silent)
      proxy.blackhole()
      await expectError(ConnectError, () => select(silent))
      // A call cut off by its deadline on a silent network (no ping: used a moment ago).
      proxy.heal()
      const stuck = holder(pg.urlFor({ port: proxy.port }), { callTimeoutMs: 300 })
      await select(stuck)
      await select(stuck) // after the array-type lookup that follows a first call
      proxy.blackhole()
      await expectError(CallTimeoutError, () => select(stuck))
    } finally {
      await proxy.close()
    }

    const killed = holder(pg.url, { applicationName: 'wc-sec-killed' })
    const lost = failure(() => killed.run((sql) => sql`select pg_sleep(5)`))
    // Killed once the sleep runs: killing the connect's own first query would only be retried.
    expect(await eventually(async () => (await pg.admin`select 1 from pg_stat_activity where application_name = 'wc-sec-killed' and query like '%pg_sleep%'`).length === 1)).toBe(true)
    await pg.terminate({ applicationName: 'wc-sec-killed' })
    keep(ConnectionLostError, await lost)
    await expectError(Error, () => killed.run((sql) => sql`select * from no_such_table`))

    const down = holder(pg.url, { applicationName: 'wc-sec-down' })
    await select(down)
    await pg.stopServer()
    try {
      await expectError(ConnectError, () => select(down))
    } finally {
      await pg.startServer()
    }

    for (const url of [`postgres://app:${pg.password}@[bad`, `mysql://app:${pg.password}@h/db`, `postgres://app:${pg.password}@h:99999/db`]) {
      await expectError(Error, async () => warmPostgres(url))
    }

    // The example apps, answering while the database is down, the password wrong, the URL broken.
    const urls = [pg.url, pg.urlFor({ password: WRONG }), `postgres://app:${pg.password}@[bad`]
    const answers: string[] = []
    const logs: string[] = []
    for (const url of urls) {
      const lambda = await startLambda({ handlerFile: appFile, env: { DATABASE_URL: url }, timeoutMs: 15_000 })
      const worker = await startWorker({ entry: 'functions/worker.ts', bindings: { DATABASE_URL: url } })
      try {
        for (const stop of [false, true]) {
          if (stop) await pg.stopServer()
          try {
            for (const [method, path, body] of [['GET', '/db'], ['POST', '/visits', '{"key":"sec"}'], ['GET', '/visits/count']] as const) {
              const out = await lambda.invoke(httpEvent({ method, path, body }))
              answers.push(JSON.stringify(out.result ?? out.error))
              answers.push(await (await worker.mf.dispatchFetch(`http://worker.test${path}`, { method, ...(body ? { body } : {}) })).text())
            }
          } finally {
            if (stop) await pg.startServer()
          }
        }
      } finally {
        logs.push(...lambda.logs(), worker.output())
        await lambda.kill()
        await worker.dispose()
      }
    }
    expect(answers.some((a) => a.includes('503'))).toBe(true)

    const stats = holders.map((h) => JSON.stringify(h.stats()))
    const everything = [...seen, ...errors.map(describeError), ...stats, ...answers, ...logs].join('\n')
    expect(seen.length).toBeGreaterThan(10)
    for (const secret of [pg.password, encodeURIComponent(pg.password), WRONG, encodeURIComponent(WRONG)]) {
      expect(everything.includes(secret), `a password showed up (${secret.length} characters)`).toBe(false)
    }
  }, 180_000)

  it('a password with an unencoded "/" after digits (read as a port and a path) never shows in errors', async () => {
    // "2024/Summer!" unencoded: the URL parser takes "app:2024" for host and port, the rest for the path.
    const err = await failure(() => warmPostgres('postgres://app:2024/Summer!@db.example.com:5432/shop', { connectBudgetMs: 500 }).run((sql) => sql`select 1`))
    expect(describeError(err)).not.toContain('2024/Summer!')
  })
})

describe('credentials never appear in output: the pg driver and warmPool', () => {
  it('errors, holder events, pool events and stats of pg holders and pools failing in every way', async () => {
    const seen: string[] = []
    const errors: unknown[] = []
    const options = { connectBudgetMs: 1_500, connectTimeoutMs: 500, pingTimeoutMs: 300 }
    const watch = <H extends { on: Holder<unknown>['on'] }>(h: H): H => {
      for (const event of EVENTS) h.on(event, (payload) => seen.push(JSON.stringify(payload)))
      return h
    }
    const pools: Array<ReturnType<typeof warmPool>> = []
    const pool = (url: string, more = {}) => {
      const p = warmPool(url, { ...options, ...more })
      watch(p.holder)
      // Their first argument is an error (or undefined); the second is the pg.Client, as with
      // pg-pool, which keeps its password as a hidden property and is not scanned here.
      for (const event of ['error', 'release'] as const) p.on(event, (err: unknown) => seen.push(describeError(err)))
      pools.push(p)
      return p
    }
    const keep = async (type: new (...args: never[]) => unknown, run: () => Promise<unknown>): Promise<void> => {
      const err = await failure(run)
      expect(err, `${type.name}: ${describeError(err)}`).toBeInstanceOf(type)
      errors.push(err)
    }
    for (const url of [pg.urlFor({ password: WRONG }), pg.urlFor({ user: 'app', password: WRONG })]) {
      await keep(AuthError, () => watch(warmPg(url, options)).run((c) => c.query('select 1')))
      await keep(AuthError, () => pool(url).query('select 1'))
    }
    await keep(ConfigRejectedError, () => pool(pg.urlFor({ database: 'no_such_db' })).query('select 1'))
    await keep(ConnectError, async () => pool(pg.urlFor({ port: await freePort() })).query('select 1'))
    await keep(ConfigRejectedError, () => pool(via(pg.url, '127.0.0.2', remote.port)).query('select 1')) // TLS asked, not offered

    const proxy = await startProxy({ host: pg.host, port: pg.port })
    try {
      const silent = pool(pg.urlFor({ port: proxy.port }), { staleAfterMs: 0 })
      await silent.query('select 1')
      proxy.blackhole()
      await keep(ConnectError, () => silent.query('select 1'))
      proxy.heal()
      const stuck = pool(pg.urlFor({ port: proxy.port }), { callTimeoutMs: 300 })
      await stuck.query('select 1')
      proxy.blackhole()
      await keep(CallTimeoutError, () => stuck.query('select 1'))
    } finally {
      await proxy.close()
    }

    // Killed mid-query, and killed while idle (the pool's 'error' event carries that error).
    const killed = pool(pg.url, { applicationName: 'wc-sec-pg-killed' })
    const lost = failure(() => killed.query('select pg_sleep(5)'))
    expect(await eventually(async () => (await pg.admin`select 1 from pg_stat_activity where application_name = 'wc-sec-pg-killed' and query like '%pg_sleep%'`).length === 1)).toBe(true)
    await pg.terminate({ applicationName: 'wc-sec-pg-killed' })
    errors.push(await lost)
    await killed.query('select 1')
    await pg.terminate({ applicationName: 'wc-sec-pg-killed' })
    expect(await eventually(async () => killed.holder.stats().closedBroken === 2)).toBe(true)
    const client = await killed.connect()
    errors.push(await failure(() => client.query('select * from no_such_table')))
    client.release(new Error(`released with ${pg.password} in the message`))

    for (const url of [`postgres://app:${pg.password}@[bad`, `mysql://app:${pg.password}@h/db`]) {
      await keep(Error, async () => warmPool(url))
      await keep(Error, async () => pgDriver(url))
    }
    await Promise.all(pools.map((p) => p.end()))

    const stats = pools.map((p) => JSON.stringify([p.holder.stats(), p.options, p.totalCount]))
    const everything = [...seen, ...errors.map(describeError), ...stats].join('\n')
    expect(seen.length).toBeGreaterThan(10)
    for (const secret of [pg.password, encodeURIComponent(pg.password), WRONG, encodeURIComponent(WRONG)]) {
      expect(everything.includes(secret), `a password showed up (${secret.length} characters)`).toBe(false)
    }
  }, 60_000)
})

describe('TLS, against a server that does not offer it', () => {
  it('default (verify-full for a host that is not local): fails at once with a typed error, no retries', async () => {
    const h = new Holder(postgresDriver(via(pg.url, '127.0.0.2', remote.port), { onnotice: () => {} }), {})
    const retries: unknown[] = []
    h.on('connectRetry', (e) => retries.push(e))
    const err = await failure(() => h.run((sql) => sql`select 1`))
    expect(err, describeError(err)).toBeInstanceOf(ConfigRejectedError)
    expect(err).toBeInstanceOf(TlsError)
    expect((err as Error).message).toMatch(/the server does not offer TLS/)
    expect(retries).toEqual([])
    await h.close()
  })

  it('pg, default: fails at once with a typed error, no retries', async () => {
    const h = new Holder(pgDriver(via(pg.url, '127.0.0.2', remote.port)), {})
    const retries: unknown[] = []
    h.on('connectRetry', (e) => retries.push(e))
    const err = await failure(() => h.run((c) => c.query('select 1')))
    expect(err, describeError(err)).toBeInstanceOf(ConfigRejectedError)
    expect(retries).toEqual([])
    await h.close()
  })

  it('pg, sslmode=disable in the URL: connects in plain text', async () => {
    const h = new Holder(pgDriver(`${via(pg.url, '127.0.0.2', remote.port)}?sslmode=disable`), {})
    const { rows } = await h.run((c) => c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()'))
    expect(rows[0].ssl).toBe(false)
    await h.close()
  })

  it('sslmode=disable in the URL: connects in plain text', async () => {
    const h = new Holder(postgresDriver(`${via(pg.url, '127.0.0.2', remote.port)}?sslmode=disable`, { onnotice: () => {} }), {})
    const [row] = await h.run((sql) => sql`select ssl from pg_stat_ssl where pid = pg_backend_pid()`)
    expect(row?.ssl).toBe(false)
    await h.close()
  })
})

describe('TLS, against a server with a certificate from a private CA (for localhost and 127.0.0.1)', () => {
  let tlsPg: TestPg
  let ca: TestCa
  let front: FaultProxy
  let url: string
  beforeAll(async () => {
    ca = makeCa()
    tlsPg = await startPostgres()
    await enableTls(tlsPg, ca)
    front = await startProxy({ host: tlsPg.host, port: tlsPg.port }, { host: '127.0.0.2' })
    url = via(tlsPg.url, '127.0.0.2', front.port)
  })
  afterAll(async () => {
    await front?.close()
    await tlsPg?.stop()
    ca?.cleanup()
  })

  const encrypted = async (h: Holder<Sql>): Promise<boolean> => {
    const [row] = await h.run((sql) => sql`select ssl from pg_stat_ssl where pid = pg_backend_pid()`)
    await h.close()
    return row?.ssl === true
  }

  it('default: the certificate is not trusted, a typed error, not retried', async () => {
    const h = new Holder(postgresDriver(url, { onnotice: () => {} }), {})
    const retries: unknown[] = []
    h.on('connectRetry', (e) => retries.push(e))
    const err = await failure(() => h.run((sql) => sql`select 1`))
    expect(err, describeError(err)).toBeInstanceOf(ConfigRejectedError)
    expect((err as ConfigRejectedError).sqlState).toMatch(/CERT|VERIFY|SIGNATURE|ISSUER/)
    expect(err).toBeInstanceOf(TlsError)
    expect((err as Error).message).toMatch(/^TLS failed for .*: the server's certificate was not accepted \(\w+; not retried\)\. Give the CA that signed it \(postgres: \{ ssl: \{ ca \} \}\)/)
    expect(retries).toEqual([])
    await h.close()
  })

  it('sslmode=require: connects, encrypted and unverified, as libpq does', async () => {
    expect(await encrypted(new Holder(postgresDriver(`${url}?sslmode=require`, { onnotice: () => {} }), {}))).toBe(true)
  })

  it('postgres: { ssl: { ca, servername } }: connects, verified', async () => {
    expect(await encrypted(new Holder(postgresDriver(url, { onnotice: () => {}, ssl: { ca: ca.ca, servername: 'localhost' } }), {}))).toBe(true)
  })

  it('pg, default: the certificate is not trusted, a typed error, not retried', async () => {
    const h = new Holder(pgDriver(url), {})
    const retries: unknown[] = []
    h.on('connectRetry', (e) => retries.push(e))
    const err = await failure(() => h.run((c) => c.query('select 1')))
    expect(err, describeError(err)).toBeInstanceOf(ConfigRejectedError)
    expect((err as ConfigRejectedError).sqlState).toMatch(/CERT|VERIFY|SIGNATURE|ISSUER/)
    expect(retries).toEqual([])
    await h.close()
  })

  it('pg, pg: { ssl: { ca, servername } }: connects, verified', async () => {
    const h = new Holder(pgDriver(url, { ssl: { ca: ca.ca, servername: 'localhost' } }), {})
    const { rows } = await h.run((c) => c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()'))
    expect(rows[0].ssl).toBe(true)
    await h.close()
  })

  it('default with the CA trusted (NODE_EXTRA_CA_CERTS): a certificate for other names than 127.0.0.2 is refused', async () => {
    // The deployable function, configured as documented: DATABASE_URL alone.
    const lambda = await startLambda({ handlerFile: appFile, env: { DATABASE_URL: url, NODE_EXTRA_CA_CERTS: ca.caFile }, timeoutMs: 15_000 })
    try {
      const out = await lambda.invoke(httpEvent({ method: 'GET', path: '/db' }))
      expect((out.result as { statusCode: number }).statusCode).toBe(503)
    } finally {
      await lambda.kill()
    }
  })
})

describe('holders are keyed by role and database', () => {
  const roles = ['wc_alice', 'wc_bob'] as const
  const urlOf = (role: string, database = pg.database) => pg.urlFor({ user: role, database })

  beforeAll(async () => {
    await pg.admin.begin(async (tx) => {
      // Keeps the passwords out of the statement log.
      await tx.unsafe("set local log_statement = 'none'")
      for (const role of roles) await tx.unsafe(`create role ${role} login password '${pg.password.replaceAll("'", "''")}'`)
    })
    await pg.admin.unsafe(`
      create table notes (id serial primary key, owner name not null default current_user, body text not null);
      alter table notes enable row level security;
      create policy own_rows on notes using (owner = current_user) with check (owner = current_user);
      grant select, insert on notes to ${roles.join(', ')};
      grant usage on sequence notes_id_seq to ${roles.join(', ')};
    `)
    await pg.admin.unsafe('create database wc_other') // not allowed inside the implicit transaction above
    for (const role of roles) {
      await warmPostgres(urlOf(role)).run((sql) => sql`insert into notes (body) values (${`${role}-1`}), (${`${role}-2`})`)
    }
  })

  /** Who the connection is, what it sees, and which backend serves it. */
  const probe = (role: string) =>
    warmPostgres(urlOf(role)).run(async (sql) => {
      const [row] = await sql<[{ who: string; pid: number; bodies: string[] }]>`
        select current_user as who, pg_backend_pid() as pid, array_agg(body order by body) as bodies from notes`
      return { role, ...row! }
    })

  const check = async (results: Array<{ role: string; who: string; pid: number; bodies: string[] }>): Promise<void> => {
    const pids = new Map<string, Set<number>>(roles.map((r) => [r, new Set()]))
    for (const r of results) {
      expect(r.who).toBe(r.role)
      expect(r.bodies).toEqual([`${r.role}-1`, `${r.role}-2`])
      pids.get(r.role)!.add(r.pid)
    }
    const [alice, bob] = roles.map((r) => [...pids.get(r)!])
    expect(alice!.some((pid) => bob!.includes(pid))).toBe(false)
    const rows = await pg.admin<Array<{ pid: number; usename: string }>>`select pid, usename from pg_stat_activity where pid = any(${[...alice!, ...bob!]}::int[])`
    for (const row of rows) expect(pids.get(row.usename)?.has(row.pid)).toBe(true)
  }

  it('used alternately, each role sees only its rows, on backends of its own', async () => {
    const results = []
    for (let i = 0; i < 20; i++) results.push(await probe(roles[i % 2]!))
    await check(results)
  })

  it('used concurrently, each role sees only its rows, on backends of its own', async () => {
    await check(await Promise.all(Array.from({ length: 40 }, (_, i) => probe(roles[i % 3 === 0 ? 0 : 1]))))
  })

  it('one role, two databases: two holders, two backends, each in its own database', async () => {
    const here = warmPostgres(urlOf(roles[0]))
    const there = warmPostgres(urlOf(roles[0], 'wc_other'))
    expect(there).not.toBe(here)
    const [a] = await here.run((sql) => sql`select current_database() as db, pg_backend_pid() as pid`)
    const [b] = await there.run((sql) => sql`select current_database() as db, pg_backend_pid() as pid`)
    expect([a?.db, b?.db]).toEqual([pg.database, 'wc_other'])
    expect(a?.pid).not.toBe(b?.pid)
  })
})
