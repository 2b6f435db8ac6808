/**
 * Parses the stderr log of a server started with `log_line_prefix = LOG_LINE_PREFIX`, so tests can
 * ask which statements a given backend pid or application_name ran.
 */

/** Backend pid and application_name, in a form the LINE regex below can split. */
export const LOG_LINE_PREFIX = '%p|%a|'

// `<pid>|<application_name>|<SEVERITY>:  <message>` (two spaces, as elog.c writes them). The lazy
// application_name match stops at the first `|SEVERITY:  `, so names containing `|` still parse
// unless they contain that exact sequence.
const LINE = /^(\d+)\|(.*?)\|([A-Z]+[0-9]?):  (.*)$/

// log_statement=all logs the simple protocol as `statement: SQL` and the extended protocol (what
// postgres.js uses for tagged templates) as `execute <name>: SQL`, where name is `<unnamed>` or a
// prepared statement's name such as `6u5wzrjx4822`; portal fetches read `execute fetch from ...`.
const STATEMENT = /^(?:statement|execute(?: fetch from)? [^:]*): ([\s\S]*)$/

export interface LogRecord {
  pid: number
  applicationName: string
  /** LOG, DETAIL, ERROR, FATAL, ... */
  severity: string
  /** Multi-line messages are joined with '\n'. */
  message: string
}

/** The SQL text of a log_statement record, trimmed; undefined for any other message. */
export function statementOf(record: LogRecord): string | undefined {
  if (record.severity !== 'LOG') return undefined
  return STATEMENT.exec(record.message)?.[1]?.trim()
}

export class ServerLog {
  /** Every parsed record in arrival order; an index into it is a log position. */
  readonly records: LogRecord[] = []
  private partialLine = ''
  private readonly listeners = new Set<() => void>()

  /** Feeds raw stderr text. Chunks may split lines anywhere. */
  write(chunk: string): void {
    const lines = (this.partialLine + chunk).split('\n')
    this.partialLine = lines.pop() ?? ''
    for (const line of lines) this.addLine(line)
    for (const listener of this.listeners) listener()
  }

  /** Resolves with the index of the first record at or after `from` that satisfies `test`. */
  waitFor(test: (record: LogRecord) => boolean, from: number, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const index = this.records.findIndex((record, i) => i >= from && test(record))
        if (index < 0) return
        done()
        resolve(index)
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`server log: no matching record within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        this.listeners.delete(check)
      }
      this.listeners.add(check)
      check()
    })
  }

  private addLine(line: string): void {
    const match = LINE.exec(line)
    if (match) {
      const [, pid, applicationName, severity, message] = match
      this.records.push({ pid: Number(pid), applicationName: applicationName ?? '', severity: severity ?? '', message: message ?? '' })
      return
    }
    // elog.c writes each further line of a multi-line message (e.g. a formatted query) after a tab.
    // Each message goes out in one write(), so its lines are not interleaved with other backends'.
    const last = this.records.at(-1)
    if (line.startsWith('\t') && last) last.message += '\n' + line.slice(1)
    // Anything else is initdb chatter, which is not a server record.
  }
}
