// Training groups: each group is a Raft cluster of real RaftNode members (protocols/raft over
// MemoryStorage) with the Raft simulator's SafetyCheckers beside it. Members compute gradients
// (kernel work modelled by measured time), send them to the member they take for leader over their
// uplink, and the leader screens them and waits for stragglers with the real rules of
// protocols/training/aggregate.ts (lifecycle.ts StepCollector) before it proposes the step. A group
// completes when it has committed its last step; one that lost its majority for good is dissolved
// and staffing.ts re-announces its remaining steps.
//
// Events handled here: groupTick, raftMessage, gradientComputed, gradientArrives, stepGrace,
// assignmentArrives.
import { RaftNode } from '../../protocols/raft/node.js'
import { handleReady } from '../../protocols/raft/ready.js'
import { MemoryStorage } from '../../protocols/raft/storage.js'
import { type Entry, type Message, ProposalDroppedError, type Snapshot } from '../../protocols/raft/types.js'
import { chainDigest, entryDigest, SafetyCheckers, SafetyViolation } from '../raft/checkers.js'
import { EventKind, type EventLoop, type GradientInFlight } from './events.js'
import { PROBE_LOSS, StepCollector } from './lifecycle.js'
import { type Metrics, SAMPLE_STALLED_MS } from './metrics.js'
import type { Network } from './network.js'
import type { DerivedParameters } from './parameters.js'
import { STEP_COMPUTE_MS_BY_BACKEND } from './peers.js'

/** Bytes of one gradient: the MNIST MLP's 101,770 float32 parameters. */
export const GRADIENT_BYTES = 101_770 * 4
/** Bytes of an assignment (the submitter's stream message naming the task, group and members). */
export const ASSIGNMENT_BYTES = 300
/** Per-message framing overhead of a Raft message; entries carry an update CID, not the update. */
export const RAFT_MESSAGE_BYTES = 120
/** A group without a commit this long, with a majority of members gone, is dissolved and re-announced. */
export const GROUP_STALL_MS = 180_000
/** Apply this many entries between snapshots (then compact the log). */
export const SNAPSHOT_EVERY_ENTRIES = 200
/** Events of each group's trace kept for a safety-violation report. */
export const TRACE_EVENTS_MAX = 120
/** Ready rounds one processReady may take before it is a bug. */
export const READY_ROUNDS_MAX = 100

export interface GroupState {
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
}

/** What the groups ask of the tasks they serve (staffing.ts). */
export interface GroupOwner {
  /** The peer that submitted `task` (a starting member looks it up to fetch the spec). */
  submitterOf(task: number): number
  /** `group` committed its last step; its peers are free again. */
  groupCompleted(group: GroupState): void
  /** `group` lost its majority for good and was dissolved; its peers are free again. */
  groupDissolved(group: GroupState): void
}

export class Groups {
  readonly all: GroupState[] = []
  /** The group being processed: the one whose checker threw, when one does. */
  violationGroup: GroupState | undefined
  private readonly encoder = new TextEncoder()
  private readonly decoder = new TextDecoder()

  constructor(
    private readonly parameters: DerivedParameters,
    private readonly loop: EventLoop,
    private readonly network: Network,
    private readonly metrics: Metrics,
    private readonly owner: GroupOwner,
    private readonly createCheckers: () => SafetyCheckers,
  ) {
    loop.handle({
      [EventKind.groupTick]: (group) => this.tick(this.all[group]),
      [EventKind.raftMessage]: (group, position, message) =>
        this.deliverRaft(this.all[group], position, message),
      [EventKind.gradientComputed]: (group, position, step) =>
        this.gradientComputed(this.all[group], position, step),
      [EventKind.gradientArrives]: (group, from, gradient) =>
        this.gradientArrives(this.all[group], from, gradient),
      [EventKind.stepGrace]: (group, step) => this.stepGrace(this.all[group], step),
      [EventKind.assignmentArrives]: (group, position) => this.assignmentArrives(this.all[group], position),
    })
  }

  private get now(): number {
    return this.loop.now
  }

  /** Forms a group of `members` (peer rows, in member order) for `task`, training from `firstStep`. */
  create(
    task: { id: number; steps: number },
    slot: number,
    firstStep: number,
    members: number[],
  ): GroupState {
    const k = members.length
    const id = this.all.length
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
      checkers: this.createCheckers(),
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
    }
    const voters = members.map((_, i) => String(i + 1))
    for (const storage of group.storages) storage.bootstrap(voters)
    this.all.push(group)
    this.metrics.counters.groupsFormed++
    this.trace(
      group,
      `formed for task ${task.id} in slot ${slot}: peers ${members.join(',')} from step ${firstStep}`,
    )
    this.loop.at(this.now + this.parameters.raftTickMs, EventKind.groupTick, id)
    return group
  }

  /** The member's assignment reached it: it fetches the spec and starts its Raft node. */
  private assignmentArrives(group: GroupState, position: number): void {
    if (group.done || group.failed) return
    const peer = group.members[position]
    this.network.peers.countReceived(peer, ASSIGNMENT_BYTES)
    group.started[position] = true
    // the member finds the submitter's peer record to fetch the task spec (a DHT lookup)
    this.network.lookup(peer, this.owner.submitterOf(group.task), false)
    if (this.network.peers.isUp(peer)) this.startNode(group, position)
  }

  /** The peer's process is gone: its member's Raft node with it (its storage survives a crash). */
  stopMember(peer: number): void {
    const groupId = this.network.peers.groupSlot[peer]
    if (groupId < 0) return
    const group = this.all[groupId]
    const position = group.members.indexOf(peer)
    group.nodes[position] = undefined
    group.computingStep[position] = -1
    this.trace(group, `member ${position + 1} (peer ${peer}) stopped`)
  }

  /** The peer is back after a crash: its member restarts from its storage, if the group still runs. */
  restartMember(peer: number): void {
    const groupId = this.network.peers.groupSlot[peer]
    if (groupId < 0) return
    const group = this.all[groupId]
    const position = group.members.indexOf(peer)
    if (!group.done && group.started[position]) this.startNode(group, position)
  }

  /** Live groups, and those of them without a commit for SAMPLE_STALLED_MS. */
  activity(): { active: number; stalled: number } {
    let active = 0
    let stalled = 0
    for (const group of this.all) {
      if (group.done || group.failed) continue
      active++
      if (this.now - group.lastProgressAtMs > SAMPLE_STALLED_MS) stalled++
    }
    return { active, stalled }
  }

  /** Dissolves every group stalled GROUP_STALL_MS with a majority of its members down. */
  dissolveStalled(): void {
    for (const group of this.all) {
      if (group.done || group.failed) continue
      if (this.now - group.lastProgressAtMs < GROUP_STALL_MS) continue
      const up = group.members.filter((peer) => this.network.peers.isUp(peer)).length
      if (up * 2 > group.members.length) continue
      group.failed = true
      this.metrics.counters.groupsReassigned++
      this.trace(
        group,
        `stalled since t=${(group.lastProgressAtMs / 1000).toFixed(1)}s with ${up} members up: re-announced`,
      )
      this.releasePeers(group)
      this.dropState(group)
      this.owner.groupDissolved(group)
    }
  }

  private trace(group: GroupState, text: string): void {
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
      random: this.network.random.fork(),
      electionTicks: p.electionTicks,
      heartbeatTicks: p.heartbeatTicks,
      preVote: true,
      checkQuorum: true,
      applied: snapshot.metadata.index,
    })
    this.trace(group, `member ${position + 1} started at index ${snapshot.metadata.index}, step ${app.step}`)
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

  private tick(group: GroupState): void {
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
        const lead = Number(node.lead) - 1
        if (lead >= 0 && lead !== group.sentTo[position]) this.sendGradient(group, position)
      }
    }
    this.loop.at(this.now + this.parameters.raftTickMs, EventKind.groupTick, group.id)
  }

  private startCompute(group: GroupState, position: number, step: number): void {
    const peers = this.network.peers
    const peer = group.members[position]
    const backend = peers.backend[peer]
    const ms =
      STEP_COMPUTE_MS_BY_BACKEND[backend] * peers.slowFactor[peer] * (0.9 + 0.2 * this.network.random.float())
    group.computingStep[position] = step
    this.loop.at(this.now + ms, EventKind.gradientComputed, group.id, position, step)
  }

  private gradientComputed(group: GroupState, position: number, step: number): void {
    if (group.done || group.failed || !group.nodes[position] || group.computingStep[position] !== step) return
    group.computingStep[position] = -1
    if (step !== group.appliedStep[position] + 1) return
    const peer = group.members[position]
    const random = this.network.random
    group.computedStep[position] = step
    group.computedNorm[position] = this.network.peers.byzantine[peer]
      ? random.chance(0.5)
        ? Number.NaN
        : 1e6
      : 1 + 0.05 * random.float()
    group.sentTo[position] = -1
    this.sendGradient(group, position)
  }

  private sendGradient(group: GroupState, position: number): void {
    const node = group.nodes[position]
    if (!node) return
    const lead = Number(node.lead) - 1
    if (lead < 0) return
    group.sentTo[position] = lead
    const gradient: GradientInFlight = {
      to: lead,
      step: group.computedStep[position],
      norm: group.computedNorm[position],
    }
    if (lead === position) {
      this.gradientArrives(group, position, gradient)
      return
    }
    const network = this.network
    const peers = network.peers
    const from = group.members[position]
    const to = group.members[lead]
    this.metrics.counters.gradientsSent++
    peers.countSent(from, GRADIENT_BYTES)
    if (network.lost(from, to)) return
    // the gradient queues on the sender's uplink behind what it is already sending
    const start = Math.max(this.now, peers.uplinkFreeAtMs[from])
    const done = start + GRADIENT_BYTES / peers.uploadBytesPerMs[from]
    peers.uplinkFreeAtMs[from] = done
    this.loop.at(done + network.latencyMs(from, to), EventKind.gradientArrives, group.id, position, gradient)
  }

  private gradientArrives(group: GroupState, from: number, gradient: GradientInFlight): void {
    const { to, step, norm } = gradient
    const node = group.nodes[to]
    if (group.done || group.failed || !node || node.state !== 'leader') return
    if (from !== to) this.network.peers.countReceived(group.members[to], GRADIENT_BYTES)
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

  private stepGrace(group: GroupState, step: number): void {
    if (group.done || group.failed || group.collector.step !== step) return
    group.graceAtMs = -1
    this.considerProposal(group, group.collector.leader)
  }

  /** The leader's decision for the collected step (the real quorum and screening rules), then the proposal. */
  private considerProposal(group: GroupState, leader: number): void {
    const node = group.nodes[leader]
    if (node?.state !== 'leader') return
    const collector = group.collector
    const step = collector.step
    // one proposal per step per leadership (a new leader or term proposes again)
    if (group.proposedStep === step && group.proposedTerm === node.term) return
    const decision = collector.decide(this.now)
    if (decision.kind === 'wait') {
      // the straggler timer: decide again once it has run out
      if (decision.decideAtMs !== undefined && group.graceAtMs !== decision.decideAtMs) {
        group.graceAtMs = decision.decideAtMs
        this.loop.at(decision.decideAtMs, EventKind.stepGrace, group.id, step)
      }
      return
    }
    let mask = 0
    for (const member of decision.accepted) mask |= 1 << member
    const counters = this.metrics.counters
    const byzantine = this.network.peers.byzantine
    try {
      node.propose(this.encoder.encode(`${step}|${mask}`))
      group.proposedStep = step
      group.proposedTerm = node.term
      let liars = 0
      for (const peer of group.members) liars += byzantine[peer]
      const honestMajority = (group.members.length - liars) * 2 > group.members.length
      for (const member of decision.accepted) {
        if (byzantine[group.members[member]] !== 1) continue
        counters.byzantineGradientsAccepted++
        if (honestMajority) counters.byzantineGradientsAcceptedWithHonestMajority++
      }
      for (const { position } of decision.rejected) {
        counters.gradientsRejected++
        if (byzantine[group.members[position]] === 1) counters.byzantineGradientsRejected++
      }
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error
      counters.proposalsDropped++
    }
    this.processReady(group, leader)
  }

  private sendRaft(group: GroupState, message: Message): void {
    const fromPosition = Number(message.from) - 1
    const toPosition = Number(message.to) - 1
    const from = group.members[fromPosition]
    const to = group.members[toPosition]
    const network = this.network
    const counters = this.metrics.counters
    counters.raftMessagesSent++
    let bytes = RAFT_MESSAGE_BYTES
    for (const entry of message.entries) bytes += entry.data.length + 24
    network.peers.countSent(from, bytes)
    if (
      network.lost(from, to) ||
      (network.peers.byzantine[from] === 1 &&
        network.random.chance(this.parameters.byzantineRaftDropProbability))
    ) {
      counters.raftMessagesDropped++
      return
    }
    this.loop.at(this.now + network.latencyMs(from, to), EventKind.raftMessage, group.id, toPosition, message)
  }

  private deliverRaft(group: GroupState, position: number, message: Message): void {
    if (group.done || group.failed) return
    const node = group.nodes[position]
    if (!node) {
      this.metrics.counters.raftMessagesToStoppedMembers++
      return
    }
    this.network.peers.countReceived(group.members[position], RAFT_MESSAGE_BYTES)
    node.step(message)
    this.processReady(group, position)
  }

  /** Handles every Ready in the one Ready order (protocols/raft/ready.ts), checking safety as it applies. */
  private processReady(group: GroupState, position: number): void {
    this.violationGroup = group
    const counters = this.metrics.counters
    for (let round = 0; ; round++) {
      const node = group.nodes[position]
      if (!node?.hasReady()) return
      if (round > READY_ROUNDS_MAX)
        throw new SafetyViolation('bounded-ready', `member ${position + 1} kept producing Ready`)
      handleReady(node, {
        // a group that completed while applying has dropped its storage: nothing is left to write
        save: (update) => group.storages[position]?.save(update),
        send: (messages) => {
          for (const message of messages) this.sendRaft(group, message)
        },
        apply: (ready) => {
          if (ready.softState) {
            const leader = ready.softState.state === 'leader'
            if (leader && !group.wasLeader[position]) this.onNewLeader(group, position, node)
            group.wasLeader[position] = leader
          }
          if (ready.snapshot) {
            const app = this.decodeAppState(ready.snapshot, group.firstStep)
            counters.safetyChecks++
            group.checkers.state(String(position + 1), ready.snapshot.metadata.index, app.digest)
            group.appliedIndex[position] = ready.snapshot.metadata.index
            group.appliedStep[position] = app.step
            group.digest[position] = app.digest
            counters.snapshotsInstalled++
            this.trace(group, `member ${position + 1} installed snapshot at ${ready.snapshot.metadata.index}`)
          }
          this.checkCommitted(group, position, node)
          for (const entry of ready.committedEntries) this.apply(group, position, entry)
        },
        halted: () => group.done,
        advanced: (ready) => {
          if (ready.committedEntries.length > 0) this.maybeSnapshot(group, position, node)
        },
      })
      if (group.done) return
    }
  }

  private onNewLeader(group: GroupState, position: number, node: RaftNode): void {
    this.metrics.leaderElected()
    group.collector.leaderChanged(group.appliedStep[position] + 1)
    group.leaderChanges++
    this.metrics.counters.safetyChecks++
    const log = node.log
    this.trace(
      group,
      `member ${position + 1} became leader of term ${node.term} (last index ${log.lastIndex()})`,
    )
    group.checkers.newLeader(
      String(position + 1),
      node.term,
      log.firstIndex() - 1,
      log.lastIndex(),
      (index) => log.term(index),
    )
  }

  private checkCommitted(group: GroupState, position: number, node: RaftNode): void {
    // each member's newly committed entries are checked once (a restart checks its log again)
    const log = node.log
    const from = Math.max(log.firstIndex(), group.checkedCommit[position] + 1, 1)
    const to = log.committed
    if (from > to) return
    group.checkedCommit[position] = to
    for (const entry of log.slice(from, to + 1)) {
      this.metrics.counters.safetyChecks++
      group.checkers.committedEntry(String(position + 1), entry)
    }
  }

  private apply(group: GroupState, position: number, entry: Entry): void {
    const digest = entryDigest(entry)
    const state = chainDigest(group.digest[position], digest)
    this.metrics.counters.safetyChecks++
    group.checkers.applied(String(position + 1), group.appliedIndex[position], entry, state)
    group.appliedIndex[position] = entry.index
    group.digest[position] = state
    if (entry.type !== 'normal' || entry.data.length === 0) return
    const step = Number(this.decoder.decode(entry.data).split('|')[0])
    if (step !== group.appliedStep[position] + 1) {
      if (position === 0) this.metrics.counters.duplicateStepEntries++
      return
    }
    group.appliedStep[position] = step
    if (step > group.committedStep) {
      group.committedStep = step
      group.lastProgressAtMs = this.now
      this.metrics.stepCommitted(group.slot)
      if (step >= group.lastStep) this.complete(group)
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
      node.confState(),
      this.encodeAppState(group.appliedStep[position], group.digest[position]),
    )
    if (applied - 20 >= storage.firstIndex()) storage.compact(applied - 20)
    // the checkers may forget what every member has compacted away
    let lowest = Number.POSITIVE_INFINITY
    for (const s of group.storages) lowest = Math.min(lowest, s.firstIndex())
    group.checkers.forgetBelow(lowest - 1)
  }

  private complete(group: GroupState): void {
    group.done = true
    this.metrics.counters.groupsCompleted++
    this.trace(group, `completed step ${group.lastStep}`)
    this.releasePeers(group)
    this.dropState(group)
    this.owner.groupCompleted(group)
  }

  private releasePeers(group: GroupState): void {
    const groupSlot = this.network.peers.groupSlot
    for (const peer of group.members) if (groupSlot[peer] === group.id) groupSlot[peer] = -1
  }

  /** A finished or dissolved group keeps only its summary: the run's memory stays bounded by live groups. */
  private dropState(group: GroupState): void {
    group.nodes.fill(undefined)
    group.storages = []
    group.collector = new StepCollector(0)
    group.checkers = new SafetyCheckers()
    group.trace = []
  }
}
