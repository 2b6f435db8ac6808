/**
 * A vitest reporter beside the default one, with two jobs:
 * - at the end, one line per suite skipped for want of something (test/helpers/requires.ts),
 *   naming it and how to enable it;
 * - with WC_TEST_PROGRESS_FILE set (by the CI runner, scripts/test.ts), that file always holds
 *   the test files, tests and hooks running right now (`<start epoch ms>\t<what>` per line), so
 *   a run stopped for hanging can name what hung.
 * @module
 */
import { writeFileSync } from 'node:fs'
import type { Reporter, TestCase, TestModule, TestSuite } from 'vitest/node'

export const PROGRESS_FILE_ENV = 'WC_TEST_PROGRESS_FILE'

type HookContext = Parameters<NonNullable<Reporter['onHookStart']>>[0]

export default class WarmconnReporter implements Reporter {
  readonly #progressFile = process.env[PROGRESS_FILE_ENV]
  /** What runs now: "file > suite > test" or "file > beforeAll (suite)", with when it started. */
  readonly #running = new Map<string, number>()

  onTestModuleStart(module: TestModule): void {
    this.#update(module.relativeModuleId, true)
  }

  onTestModuleEnd(module: TestModule): void {
    this.#update(module.relativeModuleId, false)
  }

  onTestCaseReady(test: TestCase): void {
    this.#update(label(test), true)
  }

  onTestCaseResult(test: TestCase): void {
    this.#update(label(test), false)
  }

  onHookStart(hook: HookContext): void {
    this.#update(hookLabel(hook), true)
  }

  onHookEnd(hook: HookContext): void {
    this.#update(hookLabel(hook), false)
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const lines: string[] = []
    for (const module of modules) {
      for (const suite of module.children.allSuites()) {
        const reason = suite.meta().skippedFor
        // The outermost skipped suite only: its nested suites inherit the reason.
        const parent = suite.parent.type === 'suite' ? suite.parent.meta().skippedFor : undefined
        if (reason && !parent && suite.state() === 'skipped') {
          lines.push(`skipped: ${module.relativeModuleId} > ${suite.fullName}: ${reason.missing}; to run it: ${reason.enable}`)
        }
      }
    }
    if (lines.length > 0) process.stdout.write(`\n${lines.join('\n')}\n`)
  }

  #update(key: string, running: boolean): void {
    if (running) this.#running.set(key, Date.now())
    else this.#running.delete(key)
    if (!this.#progressFile) return
    // One line per running item: its start (epoch ms), a tab, what it is.
    const lines = [...this.#running].map(([what, since]) => `${since}\t${what}`)
    try {
      writeFileSync(this.#progressFile, lines.join('\n'))
    } catch {
      // the runner's directory is gone: it has stopped caring
    }
  }
}

function label(test: TestCase): string {
  return `${test.module.relativeModuleId} > ${test.fullName}`
}

function hookLabel(hook: HookContext): string {
  const entity = hook.entity as TestCase | TestSuite | TestModule
  const where = entity.type === 'module' ? entity.relativeModuleId : `${entity.module.relativeModuleId} > ${entity.fullName}`
  return `${where} > ${hook.name}`
}
