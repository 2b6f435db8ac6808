/**
 * Which miniflare and workerd the Workers tests run on, and on which compatibility date.
 *
 * The project's own miniflare runs on Node 20. With WC_TEST_MINIFLARE_DIR set to a node_modules
 * directory, the miniflare and workerd there are used instead: the CI runner points it at
 * .ci/runtimes/node_modules, today's wrangler's (Node >= 22).
 * @module
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

/** require() from the node_modules the Workers tests use. */
export const fromWorkerModules = createRequire(
  process.env.WC_TEST_MINIFLARE_DIR ? join(process.env.WC_TEST_MINIFLARE_DIR, 'noop.js') : import.meta.url,
)
const workerd = fromWorkerModules('workerd') as { compatibilityDate: string; version: string }

/** The miniflare and workerd the tests run on, and the newest compatibility date that workerd knows. */
export const workerRuntime = {
  miniflare: (fromWorkerModules('miniflare/package.json') as { version: string }).version,
  workerd: workerd.version,
  newestCompatibilityDate: workerd.compatibilityDate,
}

const toml = readFileSync(new URL('../../wrangler.toml', import.meta.url), 'utf8')
/** compatibility_date and compatibility_flags of wrangler.toml, so the tests run what is deployed. */
export const wranglerConfig = {
  compatibilityDate: /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)?.[1] ?? fail('compatibility_date'),
  compatibilityFlags: JSON.parse(/^compatibility_flags\s*=\s*(\[[^\]]*\])/m.exec(toml)?.[1] ?? fail('compatibility_flags')) as string[],
}

/** wrangler.toml's date is newer than this workerd knows (the project's own miniflare is older). */
export const wranglerDateUnsupported = wranglerConfig.compatibilityDate > workerRuntime.newestCompatibilityDate

/**
 * The date the Workers tests run on unless a test names one: WC_TEST_COMPATIBILITY_DATE (the CI
 * runner runs the suite on a date before and one after 2026-10-01), else wrangler.toml's when this
 * workerd knows it, else the newest this workerd knows (test/harness/global-setup.ts says so).
 */
export const testedCompatibilityDate =
  process.env.WC_TEST_COMPATIBILITY_DATE ?? (wranglerDateUnsupported ? workerRuntime.newestCompatibilityDate : wranglerConfig.compatibilityDate)

function fail(what: string): never {
  throw new Error(`wrangler.toml: no ${what}`)
}
