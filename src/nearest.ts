/**
 * "Did you mean": the known name closest to a misspelt one, so an error can name the fix.
 * @module
 */

/**
 * The candidate with the fewest single-character edits from `name` (case-insensitive), or
 * undefined when there are no candidates.
 * @example nearest('WARMCONN_STALEAFTER_MS', ['WARMCONN_STALE_AFTER_MS', 'WARMCONN_IDLE_TIMEOUT_MS']) // 'WARMCONN_STALE_AFTER_MS'
 */
export function nearest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) [best, bestDistance] = [candidate, d]
  }
  return best
}

/** Levenshtein distance, one row at a time. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}
