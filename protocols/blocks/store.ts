/**
 * The content-addressed block store interface, and the in-memory reference implementation. A durable
 * store (node/store/) implements the same interface. Stores trust their caller: the blocks service
 * verifies every fetched block against its CID before putting it.
 */
import type { CID } from 'multiformats/cid'

export interface BlockStore {
  has(cid: CID): Promise<boolean>
  /** The block's bytes, or undefined when the store does not hold it. */
  get(cid: CID): Promise<Uint8Array | undefined>
  put(cid: CID, bytes: Uint8Array): Promise<void>
  delete(cid: CID): Promise<void>
  /**
   * Optional: a writer that takes a block's bytes in order while they arrive, so that a durable store can
   * write (and flush) them beside the transfer instead of after it. Without it the blocks service put()s
   * the whole block once verified.
   */
  writer?(cid: CID): BlockWriter
}

/** Stores one block from its bytes in order; nothing is stored unless commit() resolves. */
export interface BlockWriter {
  /**
   * Queues the next bytes of the block. The writer reads them until the returned promise settles, so the
   * caller must not change them before that. The promise never rejects: a failed write is reported by
   * commit().
   */
  write(bytes: Uint8Array): Promise<void>
  /**
   * Stores the bytes written so far as the block, durably. Call it only once those bytes are verified
   * against the CID: a writer trusts its caller, as put() may. Rejects (and stores nothing) if a write failed
   * or the block is over the store's limit.
   */
  commit(): Promise<void>
  /** Drops what was written; nothing is stored. */
  abort(): Promise<void>
  /**
   * Optional: the temp file this writer commits from. A caller that can write the bytes off the event loop
   * (the blocks service's worker thread) may, instead of calling write(), create this file itself
   * (exclusively, mode 0600), write the block into it from offset 0 and fdatasync it about every `syncBytes`
   * bytes; commit() then fsyncs whatever the file holds and renames it into place (refusing a file over the
   * store's limit), and abort() removes it. Use one way or the other for a block, never both.
   */
  readonly file?: BlockFile
}

/** See BlockWriter.file. */
export interface BlockFile {
  path: string
  /** flush (fdatasync) about every this many bytes, so that commit's own fsync has little left to do */
  syncBytes: number
}

/** The local store could not write a block (disk full, I/O error): not the peer's fault. */
export class BlockStoreWriteError extends Error {
  static override name = 'BlockStoreWriteError'
  override name = 'BlockStoreWriteError'
}

/** The store is over its byte budget; the block was not stored. */
export class BlockStoreFullError extends Error {
  static override name = 'BlockStoreFullError'
  override name = 'BlockStoreFullError'
}

/** Bytes an in-memory block store holds at most (1 GiB). */
export const MEMORY_STORE_BYTES_MAX_DEFAULT = 1024 ** 3

export interface MemoryBlockStoreInit {
  /**
   * Total bytes held at most.
   * @default MEMORY_STORE_BYTES_MAX_DEFAULT
   */
  bytesMax?: number
}

/** Blocks keyed by the multihash (so CIDv0/v1 or any codec with the same hash share one entry). */
export class MemoryBlockStore implements BlockStore {
  private readonly blocks = new Map<string, Uint8Array>()
  private readonly bytesMax: number
  private bytes = 0

  constructor(init: MemoryBlockStoreInit = {}) {
    this.bytesMax = init.bytesMax ?? MEMORY_STORE_BYTES_MAX_DEFAULT
  }

  private key(cid: CID): string {
    return cid.multihash.bytes.join(',')
  }

  async has(cid: CID): Promise<boolean> {
    return this.blocks.has(this.key(cid))
  }

  async get(cid: CID): Promise<Uint8Array | undefined> {
    return this.blocks.get(this.key(cid))
  }

  async put(cid: CID, bytes: Uint8Array): Promise<void> {
    const key = this.key(cid)
    if (this.blocks.has(key)) return
    if (this.bytes + bytes.byteLength > this.bytesMax) {
      throw new BlockStoreFullError(`storing ${bytes.byteLength} bytes would exceed ${this.bytesMax}`)
    }
    this.blocks.set(key, bytes)
    this.bytes += bytes.byteLength
  }

  async delete(cid: CID): Promise<void> {
    const key = this.key(cid)
    const block = this.blocks.get(key)
    if (block === undefined) return
    this.blocks.delete(key)
    this.bytes -= block.byteLength
  }

  /** Bytes held. */
  size(): number {
    return this.bytes
  }
}
