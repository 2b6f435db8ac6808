/**
 * Vercel Fluid compute: keeps an instance alive, through the request's `waitUntil`, until warmconn
 * has closed its idle connections, for any holder (postgres.js, neon, pg) or warmPool. Without it
 * Vercel may suspend an instance that still holds connections, which then linger on the server.
 * @module
 */
import type { Holder } from '../holder.js'

/** A holder, or anything that has one (a warmPool). */
export type HasHolder = Holder<any> | { readonly holder: Holder<any> }

// What Vercel's runtime installs on globalThis; @vercel/functions reads waitUntil from it the same way.
const REQUEST_CONTEXT = Symbol.for('@vercel/request-context')

interface RequestContext {
  waitUntil?: (promise: Promise<unknown>) => void
}

/**
 * After each call, hands the current request's `waitUntil` a promise that resolves once the
 * holder has no connection left and its last close has finished: the instance stays up exactly
 * as long as a connection does, not a fixed time. Outside a Vercel request it does nothing.
 * Returns the function that detaches it.
 * @example
 * const db = warmPostgres(process.env.DATABASE_URL, { idleTimeoutMs: 5_000 })
 * attachToVercel(db)
 */
export function attachToVercel(target: HasHolder): () => void {
  const holder: Holder<unknown> = 'holder' in target ? target.holder : target
  let drain: Promise<void> | undefined
  // Contexts already given the current drain promise: one waitUntil per request, not per call.
  let told = new WeakSet<object>()
  return holder.on('release', () => {
    const context = currentContext()
    if (!context?.waitUntil || told.has(context)) return
    if (!drain) {
      drain = drained(holder).finally(() => {
        drain = undefined
        told = new WeakSet()
      })
    }
    told.add(context)
    context.waitUntil(drain)
  })
}

function currentContext(): RequestContext | undefined {
  const store = (globalThis as Record<symbol, { get?: () => RequestContext | undefined } | undefined>)[REQUEST_CONTEXT]
  try {
    return store?.get?.()
  } catch {
    return undefined
  }
}

const CLOSE_EVENTS = ['closeIdle', 'closeLifetime', 'closeBroken', 'close'] as const

/** Resolves once `holder` has no connection open (or is closed) and every close has finished. */
function drained(holder: Holder<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const offs: Array<() => void> = []
    let done = false
    const check = (): void => {
      if (done || (holder.stats().open > 0 && !holder.closed)) return
      done = true
      for (const off of offs) off()
      // sweep() resolves once the closes in progress are done: the server has seen Terminate.
      void holder.sweep().then(resolve, resolve)
    }
    // The holder tells of a close before it takes the connection off its books: check after.
    for (const event of CLOSE_EVENTS) offs.push(holder.on(event, () => queueMicrotask(check)))
    check()
  })
}
