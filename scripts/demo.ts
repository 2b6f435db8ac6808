/**
 * `npm start`: a two-minute tour on an embedded PostgreSQL. Shows, with what the server saw,
 * that warm calls reuse one backend, a killed backend is replaced without failing the call, a
 * stale connection costs one ping, and an idle connection is closed. Ctrl-C cleans up.
 */
import { startPostgres, type TestPg } from '../test/harness/pg.js'
import { Holder } from '../src/index.js'
import { postgresDriver, type Sql } from '../src/drivers/postgres.js'

const say = (line: string) => console.log(line)
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

let pg: TestPg | undefined
let holder: Holder<Sql> | undefined
async function cleanup(code: number): Promise<never> {
  await holder?.close({ timeoutMs: 500 }).catch(() => {})
  await pg?.stop().catch(() => {})
  process.exit(code)
}
process.once('SIGINT', () => void cleanup(130))
process.once('SIGTERM', () => void cleanup(143))

async function timed<T>(fn: () => Promise<T>): Promise<[T, string]> {
  const t = performance.now()
  const out = await fn()
  return [out, `${(performance.now() - t).toFixed(2)} ms`]
}

try {
  say('starting an embedded PostgreSQL ...')
  pg = await startPostgres()
  say(`  ready on 127.0.0.1:${pg.port}\n`)
  holder = new Holder(postgresDriver(pg.url, { onnotice: () => {} }), { staleAfterMs: 1_000, idleTimeoutMs: 3_000, applicationName: 'warmconn-demo' })
  holder.on('connectSuccess', (e) => say(`  [event] connected (connection #${e.connectionId}, ${e.durationMs} ms${e.replaced ? ', replacing a dead one' : ''})`))
  holder.on('revalidateSuccess', (e) => say(`  [event] idle ${e.idleMs} ms > staleAfterMs: one ping (${e.durationMs} ms)`))
  holder.on('closeBroken', (e) => say(`  [event] dropped a dead connection (${e.code ?? 'closed by the server'})`))
  holder.on('closeIdle', (e) => say(`  [event] closed connection #${e.connectionId} after ${e.idleMs} ms idle`))
  const db = holder
  const pid = async () => Number((await db.run((sql) => sql`select pg_backend_pid() as pid`))[0]!.pid)

  say('1. cold call: connects, then queries')
  const [first, coldTime] = await timed(pid)
  say(`   backend pid ${first}, ${coldTime}`)
  say('2. 20 warm calls')
  const pids = new Set<number>()
  const [, warmTime] = await timed(async () => { for (let i = 0; i < 20; i++) pids.add(await pid()) })
  say(`   backend pids seen: ${[...pids].join(', ')} (${warmTime} for all 20, no pings)`)
  say('3. the server kills our backend (pg_terminate_backend) between calls')
  await pg.terminate({ pid: first })
  const [second] = await timed(pid)
  say(`   next call succeeded on backend pid ${second}`)
  say('4. idle 1.5 s (past staleAfterMs = 1 s), then a call')
  await sleep(1_500)
  await pid()
  say('5. idle 3.5 s (past idleTimeoutMs = 3 s)')
  await sleep(3_500)
  const left = await pg.backends('warmconn-demo')
  say(`   backends of the demo left on the server: ${left.length}`)
  say(`\nstats: ${JSON.stringify(holder.stats())}`)
  await cleanup(0)
} catch (err) {
  console.error('demo failed:', err instanceof Error ? err.message : err)
  await cleanup(1)
}
