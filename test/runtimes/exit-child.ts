// A script that runs one query and then has nothing left to do, for test/exit-on-idle.test.ts:
// with allowExitOnIdle (the default) it must end by itself while its connection is still warm
// (before idleTimeoutMs); with allowExitOnIdle: false it ends only once the idle close came.
// Prints the holder's events on exit, the one place left to report from.
import { WebSocket } from 'ws'
import { warmPostgres } from '../../src/drivers/postgres.js'
import { warmPg, warmPool } from '../../src/drivers/pg.js'
import { warmNeon } from '../../src/drivers/neon.js'

const url = process.env.DATABASE_URL!
const options = JSON.parse(process.env.WC_TEST_OPTIONS ?? '{}') as Record<string, unknown>
const relayPort = process.env.WC_RELAY_PORT
const neon = {
  webSocketConstructor: WebSocket,
  wsProxy: (host: string, port: string | number) => `127.0.0.1:${relayPort}/v1?address=${host}:${port}`,
  useSecureWebSocket: false,
  pipelineTLS: false,
  pipelineConnect: false as const,
}

const events: string[] = []
async function main(): Promise<number> {
  switch (process.env.WC_DRIVER) {
    case 'postgres': {
      const h = warmPostgres(url, options)
      h.on('closeIdle', () => void events.push('closeIdle'))
      return Number((await h.run((sql) => sql`select pg_backend_pid() as pid`))[0]!.pid)
    }
    case 'pg': {
      const h = warmPg(url, options)
      h.on('closeIdle', () => void events.push('closeIdle'))
      return Number((await h.run((c) => c.query('select pg_backend_pid() as pid'))).rows[0].pid)
    }
    case 'pool': {
      const p = warmPool({ connectionString: url, ...options })
      p.holder.on('closeIdle', () => void events.push('closeIdle'))
      return Number((await p.query('select pg_backend_pid() as pid')).rows[0].pid)
    }
    case 'neon': {
      const h = warmNeon(url, { ...options, neon })
      h.on('closeIdle', () => void events.push('closeIdle'))
      return Number((await h.run((c) => c.query('select pg_backend_pid() as pid'))).rows[0].pid)
    }
  }
  throw new Error(`unknown WC_DRIVER ${process.env.WC_DRIVER}`)
}

main().then(
  (pid) => {
    process.stdout.write(`pid ${pid}\n`)
    process.on('exit', () => process.stdout.write(`events ${JSON.stringify(events)}\n`))
  },
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`)
    process.exitCode = 1
  },
)
