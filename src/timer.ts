/**
 * Background timers that never keep a Node process alive (unref'd) and work in workerd, where
 * `setTimeout` returns a number. Decisions never rely on them alone: a frozen process fires no
 * timers, so the holder re-checks timestamps on every use.
 *
 * The other helpers here serve a call in progress and are deliberately NOT unref'd: a caller is
 * waiting on them, and an unref'd backoff would let Node (and the Lambda runtime) exit mid-call.
 */

/**
 * A timer for the earliest of a stream of deadlines (epoch ms). Asking for a deadline no earlier
 * than the one it is armed for does nothing, so a warm call that pushes a deadline later costs a
 * comparison, not a timer reset. When it fires, its owner re-checks by timestamps and asks again.
 */
export interface DeadlineTimer {
  /** Fires at `at` at the latest. */
  armBy(at: number): void
  cancel(): void
}

export function deadlineTimer(fn: () => void): DeadlineTimer {
  let handle: ReturnType<typeof setTimeout> | undefined
  let dueAt: number | undefined
  const cancel = (): void => {
    if (handle !== undefined) clearTimeout(handle)
    handle = dueAt = undefined
  }
  return {
    armBy(at) {
      if (dueAt !== undefined && dueAt <= at) return
      cancel()
      dueAt = at
      handle = setTimeout(() => {
        handle = dueAt = undefined
        fn()
      }, Math.max(0, at - Date.now()))
      unref(handle)
    },
    cancel,
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

/**
 * Waits for `promise` to settle or `ms` to pass, whichever is first, and clears its timer either
 * way: a shutdown that finished early leaves no timer behind to keep the process up.
 * @example await within(Promise.all(closing), 500)
 */
export function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let handle: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<void>((resolve) => {
    handle = setTimeout(resolve, ms)
  })
  const settled = promise.then(
    () => {},
    () => {},
  )
  return Promise.race([settled, deadline]).finally(() => clearTimeout(handle))
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
