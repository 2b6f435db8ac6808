/**
 * The package as a user gets it: `npm pack` (whose prepack step cleans and builds dist/ from this
 * source, so a stale dist/ cannot ship), installed from the tarball into a fresh folder without
 * network, and every entry point of package.json `exports` that can load in Node imported from
 * there. The entry points come from `exports` itself, so a new one is covered without editing
 * this file; the few that cannot load in Node are listed below with the reason.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { packAndInstall, pkg, ROOT as root, type Packed } from './harness/packed.js'

/** Entry points that only load in their own runtime, and why. */
const NOT_IN_NODE: Record<string, string> = {
  './workers': 'imports cloudflare:workers, which only workerd provides',
}

const entries = Object.keys(pkg.exports)
let packedPackage: Packed
let app: string
let packed: string[]

beforeAll(() => {
  packedPackage = packAndInstall()
  app = packedPackage.app
  packed = packedPackage.files
}, 120_000)
afterAll(() => {
  packedPackage?.remove()
})

describe('the packed package', () => {
  it('ships dist/ built from this source: one .js and .d.ts per source file, nothing stale, no sources or tests', () => {
    const sources = listTs(join(root, 'src')).map((f) => f.replace(/\.ts$/, ''))
    const built = packed.filter((p) => p.startsWith('dist/') && p.endsWith('.js')).map((p) => p.slice('dist/'.length, -'.js'.length))
    expect(built.sort()).toEqual(sources.sort())
    for (const source of sources) expect(packed).toContain(`dist/${source}.d.ts`)
    expect(packed.filter((p) => p.startsWith('src/') || p.startsWith('test/'))).toEqual([])
  })

  it('lists every file each entry point names (import and types)', () => {
    for (const [entry, target] of Object.entries(pkg.exports)) {
      for (const file of [target.import, target.types]) expect(packed, `${entry}: ${file}`).toContain(file.replace(/^\.\//, ''))
    }
  })

  it('ships what a published package needs: the MIT LICENSE, the README, and package.json with repository, homepage, bugs and keywords', () => {
    for (const file of ['LICENSE', 'README.md', 'package.json']) expect(packed).toContain(file)
    const license = readFileSync(join(app, 'node_modules', pkg.name, 'LICENSE'), 'utf8')
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the warmconn authors\n/)
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', pkg.name, 'package.json'), 'utf8')) as Record<string, unknown>
    expect(manifest).toMatchObject({ license: 'MIT', repository: { type: 'git', url: 'git+https://github.com/warmconn/warmconn.git' }, homepage: expect.stringMatching(/^https:\/\/github\.com\/warmconn\/warmconn/), bugs: { url: expect.stringMatching(/^https:\/\//) } })
    expect((manifest.keywords as string[]).length).toBeGreaterThan(3)
  })

  it('its README reads right on the npm page: every link to a file is absolute or into the tarball, and every file of the repository it names outside the tarball is a repository link', () => {
    const readme = readFileSync(join(app, 'node_modules', pkg.name, 'README.md'), 'utf8')
    const prose = readme.replace(/^```[\s\S]*?^```/gm, '')
    const relative = [...prose.matchAll(/\]\(([^)#\s]+)[^)]*\)/g)].map((m) => m[1]!).filter((target) => !/^[a-z]+:/.test(target))
    expect(relative.filter((target) => !packed.includes(target.replace(/^\.\//, '')))).toEqual([])
    // A code span naming a file of the checkout (`test/lambda.test.ts`, `wrangler.toml`) that is not a link's text.
    const named = [...prose.matchAll(/(^|[^[])`((?:functions|test|bench|scripts|soak|src|\.ci)\/[\w./-]*|wrangler\.toml)`/gm)].map((m) => m[2]!)
    expect(named).toEqual([])
  })

  it('the entry points that cannot load in Node are still entry points (a stale exclusion is caught)', () => {
    for (const entry of Object.keys(NOT_IN_NODE)) expect(entries).toContain(entry)
    expect(entries.filter((e) => !(e in NOT_IN_NODE)).length).toBeGreaterThanOrEqual(4)
  })

  it.each(entries.filter((e) => !(e in NOT_IN_NODE)))('installed from the tarball, %s imports in Node and exports something', (entry) => {
    const specifier = entry === '.' ? pkg.name : `${pkg.name}/${entry.slice(2)}`
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `console.log(JSON.stringify(Object.keys(await import(${JSON.stringify(specifier)}))))`], {
      cwd: app,
      encoding: 'utf8',
    })
    const names = JSON.parse(out) as string[]
    expect(names.length).toBeGreaterThan(0)
    // Resolved from the installed copy, not from this checkout.
    const where = execFileSync(process.execPath, ['--input-type=module', '-e', `console.log(import.meta.resolve(${JSON.stringify(specifier)}))`], { cwd: app, encoding: 'utf8' })
    expect(fileURLToPath(where.trim())).toContain(join(app, 'node_modules', pkg.name, 'dist'))
  })
})

function listTs(base: string, at = base): string[] {
  return readdirSync(at, { withFileTypes: true }).flatMap((d) => {
    const path = join(at, d.name)
    if (d.isDirectory()) return listTs(base, path)
    return d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [relative(base, path)] : []
  })
}
