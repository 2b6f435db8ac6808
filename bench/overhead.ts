/**
 * `npm run bench:overhead`: warmconn's own cost per warm call.
 * 1. With no database at all (an in-memory driver, `fn` does nothing): the holder's bookkeeping.
 * 2. Against a real PostgreSQL on loopback (no proxy): raw postgres.js held by hand vs
 *    `holder.run` on the same query, in alternating rounds, so both see the same machine. The
 *    paired difference per round is the overhead; its median is printed, in CPU time (this
 *    process only, less disturbed by other load than wall time) and in wall time.
 * The network benchmark (`npm run bench`) cannot show this: it drowns in the round trip.
 */
import postgres from 'postgres'
import { Holder, type Driver } from '../src/index.js'
import { postgresDriver } from '../src/drivers/postgres.js'
import { startPostgres } from '../test/harness/pg.js'

const ROUNDS = 15
const CALLS = 100_000

const driver: Driver<object> = {
  name: 'memory',
  secrets: [],
  target: 'memory',
  async open() {
    return { client: {}, ping: async () => {}, inTransaction: () => false, rollback: async () => {}, close: async () => {}, destroy: () => {} }
  },
  classify: () => ({ kind: 'query', code: undefined, notSent: false }),
}

const memory = new Holder(driver)
const fn = async (): Promise<number> => 1
for (let i = 0; i < 50_000; i++) await memory.run(fn) // warm up the JIT
const nsPerCall: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  const started = process.hrtime.bigint()
  for (let i = 0; i < CALLS; i++) await memory.run(fn)
  nsPerCall.push(Number(process.hrtime.bigint() - started) / CALLS)
}
nsPerCall.sort((a, b) => a - b)
console.log(`holder.run, in-memory driver: median ${Math.round(nsPerCall[ROUNDS >> 1]!)} ns a call, best ${Math.round(nsPerCall[0]!)} ns (${ROUNDS} x ${CALLS} calls)`)
await memory.close()

const PG_ROUNDS = 30
const PG_CALLS = 2_000
const pg = await startPostgres()
try {
  const quiet = { onnotice: () => {} }
  const raw = postgres(pg.url, { max: 1, fetch_types: false, ...quiet })
  const holder = new Holder(postgresDriver(pg.url, quiet))
  const viaRaw = (n: number) => raw`select ${n}::int as n`
  const viaHolder = (n: number) => holder.run((sql) => sql`select ${n}::int as n`, { idempotent: true })
  const round = async (call: (n: number) => Promise<unknown>) => {
    const cpu = process.cpuUsage()
    const started = process.hrtime.bigint()
    for (let i = 0; i < PG_CALLS; i++) await call(i)
    const wall = Number(process.hrtime.bigint() - started) / PG_CALLS / 1000
    const used = process.cpuUsage(cpu)
    return { wall, cpu: (used.user + used.system) / PG_CALLS }
  }
  for (let i = 0; i < 3; i++) await round(viaRaw), await round(viaHolder)
  const cpuDiff: number[] = []
  const wallDiff: number[] = []
  const rawWall: number[] = []
  for (let r = 0; r < PG_ROUNDS; r++) {
    // Alternate which goes first, so neither always runs on a warmer machine.
    const first = r % 2 === 0 ? await round(viaRaw) : undefined
    const ours = await round(viaHolder)
    const theirs = first ?? (await round(viaRaw))
    cpuDiff.push(ours.cpu - theirs.cpu)
    wallDiff.push(ours.wall - theirs.wall)
    rawWall.push(theirs.wall)
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!
  console.log(
    `warm call on loopback PostgreSQL, warmconn over raw postgres.js (median of ${PG_ROUNDS} paired rounds of ${PG_CALLS}): ` +
      `+${median(cpuDiff).toFixed(1)} us CPU, ${median(wallDiff) >= 0 ? '+' : ''}${median(wallDiff).toFixed(1)} us wall, on a raw call of ${median(rawWall).toFixed(0)} us`,
  )
  await raw.end()
  await holder.close()
} finally {
  await pg.stop()
}
