// The network simulator: a discrete-event engine over thousands of virtual peers. One seed decides
// everything; nothing here reads a clock or Math.random. It drives the real protocol code: every
// training group member is a real Raft node running the real training-member core, with the Raft
// simulator's safety checkers beside its group; staffing runs the submitter's real task lifecycle;
// inference is voted on by the real quorum code. Gossipsub and Kademlia are models (gossip.ts,
// dht.ts).
//
// The parts, each handling its own typed events (events.ts):
//   network.ts   peers, links, partitions, the gossip and DHT models, lookups
//   staffing.ts  tasks: announcement -> claims -> the real lifecycle staffs groups -> completion
//   groups.ts    each group's Raft members, their Ready loop feeding the training cores
//   members.ts   each member's training core, its effects over the simulated clock and links
//   faults.ts    churn (crash, restart, leave, join), partitions, the regional outage
//   inference.ts inference tasks voted on by the real quorum code
//   metrics.ts   counters, histograms, samples; report.ts turns them into report.json
// This file puts them together, runs the event loop and collects the result.
import { SeededRandom } from '../../protocols/raft/random.js'
import { SafetyCheckers, SafetyViolation } from '../raft/checkers.js'
import { EventKind, EventLoop } from './events.js'
import { Faults } from './faults.js'
import type { Groups } from './groups.js'
import type { Histogram } from './histogram.js'
import { InferenceWorkload } from './inference.js'
import { REGIONS } from './links.js'
import {
  type Counters,
  Metrics,
  type OutageGroupRecord,
  round3,
  SAMPLE_INTERVAL_MS,
  type Sample,
  type TaskRecord,
} from './metrics.js'
import { Network } from './network.js'
import { type DerivedParameters, deriveParameters, type NetworkSimulationOptions } from './parameters.js'
import type { PeerTable } from './peers.js'
import { Staffing } from './staffing.js'

/** Every so often the gossip mesh is repaired (gossipsub repairs on every heartbeat). */
export const MESH_MAINTENANCE_MS = 10_000
/** Peer rows kept for peers that join during the run, beyond the initial ones. */
export const JOIN_ROWS_MAX = 1_000_000
/** New tasks at the start of a run are announced over this long. */
export const FIRST_TASKS_SPREAD_MS = 30_000

export interface SimulationHooks {
  /** Called with the share of simulated time done, at most every 1%. */
  onProgress?: (share: number) => void
  /** The safety checkers of each new group (a test passes one that throws, to see the failure path). */
  createCheckers?: () => SafetyCheckers
}

export class NetworkSimulation {
  readonly parameters: DerivedParameters
  readonly loop = new EventLoop()
  readonly random: SeededRandom
  readonly metrics: Metrics
  readonly network: Network
  readonly staffing: Staffing
  readonly groups: Groups
  readonly faults: Faults
  readonly inference: InferenceWorkload
  private readonly hooks: SimulationHooks

  constructor(options: NetworkSimulationOptions, hooks: SimulationHooks = {}) {
    const p = deriveParameters(options)
    this.parameters = p
    this.hooks = hooks
    const loop = this.loop
    this.random = new SeededRandom(options.seed)
    const joinRows = Math.min(
      JOIN_ROWS_MAX,
      Math.ceil(p.peers * p.churnPerHour * (p.durationMs / 3_600_000) * 2) + (p.flashCrowd?.peers ?? 0) + 64,
    )
    this.metrics = new Metrics(p.groups)
    const network = new Network(p, this.random, this.metrics, () => loop.now, p.peers + joinRows)
    this.network = network
    this.staffing = new Staffing(
      p,
      loop,
      network,
      this.metrics,
      hooks.createCheckers ?? (() => new SafetyCheckers()),
    )
    this.groups = this.staffing.groups
    this.faults = new Faults(p, loop, network, this.metrics, this.staffing, this.groups)
    const inferenceRandom = this.random.fork()
    this.inference = new InferenceWorkload({
      peers: network.peers,
      dht: network.dht,
      random: inferenceRandom,
      parameters: p,
      nowMs: () => loop.now,
      reachable: (from, to) => network.reachable(from, to),
      latencyMs: (from, to) => network.latencyMs(from, to, inferenceRandom),
      randomUpPeer: () => (network.upCount === 0 ? -1 : network.randomUpPeer()),
      scheduleAnswer: (atMs, task, shard, peer) =>
        loop.at(atMs, EventKind.inferenceAnswer, task, shard, peer),
    })
    loop.handle({
      [EventKind.sample]: () => this.sample(),
      [EventKind.meshMaintenance]: () => {
        network.gossip.maintain(network.upList, network.upCount)
        loop.at(loop.now + MESH_MAINTENANCE_MS, EventKind.meshMaintenance)
      },
      [EventKind.inferenceStart]: () => {
        this.inference.start()
        loop.at(this.nextInferenceAtMs(), EventKind.inferenceStart)
      },
      [EventKind.inferenceAnswer]: (task, shard, peer) => this.inference.answer(task, shard, peer),
    })
  }

  private setup(): void {
    const p = this.parameters
    const network = this.network
    const loop = this.loop
    for (let i = 0; i < p.peers; i++) network.markUp(network.createPeer())
    for (let peer = 0; peer < network.peers.count; peer++) network.dht.buildTable(peer)
    for (let i = 0; i < network.upCount; i++)
      network.gossip.graft(network.upList[i], network.upList, network.upCount)
    loop.at(SAMPLE_INTERVAL_MS, EventKind.sample)
    loop.at(MESH_MAINTENANCE_MS, EventKind.meshMaintenance)
    this.faults.schedule()
    // fill the network with work
    this.staffing.startTasks(FIRST_TASKS_SPREAD_MS)
    if (p.inferencePerHour > 0) loop.at(this.nextInferenceAtMs(), EventKind.inferenceStart)
  }

  private nextInferenceAtMs(): number {
    const ratePerMs = this.parameters.inferencePerHour / 3_600_000
    return this.loop.now - Math.log(Math.max(1e-12, this.random.float())) / ratePerMs
  }

  /** The minute's sample, then the check for groups stalled for good. */
  private sample(): void {
    const loop = this.loop
    this.metrics.sample(loop.now, this.network.upCount, this.groups.activity())
    this.groups.dissolveStalled()
    loop.at(loop.now + SAMPLE_INTERVAL_MS, EventKind.sample)
  }

  run(): SimulationReportData {
    const end = this.parameters.durationMs
    this.setup()
    const loop = this.loop
    const onProgress = this.hooks.onProgress
    let lastProgress = -1
    try {
      loop.runUntil(
        end,
        onProgress &&
          (() => {
            const share = Math.floor((loop.now / end) * 100)
            if (share > lastProgress) {
              lastProgress = share
              onProgress(share / 100)
            }
          }),
      )
      loop.now = end
      return this.finish(undefined)
    } catch (error) {
      if (!(error instanceof SafetyViolation)) throw error
      return this.finish(error)
    }
  }

  private finish(violation: SafetyViolation | undefined): SimulationReportData {
    const metrics = this.metrics
    const peers = this.network.peers
    let violationReport: SimulationReportData['violation']
    if (violation) {
      const group = this.groups.violationGroup
      violationReport = {
        checker: violation.checker,
        message: violation.message,
        atS: round3(this.loop.now / 1000),
        trace: group ? [...group.trace] : [],
      }
    }
    this.staffing.recordUnfinished()
    metrics.taskRecords.sort((a, b) => a.id - b.id)
    return {
      parameters: this.parameters,
      events: this.loop.events,
      counters: metrics.counters,
      propagation: metrics.propagation,
      lookupHops: metrics.lookupHops,
      flashLookupHops: metrics.flashLookupHops,
      lookupLatency: metrics.lookupLatency,
      samples: metrics.samples,
      tasks: metrics.taskRecords,
      groups: this.groups.all.map((g) => ({
        id: g.id,
        slot: g.slot,
        task: g.task,
        regions: g.members.map((m) => REGIONS[peers.region[m]]),
        firstStep: g.firstStep,
        committedStep: g.committedStep,
        lastStep: g.lastStep,
        leaderChanges: g.leaderChanges,
        state: g.done ? 'completed' : g.failed ? 'reassigned' : 'running',
        createdAtS: round3(g.createdAtMs / 1000),
      })),
      outageGroups: metrics.outageGroups,
      inference: {
        counters: this.inference.counters,
        completionMs: this.inference.completionMs,
        scores: this.inference.scoreMeans(),
        openStartsS: this.inference.openTaskStartsMs().map((ms) => round3(ms / 1000)),
      },
      peers,
      violation: violationReport,
    }
  }
}

export interface SimulationReportData {
  parameters: DerivedParameters
  events: number
  counters: Counters
  propagation: Histogram
  lookupHops: Histogram
  flashLookupHops: Histogram
  lookupLatency: Histogram
  samples: Sample[]
  tasks: TaskRecord[]
  groups: {
    id: number
    slot: number
    task: number
    regions: string[]
    firstStep: number
    committedStep: number
    lastStep: number
    leaderChanges: number
    state: string
    createdAtS: number
  }[]
  outageGroups: OutageGroupRecord[]
  inference: {
    counters: InferenceWorkload['counters']
    completionMs: Histogram
    /** Mean score submitters hold of honest and of lying peers. */
    scores: { honest: number; lying: number }
    /** When each task still under way at the end began (not in report.json). */
    openStartsS: number[]
  }
  peers: PeerTable
  violation?: { checker: string; message: string; atS: number; trace: string[] }
}

/** Runs one simulation to its end (the unit the CLI, the bench and the tests call). */
export function simulateNetwork(
  options: NetworkSimulationOptions,
  hooks?: SimulationHooks,
): SimulationReportData {
  return new NetworkSimulation(options, hooks).run()
}
