/**
 * A bound that a runtime adapter puts on every call started inside one unit of work (a Lambda
 * invocation's deadline): the holder cuts a call off there even if callTimeoutMs is longer. On
 * Lambda Managed Instances the runtime does not stop an invocation at its timeout (the code keeps
 * running), so without it a call stuck on a silent network outlives its invocation. The adapter
 * owns how the bound is found for the current call (AsyncLocalStorage in src/lambda); the core
 * only asks. Without an adapter it costs one call returning undefined.
 * @module
 */

/** Epoch ms by which a call started now must end, or undefined when none applies. */
export type DeadlineSource = () => number | undefined

let source: DeadlineSource | undefined

/** Installs the adapter's source (the last one installed wins). */
export function provideDeadline(fn: DeadlineSource): void {
  source = fn
}

/** The bound on a call started now, if the current unit of work has one. */
export function ambientDeadline(): number | undefined {
  return source?.()
}
