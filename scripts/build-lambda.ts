/**
 * Bundles functions/lambda.ts into one ESM file for the nodejs22.x runtime, plus a deployable zip:
 * build/lambda/index.mjs and build/lambda.zip (handler: index.handler).
 */
import { build } from 'esbuild'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { zip } from './zip.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'build', 'lambda')
mkdirSync(outDir, { recursive: true })
const outfile = join(outDir, 'index.mjs')
await build({
  entryPoints: [join(root, 'functions', 'lambda.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  // Bundled CommonJS dependencies call require(); ESM output has none unless we make one.
  banner: { js: "import { createRequire as __warmconnRequire } from 'node:module'; const require = __warmconnRequire(import.meta.url);" },
})
const zipFile = join(root, 'build', 'lambda.zip')
writeFileSync(zipFile, zip([{ name: 'index.mjs', data: readFileSync(outfile) }]))
console.log(`built ${outfile} and ${zipFile} (handler: index.handler, runtime: nodejs22.x)`)
