/**
 * A Durable Object (in Miniflare's workerd) whose connection() gives a password function, against
 * a real PostgreSQL whose role password the test rotates: the object's warm connection outlives
 * the rotations, a new one is opened with the current password, a password the server refuses
 * arrives at the Worker as AuthError, and no password crosses in any reply or log.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type TestPg } from './harness/pg.js'
import { startWorker, type TestWorker } from './harness/worker.js'

const ROLE = 'wc_do_rotating'
let pg: TestPg
let w: TestWorker
const passwords: string[] = []
const replies: string[] = []

beforeAll(async () => {
  pg = await startPostgres()
  await pg.admin.unsafe(`create role ${ROLE} login`)
  w = await startWorker({
    entry: 'test/fixtures/workers/rotating.ts',
    bindings: { ROLE_URL: `${pg.urlFor({ user: ROLE, password: '' })}?application_name=wc-do-rotating` },
    durableObjects: { ROTATING: 'RotatingHolder' },
  })
}, 60_000)
afterAll(async () => {
  await w?.dispose()
  await pg?.stop()
})

async function rotateServer(): Promise<string> {
  const password = `do-${randomBytes(12).toString('base64url')}`
  passwords.push(password)
  await pg.admin.begin(async (tx) => {
    await tx.unsafe("set local log_statement = 'none'")
    await tx.unsafe(`alter role ${ROLE} password '${password}'`)
  })
  return password
}
async function post(path: string, body: object = {}): Promise<any> {
  const res = await w.fetch('POST', path, JSON.stringify(body))
  replies.push(res.text)
  return res.body
}

describe('Durable Object with a password function', () => {
  it('keeps its warm connection across rotations, opens a new one with the current password, and a refused one arrives as AuthError', async () => {
    await post('/set', { password: await rotateServer() })
    const first = await post('/query')
    expect(first).toMatchObject({ user: ROLE })
    for (let i = 0; i < 3; i++) {
      await post('/set', { password: await rotateServer() })
      expect((await post('/query')).pid).toBe(first.pid)
    }
    expect((await post('/asked')).asked).toBe(1)
    await pg.terminate({ pid: first.pid })
    const next = await post('/query')
    expect(next.user).toBe(ROLE)
    expect(next.pid).not.toBe(first.pid)
    expect((await post('/asked')).asked).toBe(2)
    // The server rotates, the object is not told: its next new connection is refused twice.
    await rotateServer()
    await pg.terminate({ pid: next.pid })
    const refused = await post('/query')
    expect(refused.error).toMatchObject({ name: 'AuthError', code: 'WARMCONN_AUTH_FAILED', sqlState: '28P01' })
    expect(refused.error.message).toMatch(/a fresh password from the password function \(postgres\.password\) was refused too/i)
    expect((await post('/asked')).asked).toBe(4)
    // The store fails, its error quoting the last password it gave: redacted in the object's reply.
    const last = passwords.at(-2)!
    await post('/set', { password: last, failing: true })
    const down = await post('/query')
    expect(down.error).toMatchObject({ name: 'ConnectError', code: 'WARMCONN_CONNECT_FAILED', causeCode: 'PASSWORD_FUNCTION_FAILED' })
    expect(down.error.message).toMatch(/the password function \(postgres\.password\) failed: could not renew \*\*\*/)
    const everything = [...replies, w.output()].join('\n')
    for (const p of passwords) expect(everything.includes(p)).toBe(false)
  }, 60_000)
})
