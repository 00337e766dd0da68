import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { type FileHandle, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { BlockFile, BlockStore, BlockWriter } from '../../protocols/blocks/store.js'
import { BLOCK_BYTES_MAX } from '../../protocols/wire/validation/index.js'
import { temporaryPathFor, writeFileAtomic } from './atomic-file.js'
import { asStorageFault } from './storage-fault.js'

/** sha2-256 multihash code: the only hash shardnet names blocks with, so every CID is verifiable here */
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

/** Unflushed bytes a block writer lets build up before it flushes them (1 MiB). */
export const WRITER_SYNC_BYTES_DEFAULT = 1024 * 1024

export interface FileBlockStoreInit {
  /** folder holding one file per block */
  folder: string
  /**
   * largest block accepted, in bytes (the blocks protocol's own limit)
   * @default BLOCK_BYTES_MAX (256 MiB)
   */
  blockBytesMax?: number
  /**
   * A writer() flushes what it has written to disk (fdatasync, beside the transfer) whenever this many
   * bytes are unflushed, so that commit's own fsync has little left to do.
   * @default WRITER_SYNC_BYTES_DEFAULT
   */
  writerSyncBytes?: number
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
  readonly writerSyncBytes: number

  constructor(init: FileBlockStoreInit) {
    this.folder = init.folder
    this.blockBytesMax = init.blockBytesMax ?? BLOCK_BYTES_MAX
    this.writerSyncBytes = init.writerSyncBytes ?? WRITER_SYNC_BYTES_DEFAULT
    if (this.writerSyncBytes < 1) throw new RangeError('writerSyncBytes must be at least 1')
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
    const path = this.pathOf(cid)
    await writeFileAtomic(path, bytes, 0o600).catch((error: unknown) => {
      throw asStorageFault(error, path) ?? error
    })
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

  /**
   * A writer for a block that arrives in pieces (the blocks service hands it each chunk as received, or
   * has its worker thread write `writer.file` directly). It writes a temp file beside the block as the
   * bytes come, flushes it in the background, and on commit fsyncs it, renames it into place and fsyncs the
   * folder: the same crash guarantees as put(). It does not hash: its caller verifies the bytes against the
   * CID before commit (the blocks service does, on its hash worker), and get() still checks every block it
   * reads.
   */
  writer(cid: CID): BlockWriter & { readonly file: BlockFile } {
    return new FileBlockWriter(this.pathOf(cid), this.blockBytesMax, this.writerSyncBytes)
  }
}

/** A piece waiting to be written, and who to tell once it is. */
interface QueuedPiece {
  bytes: Uint8Array
  done: () => void
}

/** writev takes at most this many buffers (IOV_MAX on Linux). */
const WRITEV_BUFFERS_MAX = 1024

/**
 * See FileBlockStore.writer(). One writev at a time carries every piece queued since the last one started:
 * a write never waits for the event loop to come round between two pieces (a chain of single writes fell
 * tens of milliseconds behind a fast transfer), and a burst of pieces costs one system call. At most one
 * background flush runs at a time.
 */
class FileBlockWriter implements BlockWriter {
  private readonly temporaryPath: string
  /** the block's folder, opened at once for commit's final fsync */
  private readonly folder: Promise<FileHandle>
  private folderClosed = false
  readonly file: BlockFile
  /** opened on the first write(); undefined while the caller writes `file` itself (or nothing at all) */
  private opened: Promise<FileHandle> | undefined
  private handle: FileHandle | undefined
  private readonly queue: QueuedPiece[] = []
  private writing = false
  /** resolves settle() once nothing is queued or being written */
  private whenIdle: (() => void) | undefined
  /** the background fdatasync in flight, if any; never rejects */
  private flushing: Promise<void> | undefined
  private failure: Error | undefined
  private queuedBytes = 0
  private writtenBytes = 0
  private flushedBytes = 0
  private finished = false

  constructor(
    private readonly path: string,
    private readonly bytesMax: number,
    private readonly syncBytes: number,
  ) {
    this.temporaryPath = temporaryPathFor(path)
    this.file = { path: this.temporaryPath, syncBytes }
    this.folder = open(dirname(path), constants.O_RDONLY)
    // a folder that cannot be opened fails commit(); until then nobody waits for it
    this.folder.catch(() => {})
  }

  private open(): Promise<FileHandle> {
    if (this.opened !== undefined) return this.opened
    this.opened = open(this.temporaryPath, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600)
    this.opened.then(
      (handle) => {
        this.handle = handle
        this.pump()
      },
      (error: Error) => {
        this.fail(error)
        this.pump()
      },
    )
    return this.opened
  }

  private fail(error: Error): void {
    this.failure ??= error
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.finished) throw new Error('write after commit or abort')
    if (this.failure !== undefined || bytes.byteLength === 0) return Promise.resolve()
    this.queuedBytes += bytes.byteLength
    if (this.queuedBytes > this.bytesMax) {
      this.fail(new RangeError(`block exceeds the limit of ${this.bytesMax} bytes`))
      return Promise.resolve()
    }
    void this.open()
    return new Promise<void>((done) => {
      this.queue.push({ bytes, done })
      this.pump()
    })
  }

  /** Starts a writev of everything queued, unless one is running or the file is not open yet. */
  private pump(): void {
    if (this.writing) return
    if (this.failure !== undefined) {
      // nothing more reaches the file; release the callers' buffers
      for (const piece of this.queue.splice(0)) piece.done()
    }
    if (this.queue.length === 0 || this.handle === undefined) {
      if (this.queue.length === 0) this.whenIdle?.()
      return
    }
    const handle = this.handle
    const batch = this.queue.splice(0, WRITEV_BUFFERS_MAX)
    this.writing = true
    void this.writeAll(handle, batch)
      .catch((error: Error) => this.fail(error))
      .finally(() => {
        for (const piece of batch) piece.done()
        this.writing = false
        this.flushSoon()
        this.pump()
      })
  }

  private async writeAll(handle: FileHandle, batch: QueuedPiece[]): Promise<void> {
    let buffers = batch.map((piece) => piece.bytes)
    let position = this.writtenBytes
    while (buffers.length > 0) {
      let { bytesWritten } = await handle.writev(buffers, position)
      position += bytesWritten
      // a short write (rare for a file: a full disk reports an error instead) continues where it stopped
      while (buffers.length > 0 && bytesWritten >= buffers[0].byteLength) {
        bytesWritten -= buffers[0].byteLength
        buffers = buffers.slice(1)
      }
      if (bytesWritten > 0) buffers[0] = buffers[0].subarray(bytesWritten)
    }
    this.writtenBytes = position
  }

  /** Starts a background fdatasync once enough bytes are unflushed and none is running. */
  private flushSoon(): void {
    if (this.flushing !== undefined || this.finished || this.failure !== undefined) return
    if (this.writtenBytes - this.flushedBytes < this.syncBytes) return
    const target = this.writtenBytes
    this.flushing = this.open()
      .then((handle) => handle.datasync())
      .then(
        () => {
          this.flushedBytes = target
        },
        (error: Error) => this.fail(error),
      )
      .finally(() => {
        this.flushing = undefined
        this.flushSoon()
      })
  }

  /** Waits for every queued write and the flush in flight; no new flush starts once finished is set. */
  private async settle(): Promise<void> {
    this.finished = true
    // settles once the file is open (or failed to open) and every queued piece has been written
    await this.opened?.catch(() => {})
    if (this.writing || this.queue.length > 0) {
      await new Promise<void>((resolve) => {
        this.whenIdle = resolve
      })
    }
    while (this.flushing !== undefined) await this.flushing
  }

  /** Makes the block durable under its name; a full or read-only disk is a StorageFaultError. */
  async commit(): Promise<void> {
    if (this.finished) throw new Error('commit after commit or abort')
    try {
      await this.commitOrThrow()
    } catch (error) {
      throw asStorageFault(error, this.path) ?? error
    }
  }

  private async commitOrThrow(): Promise<void> {
    if (this.opened === undefined) return this.commitFile()
    await this.settle()
    if (this.failure !== undefined) {
      await this.discard()
      throw this.failure
    }
    const handle = await this.opened
    try {
      await handle.sync()
    } catch (error) {
      await this.discard()
      throw error
    }
    // closing needs no wait: the rename does not depend on it
    void handle.close().catch(() => {})
    await this.renameIntoPlace()
  }

  /** Nothing came through write(): the block is whatever the caller wrote into `file` (none: empty). */
  private async commitFile(): Promise<void> {
    this.finished = true
    let handle: FileHandle
    try {
      handle = await open(this.temporaryPath, constants.O_WRONLY).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
        return open(this.temporaryPath, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600)
      })
    } catch (error) {
      this.closeFolder()
      throw error
    }
    try {
      // side by side: under load every file operation waits its turn on the thread pool and the event loop
      const [{ size }] = await Promise.all([handle.stat(), handle.sync()])
      if (size > this.bytesMax) throw new RangeError(`block exceeds the limit of ${this.bytesMax} bytes`)
    } catch (error) {
      await handle.close().catch(() => {})
      await rm(this.temporaryPath, { force: true })
      this.closeFolder()
      throw error
    }
    void handle.close().catch(() => {})
    await this.renameIntoPlace()
  }

  private async renameIntoPlace(): Promise<void> {
    try {
      await rename(this.temporaryPath, this.path)
    } catch (error) {
      await rm(this.temporaryPath, { force: true })
      this.closeFolder()
      throw error
    }
    // the folder was opened while the block arrived, so its fsync is one step here, not three
    try {
      await (await this.folder).sync()
    } finally {
      this.closeFolder()
    }
  }

  async abort(): Promise<void> {
    if (this.finished) return
    await this.settle()
    await this.discard()
  }

  /** Closes the folder handle, once, without waiting: nothing depends on it. */
  private closeFolder(): void {
    if (this.folderClosed) return
    this.folderClosed = true
    void this.folder.then((folder) => folder.close()).catch(() => {})
  }

  private async discard(): Promise<void> {
    this.closeFolder()
    try {
      await (await this.opened)?.close()
    } catch {
      // failed to open, or already closed: nothing to close
    }
    await rm(this.temporaryPath, { force: true })
  }
}
