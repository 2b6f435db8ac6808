/**
 * A child process hosting several fleet instances (see serve.ts), so that the frozen-fleet
 * scenario can freeze them with SIGSTOP, as Lambda freezes an idle execution environment.
 */
import type { HostRequest } from './fleet.js'
import { serve } from './serve.js'

process.once('message', (init: { instanceCode: string; first: number; count: number }) => {
  void serve(init, (m) => process.send!(m), (handle) => process.on('message', (request: HostRequest) => handle(request)))
})
