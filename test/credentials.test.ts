/**
 * Passwords from a function (RDS IAM, Aurora DSQL, a rotating secret), against a real PostgreSQL
 * whose role password the tests change with ALTER ROLE: on postgres.js, pg and neon (through the
 * WebSocket relay), every way in. What is checked is what the server saw: backend pids, the
 * role a session runs as, the authentication failures it logged.
 */
import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthError, ConnectError, Holder, InvalidOptionError, TlsError, cachedPassword, closeAll,
  type HolderEventName, type HolderOptions, type PasswordFunction,
} from '../src/index.js'
import { postgresDriver, warmPostgres } from '../src/drivers/postgres.js'
import { pgDriver, warmPg, warmPool } from '../src/drivers/pg.js'
import { neonDriver, warmNeon, warmPool as warmNeonPool } from '../src/drivers/neon.js'
import { withRequestScope } from '../src/workers/request-scope.js'
import { hyperdriveScope } from '../src/workers/hyperdrive.js'
import { rdsIamPassword, dsqlPassword } from '../src/aws/index.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startProxy, type FaultProxy } from './harness/proxy.js'
import { startRelay, type Relay } from './harness/relay.js'
import { appName } from './helpers/core.js'

const ROLE = 'wc_rotating'
const IAM_ROLE = 'wc_iam'
// Static test credentials (AWS's documented example pair): the signers sign offline, nothing is sent.
// A session token, as a Lambda role's credentials carry, makes the token long (over 1 KB) and full of %2B, %2F, %3D.
const CREDENTIALS = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  sessionToken: randomBytes(600).toString('base64'),
}

let pg: TestPg
let relay: Relay
let remote: FaultProxy
/** Every password the server accepted or refused in this file, for the scans. */
const secrets = new Set<string>()
/** Everything warmconn produced in this file: errors, events, stats. */
const output: string[] = []

beforeAll(async () => {
  pg = await startPostgres()
  relay = await startRelay()
  // A proxy on 127.0.0.2, not in the drivers' local-host list: TLS is asked for there by default.
  remote = await startProxy({ host: pg.host, port: pg.port }, { host: '127.0.0.2' })
  await pg.admin.unsafe(`create role ${ROLE} login; create role ${IAM_ROLE} login`)
  await rotate()
})
afterAll(async () => {
  await closeAll()
  await remote?.close()
  await relay?.close()
  await pg?.stop()
})

let current = ''
/** A new password for ROLE, as a rotation does; kept out of the statement log. */
async function rotate(): Promise<string> {
  current = `rot-${randomBytes(12).toString('base64url')}`
  await setPassword(ROLE, current)
  return current
}
async function setPassword(role: string, password: string): Promise<void> {
  secrets.add(password)
  await pg.admin.begin(async (tx) => {
    await tx.unsafe("set local log_statement = 'none'")
    await tx.unsafe(`alter role ${role} password '${password.replaceAll("'", "''")}'`)
  })
}
/** The URL of `role`, without a password: the function gives it. */
const urlOf = (role: string, params: Record<string, string> = {}) => pg.urlFor({ user: role, password: '', params })

/** The server's count of refused logins for `role` since `mark`. */
async function refusals(role: string, since: number): Promise<number> {
  await pg.flushLog()
  return (await pg.logRecords(since)).filter((r) => r.severity === 'FATAL' && r.message.includes(`authentication failed for user "${role}"`)).length
}

const EVENTS: HolderEventName[] = ['connectSuccess', 'connectRetry', 'connectFail', 'reuse', 'revalidateSuccess', 'revalidateFail', 'closeIdle', 'closeLifetime', 'closeBroken', 'sessionReset', 'replay', 'release', 'callTimeout', 'close', 'warning']
function watch<H extends Holder<unknown>>(h: H): H {
  for (const event of EVENTS) h.on(event, (payload) => output.push(`${event} ${JSON.stringify(payload)}`))
  return h
}
function describeError(err: unknown): string {
  const parts = [String(err), inspect(err, { depth: 8, showHidden: true }), JSON.stringify(err) ?? '']
  for (let e: unknown = err; e instanceof Error; e = e.cause) parts.push(e.message, e.stack ?? '')
  return parts.join('\n')
}
async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run()
  } catch (err) {
    output.push(describeError(err))
    return err
  }
  throw new Error('expected a failure')
}

/** One driver as the tests use it: a holder on a password function, and what the server says about its session. */
interface Way {
  name: string
  make(url: string, password: PasswordFunction, options?: HolderOptions): Holder<unknown>
  session(h: Holder<unknown>): Promise<{ pid: number; user: string; ssl?: boolean }>
}
const SESSION = 'select pg_backend_pid() as pid, current_user as user'
// A read: a backend killed a moment before the call is then replayed on a new connection, as the
// README advises (a goodbye still in flight is otherwise a lost connection).
const READ = { idempotent: true }
const ways: Way[] = [
  {
    name: 'postgres.js',
    make: (url, password, options) => watch(new Holder(postgresDriver(url, { onnotice: () => {}, password }), options) as Holder<unknown>),
    session: (h) => (h as Holder<import('../src/drivers/postgres.js').Sql>).run(async (sql) => (await sql.unsafe(SESSION))[0] as never, READ),
  },
  {
    name: 'pg',
    make: (url, password, options) => watch(new Holder(pgDriver(url, { password }), options) as Holder<unknown>),
    session: (h) => (h as Holder<import('pg').Client>).run(async (c) => (await c.query(SESSION)).rows[0], READ),
  },
  {
    name: 'neon',
    make: (url, password, options) => watch(new Holder(neonDriver(url, relay.neonConfig(), { password }), options) as Holder<unknown>),
    session: (h) => (h as Holder<import('@neondatabase/serverless').Client>).run(async (c) => (await c.query(SESSION)).rows[0], READ),
  },
]

describe.each(ways)('$name: a password function', (way) => {
  it('is asked once per new connection; a warm connection outlives rotations; a new one gets the fresh password', async () => {
    let asked = 0
    const h = way.make(urlOf(ROLE, { application_name: appName('rot') }), () => (asked++, current))
    const first = await way.session(h)
    expect(first.user).toBe(ROLE)
    for (let i = 0; i < 3; i++) {
      await rotate()
      // The old session outlives its password: no new connection, the function not asked.
      expect((await way.session(h)).pid).toBe(first.pid)
    }
    expect(asked).toBe(1)
    await pg.terminate({ pid: first.pid })
    const next = await way.session(h)
    expect(next.pid).not.toBe(first.pid)
    expect(next.user).toBe(ROLE)
    expect(asked).toBe(2)
    expect(h.stats()).toMatchObject({ opened: 2, failures: 0 })
    await h.close()
  })

  it('a stale cached password is recovered in one retry: one refusal on the server, one fresh fetch', async () => {
    let fetches = 0
    const password = cachedPassword(() => (fetches++, current), { lifetimeMs: 600_000 })
    const h = way.make(urlOf(ROLE), password)
    const connects: Array<{ attempts: number }> = []
    h.on('connectSuccess', (e) => connects.push(e))
    const first = await way.session(h)
    await rotate() // the cached password is now stale
    await pg.terminate({ pid: first.pid })
    const mark = await pg.mark()
    const next = await way.session(h)
    expect(next.pid).not.toBe(first.pid)
    expect(next.user).toBe(ROLE)
    expect(connects.map((c) => c.attempts)).toEqual([1, 2])
    expect(fetches).toBe(2)
    expect(await refusals(ROLE, mark)).toBe(1)
    expect(h.stats()).toMatchObject({ failures: 0, connectFailures: 0 })
    await h.close()
  })

  it('a burst of new connections with a stale cached password: each retried once, one fresh fetch for all of them', async () => {
    let fetches = 0
    const password = cachedPassword(() => (fetches++, current), { lifetimeMs: 600_000 })
    const h = way.make(urlOf(ROLE), password, { maxConnections: 5 })
    const connects: Array<{ attempts: number }> = []
    h.on('connectSuccess', (e) => connects.push(e))
    await way.session(h)
    await rotate()
    const mark = await pg.mark()
    // One call takes the warm connection, the others open new ones, all with the stale password.
    // (A lazy connect refused may then find the warm one free and take it: fewer new ones.)
    const sessions = await Promise.all(Array.from({ length: 5 }, () => way.session(h)))
    expect(sessions.every((s) => s.user === ROLE)).toBe(true)
    // Every new connection after the rotation logged in with one fresh fetch, shared by all. (A
    // refused lazy connect whose call then found the warm connection free opens none: if all of
    // them did, there was nothing to fetch for; seen under load.)
    expect(fetches).toBe(connects.length > 1 ? 2 : 1)
    expect(connects.slice(1).every((c) => c.attempts <= 2)).toBe(true)
    // At most one refusal per new connect started (four), never more: no storm.
    const refused = await refusals(ROLE, mark)
    expect(refused).toBeGreaterThanOrEqual(1)
    expect(refused).toBeLessThanOrEqual(4)
    expect(h.stats()).toMatchObject({ failures: 0, connectFailures: 0 })
    await h.close()
  })

  it('a password refused again after a fresh fetch fails with AuthError: two attempts, never a storm', async () => {
    let asked = 0
    const h = way.make(urlOf(ROLE), () => (asked++, `wrong-${asked}`))
    const mark = await pg.mark()
    const err = await failure(() => way.session(h))
    expect(err, describeError(err)).toBeInstanceOf(AuthError)
    expect((err as AuthError).sqlState).toBe('28P01')
    expect((err as Error).message).toMatch(/a fresh password from the password function \((postgres\.|pg\.)?password\) was refused too/i)
    expect(asked).toBe(2)
    expect(await refusals(ROLE, mark)).toBe(2)
    // The next call is a new connect: again one fresh fetch at most.
    await failure(() => way.session(h))
    expect(asked).toBe(4)
    expect(h.stats()).toMatchObject({ opened: 0, connectFailures: 2, connectRetries: 0 })
    await h.close()
  })

  it('a function that throws is retried like a transient failure, then a ConnectError naming it', async () => {
    let asked = 0
    const h = way.make(urlOf(ROLE), () => {
      asked++
      throw new Error('credentials service unavailable')
    }, { connectRetries: 2, connectBackoffBaseMs: 1 })
    const err = await failure(() => way.session(h))
    expect(err, describeError(err)).toBeInstanceOf(ConnectError)
    expect((err as ConnectError).causeCode).toBe('PASSWORD_FUNCTION_FAILED')
    expect((err as Error).message).toMatch(/the password function \(.*password\) failed: credentials service unavailable/)
    expect(asked).toBe(3)
    await h.close()
  })

  it('a function that never returns is cut off at connectTimeoutMs; one that returns no string fails at once', async () => {
    const silent = way.make(urlOf(ROLE), () => new Promise<string>(() => {}), { connectTimeoutMs: 300, connectBudgetMs: 500 })
    const late = await failure(() => way.session(silent))
    expect(late, describeError(late)).toBeInstanceOf(ConnectError)
    expect((late as ConnectError).causeCode).toBe('PASSWORD_FUNCTION_TIMEOUT')
    await silent.close()
    let asked = 0
    const bad = way.make(urlOf(ROLE), (() => (asked++, undefined)) as unknown as PasswordFunction)
    const none = await failure(() => way.session(bad))
    expect(none, describeError(none)).toBeInstanceOf(ConnectError)
    expect((none as ConnectError).causeCode).toBe('PASSWORD_FUNCTION_UNUSABLE')
    expect(asked).toBe(1)
    await bad.close()
  })

})

describe.each(ways.slice(0, 2))('$name: TLS with a password function', (way) => {
  it("keeps warmconn's default: a host that is not local still gets verified TLS (here refused by a server without it)", async () => {
    const url = pg.urlFor({ user: ROLE, password: '', port: remote.port }).replace('127.0.0.1', '127.0.0.2')
    let asked = 0
    const h = way.make(url, () => (asked++, current))
    const err = await failure(() => way.session(h))
    expect(err, describeError(err)).toBeInstanceOf(TlsError)
    expect(asked).toBe(1)
    await h.close()
  })
})

describe('every way in takes a password function', () => {
  it('warmPostgres, warmPg, warmPool (pg and neon), warmNeon, withRequestScope, hyperdriveScope: each session runs as the rotating role', async () => {
    const password = () => current
    const url = urlOf(ROLE)
    const users: string[] = []
    users.push((await warmPostgres(url, { postgres: { password, onnotice: () => {} } }).run((sql) => sql`select current_user as u`))[0]!.u)
    users.push((await warmPg(url, { pg: { password } }).run((c) => c.query('select current_user as u'))).rows[0].u)
    users.push((await warmPool(url, { pg: { password } }).query('select current_user as u')).rows[0].u)
    users.push((await warmNeon(url, { neon: relay.neonConfig(), password }).run((c) => c.query('select current_user as u'))).rows[0].u)
    users.push((await warmNeonPool(url, { neon: relay.neonConfig(), password }).query('select current_user as u')).rows[0].u)
    const closing: Array<Promise<unknown>> = []
    const ctx = { waitUntil: (p: Promise<unknown>) => void closing.push(p) }
    users.push(await withRequestScope(ctx, { url, options: { postgres: { password, onnotice: () => {} } } }, async (db) => (await db.run((sql) => sql`select current_user as u`))[0]!.u))
    users.push(await withRequestScope(ctx, hyperdriveScope({ connectionString: url }, { postgres: { password, onnotice: () => {} } }), async (db) => (await db.run((sql) => sql`select current_user as u`))[0]!.u))
    await Promise.all(closing)
    expect(users).toEqual(Array(7).fill(ROLE))
  })

  it('refuses a password function beside a password in the URL, and a password that is neither string nor function', () => {
    const withPassword = pg.urlFor({ user: ROLE, password: 'in-url' })
    expect(() => postgresDriver(withPassword, { password: () => 'x' })).toThrow(InvalidOptionError)
    expect(() => pgDriver(withPassword, { password: () => 'x' })).toThrow(InvalidOptionError)
    expect(() => neonDriver(withPassword, relay.neonConfig(), { password: () => 'x' })).toThrow(InvalidOptionError)
    expect(() => postgresDriver(urlOf(ROLE), { password: 42 as never })).toThrow(/postgres\.password.*a string or a function/)
    expect(() => neonDriver(urlOf(ROLE), relay.neonConfig(), { password: 42 as never })).toThrow(/"password".*a string or a function/)
  })
})

describe('a token made by the real @aws-sdk/rds-signer, as the role\'s password', () => {
  it('signs offline, once for a burst of concurrent connects, and each driver logs in with it (length and characters intact)', async () => {
    let signings = 0
    // A credential provider is asked once per signing: it counts them.
    const credentials = async () => (signings++, CREDENTIALS)
    const password = rdsIamPassword({ hostname: pg.host, port: pg.port, username: IAM_ROLE, region: 'us-east-1', credentials })
    const token = await password()
    expect(token.startsWith(`${pg.host}:${pg.port}/?Action=connect&DBUser=${IAM_ROLE}&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F`)).toBe(true)
    expect(token).toMatch(/&X-Amz-Expires=900&X-Amz-Security-Token=[^&]+&X-Amz-Signature=[0-9a-f]{64}&X-Amz-SignedHeaders=host$/)
    expect(token.length).toBeGreaterThan(1_000)
    expect(token).toMatch(/%2B.*%2F|%2F.*%2B/)
    await setPassword(IAM_ROLE, token)
    const url = urlOf(IAM_ROLE)
    for (const way of ways) {
      const h = way.make(url, password, { maxConnections: 5 })
      const sessions = await Promise.all(Array.from({ length: 5 }, () => way.session(h)))
      expect(new Set(sessions.map((s) => s.pid)).size, way.name).toBe(5)
      expect(sessions.every((s) => s.user === IAM_ROLE)).toBe(true)
      await h.close()
    }
    expect(signings).toBe(1)
  })

  it('a refused token is never served from the cache again: signed anew once, then AuthError', async () => {
    let signings = 0
    const password = rdsIamPassword({ hostname: pg.host, port: pg.port, username: ROLE, region: 'us-east-1', credentials: async () => (signings++, CREDENTIALS) })
    secrets.add(await password()) // cached, and not ROLE's password
    expect(signings).toBe(1)
    const h = ways[0]!.make(urlOf(ROLE), password)
    const err = await failure(() => ways[0]!.session(h))
    expect(err, describeError(err)).toBeInstanceOf(AuthError)
    expect(signings).toBe(2)
    secrets.add(await password())
    await h.close()
  })

  it('the helpers check their options, naming the one at fault', () => {
    expect(() => rdsIamPassword({ hostname: 'h', port: 0, username: 'u' })).toThrow(/rdsIamPassword\.port/)
    expect(() => rdsIamPassword({ hostname: 'h', port: 5432, username: 'u', regoin: 'x' } as never)).toThrow(/rdsIamPassword\.regoin.*unknown option/)
    expect(() => dsqlPassword({ hostname: '' })).toThrow(/dsqlPassword\.hostname/)
    expect(() => dsqlPassword({ hostname: 'h', expiresInMs: 1500 })).toThrow(/dsqlPassword\.expiresInMs/)
    expect(String(rdsIamPassword({ hostname: 'h', port: 5432, username: 'u', credentials: CREDENTIALS }))).not.toContain(CREDENTIALS.secretAccessKey)
  })

  it('dsqlPassword signs a DbConnectAdmin or DbConnect token with the real @aws-sdk/dsql-signer, offline', async () => {
    const host = 'abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws'
    const admin = await dsqlPassword({ hostname: host, region: 'us-east-1', admin: true, credentials: CREDENTIALS })()
    const user = await dsqlPassword({ hostname: host, region: 'us-east-1', expiresInMs: 3_600_000, credentials: CREDENTIALS })()
    secrets.add(admin).add(user)
    expect(admin).toMatch(new RegExp(`^${host.replaceAll('.', '\\.')}/\\?Action=DbConnectAdmin&.*X-Amz-Expires=900&`))
    expect(user).toMatch(/\?Action=DbConnect&.*X-Amz-Expires=3600&/)
  })
})

describe('no password from a function in any output', () => {
  it('errors, events and stats of every test above, and a function whose own error quotes its last token', async () => {
    let n = 0
    const tokens: string[] = []
    const h = ways[1]!.make(urlOf(ROLE), () => {
      n++
      if (n === 1) return (tokens.push(current), current)
      throw new Error(`token ${tokens[0]} could not be renewed`)
    }, { connectRetries: 1, connectBackoffBaseMs: 1 })
    const first = await ways[1]!.session(h)
    await pg.terminate({ pid: first.pid })
    await failure(() => ways[1]!.session(h))
    output.push(JSON.stringify(h.stats()))
    await h.close()
    const everything = output.join('\n')
    expect(output.length).toBeGreaterThan(50)
    for (const secret of secrets) {
      for (const form of [secret, encodeURIComponent(secret)]) {
        expect(everything.includes(form), `a password showed up (${form.length} characters)`).toBe(false)
      }
    }
  })
})
