// A model of Kademlia routing as @libp2p/kad-dht does it: 64-bit prefixes of the sha2-256 DHT keys
// (XOR order on the prefix is the order on the full key but for ties of probability 2^-64),
// k-buckets of K_BUCKET_SIZE by common-prefix length, and iterative lookups with ALPHA queries in
// flight that stop when the K closest peers known have all answered. Routing tables are "ideal"
// tables: bucket b of a peer holds up to k peers drawn from those sharing exactly b leading bits,
// which is what a table converges to once refreshes have run; peers that joined later are in the
// joiner's table, and stale entries (peers since gone) cost a query timeout, as they do for real.
//
// A lookup is computed at once (a small pipelined event loop over its own contacts) and returns its
// hop count (the depth of the query that reached the target: 1 when the own table held it),
// contacts, failures and latency; the caller schedules its completion.
import type { SeededRandom } from '../../protocols/raft/random.js'
import { assert } from '../../protocols/raft/types.js'
import type { PeerTable } from './peers.js'

/** @libp2p/kad-dht 16 defaults (constants.ts): KBUCKET_SIZE and ALPHA. */
export const K_BUCKET_SIZE = 20
export const DHT_ALPHA = 3
/** A query to a peer that does not answer is given up after this long (kad-dht's per-peer timeout is longer; peers dialled in a lookup mostly fail fast). */
export const DHT_QUERY_TIMEOUT_MS = 2000
/** Most peers one lookup may contact before it gives up (bounds a lookup in a broken network). */
export const DHT_LOOKUP_CONTACTS_MAX = 120
/** Bytes of one FIND_NODE request plus its response of k peer records. */
export const DHT_QUERY_BYTES = 80
export const DHT_RESPONSE_BYTES = 40 + K_BUCKET_SIZE * 60

export interface DhtLinks {
  readonly peers: PeerTable
  readonly random: SeededRandom
  readonly lossProbability: number
  reachable(from: number, to: number): boolean
  latencyMs(from: number, to: number): number
}

export interface LookupResult {
  /** Depth of the query that reached the target peer; 0 when never reached. */
  hops: number
  /** Depth of the longest query chain the lookup ran. */
  depth: number
  contacted: number
  failed: number
  latencyMs: number
  found: boolean
}

function commonPrefixLength(aHi: number, aLo: number, bHi: number, bLo: number): number {
  const hi = (aHi ^ bHi) >>> 0
  if (hi !== 0) return Math.clz32(hi)
  const lo = (aLo ^ bLo) >>> 0
  return lo === 0 ? 64 : 32 + Math.clz32(lo)
}

export class DhtModel {
  readonly keyHi: Uint32Array
  readonly keyLo: Uint32Array
  /** Routing table of each peer (peer rows). */
  readonly tables: (Int32Array | undefined)[] = []
  /** Peer rows sorted by key. */
  private sorted: Int32Array
  private sortedCount = 0

  constructor(
    private readonly links: DhtLinks,
    capacity: number,
  ) {
    this.keyHi = new Uint32Array(capacity)
    this.keyLo = new Uint32Array(capacity)
    this.sorted = new Int32Array(capacity)
  }

  private lessThan(peer: number, hi: number, lo: number): boolean {
    const ph = this.keyHi[peer]
    return ph < hi || (ph === hi && this.keyLo[peer] < lo)
  }

  /** First position in `sorted` whose key is >= (hi, lo). */
  private lowerBound(hi: number, lo: number): number {
    let low = 0
    let high = this.sortedCount
    while (low < high) {
      const mid = (low + high) >> 1
      if (this.lessThan(this.sorted[mid], hi, lo)) low = mid + 1
      else high = mid
    }
    return low
  }

  /** Adds a peer's key to the sorted index (call before building tables that should know it). */
  index(peer: number): void {
    const at = this.lowerBound(this.keyHi[peer], this.keyLo[peer])
    this.sorted.copyWithin(at + 1, at, this.sortedCount)
    this.sorted[at] = peer
    this.sortedCount++
  }

  /** Positions [start, end) in `sorted` of keys whose first `bits` bits equal those of (hi, lo). */
  private prefixRange(hi: number, lo: number, bits: number): [number, number] {
    let startHi: number
    let startLo: number
    let endHi: number
    let endLo: number
    if (bits <= 32) {
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
      startHi = (hi & mask) >>> 0
      endHi = (startHi | ~mask) >>> 0
      startLo = 0
      endLo = 0xffffffff
    } else {
      const mask = bits === 64 ? 0xffffffff : (0xffffffff << (64 - bits)) >>> 0
      startHi = hi
      endHi = hi
      startLo = (lo & mask) >>> 0
      endLo = (startLo | ~mask) >>> 0
    }
    const start = this.lowerBound(startHi, startLo)
    // end: first key > (endHi, endLo)
    let low = start
    let high = this.sortedCount
    while (low < high) {
      const mid = (low + high) >> 1
      const peer = this.sorted[mid]
      const ph = this.keyHi[peer]
      if (ph < endHi || (ph === endHi && this.keyLo[peer] <= endLo)) low = mid + 1
      else high = mid
    }
    return [start, low]
  }

  /** Builds the ideal k-bucket table of `peer` from the peers indexed now (up or not: tables go stale). */
  buildTable(peer: number, isCandidate: (other: number) => boolean = () => true): void {
    const random = this.links.random
    const hi = this.keyHi[peer]
    const lo = this.keyLo[peer]
    const entries: number[] = []
    for (let bits = 0; bits < 64; bits++) {
      // keys sharing exactly `bits` leading bits: prefix of `bits` bits, then the other value of bit `bits`
      const flippedHi = bits < 32 ? (hi ^ (0x80000000 >>> bits)) >>> 0 : hi
      const flippedLo = bits >= 32 ? (lo ^ (0x80000000 >>> (bits - 32))) >>> 0 : lo
      const [start, end] = this.prefixRange(flippedHi, flippedLo, bits + 1)
      const size = end - start
      if (size > 0) {
        if (size <= K_BUCKET_SIZE) {
          for (let i = start; i < end; i++) if (isCandidate(this.sorted[i])) entries.push(this.sorted[i])
        } else {
          // k distinct random members of the bucket (bounded tries, then fill in order)
          const chosen = new Set<number>()
          for (let tries = 0; tries < K_BUCKET_SIZE * 4 && chosen.size < K_BUCKET_SIZE; tries++) {
            const other = this.sorted[start + random.int(size)]
            if (isCandidate(other)) chosen.add(other)
          }
          for (let i = start; i < end && chosen.size < K_BUCKET_SIZE; i++)
            if (isCandidate(this.sorted[i])) chosen.add(this.sorted[i])
          for (const other of chosen) entries.push(other)
        }
      }
      // deeper buckets are empty once only the peer itself shares `bits + 1` bits
      const [ownStart, ownEnd] = this.prefixRange(hi, lo, bits + 1)
      if (ownEnd - ownStart <= 1) break
    }
    this.tables[peer] = Int32Array.from(entries)
  }

  /** Replaces a routing table with explicit entries (the cross-check loads real nodes' tables). */
  setTable(peer: number, entries: number[]): void {
    this.tables[peer] = Int32Array.from(entries)
  }

  /** Sorts `candidates` by XOR distance to (hi, lo), closest first. */
  private sortByDistance(candidates: number[], hi: number, lo: number): void {
    candidates.sort((a, b) => {
      const ah = (this.keyHi[a] ^ hi) >>> 0
      const bh = (this.keyHi[b] ^ hi) >>> 0
      if (ah !== bh) return ah - bh
      return ((this.keyLo[a] ^ lo) >>> 0) - ((this.keyLo[b] ^ lo) >>> 0)
    })
  }

  /** The k closest entries of a peer's table to a key. */
  closest(peer: number, hi: number, lo: number, count = K_BUCKET_SIZE): number[] {
    const table = this.tables[peer]
    if (!table) return []
    const entries = Array.from(table)
    this.sortByDistance(entries, hi, lo)
    return entries.slice(0, count)
  }

  /**
   * An iterative lookup from `origin` for the key of `target` (a peer row) or an arbitrary key.
   * Pipelined: ALPHA queries in flight; each answer merges the responder's k closest; stops when
   * the K closest known have all answered or failed.
   */
  lookup(origin: number, hi: number, lo: number, target = -1): LookupResult {
    const { peers, random } = this.links
    const depth = new Map<number, number>()
    const state = new Map<number, number>() // 0 known, 1 in flight, 2 answered, 3 failed
    const result: LookupResult = { hops: 0, depth: 0, contacted: 0, failed: 0, latencyMs: 0, found: false }
    const known: number[] = []
    for (const peer of this.closest(origin, hi, lo)) {
      depth.set(peer, 1)
      state.set(peer, 0)
      known.push(peer)
    }
    // in-flight queries: [finishTime, peer, ok]
    const inFlight: { at: number; peer: number; ok: boolean }[] = []
    let now = 0
    while (true) {
      this.sortByDistance(known, hi, lo)
      if (known.length > DHT_LOOKUP_CONTACTS_MAX * 2) known.length = DHT_LOOKUP_CONTACTS_MAX * 2
      // done when the k closest known have all answered or failed
      let pending = false
      let launched = 0
      for (let i = 0, seen = 0; i < known.length && seen < K_BUCKET_SIZE; i++) {
        const s = state.get(known[i])!
        if (s === 3) continue
        seen++
        if (s === 0 || s === 1) pending = true
        if (s === 0 && inFlight.length < DHT_ALPHA && result.contacted < DHT_LOOKUP_CONTACTS_MAX) {
          const peer = known[i]
          state.set(peer, 1)
          result.contacted++
          launched++
          peers.countSent(origin, DHT_QUERY_BYTES)
          const d = depth.get(peer)!
          if (peer === target && result.hops === 0) {
            result.hops = d
            result.found = true
          }
          result.depth = Math.max(result.depth, d)
          const ok =
            peers.isUp(peer) &&
            this.links.reachable(origin, peer) &&
            !random.chance(this.links.lossProbability) &&
            !random.chance(this.links.lossProbability)
          const at = ok
            ? now + this.links.latencyMs(origin, peer) + this.links.latencyMs(peer, origin)
            : now + DHT_QUERY_TIMEOUT_MS
          inFlight.push({ at, peer, ok })
        }
      }
      if (!pending && inFlight.length === 0) break
      if (inFlight.length === 0) break // contacts exhausted
      // next completion
      let first = 0
      for (let i = 1; i < inFlight.length; i++) if (inFlight[i].at < inFlight[first].at) first = i
      const done = inFlight[first]
      inFlight.splice(first, 1)
      now = done.at
      if (!done.ok) {
        state.set(done.peer, 3)
        result.failed++
        continue
      }
      state.set(done.peer, 2)
      peers.countReceived(done.peer, DHT_QUERY_BYTES)
      peers.countSent(done.peer, DHT_RESPONSE_BYTES)
      peers.countReceived(origin, DHT_RESPONSE_BYTES)
      const d = depth.get(done.peer)!
      for (const closer of this.closest(done.peer, hi, lo)) {
        if (closer === origin || state.has(closer)) continue
        state.set(closer, 0)
        depth.set(closer, d + 1)
        known.push(closer)
      }
      assert(launched >= 0, 'unreachable')
    }
    result.latencyMs = now
    return result
  }

  /** commonPrefixLength exposed for tests of the bucket rule. */
  static commonPrefixLength = commonPrefixLength
}
