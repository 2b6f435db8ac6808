/**
 * A local Lambda Runtime API (the HTTP interface a runtime polls for events), one per emulated
 * execution environment. Several `next` long-polls may wait at once: that is how a runtime with
 * multi-concurrency (Lambda Managed Instances) asks for more than one invocation.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const PREFIX = '/2018-06-01/runtime'
const RESULT_ROUTE = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/

/** One event to hand to the runtime. */
export interface Delivery {
  requestId: string
  /** The event, already serialised: the runtime receives it as the response body of `next`. */
  payload: string
  /** Counted from the moment a poll picks the event up, as Lambda stamps the deadline then. */
  timeoutMs: number
}

/** What the runtime posted to `/error` or `/init/error`: the raw body and the error-type header. */
export interface PostedError {
  body: string
  errorType: string | undefined
}

export type RuntimeOutcome = { kind: 'response'; body: string } | ({ kind: 'error' } & PostedError)

export interface PendingInvocation {
  /** Resolves when a `next` poll has taken the event. */
  picked: Promise<void>
  /** Resolves with what the runtime posted for this request id. */
  outcome: Promise<RuntimeOutcome>
}

interface Queued {
  delivery: Delivery
  markPicked: () => void
}

export class RuntimeApi {
  /** `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`. */
  readonly address: string
  /** Set once the runtime reports that loading the handler failed. */
  initError: PostedError | undefined
  /** Resolves at the first `next` poll: the handler module has loaded. */
  readonly initialised: Promise<void>

  private markInitialised: () => void = () => {}

  private readonly queue: Queued[] = []
  private readonly polls: ServerResponse[] = []
  private readonly awaiting = new Map<string, (outcome: RuntimeOutcome) => void>()
  private readonly pollWaiters: Array<{ count: number; resolve: () => void }> = []

  private constructor(
    private readonly server: Server,
    private readonly functionArn: string,
  ) {
    this.address = `127.0.0.1:${(server.address() as AddressInfo).port}`
    this.initialised = new Promise((resolve) => (this.markInitialised = resolve))
  }

  /** Listens on a free loopback port. */
  static async start(functionArn: string): Promise<RuntimeApi> {
    const server = createServer()
    // Never close idle keep-alive sockets: a frozen runtime cannot see the FIN and would reuse a
    // dead socket on thaw. Connections are closed explicitly in close().
    server.keepAliveTimeout = 0
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const api = new RuntimeApi(server, functionArn)
    // A runtime killed in the middle of a request aborts it; that is the sandbox's to report.
    server.on('request', (req, res) => void api.route(req, res).catch(() => res.destroy()))
    return api
  }

  /** Queues an event; a waiting (or the next) `next` poll receives it. */
  deliver(delivery: Delivery): PendingInvocation {
    const picked = new Promise<void>((markPicked) => this.queue.push({ delivery, markPicked }))
    const outcome = new Promise<RuntimeOutcome>((resolve) => this.awaiting.set(delivery.requestId, resolve))
    this.pump()
    return { picked, outcome }
  }

  /** Resolves once `count` polls wait at the same time: every loop of the runtime is idle. */
  whenPolling(count: number): Promise<void> {
    return new Promise((resolve) => {
      this.pollWaiters.push({ count, resolve })
      this.notifyPollWaiters()
    })
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? ''
    if (req.method === 'GET' && url === `${PREFIX}/invocation/next`) return this.poll(res)
    if (req.method === 'POST' && url === `${PREFIX}/init/error`) {
      this.initError = { body: await readBody(req), errorType: errorTypeHeader(req) }
      return reply(res, 202, { status: 'OK' })
    }
    const [, id = '', kind] = (req.method === 'POST' && RESULT_ROUTE.exec(url)) || []
    if (!kind) return reply(res, 404, { errorType: 'NotFound', errorMessage: `${req.method} ${url}` })
    const body = await readBody(req)
    this.settle(id, kind === 'response' ? { kind, body } : { kind: 'error', body, errorType: errorTypeHeader(req) }, res)
  }

  private poll(res: ServerResponse): void {
    this.markInitialised()
    this.polls.push(res)
    // A runtime that dies while polling must not be handed an event.
    res.on('close', () => {
      const index = this.polls.indexOf(res)
      if (index >= 0) this.polls.splice(index, 1)
    })
    this.pump()
  }

  private settle(id: string, outcome: RuntimeOutcome, res: ServerResponse): void {
    const resolve = this.awaiting.get(id)
    // Lambda refuses a second answer, or one for a request id it never sent.
    if (!resolve) return reply(res, 400, { errorType: 'InvalidRequestID', errorMessage: `unknown request id ${id}` })
    this.awaiting.delete(id)
    resolve(outcome)
    reply(res, 202, { status: 'OK' })
  }

  private pump(): void {
    while (this.queue.length > 0 && this.polls.length > 0) {
      // Both non-empty: checked by the loop condition.
      this.dispatch(this.queue.shift()!, this.polls.shift()!)
    }
    this.notifyPollWaiters()
  }

  private dispatch({ delivery, markPicked }: Queued, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'application/json',
      'Lambda-Runtime-Aws-Request-Id': delivery.requestId,
      'Lambda-Runtime-Deadline-Ms': String(Date.now() + delivery.timeoutMs),
      'Lambda-Runtime-Invoked-Function-Arn': this.functionArn,
      'Lambda-Runtime-Trace-Id': traceId(),
    })
    res.end(delivery.payload)
    markPicked()
  }

  private notifyPollWaiters(): void {
    for (const waiter of [...this.pollWaiters]) {
      if (this.polls.length < waiter.count) continue
      this.pollWaiters.splice(this.pollWaiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }
}

/** An X-Ray trace header in the format Lambda sends (epoch seconds in hex, 96-bit id). */
function traceId(): string {
  const epoch = Math.floor(Date.now() / 1000).toString(16)
  return `Root=1-${epoch}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=0`
}

function errorTypeHeader(req: IncomingMessage): string | undefined {
  const value = req.headers['lambda-runtime-function-error-type']
  return Array.isArray(value) ? value[0] : value
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function reply(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}
