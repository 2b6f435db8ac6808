/**
 * Bundles a TypeScript handler the way it is deployed: one ESM file for Node 20.
 *
 * @module
 */
import { build as esbuild } from 'esbuild'

// Bundled CommonJS dependencies call require(), which ESM lacks. The alias keeps the banner
// from clashing with a createRequire the bundle itself imports.
const REQUIRE_SHIM =
  "import { createRequire as __warmconnCreateRequire } from 'node:module';\n" +
  'const require = __warmconnCreateRequire(import.meta.url);'

/**
 * Bundles `entry` into `outfile` and returns `outfile`.
 *
 * @example
 * const handlerFile = await build('functions/lambda.ts', join(tmp, 'lambda.mjs'))
 */
export async function build(entry: string, outfile: string): Promise<string> {
  await esbuild({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    banner: { js: REQUIRE_SHIM },
    logLevel: 'warning',
  })
  return outfile
}
