/**
 * The package as a user gets it: `npm pack` of this checkout (its prepack step cleans and builds
 * dist/ from this source), installed from the tarball into a fresh application folder without
 * network, with the other packages the application imports linked from this project's
 * node_modules (they are installed already; nothing is downloaded). Used by test/package.test.ts
 * (every entry point imports) and test/readme.test.ts (every README example compiles and runs).
 * @module
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

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
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    // Lifecycle scripts print to stdout before the JSON report.
    const [report] = JSON.parse(out.slice(out.indexOf('\n[') + 1)) as Array<{ filename: string; files: Array<{ path: string }> }>
    const app = join(dir, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'warmconn-pack-check', private: true, type: 'module' }))
    const tarball = join(dir, report!.filename)
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
    return { dir, app, tarball, files: report!.files.map((f) => f.path), link, remove: () => rmSync(dir, { recursive: true, force: true }) }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
