/**
 * What a warmconn error looks like through the pool facade. Libraries that take a pg.Pool read a
 * connection error by the driver's own fields (Prisma's adapter-pg: `code` with `syscall` and
 * `errno` for a socket error, `code` with `severity` for a server error; Drizzle and Kysely pass
 * it on), so the pool's errors keep warmconn's class and message but carry the driver's `code`
 * and fields, with warmconn's own code in `warmconnCode`. The holder's own errors are untouched
 * (`run` and `lease` callers see the stable codes of errors.ts).
 * @module
 */
import { AcquireTimeoutError, WarmconnError, type WarmconnErrorCode } from './errors.js'

/** A pool error: warmconn's class, the driver's `code` where there is one, warmconn's in `warmconnCode`. */
export type PoolError = WarmconnError & { readonly warmconnCode: WarmconnErrorCode }

// What node-postgres puts on a server error (DatabaseError) and Node on a socket error.
const DRIVER_FIELDS = [
  'severity', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery', 'where', 'schema', 'table', 'column',
  'dataType', 'constraint', 'file', 'line', 'routine', 'errno', 'syscall', 'address', 'port', 'hostname',
] as const

/**
 * Gives a warmconn error the driver's code and fields from its cause, once (an error shared by
 * callers queued behind one connect is translated once). Anything else is returned as it is.
 * @example catch (err) { throw poolError(err) }
 */
export function poolError(err: unknown): unknown {
  if (!(err instanceof WarmconnError) || Object.hasOwn(err, 'warmconnCode')) return err
  const target = err as unknown as Record<string, unknown>
  const cause = err.cause as Record<string, unknown> | undefined
  const own = err.code
  let code: unknown = own
  if (cause && typeof cause === 'object') {
    for (const key of DRIVER_FIELDS) if (cause[key] !== undefined && target[key] === undefined) target[key] = cause[key]
    if (typeof cause.code === 'string') code = cause.code
  }
  // pg-pool's words for a checkout that ran out of time; warmconn's reason follows.
  if (err instanceof AcquireTimeoutError && !/^timeout/.test(err.message)) err.message = `timeout exceeded when trying to connect: ${err.message}`
  Object.defineProperty(err, 'warmconnCode', { value: own, enumerable: true })
  target.code = code
  return err
}
