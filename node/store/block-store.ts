import { createHash } from 'node:crypto'
import { readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { BlockStore } from '../../protocols/blocks/store.js'
import { BLOCK_BYTES_MAX } from '../../protocols/wire/validation/index.js'
import { writeFileAtomic } from './atomic-file.js'

/** sha2-256 multihash code: the only hash shardnet names blocks with (DESIGN.md principle 4) */
const SHA2_256 = 0x12

/** A block's bytes do not hash to its CID: refused on write, reported on read (disk corruption). */
export class BlockHashMismatchError extends Error {
  static override name = 'BlockHashMismatchError'
  constructor(cid: CID) {
    super(`block ${cid.toString()} does not match its hash`)
    this.name = 'BlockHashMismatchError'
  }
}

export class UnsupportedCidError extends Error {
  static override name = 'UnsupportedCidError'
  constructor(cid: CID) {
    super(`block ${cid.toString()} is not named by a sha2-256 CID`)
    this.name = 'UnsupportedCidError'
  }
}

export interface FileBlockStoreInit {
  /** folder holding one file per block */
  folder: string
  /**
   * largest block accepted, in bytes (the blocks protocol's own limit)
   * @default BLOCK_BYTES_MAX (256 MiB)
   */
  blockBytesMax?: number
}

/** CID of raw bytes the way shardnet names blocks: CIDv1, raw codec, sha2-256. */
export async function cidOfBytes(bytes: Uint8Array): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(bytes))
}

function digestMatches(cid: CID, bytes: Uint8Array): boolean {
  if (cid.multihash.code !== SHA2_256) return false
  const actual = createHash('sha256').update(bytes).digest()
  return Buffer.compare(actual, cid.multihash.digest) === 0
}

/**
 * A durable content-addressed block store: one file per block, named by the CID's multihash in
 * base32 (so CIDv0/v1 and any codec for the same bytes share one file), written atomically, and
 * verified against the hash on every write and every read. A block that fails the check on read is
 * deleted and reported missing, so corruption on disk is never served to a peer.
 */
export class FileBlockStore implements BlockStore {
  readonly folder: string
  readonly blockBytesMax: number

  constructor(init: FileBlockStoreInit) {
    this.folder = init.folder
    this.blockBytesMax = init.blockBytesMax ?? BLOCK_BYTES_MAX
  }

  private pathOf(cid: CID): string {
    if (cid.multihash.code !== SHA2_256) throw new UnsupportedCidError(cid)
    // a CIDv1 of the raw codec renders the multihash the same whatever codec the caller used
    return join(this.folder, CID.createV1(raw.code, cid.multihash).toString())
  }

  async has(cid: CID): Promise<boolean> {
    try {
      return (await stat(this.pathOf(cid))).isFile()
    } catch (error) {
      if (error instanceof UnsupportedCidError) return false
      return false
    }
  }

  /** Stores `bytes` under `cid` after checking the hash; storing a block twice is a no-op. */
  async put(cid: CID, bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength > this.blockBytesMax) {
      throw new RangeError(`block of ${bytes.byteLength} bytes exceeds the limit of ${this.blockBytesMax}`)
    }
    if (!digestMatches(cid, bytes)) throw new BlockHashMismatchError(cid)
    if (await this.has(cid)) return
    await writeFileAtomic(this.pathOf(cid), bytes, 0o600)
  }

  /** Hashes `bytes`, stores them and returns their CID. */
  async putBytes(bytes: Uint8Array): Promise<CID> {
    const cid = await cidOfBytes(bytes)
    await this.put(cid, bytes)
    return cid
  }

  /** The block's bytes, verified against its hash, or undefined when absent (or found corrupt). */
  async get(cid: CID): Promise<Uint8Array | undefined> {
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(await readFile(this.pathOf(cid)))
    } catch (error) {
      if (error instanceof UnsupportedCidError) return undefined
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
    if (!digestMatches(cid, bytes)) {
      await rm(this.pathOf(cid), { force: true })
      return undefined
    }
    return bytes
  }

  async delete(cid: CID): Promise<void> {
    await rm(this.pathOf(cid), { force: true })
  }
}
