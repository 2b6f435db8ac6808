/**
 * Bundles functions/lambda.ts into one ESM file for the nodejs22.x runtime, plus a deployable zip:
 * build/lambda/index.mjs and build/lambda.zip (handler: index.handler).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { bundleNodeFunction } from './bundle.js'
import { zip } from './zip.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'build', 'lambda')
mkdirSync(outDir, { recursive: true })
const outfile = await bundleNodeFunction(join(root, 'functions', 'lambda.ts'), join(outDir, 'index.mjs'))
const zipFile = join(root, 'build', 'lambda.zip')
writeFileSync(zipFile, zip([{ name: 'index.mjs', data: readFileSync(outfile) }]))
console.log(`built ${outfile} and ${zipFile} (handler: index.handler, runtime: nodejs22.x)`)
