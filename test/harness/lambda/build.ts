/**
 * Bundles a TypeScript handler the way it is deployed (the same bundler as `npm run build:lambda`).
 *
 * @example
 * const handlerFile = await build('functions/lambda.ts', join(tmp, 'lambda.mjs'))
 *
 * @module
 */
export { bundleNodeFunction as build } from '../../../scripts/bundle.js'
