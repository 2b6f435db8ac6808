/**
 * Bundles a TypeScript entry the way a Node function is deployed: one ESM file, with esbuild's
 * `target` set to the Node version that will run it. Used by `npm run build:lambda` (for a Lambda
 * runtime) and by the test harness (for the Node running the emulated function, that is, this
 * one), so tests run exactly what ships.
 */
import { build } from 'esbuild'

// Bundled CommonJS dependencies call require(), which ESM lacks. The alias keeps the banner
// from clashing with a createRequire the bundle itself imports.
const REQUIRE_SHIM =
  "import { createRequire as __warmconnCreateRequire } from 'node:module';\n" +
  'const require = __warmconnCreateRequire(import.meta.url);'

/** The Lambda runtimes the bundle is built and tested for, with the Node each one runs. */
export const LAMBDA_RUNTIMES = { 'nodejs22.x': 'node22', 'nodejs24.x': 'node24' } as const
export type LambdaRuntime = keyof typeof LAMBDA_RUNTIMES

/** esbuild's name for the Node running this process, e.g. `node22`. */
export const CURRENT_NODE = `node${process.versions.node.split('.')[0]}`

/**
 * @example await bundleNodeFunction('functions/lambda.ts', 'build/lambda/index.mjs', LAMBDA_RUNTIMES['nodejs24.x'])
 */
export async function bundleNodeFunction(entry: string, outfile: string, target: string = CURRENT_NODE): Promise<string> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target,
    format: 'esm',
    legalComments: 'none',
    banner: { js: REQUIRE_SHIM },
    logLevel: 'warning',
  })
  return outfile
}
