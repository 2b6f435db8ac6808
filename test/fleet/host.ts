/**
 * A worker thread hosting several fleet instances. Each instance is a separate evaluation of the
 * instance bundle (a data: URL made unique per instance), so each has its own module scope. They
 * share this thread's event loop and CPU, which real instances would not: latency figures include
 * that contention.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { HostRequest } from './fleet.js'

type Instance = typeof import('./instance.js')

const { instanceCode, first, count } = workerData as { instanceCode: string; first: number; count: number }
const instances = new Map<number, Instance>()
for (let id = first; id < first + count; id++) {
  // The trailing comment makes each URL, and so each module record, distinct.
  const source = `${instanceCode}\n// instance ${id}\n`
  instances.set(id, (await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`)) as Instance)
}

parentPort!.on('message', async ({ seq, type, id }: HostRequest) => {
  const instance = instances.get(id)!
  if (type === 'invoke') parentPort!.postMessage({ seq, outcome: await instance.handler() })
  else if (type === 'report') parentPort!.postMessage({ seq, report: instance.report() })
  else {
    await instance.close()
    parentPort!.postMessage({ seq })
  }
})
parentPort!.postMessage({ ready: true })
