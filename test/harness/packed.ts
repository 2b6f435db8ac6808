/**
 * The package as a user gets it: `npm pack` of this checkout (its prepack step cleans and builds
 * dist/ from this source), installed from the tarball into a fresh application folder without
 * network, with the other packages the application imports linked from this project's
 * node_modules (they are installed already; nothing is downloaded). Used by test/package.test.ts
 * (every entry point imports) and test/readme.test.ts (every README example compiles and runs).
 * @module
 */
import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RUN_MARKER_ENV } from './processes.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface PackageJson {
  name: string
  exports: Record<string, { types: string; import: string }>
  peerDependencies: Record<string, string>
}

export const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson

export interface Packed {
  /** The temporary directory holding the tarball and the application folder. */
  dir: string
  /** The application folder: package.json (type module) and node_modules with warmconn installed. */
  app: string
  /** The tarball's path. */
  tarball: string
  /** Every file in the tarball, relative to the package root (`dist/index.js`, `LICENSE`...). */
  files: string[]
  /** Links `name` (a package of this project's node_modules) into the application; false if not installed here. */
  link(name: string): boolean
  /** Removes everything. */
  remove(): void
}

/**
 * Packs this checkout and installs the tarball into a fresh application folder, linking
 * warmconn's peer dependencies (and `extra` packages) from this project's node_modules.
 * @example const packed = packAndInstall(['drizzle-orm']); execFileSync('node', ['app.js'], { cwd: packed.app })
 */
export function packAndInstall(extra: string[] = []): Packed {
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-pack-'))
  try {
    const report = packOnce()
    const tarball = join(dir, basename(report.tarball))
    copyFileSync(report.tarball, tarball)
    // Outside a test run nobody reuses it, and no run directory deletes it.
    if (!process.env[RUN_MARKER_ENV]) rmSync(dirname(report.tarball), { recursive: true, force: true })
    const app = join(dir, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'warmconn-pack-check', private: true, type: 'module' }))
    // --offline: the tarball has no dependencies to fetch; its peers are this project's own copies.
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball], { cwd: app, stdio: 'ignore' })
    const link = (name: string): boolean => {
      const source = join(ROOT, 'node_modules', name)
      const target = join(app, 'node_modules', name)
      if (existsSync(target)) return true
      if (!existsSync(source)) return false
      mkdirSync(dirname(target), { recursive: true })
      symlinkSync(source, target, 'dir')
      return true
    }
    for (const name of [...Object.keys(pkg.peerDependencies), ...extra]) link(name)
    return { dir, app, tarball, files: report.files, link, remove: () => rmSync(dir, { recursive: true, force: true }) }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

interface PackReport {
  tarball: string
  files: string[]
}

/** How long one pack may hold the lock (it cleans and builds dist/: a few seconds) before it counts as dead. */
const LOCK_STALE_MS = 120_000

/**
 * `npm pack`, once per test run. Its prepack step deletes and rebuilds dist/ in the checkout, so
 * two test files packing at once (vitest runs files in parallel workers) could ship a half-built
 * dist/. The first caller packs under a lock (a directory: mkdir is atomic) into the run's
 * temporary directory; the others wait for it and reuse the tarball. Outside a test run (no run
 * marker) every call packs, still under the lock.
 */
function packOnce(): PackReport {
  const run = process.env[RUN_MARKER_ENV]
  const shared = join(tmpdir(), `warmconn-packed-${run ?? randomUUID()}`)
  const reportFile = join(shared, 'report.json')
  const lock = join(tmpdir(), 'warmconn-pack.lock')
  const deadline = Date.now() + LOCK_STALE_MS * 2
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) rmSync(lock, { recursive: true, force: true })
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline) throw new Error(`packAndInstall: ${lock} held for too long`)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100)
    }
  }
  try {
    if (existsSync(reportFile)) return JSON.parse(readFileSync(reportFile, 'utf8')) as PackReport
    mkdirSync(shared, { recursive: true })
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', shared], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    // Lifecycle scripts print to stdout before the JSON report.
    const [npmReport] = JSON.parse(out.slice(out.indexOf('\n[') + 1)) as Array<{ filename: string; files: Array<{ path: string }> }>
    const report: PackReport = { tarball: join(shared, npmReport!.filename), files: npmReport!.files.map((f) => f.path) }
    if (run) writeFileSync(reportFile, JSON.stringify(report))
    return report
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}
