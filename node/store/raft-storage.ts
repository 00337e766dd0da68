// Durable Raft storage: the same interface as the core's MemoryStorage (which serves reads here as
// an in-memory mirror) backed by two files in a directory:
//   wal.log, wal.1.log, wal.2.log, ...  the WAL in segments, replayed in order: append-only
//                 records [u32 length][u32 crc32][payload]; each save() appends one record to the
//                 last segment, durable before it returns (the file is opened O_DSYNC, or fdatasynced
//                 after the write where the platform has no O_DSYNC), so what a Ready acknowledges
//                 is durable; on open, a torn or corrupt final record of the last segment (a crash
//                 mid-write) is detected by its length or CRC and cut off. Once the last segment
//                 holds walSegmentBytes a new one is started with the current hard state as its first
//                 record; a compaction deletes the oldest segments whose entries are all compacted.
//                 Compaction never rewrites the live log: with 800 KB training entries a synchronous
//                 rewrite stalls a member for ~150 ms every ~80 steps.
//   snapshot.bin  the latest snapshot, replaced atomically (write temp, fsync, rename, fsync dir).
// A snapshot received from the leader replaces the log: a marker record is appended to the WAL
// first, then the snapshot file is replaced; on replay a marker counts only if the snapshot file
// matches it, so a crash between the two leaves the previous, consistent state.
// A write that fails (ENOSPC, EDQUOT, EIO, ...) is cut off the WAL again (truncated to the end of the
// last good record) and the store refuses every later save with the same StorageFaultError, so
// nothing after the failure is acknowledged and the files reopen holding every acknowledged record.
import {
  closeSync,
  constants,
  existsSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  write,
  writeSync,
  writev,
} from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { logger } from '@libp2p/logger'
import {
  bootstrapUpdate,
  MemoryStorage,
  type RaftStorage,
  type StorageUpdate,
} from '../../protocols/raft/storage.js'
import type { ConfState, Entry, HardState, Snapshot } from '../../protocols/raft/types.js'
import { asStorageFault, StorageFaultError } from './storage-fault.js'

const log = logger('shardnet:store:raft')

const RECORD_HEADER_BYTES = 8
const RECORD_BATCH = 1
const RECORD_SNAPSHOT_MARKER = 2
/** A record longer than this is corruption, not data. */
const RECORD_BYTES_MAX = 1 << 30
/** O_DSYNC where the platform has it (Linux, macOS), else 0. */
const O_DSYNC = constants.O_DSYNC ?? 0

/**
 * The WAL's open flags: read-write, and with fsync on, O_DSYNC: each write then returns once its data
 * is durable, as write + fdatasync would, in one system call, so an asynchronous save is one job on
 * libuv's pool instead of two with a turn of the event loop between them (on a busy loop the
 * fdatasync waited for that turn).
 */
function walFlags(create: boolean, fsync: boolean): number {
  return constants.O_RDWR | (create ? constants.O_CREAT : 0) | (fsync ? O_DSYNC : 0)
}

/** The data directory holds a snapshot that fails its checksum: not a crash artefact, a damaged disk. */
export class StoreCorruptedError extends Error {
  static override name = 'StoreCorruptedError'
  constructor(message: string) {
    super(message)
    this.name = 'StoreCorruptedError'
  }
}

export interface DurableRaftStorageInit {
  /**
   * fsync every write. Only the simulator turns this off, to replay the real file formats under
   * thousands of crashes quickly (the page cache then stands in for the disk). @default true
   */
  fsync?: boolean
  /** Start a new WAL segment once the last one holds this many bytes. @default 67108864 */
  walSegmentBytes?: number
}

export interface RecoveryReport {
  /** Valid WAL records replayed. */
  records: number
  /** Bytes cut from the end of the WAL (a torn or corrupt final record). */
  tornBytes: number
  snapshotIndex: number
  /** WAL segment files replayed. */
  segments: number
}

/** One WAL file: its number (wal.log is 0, wal.N.log is N), its size and its newest entry's index. */
interface WalSegment {
  number: number
  bytes: number
  lastIndex: number
}

function segmentName(number: number): string {
  return number === 0 ? 'wal.log' : `wal.${number}.log`
}

/** The WAL segment files in `directory`, oldest first. */
function segmentNumbers(directory: string): number[] {
  const numbers: number[] = []
  for (const name of readdirSync(directory)) {
    const match = /^wal(?:\.([1-9][0-9]*))?\.log$/.exec(name)
    if (match) numbers.push(match[1] === undefined ? 0 : Number(match[1]))
  }
  return numbers.sort((a, b) => a - b)
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Builds one record: the payload is written after room for the record header, which record() fills
 * in, so a record (up to an 8 MB log entry) is copied once, not once more to frame it.
 */
class Writer {
  private buffer: Uint8Array
  private view: DataView
  length = RECORD_HEADER_BYTES

  constructor(payloadCapacity: number) {
    this.buffer = new Uint8Array(RECORD_HEADER_BYTES + Math.max(64, payloadCapacity))
    this.view = new DataView(this.buffer.buffer)
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + bytes))
    grown.set(this.buffer.subarray(0, this.length))
    this.buffer = grown
    this.view = new DataView(grown.buffer)
  }

  u8(value: number): void {
    this.reserve(1)
    this.view.setUint8(this.length, value)
    this.length += 1
  }

  u32(value: number): void {
    this.reserve(4)
    this.view.setUint32(this.length, value, true)
    this.length += 4
  }

  f64(value: number): void {
    this.reserve(8)
    this.view.setFloat64(this.length, value, true)
    this.length += 8
  }

  bytes(value: Uint8Array): void {
    this.u32(value.length)
    this.reserve(value.length)
    this.buffer.set(value, this.length)
    this.length += value.length
  }

  string(value: string): void {
    this.bytes(encoder.encode(value))
  }

  /** The bytes written so far after the room for a header (a piece of a record's payload). */
  payload(): Uint8Array {
    return this.buffer.subarray(RECORD_HEADER_BYTES, this.length)
  }

  /** The room for the header, for the caller to fill in (see batchPieces). */
  header(): { bytes: Uint8Array; view: DataView } {
    return { bytes: this.buffer.subarray(0, RECORD_HEADER_BYTES), view: this.view }
  }

  /** The record: header (payload length, CRC-32 of the payload) and payload. */
  record(): Uint8Array {
    const payload = this.buffer.subarray(RECORD_HEADER_BYTES, this.length)
    this.view.setUint32(0, payload.length, true)
    this.view.setUint32(4, crc32(payload), true)
    return this.buffer.subarray(0, this.length)
  }
}

class Reader {
  private readonly view: DataView
  offset = 0

  constructor(private readonly buffer: Uint8Array) {
    this.view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  }

  u8(): number {
    return this.view.getUint8(this.offset++)
  }

  u32(): number {
    const value = this.view.getUint32(this.offset, true)
    this.offset += 4
    return value
  }

  f64(): number {
    const value = this.view.getFloat64(this.offset, true)
    this.offset += 8
    return value
  }

  bytes(): Uint8Array {
    const length = this.u32()
    if (this.offset + length > this.buffer.length) throw new RangeError('field past the end of the record')
    const value = this.buffer.slice(this.offset, this.offset + length)
    this.offset += length
    return value
  }

  string(): string {
    return decoder.decode(this.bytes())
  }
}

/**
 * The same record as encodeBatch, as pieces to write one after the other (writev): the entries' data
 * are not copied. The header's CRC-32 runs over the pieces in order.
 */
function batchPieces(hardState: HardState | undefined, entries: Entry[]): Uint8Array[] {
  const head = new Writer(48 + (hardState ? 3 * hardState.vote.length : 0))
  head.u8(RECORD_BATCH)
  head.u8(hardState ? 1 : 0)
  if (hardState) {
    head.f64(hardState.term)
    head.f64(hardState.commit)
    head.string(hardState.vote)
  }
  head.u32(entries.length)
  const pieces: Uint8Array[] = []
  let writer = head
  for (const entry of entries) {
    writer.f64(entry.term)
    writer.f64(entry.index)
    writer.u8(entry.type === 'conf' ? 1 : 0)
    writer.u32(entry.data.length)
    pieces.push(writer.payload())
    // no empty pieces: Node's crc32 of an empty array over an empty ArrayBuffer returns 0, not the
    // running value it was given
    if (entry.data.length > 0) pieces.push(entry.data)
    writer = new Writer(24)
  }
  const tail = writer.payload()
  if (tail.length > 0) pieces.push(tail)
  const first = head.header()
  let length = 0
  let crc = 0
  for (const piece of pieces) {
    length += piece.length
    crc = crc32(piece, crc)
  }
  first.view.setUint32(0, length, true)
  first.view.setUint32(4, crc, true)
  return [first.bytes, ...pieces]
}

function newestIndex(entries: Entry[]): number {
  return entries.reduce((newest, entry) => Math.max(newest, entry.index), 0)
}

/** The WAL record of a batch of entries and/or a hard state, in one buffer. */
function encodeBatch(hardState: HardState | undefined, entries: Entry[]): Uint8Array {
  return Buffer.concat(batchPieces(hardState, entries))
}

/** The snapshot file: one record. */
function encodeSnapshot(snapshot: Snapshot): Uint8Array {
  let bytes = 32 + snapshot.data.length
  for (const voter of snapshot.metadata.confState.voters) bytes += 4 + 3 * voter.length
  const writer = new Writer(bytes)
  writer.f64(snapshot.metadata.index)
  writer.f64(snapshot.metadata.term)
  writer.u32(snapshot.metadata.confState.voters.length)
  for (const voter of snapshot.metadata.confState.voters) writer.string(voter)
  writer.bytes(snapshot.data)
  return writer.record()
}

function decodeSnapshot(file: Uint8Array): Snapshot {
  if (file.length < RECORD_HEADER_BYTES) throw new StoreCorruptedError('snapshot file is truncated')
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength)
  const length = view.getUint32(0, true)
  const payload = file.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + length)
  if (payload.length !== length || crc32(payload) !== view.getUint32(4, true)) {
    throw new StoreCorruptedError('snapshot file fails its checksum')
  }
  const reader = new Reader(payload)
  const index = reader.f64()
  const term = reader.f64()
  const voterCount = reader.u32()
  const voters: string[] = []
  for (let i = 0; i < voterCount; i++) voters.push(reader.string())
  return { metadata: { index, term, confState: { voters } }, data: reader.bytes() }
}

function fsyncDirectory(directory: string, enabled = true): void {
  if (!enabled) return
  const fd = openSync(directory, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Writes a file so that a crash leaves either the old or the new content, never a mix; a failed write
 * leaves the old file and no temp file behind.
 */
function writeFileAtomic(directory: string, name: string, content: Uint8Array, sync = true): void {
  const temporary = join(directory, `${name}.tmp`)
  try {
    const fd = openSync(temporary, 'w')
    try {
      let written = 0
      while (written < content.length) written += writeSync(fd, content, written)
      if (sync) fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(temporary, join(directory, name))
  } catch (error) {
    try {
      unlinkSync(temporary)
    } catch {
      // never created, or the disk refuses even this: the next open ignores a *.tmp file
    }
    throw error
  }
  fsyncDirectory(directory, sync)
}

/** The StorageFaultError of a failed write to `path` (any failure: a write that failed is not retried). */
function storageFault(error: unknown, path: string): StorageFaultError {
  return (
    asStorageFault(error, path) ??
    new StorageFaultError((error as NodeJS.ErrnoException)?.code ?? 'EIO', path, error)
  )
}

export class DurableRaftStorage implements RaftStorage {
  readonly directory: string
  readonly recovery: RecoveryReport
  private readonly memory: MemoryStorage
  /** the WAL's segments, oldest first; the last one is written through walFd */
  private readonly segments: WalSegment[]
  private walFd: number
  private readonly walSegmentBytes: number
  private readonly fsync: boolean
  /** writes to the WAL are durable when they return (O_DSYNC): no fdatasync after them */
  private readonly dsync: boolean
  private closed = false
  private inflight: Promise<void> | undefined
  /** the write that failed: every later save, snapshot or compaction throws it */
  private fault: StorageFaultError | undefined

  private constructor(
    directory: string,
    memory: MemoryStorage,
    segments: WalSegment[],
    walFd: number,
    recovery: RecoveryReport,
    init: DurableRaftStorageInit,
  ) {
    this.directory = directory
    this.memory = memory
    this.segments = segments
    this.walFd = walFd
    this.recovery = recovery
    this.walSegmentBytes = init.walSegmentBytes ?? 64 << 20
    this.fsync = init.fsync ?? true
    this.dsync = this.fsync && O_DSYNC !== 0
  }

  /** Opens (creating if needed) the store in `directory`, replaying snapshot and WAL. */
  static open(directory: string, init: DurableRaftStorageInit = {}): DurableRaftStorage {
    try {
      return DurableRaftStorage.openOrThrow(directory, init)
    } catch (error) {
      if (error instanceof StoreCorruptedError) throw error
      throw asStorageFault(error, directory) ?? error
    }
  }

  private static openOrThrow(directory: string, init: DurableRaftStorageInit): DurableRaftStorage {
    mkdirSync(directory, { recursive: true })
    const memory = new MemoryStorage()
    const snapshotPath = join(directory, 'snapshot.bin')
    let snapshotIndex = 0
    if (existsSync(snapshotPath)) {
      const snapshot = decodeSnapshot(readFileSync(snapshotPath))
      if (snapshot.metadata.index > 0) memory.applySnapshot(snapshot)
      snapshotIndex = snapshot.metadata.index
    }
    const fsync = init.fsync ?? true
    const numbers = segmentNumbers(directory)
    const created = numbers.length === 0
    if (created) numbers.push(0)
    const segments: WalSegment[] = []
    let records = 0
    let tornBytes = 0
    let fd = -1
    for (const [position, number] of numbers.entries()) {
      const path = join(directory, segmentName(number))
      const last = position === numbers.length - 1
      if (last) {
        fd = openSync(path, walFlags(created, fsync))
        // the new file's directory entry must survive a crash too
        if (created) fsyncDirectory(directory, fsync)
      }
      const wal = readFileSync(path)
      const replayed = DurableRaftStorage.replaySegment(memory, wal, segmentName(number), last)
      records += replayed.records
      segments.push({ number, bytes: replayed.bytes, lastIndex: replayed.lastIndex })
      if (last && replayed.bytes < wal.length) {
        // a crash cut the last write short: it was never acknowledged, so it is discarded
        tornBytes = wal.length - replayed.bytes
        log('discarding %d bytes of torn WAL tail at offset %d', tornBytes, replayed.bytes)
        ftruncateSync(fd, replayed.bytes)
        fdatasyncSync(fd)
      }
    }
    return new DurableRaftStorage(
      directory,
      memory,
      segments,
      fd,
      {
        records,
        tornBytes,
        snapshotIndex,
        segments: segments.length,
      },
      init,
    )
  }

  /**
   * Replays one segment's records; returns how many, the bytes they span (where a torn tail starts)
   * and the newest entry index they hold. A damaged record is a torn tail only at the end of the last
   * segment: followed by an intact record, or in an older segment, it is damage to acknowledged data.
   */
  private static replaySegment(
    memory: MemoryStorage,
    wal: Uint8Array,
    name: string,
    last: boolean,
  ): { records: number; bytes: number; lastIndex: number } {
    const view = new DataView(wal.buffer, wal.byteOffset, wal.byteLength)
    let offset = 0
    let records = 0
    let lastIndex = 0
    while (offset < wal.length) {
      const length = wal.length - offset < RECORD_HEADER_BYTES ? -1 : view.getUint32(offset, true)
      if (!DurableRaftStorage.validRecordAt(wal, view, offset)) {
        // A crash can only tear the last write. A bad record followed by a good one is damage in
        // the middle of the log: refuse to start rather than drop acknowledged records after it.
        if (
          length >= 0 &&
          DurableRaftStorage.validRecordAt(wal, view, offset + RECORD_HEADER_BYTES + length)
        ) {
          throw new StoreCorruptedError(
            `WAL record at byte ${offset} of ${name} fails its checksum but later records are intact`,
          )
        }
        if (!last) {
          throw new StoreCorruptedError(
            `${name} ends in a damaged record at byte ${offset}, before newer segments`,
          )
        }
        break
      }
      const payload = wal.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + length)
      lastIndex = Math.max(lastIndex, DurableRaftStorage.replay(memory, payload))
      records++
      offset += RECORD_HEADER_BYTES + length
    }
    return { records, bytes: offset, lastIndex }
  }

  private static validRecordAt(wal: Uint8Array, view: DataView, offset: number): boolean {
    if (wal.length - offset < RECORD_HEADER_BYTES) return false
    const length = view.getUint32(offset, true)
    if (length === 0 || length > RECORD_BYTES_MAX || offset + RECORD_HEADER_BYTES + length > wal.length)
      return false
    const payload = wal.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + length)
    return crc32(payload) === view.getUint32(offset + 4, true)
  }

  /** Replays one record; returns the newest log index it names (0 for none). */
  private static replay(memory: MemoryStorage, payload: Uint8Array): number {
    const reader = new Reader(payload)
    const type = reader.u8()
    if (type === RECORD_SNAPSHOT_MARKER) {
      const index = reader.f64()
      const term = reader.f64()
      const snapshot = memory.snapshot().metadata
      // the marker counts only if its snapshot file made it to disk
      if (snapshot.index === index && snapshot.term === term) memory.truncateToSnapshot()
      return index
    }
    if (type !== RECORD_BATCH) throw new StoreCorruptedError(`unknown WAL record type ${type}`)
    const hasHardState = reader.u8() === 1
    let hardState: HardState | undefined
    if (hasHardState) {
      const term = reader.f64()
      const commit = reader.f64()
      hardState = { term, commit, vote: reader.string() }
    }
    const count = reader.u32()
    const entries: Entry[] = []
    for (let i = 0; i < count; i++) {
      const term = reader.f64()
      const index = reader.f64()
      const kind = reader.u8()
      entries.push({ term, index, type: kind === 1 ? 'conf' : 'normal', data: reader.bytes() })
    }
    // entries at or below the snapshot were compacted after this record was written
    const snapshotIndex = memory.snapshot().metadata.index
    const live = entries.filter((entry) => entry.index > snapshotIndex)
    if (entries.length > 0 && live.length === 0) {
      // the record replaced the log from its first entry on and ended at or below the snapshot: what
      // an older record put above the snapshot was overwritten then (a leader's conflicting suffix),
      // and only later records may put entries there again
      memory.truncateToSnapshot()
    }
    if (live.length > 0) {
      if (live[0].index > memory.lastIndex() + 1) {
        throw new StoreCorruptedError(
          `WAL record starts at ${live[0].index} after last index ${memory.lastIndex()}`,
        )
      }
      memory.append(live)
    }
    if (hardState) memory.save({ entries: [], hardState })
    return newestIndex(entries)
  }

  /** The segment being written. */
  private get current(): WalSegment {
    return this.segments[this.segments.length - 1]
  }

  /** Writes a record to the last segment, starting a new one first if it is full; durable on return. */
  private appendRecord(record: Uint8Array, lastIndex: number): void {
    this.cutIfFull()
    this.writeRecord(record, lastIndex)
  }

  private writeRecord(record: Uint8Array, lastIndex: number): void {
    const segment = this.current
    const lastIndexBefore = segment.lastIndex
    const position = this.reserve(record.length, lastIndex)
    try {
      let written = 0
      while (written < record.length)
        written += writeSync(this.walFd, record, written, record.length - written, position + written)
      if (this.fsync && !this.dsync) fdatasyncSync(this.walFd)
    } catch (error) {
      this.rollBack(segment, position, lastIndexBefore, error)
    }
  }

  /**
   * A write to `segment` at `position` failed: cuts what it may have left on disk (the segment ends
   * with its last good record again), and fails the store so that nothing later is acknowledged. Even
   * if the cut fails too, a reopen discards the partial record: it is the last one written.
   */
  private rollBack(segment: WalSegment, position: number, lastIndex: number, error: unknown): never {
    segment.bytes = position
    segment.lastIndex = lastIndex
    const path = join(this.directory, segmentName(segment.number))
    try {
      ftruncateSync(this.walFd, position)
      if (this.fsync) fdatasyncSync(this.walFd)
    } catch (truncateError) {
      log.error('cannot cut the failed write off %s: %s', path, (truncateError as Error).message)
    }
    throw this.fail(error, path)
  }

  /** Fails the store: this and every later save throws the returned error. */
  private fail(error: unknown, path: string): StorageFaultError {
    this.fault ??= storageFault(error, path)
    log.error('raft storage in %s refuses further writes: %s', this.directory, this.fault.message)
    return this.fault
  }

  /**
   * Reserves the next `bytes` of the last segment for a record holding entries up to `lastIndex`;
   * returns where they start. Saves are serialized by the driver, so reserving before writing is safe.
   */
  private reserve(bytes: number, lastIndex: number): number {
    const segment = this.current
    const position = segment.bytes
    segment.bytes += bytes
    segment.lastIndex = Math.max(segment.lastIndex, lastIndex)
    return position
  }

  /**
   * Once the last segment holds walSegmentBytes, starts the next one (its directory entry durable)
   * with the current hard state as its first record: the older segments that hold it may then be
   * deleted. Saves are serialized by the driver, so no write is in flight on the old one.
   */
  private cutIfFull(): void {
    const full = this.current
    if (full.bytes < this.walSegmentBytes) return
    const number = full.number + 1
    const path = join(this.directory, segmentName(number))
    let fd: number
    try {
      fd = openSync(path, walFlags(true, this.fsync))
    } catch (error) {
      throw this.fail(error, path)
    }
    try {
      fsyncDirectory(this.directory, this.fsync)
    } catch (error) {
      closeSync(fd)
      throw this.fail(error, this.directory)
    }
    closeSync(this.walFd)
    this.walFd = fd
    this.segments.push({ number, bytes: 0, lastIndex: 0 })
    this.writeRecord(encodeBatch(this.memory.hardStateNow(), []), 0)
    log(
      'started WAL segment %s after %d bytes in %s',
      segmentName(number),
      full.bytes,
      segmentName(full.number),
    )
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('raft storage is closed')
    if (this.fault) throw this.fault
  }

  /** The write failure that stopped this store, if one did. */
  get failure(): StorageFaultError | undefined {
    return this.fault
  }

  /** Writes a brand-new group's founding configuration (see bootstrapUpdate). */
  bootstrap(voters: string[]): void {
    if (this.memory.lastIndex() !== 0) throw new Error('bootstrap of a non-empty raft store')
    this.save(bootstrapUpdate(voters))
  }

  /** Makes one Ready's snapshot, entries and hard state durable before returning. */
  save(update: StorageUpdate): void {
    this.assertOpen()
    if (update.snapshot) {
      const { index, term } = update.snapshot.metadata
      const marker = new Writer(24)
      marker.u8(RECORD_SNAPSHOT_MARKER)
      marker.f64(index)
      marker.f64(term)
      this.appendRecord(marker.record(), index)
      // a failure here leaves the marker on disk: it counts on replay only if its snapshot is there
      this.writeSnapshotFile(update.snapshot)
      this.memory.applySnapshot(update.snapshot)
    }
    if (this.commitOnly(update)) {
      this.memory.save(update)
      return
    }
    if (update.entries.length > 0 || update.hardState) {
      this.appendRecord(encodeBatch(update.hardState, update.entries), newestIndex(update.entries))
      this.memory.save({ entries: update.entries, hardState: update.hardState })
    }
  }

  /**
   * True for an update that only moves the commit index forward (no entries, no snapshot, the same
   * term and vote). Raft needs only the term, the vote and the log on stable storage (dissertation
   * 3.8, Figure 3.1): a commit index is relearned from the leader, so such an update is kept in
   * memory and reaches disk with the next record written (which carries the whole hard state). This
   * saves a follower one fdatasync per step (the commit notice) and a leader one per commit.
   */
  private commitOnly(update: StorageUpdate): boolean {
    if (update.snapshot || update.entries.length > 0 || !update.hardState) return false
    const current = this.memory.initialState().hardState
    return update.hardState.term === current.term && update.hardState.vote === current.vote
  }

  /**
   * save() for entries and hard state with the write and fdatasync on libuv's thread pool, so the
   * event loop (libp2p, other groups) keeps running. The in-memory mirror is updated once durable.
   */
  async saveAsync(update: StorageUpdate): Promise<void> {
    this.assertOpen()
    if (update.snapshot) {
      this.save(update)
      return
    }
    if (update.entries.length === 0 && !update.hardState) return
    if (this.commitOnly(update)) {
      this.memory.save(update)
      return
    }
    const done = this.writeAsync(update)
    this.inflight = done
    try {
      await done
    } finally {
      this.inflight = undefined
    }
  }

  private async writeAsync(update: StorageUpdate): Promise<void> {
    this.cutIfFull()
    // the record as pieces (header, fields, each entry's data as it is): one writev, no copy of the data
    const pieces = batchPieces(update.hardState, update.entries)
    const length = pieces.reduce((total, piece) => total + piece.length, 0)
    const segment = this.current
    const lastIndexBefore = segment.lastIndex
    const position = this.reserve(length, newestIndex(update.entries))
    try {
      await this.writePieces(pieces, length, position)
    } catch (error) {
      this.rollBack(segment, position, lastIndexBefore, error)
    }
    this.memory.save({ entries: update.entries, hardState: update.hardState })
  }

  /** Writes a record's pieces at `position` of the last segment; durable when it resolves. */
  private async writePieces(pieces: Uint8Array[], length: number, position: number): Promise<void> {
    let written = await new Promise<number>((resolve, reject) =>
      writev(this.walFd, pieces, position, (error, bytes) => (error ? reject(error) : resolve(bytes))),
    )
    if (written < length) {
      // a short write (rare): the rest as one buffer
      const record = Buffer.concat(pieces)
      while (written < length) {
        written += await new Promise<number>((resolve, reject) =>
          write(this.walFd, record, written, length - written, position + written, (error, bytes) =>
            error ? reject(error) : resolve(bytes),
          ),
        )
      }
    }
    if (this.fsync && !this.dsync) {
      await new Promise<void>((resolve, reject) =>
        fdatasync(this.walFd, (error) => (error ? reject(error) : resolve())),
      )
    }
  }

  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    this.assertOpen()
    const term = this.memory.term(index)
    const snapshot: Snapshot = {
      metadata: { index, term, confState: { voters: [...confState.voters] } },
      data,
    }
    this.writeSnapshotFile(snapshot)
    return this.memory.createSnapshot(index, confState, data)
  }

  private writeSnapshotFile(snapshot: Snapshot): void {
    try {
      writeFileAtomic(this.directory, 'snapshot.bin', encodeSnapshot(snapshot), this.fsync)
    } catch (error) {
      throw this.fail(error, join(this.directory, 'snapshot.bin'))
    }
  }

  /**
   * Discards entries up to index, and deletes the oldest WAL segments whose entries are all at or
   * below it and the snapshot on disk (replay would skip them): never the one being written, and only
   * from the oldest on, so a newer segment's record is never replayed without the older ones.
   */
  compact(index: number): void {
    this.assertOpen()
    this.memory.compact(index)
    const covered = Math.min(index, this.memory.snapshot().metadata.index)
    while (this.segments.length > 1 && this.segments[0].lastIndex <= covered) {
      const oldest = this.segments[0]
      try {
        unlinkSync(join(this.directory, segmentName(oldest.number)))
      } catch (error) {
        // the segment stays and is replayed (its entries skipped) until a later compaction deletes it
        log.error('cannot delete WAL segment %s: %s', segmentName(oldest.number), (error as Error).message)
        return
      }
      this.segments.shift()
      log('deleted WAL segment %s (entries up to %d)', segmentName(oldest.number), oldest.lastIndex)
    }
  }

  /** Closes the WAL; a write still in flight finishes first (its fd must not be reused under it). */
  close(): void {
    if (this.closed) return
    this.closed = true
    const fd = this.walFd
    if (this.inflight) {
      this.inflight.then(
        () => closeSync(fd),
        () => closeSync(fd),
      )
    } else {
      closeSync(fd)
    }
  }

  /** Bytes in the WAL's segments. */
  walSizeBytes(): number {
    return this.segments.reduce((total, segment) => total + segment.bytes, 0)
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return this.memory.initialState()
  }

  entries(lo: number, hi: number, bytesMax?: number): Entry[] {
    return this.memory.entries(lo, hi, bytesMax)
  }

  term(index: number): number {
    return this.memory.term(index)
  }

  firstIndex(): number {
    return this.memory.firstIndex()
  }

  lastIndex(): number {
    return this.memory.lastIndex()
  }

  snapshot(): Snapshot {
    return this.memory.snapshot()
  }

  hardStateNow(): HardState {
    return this.memory.hardStateNow()
  }
}
