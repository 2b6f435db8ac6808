/**
 * The default `db.client.connection.pool.name`: `server.address:server.port/db.namespace`, the
 * combination the semantic conventions suggest for a pool without a name of its own. Never the
 * user or the password: a pool name ends up on every data point, in every backend that stores them.
 * @module
 */

/**
 * `host:port/database` from a holder's target (`user@host:port/database`). A host holds no `@`
 * and no `/`, so the user ends at the last `@` before `host:port/`, whatever the user contains.
 * @example poolNameOf('app@db.example.com:5432/shop') // 'db.example.com:5432/shop'
 */
export function poolNameOf(target: string): string {
  return target.replace(/^.*@(?=[^@/]*\/)/s, '')
}
