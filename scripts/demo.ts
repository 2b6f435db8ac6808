/**
 * `npm start`: the example app deployed twice on one embedded PostgreSQL, as a Lambda frozen
 * between invocations and as a Worker whose Durable Object holds the connection, driven through a
 * cold start, warm requests, a stale pause, a killed backend, an idle close and a few writes, with
 * a live report of what each function and the server saw (scripts/demo/main.ts).
 *
 * This file only supervises. The demo runs in a child with a process group of its own, because a
 * Ctrl-C goes to the terminal's whole foreground group: PostgreSQL, workerd and esbuild would die
 * of it while the demo was still stopping them, and tsx kills its child outright (no cleanup at
 * all) when the child's event loop is busy for 60 ms as the signal lands. Here the signal is
 * passed on as a message, and the demo stops everything in order; if this process is killed
 * outright, the demo sees the IPC channel close and stops too.
 */
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { ListeningMessage, StopMessage } from './demo/shutdown.js'

const demo = spawn(process.execPath, [...process.execArgv, fileURLToPath(new URL('./demo/main.ts', import.meta.url))], {
  detached: true,
  // The demo's stdout is the terminal, so it can redraw its live report in place.
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
})

// A signal that lands while the demo is still loading is held until it listens.
let stop: StopMessage | undefined
let listening = false
const passOn = () => {
  if (stop && listening && demo.connected) demo.send(stop)
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    stop = { stop: signal }
    passOn()
  })
}
demo.on('message', (message: Partial<ListeningMessage>) => {
  listening ||= message?.listening === true
  passOn()
})
demo.on('error', (error) => {
  console.error(`could not start the demo: ${error.message}`)
  process.exit(1)
})
demo.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)))
