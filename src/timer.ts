/**
 * A restartable one-shot background timer (the idle close) that never keeps a Node process alive
 * (unref'd) and works in workerd, where `setTimeout` returns a number. Staleness decisions never
 * rely on it alone: a frozen process fires no timers, so the holder re-checks timestamps on
 * every use.
 *
 * The other helpers here serve a call in progress and are deliberately NOT unref'd: a caller is
 * waiting on them, and an unref'd backoff would let Node (and the Lambda runtime) exit mid-call.
 */
export interface Timer {
  start(ms: number): void
  cancel(): void
}

export function timer(fn: () => void): Timer {
  let handle: ReturnType<typeof setTimeout> | undefined
  return {
    start(ms) {
      if (handle !== undefined) clearTimeout(handle)
      handle = setTimeout(() => {
        handle = undefined
        fn()
      }, ms)
      unref(handle)
    },
    cancel() {
      if (handle !== undefined) clearTimeout(handle)
      handle = undefined
    },
  }
}

/** Runs `promise` against a deadline; the loser is ignored. `onTimeout` builds the rejection. */
export function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let handle: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<never>((_, reject) => {
    handle = setTimeout(() => reject(onTimeout()), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(handle))
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Lets socket events that are already queued (a close or error that arrived while the process
 * was frozen) be handled before a connection is handed out. setImmediate runs after the I/O
 * poll phase in Node; elsewhere a zero timeout does the same job.
 */
export function settle(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate
  return new Promise((resolve) => (immediate ? immediate(resolve) : setTimeout(resolve, 0)))
}

function unref(handle: unknown): void {
  ;(handle as { unref?: () => void } | undefined)?.unref?.()
}
