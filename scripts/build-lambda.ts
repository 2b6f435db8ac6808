/**
 * Bundles functions/lambda.ts into one ESM file for a Lambda Node.js runtime, plus a deployable
 * zip: build/lambda/index.mjs and build/lambda.zip (handler: index.handler).
 *
 *   npm run build:lambda                          # for nodejs22.x
 *   npm run build:lambda -- --runtime nodejs24.x
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { bundleNodeFunction, LAMBDA_RUNTIMES, type LambdaRuntime } from './bundle.js'
import { zip } from './zip.js'

const { values } = parseArgs({ options: { runtime: { type: 'string', default: 'nodejs22.x' } } })
const runtime = values.runtime as LambdaRuntime
if (!(runtime in LAMBDA_RUNTIMES)) {
  console.error(`--runtime: expected one of ${Object.keys(LAMBDA_RUNTIMES).join(', ')}, got ${values.runtime}`)
  process.exit(2)
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'build', 'lambda')
mkdirSync(outDir, { recursive: true })
const outfile = await bundleNodeFunction(join(root, 'functions', 'lambda.ts'), join(outDir, 'index.mjs'), LAMBDA_RUNTIMES[runtime])
const zipFile = join(root, 'build', 'lambda.zip')
writeFileSync(zipFile, zip([{ name: 'index.mjs', data: readFileSync(outfile) }]))
console.log(`built ${outfile} and ${zipFile} (handler: index.handler, runtime: ${runtime}, esbuild target ${LAMBDA_RUNTIMES[runtime]})`)
