// The simulator's event queue: a binary min-heap keyed on (time, sequence) kept in typed arrays,
// so the hot path allocates nothing and compares plain numbers. Each event is a kind (small int),
// two integer arguments and an optional object slot for payloads that are real objects (Raft
// messages). The sequence number makes events at the same time leave in insertion order, which is
// what makes a run reproducible. Measured against an object heap in bench/sim.ts.
import { assert } from '../../protocols/raft/types.js'

/** The most events that may be pending at once: a run that needs more is a modelling bug. */
export const EVENT_QUEUE_EVENTS_MAX = 1 << 24
const INITIAL_CAPACITY = 1 << 12

export class EventQueue {
  private times: Float64Array
  private sequences: Float64Array
  private kinds: Uint8Array
  private argsA: Int32Array
  private argsB: Int32Array
  private payloadSlots: Int32Array
  /** heap[i] = record index; records are recycled through the free list. */
  private heap: Int32Array
  private freeRecords: Int32Array
  private freeCount = 0
  private capacity: number
  private nextRecord = 0
  private payloads: unknown[] = []
  private freePayloadSlots: number[] = []
  private sequence = 0
  size = 0
  /** Popped event fields (read after pop()). */
  time = 0
  kind = 0
  argA = 0
  argB = 0
  payload: unknown = undefined

  constructor(capacity = INITIAL_CAPACITY) {
    this.capacity = capacity
    this.times = new Float64Array(capacity)
    this.sequences = new Float64Array(capacity)
    this.kinds = new Uint8Array(capacity)
    this.argsA = new Int32Array(capacity)
    this.argsB = new Int32Array(capacity)
    this.payloadSlots = new Int32Array(capacity)
    this.heap = new Int32Array(capacity)
    this.freeRecords = new Int32Array(capacity)
  }

  private grow(): void {
    const capacity = this.capacity * 2
    assert(capacity <= EVENT_QUEUE_EVENTS_MAX, `event queue over ${EVENT_QUEUE_EVENTS_MAX} pending events`)
    const growF = (old: Float64Array) => {
      const next = new Float64Array(capacity)
      next.set(old)
      return next
    }
    const growI = (old: Int32Array) => {
      const next = new Int32Array(capacity)
      next.set(old)
      return next
    }
    this.times = growF(this.times)
    this.sequences = growF(this.sequences)
    const kinds = new Uint8Array(capacity)
    kinds.set(this.kinds)
    this.kinds = kinds
    this.argsA = growI(this.argsA)
    this.argsB = growI(this.argsB)
    this.payloadSlots = growI(this.payloadSlots)
    this.heap = growI(this.heap)
    this.freeRecords = growI(this.freeRecords)
    this.capacity = capacity
  }

  private less(a: number, b: number): boolean {
    const ta = this.times[a]
    const tb = this.times[b]
    return ta < tb || (ta === tb && this.sequences[a] < this.sequences[b])
  }

  push(time: number, kind: number, argA = 0, argB = 0, payload?: unknown): void {
    // the message is built only on failure: this is called for every event of a run
    if (!Number.isFinite(time)) assert(false, `event time ${time} is not finite`)
    if (this.size === this.capacity) this.grow()
    const record = this.freeCount > 0 ? this.freeRecords[--this.freeCount] : this.nextRecord++
    this.times[record] = time
    this.sequences[record] = this.sequence++
    this.kinds[record] = kind
    this.argsA[record] = argA
    this.argsB[record] = argB
    if (payload === undefined) this.payloadSlots[record] = -1
    else {
      const slot = this.freePayloadSlots.length > 0 ? this.freePayloadSlots.pop()! : this.payloads.length
      this.payloads[slot] = payload
      this.payloadSlots[record] = slot
    }
    // sift up (the comparison inlined: this is the hottest loop of a run)
    const heap = this.heap
    const times = this.times
    const sequences = this.sequences
    const sequence = sequences[record]
    let i = this.size++
    while (i > 0) {
      const parent = (i - 1) >> 1
      const other = heap[parent]
      const otherTime = times[other]
      if (otherTime < time || (otherTime === time && sequences[other] < sequence)) break
      heap[i] = other
      i = parent
    }
    heap[i] = record
  }

  peekTime(): number {
    return this.size === 0 ? Number.POSITIVE_INFINITY : this.times[this.heap[0]]
  }

  /** Removes the earliest event into time/kind/argA/argB/payload; false when empty. */
  pop(): boolean {
    if (this.size === 0) return false
    const heap = this.heap
    const record = heap[0]
    this.time = this.times[record]
    this.kind = this.kinds[record]
    this.argA = this.argsA[record]
    this.argB = this.argsB[record]
    const slot = this.payloadSlots[record]
    if (slot >= 0) {
      this.payload = this.payloads[slot]
      this.payloads[slot] = undefined
      this.freePayloadSlots.push(slot)
    } else this.payload = undefined
    this.freeRecords[this.freeCount++] = record
    const last = heap[--this.size]
    // sift down
    let i = 0
    const size = this.size
    while (true) {
      let child = 2 * i + 1
      if (child >= size) break
      if (child + 1 < size && this.less(heap[child + 1], heap[child])) child++
      if (!this.less(heap[child], last)) break
      heap[i] = heap[child]
      i = child
    }
    if (size > 0) heap[i] = last
    return true
  }
}
