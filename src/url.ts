/**
 * Connection URL parsing shared by the drivers: one set of messages, and one place that knows
 * where a password can hide (URL, options, PGPASSWORD) so every driver redacts the same secrets.
 * @module
 */
import { InvalidOptionError } from './errors.js'

/** Parses a postgres:// URL; errors name the option and never echo the value (it may hold a password). */
export function parseConnectionUrl(url: string | undefined): URL {
  if (url === undefined || url === null || url === '') {
    throw new InvalidOptionError('url', 'missing: pass a postgres:// connection URL (is DATABASE_URL set?)')
  }
  if (typeof url !== 'string') throw new InvalidOptionError('url', 'expected a postgres:// connection URL string')
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidOptionError('url', 'not a valid URL; expected postgres://user:password@host:port/database')
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new InvalidOptionError('url', `unsupported scheme "${parsed.protocol}"; expected postgres:// or postgresql://`)
  }
  if (!parsed.hostname) throw new InvalidOptionError('url', 'has no host')
  // An unencoded "/", "?" or "#" in the password ends the authority early, and the rest of the
  // password lands in the path, query or fragment, where no redaction would know to look.
  if ((parsed.pathname + parsed.search + parsed.hash).includes('@')) {
    throw new InvalidOptionError('url', 'has "@" after the host: percent-encode "/", "?", "#" and "@" in the user name and password')
  }
  return parsed
}

/** Every form of the password a message could echo: raw and URL-decoded, from options and PGPASSWORD. */
export function secretsOf(url: URL, ...more: Array<string | undefined>): string[] {
  const found = [url.password, safeDecode(url.password), ...more]
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
  if (env?.PGPASSWORD) found.push(env.PGPASSWORD)
  return [...new Set(found.filter((s): s is string => typeof s === 'string' && s.length > 0))]
}

export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

// Hosts reached without crossing a network: TLS adds nothing there.
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]'])

/**
 * Whether a connection to `hosts` gets warmconn's TLS default, verified TLS. The drivers connect
 * in plain text unless told otherwise, which across a network would send the password and data
 * in the clear; so any host that is not local (or a socket path) gets it, unless the URL
 * (`sslmode=`, `ssl=`) or the caller's own options (`explicit`) decide. Each driver spells the
 * result its own way; `ipAddress` is the one host when it is an IP address, which some clients
 * must be told to check the certificate against.
 */
export function tlsDefault(url: URL, hosts: readonly string[], explicit: boolean): { ipAddress: string | undefined } | undefined {
  if (explicit || url.searchParams.has('sslmode') || url.searchParams.has('ssl')) return undefined
  if (hosts.every((h) => LOCAL_HOSTS.has(h.replace(/:\d+$/, '')) || h.startsWith('/'))) return undefined
  const only = hosts.length === 1 ? hosts[0]! : undefined
  return { ipAddress: only && /^[\d.]+$|:/.test(only) ? only.replace(/^\[|\]$/g, '') : undefined }
}
