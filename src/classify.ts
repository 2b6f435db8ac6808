/**
 * What PostgreSQL and socket error codes mean for the lifecycle. Shared by every driver, since
 * SQLSTATEs and errnos are the same whichever client reads them.
 * @module
 */
import type { Classified } from './driver.js'

// Wrong credentials: a retry cannot succeed and would only lock the account or flood the log.
const AUTH = new Set(['28P01', '28000', 'SASL_SIGNATURE_MISMATCH'])
// The server or the client refuses the configuration itself: unknown database, no such host.
const CONFIG = new Set(['3D000', '42704', '0A000', 'AUTH_TYPE_NOT_IMPLEMENTED', 'ENOTFOUND'])
// TLS could not be set up: Node's certificate checks, and our code for a server without TLS.
const TLS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'TLS_REFUSED',
])
// Only ever raised while opening a connection, so no statement of the caller was sent.
const TRANSIENT = new Set([
  '53300', '53400', '57P03', '08001', '08004', 'ECONNREFUSED', 'EAI_AGAIN', 'EHOSTUNREACH',
  'ENETUNREACH', 'CONNECT_TIMEOUT',
  // A password function that failed or stayed silent (password.ts): asked again next attempt.
  'PASSWORD_FUNCTION_FAILED', 'PASSWORD_FUNCTION_TIMEOUT',
])
// The connection died; whatever was in flight may or may not have reached the server.
const CONNECTION = new Set([
  '57P01', '57P02', '57P05', '08000', '08003', '08006', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED',
  'CONNECTION_ENDED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ERR_STREAM_DESTROYED', 'ERR_SOCKET_CLOSED',
])

/** Whether `code` says TLS could not be set up (untrusted certificate, no TLS on the server...). */
export function isTlsCode(code: string | undefined): boolean {
  return code !== undefined && (TLS.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.startsWith('CERT_'))
}

export function errorCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return undefined
  const code = (err as { code?: unknown }).code ?? (err as { errno?: unknown }).errno
  return typeof code === 'string' ? code : undefined
}

/** Classifies by code; `extra` lets a driver add codes of its own (e.g. a WebSocket close). */
export function classifyCode(code: string | undefined, extra?: (code: string | undefined) => Classified | undefined): Classified {
  const own = extra?.(code)
  if (own) return own
  if (code === undefined) return { kind: 'query', code, notSent: false }
  if (AUTH.has(code)) return { kind: 'auth', code, notSent: true }
  if (CONFIG.has(code) || isTlsCode(code)) return { kind: 'config', code, notSent: true }
  if (TRANSIENT.has(code)) return { kind: 'transient', code, notSent: true }
  if (CONNECTION.has(code)) return { kind: 'connection', code, notSent: false }
  return { kind: 'query', code, notSent: false }
}

/**
 * Classifies a driver error: its code, plus what only the message tells. Poolers report a failed
 * login as 08P01 (protocol violation) with "authentication failed", which must not be retried.
 */
export function classifyError(err: unknown, code: string | undefined, extra?: (code: string | undefined) => Classified | undefined): Classified {
  const message = String((err as { message?: unknown } | null)?.message)
  if (code === '08P01' && /authentication failed/i.test(message)) return { kind: 'auth', code, notSent: true }
  // workerd's refused connect carries no code, only this message; nothing was sent yet.
  if (code === undefined && /proxy request failed, cannot connect/i.test(message)) {
    return { kind: 'transient', code: 'WORKERD_CONNECT_FAILED', notSent: true }
  }
  // workerd's words for a socket reset (by the peer or the network), also without a code: the
  // connection died. Read as a query error it was not retried at connect (the Worker answered
  // 503 for every server restart) and left a dead connection in the holder mid-call.
  if (code === undefined && /^network connection lost\.?$/i.test(message)) {
    return { kind: 'connection', code: 'WORKERD_CONNECTION_LOST', notSent: false }
  }
  // Node's words for a peer that closed (FIN) in the middle of the TLS handshake: what a server
  // without TLS does when asked for it (postgres.js starts TLS even after the server said no).
  // A network reset reads "read ECONNRESET" instead, and stays a retried connection error.
  if (code === 'ECONNRESET' && /disconnected before secure TLS connection was established/.test(message)) {
    return { kind: 'config', code: 'TLS_REFUSED', notSent: true }
  }
  return classifyCode(code, extra)
}

const TX_WORDS = /begin|start|commit|end|abort|rollback|prepare/i

/**
 * Tracks, from the statements sent, whether a transaction is open, so hygiene costs no round
 * trip when none is. Leading comments are skipped; `ROLLBACK TO SAVEPOINT` keeps it open.
 */
export function nextTxState(open: boolean, text: string): boolean {
  // Most statements name none of these words: one scan, instead of splitting and parsing each.
  if (!TX_WORDS.test(text)) return open
  for (const raw of text.split(';')) {
    const stmt = raw.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/)*/, '').toLowerCase()
    if (/^(begin|start\s+transaction)\b/.test(stmt)) open = true
    else if (/^(commit|end|abort|prepare\s+transaction)\b/.test(stmt)) open = /\band\s+chain\b/.test(stmt)
    else if (/^rollback\b/.test(stmt) && !/^rollback\s+(work\s+|transaction\s+)?to\b/.test(stmt)) open = /\band\s+chain\b/.test(stmt)
  }
  return open
}
