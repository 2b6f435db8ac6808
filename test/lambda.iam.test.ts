/**
 * A Lambda logging in with tokens from AWS's real signers (@aws-sdk/rds-signer,
 * @aws-sdk/dsql-signer), bundled as deployed and run in the Lambda emulator, credentials and
 * region from the function's environment as on Lambda. The warm connection outlives its token's
 * expiry; a new connection gets a freshly signed one; a token is signed once per lifetime.
 *
 * PostgreSQL cannot verify an AWS signature as RDS does, so the test plays that part: the
 * function hands each new token to a local endpoint here, which makes it the role's password
 * (ALTER ROLE, kept out of the statement log) before the function connects with it. The token
 * itself is the signer's, byte for byte.
 */
import { createServer, type Server } from 'node:http'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { HolderStats } from '../src/index.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { build, startLambda, type LambdaEmulator } from './harness/lambda/emulator.js'
import { sleep } from './helpers/core.js'

const ROLE = 'wc_lambda_iam'
const APP = 'wc-lambda-iam'

let pg: TestPg
let dir: string
let file: string
let sink: Server
let sinkUrl: string
const tokens: string[] = []
const running: LambdaEmulator[] = []

beforeAll(async () => {
  pg = await startPostgres()
  dir = mkdtempSync(join(tmpdir(), 'warmconn-lambda-iam-'))
  file = await build('test/fixtures/lambda-iam.ts', join(dir, 'iam.mjs'))
  await pg.admin.unsafe(`create role ${ROLE} login`)
  sink = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const token = Buffer.concat(chunks).toString('utf8')
      tokens.push(token)
      pg.admin
        .begin(async (tx) => {
          await tx.unsafe("set local log_statement = 'none'")
          await tx.unsafe(`alter role ${ROLE} password '${token.replaceAll("'", "''")}'`)
        })
        .then(() => res.writeHead(204).end(), () => res.writeHead(500).end())
    })
  })
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve))
  const address = sink.address()
  sinkUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/token`
})
afterEach(async () => {
  for (const l of running.splice(0)) await l.kill()
  await pg.terminate({ applicationName: APP })
})
afterAll(async () => {
  await new Promise((resolve) => sink?.close(resolve))
  await pg?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

interface Answer { pid: number; user: string; signed: number; stats: HolderStats }

async function lambda(env: Record<string, string>): Promise<LambdaEmulator> {
  const l = await startLambda({
    handlerFile: file,
    env: {
      ...env,
      DB_HOST: pg.host, DB_PORT: String(pg.port), DB_USER: ROLE, APP, TOKEN_SINK: sinkUrl,
      // What Lambda puts in a function's environment: its role's temporary credentials and region.
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'ASIAIOSFODNN7EXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      AWS_SESSION_TOKEN: randomBytes(600).toString('base64'),
    },
    timeoutMs: 15_000,
  })
  running.push(l)
  return l
}
async function call(l: LambdaEmulator): Promise<Answer> {
  const out = await l.invoke({})
  if (out.error) throw new Error(`invocation failed: ${out.error.errorType}: ${out.error.errorMessage}`)
  return out.result as Answer
}
const scan = (l: LambdaEmulator, answers: Answer[]) => {
  const everything = [...l.logs(), ...answers.map((a) => JSON.stringify(a))].join('\n')
  for (const token of tokens) expect(everything.includes(token)).toBe(false)
}

describe('IAM tokens from the real signers, in a bundled Lambda', () => {
  it('rds-signer: 20 warm invocations on one backend, a reconnect after a kill reuses the cached token (signed once)', async () => {
    const l = await lambda({ SIGNER: 'rds' })
    const answers: Answer[] = []
    for (let i = 0; i < 10; i++) answers.push(await call(l))
    await pg.terminate({ pid: answers[0]!.pid })
    for (let i = 0; i < 10; i++) answers.push(await call(l))
    expect(answers.every((a) => a.user === ROLE)).toBe(true)
    expect(new Set(answers.slice(0, 10).map((a) => a.pid)).size).toBe(1)
    expect(new Set(answers.slice(10).map((a) => a.pid)).size).toBe(1)
    expect(answers[10]!.pid).not.toBe(answers[0]!.pid)
    const last = answers.at(-1)!
    expect(last.signed).toBe(1)
    expect(last.stats).toMatchObject({ opened: 2, failures: 0, connectFailures: 0 })
    expect(tokens.at(-1)).toMatch(/^127\.0\.0\.1:\d+\/\?Action=connect&DBUser=wc_lambda_iam&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAIOSFODNN7EXAMPLE%2F\d{8}%2Feu-west-1%2Frds-db%2Faws4_request&/)
    expect(tokens.at(-1)!.length).toBeGreaterThan(1_000)
    scan(l, answers)
  })

  it('dsql-signer, 6 s tokens: the warm connection outlives its token; the next new connection gets a fresh one', async () => {
    const l = await lambda({ SIGNER: 'dsql', TOKEN_LIFETIME_MS: '6000' })
    const answers: Answer[] = []
    for (let i = 0; i < 5; i++) answers.push(await call(l))
    // Past the token's whole life, frozen: the session it opened goes on.
    await sleep(6_500)
    for (let i = 0; i < 5; i++) answers.push(await call(l))
    expect(new Set(answers.map((a) => a.pid)).size).toBe(1)
    expect(answers.at(-1)!.signed).toBe(1)
    // A new connection now needs a token, and the cached one has expired: signed anew.
    await pg.terminate({ pid: answers[0]!.pid })
    const next = await call(l)
    answers.push(next)
    expect(next.pid).not.toBe(answers[0]!.pid)
    expect(next.user).toBe(ROLE)
    expect(next.signed).toBe(2)
    expect(next.stats).toMatchObject({ opened: 2, failures: 0, connectFailures: 0 })
    expect(tokens.at(-1)).toMatch(/^127\.0\.0\.1\/\?Action=DbConnect&.*X-Amz-Expires=6&/)
    scan(l, answers)
  }, 30_000)
})
