// The simulated network every other part of the simulator stands on: the peer table and which
// peers are up (for uniform random choice), the links between peers (latency by region, loss, the
// active partition), the gossipsub and Kademlia models over them, and DHT lookups with their
// metrics. It decides nothing on its own about tasks or groups.
import type { SeededRandom } from '../../protocols/raft/random.js'
import { DhtModel } from './dht.js'
import { GOSSIP_HEARTBEAT_MS, GossipModel } from './gossip.js'
import { type PartitionSpec, STREAM_RETRANSMIT_MS, sampleLatencyMs } from './links.js'
import type { Metrics } from './metrics.js'
import type { DerivedParameters } from './parameters.js'
import { BACKEND_SHARES, CAPABILITY_GFLOPS_BY_BACKEND, PeerState, PeerTable } from './peers.js'

export class Network {
  readonly peers: PeerTable
  readonly gossip: GossipModel
  readonly dht: DhtModel
  /** Peers up, for uniform random choice: upList[upPosition[peer]] = peer. */
  readonly upList: Int32Array
  private readonly upPosition: Int32Array
  upCount = 0
  /** The partition in force (peers on different sides cannot reach each other), if any. */
  partition: PartitionSpec | undefined

  constructor(
    private readonly parameters: DerivedParameters,
    /** The run's main random stream (shared, in event order, with the modules that use the network). */
    readonly random: SeededRandom,
    private readonly metrics: Metrics,
    private readonly nowMs: () => number,
    capacity: number,
  ) {
    this.peers = new PeerTable(capacity)
    this.upList = new Int32Array(capacity)
    this.upPosition = new Int32Array(capacity).fill(-1)
    const linkRandom = random.fork()
    const links = {
      peers: this.peers,
      random: linkRandom,
      lossProbability: parameters.lossProbability,
      reachable: (from: number, to: number) => this.reachable(from, to),
      latencyMs: (from: number, to: number) => this.latencyMs(from, to, linkRandom),
    }
    this.gossip = new GossipModel(links, capacity)
    this.dht = new DhtModel({ ...links, random: random.fork() }, capacity)
  }

  /** One-way latency of a message from `from` to `to`, drawn from `random` (the main stream by default). */
  latencyMs(from: number, to: number, random = this.random): number {
    return sampleLatencyMs(
      random,
      this.peers.region[from],
      this.peers.region[to],
      this.parameters.latencyScale,
    )
  }

  reachable(from: number, to: number): boolean {
    const peers = this.peers
    if (peers.state[from] !== PeerState.up || peers.state[to] !== PeerState.up) return false
    return this.partition === undefined || peers.partitionSide[from] === peers.partitionSide[to]
  }

  /** Latency of a message over a stream (reliable): the link's latency, plus a retransmission per loss. */
  streamLatencyMs(from: number, to: number): number {
    let delay = this.latencyMs(from, to)
    while (this.random.chance(this.parameters.lossProbability)) delay += STREAM_RETRANSMIT_MS
    return delay
  }

  /** Whether a message from `from` to `to` is lost (unreachable, or the link's loss draw). */
  lost(from: number, to: number): boolean {
    return !this.reachable(from, to) || this.random.chance(this.parameters.lossProbability)
  }

  private pickRegion(): number {
    const shares = this.parameters.regionShares
    let u = this.random.float()
    for (let r = 0; r < shares.length; r++) {
      u -= shares[r]
      if (u < 0) return r
    }
    return shares.length - 1
  }

  /** A new peer row with its region, backend, speed, honesty, bandwidth and DHT key drawn from the seed. */
  createPeer(): number {
    const p = this.parameters
    const peers = this.peers
    const peer = peers.add()
    const random = this.random
    peers.region[peer] = this.pickRegion()
    let u = random.float()
    let backend = 0
    while (backend < BACKEND_SHARES.length - 1 && u >= BACKEND_SHARES[backend]) u -= BACKEND_SHARES[backend++]
    peers.backend[peer] = backend
    peers.slowFactor[peer] = random.chance(p.slowPeerShare) ? 2 + 3 * random.float() : 1
    // the capability probe's figure, with +-10% measurement noise; a slow machine measures slower
    peers.gflops[peer] =
      (CAPABILITY_GFLOPS_BY_BACKEND[backend] * (0.9 + 0.2 * random.float())) / peers.slowFactor[peer]
    peers.byzantine[peer] = random.chance(p.byzantineShare) ? 1 : 0
    const mbps = p.uploadMbpsMin * (p.uploadMbpsMax / p.uploadMbpsMin) ** random.float()
    peers.uploadBytesPerMs[peer] = (mbps * 1e6) / 8 / 1000
    peers.heartbeatPhaseMs[peer] = random.float() * GOSSIP_HEARTBEAT_MS
    peers.joinedAtMs[peer] = this.nowMs()
    this.dht.keyHi[peer] = random.next32()
    this.dht.keyLo[peer] = random.next32()
    this.dht.index(peer)
    return peer
  }

  markUp(peer: number): void {
    this.peers.state[peer] = PeerState.up
    this.upPosition[peer] = this.upCount
    this.upList[this.upCount++] = peer
  }

  markDown(peer: number, state: number): void {
    this.peers.state[peer] = state
    const position = this.upPosition[peer]
    if (position < 0) return
    const last = this.upList[--this.upCount]
    this.upList[position] = last
    this.upPosition[last] = position
    this.upPosition[peer] = -1
  }

  /** Puts `peer` on its side of `spec` (a region's peers on one side, or a seeded random share). */
  setPartitionSide(peer: number, spec: PartitionSpec | undefined): void {
    if (!spec) return
    this.peers.partitionSide[peer] =
      spec.kind === 'region'
        ? this.peers.region[peer] === spec.region
          ? 1
          : 0
        : this.random.chance(spec.share)
          ? 1
          : 0
  }

  randomUpPeer(): number {
    return this.upList[this.random.int(this.upCount)]
  }

  /** A DHT lookup of `target`'s key from `origin`, counted in the metrics; returns its latency in ms. */
  lookup(origin: number, target: number, flashCrowd: boolean): number {
    const result = this.dht.lookup(origin, this.dht.keyHi[target], this.dht.keyLo[target], target)
    const metrics = this.metrics
    metrics.counters.lookups++
    if (result.found) {
      metrics.lookupHops.add(result.hops)
      const flash = this.parameters.flashCrowd
      if (flashCrowd && flash && this.nowMs() >= flash.atMs) metrics.flashLookupHops.add(result.hops)
    } else metrics.counters.lookupsFailed++
    metrics.lookupLatency.add(result.latencyMs)
    return result.latencyMs
  }
}
