/** A one-line progress bar on stderr (a TTY); plain lines elsewhere so CI logs stay readable. */
export function progress(total: number) {
  let done = 0
  const tty = process.stderr.isTTY
  const started = Date.now()
  return {
    tick(label: string) {
      done++
      const pct = Math.round((100 * done) / total)
      const width = 30
      const filled = Math.round((width * done) / total)
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${label}`
      if (tty) process.stderr.write(`\r${bar.padEnd(100)}`)
      else if (done === total || done % Math.max(1, Math.floor(total / 20)) === 0) process.stderr.write(`${bar}\n`)
    },
    end() {
      if (tty) process.stderr.write(`\r${' '.repeat(100)}\r`)
      process.stderr.write(`done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
    },
  }
}
