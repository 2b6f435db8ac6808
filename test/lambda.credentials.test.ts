/**
 * A Lambda whose database password rotates every 2 s, in the emulator (bundled as deployed,
 * frozen with SIGSTOP between invocations), on postgres.js and pg: the password function is
 * asked only for new connections, the warm one outlives every rotation, and a connection opened
 * with a stale cached password recovers in one retry. Backend pids and refused logins come from
 * the server; no password appears in anything the function printed or returned.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { HolderStats } from '../src/index.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { sleep } from './helpers/core.js'

const ROLE = 'wc_lambda_rotating'
const APP = 'wc-lambda-rotating'
const ROTATE_EVERY_MS = 2_000

let pg: TestPg
let dir: string
let file: string
let secretFile: string
const running: LambdaEmulator[] = []
const passwords: string[] = []

beforeAll(async () => {
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-lambda-rot-'))
  secretFile = join(dir, 'secret')
  file = await build('test/fixtures/lambda-rotating.ts', join(dir, 'rotating.mjs'))
  await pg.admin.unsafe(`create role ${ROLE} login`)
  await rotate()
})
afterEach(async () => {
  for (const l of running.splice(0)) await l.kill()
  await pg.terminate({ applicationName: APP })
})
afterAll(async () => {
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/**
 * A rotation: the server's password, then the store's. Run only while the function is frozen
 * (between invocations), so no connect falls between the two steps.
 */
async function rotate(): Promise<void> {
  const password = `rot-${randomBytes(12).toString('base64url')}`
  passwords.push(password)
  await pg.admin.begin(async (tx) => {
    await tx.unsafe("set local log_statement = 'none'") // keeps it out of the statement log
    await tx.unsafe(`alter role ${ROLE} password '${password}'`)
  })
  writeFileSync(secretFile, `${password}\n`, { mode: 0o600 })
}

async function refusals(since: number): Promise<number> {
  await pg.flushLog()
  return (await pg.logRecords(since)).filter((r) => r.severity === 'FATAL' && r.message.includes(`authentication failed for user "${ROLE}"`)).length
}

interface Answer { pid: number; user: string; fetches: number; connects: number[]; stats: HolderStats }

describe.each(['postgres', 'pg'])('%s: a password that rotates every 2 s', (driver) => {
  it('60 invocations across rotations: 0 failures, one warm connection kept across them, each new one with a fresh password in at most one retry', async () => {
    const l = await startLambda({
      handlerFile: file,
      env: { DRIVER: driver, SECRET_FILE: secretFile, DATABASE_URL: `${pg.urlFor({ user: ROLE, password: '' })}?application_name=${APP}` },
      timeoutMs: 15_000,
    })
    running.push(l)
    const mark = await pg.mark()
    const answers: Answer[] = []
    const killedAfter: number[] = []
    let rotations = 0
    let rotatedAt = Date.now()
    for (let i = 0; i < 60 || rotations < 4; i++) {
      const out = await l.invoke({})
      expect(out.error, JSON.stringify(out.error)).toBeUndefined()
      const answer = out.result as Answer
      answers.push(answer)
      // Frozen now. The clock's rotation, every 2 s.
      if (Date.now() - rotatedAt >= ROTATE_EVERY_MS) {
        await rotate()
        rotations++
        rotatedAt = Date.now()
      }
      // Every 10th: the cached password made stale, then the backend killed, so the next
      // invocation must open a new connection and starts with a password the server refuses.
      if (i % 10 === 5) {
        await rotate()
        rotations++
        await pg.terminate({ pid: answer.pid })
        killedAfter.push(i)
      }
      await sleep(100)
    }
    const last = answers.at(-1)!
    expect(killedAfter.at(-1)).toBeLessThan(answers.length - 1) // every kill was followed by an invocation
    expect(answers.every((a) => a.user === ROLE)).toBe(true)
    expect(rotations).toBeGreaterThanOrEqual(4)
    // The server's pids: one per connection, changing only after a kill.
    const pids = answers.map((a) => a.pid)
    for (let i = 1; i < pids.length; i++) expect(pids[i] !== pids[i - 1], `invocation ${i}`).toBe(killedAfter.includes(i - 1))
    expect(new Set(pids).size).toBe(killedAfter.length + 1)
    expect((await pg.backends(APP)).map((b) => b.pid)).toEqual([last.pid])
    // Connects happened only for new connections: the first with the fresh store, each one after
    // a kill with a stale cached password, refused once by the server, then a fresh fetch.
    expect(last.connects).toEqual([1, ...killedAfter.map(() => 2)])
    expect(last.fetches).toBe(1 + killedAfter.length)
    expect(await refusals(mark)).toBe(killedAfter.length)
    expect(last.stats).toMatchObject({ opened: killedAfter.length + 1, failures: 0, connectFailures: 0, runs: answers.length })
    // Nothing the function printed or returned carries a password.
    const everything = [...l.logs(), ...answers.map((a) => JSON.stringify(a))].join('\n')
    for (const p of passwords) expect(everything.includes(p)).toBe(false)
  }, 120_000)
})
