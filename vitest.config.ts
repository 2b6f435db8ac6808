import { defineConfig } from 'vitest/config'

export default defineConfig({
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
