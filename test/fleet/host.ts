/**
 * A worker thread hosting several fleet instances (see serve.ts). They share this thread's event
 * loop and CPU, which real instances would not: latency figures include that contention.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { HostRequest } from './fleet.js'
import { serve } from './serve.js'

await serve(workerData as { instanceCode: string; first: number; count: number }, (m) => parentPort!.postMessage(m), (handle) =>
  parentPort!.on('message', (request: HostRequest) => handle(request)),
)
