/**
 * warmconn core: the runtime-agnostic lifecycle. Drivers live in `warmconn/postgres` and
 * `warmconn/neon`, runtime adapters in `warmconn/lambda` and `warmconn/workers`.
 * @module
 */
export { Holder, type HolderStats, type RunOptions, type LeaseOptions, type Lease, type HolderHooks } from './holder.js'
export type { Driver, DriverConnection, OpenOptions, Classified, ErrorKind } from './driver.js'
export type { HolderEvents, HolderEventName, Listener, WarningCode } from './events.js'
export { defaultOptions, resolveOptions, type HolderOptions, type ResolvedOptions } from './options.js'
export { optionsFromEnv, envOptionNames, type EnvOptions } from './env.js'
export { closeAll } from './registry.js'
export { classifyCode, errorCode } from './classify.js'
export * from './errors.js'
export type { PasswordFunction } from './password.js'
export { cachedPassword, type CachedPasswordOptions } from './password-cache.js'
