/**
 * SIGTERM across worker threads (Lambda Managed Instances). There the runtime's main thread (AWS's
 * code) starts worker threads that each load the handler module, and a signal reaches only the
 * main thread: a worker's `process.on('SIGTERM')` never fires, and neither does its
 * `process.on('exit')` when the process ends. So the main thread must ask each worker to close its
 * own connections, and wait for them.
 *
 * The two halves meet on one BroadcastChannel. A worker's `withWarmconn` joins (`join`, with the
 * time its close may take). The main-thread half, loaded as a preload (`warmconn/lambda/shutdown`),
 * installs a SIGTERM listener at the first join (so a process without worker threads, a default
 * Lambda, is not changed at all), and on SIGTERM broadcasts `close` with a SharedArrayBuffer; each
 * worker lets its invocations in flight finish, closes its holders, and counts itself done in the
 * buffer. The buffer, not a message, carries the acks because the main thread may be inside
 * `process.exit()` by then (a runtime's own SIGTERM listener may call it): an `exit` listener can
 * only block, in `Atomics.wait`, while the workers, which still run, finish.
 *
 * This file imports only Node built-ins, so the preload can be bundled or copied on its own.
 * @module
 */
import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads'

const CHANNEL = 'warmconn:lambda:shutdown'
/** What the main thread allows on top of the slowest worker's close: message latency, a busy loop. */
const ACK_MARGIN_MS = 50
/** How long a worker waits for the relay to answer its join before it warns that none is loaded. */
const RELAY_ANSWER_MS = 2_000

type Message =
  | { type: 'join'; threadId: number; timeoutMs: number }
  | { type: 'joined'; threadId: number }
  | { type: 'close'; acks: SharedArrayBuffer }

let relaying = false

/**
 * The main-thread half: relays SIGTERM to every worker thread that joined and waits, at most the
 * slowest one's `sigtermTimeoutMs` plus a margin, for each to close its connections. Then, unless
 * another SIGTERM listener owns shutdown, SIGTERM is raised again with no listener left, so the
 * process ends as it would have without warmconn. Does nothing in a worker thread, and nothing at
 * all until a worker joins.
 * @example
 * // NODE_OPTIONS=--import warmconn/lambda/shutdown (the package's own entry calls it)
 * relayShutdown()
 */
export function relayShutdown(): void {
  if (!isMainThread || relaying) return
  relaying = true
  const channel = new BroadcastChannel(CHANNEL)
  // The channel must never keep a process alive that has nothing else to do.
  channel.unref()
  let joined = 0
  let waitMs = 0
  const onSigterm = (): void => void shutDown(channel, joined, waitMs + ACK_MARGIN_MS)
  channel.onmessage = (event) => {
    const message = (event as { data?: Message }).data
    if (message?.type !== 'join') return
    joined++
    waitMs = Math.max(waitMs, message.timeoutMs)
    // First in line: a listener of the runtime's that calls process.exit() must find the exit hold set.
    if (!process.listeners('SIGTERM').includes(onSigterm)) process.prependOnceListener('SIGTERM', onSigterm)
    channel.postMessage({ type: 'joined', threadId: message.threadId } satisfies Message)
  }
}

async function shutDown(channel: BroadcastChannel, expected: number, waitMs: number): Promise<void> {
  const acks = new Int32Array(new SharedArrayBuffer(4))
  const deadline = Date.now() + waitMs
  // process.exit() from elsewhere while the workers close: hold the exit until they are done.
  const holdExit = (): void => {
    for (let seen = Atomics.load(acks, 0); seen < expected && Date.now() < deadline; seen = Atomics.load(acks, 0)) {
      Atomics.wait(acks, 0, seen, Math.max(0, deadline - Date.now()))
    }
  }
  process.once('exit', holdExit)
  channel.postMessage({ type: 'close', acks: acks.buffer as SharedArrayBuffer } satisfies Message)
  // A ref'd timer: an Atomics.waitAsync alone does not keep the event loop alive.
  const keepAlive = setTimeout(() => {}, waitMs)
  for (let seen = Atomics.load(acks, 0); seen < expected && Date.now() < deadline; seen = Atomics.load(acks, 0)) {
    const wait = Atomics.waitAsync(acks, 0, seen, Math.max(0, deadline - Date.now()))
    if (wait.async) await wait.value
  }
  clearTimeout(keepAlive)
  process.removeListener('exit', holdExit)
  // Another listener (the runtime's, an extension's) owns the exit; else end as SIGTERM would have.
  if (process.listenerCount('SIGTERM') === 0) process.kill(process.pid, 'SIGTERM')
}

let joinedRelay = false

/**
 * The worker-thread half, called by `withWarmconn` in a worker thread: on the relay's `close`,
 * `drain` (the invocations in flight finish) and `close` (every holder of this thread closes)
 * share `timeoutMs`, then the thread counts itself done. Without a relay in the main thread the
 * join goes unanswered; on Lambda Managed Instances (AWS_LAMBDA_MAX_CONCURRENCY set) that is
 * logged once, since nothing can then close this thread's connections at SIGTERM.
 */
export function joinShutdown(timeoutMs: number, drain: (timeoutMs: number) => Promise<void>, close: (timeoutMs: number) => Promise<void>): void {
  if (isMainThread || joinedRelay) return
  joinedRelay = true
  const channel = new BroadcastChannel(CHANNEL)
  channel.unref()
  let answered = false
  let closing = false
  channel.onmessage = (event) => {
    const message = (event as { data?: Message }).data
    if (message?.type === 'joined' && message.threadId === threadId) answered = true
    if (message?.type !== 'close' || closing) return
    closing = true
    const acks = new Int32Array(message.acks)
    const deadline = Date.now() + timeoutMs
    void drain(timeoutMs)
      .catch(() => {})
      .then(() => close(Math.max(0, deadline - Date.now())))
      .catch(() => {})
      .then(() => {
        Atomics.add(acks, 0, 1)
        Atomics.notify(acks, 0)
      })
  }
  channel.postMessage({ type: 'join', threadId, timeoutMs } satisfies Message)
  if (process.env.AWS_LAMBDA_MAX_CONCURRENCY !== undefined) {
    setTimeout(() => {
      if (answered) return
      console.warn(
        `warmconn: worker thread ${threadId} cannot close its connections at SIGTERM: signals reach only the main thread, ` +
          `and no warmconn/lambda/shutdown relay runs there. Set NODE_OPTIONS=--import warmconn/lambda/shutdown (see the README, Lambda Managed Instances)`,
      )
    }, RELAY_ANSWER_MS).unref()
  }
}
