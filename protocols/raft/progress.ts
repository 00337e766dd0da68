// The leader's view of each follower (etcd's tracker.Progress) and the bounded window of appends in
// flight to it (tracker.Inflights): what makes pipelining safe and bounded.
import { assert, type Snapshot } from './types.js'

export type ProgressState = 'probe' | 'replicate' | 'snapshot'

/** A ring of the last index and byte size of each MsgApp in flight, bounded in count and bytes. */
export class Inflights {
  private readonly indexes: number[] = []
  private readonly sizes: number[] = []
  private start = 0
  count = 0
  bytes = 0
  readonly countMax: number
  readonly bytesMax: number

  constructor(countMax: number, bytesMax: number) {
    assert(countMax > 0, 'inflights countMax must be positive')
    this.countMax = countMax
    this.bytesMax = bytesMax
  }

  add(index: number, bytes: number): void {
    assert(!this.full(), 'add to a full inflights window')
    const slot = (this.start + this.count) % this.countMax
    this.indexes[slot] = index
    this.sizes[slot] = bytes
    this.count++
    this.bytes += bytes
  }

  /** Frees every message whose last index is <= index (acknowledged). */
  freeLE(index: number): void {
    while (this.count > 0 && this.indexes[this.start] <= index) {
      this.bytes -= this.sizes[this.start]
      this.start = (this.start + 1) % this.countMax
      this.count--
    }
    if (this.count === 0) this.start = 0
  }

  full(): boolean {
    return this.count === this.countMax || this.bytes >= this.bytesMax
  }

  reset(): void {
    this.start = 0
    this.count = 0
    this.bytes = 0
  }
}

export class Progress {
  match = 0
  next: number
  state: ProgressState = 'probe'
  /** In 'snapshot' state: the snapshot being sent and how many of its bytes the follower holds. */
  pendingSnapshot: Snapshot | undefined
  snapshotOffset = 0
  /** Set by any message from the follower; cleared by the leader's check-quorum tick. */
  recentActive = false
  /** Probe: one append sent, waiting for its answer. Replicate: the inflights window is full. */
  paused = false
  readonly inflights: Inflights

  constructor(next: number, inflightsCountMax: number, inflightsBytesMax: number) {
    this.next = next
    this.inflights = new Inflights(inflightsCountMax, inflightsBytesMax)
  }

  private resetState(state: ProgressState): void {
    this.paused = false
    this.pendingSnapshot = undefined
    this.snapshotOffset = 0
    this.state = state
    this.inflights.reset()
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pendingIndex = this.pendingSnapshot?.metadata.index ?? 0
      this.resetState('probe')
      this.next = Math.max(this.match + 1, pendingIndex + 1)
    } else {
      this.resetState('probe')
      this.next = this.match + 1
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate')
    this.next = this.match + 1
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.resetState('snapshot')
    this.pendingSnapshot = snapshot
    this.next = snapshot.metadata.index + 1
  }

  /** Records an append of `entries` entries totalling `bytes` sent from `next`. */
  sentEntries(entries: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next += entries
        this.inflights.add(this.next - 1, bytes)
      }
      this.paused = this.inflights.full()
    } else if (this.state === 'probe') {
      this.paused = true
    } else {
      assert(false, `sending entries in state ${this.state}`)
    }
  }

  /** An acknowledgement up to index: returns whether match advanced. */
  maybeUpdate(index: number): boolean {
    let updated = false
    if (this.match < index) {
      this.match = index
      updated = true
      this.paused = false
    }
    this.next = Math.max(this.next, index + 1)
    return updated
  }

  /**
   * A rejection of the append at `rejected`, with the follower's hint of where logs may match.
   * Returns false for a stale rejection (one answering an append we already moved past).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1)
    this.paused = false
    return true
  }

  isPaused(): boolean {
    if (this.state === 'snapshot') return true
    return this.paused
  }
}
