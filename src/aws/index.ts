/**
 * Passwords for Amazon RDS / Aurora IAM authentication and Aurora DSQL: short-lived tokens,
 * signed offline from the function's AWS credentials by AWS's own signers (optional peer
 * dependencies, loaded on first use: install `@aws-sdk/rds-signer` or `@aws-sdk/dsql-signer`
 * for the one you use). Each helper returns a password function for any warmconn driver: asked
 * once for each new connection, it signs once per token lifetime (a burst of connects signs
 * once) and signs anew once the server refuses a token. Nothing here touches TLS: warmconn's
 * default, verified TLS for any host that is not local, stays on, and IAM needs it.
 * @module
 */
import { InvalidOptionError } from '../errors.js'
import { cachedPassword } from '../password-cache.js'
import type { PasswordFunction } from '../password.js'

export type { PasswordFunction } from '../password.js'

/** AWS credentials, as the signers take them: fixed, or a provider (the SDK's default chain when omitted). */
export type AwsCredentials =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }
  | (() => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }>)

interface SignerCommon {
  /** The database endpoint, exactly as in the connection URL: the token is signed for it. */
  hostname: string
  /** The AWS region of the database; the SDK's default (AWS_REGION on Lambda) when omitted. */
  region?: string
  /** Credentials to sign with; the SDK's default provider chain (on Lambda: the function's role) when omitted. */
  credentials?: AwsCredentials
  /** A profile of the AWS config files, for region and credentials. */
  profile?: string
  /** Sign a new token this long before the old one expires. Default 60 s. */
  refreshBeforeExpiryMs?: number
}

export interface RdsIamPasswordOptions extends SignerCommon {
  /** The database port, as in the connection URL. */
  port: number
  /** The database user, as in the connection URL (a role granted `rds_iam`). */
  username: string
}

export interface DsqlPasswordOptions extends SignerCommon {
  /** Connecting as the `admin` role: signs a DbConnectAdmin token instead of DbConnect. */
  admin?: boolean
  /** How long each token is valid. Default 15 minutes (900,000 ms); whole seconds. */
  expiresInMs?: number
}

/** RDS IAM tokens are valid 15 minutes; AWS fixes it. */
const RDS_TOKEN_LIFETIME_MS = 900_000
const DEFAULT_REFRESH_MS = 60_000
// SigV4 presigned URLs cannot be valid longer than 7 days.
const MAX_EXPIRES_MS = 604_800_000

/**
 * An RDS / Aurora IAM authentication token for each new connection, from `@aws-sdk/rds-signer`.
 * Leave the password out of the URL; the token is signed for `hostname`, `port` and `username`,
 * which must be the URL's.
 * @example
 * import { warmPostgres } from 'warmconn/postgres'
 * import { rdsIamPassword } from 'warmconn/aws'
 * const db = warmPostgres('postgres://app_iam@mydb.abc123.eu-west-1.rds.amazonaws.com:5432/shop', {
 *   postgres: { password: rdsIamPassword({ hostname: 'mydb.abc123.eu-west-1.rds.amazonaws.com', port: 5432, username: 'app_iam', region: 'eu-west-1' }) },
 * })
 */
export function rdsIamPassword(options: RdsIamPasswordOptions): PasswordFunction {
  const o = checkOptions('rdsIamPassword', options, ['hostname', 'port', 'username', 'region', 'credentials', 'profile', 'refreshBeforeExpiryMs'])
  if (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65_535) {
    throw new InvalidOptionError('rdsIamPassword.port', 'expected the database port, an integer from 1 to 65535')
  }
  if (typeof o.username !== 'string' || o.username === '') throw new InvalidOptionError('rdsIamPassword.username', 'expected the database user name')
  const { hostname, port, username, region, credentials, profile } = o
  let signer: Promise<{ getAuthToken(): Promise<string> }> | undefined
  const sign = async (): Promise<string> => {
    signer ??= load('@aws-sdk/rds-signer', 'rdsIamPassword', () => import('@aws-sdk/rds-signer')).then(
      ({ Signer }) => new Signer({ hostname, port, username, ...defined({ region, credentials, profile }) }),
    )
    // A failed load is not kept: the next connect tries again (and reports the same).
    return (await signer.catch((err: unknown) => ((signer = undefined), Promise.reject(err)))).getAuthToken()
  }
  return described(cachedPassword(sign, lifetime(RDS_TOKEN_LIFETIME_MS, o.refreshBeforeExpiryMs, 'rdsIamPassword')), 'rdsIamPassword', { hostname, port, username, region, profile })
}

/**
 * An Aurora DSQL authentication token for each new connection, from `@aws-sdk/dsql-signer`.
 * Leave the password out of the URL; pass `admin: true` when the URL's user is `admin`.
 * @example
 * import { warmPostgres } from 'warmconn/postgres'
 * import { dsqlPassword } from 'warmconn/aws'
 * const host = 'abcdefghijklmnop.dsql.us-east-1.on.aws'
 * const db = warmPostgres(`postgres://admin@${host}:5432/postgres`, {
 *   postgres: { password: dsqlPassword({ hostname: host, region: 'us-east-1', admin: true }) },
 * })
 */
export function dsqlPassword(options: DsqlPasswordOptions): PasswordFunction {
  const o = checkOptions('dsqlPassword', options, ['hostname', 'region', 'admin', 'expiresInMs', 'credentials', 'profile', 'refreshBeforeExpiryMs'])
  if (o.admin !== undefined && typeof o.admin !== 'boolean') throw new InvalidOptionError('dsqlPassword.admin', 'expected true or false')
  const expiresInMs = o.expiresInMs ?? RDS_TOKEN_LIFETIME_MS
  if (typeof expiresInMs !== 'number' || !Number.isInteger(expiresInMs / 1000) || expiresInMs < 1000 || expiresInMs > MAX_EXPIRES_MS) {
    throw new InvalidOptionError('dsqlPassword.expiresInMs', `expected whole seconds in milliseconds, from 1000 to ${MAX_EXPIRES_MS} (7 days)`)
  }
  const { hostname, region, credentials, profile, admin = false } = o
  let signer: Promise<{ getDbConnectAuthToken(): Promise<string>; getDbConnectAdminAuthToken(): Promise<string> }> | undefined
  const sign = async (): Promise<string> => {
    signer ??= load('@aws-sdk/dsql-signer', 'dsqlPassword', () => import('@aws-sdk/dsql-signer')).then(
      ({ DsqlSigner }) => new DsqlSigner({ hostname, expiresIn: expiresInMs / 1000, ...defined({ region, credentials, profile }) }),
    )
    const s = await signer.catch((err: unknown) => ((signer = undefined), Promise.reject(err)))
    return admin ? s.getDbConnectAdminAuthToken() : s.getDbConnectAuthToken()
  }
  return described(cachedPassword(sign, lifetime(expiresInMs, o.refreshBeforeExpiryMs, 'dsqlPassword')), 'dsqlPassword', { hostname, region, admin, expiresInMs, profile })
}

/** Validates what both helpers share and rejects unknown keys, naming them. */
function checkOptions<T extends SignerCommon>(helper: string, options: T, known: readonly string[]): T {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError(helper, 'expected an options object')
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new InvalidOptionError(`${helper}.${key}`, `unknown option; known ones are ${known.join(', ')}`)
  }
  if (typeof options.hostname !== 'string' || options.hostname === '') throw new InvalidOptionError(`${helper}.hostname`, 'expected the database host name, as in the connection URL')
  if (options.region !== undefined && (typeof options.region !== 'string' || options.region === '')) throw new InvalidOptionError(`${helper}.region`, 'expected an AWS region such as "us-east-1"')
  if (options.profile !== undefined && typeof options.profile !== 'string') throw new InvalidOptionError(`${helper}.profile`, 'expected a profile name')
  const c = options.credentials
  if (c !== undefined && typeof c !== 'function' && (c === null || typeof c !== 'object' || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string')) {
    throw new InvalidOptionError(`${helper}.credentials`, 'expected { accessKeyId, secretAccessKey, sessionToken? } or a credential provider function')
  }
  return options
}

function lifetime(lifetimeMs: number, refreshBeforeExpiryMs: number | undefined, helper: string): { lifetimeMs: number; refreshBeforeExpiryMs: number } {
  const refresh = refreshBeforeExpiryMs ?? Math.min(DEFAULT_REFRESH_MS, lifetimeMs / 4)
  if (typeof refresh !== 'number' || !Number.isFinite(refresh) || refresh < 0 || refresh >= lifetimeMs) {
    throw new InvalidOptionError(`${helper}.refreshBeforeExpiryMs`, `expected milliseconds from 0 to below the token's lifetime (${lifetimeMs} ms)`)
  }
  return { lifetimeMs, refreshBeforeExpiryMs: refresh }
}

/** Loads an optional peer dependency, or says which package to install. */
async function load<M>(pkg: string, helper: string, importer: () => Promise<M>): Promise<M> {
  try {
    return await importer()
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new InvalidOptionError(helper, `needs the package ${pkg}, an optional peer dependency of warmconn: npm install ${pkg}`)
    }
    throw err
  }
}

/** Leaves out what is undefined, so the signer applies its own defaults (exactOptionalPropertyTypes). */
function defined<T extends Record<string, unknown>>(values: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> }
}

/**
 * Shared holders are keyed by their options, functions by their text (registry.ts), and every
 * provider from one helper has the same text: naming what it signs for keeps two of them apart.
 * No credentials are in the name.
 */
function described(fn: PasswordFunction, helper: string, what: Record<string, unknown>): PasswordFunction {
  const name = `${helper}(${JSON.stringify(what)})`
  return Object.defineProperty(fn, 'toString', { value: () => name, configurable: true, enumerable: false })
}
