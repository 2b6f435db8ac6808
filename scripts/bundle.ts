/**
 * Bundles a TypeScript entry the way a Node function is deployed: one ESM file for Node 20+.
 * Used by `npm run build:lambda` and by the test harness, so tests run exactly what ships.
 */
import { build } from 'esbuild'

// Bundled CommonJS dependencies call require(), which ESM lacks. The alias keeps the banner
// from clashing with a createRequire the bundle itself imports.
const REQUIRE_SHIM =
  "import { createRequire as __warmconnCreateRequire } from 'node:module';\n" +
  'const require = __warmconnCreateRequire(import.meta.url);'

export async function bundleNodeFunction(entry: string, outfile: string): Promise<string> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    legalComments: 'none',
    banner: { js: REQUIRE_SHIM },
    logLevel: 'warning',
  })
  return outfile
}
