/**
 * The two deployments of the example app behind one interface: a request in, the app's answer
 * out, timed the way a client would see it.
 * @module
 */
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda'
import { httpEvent } from '../../test/harness/lambda/apigw.js'
import type { LambdaEmulator } from '../../test/harness/lambda/emulator.js'
import type { TestWorker } from '../../test/harness/worker.js'

export interface Answer {
  status: number
  body: unknown
  /** From sending the request to the whole answer. */
  ms: number
}

export interface Runtime {
  /** Short name for log lines. */
  readonly name: string
  /** Column heading in the report. */
  readonly label: string
  /** The application_name its connections show in pg_stat_activity. */
  readonly appName: string
  /** Sends one request; anything but a 2xx answer is an error, and so is a request once stopping. */
  request(method: 'GET' | 'POST', path: string, body?: object): Promise<Answer>
}

/**
 * The function in the freeze emulator, called through API Gateway HTTP API events. Nothing is
 * sent once `stopping` is aborted: an invocation after the kill would start a new process.
 */
export function lambdaRuntime(lambda: LambdaEmulator, appName: string, stopping: AbortSignal): Runtime {
  const name = 'lambda'
  return {
    name,
    label: 'Lambda (frozen)',
    appName,
    async request(method, path, body) {
      stopping.throwIfAborted()
      const out = await lambda.invoke(httpEvent({ method, path, ...(body === undefined ? {} : { body }) }))
      if (out.error) throw new Error(`${name} ${method} ${path}: ${out.error.errorType}: ${out.error.errorMessage}`)
      const result = out.result as APIGatewayProxyStructuredResultV2
      const answer = { status: result.statusCode ?? 200, body: JSON.parse(result.body ?? 'null') as unknown, ms: out.durationMs }
      return expectSuccess(name, method, path, answer)
    },
  }
}

/** The Worker in Miniflare; the connection lives in its Durable Object. */
export function workerRuntime(worker: TestWorker, appName: string, stopping: AbortSignal): Runtime {
  const name = 'worker'
  return {
    name,
    label: 'Worker (Durable Object)',
    appName,
    async request(method, path, body) {
      stopping.throwIfAborted()
      const { status, body: parsed, ms } = await worker.fetch(method, path, body === undefined ? undefined : JSON.stringify(body))
      return expectSuccess(name, method, path, { status, body: parsed, ms })
    },
  }
}

function expectSuccess(name: string, method: string, path: string, answer: Answer): Answer {
  if (answer.status >= 200 && answer.status < 300) return answer
  const error = (answer.body as { error?: unknown } | null)?.error
  throw new Error(`${name} ${method} ${path} answered ${answer.status}${typeof error === 'string' ? `: ${error}` : ''}`)
}
