/**
 * What a fleet host does, whatever carries its messages (a worker thread in host.ts, a child
 * process in process-host.ts, which can be frozen with SIGSTOP): evaluate the instance bundle once
 * per instance, so each has its own module scope, and answer invoke / report / close.
 */
import type { HostRequest } from './fleet.js'

type Instance = typeof import('./instance.js')

export async function serve(
  init: { instanceCode: string; first: number; count: number },
  send: (message: unknown) => void,
  onRequest: (handle: (request: HostRequest) => void) => void,
): Promise<void> {
  const instances = new Map<number, Instance>()
  for (let id = init.first; id < init.first + init.count; id++) {
    // The trailing comment makes each URL, and so each module record, distinct.
    const source = `${init.instanceCode}\n// instance ${id}\n`
    instances.set(id, (await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`)) as Instance)
  }
  onRequest(async ({ seq, type, id }) => {
    const instance = instances.get(id)!
    if (type === 'invoke') send({ seq, outcome: await instance.handler() })
    else if (type === 'report') send({ seq, report: instance.report() })
    else {
      await instance.close()
      send({ seq })
    }
  })
  send({ ready: true })
}
