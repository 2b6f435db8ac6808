/**
 * The words for a connect that failed, chosen by what actually happened, so the message points at
 * the fix: a host name that does not resolve, a port nobody listens on, TLS, credentials the
 * server refused, settings the server refused, or transient failures that outlasted the retries.
 * Public `code`s stay as they were: a DNS miss and a TLS failure are ConfigRejectedError subclasses.
 * @module
 */
import type { Classified } from './driver.js'
import { isTlsCode } from './classify.js'
import { AuthError, ConfigRejectedError, ConnectError, HostNotFoundError, TlsError, type WarmconnError } from './errors.js'

export interface ConnectFailure {
  seen: Classified
  /** The driver's own message, already redacted. */
  detail: string
  /** `user@host:port/database (driver)`, no password. */
  where: string
  cause: ErrorOptions
  attempts: number
  /** Why retrying stopped, for failures that were worth retrying; undefined for auth and config. */
  gaveUp?: string
}

/**
 * The error for a connect that will not be retried again.
 * @example throw connectFailure({ seen, detail, where, cause, attempts: 1 })
 */
export function connectFailure({ seen, detail, where, cause, attempts, gaveUp }: ConnectFailure): WarmconnError {
  const code = seen.code
  if (seen.kind === 'auth') {
    // A password from a function was fetched anew once after a first refusal: say so, and what to check.
    const why = seen.hint
      ? `(${code ?? 'no code'}). ${cap(seen.hint)}`
      : `(${code ?? 'no code'}; not retried, a retry cannot fix a password). Check the user name and password in the connection URL`
    return new AuthError(`Authentication failed for ${where}: the server refused these credentials ${why}: ${detail}`, code, cause)
  }
  if (seen.kind === 'config') {
    if (code === 'ENOTFOUND') {
      return new HostNotFoundError(
        `The host name of ${where} does not resolve (DNS lookup failed, ENOTFOUND): no server was reached (not retried). ` +
          `Check the host in the connection URL: ${detail}`,
        code,
        cause,
      )
    }
    if (code === 'TLS_REFUSED') {
      return new TlsError(
        `TLS failed for ${where}: the server does not offer TLS, and TLS was asked for (warmconn asks for verified TLS for any host ` +
          `that is not local; not retried). Turn TLS on at the server, or add ?sslmode=disable on a network you trust: ${detail}`,
        code,
        cause,
      )
    }
    if (isTlsCode(code)) {
      return new TlsError(
        `TLS failed for ${where}: the server's certificate was not accepted (${code}; not retried). Give the CA that signed it ` +
          `(postgres: { ssl: { ca } }), check that the host name matches the certificate, or use ?sslmode=require to encrypt without verifying: ${detail}`,
        code,
        cause,
      )
    }
    return new ConfigRejectedError(
      `The server at ${where} rejected the connection settings (${code ?? 'no code'}; not retried): ${detail}`,
      code,
      cause,
    )
  }
  const what = CONNECT_WORDS[code ?? ''] ?? (seen.kind === 'transient' || seen.kind === 'connection' ? '' : 'an error that is not a connection failure')
  return new ConnectError(
    `Could not connect to ${where} after ${attempts} attempt(s), ${gaveUp ?? 'giving up'}${what ? `: ${what}` : ''}: ${detail}`,
    attempts,
    code,
    cause,
  )
}

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)

// What each retried failure means, in the words of someone looking for the fix.
const REFUSED = 'the connection was refused: nothing accepts connections at that host and port (is the server running, is the port right?)'
const CONNECT_WORDS: Record<string, string> = {
  ECONNREFUSED: REFUSED,
  WORKERD_CONNECT_FAILED: REFUSED,
  // workerd's only words for a refused port, as for a reset: say both.
  WORKERD_CONNECTION_LOST: 'the network connection was lost while connecting (workerd reports a refused connection this way too: is the server running, is the port right?)',
  EAI_AGAIN: 'the host name could not be resolved (a temporary DNS failure, EAI_AGAIN): no server was reached',
  EHOSTUNREACH: 'no network route to the host (EHOSTUNREACH)',
  ENETUNREACH: 'the network is unreachable (ENETUNREACH)',
  CONNECT_TIMEOUT: 'connect timeout, no answer within connectTimeoutMs: a firewall or security group dropping the packets, or the wrong host',
  '53300': 'the server has no connection slots left (53300 too many connections): lower maxConnections, keep idleTimeoutMs short, or put a pooler in front',
  '53400': 'the server refused the connection for a configured limit (53400)',
  '57P03': 'the server is starting up, shutting down or in recovery (57P03)',
  // A password function (password.ts): asked again for each attempt.
  PASSWORD_FUNCTION_FAILED: 'the password function failed each time it was asked',
  PASSWORD_FUNCTION_TIMEOUT: 'the password function did not return within connectTimeoutMs',
  PASSWORD_FUNCTION_UNUSABLE: 'the password function cannot give a password (not retried)',
}
