import { randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, readFile, stat } from 'node:fs/promises'
import { writeFileAtomic } from '../store/atomic-file.js'

/** Reads the API bearer token, or creates a fresh random one (mode 0600) on first start. */
export async function loadOrCreateApiToken(path: string): Promise<string> {
  try {
    const token = (await readFile(path, 'utf8')).trim()
    if (/^[0-9a-f]{64}$/.test(token)) {
      if (((await stat(path)).mode & 0o777) !== 0o600) await chmod(path, 0o600)
      return token
    }
    // an empty or damaged token file (hand-edited, torn by an old crash) is replaced, never trusted
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const token = randomBytes(32).toString('hex')
  await writeFileAtomic(path, `${token}\n`, 0o600)
  return token
}

/** Compares a presented `Authorization` header with the token in constant time. */
export function bearerTokenMatches(header: string | undefined, token: string): boolean {
  if (header == null) return false
  const match = /^Bearer ([^\s]+)$/.exec(header)
  if (match == null) return false
  const presented = Buffer.from(match[1])
  const expected = Buffer.from(token)
  return presented.length === expected.length && timingSafeEqual(presented, expected)
}
