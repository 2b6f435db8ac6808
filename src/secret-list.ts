/**
 * The strings a driver must never print, as one live list: the static ones (URL password,
 * PGPASSWORD) fixed at construction, and every password a password function returned, appended
 * as they arrive. Everything that redacts (holder errors, pool events, the Durable Object's
 * replies) reads the list when it builds its output, so a token fetched an hour after the holder
 * was made is redacted like the URL's password.
 * @module
 */

/**
 * How many passwords from a function are kept, newest first out last. A token lives 15 minutes
 * and a connection at most maxLifetimeMs (30 minutes by default), so any connection still open
 * was made with one of the last few; 64 covers 16 hours of 15-minute tokens, in a few hundred KB
 * at most (an IAM token with a session token is 1-2 KB, kept in up to five forms).
 */
export const REMEMBERED_PASSWORDS = 64

export interface SecretList {
  /** The live list, static secrets first. Read it; never keep a copy. */
  readonly all: readonly string[]
  /** Adds a password a function returned (and the forms it may be printed in). */
  remember(password: string): void
}

/** A list that starts with `fixed` (never forgotten) and keeps the newest REMEMBERED_PASSWORDS passwords. */
export function secretList(fixed: readonly string[], capacity = REMEMBERED_PASSWORDS): SecretList {
  const all: string[] = [...fixed]
  const lastFixed = all.length
  // Each remembered password, as the group of strings it put in `all`, oldest first.
  const groups: string[][] = []
  return {
    all,
    remember(password) {
      // A cached token comes back for every connect: the newest is checked first, no growth.
      if (password.length === 0) return
      for (let i = groups.length - 1; i >= 0; i--) if (groups[i]![0] === password) return
      const forms = formsOf(password)
      groups.push(forms)
      all.push(...forms)
      if (groups.length > capacity) {
        const gone = groups.shift()!
        all.splice(lastFixed, gone.length)
      }
    },
  }
}

/**
 * Every form of a password worth redacting: as is, URL-encoded and URL-decoded (a token is a
 * query string, and may be printed inside a URL), and for an AWS-signed token (RDS IAM, DSQL) its
 * signature and session token on their own, the parts that grant access, in case only part of
 * the token is printed.
 */
function formsOf(password: string): string[] {
  const forms = [password, encodeURIComponent(password), decoded(password)]
  for (const name of ['X-Amz-Signature', 'X-Amz-Security-Token']) {
    const part = new RegExp(`[?&]${name}=([^&]+)`).exec(password)?.[1]
    if (part && part.length >= 16) forms.push(part, decoded(part))
  }
  return [...new Set(forms)]
}

function decoded(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
