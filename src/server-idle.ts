/**
 * Server-enforced idle close. A frozen process (a Lambda between invocations) runs no timers, so
 * warmconn's own idle close cannot happen there, and a fleet of frozen functions would hold the
 * database's connections until each is thawed or reclaimed. PostgreSQL (14+) can end such a
 * session itself: warmconn asks for `idle_session_timeout` in the startup packet (no round trip),
 * a little above idleTimeoutMs, so a live process still closes first and cleanly.
 *
 * Only on direct connections: a transaction pooler refuses unknown startup parameters (PgBouncer:
 * "unsupported startup parameter"), and behind one the server's sessions are the pooler's, not
 * the function's; bound the pooler's client connections there instead (PgBouncer
 * client_idle_timeout). A target that refuses the parameter is remembered for the process and
 * connected to again at once without it.
 * @module
 */
import { looksLikePooler } from './pooler.js'

/** How far past idleTimeoutMs the server ends the session: the larger of 1 s and 10%, so timer and event-loop lag never let the server close first. */
export function serverIdleTimeoutMs(idleTimeoutMs: number): number {
  return idleTimeoutMs + Math.max(1_000, Math.round(idleTimeoutMs / 10))
}

// Targets (host:port) that refused the startup parameter: poolers, or PostgreSQL before 14.
const refusing = new Set<string>()

/**
 * The idle_session_timeout to send to `host:port`, or undefined: turned off, said to be a
 * pooler, looking like one, or known to refuse it.
 * @example const ms = sessionIdleTimeout(open.serverIdleTimeoutMs, open.pooled, host, port)
 */
export function sessionIdleTimeout(requested: number | undefined, pooled: boolean | undefined, host: string, port: number): number | undefined {
  if (requested === undefined || pooled === true) return undefined
  if (pooled === undefined && looksLikePooler(host, port)) return undefined
  return refusing.has(`${host}:${port}`) ? undefined : requested
}

/**
 * Whether a connect failed because the target does not take the parameter (and this is news);
 * if so, remembers that, so the next attempt, at once, goes without it.
 */
export function refusedIdleTimeout(err: unknown, host: string, port: number): boolean {
  const message = String((err as { message?: unknown } | null)?.message ?? '')
  // PgBouncer names the parameter ("unsupported startup parameter: idle_session_timeout", or
  // "options" for the -c form node-postgres sends); PostgreSQL before 14 does not know the
  // setting (42704). Other proxies are taken at their word when they name it or the options.
  const refused = /idle_session_timeout|startup parameter: options|unsupported (startup )?(parameter|option)/i.test(message)
  const key = `${host}:${port}`
  // Only news once: a refusal that comes again, without the parameter, is about something else.
  if (!refused || refusing.has(key)) return false
  refusing.add(key)
  return true
}
