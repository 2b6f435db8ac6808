/**
 * The terminal: a log that grows, and below it the live report, redrawn in place on a terminal
 * and printed again after each step elsewhere (a pipe or CI log cannot redraw). Every line passes
 * through the secrets filter, so a password cannot reach the output even inside an error message.
 * @module
 */

export interface Screen {
  /** Appends a line to the log (above the report on a terminal). */
  say(line: string): void
  /** Replaces the live report. */
  show(report: string[]): void
  /** Never print `secret`: it is replaced wherever it appears. */
  hide(secret: string): void
}

/** Moves the cursor to the start of the line `n` lines up, and clears from there down. */
const erase = (n: number) => (n > 0 ? `\x1b[${n}F\x1b[0J` : '')

/** @example const screen = createScreen(); screen.say('starting ...'); screen.show(['a', 'b']) */
export function createScreen(out: NodeJS.WriteStream = process.stdout): Screen {
  const secrets: string[] = []
  const clean = (text: string) => secrets.reduce((t, s) => t.replaceAll(s, '***'), text)
  let report: string[] = []
  if (!out.isTTY) {
    return {
      say: (line) => void out.write(`${clean(line)}\n`),
      show: (lines) => void out.write(`${clean(['', ...lines, ''].join('\n'))}\n`),
      hide: (secret) => void secrets.push(secret),
    }
  }
  // Lines wider than the terminal wrap and would throw the count off: the report stays narrow.
  const draw = () => out.write(clean(report.map((line) => `${line}\n`).join('')))
  return {
    say(line) {
      out.write(`${erase(report.length)}${clean(line)}\n`)
      draw()
    },
    show(lines) {
      out.write(erase(report.length))
      report = ['', ...lines]
      draw()
    },
    hide: (secret) => void secrets.push(secret),
  }
}
