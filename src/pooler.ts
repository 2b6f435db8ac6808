/**
 * Whether a connection reaches PostgreSQL itself or a transaction pooler (PgBouncer, RDS Proxy,
 * Supavisor, Neon's `-pooler` endpoints, Hyperdrive). Behind a pooler in transaction mode a
 * statement pipelined past the end of a transaction can be lost: seen with PgBouncer 1.18, a
 * statement sent in the same flight as the check before it hung about one time in six. So
 * warmconn pipelines nothing there.
 * @module
 */

// Host names of the hosted poolers, and the ports PgBouncer (6432) and Supabase's pooler (6543) listen on.
const POOLER_HOSTS = [/-pooler\./i, /\.pooler\.supabase\.com$/i, /\.proxy-[a-z0-9]+\.[a-z0-9-]+\.rds\.amazonaws\.com$/i]
const POOLER_PORTS = new Set([6432, 6543])

/** The URL names a pooler by its host or port. */
export function looksLikePooler(host: string, port: number): boolean {
  return POOLER_PORTS.has(port) || POOLER_HOSTS.some((pattern) => pattern.test(host))
}

/**
 * PostgreSQL's BackendKeyData carries the backend's process id, which on Linux is at most 2^22.
 * PgBouncer sends a random 32-bit key instead (seen: -2098278004, 581316269), so a number outside
 * that range means a pooler; one inside it is a real backend, or a pooler's lucky draw (1 in 1000).
 */
export function isServerPid(pid: number | undefined): boolean {
  return pid !== undefined && Number.isInteger(pid) && pid > 0 && pid <= 4_194_304
}
