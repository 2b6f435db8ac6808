/**
 * One warmconn holder inside the runtime under test (Bun, Deno, or Node for comparison), driven
 * by test/runtimes.test.ts: one JSON command per line on stdin, one JSON reply per line on
 * stdout, and the holder's events as they happen. warmconn is imported by its package name, so
 * the runtime resolves it through package.json `exports` to the built `dist/`, as a user's would.
 *
 * When stdin ends, the child stops listening and holds nothing but the holder, which it never
 * closes: the process must end by itself once the idle timer has closed the connection.
 *
 * Adding a driver is one entry in DRIVERS (the test runs every entry on every runtime).
 * @module
 */
import { createInterface } from 'node:readline'

/** A holder's client, whatever the driver: postgres.js's `sql`, pg's `Client`. */
type Client = any

/** The part of a holder the child uses, the same for every driver. */
interface Holder {
  run<T>(fn: (client: Client) => Promise<T>, options?: { idempotent?: boolean }): Promise<T>
  stats(): unknown
  on(event: string, fn: (payload: unknown) => void): unknown
}

export interface DriverEntry {
  /** The package entry point, e.g. `warmconn/postgres`. */
  module: string
  /** Creates the holder from that module's exports. */
  open(exports: any, url: string, options: Record<string, unknown>): Holder
  /** Runs one statement through the simple protocol and returns its rows. */
  exec(client: Client, text: string): Promise<Record<string, unknown>[]>
}

export const DRIVERS: Record<string, DriverEntry> = {
  'postgres.js': {
    module: 'warmconn/postgres',
    open: (m, url, options) => m.warmPostgres(url, options),
    exec: async (sql, text) => [...(await sql.unsafe(text))],
  },
  pg: {
    module: 'warmconn/pg',
    open: (m, url, options) => m.warmPg(url, options),
    exec: async (client, text) => (await client.query(text)).rows,
  },
}

/** What the parent sends. */
export type Command =
  | { op: 'query'; text: string; idempotent?: boolean }
  /** Runs the statements and returns, leaving whatever transaction they opened. */
  | { op: 'abandon'; statements: string[] }
  /** Runs the statements, then throws. */
  | { op: 'throw'; statements: string[] }

/** What the child writes: a reply per command, or an event. */
export type Message =
  | { ready: true; runtime: string }
  | { reply: true; ok: true; rows: Record<string, unknown>[]; stats: Record<string, number> }
  | { reply: true; ok: false; error: { name: string; code?: string; message: string }; stats: Record<string, number> }
  | { event: string }

const EVENTS = ['connectSuccess', 'connectRetry', 'connectFail', 'revalidateSuccess', 'revalidateFail', 'closeIdle', 'closeLifetime', 'closeBroken', 'sessionReset', 'replay', 'callTimeout', 'close']

async function main(): Promise<void> {
  const driver = DRIVERS[process.env.WC_TEST_DRIVER ?? '']
  if (!driver) throw new Error(`WC_TEST_DRIVER: expected one of ${Object.keys(DRIVERS).join(', ')}`)
  const exports = await import(driver.module)
  const holder = driver.open(exports, process.env.DATABASE_URL!, JSON.parse(process.env.WC_TEST_OPTIONS ?? '{}'))
  const send = (message: Message): void => void process.stdout.write(`${JSON.stringify(message)}\n`)
  for (const event of EVENTS) holder.on(event, () => send({ event }))

  const handle = async (command: Command): Promise<Record<string, unknown>[]> => {
    switch (command.op) {
      case 'query':
        return holder.run((client) => driver.exec(client, command.text), { idempotent: command.idempotent === true })
      case 'abandon':
        return holder.run(async (client) => {
          for (const text of command.statements) await driver.exec(client, text)
          return []
        })
      case 'throw':
        return holder.run(async (client) => {
          for (const text of command.statements) await driver.exec(client, text)
          throw new Error('thrown on purpose')
        })
    }
  }

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  // One command at a time, in order: the parent waits for each reply.
  let queue = Promise.resolve()
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      const stats = () => holder.stats() as Record<string, number>
      try {
        send({ reply: true, ok: true, rows: await handle(JSON.parse(line) as Command), stats: stats() })
      } catch (err) {
        const e = err as Error & { code?: string }
        send({ reply: true, ok: false, error: { name: e.name, code: e.code, message: e.message }, stats: stats() })
      }
    })
  })
  // Nothing holds the process now but the holder's connection: see the module comment.
  lines.on('close', () => process.stdin.destroy())
  send({ ready: true, runtime: runtimeName() })
}

function runtimeName(): string {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } }
  if (g.Bun) return `Bun ${g.Bun.version}`
  if (g.Deno) return `Deno ${g.Deno.version.deno}`
  return `Node ${process.versions.node}`
}

if (process.env.WC_TEST_CHILD === '1') {
  main().catch((err: unknown) => {
    process.stderr.write(`child failed: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exitCode = 1
  })
}
