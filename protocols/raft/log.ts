// The core's view of the log: what storage holds (stable) plus what it has appended but the driver
// has not yet persisted (unstable), as in etcd's raftLog/unstable.
import { CompactedError, type Storage, UnavailableError } from './storage.js'
import { assert, type Entry, entryBytes, type Snapshot } from './types.js'

class Unstable {
  snapshot: Snapshot | undefined
  entries: Entry[] = []
  /** Index of entries[0]. */
  offset: number
  /** How many of `entries` were handed to the driver in a Ready and await advance(). */
  entriesInProgress = 0
  snapshotInProgress = false

  constructor(offset: number) {
    this.offset = offset
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1
    return this.snapshot?.metadata.index
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      if (this.snapshot && this.snapshot.metadata.index === index) return this.snapshot.metadata.term
      return undefined
    }
    const last = this.maybeLastIndex()
    if (last === undefined || index > last) return undefined
    return this.entries[index - this.offset].term
  }

  stableTo(index: number, term: number): void {
    const found = this.maybeTerm(index)
    // only stabilize if the entry is still the one handed out (not overwritten meanwhile)
    if (found === undefined || found !== term || index < this.offset) return
    const count = index + 1 - this.offset
    this.entries = this.entries.slice(count)
    this.offset = index + 1
    this.entriesInProgress = Math.max(0, this.entriesInProgress - count)
  }

  stableSnapTo(index: number): void {
    if (this.snapshot && this.snapshot.metadata.index === index) {
      this.snapshot = undefined
      this.snapshotInProgress = false
    }
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1
    this.entries = []
    this.entriesInProgress = 0
    this.snapshot = snapshot
    this.snapshotInProgress = false
  }

  truncateAndAppend(entries: Entry[]): void {
    const first = entries[0].index
    if (first === this.offset + this.entries.length) {
      for (const entry of entries) this.entries.push(entry)
    } else if (first <= this.offset) {
      // replace the unstable entries entirely; storage's conflicting suffix is overwritten on save
      this.offset = first
      this.entries = [...entries]
      this.entriesInProgress = 0
    } else {
      this.entries = this.entries.slice(0, first - this.offset).concat(entries)
      this.entriesInProgress = Math.min(this.entriesInProgress, first - this.offset)
    }
  }
}

export class RaftLog {
  readonly storage: Storage
  readonly unstable: Unstable
  /** Highest index known to be committed. */
  committed: number
  /** Highest index the application has applied (advance() of a Ready that carried it). */
  applied: number
  /** Highest index handed to the application in a Ready (applied <= applying <= committed). */
  applying: number

  constructor(storage: Storage) {
    this.storage = storage
    const first = storage.firstIndex()
    const last = storage.lastIndex()
    this.unstable = new Unstable(last + 1)
    this.committed = first - 1
    this.applied = first - 1
    this.applying = first - 1
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  lastTerm(): number {
    const term = this.term(this.lastIndex())
    assert(term !== undefined, 'term of the last index is unknown')
    return term
  }

  /** The term at index, or undefined when it is compacted or past the end. */
  term(index: number): number | undefined {
    const unstable = this.unstable.maybeTerm(index)
    if (unstable !== undefined) return unstable
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined
    try {
      return this.storage.term(index)
    } catch (error) {
      if (error instanceof CompactedError || error instanceof UnavailableError) return undefined
      throw error
    }
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term
  }

  /** Section 5.4.1: the candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm()
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex())
  }

  /** Follower side of AppendEntries: returns the new last index, or undefined if the check fails. */
  maybeAppend(index: number, logTerm: number, committed: number, entries: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined
    const lastNew = index + entries.length
    const conflict = this.findConflict(entries)
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with committed entry ${this.committed}`)
      this.append(entries.slice(conflict - (index + 1)))
    }
    this.commitTo(Math.min(committed, lastNew))
    return lastNew
  }

  append(entries: Entry[]): number {
    if (entries.length === 0) return this.lastIndex()
    const after = entries[0].index - 1
    assert(after >= this.committed, `append after ${after} is below committed ${this.committed}`)
    this.unstable.truncateAndAppend(entries)
    return this.lastIndex()
  }

  /** First index where `entries` disagree with ours (or extend past our end); 0 if all match. */
  findConflict(entries: Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index
    }
    return 0
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`, with its term. A
   * leader uses it to skip a whole term of mismatching entries per round trip.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const ourTerm = this.term(index)
      if (ourTerm === undefined) return { index, term: 0 }
      if (ourTerm <= term) return { index, term: ourTerm }
    }
    return { index: 0, term: 0 }
  }

  commitTo(index: number): void {
    if (this.committed < index) {
      assert(index <= this.lastIndex(), `commit ${index} is out of range [lastIndex ${this.lastIndex()}]`)
      this.committed = index
    }
  }

  /** Section 5.4.2: only an entry of the current term is committed by counting replicas. */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index)
      return true
    }
    return false
  }

  appliedTo(index: number): void {
    if (index === 0) return
    assert(
      this.committed >= index && index >= this.applied,
      `applied ${index} out of range [${this.applied}, ${this.committed}]`,
    )
    this.applied = index
    if (this.applying < index) this.applying = index
  }

  /** Entries [lo, hi) from storage and unstable, up to bytesMax (at least one). */
  slice(lo: number, hi: number, bytesMax = Number.POSITIVE_INFINITY): Entry[] {
    assert(lo <= hi, `invalid slice ${lo} > ${hi}`)
    if (lo === hi) return []
    if (lo < this.firstIndex()) throw new CompactedError(lo)
    assert(
      hi <= this.lastIndex() + 1,
      `slice [${lo}, ${hi}) out of bound [${this.firstIndex()}, ${this.lastIndex()}]`,
    )
    const out: Entry[] = []
    let bytes = 0
    const unstableStart = this.unstable.offset
    if (lo < unstableStart) {
      const stored = this.storage.entries(lo, Math.min(hi, unstableStart), bytesMax)
      for (const entry of stored) {
        bytes += entryBytes(entry)
        out.push(entry)
      }
      if (stored.length < Math.min(hi, unstableStart) - lo) return out // hit the size limit
    }
    for (let i = Math.max(lo, unstableStart); i < hi; i++) {
      const entry = this.unstable.entries[i - unstableStart]
      bytes += entryBytes(entry)
      if (out.length > 0 && bytes > bytesMax) break
      out.push(entry)
    }
    return out
  }

  /** Entries from index on, up to bytesMax. */
  entriesFrom(index: number, bytesMax: number): Entry[] {
    if (index > this.lastIndex()) return []
    return this.slice(index, this.lastIndex() + 1, bytesMax)
  }

  /** Unstable entries not yet handed to the driver. */
  nextUnstableEntries(): Entry[] {
    return this.unstable.entries.slice(this.unstable.entriesInProgress)
  }

  hasNextUnstableEntries(): boolean {
    return this.unstable.entries.length > this.unstable.entriesInProgress
  }

  nextUnstableSnapshot(): Snapshot | undefined {
    return this.unstable.snapshotInProgress ? undefined : this.unstable.snapshot
  }

  /** Committed entries not yet handed to the application, up to bytesMax. */
  nextCommittedEntries(bytesMax: number): Entry[] {
    if (this.unstable.snapshot) return [] // apply the snapshot first
    const lo = this.applying + 1
    const hi = this.committed + 1
    if (lo >= hi) return []
    return this.slice(lo, hi, bytesMax)
  }

  hasNextCommittedEntries(): boolean {
    return !this.unstable.snapshot && this.applying < this.committed
  }

  /** The index up to which our own log is durable: what a leader may count as its own vote. */
  persistedLastIndex(): number {
    if (this.unstable.snapshot) return this.storage.lastIndex() // not yet durable
    const stored = this.storage.lastIndex()
    if (this.unstable.entries.length > 0) return Math.min(stored, this.unstable.offset - 1)
    return stored
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index
    this.unstable.restore(snapshot)
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot()
  }
}
