// A model of gossipsub at scale: every peer keeps a mesh of about D peers for the announcement
// topic; a published message is pushed eagerly along mesh links (each peer forwards it once, to
// every mesh peer but the sender) and the publisher floods it to every connected subscriber
// (js-libp2p's floodPublish default). Peers that a lost or dead link left out get it lazily: at
// each of its next GOSSIP_HISTORY_HEARTBEATS heartbeats a holder sends IHAVE to D_LAZY random
// peers, which answer IWANT and receive the message (three one-way trips). Every IHAVE is counted;
// only those reaching peers the eager push missed are drawn (lazyRepair), which keeps a flood's
// cost proportional to the mesh links rather than to 18 random draws per peer.
//
// Because a flood lasts a second or two and the mesh does not change meanwhile, one publication is
// computed at once as a shortest-arrival-time search (Dijkstra over arrival times, on typed
// arrays) rather than as hundreds of thousands of queue events; every send, duplicate and loss is
// still drawn and counted per peer. The mesh is repaired on a maintenance interval: dead peers are
// pruned and peers below D_LO graft random live peers, as gossipsub's heartbeat does.
//
// Parameters are js-libp2p gossipsub's defaults (@libp2p/gossipsub 17, constants.ts).
import type { SeededRandom } from '../../protocols/raft/random.js'
import { assert } from '../../protocols/raft/types.js'
import type { PeerTable } from './peers.js'

export const GOSSIP_D = 6
export const GOSSIP_D_LO = 4
export const GOSSIP_D_HI = 12
export const GOSSIP_D_LAZY = 6
export const GOSSIP_HEARTBEAT_MS = 1000
/** Heartbeats a message stays in the gossip window (mcache gossip length). */
export const GOSSIP_HISTORY_HEARTBEATS = 3
/** Bytes of an IHAVE or IWANT control message carrying one message id. */
export const GOSSIP_CONTROL_BYTES = 60
/** Time to validate a message (signature check, decode) before forwarding, in ms. */
export const GOSSIP_VALIDATE_MS = 0.5
/** Connected subscribers a publisher floods to, at most (floodPublish; about the mesh plus DHT contacts). */
export const GOSSIP_FLOOD_PUBLISH_PEERS_MAX = 40
/** IHAVE messages each holder sends for one message (one per lazy peer per heartbeat of the window). */
const LAZY_IHAVES_PER_PEER = GOSSIP_D_LAZY * GOSSIP_HISTORY_HEARTBEATS

export interface GossipLinks {
  readonly peers: PeerTable
  readonly random: SeededRandom
  readonly lossProbability: number
  /** Both up and on the same side of any partition. */
  reachable(from: number, to: number): boolean
  latencyMs(from: number, to: number): number
}

export interface FloodResult {
  /** Peers up at publication time. */
  peersUp: number
  /** Of those, how many received it. */
  reached: number
  duplicates: number
  lost: number
  /** Deliveries that came through IHAVE/IWANT rather than the mesh. */
  lazyDeliveries: number
}

export class GossipModel {
  /** mesh[peer * GOSSIP_D_HI + i], i < meshDegree[peer] */
  readonly mesh: Int32Array
  readonly meshDegree: Uint8Array
  /** Arrival time of the current flood (ms since publication); +Infinity = not reached. */
  readonly arrivalMs: Float64Array
  /** Hops the current flood took to reach each peer (0 at the publisher). */
  readonly hops: Uint8Array
  /** Peers reached by the current flood, in order of arrival. */
  private readonly reached: Int32Array
  private heapHops: Uint8Array
  private heapTimes: Float64Array
  private heapPeers: Int32Array
  private heapVia: Uint8Array
  private heapSize = 0
  floodPublishPeers = GOSSIP_FLOOD_PUBLISH_PEERS_MAX

  constructor(
    private readonly links: GossipLinks,
    capacity: number,
  ) {
    this.mesh = new Int32Array(capacity * GOSSIP_D_HI)
    this.meshDegree = new Uint8Array(capacity)
    this.arrivalMs = new Float64Array(capacity)
    this.hops = new Uint8Array(capacity)
    this.reached = new Int32Array(capacity)
    this.heapHops = new Uint8Array(1024)
    this.heapTimes = new Float64Array(1024)
    this.heapPeers = new Int32Array(1024)
    this.heapVia = new Uint8Array(1024)
  }

  private hasLink(a: number, b: number): boolean {
    const base = a * GOSSIP_D_HI
    for (let i = 0; i < this.meshDegree[a]; i++) if (this.mesh[base + i] === b) return true
    return false
  }

  private link(a: number, b: number): void {
    this.mesh[a * GOSSIP_D_HI + this.meshDegree[a]++] = b
    this.mesh[b * GOSSIP_D_HI + this.meshDegree[b]++] = a
  }

  private unlinkAt(a: number, i: number): void {
    const base = a * GOSSIP_D_HI
    this.mesh[base + i] = this.mesh[base + --this.meshDegree[a]]
  }

  /** Grafts random live peers onto `peer` until it has D (tries are bounded). */
  graft(peer: number, candidates: Int32Array, candidateCount: number): void {
    const random = this.links.random
    const peers = this.links.peers
    const triesMax = GOSSIP_D * 8
    for (let tries = 0; tries < triesMax && this.meshDegree[peer] < GOSSIP_D; tries++) {
      if (candidateCount <= 1) return
      const other = candidates[random.int(candidateCount)]
      if (other === peer || !peers.isUp(other) || this.meshDegree[other] >= GOSSIP_D_HI) continue
      if (this.hasLink(peer, other)) continue
      this.link(peer, other)
    }
  }

  /** Drops links to peers that are no longer up, then grafts peers below D_LO (a heartbeat's repair). */
  maintain(candidates: Int32Array, candidateCount: number): void {
    const peers = this.links.peers
    for (let c = 0; c < candidateCount; c++) {
      const peer = candidates[c]
      const base = peer * GOSSIP_D_HI
      for (let i = this.meshDegree[peer] - 1; i >= 0; i--) {
        const other = this.mesh[base + i]
        if (!peers.isUp(other)) this.unlinkAt(peer, i)
      }
    }
    for (let c = 0; c < candidateCount; c++) {
      const peer = candidates[c]
      if (this.meshDegree[peer] < GOSSIP_D_LO) this.graft(peer, candidates, candidateCount)
    }
  }

  /** Removes a peer's links from both ends (it left the topic). */
  remove(peer: number): void {
    const base = peer * GOSSIP_D_HI
    for (let i = 0; i < this.meshDegree[peer]; i++) {
      const other = this.mesh[base + i]
      const otherBase = other * GOSSIP_D_HI
      for (let j = 0; j < this.meshDegree[other]; j++) {
        if (this.mesh[otherBase + j] === peer) {
          this.unlinkAt(other, j)
          break
        }
      }
    }
    this.meshDegree[peer] = 0
  }

  private heapPush(time: number, peer: number, via: number, hop: number): void {
    if (this.heapSize === this.heapTimes.length) {
      const size = this.heapTimes.length * 2
      assert(size <= 1 << 27, 'gossip flood heap over 2^27 entries')
      const times = new Float64Array(size)
      times.set(this.heapTimes)
      const peersArray = new Int32Array(size)
      peersArray.set(this.heapPeers)
      const via8 = new Uint8Array(size)
      via8.set(this.heapVia)
      const hops8 = new Uint8Array(size)
      hops8.set(this.heapHops)
      this.heapHops = hops8
      this.heapTimes = times
      this.heapPeers = peersArray
      this.heapVia = via8
    }
    const times = this.heapTimes
    const peersArray = this.heapPeers
    const vias = this.heapVia
    const hops = this.heapHops
    let i = this.heapSize++
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (times[parent] <= time) break
      times[i] = times[parent]
      peersArray[i] = peersArray[parent]
      vias[i] = vias[parent]
      hops[i] = hops[parent]
      i = parent
    }
    times[i] = time
    peersArray[i] = peer
    vias[i] = via
    hops[i] = hop
  }

  private popTime = 0
  private popPeer = 0
  private popVia = 0
  private popHop = 0

  private heapPop(): void {
    const times = this.heapTimes
    const peersArray = this.heapPeers
    const vias = this.heapVia
    const hops = this.heapHops
    this.popTime = times[0]
    this.popPeer = peersArray[0]
    this.popVia = vias[0]
    this.popHop = hops[0]
    const size = --this.heapSize
    const lastTime = times[size]
    const lastPeer = peersArray[size]
    const lastVia = vias[size]
    const lastHop = hops[size]
    let i = 0
    while (true) {
      let child = 2 * i + 1
      if (child >= size) break
      if (child + 1 < size && times[child + 1] < times[child]) child++
      if (times[child] >= lastTime) break
      times[i] = times[child]
      peersArray[i] = peersArray[child]
      vias[i] = vias[child]
      hops[i] = hops[child]
      i = child
    }
    times[i] = lastTime
    peersArray[i] = lastPeer
    vias[i] = lastVia
    hops[i] = lastHop
  }

  /**
   * Publishes a message of `bytes` from `origin` at absolute time `nowMs` and fills arrivalMs
   * (relative to publication) for every peer. `upPeers` lists the peers up now (IHAVE targets, and
   * flood-publish contacts unless `publishTargets` names the publisher's connected subscribers).
   */
  flood(
    origin: number,
    nowMs: number,
    bytes: number,
    upPeers: Int32Array,
    upCount: number,
    publishTargets?: ArrayLike<number>,
  ): FloodResult {
    const { peers, random } = this.links
    const arrival = this.arrivalMs
    arrival.fill(Number.POSITIVE_INFINITY, 0, peers.count)
    const result: FloodResult = { peersUp: upCount, reached: 0, duplicates: 0, lost: 0, lazyDeliveries: 0 }
    this.heapSize = 0
    let reachedCount = 0
    let lazyDone = false
    this.heapPush(0, origin, 0, 0)
    // floodPublish: the publisher also sends straight to connected subscribers beyond its mesh
    if (publishTargets) {
      for (let i = 0; i < publishTargets.length; i++) {
        const to = publishTargets[i]
        if (to !== origin && !this.hasLink(origin, to)) this.send(origin, to, 0, bytes, result, 0, 1)
      }
    } else {
      const floodCount = Math.min(this.floodPublishPeers - this.meshDegree[origin], upCount - 1)
      for (let i = 0; i < floodCount; i++) {
        const to = upPeers[random.int(upCount)]
        if (to === origin || this.hasLink(origin, to)) continue
        this.send(origin, to, 0, bytes, result, 0, 1)
      }
    }
    while (true) {
      if (this.heapSize === 0) {
        // the eager push is done: IHAVE/IWANT for the peers it missed, then their eager pushes
        if (lazyDone || result.reached >= upCount) break
        lazyDone = true
        this.lazyRepair(nowMs, bytes, upPeers, upCount, reachedCount, result)
        if (this.heapSize === 0) break
        continue
      }
      this.heapPop()
      const time = this.popTime
      const peer = this.popPeer
      if (arrival[peer] <= time) {
        if (peer !== origin || time > 0) result.duplicates++
        continue
      }
      arrival[peer] = time
      this.hops[peer] = this.popHop
      result.reached++
      if (this.popVia === 1) result.lazyDeliveries++
      const forwardAt = time + (peer === origin ? 0 : GOSSIP_VALIDATE_MS)
      const base = peer * GOSSIP_D_HI
      for (let i = 0; i < this.meshDegree[peer]; i++) {
        const to = this.mesh[base + i]
        // it sent us the message, or already has it: no send (IDONTWANT-like)
        if (arrival[to] <= forwardAt) continue
        this.send(peer, to, forwardAt, bytes, result, 0, this.popHop + 1)
      }
      // lazy gossip: at each of its next GOSSIP_HISTORY_HEARTBEATS heartbeats the peer sends IHAVE
      // to D_LAZY random peers; counted here, drawn below only for the peers the mesh missed
      this.reached[reachedCount++] = peer
      peers.messagesSent[peer] += LAZY_IHAVES_PER_PEER
      peers.bytesSent[peer] += LAZY_IHAVES_PER_PEER * GOSSIP_CONTROL_BYTES
    }
    return result
  }

  /**
   * The peers the eager push missed get the message through IHAVE/IWANT. Each unreached peer
   * receives about reached x D_LAZY x GOSSIP_HISTORY_HEARTBEATS / up IHAVEs; drawing only those
   * (random senders among the reached, at one of their next heartbeats) gives the same first-IHAVE
   * time as drawing every peer's IHAVE targets, at a cost proportional to the peers missed.
   */
  private lazyRepair(
    nowMs: number,
    bytes: number,
    upPeers: Int32Array,
    upCount: number,
    reachedCount: number,
    result: FloodResult,
  ): void {
    const { peers, random } = this.links
    const arrival = this.arrivalMs
    const expected = Math.min(
      LAZY_IHAVES_PER_PEER * 3,
      Math.round((reachedCount * LAZY_IHAVES_PER_PEER) / upCount),
    )
    for (let u = 0; u < upCount; u++) {
      const to = upPeers[u]
      if (arrival[to] !== Number.POSITIVE_INFINITY) continue
      for (let k = 0; k < expected; k++) {
        const from = this.reached[random.int(reachedCount)]
        if (!this.links.reachable(from, to) || random.chance(this.links.lossProbability)) continue
        peers.countReceived(to, GOSSIP_CONTROL_BYTES)
        const phase = peers.heartbeatPhaseMs[from]
        const absolute = nowMs + arrival[from] + GOSSIP_VALIDATE_MS
        const first = Math.floor((absolute - phase) / GOSSIP_HEARTBEAT_MS + 1) * GOSSIP_HEARTBEAT_MS + phase
        const at = first + random.int(GOSSIP_HISTORY_HEARTBEATS) * GOSSIP_HEARTBEAT_MS - nowMs
        // IWANT back, then the message
        const latency = this.links.latencyMs(from, to)
        peers.countSent(to, GOSSIP_CONTROL_BYTES)
        peers.countReceived(from, GOSSIP_CONTROL_BYTES)
        this.send(from, to, at + 2 * latency, bytes, result, 1, this.hops[from] + 1)
      }
    }
  }

  private send(
    from: number,
    to: number,
    at: number,
    bytes: number,
    result: FloodResult,
    via: number,
    hop: number,
  ): void {
    const { peers, random } = this.links
    peers.countSent(from, bytes)
    if (!this.links.reachable(from, to) || random.chance(this.links.lossProbability)) {
      result.lost++
      return
    }
    peers.countReceived(to, bytes)
    this.heapPush(at + this.links.latencyMs(from, to), to, via, Math.min(255, hop))
  }
}
