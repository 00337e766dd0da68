// The network simulator: a discrete-event engine over thousands of virtual peers that drives the
// real Raft core (protocols/raft RaftNode + MemoryStorage) for every training group, with the Raft
// simulator's safety checkers beside every group, and models of gossipsub (gossip.ts) and
// Kademlia (dht.ts) for announcements and lookups. One seed decides everything; nothing here reads
// a clock or Math.random. A task's life: announcement over gossip -> claims over direct streams ->
// the submitter's real lifecycle state machine (protocols/tasks stepTask -> assignGroups) staffs it
// -> each group, a Raft cluster, trains step by step (members compute gradients, modelled by
// measured kernel time; the leader screens and waits for them with the real rules of
// protocols/training/aggregate.ts and proposes the step) -> the task completes when all its groups
// reach their step count. Groups that lose a majority for good are re-announced and continue from
// their last committed step. Beside training, inference tasks are voted on by the real quorum code
// (inference.ts over protocols/inference/quorum.ts). lifecycle.ts holds the adapters.
import { RaftNode } from '../../protocols/raft/node.js'
import { SeededRandom } from '../../protocols/raft/random.js'
import { MemoryStorage } from '../../protocols/raft/storage.js'
import {
  assert,
  type Entry,
  type Message,
  ProposalDroppedError,
  type Snapshot,
} from '../../protocols/raft/types.js'
import { chainDigest, entryDigest, SafetyCheckers, SafetyViolation } from '../raft/checkers.js'
import { DhtModel } from './dht.js'
import { GOSSIP_HEARTBEAT_MS, GossipModel } from './gossip.js'
import { Histogram } from './histogram.js'
import { InferenceWorkload } from './inference.js'
import { CLAIMANT_MAX_BUFFER_BYTES, PROBE_LOSS, StaffingRound, StepCollector } from './lifecycle.js'
import { REGIONS, sampleLatencyMs } from './links.js'
import { type DerivedParameters, deriveParameters, type NetworkSimulationOptions } from './parameters.js'
import {
  BACKEND_SHARES,
  CAPABILITY_GFLOPS_BY_BACKEND,
  CLAIM_BACKEND_BY_CLASS,
  PeerState,
  PeerTable,
  STEP_COMPUTE_MS_BY_BACKEND,
} from './peers.js'
import { EventQueue } from './queue.js'

const Kind = {
  groupTick: 0,
  raftMessage: 1,
  gradientComputed: 2,
  gradientArrives: 3,
  churn: 4,
  restart: 5,
  join: 6,
  announce: 7,
  claimArrives: 8,
  assign: 9,
  assignmentArrives: 10,
  partitionStart: 11,
  partitionEnd: 12,
  outageStart: 13,
  outageEnd: 14,
  sample: 15,
  meshMaintenance: 16,
  stepGrace: 17,
  inferenceStart: 18,
  inferenceAnswer: 19,
} as const

/** Bytes of one gradient: the MNIST MLP's 101,770 float32 parameters. */
export const GRADIENT_BYTES = 101_770 * 4
/** Bytes of a task announcement (signed gossip message with the task CID and requirements). */
export const ANNOUNCEMENT_BYTES = 400
export const CLAIM_BYTES = 200
export const ASSIGNMENT_BYTES = 300
/** Per-message framing overhead of a Raft message; entries carry an update CID, not the update. */
export const RAFT_MESSAGE_BYTES = 120
/** The staffing deadline of one announcement: the task's record fails if too few claims came by then. */
export const CLAIM_WINDOW_MS = 2000
/** Claims asked for per seat (the first arrivals claim; the rest of the network stays quiet). */
export const CLAIM_SURPLUS = 2
/** Most claims one announcement may collect. */
export const TASK_CLAIMS_MAX = 2000
/** Re-announcements of a task that found too few claimers before it is abandoned. */
export const ANNOUNCE_RETRIES_MAX = 10
export const ANNOUNCE_RETRY_MS = 10_000
/** A group without a commit this long, with a majority of members gone, is re-announced. */
export const GROUP_STALL_MS = 180_000
/** Apply this many entries between snapshots (then compact the log). */
export const SNAPSHOT_EVERY_ENTRIES = 200
/** Events of each group's trace kept for a safety-violation report. */
export const TRACE_EVENTS_MAX = 120
/** Ready rounds one processReady may take before it is a bug. */
export const READY_ROUNDS_MAX = 100
/** Every so often the gossip mesh is repaired (gossipsub repairs on every heartbeat). */
export const MESH_MAINTENANCE_MS = 10_000
export const SAMPLE_INTERVAL_MS = 60_000
/** Group slots whose step curves are kept for the plot. */
export const PLOT_SLOTS_MAX = 12
/** Most tasks (and so groups, a few per task) one run may create; their summaries stay for the report. */
export const TASKS_MAX = 1_000_000
/** Peer rows kept for peers that join during the run, beyond the initial ones. */
export const JOIN_ROWS_MAX = 1_000_000

export interface SimulationHooks {
  /** Called with the share of simulated time done, at most every 1%. */
  onProgress?: (share: number) => void
  /** The safety checkers of each new group (a test passes one that throws, to see the failure path). */
  createCheckers?: () => SafetyCheckers
}

interface GroupState {
  id: number
  slot: number
  task: number
  members: number[]
  nodes: (RaftNode | undefined)[]
  storages: MemoryStorage[]
  started: boolean[]
  appliedIndex: number[]
  checkedCommit: number[]
  appliedStep: number[]
  digest: string[]
  computingStep: number[]
  computedStep: number[]
  computedNorm: number[]
  sentTo: number[]
  wasLeader: boolean[]
  checkers: SafetyCheckers
  trace: string[]
  firstStep: number
  lastStep: number
  committedStep: number
  lastProgressAtMs: number
  createdAtMs: number
  leaderChanges: number
  /** The leader's collection of gradients for the step it is on (the real screening and quorum rules). */
  collector: StepCollector
  /** When the straggler timer of the collected step was set to fire (-1: not set). */
  graceAtMs: number
  proposedStep: number
  proposedTerm: number
  done: boolean
  failed: boolean
  stalledMs: number
}

interface TaskState {
  id: number
  submitter: number
  groups: number
  steps: number
  announcedAtMs: number
  retries: number
  /** Announcements of this task so far (a claim or deadline of an earlier one is stale). */
  round: number
  /** The submitter's lifecycle record for the current announcement (undefined once staffed or given up). */
  staffing: StaffingRound | undefined
  /** Groups still to form: [slot, firstStep]. */
  pending: [number, number][]
  activeGroups: number[]
  doneGroups: number
  completedAtMs: number
  reassignments: number
  churnSeen: number
  failed: boolean
}

export interface TaskRecord {
  id: number
  groups: number
  steps: number
  announcedAtS: number
  completedAtS: number | null
  completionS: number | null
  reassignments: number
  churnEventsInGroups: number
}

export class NetworkSimulation {
  readonly parameters: DerivedParameters
  readonly queue = new EventQueue()
  readonly peers: PeerTable
  readonly random: SeededRandom
  readonly gossip: GossipModel
  readonly dht: DhtModel
  readonly inference: InferenceWorkload
  now = 0
  events = 0
  /** Peers up, for uniform random choice: upList[upPosition[peer]] = peer. */
  private readonly upList: Int32Array
  private readonly upPosition: Int32Array
  private upCount = 0
  private readonly claimedBy: Int32Array
  private partitionActive = false
  private readonly groups: GroupState[] = []
  private readonly tasks: TaskState[] = []
  private readonly freeSlots: number[] = []
  private readonly slotSteps: Float64Array
  private readonly encoder = new TextEncoder()
  private readonly decoder = new TextDecoder()
  private readonly hooks: SimulationHooks
  private lastProgress = -1
  private nextTaskAtMs = 0

  // metrics
  readonly propagation = new Histogram(5, 4000)
  readonly lookupHops = new Histogram(1, 32)
  readonly lookupLatency = new Histogram(10, 2000)
  readonly flashLookupHops = new Histogram(1, 32)
  readonly counters = {
    announcements: 0,
    announcementsRetried: 0,
    gossipReachedShareMin: 1,
    gossipReachedSum: 0,
    gossipUpSum: 0,
    gossipDuplicates: 0,
    gossipLost: 0,
    gossipLazyDeliveries: 0,
    claimsSent: 0,
    claimsLost: 0,
    groupsFormed: 0,
    groupsCompleted: 0,
    groupsReassigned: 0,
    tasksCompleted: 0,
    tasksAbandoned: 0,
    stepsCommitted: 0,
    duplicateStepEntries: 0,
    leaderElections: 0,
    raftMessagesSent: 0,
    raftMessagesDropped: 0,
    raftMessagesToStoppedMembers: 0,
    gradientsSent: 0,
    gradientsRejected: 0,
    byzantineGradientsAccepted: 0,
    /** Lying gradients accepted by a group whose members are mostly honest: must stay 0. */
    byzantineGradientsAcceptedWithHonestMajority: 0,
    byzantineGradientsRejected: 0,
    proposalsDropped: 0,
    lookups: 0,
    lookupsFailed: 0,
    joins: 0,
    leaves: 0,
    crashes: 0,
    restarts: 0,
    snapshotsInstalled: 0,
    safetyChecks: 0,
  }
  readonly samples: {
    atS: number
    peersUp: number
    activeGroups: number
    stepsCommitted: number
    leaderChanges: number
    stalledGroups: number
    slotSteps: number[]
  }[] = []
  private minuteSteps = 0
  private minuteLeaderChanges = 0
  readonly taskRecords: TaskRecord[] = []
  readonly outageGroups: {
    group: number
    majorityInRegion: boolean
    stepsDuringOutage: number
    baseline: number
    finished: boolean
  }[] = []

  constructor(options: NetworkSimulationOptions, hooks: SimulationHooks = {}) {
    this.parameters = deriveParameters(options)
    this.hooks = hooks
    const p = this.parameters
    this.random = new SeededRandom(options.seed)
    const joinRows = Math.min(
      JOIN_ROWS_MAX,
      Math.ceil(p.peers * p.churnPerHour * (p.durationMs / 3_600_000) * 2) + (p.flashCrowd?.peers ?? 0) + 64,
    )
    const capacity = p.peers + joinRows
    this.peers = new PeerTable(capacity)
    this.upList = new Int32Array(capacity)
    this.upPosition = new Int32Array(capacity).fill(-1)
    this.claimedBy = new Int32Array(capacity).fill(-1)
    this.slotSteps = new Float64Array(p.groups)
    const linkRandom = this.random.fork()
    const links = {
      peers: this.peers,
      random: linkRandom,
      lossProbability: p.lossProbability,
      reachable: (from: number, to: number) => this.reachable(from, to),
      latencyMs: (from: number, to: number) => this.latencyMs(from, to, linkRandom),
    }
    this.gossip = new GossipModel(links, capacity)
    this.dht = new DhtModel({ ...links, random: this.random.fork() }, capacity)
    for (let slot = p.groups - 1; slot >= 0; slot--) this.freeSlots.push(slot)
    const inferenceRandom = this.random.fork()
    this.inference = new InferenceWorkload({
      peers: this.peers,
      dht: this.dht,
      random: inferenceRandom,
      parameters: p,
      nowMs: () => this.now,
      reachable: (from, to) => this.reachable(from, to),
      latencyMs: (from, to) => this.latencyMs(from, to, inferenceRandom),
      randomUpPeer: () => (this.upCount === 0 ? -1 : this.randomUpPeer()),
      scheduleAnswer: (atMs, task, shard, peer) =>
        this.queue.push(atMs, Kind.inferenceAnswer, task, shard, peer),
    })
  }

  // ---------------------------------------------------------------- peers and links

  private latencyMs(from: number, to: number, random: SeededRandom): number {
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
    return !this.partitionActive || peers.partitionSide[from] === peers.partitionSide[to]
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

  private createPeer(): number {
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
    peers.joinedAtMs[peer] = this.now
    this.dht.keyHi[peer] = random.next32()
    this.dht.keyLo[peer] = random.next32()
    this.dht.index(peer)
    return peer
  }

  private markUp(peer: number): void {
    this.peers.state[peer] = PeerState.up
    this.upPosition[peer] = this.upCount
    this.upList[this.upCount++] = peer
  }

  private markDown(peer: number, state: number): void {
    this.peers.state[peer] = state
    const position = this.upPosition[peer]
    if (position < 0) return
    const last = this.upList[--this.upCount]
    this.upList[position] = last
    this.upPosition[last] = position
    this.upPosition[peer] = -1
  }

  private setPartitionSide(peer: number, spec: DerivedParameters['partitions'][number] | undefined): void {
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

  private randomUpPeer(): number {
    return this.upList[this.random.int(this.upCount)]
  }

  // ---------------------------------------------------------------- setup

  private setup(): void {
    const p = this.parameters
    for (let i = 0; i < p.peers; i++) this.markUp(this.createPeer())
    for (let peer = 0; peer < this.peers.count; peer++) this.dht.buildTable(peer)
    for (let i = 0; i < this.upCount; i++) this.gossip.graft(this.upList[i], this.upList, this.upCount)
    const q = this.queue
    q.push(SAMPLE_INTERVAL_MS, Kind.sample)
    q.push(MESH_MAINTENANCE_MS, Kind.meshMaintenance)
    if (p.churnPerHour > 0) q.push(this.nextChurnDelayMs(), Kind.churn)
    p.partitions.forEach((spec, index) => {
      q.push(spec.startMs, Kind.partitionStart, index)
      q.push(spec.startMs + spec.durationMs, Kind.partitionEnd, index)
    })
    if (p.regionalOutage) {
      q.push(p.regionalOutage.atMs, Kind.outageStart)
      q.push(p.regionalOutage.atMs + p.regionalOutage.durationMs, Kind.outageEnd)
    }
    if (p.flashCrowd) {
      for (let i = 0; i < p.flashCrowd.peers; i++)
        q.push(p.flashCrowd.atMs + (i * p.flashCrowd.overMs) / p.flashCrowd.peers, Kind.join, 1)
    }
    // fill the network with work, staggered over the first 30 s
    this.startTasks(30_000)
    if (p.inferencePerHour > 0) q.push(this.nextInferenceAtMs(), Kind.inferenceStart)
  }

  private nextInferenceAtMs(): number {
    const ratePerMs = this.parameters.inferencePerHour / 3_600_000
    return this.now - Math.log(Math.max(1e-12, this.random.float())) / ratePerMs
  }

  private nextChurnDelayMs(): number {
    const p = this.parameters
    const ratePerMs = (p.churnPerHour * Math.max(1, this.upCount)) / 3_600_000
    return -Math.log(Math.max(1e-12, this.random.float())) / ratePerMs
  }

  /** Creates tasks while group slots are free. */
  private startTasks(spreadMs: number): void {
    const p = this.parameters
    while (this.freeSlots.length >= p.groupsPerTask && this.upCount > p.groupsPerTask * p.groupSize * 2) {
      const id = this.tasks.length
      assert(id < TASKS_MAX, `more than ${TASKS_MAX} tasks in one run`)
      const task: TaskState = {
        id,
        submitter: this.randomUpPeer(),
        groups: p.groupsPerTask,
        steps: p.stepsPerTask,
        announcedAtMs: -1,
        retries: 0,
        round: 0,
        staffing: undefined,
        pending: [],
        activeGroups: [],
        doneGroups: 0,
        completedAtMs: -1,
        reassignments: 0,
        churnSeen: 0,
        failed: false,
      }
      for (let g = 0; g < p.groupsPerTask; g++) task.pending.push([this.freeSlots.pop()!, 1])
      this.tasks.push(task)
      const at = Math.max(this.now, this.nextTaskAtMs) + (spreadMs > 0 ? this.random.float() * spreadMs : 0)
      this.nextTaskAtMs = this.now
      this.queue.push(at, Kind.announce, id)
    }
  }

  // ---------------------------------------------------------------- the loop

  run(): SimulationReportData {
    const p = this.parameters
    this.setup()
    const q = this.queue
    const end = p.durationMs
    try {
      while (q.size > 0 && q.peekTime() <= end) {
        q.pop()
        this.now = q.time
        this.events++
        this.dispatch(q.kind, q.argA, q.argB, q.payload)
        if (this.hooks.onProgress) {
          const share = Math.floor((this.now / end) * 100)
          if (share > this.lastProgress) {
            this.lastProgress = share
            this.hooks.onProgress(share / 100)
          }
        }
      }
      this.now = end
      return this.finish(undefined)
    } catch (error) {
      if (!(error instanceof SafetyViolation)) throw error
      return this.finish(error)
    }
  }

  /** The group being processed: the one whose checker threw, when one does. */
  private violationGroup: GroupState | undefined

  private dispatch(kind: number, a: number, b: number, payload: unknown): void {
    switch (kind) {
      case Kind.groupTick:
        this.groupTick(a)
        return
      case Kind.raftMessage:
        this.deliverRaft(a, b, payload as Message)
        return
      case Kind.gradientComputed:
        this.gradientComputed(a, b, payload as number)
        return
      case Kind.gradientArrives: {
        const [to, step, norm] = payload as [number, number, number]
        this.gradientArrives(a, b, to, step, norm)
        return
      }
      case Kind.churn:
        this.churn()
        return
      case Kind.restart:
        this.restart(a)
        return
      case Kind.join:
        this.join()
        return
      case Kind.announce:
        this.announce(a)
        return
      case Kind.claimArrives:
        this.claimArrives(a, b, payload as number)
        return
      case Kind.assign:
        this.staffingDeadline(a, b)
        return
      case Kind.assignmentArrives:
        this.assignmentArrives(a, b)
        return
      case Kind.partitionStart:
        this.partitionStart(a)
        return
      case Kind.partitionEnd:
        this.partitionActive = false
        return
      case Kind.outageStart:
        this.outage(true)
        return
      case Kind.outageEnd:
        this.outage(false)
        return
      case Kind.sample:
        this.sample()
        return
      case Kind.meshMaintenance:
        this.gossip.maintain(this.upList, this.upCount)
        this.queue.push(this.now + MESH_MAINTENANCE_MS, Kind.meshMaintenance)
        return
      case Kind.stepGrace:
        this.stepGrace(a, b)
        return
      case Kind.inferenceStart:
        this.inference.start()
        this.queue.push(this.nextInferenceAtMs(), Kind.inferenceStart)
        return
      case Kind.inferenceAnswer:
        this.inference.answer(a, b, payload as number)
        return
      default:
        assert(false, `unknown event kind ${kind}`)
    }
  }

  // ---------------------------------------------------------------- churn and faults

  private churn(): void {
    const p = this.parameters
    if (this.upCount > 1) {
      const peer = this.randomUpPeer()
      this.peers.churnEvents[peer]++
      this.noteChurn(peer)
      if (this.random.chance(p.crashShareOfChurn)) {
        this.crash(peer)
        const delay = p.restartDelayMsMin + this.random.float() * (p.restartDelayMsMax - p.restartDelayMsMin)
        this.queue.push(this.now + delay, Kind.restart, peer)
      } else {
        this.counters.leaves++
        this.markDown(peer, PeerState.left)
        this.gossip.remove(peer)
        this.stopMember(peer)
        // a newcomer replaces the leaver after a while (the network's size stays about steady)
        this.queue.push(this.now + this.random.float() * 120_000, Kind.join, 0)
      }
    }
    this.queue.push(this.now + this.nextChurnDelayMs(), Kind.churn)
  }

  private noteChurn(peer: number): void {
    const slot = this.peers.groupSlot[peer]
    if (slot >= 0) {
      const group = this.groups[slot]
      if (!group.done) this.tasks[group.task].churnSeen++
    }
  }

  private crash(peer: number): void {
    this.counters.crashes++
    this.markDown(peer, PeerState.crashed)
    this.stopMember(peer)
  }

  /** The member's process is gone: its Raft node with it (its storage survives a crash). */
  private stopMember(peer: number): void {
    const groupId = this.peers.groupSlot[peer]
    if (groupId < 0) return
    const group = this.groups[groupId]
    const position = group.members.indexOf(peer)
    group.nodes[position] = undefined
    group.computingStep[position] = -1
    this.traceGroup(group, `member ${position + 1} (peer ${peer}) stopped`)
  }

  private restart(peer: number): void {
    if (this.peers.state[peer] !== PeerState.crashed) return
    this.counters.restarts++
    this.markUp(peer)
    this.gossip.graft(peer, this.upList, this.upCount)
    const groupId = this.peers.groupSlot[peer]
    if (groupId >= 0) {
      const group = this.groups[groupId]
      const position = group.members.indexOf(peer)
      if (!group.done && group.started[position]) this.startNode(group, position)
    }
  }

  private join(): void {
    const peer = this.createPeer()
    this.counters.joins++
    this.markUp(peer)
    const spec = this.partitionActive ? this.currentPartition : undefined
    this.setPartitionSide(peer, spec)
    this.dht.buildTable(peer, (other) => this.peers.state[other] !== PeerState.notJoined)
    this.gossip.graft(peer, this.upList, this.upCount)
    // bootstrap: a lookup of a random live peer (the routing-table refresh a joiner runs)
    this.lookup(peer, this.randomUpPeer(), this.parameters.flashCrowd !== undefined)
  }

  private currentPartition: DerivedParameters['partitions'][number] | undefined

  private partitionStart(index: number): void {
    const spec = this.parameters.partitions[index]
    this.currentPartition = spec
    for (let peer = 0; peer < this.peers.count; peer++) this.setPartitionSide(peer, spec)
    this.partitionActive = true
  }

  private outage(starting: boolean): void {
    const outage = this.parameters.regionalOutage!
    const region = REGIONS.indexOf(outage.region as (typeof REGIONS)[number])
    if (starting) {
      // record which live groups have a majority in the region, with their pace before the outage
      for (const group of this.groups) {
        if (group.done || group.failed) continue
        const inRegion = group.members.filter((m) => this.peers.region[m] === region).length
        this.outageGroups.push({
          group: group.id,
          majorityInRegion: inRegion * 2 > group.members.length,
          stepsDuringOutage: -group.committedStep,
          baseline: group.committedStep - group.firstStep + 1,
          finished: false,
        })
      }
      for (let peer = 0; peer < this.peers.count; peer++) {
        if (this.peers.region[peer] === region && this.peers.state[peer] === PeerState.up) {
          this.peers.churnEvents[peer]++
          this.noteChurn(peer)
          this.crash(peer)
        }
      }
    } else {
      for (const record of this.outageGroups) {
        const group = this.groups[record.group]
        record.stepsDuringOutage += group.committedStep
        record.finished = group.committedStep >= group.lastStep
      }
      for (let peer = 0; peer < this.peers.count; peer++) {
        if (this.peers.region[peer] === region && this.peers.state[peer] === PeerState.crashed)
          this.restart(peer)
      }
    }
  }

  // ---------------------------------------------------------------- DHT

  private lookup(origin: number, target: number, flash: boolean): number {
    const result = this.dht.lookup(origin, this.dht.keyHi[target], this.dht.keyLo[target], target)
    this.counters.lookups++
    if (result.found) {
      this.lookupHops.add(result.hops)
      if (flash && this.parameters.flashCrowd && this.now >= this.parameters.flashCrowd.atMs)
        this.flashLookupHops.add(result.hops)
    } else this.counters.lookupsFailed++
    this.lookupLatency.add(result.latencyMs)
    return result.latencyMs
  }

  // ---------------------------------------------------------------- tasks: announce, claim, assign

  private announce(taskId: number): void {
    const task = this.tasks[taskId]
    const p = this.parameters
    if (!this.peers.isUp(task.submitter)) task.submitter = this.randomUpPeer()
    task.announcedAtMs = task.announcedAtMs < 0 ? this.now : task.announcedAtMs
    task.round++
    task.staffing = new StaffingRound({
      id: `task-${taskId}-${task.round}`,
      groups: task.pending.length,
      groupSize: p.groupSize,
      steps: task.steps,
      nowMs: this.now,
      deadlineMs: this.now + CLAIM_WINDOW_MS,
    })
    this.counters.announcements++
    const flood = this.gossip.flood(task.submitter, this.now, ANNOUNCEMENT_BYTES, this.upList, this.upCount)
    this.counters.gossipReachedSum += flood.reached
    this.counters.gossipUpSum += flood.peersUp
    this.counters.gossipReachedShareMin = Math.min(
      this.counters.gossipReachedShareMin,
      flood.reached / flood.peersUp,
    )
    this.counters.gossipDuplicates += flood.duplicates
    this.counters.gossipLost += flood.lost
    this.counters.gossipLazyDeliveries += flood.lazyDeliveries
    const arrival = this.gossip.arrivalMs
    // the first idle arrivals claim (bounded insertion into a sorted window)
    const wanted = Math.min(TASK_CLAIMS_MAX, task.pending.length * p.groupSize * CLAIM_SURPLUS)
    const window: number[] = []
    for (let i = 0; i < this.upCount; i++) {
      const peer = this.upList[i]
      const time = arrival[peer]
      if (time === Number.POSITIVE_INFINITY) continue
      if (peer !== task.submitter) this.propagation.add(time)
      if (peer === task.submitter || this.peers.groupSlot[peer] >= 0 || this.claimedBy[peer] >= 0) continue
      if (window.length === wanted && time >= arrival[window[window.length - 1]]) continue
      let at = window.length === wanted ? window.length - 1 : window.length
      while (
        at > 0 &&
        (arrival[window[at - 1]] > time || (arrival[window[at - 1]] === time && window[at - 1] > peer))
      ) {
        window[at] = window[at - 1]
        at--
      }
      window[at] = peer
    }
    for (const peer of window) {
      this.claimedBy[peer] = taskId
      this.counters.claimsSent++
      this.peers.countSent(peer, CLAIM_BYTES)
      if (!this.reachable(peer, task.submitter) || this.random.chance(p.lossProbability)) {
        this.counters.claimsLost++
        continue
      }
      const at = this.now + arrival[peer] + this.latencyMs(peer, task.submitter, this.random)
      this.queue.push(at, Kind.claimArrives, taskId, peer, task.round)
    }
    this.queue.push(this.now + CLAIM_WINDOW_MS, Kind.assign, taskId, task.round)
  }

  /** A claim reaches the submitter: its real lifecycle record takes it, and may staff the task with it. */
  private claimArrives(taskId: number, peer: number, round: number): void {
    const task = this.tasks[taskId]
    const staffing = task.staffing
    if (!staffing || task.round !== round || !this.peers.isUp(task.submitter)) return
    // a claimer that gave up on the task (its claim window passed) no longer holds itself free for it
    if (this.claimedBy[peer] !== taskId) return
    this.peers.countReceived(task.submitter, CLAIM_BYTES)
    const backend = this.peers.backend[peer]
    const plan = staffing.claim(
      peer,
      {
        backend: CLAIM_BACKEND_BY_CLASS[backend],
        gflops: this.peers.gflops[peer],
        maxBufferBytes: CLAIMANT_MAX_BUFFER_BYTES,
      },
      this.now,
    )
    if (plan) this.assign(task, plan)
  }

  private releaseClaims(taskId: number): void {
    // claimers that were not picked, and those whose claims were lost, are free again
    for (let peer = 0; peer < this.peers.count; peer++)
      if (this.claimedBy[peer] === taskId) this.claimedBy[peer] = -1
  }

  /** The staffing deadline of an announcement: a record still staffing fails, and the task is announced again. */
  private staffingDeadline(taskId: number, round: number): void {
    const task = this.tasks[taskId]
    const staffing = task.staffing
    if (!staffing || task.round !== round) return
    task.staffing = undefined
    // a submitter that is down stays silent; its record fails at the deadline all the same
    const reason = staffing.expire(this.now)
    assert(reason !== undefined, 'a staffing record outlived its deadline')
    this.releaseClaims(taskId)
    if (++task.retries > ANNOUNCE_RETRIES_MAX) {
      task.failed = true
      this.counters.tasksAbandoned++
      for (const [slot] of task.pending) this.freeSlots.push(slot)
      task.pending = []
      this.recordTask(task)
      return
    }
    this.counters.announcementsRetried++
    this.queue.push(this.now + ANNOUNCE_RETRY_MS, Kind.announce, taskId)
  }

  /** The record staffed the task: every member gets its assignment over a stream. */
  private assign(task: TaskState, plan: number[][]): void {
    const p = this.parameters
    task.staffing = undefined
    const assigned = new Set<number>()
    plan.forEach((members, g) => {
      assert(members.length === p.groupSize, 'assignment returned a group of the wrong size')
      const [slot, firstStep] = task.pending[g]
      const group = this.createGroup(task, slot, firstStep, members)
      for (const [position, peer] of members.entries()) {
        assert(!assigned.has(peer), `assignment put peer ${peer} in two groups`)
        assigned.add(peer)
        this.peers.groupSlot[peer] = group.id
        this.peers.countSent(task.submitter, ASSIGNMENT_BYTES)
        // an assignment travels over a stream: a loss costs a retransmission, not the message
        let delay = this.latencyMs(task.submitter, peer, this.random)
        while (this.random.chance(p.lossProbability)) delay += 1000
        this.queue.push(this.now + delay, Kind.assignmentArrives, group.id, position)
      }
    })
    task.pending = []
    this.releaseClaims(task.id)
  }

  private createGroup(task: TaskState, slot: number, firstStep: number, members: number[]): GroupState {
    const k = members.length
    const id = this.groups.length
    const group: GroupState = {
      id,
      slot,
      task: task.id,
      members,
      nodes: new Array(k).fill(undefined),
      storages: members.map(() => new MemoryStorage()),
      started: new Array(k).fill(false),
      appliedIndex: new Array(k).fill(0),
      checkedCommit: new Array(k).fill(0),
      appliedStep: new Array(k).fill(firstStep - 1),
      digest: new Array(k).fill('00000000'),
      computingStep: new Array(k).fill(-1),
      computedStep: new Array(k).fill(-1),
      computedNorm: new Array(k).fill(0),
      sentTo: new Array(k).fill(-1),
      wasLeader: new Array(k).fill(false),
      checkers: this.hooks.createCheckers?.() ?? new SafetyCheckers(),
      trace: [],
      firstStep,
      lastStep: task.steps,
      committedStep: firstStep - 1,
      lastProgressAtMs: this.now,
      createdAtMs: this.now,
      leaderChanges: 0,
      collector: new StepCollector(k),
      graceAtMs: -1,
      proposedStep: -1,
      proposedTerm: -1,
      done: false,
      failed: false,
      stalledMs: 0,
    }
    const voters = members.map((_, i) => String(i + 1))
    for (const storage of group.storages) storage.bootstrap(voters)
    this.groups.push(group)
    task.activeGroups.push(id)
    this.counters.groupsFormed++
    this.traceGroup(
      group,
      `formed for task ${task.id} in slot ${slot}: peers ${members.join(',')} from step ${firstStep}`,
    )
    this.queue.push(this.now + this.parameters.raftTickMs, Kind.groupTick, id)
    return group
  }

  private assignmentArrives(groupId: number, position: number): void {
    const group = this.groups[groupId]
    if (group.done || group.failed) return
    const peer = group.members[position]
    this.peers.countReceived(peer, ASSIGNMENT_BYTES)
    group.started[position] = true
    // the member finds the submitter's peer record to fetch the task spec (a DHT lookup)
    this.lookup(peer, this.tasks[group.task].submitter, false)
    if (this.peers.isUp(peer)) this.startNode(group, position)
  }

  // ---------------------------------------------------------------- Raft groups

  private traceGroup(group: GroupState, text: string): void {
    group.trace.push(`t=${(this.now / 1000).toFixed(3)}s ${text}`)
    if (group.trace.length > TRACE_EVENTS_MAX) group.trace.shift()
  }

  private startNode(group: GroupState, position: number): void {
    const p = this.parameters
    const storage = group.storages[position]
    const snapshot = storage.snapshot()
    const app = this.decodeAppState(snapshot, group.firstStep)
    group.appliedIndex[position] = snapshot.metadata.index
    group.checkedCommit[position] = 0
    group.appliedStep[position] = app.step
    group.digest[position] = app.digest
    group.wasLeader[position] = false
    group.computingStep[position] = -1
    group.sentTo[position] = -1
    group.nodes[position] = new RaftNode({
      id: String(position + 1),
      storage,
      random: this.random.fork(),
      electionTicks: p.electionTicks,
      heartbeatTicks: p.heartbeatTicks,
      preVote: true,
      checkQuorum: true,
      applied: snapshot.metadata.index,
    })
    this.traceGroup(
      group,
      `member ${position + 1} started at index ${snapshot.metadata.index}, step ${app.step}`,
    )
  }

  private encodeAppState(step: number, digest: string): Uint8Array {
    return this.encoder.encode(`${step}:${digest}`)
  }

  private decodeAppState(snapshot: Snapshot, firstStep: number): { step: number; digest: string } {
    if (snapshot.metadata.index === 0 || snapshot.data.length === 0)
      return { step: firstStep - 1, digest: '00000000' }
    const [step, digest] = this.decoder.decode(snapshot.data).split(':')
    return { step: Number(step), digest }
  }

  private groupTick(groupId: number): void {
    const group = this.groups[groupId]
    if (group.done || group.failed) return
    for (let position = 0; position < group.nodes.length; position++) {
      const node = group.nodes[position]
      if (!node) continue
      node.tick()
      this.processReady(group, position)
    }
    // members compute the next step once they applied the previous; gradients follow the leader
    for (let position = 0; position < group.nodes.length; position++) {
      const node = group.nodes[position]
      if (!node) continue
      const next = group.appliedStep[position] + 1
      if (next > group.lastStep) continue
      if (group.computingStep[position] !== next && group.computedStep[position] !== next)
        this.startCompute(group, position, next)
      else if (group.computedStep[position] === next) {
        const lead = Number(node.raft.lead) - 1
        if (lead >= 0 && lead !== group.sentTo[position]) this.sendGradient(group, position)
      }
    }
    this.queue.push(this.now + this.parameters.raftTickMs, Kind.groupTick, groupId)
  }

  private startCompute(group: GroupState, position: number, step: number): void {
    const peer = group.members[position]
    const backend = this.peers.backend[peer]
    const ms =
      STEP_COMPUTE_MS_BY_BACKEND[backend] * this.peers.slowFactor[peer] * (0.9 + 0.2 * this.random.float())
    group.computingStep[position] = step
    this.queue.push(this.now + ms, Kind.gradientComputed, group.id, position, step)
  }

  private gradientComputed(groupId: number, position: number, step: number): void {
    const group = this.groups[groupId]
    if (group.done || group.failed || !group.nodes[position] || group.computingStep[position] !== step) return
    group.computingStep[position] = -1
    if (step !== group.appliedStep[position] + 1) return
    const peer = group.members[position]
    group.computedStep[position] = step
    group.computedNorm[position] = this.peers.byzantine[peer]
      ? this.random.chance(0.5)
        ? Number.NaN
        : 1e6
      : 1 + 0.05 * this.random.float()
    group.sentTo[position] = -1
    this.sendGradient(group, position)
  }

  private sendGradient(group: GroupState, position: number): void {
    const node = group.nodes[position]
    if (!node) return
    const lead = Number(node.raft.lead) - 1
    if (lead < 0) return
    group.sentTo[position] = lead
    const step = group.computedStep[position]
    const norm = group.computedNorm[position]
    if (lead === position) {
      this.gradientArrives(group.id, position, lead, step, norm)
      return
    }
    const from = group.members[position]
    const to = group.members[lead]
    this.counters.gradientsSent++
    this.peers.countSent(from, GRADIENT_BYTES)
    if (!this.reachable(from, to) || this.random.chance(this.parameters.lossProbability)) return
    const peers = this.peers
    const start = Math.max(this.now, peers.uplinkFreeAtMs[from])
    const done = start + GRADIENT_BYTES / peers.uploadBytesPerMs[from]
    peers.uplinkFreeAtMs[from] = done
    this.queue.push(done + this.latencyMs(from, to, this.random), Kind.gradientArrives, group.id, position, [
      lead,
      step,
      norm,
    ])
  }

  private gradientArrives(groupId: number, from: number, to: number, step: number, norm: number): void {
    const group = this.groups[groupId]
    const node = group.nodes[to]
    if (group.done || group.failed || !node || node.raft.state !== 'leader') return
    if (from !== to) this.peers.countReceived(group.members[to], GRADIENT_BYTES)
    const next = group.appliedStep[to] + 1
    const collector = group.collector
    // a member that sends anything is alive, even when its gradient comes too late to count
    if (step <= next) collector.seen(from, step)
    if (step !== next) return
    if (collector.step !== step || collector.leader !== to) {
      collector.collect(step, to)
      group.graceAtMs = -1
    }
    // a lying member's NaN gradient comes with a NaN loss; the screening rule checks both
    collector.admit(from, norm, Number.isNaN(norm) ? Number.NaN : PROBE_LOSS, this.now)
    this.considerProposal(group, to)
  }

  private stepGrace(groupId: number, step: number): void {
    const group = this.groups[groupId]
    if (group.done || group.failed || group.collector.step !== step) return
    group.graceAtMs = -1
    this.considerProposal(group, group.collector.leader)
  }

  /** The leader's decision for the collected step (the real quorum and screening rules), then the proposal. */
  private considerProposal(group: GroupState, leader: number): void {
    const node = group.nodes[leader]
    if (node?.raft.state !== 'leader') return
    const collector = group.collector
    const step = collector.step
    // one proposal per step per leadership (a new leader or term proposes again)
    if (group.proposedStep === step && group.proposedTerm === node.raft.term) return
    const decision = collector.decide(this.now)
    if (decision.kind === 'wait') {
      // the straggler timer: decide again once it has run out
      if (decision.decideAtMs !== undefined && group.graceAtMs !== decision.decideAtMs) {
        group.graceAtMs = decision.decideAtMs
        this.queue.push(decision.decideAtMs, Kind.stepGrace, group.id, step)
      }
      return
    }
    let mask = 0
    for (const member of decision.accepted) mask |= 1 << member
    try {
      node.propose(this.encoder.encode(`${step}|${mask}`))
      group.proposedStep = step
      group.proposedTerm = node.raft.term
      let liars = 0
      for (const peer of group.members) liars += this.peers.byzantine[peer]
      const honestMajority = (group.members.length - liars) * 2 > group.members.length
      for (const member of decision.accepted) {
        if (this.peers.byzantine[group.members[member]] !== 1) continue
        this.counters.byzantineGradientsAccepted++
        if (honestMajority) this.counters.byzantineGradientsAcceptedWithHonestMajority++
      }
      for (const { position } of decision.rejected) {
        this.counters.gradientsRejected++
        if (this.peers.byzantine[group.members[position]] === 1) this.counters.byzantineGradientsRejected++
      }
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error
      this.counters.proposalsDropped++
    }
    this.processReady(group, leader)
  }

  private sendRaft(group: GroupState, message: Message): void {
    const fromPosition = Number(message.from) - 1
    const toPosition = Number(message.to) - 1
    const from = group.members[fromPosition]
    const to = group.members[toPosition]
    const p = this.parameters
    this.counters.raftMessagesSent++
    let bytes = RAFT_MESSAGE_BYTES
    for (const entry of message.entries) bytes += entry.data.length + 24
    this.peers.countSent(from, bytes)
    if (
      !this.reachable(from, to) ||
      this.random.chance(p.lossProbability) ||
      (this.peers.byzantine[from] === 1 && this.random.chance(p.byzantineRaftDropProbability))
    ) {
      this.counters.raftMessagesDropped++
      return
    }
    this.queue.push(
      this.now + this.latencyMs(from, to, this.random),
      Kind.raftMessage,
      group.id,
      toPosition,
      message,
    )
  }

  private deliverRaft(groupId: number, position: number, message: Message): void {
    const group = this.groups[groupId]
    if (group.done || group.failed) return
    const node = group.nodes[position]
    if (!node) {
      this.counters.raftMessagesToStoppedMembers++
      return
    }
    this.peers.countReceived(group.members[position], RAFT_MESSAGE_BYTES)
    node.step(message)
    this.processReady(group, position)
  }

  /** Persists, sends and applies every Ready (the order RaftNode documents), checking safety. */
  private processReady(group: GroupState, position: number): void {
    this.violationGroup = group
    for (let round = 0; ; round++) {
      const node = group.nodes[position]
      if (!node?.hasReady()) return
      if (round > READY_ROUNDS_MAX)
        throw new SafetyViolation('bounded-ready', `member ${position + 1} kept producing Ready`)
      const ready = node.ready()
      const storage = group.storages[position]
      storage.save({ snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState })
      for (const message of ready.messages) this.sendRaft(group, message)
      if (ready.softState) {
        const leader = ready.softState.state === 'leader'
        if (leader && !group.wasLeader[position]) this.onNewLeader(group, position, node)
        group.wasLeader[position] = leader
      }
      if (ready.snapshot) {
        const app = this.decodeAppState(ready.snapshot, group.firstStep)
        this.counters.safetyChecks++
        group.checkers.state(String(position + 1), ready.snapshot.metadata.index, app.digest)
        group.appliedIndex[position] = ready.snapshot.metadata.index
        group.appliedStep[position] = app.step
        group.digest[position] = app.digest
        this.counters.snapshotsInstalled++
        this.traceGroup(
          group,
          `member ${position + 1} installed snapshot at ${ready.snapshot.metadata.index}`,
        )
      }
      this.checkCommitted(group, position, node)
      for (const entry of ready.committedEntries) this.apply(group, position, entry)
      node.advance()
      if (group.done) return
      if (ready.committedEntries.length > 0) this.maybeSnapshot(group, position, node)
    }
  }

  private onNewLeader(group: GroupState, position: number, node: RaftNode): void {
    const raft = node.raft
    this.counters.leaderElections++
    group.collector.leaderChanged(group.appliedStep[position] + 1)
    group.leaderChanges++
    this.minuteLeaderChanges++
    this.counters.safetyChecks++
    this.traceGroup(
      group,
      `member ${position + 1} became leader of term ${raft.term} (last index ${raft.log.lastIndex()})`,
    )
    group.checkers.newLeader(
      String(position + 1),
      raft.term,
      raft.log.firstIndex() - 1,
      raft.log.lastIndex(),
      (index) => raft.log.term(index),
    )
  }

  private checkCommitted(group: GroupState, position: number, node: RaftNode): void {
    // each member's newly committed entries are checked once (a restart checks its log again)
    const log = node.raft.log
    const from = Math.max(log.firstIndex(), group.checkedCommit[position] + 1, 1)
    const to = log.committed
    if (from > to) return
    group.checkedCommit[position] = to
    for (const entry of log.slice(from, to + 1)) {
      this.counters.safetyChecks++
      group.checkers.committedEntry(String(position + 1), entry)
    }
  }

  private apply(group: GroupState, position: number, entry: Entry): void {
    const digest = entryDigest(entry)
    const state = chainDigest(group.digest[position], digest)
    this.counters.safetyChecks++
    group.checkers.applied(String(position + 1), group.appliedIndex[position], entry, state)
    group.appliedIndex[position] = entry.index
    group.digest[position] = state
    if (entry.type !== 'normal' || entry.data.length === 0) return
    const step = Number(this.decoder.decode(entry.data).split('|')[0])
    if (step !== group.appliedStep[position] + 1) {
      if (position === 0) this.counters.duplicateStepEntries++
      return
    }
    group.appliedStep[position] = step
    if (step > group.committedStep) {
      group.committedStep = step
      group.lastProgressAtMs = this.now
      this.counters.stepsCommitted++
      this.minuteSteps++
      this.slotSteps[group.slot]++
      if (step >= group.lastStep) this.finishGroup(group)
      else this.startCompute(group, position, step + 1)
    } else if (step < group.lastStep) this.startCompute(group, position, step + 1)
  }

  private maybeSnapshot(group: GroupState, position: number, node: RaftNode): void {
    const storage = group.storages[position]
    const snapshotIndex = storage.snapshot().metadata.index
    const applied = group.appliedIndex[position]
    if (applied - snapshotIndex < SNAPSHOT_EVERY_ENTRIES) return
    storage.createSnapshot(
      applied,
      node.raft.confState(),
      this.encodeAppState(group.appliedStep[position], group.digest[position]),
    )
    if (applied - 20 >= storage.firstIndex()) storage.compact(applied - 20)
    // the checkers may forget what every member has compacted away
    let lowest = Number.POSITIVE_INFINITY
    for (const s of group.storages) lowest = Math.min(lowest, s.firstIndex())
    group.checkers.forgetBelow(lowest - 1)
  }

  private finishGroup(group: GroupState): void {
    group.done = true
    this.counters.groupsCompleted++
    this.traceGroup(group, `completed step ${group.lastStep}`)
    this.releaseGroup(group)
    const task = this.tasks[group.task]
    task.doneGroups++
    task.activeGroups = task.activeGroups.filter((id) => id !== group.id)
    if (task.activeGroups.length === 0 && task.pending.length === 0 && task.completedAtMs < 0) {
      task.completedAtMs = this.now
      this.counters.tasksCompleted++
      this.recordTask(task)
    }
    this.startTasks(0)
  }

  private releaseGroup(group: GroupState): void {
    for (const peer of group.members)
      if (this.peers.groupSlot[peer] === group.id) this.peers.groupSlot[peer] = -1
    this.dropGroupState(group)
    this.freeSlots.push(group.slot)
  }

  /** A finished or dissolved group keeps only its summary: the run's memory stays bounded by live groups. */
  private dropGroupState(group: GroupState): void {
    group.nodes.fill(undefined)
    group.storages = []
    group.collector = new StepCollector(0)
    group.checkers = new SafetyCheckers()
    group.trace = []
  }

  private recordTask(task: TaskState): void {
    this.taskRecords.push({
      id: task.id,
      groups: task.groups,
      steps: task.steps,
      announcedAtS: round3(task.announcedAtMs / 1000),
      completedAtS: task.completedAtMs >= 0 ? round3(task.completedAtMs / 1000) : null,
      completionS: task.completedAtMs >= 0 ? round3((task.completedAtMs - task.announcedAtMs) / 1000) : null,
      reassignments: task.reassignments,
      churnEventsInGroups: task.churnSeen,
    })
  }

  /** A group that lost a majority for good is dissolved; its remaining steps are re-announced. */
  private reassignStalled(): void {
    for (const group of this.groups) {
      if (group.done || group.failed) continue
      if (this.now - group.lastProgressAtMs < GROUP_STALL_MS) continue
      const up = group.members.filter((peer) => this.peers.isUp(peer)).length
      if (up * 2 > group.members.length) continue
      group.failed = true
      this.counters.groupsReassigned++
      this.traceGroup(
        group,
        `stalled since t=${(group.lastProgressAtMs / 1000).toFixed(1)}s with ${up} members up: re-announced`,
      )
      const task = this.tasks[group.task]
      task.reassignments++
      task.activeGroups = task.activeGroups.filter((id) => id !== group.id)
      const slot = group.slot
      const firstStep = group.committedStep + 1
      for (const peer of group.members)
        if (this.peers.groupSlot[peer] === group.id) this.peers.groupSlot[peer] = -1
      this.dropGroupState(group)
      task.pending.push([slot, firstStep])
      task.retries = 0
      this.queue.push(this.now, Kind.announce, task.id)
    }
  }

  private sample(): void {
    let active = 0
    let stalled = 0
    for (const group of this.groups) {
      if (group.done || group.failed) continue
      active++
      if (this.now - group.lastProgressAtMs > 30_000) stalled++
    }
    this.samples.push({
      atS: round3(this.now / 1000),
      peersUp: this.upCount,
      activeGroups: active,
      stepsCommitted: this.minuteSteps,
      leaderChanges: this.minuteLeaderChanges,
      stalledGroups: stalled,
      slotSteps: Array.from(this.slotSteps.subarray(0, Math.min(PLOT_SLOTS_MAX, this.slotSteps.length))),
    })
    this.minuteSteps = 0
    this.minuteLeaderChanges = 0
    this.reassignStalled()
    this.queue.push(this.now + SAMPLE_INTERVAL_MS, Kind.sample)
  }

  // ---------------------------------------------------------------- the end

  private finish(violation: SafetyViolation | undefined): SimulationReportData {
    let violationReport: SimulationReportData['violation']
    if (violation) {
      const group = this.violationGroup
      violationReport = {
        checker: violation.checker,
        message: violation.message,
        atS: round3(this.now / 1000),
        trace: group ? [...group.trace] : [],
      }
    }
    for (const task of this.tasks) {
      if (task.completedAtMs < 0 && !task.failed && task.announcedAtMs >= 0) this.recordTask(task)
    }
    this.taskRecords.sort((a, b) => a.id - b.id)
    return {
      parameters: this.parameters,
      events: this.events,
      counters: this.counters,
      propagation: this.propagation,
      lookupHops: this.lookupHops,
      flashLookupHops: this.flashLookupHops,
      lookupLatency: this.lookupLatency,
      samples: this.samples,
      tasks: this.taskRecords,
      groups: this.groups.map((g) => ({
        id: g.id,
        slot: g.slot,
        task: g.task,
        regions: g.members.map((m) => REGIONS[this.peers.region[m]]),
        firstStep: g.firstStep,
        committedStep: g.committedStep,
        lastStep: g.lastStep,
        leaderChanges: g.leaderChanges,
        state: g.done ? 'completed' : g.failed ? 'reassigned' : 'running',
        createdAtS: round3(g.createdAtMs / 1000),
      })),
      outageGroups: this.outageGroups,
      inference: {
        counters: this.inference.counters,
        completionMs: this.inference.completionMs,
        scores: this.inference.scoreMeans(),
      },
      peers: this.peers,
      violation: violationReport,
    }
  }
}

export function round3(value: number): number {
  return Math.round(value * 1000) / 1000
}

export interface SimulationReportData {
  parameters: DerivedParameters
  events: number
  counters: NetworkSimulation['counters']
  propagation: Histogram
  lookupHops: Histogram
  flashLookupHops: Histogram
  lookupLatency: Histogram
  samples: NetworkSimulation['samples']
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
  outageGroups: NetworkSimulation['outageGroups']
  inference: {
    counters: InferenceWorkload['counters']
    completionMs: Histogram
    /** Mean score submitters hold of honest and of lying peers. */
    scores: { honest: number; lying: number }
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
