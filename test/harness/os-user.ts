/**
 * The OS user PostgreSQL and PgBouncer run as when the tests run as root (both refuse to run as
 * root), and whether that user can reach a path: a checkout inside a directory only root may
 * enter (`mktemp -d`, anywhere under /root) is out of its reach.
 * @module
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'

export interface OsUser {
  name: string
  uid: number
  gid: number
}

const SERVER_USER = 'postgres'

/**
 * As root: the `postgres` OS user, created (with its group) if missing. Otherwise undefined: the
 * servers run as the current user.
 * @example const user = serverOsUser() // { name: 'postgres', uid: 102, gid: 104 } as root
 */
export function serverOsUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined
  const found = lookUp(SERVER_USER)
  if (found) return found
  try {
    if (!groupExists(SERVER_USER)) execFileSync('groupadd', ['--system', SERVER_USER], { stdio: 'pipe' })
    execFileSync('useradd', ['--system', '--gid', SERVER_USER, '--no-create-home', '--shell', '/usr/sbin/nologin', SERVER_USER], { stdio: 'pipe' })
  } catch (error) {
    const why = (error as { stderr?: Buffer }).stderr?.toString().trim() || String(error)
    throw new Error(`running as root, the test servers need an OS user "${SERVER_USER}" and it could not be created: ${why}`)
  }
  const created = lookUp(SERVER_USER)
  if (!created) throw new Error(`useradd ${SERVER_USER} succeeded but /etc/passwd has no such user`)
  return created
}

/**
 * The first directory on the way to `path` (or `path` itself) that `user` may not pass through,
 * or undefined when it can reach it. Without a user (not root) everything is reachable.
 */
export function unreachableBy(user: OsUser | undefined, path: string): string | undefined {
  if (!user) return undefined
  const chain: string[] = []
  for (let p = resolve(path); ; p = dirname(p)) {
    chain.unshift(p)
    if (dirname(p) === p) break
  }
  const groups = supplementaryGroups(user)
  for (const dir of chain) {
    const st = statSync(dir)
    if (!st.isDirectory()) continue
    const bits = st.uid === user.uid ? 0o100 : groups.has(st.gid) ? 0o010 : 0o001
    if ((st.mode & bits) === 0) return dir
  }
  return undefined
}

function lookUp(name: string): OsUser | undefined {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`))
  if (!line) return undefined
  const [, , uid, gid] = line.split(':')
  return { name, uid: Number(uid), gid: Number(gid) }
}

function groupExists(name: string): boolean {
  return readFileSync('/etc/group', 'utf8').split('\n').some((l) => l.startsWith(`${name}:`))
}

/** The user's primary group and every group in /etc/group that lists it. */
function supplementaryGroups(user: OsUser): Set<number> {
  const groups = new Set([user.gid])
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [, , gid, members = ''] = line.split(':')
    if (members.split(',').includes(user.name)) groups.add(Number(gid))
  }
  return groups
}
