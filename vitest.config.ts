import { createRequire } from 'node:module'
import { join } from 'node:path'
import { defineConfig } from 'vitest/config'

/**
 * WARMCONN_MINIFLARE_DIR: a node_modules directory whose miniflare and workerd the Workers tests
 * use instead of the project's own (the CI runner points it at .ci/runtimes/node_modules, today's
 * miniflare, which needs Node >= 22). The project's own miniflare runs on Node 20.
 */
function miniflareAliases(): Record<string, string> {
  const dir = process.env.WARMCONN_MINIFLARE_DIR
  if (!dir) return {}
  const from = createRequire(join(dir, 'noop.js'))
  return { miniflare: from.resolve('miniflare'), workerd: from.resolve('workerd') }
}

export default defineConfig({
  resolve: { alias: miniflareAliases() },
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file starts its own PostgreSQL; two cores, so keep parallelism modest.
    maxWorkers: 2,
    testTimeout: 60_000,
    // Every harness step is bounded well below this (a server start by 30 s), so a hook that
    // reaches it is stuck, not slow.
    hookTimeout: 120_000,
    // After the run: a worker that does not exit by then is killed and the run says so.
    teardownTimeout: 20_000,
    globalSetup: ['test/harness/global-setup.ts'],
    setupFiles: ['test/harness/leak-check.ts'],
    reporters: ['default', './test/harness/reporter.ts'],
  },
})
