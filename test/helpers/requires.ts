/**
 * Suites that need something a developer machine may lack (PgBouncer, Bun, Deno): skipped there,
 * with a line at the end of `npm test` naming the suite and how to enable it
 * (test/harness/reporter.ts prints it); on CI never skipped, so a missing part fails the run.
 * @module
 */
import type { SuiteOptions } from 'vitest'

export interface Requirement {
  /** What is needed, e.g. 'pgbouncer'. */
  what: string
  /** Why it is not available here; undefined when it is. */
  missing: string | undefined
  /** How to make it available, e.g. 'apt-get install pgbouncer'. */
  enable: string
}

declare module 'vitest' {
  interface TaskMeta {
    /** Set on a suite skipped for want of something; read by the reporter. */
    skippedFor?: Requirement
  }
}

/**
 * Options for `describe(name, options, fn)`.
 * @example describe('through PgBouncer', requires(pgBouncer), () => { ... })
 */
export function requires(requirement: Requirement): SuiteOptions {
  const skip = requirement.missing !== undefined && !process.env.CI
  return skip ? { skip, meta: { skippedFor: requirement } } : {}
}
