/**
 * The live report: one column per runtime, one row per thing worth comparing. Pure: tallies in,
 * lines out, at most 78 characters wide so a terminal can redraw it in place.
 * @module
 */
import type { HolderStats } from '../../src/index.js'
import { p50, type Kind, type Tally } from './tally.js'

const LABEL_WIDTH = 30
const COLUMN_WIDTH = 24

type Row = [label: string, cell: (t: Tally) => string]

const counter = (key: keyof HolderStats) => (t: Tally) => (t.stats ? String(t.stats[key]) : '-')
const latency = (kind: Kind) => (t: Tally) => ms(t.times(kind)[0])

const ROWS: Row[] = [
  ['requests served', (t) => String(t.served)],
  ['connections opened', counter('opened')],
  ['queries on a warm connection', counter('reused')],
  ['stale checks (revalidations)', counter('revalidated')],
  ['reconnects after a dead one', counter('reconnected')],
  ['idle closes', counter('closedIdle')],
  ['latency: cold start', latency('cold')],
  ['         warm (p50)', (t) => (t.times('warm').length ? `${ms(p50(t.times('warm')))} (n=${t.times('warm').length})` : '-')],
  ['         stale (checked)', latency('stale')],
  ['         after the kill', latency('killed')],
  ['         after idle close', latency('idle')],
  ['backend pids used', (t) => t.pids.join(' ') || '-'],
  ['on the server now', (t) => t.onServer.map((b) => `${b.pid} ${b.state}`).join(', ') || 'none'],
]

/** A duration for people: two decimals below 10 ms, where they still mean something. */
export function ms(value: number | undefined): string {
  return value === undefined ? '-' : `${value.toFixed(value < 10 ? 2 : 1)} ms`
}

/** @example screen.show(report(tallies, 'after step 2/6')) */
export function report(tallies: Tally[], when: string): string[] {
  const line = (label: string, cells: string[]) =>
    `${label.padEnd(LABEL_WIDTH)}${cells.map((c) => c.padEnd(COLUMN_WIDTH)).join('')}`.trimEnd()
  return [
    line(`report, ${when}`, tallies.map((t) => t.runtime.label)),
    '-'.repeat(LABEL_WIDTH + COLUMN_WIDTH * tallies.length - 2),
    ...ROWS.map(([label, cell]) => line(label, tallies.map(cell))),
  ]
}
