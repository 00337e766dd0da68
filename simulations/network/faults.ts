// Faults and churn: peers leave (replaced by a newcomer a while later) or crash (and restart 30 s
// to 10 min later, their Raft storage intact) at the churn rate; the flash crowd joins; partitions
// cut the network for a while; the regional outage crashes every peer of one region and restarts
// them later, recording beforehand which live groups had a majority there.
//
// Events handled here: churn, restart, join, partitionStart, partitionEnd, outageStart, outageEnd.
import { EventKind, type EventLoop } from './events.js'
import type { Groups } from './groups.js'
import { REGIONS } from './links.js'
import type { Metrics } from './metrics.js'
import type { Network } from './network.js'
import type { DerivedParameters } from './parameters.js'
import { PeerState } from './peers.js'
import type { Staffing } from './staffing.js'

/** A leaver's replacement joins within this long. */
export const REPLACEMENT_JOIN_MS_MAX = 120_000

export class Faults {
  constructor(
    private readonly parameters: DerivedParameters,
    private readonly loop: EventLoop,
    private readonly network: Network,
    private readonly metrics: Metrics,
    private readonly staffing: Staffing,
    private readonly groups: Groups,
  ) {
    loop.handle({
      [EventKind.churn]: () => this.churn(),
      [EventKind.restart]: (peer) => this.restart(peer),
      [EventKind.join]: () => this.join(),
      [EventKind.partitionStart]: (partition) => this.partitionStart(partition),
      [EventKind.partitionEnd]: () => {
        network.partition = undefined
      },
      [EventKind.outageStart]: () => this.outageStart(),
      [EventKind.outageEnd]: () => this.outageEnd(),
    })
  }

  private get now(): number {
    return this.loop.now
  }

  /** Schedules the run's faults: the first churn event, partitions, the outage, the flash crowd. */
  schedule(): void {
    const p = this.parameters
    const loop = this.loop
    if (p.churnPerHour > 0) loop.at(this.nextChurnDelayMs(), EventKind.churn)
    p.partitions.forEach((spec, index) => {
      loop.at(spec.startMs, EventKind.partitionStart, index)
      loop.at(spec.startMs + spec.durationMs, EventKind.partitionEnd, index)
    })
    if (p.regionalOutage) {
      loop.at(p.regionalOutage.atMs, EventKind.outageStart)
      loop.at(p.regionalOutage.atMs + p.regionalOutage.durationMs, EventKind.outageEnd)
    }
    const crowd = p.flashCrowd
    if (crowd) {
      for (let i = 0; i < crowd.peers; i++)
        loop.at(crowd.atMs + (i * crowd.overMs) / crowd.peers, EventKind.join)
    }
  }

  private nextChurnDelayMs(): number {
    const ratePerMs = (this.parameters.churnPerHour * Math.max(1, this.network.upCount)) / 3_600_000
    return -Math.log(Math.max(1e-12, this.network.random.float())) / ratePerMs
  }

  private churn(): void {
    const p = this.parameters
    const network = this.network
    const random = network.random
    if (network.upCount > 1) {
      const peer = network.randomUpPeer()
      network.peers.churnEvents[peer]++
      this.staffing.noteChurn(peer)
      if (random.chance(p.crashShareOfChurn)) {
        this.crash(peer)
        const delay = p.restartDelayMsMin + random.float() * (p.restartDelayMsMax - p.restartDelayMsMin)
        this.loop.at(this.now + delay, EventKind.restart, peer)
      } else {
        this.metrics.counters.leaves++
        network.markDown(peer, PeerState.left)
        network.gossip.remove(peer)
        this.groups.stopMember(peer)
        // a newcomer replaces the leaver after a while (the network's size stays about steady)
        this.loop.at(this.now + random.float() * REPLACEMENT_JOIN_MS_MAX, EventKind.join)
      }
    }
    this.loop.at(this.now + this.nextChurnDelayMs(), EventKind.churn)
  }

  private crash(peer: number): void {
    this.metrics.counters.crashes++
    this.network.markDown(peer, PeerState.crashed)
    this.groups.stopMember(peer)
  }

  private restart(peer: number): void {
    const network = this.network
    if (network.peers.state[peer] !== PeerState.crashed) return
    this.metrics.counters.restarts++
    network.markUp(peer)
    network.gossip.graft(peer, network.upList, network.upCount)
    this.groups.restartMember(peer)
  }

  private join(): void {
    const network = this.network
    const peer = network.createPeer()
    this.metrics.counters.joins++
    network.markUp(peer)
    network.setPartitionSide(peer, network.partition)
    network.dht.buildTable(peer, (other) => network.peers.state[other] !== PeerState.notJoined)
    network.gossip.graft(peer, network.upList, network.upCount)
    // bootstrap: a lookup of a random live peer (the routing-table refresh a joiner runs); in a
    // flash-crowd run every joiner's lookup from the crowd's start on counts toward its figures
    network.lookup(peer, network.randomUpPeer(), this.parameters.flashCrowd !== undefined)
  }

  private partitionStart(index: number): void {
    const network = this.network
    const spec = this.parameters.partitions[index]
    for (let peer = 0; peer < network.peers.count; peer++) network.setPartitionSide(peer, spec)
    network.partition = spec
  }

  /** The outage region, as an index into REGIONS. */
  private outageRegion(): number {
    return REGIONS.indexOf(this.parameters.regionalOutage!.region as (typeof REGIONS)[number])
  }

  private outageStart(): void {
    const region = this.outageRegion()
    const peers = this.network.peers
    // record which live groups have a majority in the region, with their pace before the outage
    for (const group of this.groups.all) {
      if (group.done || group.failed) continue
      const inRegion = group.members.filter((m) => peers.region[m] === region).length
      this.metrics.outageGroups.push({
        group: group.id,
        majorityInRegion: inRegion * 2 > group.members.length,
        stepsDuringOutage: -group.committedStep,
        baseline: group.committedStep - group.firstStep + 1,
        finished: false,
      })
    }
    for (let peer = 0; peer < peers.count; peer++) {
      if (peers.region[peer] === region && peers.state[peer] === PeerState.up) {
        peers.churnEvents[peer]++
        this.staffing.noteChurn(peer)
        this.crash(peer)
      }
    }
  }

  private outageEnd(): void {
    const region = this.outageRegion()
    const peers = this.network.peers
    for (const record of this.metrics.outageGroups) {
      const group = this.groups.all[record.group]
      record.stepsDuringOutage += group.committedStep
      record.finished = group.committedStep >= group.lastStep
    }
    for (let peer = 0; peer < peers.count; peer++) {
      if (peers.region[peer] === region && peers.state[peer] === PeerState.crashed) this.restart(peer)
    }
  }
}
