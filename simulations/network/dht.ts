// A model of Kademlia routing as @libp2p/kad-dht does it: 64-bit prefixes of the sha2-256 DHT keys
// (XOR order on the prefix is the order on the full key but for ties of probability 2^-64),
// k-buckets of K_BUCKET_SIZE by common-prefix length, and iterative lookups over disjoint paths as
// the library runs them (see lookup). Routing tables are "ideal"
// tables: bucket b of a peer holds up to k peers drawn from those sharing exactly b leading bits,
// which is what a table converges to once refreshes have run; peers that joined later are in the
// joiner's table, and stale entries (peers since gone) cost a query timeout, as they do for real.
//
// A lookup is computed at once (a small event loop over its own contacts) and returns its
// hop count (the depth of the query that reached the target: 1 when the own table held it),
// contacts, failures and latency; the caller schedules its completion.
import type { SeededRandom } from '../../protocols/raft/random.js'
import type { PeerTable } from './peers.js'

/**
 * @libp2p/kad-dht 16 defaults (constants.ts, query/manager.ts): K (the bucket size, the peers a
 * response names and the number of disjoint paths of a lookup) and ALPHA (queries in flight per path).
 */
export const K_BUCKET_SIZE = 20
export const DHT_DISJOINT_PATHS = 20
export const DHT_ALPHA = 10
/**
 * A query to a peer that does not answer is given up after this long (kad-dht's per-peer timeout is
 * longer; peers dialled in a lookup mostly fail fast).
 */
export const DHT_QUERY_TIMEOUT_MS = 2000
/** Most peers one lookup may contact before it gives up (bounds a lookup in a broken network). */
export const DHT_LOOKUP_CONTACTS_MAX = 2000
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

/** The queries of one lookup in flight: a binary min-heap on completion time (ties: first pushed first). */
class QueryHeap<P> {
  private readonly items: Array<{ at: number; order: number; peer: number; ok: boolean; path: P }> = []
  private pushed = 0

  push(at: number, peer: number, ok: boolean, path: P): void {
    const items = this.items
    const item = { at, order: this.pushed++, peer, ok, path }
    let i = items.length
    items.push(item)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!QueryHeap.before(item, items[parent])) break
      items[i] = items[parent]
      i = parent
    }
    items[i] = item
  }

  pop(): { at: number; peer: number; ok: boolean; path: P } | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    let i = 0
    while (true) {
      const left = 2 * i + 1
      if (left >= items.length) break
      const right = left + 1
      const child = right < items.length && QueryHeap.before(items[right], items[left]) ? right : left
      if (!QueryHeap.before(items[child], last)) break
      items[i] = items[child]
      i = child
    }
    items[i] = last
    return top
  }

  private static before(a: { at: number; order: number }, b: { at: number; order: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.order < b.order)
  }
}

export class DhtModel {
  readonly keyHi: Uint32Array
  readonly keyLo: Uint32Array
  /** Per peer row: the lookup that last saw it (lookupId) and the depth it was seen at. */
  private readonly seenBy: Uint32Array
  private readonly seenDepth: Uint16Array
  private lookupId = 0
  /** closest()'s working space, grown to the longest table seen */
  private scratchEntries = new Int32Array(0)
  private scratchHi = new Uint32Array(0)
  private scratchLo = new Uint32Array(0)
  /** Routing table of each peer (peer rows). */
  readonly tables: (Int32Array | undefined)[] = []
  /** The tables sorted by key, built on first use (closest); dropped when a table is replaced. */
  private readonly sortedTables: (Int32Array | undefined)[] = []
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
    this.seenBy = new Uint32Array(capacity)
    this.seenDepth = new Uint16Array(capacity)
  }

  private lessThan(peer: number, hi: number, lo: number): boolean {
    const ph = this.keyHi[peer]
    return ph < hi || (ph === hi && this.keyLo[peer] < lo)
  }

  /** First position in `sorted` (the index, or a key-sorted table) whose key is >= (hi, lo). */
  private lowerBound(hi: number, lo: number, sorted = this.sorted, count = this.sortedCount): number {
    let low = 0
    let high = count
    while (low < high) {
      const mid = (low + high) >> 1
      if (this.lessThan(sorted[mid], hi, lo)) low = mid + 1
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
    this.sortedTables[peer] = undefined
  }

  /** Replaces a routing table with explicit entries (the cross-check loads real nodes' tables). */
  setTable(peer: number, entries: number[]): void {
    this.tables[peer] = Int32Array.from(entries)
    this.sortedTables[peer] = undefined
  }

  /** A peer's table sorted by key (kept until the table changes). */
  private sortedTable(peer: number): Int32Array | undefined {
    const cached = this.sortedTables[peer]
    if (cached !== undefined) return cached
    const table = this.tables[peer]
    if (!table) return undefined
    const keyHi = this.keyHi
    const keyLo = this.keyLo
    const sorted = Int32Array.from(table).sort((a, b) =>
      keyHi[a] !== keyHi[b] ? keyHi[a] - keyHi[b] : keyLo[a] - keyLo[b],
    )
    this.sortedTables[peer] = sorted
    return sorted
  }

  /**
   * The k closest entries of a peer's table to a key, closest first. In key order the common prefix
   * with the key only shrinks away from the key's position, and the entries sharing exactly b bits lie
   * on one side of it (the side of bit b's other value), so whole groups are taken outward, closest
   * group first, until there are k; only those candidates are ranked by XOR distance.
   */
  closest(peer: number, keyHigh: number, keyLow: number, count = K_BUCKET_SIZE): number[] {
    const sorted = this.sortedTable(peer)
    if (!sorted) return []
    // the binary search compares keys as unsigned words (a key word may come in as a signed int32)
    const hi = keyHigh >>> 0
    const lo = keyLow >>> 0
    const keyHi = this.keyHi
    const keyLo = this.keyLo
    const start = this.lowerBound(hi, lo, sorted, sorted.length)
    // gather whole prefix groups outward, closest group first, into the scratch arrays; each
    // candidate is inserted in XOR order as it comes (no closures, no allocation: this runs for
    // every answer of every lookup)
    if (this.scratchEntries.length < sorted.length) {
      this.scratchEntries = new Int32Array(sorted.length)
      this.scratchHi = new Uint32Array(sorted.length)
      this.scratchLo = new Uint32Array(sorted.length)
    }
    const entries = this.scratchEntries
    const distanceHi = this.scratchHi
    const distanceLo = this.scratchLo
    let size = 0
    let left = start - 1
    let right = start
    while (size < count && (left >= 0 || right < sorted.length)) {
      const leftPrefix = left >= 0 ? commonPrefixLength(keyHi[sorted[left]], keyLo[sorted[left]], hi, lo) : -1
      const rightPrefix =
        right < sorted.length ? commonPrefixLength(keyHi[sorted[right]], keyLo[sorted[right]], hi, lo) : -1
      const fromRight = rightPrefix > leftPrefix
      const groupPrefix = fromRight ? rightPrefix : leftPrefix
      while (fromRight ? right < sorted.length : left >= 0) {
        const entry = fromRight ? sorted[right] : sorted[left]
        const dh = (keyHi[entry] ^ hi) >>> 0
        const dl = (keyLo[entry] ^ lo) >>> 0
        // the group ends where the common prefix gets shorter
        if (commonPrefixLength(keyHi[entry], keyLo[entry], hi, lo) !== groupPrefix) break
        if (fromRight) right++
        else left--
        let j = size++
        while (j > 0 && (dh < distanceHi[j - 1] || (dh === distanceHi[j - 1] && dl < distanceLo[j - 1]))) {
          entries[j] = entries[j - 1]
          distanceHi[j] = distanceHi[j - 1]
          distanceLo[j] = distanceLo[j - 1]
          j--
        }
        entries[j] = entry
        distanceHi[j] = dh
        distanceLo[j] = dl
      }
    }
    const result = new Array<number>(Math.min(size, count))
    for (let i = 0; i < result.length; i++) result[i] = entries[i]
    return result
  }

  /** Negative when peer a is closer to (hi, lo) than peer b (XOR order). */
  private compareDistance(a: number, b: number, hi: number, lo: number): number {
    const ah = (this.keyHi[a] ^ hi) >>> 0
    const bh = (this.keyHi[b] ^ hi) >>> 0
    if (ah !== bh) return ah - bh
    return ((this.keyLo[a] ^ lo) >>> 0) - ((this.keyLo[b] ^ lo) >>> 0)
  }

  /**
   * An iterative lookup from `origin` for the key of `target` (a peer row) or an arbitrary key, as
   * kad-dht 16's query manager runs it (query/manager.ts, query/query-path.ts): the origin's K closest
   * peers are dealt (shuffled) over DHT_DISJOINT_PATHS paths; each path queries the closest peer of its
   * queue first with DHT_ALPHA in flight, queues only peers no path has seen that are strictly closer
   * to the key than the peer that named them and that would enter the path's K closest answered
   * peers, skips a queued peer that no longer would (the path converged), and ends when its queue is
   * empty. The lookup ends when every path has.
   */
  lookup(origin: number, hi: number, lo: number, target = -1): LookupResult {
    const { peers, random } = this.links
    const result: LookupResult = { hops: 0, depth: 0, contacted: 0, failed: 0, latencyMs: 0, found: false }
    const closer = (a: number, b: number) => this.compareDistance(a, b, hi, lo) < 0
    const insertSorted = (list: number[], peer: number) => {
      let i = list.length
      list.push(peer)
      while (i > 0 && closer(peer, list[i - 1])) {
        list[i] = list[i - 1]
        i--
      }
      list[i] = peer
    }
    interface Path {
      /** peers to query, closest first */
      queue: number[]
      running: number
      /** the K closest peers that answered, closest first */
      answered: number[]
    }
    const wouldEnter = (path: Path, peer: number) =>
      path.answered.length < K_BUCKET_SIZE || closer(peer, path.answered[path.answered.length - 1])
    // seen (by any path) and depth per peer row, stamped with this lookup's id (no per-lookup maps)
    const id = ++this.lookupId
    const see = (peer: number, depth: number) => {
      this.seenBy[peer] = id
      this.seenDepth[peer] = depth
    }
    see(origin, 0)
    const start = this.closest(origin, hi, lo)
    // the library shuffles the starting peers before dealing them round-robin over the paths
    for (let i = start.length - 1; i > 0; i--) {
      const j = random.int(i + 1)
      ;[start[i], start[j]] = [start[j], start[i]]
    }
    const paths: Path[] = []
    for (let i = 0; i < start.length; i++) {
      if (i < DHT_DISJOINT_PATHS) paths.push({ queue: [], running: 0, answered: [] })
      insertSorted(paths[i % DHT_DISJOINT_PATHS].queue, start[i])
      see(start[i], 1)
    }
    // queries in flight, a binary min-heap on their completion time
    const inFlight = new QueryHeap<Path>()
    let now = 0
    while (true) {
      for (const path of paths) {
        while (path.running < DHT_ALPHA && path.queue.length > 0) {
          if (result.contacted >= DHT_LOOKUP_CONTACTS_MAX) {
            path.queue.length = 0
            break
          }
          const peer = path.queue.shift()!
          if (!wouldEnter(path, peer)) continue // the path converged past it
          path.running++
          result.contacted++
          peers.countSent(origin, DHT_QUERY_BYTES)
          const d = this.seenDepth[peer]
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
          inFlight.push(at, peer, ok, path)
        }
      }
      const done = inFlight.pop()
      if (done === undefined) break // every path's queue is empty
      now = done.at
      const path = done.path
      path.running--
      if (!done.ok) {
        result.failed++
        continue
      }
      peers.countReceived(done.peer, DHT_QUERY_BYTES)
      peers.countSent(done.peer, DHT_RESPONSE_BYTES)
      peers.countReceived(origin, DHT_RESPONSE_BYTES)
      insertSorted(path.answered, done.peer)
      if (path.answered.length > K_BUCKET_SIZE) path.answered.length = K_BUCKET_SIZE
      const d = this.seenDepth[done.peer]
      for (const named of this.closest(done.peer, hi, lo)) {
        if (this.seenBy[named] === id || !closer(named, done.peer) || !wouldEnter(path, named)) continue
        see(named, d + 1)
        insertSorted(path.queue, named)
      }
    }
    result.latencyMs = now
    return result
  }

  /** commonPrefixLength exposed for tests of the bucket rule. */
  static commonPrefixLength = commonPrefixLength
}
