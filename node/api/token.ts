// The control API's bearer tokens: two random 256-bit tokens in the data dir, each in its own file
// (mode 0600). The admin token (api-token) may use every route; the read token (api-read-token)
// only the routes whose scope is `read` (server.ts API_ROUTE_SCOPES): status, metrics, peers, task
// listings and results, what a dashboard needs.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, readFile, stat } from 'node:fs/promises'
import { writeFileAtomic } from '../store/atomic-file.js'

/** what a token may do: `read` routes only, or every route */
export type ApiScope = 'read' | 'admin'

/** the file name of the read-only token, next to the admin token's `api-token` in the data dir */
export const API_READ_TOKEN_FILE = 'api-read-token'

export interface ApiTokens {
  admin: string
  read: string
}

const TOKEN_PATTERN = /^[0-9a-f]{64}$/

async function createApiToken(path: string): Promise<string> {
  const token = randomBytes(32).toString('hex')
  await writeFileAtomic(path, `${token}\n`, 0o600)
  return token
}

/** Reads the API bearer token, or creates a fresh random one (mode 0600) on first start. */
export async function loadOrCreateApiToken(path: string): Promise<string> {
  try {
    const token = (await readFile(path, 'utf8')).trim()
    if (TOKEN_PATTERN.test(token)) {
      if (((await stat(path)).mode & 0o777) !== 0o600) await chmod(path, 0o600)
      return token
    }
    // an empty or damaged token file (hand-edited, torn by an old crash) is replaced, never trusted
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  return createApiToken(path)
}

/**
 * Reads both tokens, creating either on first start. A read token equal to the admin token (a
 * copied file) is replaced: it would carry the admin scope.
 */
export async function loadOrCreateApiTokens(adminPath: string, readPath: string): Promise<ApiTokens> {
  const admin = await loadOrCreateApiToken(adminPath)
  let read = await loadOrCreateApiToken(readPath)
  if (read === admin) read = await createApiToken(readPath)
  return { admin, read }
}

/** the token of an `Authorization: Bearer <token>` header, or undefined */
function presentedToken(header: string | undefined): string | undefined {
  if (header == null) return undefined
  return /^Bearer ([^\s]+)$/.exec(header)?.[1]
}

/**
 * Constant-time equality: both sides are hashed first, so neither the length nor the contents of
 * the expected token show in the time taken.
 */
function tokensEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** Compares a presented `Authorization` header with the token in constant time. */
export function bearerTokenMatches(header: string | undefined, token: string): boolean {
  const presented = presentedToken(header)
  return presented !== undefined && tokensEqual(presented, token)
}

/**
 * The scope of the token a request presents, or undefined for none or a wrong one. Both tokens are
 * always compared (no early exit), each in constant time.
 */
export function bearerTokenScope(
  header: string | undefined,
  tokens: { admin: string; read?: string },
): ApiScope | undefined {
  const presented = presentedToken(header)
  if (presented === undefined) return undefined
  const admin = tokensEqual(presented, tokens.admin)
  const read = tokens.read !== undefined && tokensEqual(presented, tokens.read)
  return admin ? 'admin' : read ? 'read' : undefined
}
