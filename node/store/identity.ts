import { chmod, readFile, stat } from 'node:fs/promises'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { writeFileAtomic } from './atomic-file.js'

/** The identity file exists but is not a key we can use (truncated, another format, wrong type). */
export class IdentityFileError extends Error {
  static override name = 'IdentityFileError'
  constructor(message: string) {
    super(message)
    this.name = 'IdentityFileError'
  }
}

/**
 * Loads the node's Ed25519 key from `path`, or creates one (mode 0600) when the file does not exist.
 * The PeerId derives from this key, so a restarted node keeps its name. A key file readable by
 * others is tightened to 0600 rather than refused: the owner's intent is clear, the risk is not ours
 * to keep.
 */
export async function loadOrCreateIdentity(
  path: string,
): Promise<{ privateKey: PrivateKey; created: boolean }> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    const privateKey = await generateKeyPair('Ed25519')
    await writeFileAtomic(path, privateKeyToProtobuf(privateKey), 0o600)
    return { privateKey, created: true }
  }
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(bytes)
  } catch (error) {
    throw new IdentityFileError(`the identity key ${path} is unreadable (${(error as Error).message})`)
  }
  if (privateKey.type !== 'Ed25519') {
    throw new IdentityFileError(`the identity key ${path} is ${privateKey.type}, expected Ed25519`)
  }
  const mode = (await stat(path)).mode & 0o777
  if (mode !== 0o600) {
    await chmod(path, 0o600)
  }
  return { privateKey, created: false }
}
