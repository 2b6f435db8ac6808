/**
 * Which Workers request a connection belongs to. workerd binds every I/O object to the request
 * that created it and throws when another request touches it, so a socket opened in one request
 * fails (or hangs) in the next. warmconn keeps such an object beside each connection and touches
 * it before handing the connection out, so a module-scope holder refuses another request's
 * connection with CrossRequestError instead.
 *
 * The object: an IdentityTransformStream, whose readable side is teed. Seen here: workerd up to
 * 1.20260426 threw on reading another request's AbortController signal, 1.20261117 no longer does
 * (on every compatibility date) while sockets are still bound to their request; a tee of another
 * request's stream throws on both. A tee locks the stream, so a check that passes leaves a new
 * one, made in the request that passed, which is the same request. Inside a Durable Object, where
 * every request shares one I/O context, it never throws. Outside workerd (no
 * IdentityTransformStream) nothing binds I/O to requests, and there is nothing to check.
 * @module
 */

interface Teeable {
  readonly readable: { tee(): unknown }
}

/** The request a connection was opened in, as something only that request may touch. */
export interface RequestBinding {
  stream: Teeable
}

type IdentityTransformStreamClass = new () => Teeable
const Identity = (globalThis as { IdentityTransformStream?: IdentityTransformStreamClass }).IdentityTransformStream

/** A binding to the current request, or undefined outside workerd. */
export function bindToRequest(): RequestBinding | undefined {
  return Identity ? { stream: new Identity() } : undefined
}

/** Whether the current request is the one `binding` was made in (always, outside workerd). */
export function inSameRequest(binding: RequestBinding | undefined): boolean {
  if (!binding) return true
  try {
    binding.stream.readable.tee()
  } catch {
    return false
  }
  binding.stream = new Identity!()
  return true
}
