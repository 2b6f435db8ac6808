/**
 * `npx tsx bench/overhead.ts`: warmconn's own cost per warm call, with no database at all. The
 * driver is in memory and `fn` does nothing, so what is left is the holder's bookkeeping on the
 * hot path (timestamp checks, the call deadline, release). The network benchmark (`npm run
 * bench`) cannot show this: it drowns in the round trip.
 */
import { Holder, type Driver } from '../src/index.js'

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

const holder = new Holder(driver)
const fn = async (): Promise<number> => 1
for (let i = 0; i < 50_000; i++) await holder.run(fn) // warm up the JIT
const nsPerCall: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  const started = process.hrtime.bigint()
  for (let i = 0; i < CALLS; i++) await holder.run(fn)
  nsPerCall.push(Number(process.hrtime.bigint() - started) / CALLS)
}
nsPerCall.sort((a, b) => a - b)
console.log(`holder.run, in-memory driver: median ${Math.round(nsPerCall[ROUNDS >> 1]!)} ns a call, best ${Math.round(nsPerCall[0]!)} ns (${ROUNDS} x ${CALLS} calls)`)
await holder.close()
