/**
 * The wording of each connect failure, for the codes a test server here cannot produce (a
 * temporary DNS failure, a full server, a silent network): what the message says for each. The
 * ones a real server can produce are proven against it in misconfiguration.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { connectFailure } from '../src/connect-failure.js'
import { classifyCode } from '../src/classify.js'
import { AuthError, ConfigRejectedError, ConnectError, HostNotFoundError, TlsError } from '../src/index.js'

const where = 'app@db.example.com:5432/shop (postgres)'
const fail = (code: string, gaveUp?: string) =>
  connectFailure({ seen: classifyCode(code), detail: 'driver says so', where, cause: {}, attempts: 3, ...(gaveUp ? { gaveUp } : {}) })

describe('connect failures, worded for what happened', () => {
  it.each([
    ['EAI_AGAIN', /the host name could not be resolved \(a temporary DNS failure, EAI_AGAIN\): no server was reached/],
    ['ECONNREFUSED', /the connection was refused: nothing accepts connections at that host and port/],
    ['CONNECT_TIMEOUT', /connect timeout, no answer within connectTimeoutMs: a firewall or security group dropping the packets, or the wrong host/],
    ['53300', /no connection slots left \(53300 too many connections\): lower maxConnections/],
    ['57P03', /starting up, shutting down or in recovery \(57P03\)/],
    ['EHOSTUNREACH', /no network route to the host/],
  ])('%s, retried until the budget ran out: ConnectError saying %s', (code, words) => {
    const err = fail(code, 'another retry would pass connectBudgetMs (6000 ms)')
    expect(err).toBeInstanceOf(ConnectError)
    expect(err).toMatchObject({ code: 'WARMCONN_CONNECT_FAILED', causeCode: code, attempts: 3 })
    expect(err.message).toMatch(new RegExp(`^Could not connect to ${where.replace(/[().]/g, '\\$&')} after 3 attempt\\(s\\), another retry would pass connectBudgetMs \\(6000 ms\\): `))
    expect(err.message).toMatch(words)
    expect(err.message).toMatch(/: driver says so$/)
  })

  it.each([
    ['ENOTFOUND', HostNotFoundError, /does not resolve \(DNS lookup failed, ENOTFOUND\): no server was reached/],
    ['TLS_REFUSED', TlsError, /the server does not offer TLS/],
    ['SELF_SIGNED_CERT_IN_CHAIN', TlsError, /the server's certificate was not accepted \(SELF_SIGNED_CERT_IN_CHAIN; not retried\)/],
    ['CERT_NOT_YET_VALID', TlsError, /certificate was not accepted/],
    ['ERR_TLS_CERT_ALTNAME_INVALID', TlsError, /check that the host name matches the certificate/],
    ['3D000', ConfigRejectedError, /rejected the connection settings \(3D000; not retried\)/],
    ['28P01', AuthError, /the server refused these credentials \(28P01; not retried/],
  ])('%s: never retried, %o, saying %s; public codes unchanged', (code, type, words) => {
    const err = fail(code)
    expect(err).toBeInstanceOf(type)
    expect(err.code).toBe(type === AuthError ? 'WARMCONN_AUTH_FAILED' : 'WARMCONN_CONFIG_REJECTED')
    expect(err.message).toMatch(words)
  })
})
