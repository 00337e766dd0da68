// The storage the Raft core reads (etcd's Storage) and the in-memory reference implementation.
// The core only reads; the driver writes what a Ready asks for (save) before sending its messages.
// node/store/ holds the durable implementation of the same interface.
import {
  assert,
  type ConfState,
  type Entry,
  emptyHardState,
  emptySnapshot,
  encodeConfChange,
  entryBytes,
  type HardState,
  NONE,
  type Snapshot,
} from './types.js'

/** The index asked for was compacted into a snapshot. */
export class CompactedError extends Error {
  static override name = 'CompactedError'
  constructor(index: number) {
    super(`index ${index} is compacted`)
    this.name = 'CompactedError'
  }
}

/** The index asked for is past the end of the log. */
export class UnavailableError extends Error {
  static override name = 'UnavailableError'
  constructor(index: number) {
    super(`index ${index} is unavailable`)
    this.name = 'UnavailableError'
  }
}

/** A snapshot older than the one held was offered. */
export class SnapshotOutOfDateError extends Error {
  static override name = 'SnapshotOutOfDateError'
  constructor(index: number) {
    super(`snapshot at ${index} is out of date`)
    this.name = 'SnapshotOutOfDateError'
  }
}

/**
 * The first write of every founding member: one committed 'add' conf entry per initial voter at
 * indexes 1..n (term 0), as etcd bootstraps. The configuration thus lives in the log, so a member
 * added later rebuilds the whole membership history by replaying it from index 1.
 */
export function bootstrapUpdate(voters: string[]): StorageUpdate {
  const entries: Entry[] = [...voters].sort().map((member, i) => ({
    term: 0,
    index: i + 1,
    type: 'conf' as const,
    data: encodeConfChange({ type: 'add', member }),
  }))
  return { entries, hardState: { term: 0, vote: NONE, commit: entries.length } }
}

/** What the core reads. */
export interface Storage {
  initialState(): { hardState: HardState; confState: ConfState }
  /** Entries [lo, hi), at least one if any, then up to bytesMax in total. */
  entries(lo: number, hi: number, bytesMax?: number): Entry[]
  /** Term of the entry at index; firstIndex() - 1 answers the snapshot's term. */
  term(index: number): number
  firstIndex(): number
  lastIndex(): number
  snapshot(): Snapshot
}

/** What one Ready asks to be made durable, in this order: snapshot, entries, hard state. */
export interface StorageUpdate {
  snapshot?: Snapshot
  entries: Entry[]
  hardState?: HardState
}

/** What a driver writes. `save` returns only once the update is durable (or, in memory, stored). */
export interface RaftStorage extends Storage {
  save(update: StorageUpdate): void
  /**
   * The same as save, without blocking the event loop during the write and fsync (optional). The
   * driver calls no other write method until it resolves; reads keep being served meanwhile.
   */
  saveAsync?(update: StorageUpdate): Promise<void>
  /** Records the application's snapshot at `index` (<= applied) so followers can be caught up. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot
  /** Discards entries up to and including `index` (which must be covered by the snapshot). */
  compact(index: number): void
}

/**
 * The reference storage: entries in an array whose slot 0 is a dummy entry holding the term and
 * index of the last compacted entry (etcd's MemoryStorage layout).
 */
export class MemoryStorage implements RaftStorage {
  private hardState: HardState = emptyHardState()
  private snap: Snapshot = emptySnapshot()
  // entries[0] is the dummy entry at snap.metadata.index
  private log: Entry[] = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]

  initialState(): { hardState: HardState; confState: ConfState } {
    return {
      hardState: { ...this.hardState },
      confState: { voters: [...this.snap.metadata.confState.voters] },
    }
  }

  /** Writes the configuration of a brand-new group (see bootstrapUpdate). */
  bootstrap(voters: string[]): void {
    assert(this.lastIndex() === 0, 'bootstrap of a non-empty storage')
    this.save(bootstrapUpdate(voters))
  }

  firstIndex(): number {
    return this.log[0].index + 1
  }

  lastIndex(): number {
    return this.log[0].index + this.log.length - 1
  }

  term(index: number): number {
    const offset = this.log[0].index
    if (index < offset) throw new CompactedError(index)
    if (index - offset >= this.log.length) throw new UnavailableError(index)
    return this.log[index - offset].term
  }

  entries(lo: number, hi: number, bytesMax = Number.POSITIVE_INFINITY): Entry[] {
    const offset = this.log[0].index
    if (lo <= offset) throw new CompactedError(lo)
    assert(hi <= this.lastIndex() + 1, `entries hi ${hi} out of bound lastIndex ${this.lastIndex()}`)
    const out: Entry[] = []
    let bytes = 0
    for (let i = lo; i < hi; i++) {
      const entry = this.log[i - offset]
      bytes += entryBytes(entry)
      if (out.length > 0 && bytes > bytesMax) break
      out.push(entry)
    }
    return out
  }

  snapshot(): Snapshot {
    return this.snap
  }

  hardStateNow(): HardState {
    return { ...this.hardState }
  }

  save(update: StorageUpdate): void {
    if (update.snapshot) this.applySnapshot(update.snapshot)
    if (update.entries.length > 0) this.append(update.entries)
    if (update.hardState) this.hardState = { ...update.hardState }
  }

  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index <= this.snap.metadata.index)
      throw new SnapshotOutOfDateError(snapshot.metadata.index)
    this.snap = snapshot
    this.log = [
      {
        term: snapshot.metadata.term,
        index: snapshot.metadata.index,
        type: 'normal',
        data: new Uint8Array(0),
      },
    ]
  }

  /** Drops every entry after the snapshot (a snapshot from the leader replaced the log). */
  truncateToSnapshot(): void {
    const { index, term } = this.snap.metadata
    this.log = [{ term, index, type: 'normal', data: new Uint8Array(0) }]
  }

  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) throw new SnapshotOutOfDateError(index)
    assert(index <= this.lastIndex(), `snapshot ${index} is past lastIndex ${this.lastIndex()}`)
    const term = this.term(index)
    this.snap = { metadata: { index, term, confState: { voters: [...confState.voters] } }, data }
    return this.snap
  }

  compact(index: number): void {
    const offset = this.log[0].index
    if (index <= offset) return
    assert(index <= this.lastIndex(), `compact ${index} is past lastIndex ${this.lastIndex()}`)
    assert(
      index <= this.snap.metadata.index,
      `compact ${index} is past the snapshot ${this.snap.metadata.index}`,
    )
    const dummy = this.log[index - offset]
    this.log = [
      { term: dummy.term, index: dummy.index, type: 'normal', data: new Uint8Array(0) },
      ...this.log.slice(index - offset + 1),
    ]
  }

  /** Appends entries, replacing any suffix they conflict with (entries already compacted are skipped). */
  append(entries: Entry[]): void {
    if (entries.length === 0) return
    const first = this.firstIndex()
    const last = entries[0].index + entries.length - 1
    if (last < first) return
    if (first > entries[0].index) entries = entries.slice(first - entries[0].index)
    const offset = entries[0].index - this.log[0].index
    assert(
      offset >= 1 && offset <= this.log.length,
      `missing log entry: last ${this.lastIndex()}, append at ${entries[0].index}`,
    )
    this.log.length = offset // drops any conflicting suffix
    for (const entry of entries) this.log.push(entry)
  }
}
