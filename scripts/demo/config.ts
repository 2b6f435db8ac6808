/**
 * The demo's settings: lifecycle timings short enough that a stale ping and an idle close both
 * happen within a minute, passed to both functions the way a deployment would set them.
 * @module
 */

/** A connection idle this long is pinged before use (the default, 5 s, would make the demo slow). */
export const STALE_AFTER_MS = 1_000
/** A connection idle this long is closed (default 60 s). */
export const IDLE_TIMEOUT_MS = 4_000

/** The environment variables both example functions read through optionsFromEnv. */
export const FUNCTION_ENV = {
  WARMCONN_STALE_AFTER_MS: String(STALE_AFTER_MS),
  WARMCONN_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
}
