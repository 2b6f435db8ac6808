/**
 * warmconn on Cloudflare Workers: a warm connection in a Durable Object, a connection per request, or Hyperdrive.
 * @module
 */
export { WarmconnDurableObject, type ObjectStats, type WarmconnEnv } from './durable-object.js'
export { warmClient, type WarmClient, type WarmClientOptions, type HolderNamespace } from './client.js'
export { withRequestScope, type WaitUntil } from './request-scope.js'
export { hyperdriveScope, type HyperdriveBinding } from './hyperdrive.js'
export { SqlError } from './remote-errors.js'
export { workerEnvNames, type ConnectionSettings } from './settings.js'
export type { QueryOptions, QueryResult, Row, Statement } from './protocol.js'
