/*
 * Types for the `cloudflare:workers` runtime module, taken from the importable build of
 * @cloudflare/workers-types. Declared here, instead of adding the package's global types to the
 * project, so the Node code keeps Node's globals (setTimeout returning a Timeout, Node's fetch
 * types). Not shipped: the emitted .d.ts files import `cloudflare:workers`, which a Workers
 * project resolves with its own types.
 */
declare module 'cloudflare:workers' {
  import { CloudflareWorkersModule } from '@cloudflare/workers-types'
  export import DurableObject = CloudflareWorkersModule.DurableObject
}
