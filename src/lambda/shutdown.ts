/**
 * Preload for Lambda Managed Instances, where the handler runs in worker threads that never see
 * SIGTERM: `NODE_OPTIONS=--import warmconn/lambda/shutdown` (or the path of a bundled copy) runs
 * this in the runtime's main thread, which then relays SIGTERM to every worker thread whose
 * `withWarmconn` joined and waits for each to close its connections (see threads.ts). In a
 * process without worker threads (a default Lambda) it installs nothing.
 * @module
 */
import { relayShutdown } from './threads.js'

relayShutdown()

export { relayShutdown }
