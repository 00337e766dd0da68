// Training groups: each group is a Raft cluster of real RaftNode members (protocols/raft over
// MemoryStorage) with the Raft simulator's SafetyCheckers beside it, and every member runs the real
// training-member core (members.ts over protocols/training/member.ts), fed by its node as the Raft
// runner feeds it in the daemon: leadership, entries appending / appended / committed, snapshots
// that carry the core's encoded state. A group completes when it has committed its last step; one
// that lost its majority for good is dissolved and staffing.ts re-announces its remaining steps.
//
// Events handled here: groupTick, raftMessage, assignmentArrives.
import { RaftNode } from '../../protocols/raft/node.js'
import { handleReady, type ReadyDriver } from '../../protocols/raft/ready.js'
import { MemoryStorage } from '../../protocols/raft/storage.js'
import { assert, type Entry, type Message, type Snapshot } from '../../protocols/raft/types.js'
import { GROUP_RAFT_DEFAULTS } from '../../protocols/training/group.js'
import type { MemberCore } from '../../protocols/training/member.js'
import { chainDigest, entryDigest, SafetyCheckers, SafetyViolation } from '../raft/checkers.js'
import { EventKind, type EventLoop } from './events.js'
import { Members, memberName } from './members.js'
import { type Metrics, SAMPLE_STALLED_MS } from './metrics.js'
import type { Network } from './network.js'
import { type DerivedParameters, GROUP_SIZE_MAX } from './parameters.js'

/** Bytes of an assignment (the submitter's stream message naming the task, group and members). */
export const ASSIGNMENT_BYTES = 300
/** Per-message framing overhead of a Raft message (its entries are counted at their simulated size). */
export const RAFT_MESSAGE_BYTES = 120
/** A group without a commit this long, with a majority of members gone, is dissolved and re-announced. */
export const GROUP_STALL_MS = 180_000
/** Events of each group's trace kept for a safety-violation report. */
export const TRACE_EVENTS_MAX = 120
/** Ready rounds one processReady may take before it is a bug. */
export const READY_ROUNDS_MAX = 100
/** A member's digest chain before it applied anything. */
const INITIAL_DIGEST = '00000000'

export interface GroupState {
  id: number
  slot: number
  task: number
  members: number[]
  nodes: (RaftNode | undefined)[]
  /** What each member's node does with a Ready (made when the node starts). */
  drivers: (ReadyDriver | undefined)[]
  /** Each member's training core (members.ts), undefined while the member is down. */
  cores: (MemberCore | undefined)[]
  /** Each member's runs so far: events for an earlier run are dropped. */
  incarnation: number[]
  /** Each member's core deadline its timer is armed for. */
  wakeAtMs: number[]
  /** Each member has a rearm of its deadline queued for the end of the current event. */
  rearming: boolean[]
  /** Each member has a tick queued for the end of the current event. */
  tickQueued: boolean[]
  storages: MemoryStorage[]
  started: boolean[]
  appliedIndex: number[]
  checkedCommit: number[]
  /** Each member's digest chain over the entries it applied (what the safety checkers compare). */
  digest: string[]
  wasLeader: boolean[]
  checkers: SafetyCheckers
  trace: string[]
  firstStep: number
  lastStep: number
  committedStep: number
  lastProgressAtMs: number
  createdAtMs: number
  leaderChanges: number
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
  private readonly members: Members
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
    this.members = new Members(
      loop,
      network,
      metrics,
      {
        processReady: (group, position) => this.processReady(group, position),
        stepApplied: (group, _position, step) => this.stepApplied(group, step),
        trace: (group, text) => this.trace(group, text),
      },
      parameters.model,
    )
    this.members.groups = this.all
    loop.handle({
      [EventKind.groupTick]: (group) => this.tick(this.all[group]),
      [EventKind.raftMessage]: (group, position, message) =>
        this.deliverRaft(this.all[group], position, message),
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
    assert(k <= GROUP_SIZE_MAX, `a group of ${k} members (at most ${GROUP_SIZE_MAX})`)
    const id = this.all.length
    const group: GroupState = {
      id,
      slot,
      task: task.id,
      members,
      nodes: new Array(k).fill(undefined),
      drivers: new Array(k).fill(undefined),
      cores: new Array(k).fill(undefined),
      incarnation: new Array(k).fill(0),
      wakeAtMs: new Array(k).fill(Number.POSITIVE_INFINITY),
      rearming: new Array(k).fill(false),
      tickQueued: new Array(k).fill(false),
      storages: members.map(() => new MemoryStorage()),
      started: new Array(k).fill(false),
      appliedIndex: new Array(k).fill(0),
      checkedCommit: new Array(k).fill(0),
      digest: new Array(k).fill(INITIAL_DIGEST),
      wasLeader: new Array(k).fill(false),
      checkers: this.createCheckers(),
      trace: [],
      firstStep,
      lastStep: task.steps,
      committedStep: firstStep - 1,
      lastProgressAtMs: this.now,
      createdAtMs: this.now,
      leaderChanges: 0,
      done: false,
      failed: false,
    }
    const voters = members.map((_, i) => memberName(i))
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
    group.drivers[position] = undefined
    this.members.stop(group, position)
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

  /** Starts the member's Raft node and training core from its storage (a restart finds its log there). */
  private startNode(group: GroupState, position: number): void {
    const p = this.parameters
    const storage = group.storages[position]
    const snapshot = storage.snapshot()
    const app = this.decodeAppState(snapshot)
    group.appliedIndex[position] = snapshot.metadata.index
    group.checkedCommit[position] = 0
    group.digest[position] = app.digest
    group.wasLeader[position] = false
    this.members.start(group, position, app.training)
    const node = new RaftNode({
      id: memberName(position),
      storage,
      random: this.network.random.fork(),
      electionTicks: p.electionTicks,
      heartbeatTicks: p.heartbeatTicks,
      preVote: true,
      checkQuorum: true,
      applied: snapshot.metadata.index,
    })
    group.nodes[position] = node
    group.drivers[position] = this.readyDriver(group, position, node)
    const step = this.members.stepsApplied(group, position)
    this.trace(group, `member ${position + 1} started at index ${snapshot.metadata.index}, step ${step}`)
  }

  /** A snapshot's application state: the digest chain (8 hex characters), then the core's encoded state. */
  private encodeAppState(group: GroupState, position: number): Uint8Array {
    const digest = this.encoder.encode(group.digest[position])
    const training = this.members.snapshotData(group, position)
    const data = new Uint8Array(digest.length + training.length)
    data.set(digest)
    data.set(training, digest.length)
    return data
  }

  private decodeAppState(snapshot: Snapshot): { digest: string; training: Uint8Array | undefined } {
    if (snapshot.metadata.index === 0 || snapshot.data.length === 0)
      return { digest: INITIAL_DIGEST, training: undefined }
    const length = INITIAL_DIGEST.length
    return {
      digest: this.decoder.decode(snapshot.data.subarray(0, length)),
      training: snapshot.data.subarray(length),
    }
  }

  private tick(group: GroupState): void {
    if (group.done || group.failed) return
    for (let position = 0; position < group.nodes.length; position++) {
      const node = group.nodes[position]
      if (!node) continue
      node.tick()
      this.processReady(group, position)
    }
    this.loop.at(this.now + this.parameters.raftTickMs, EventKind.groupTick, group.id)
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

  /** Handles every Ready of the member in the one Ready order (protocols/raft/ready.ts). */
  private processReady(group: GroupState, position: number): void {
    this.violationGroup = group
    for (let round = 0; ; round++) {
      const node = group.nodes[position]
      const driver = group.drivers[position]
      if (!node || !driver || !node.hasReady()) return
      if (round > READY_ROUNDS_MAX)
        throw new SafetyViolation('bounded-ready', `member ${position + 1} kept producing Ready`)
      handleReady(node, driver)
      if (group.done) return
    }
  }

  /**
   * What the member does with a Ready: storage, links and safety checks, and what the Raft runner
   * tells the training core in the daemon (a snapshot's state, leadership, entries appending,
   * appended and committed).
   */
  private readyDriver(group: GroupState, position: number, node: RaftNode): ReadyDriver {
    const counters = this.metrics.counters
    const members = this.members
    return {
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
          const index = ready.snapshot.metadata.index
          const app = this.decodeAppState(ready.snapshot)
          counters.safetyChecks++
          group.checkers.state(memberName(position), index, app.digest)
          group.appliedIndex[position] = index
          group.digest[position] = app.digest
          counters.snapshotsInstalled++
          this.trace(group, `member ${position + 1} installed snapshot at ${index}`)
          if (app.training)
            members.input(group, position, { type: 'snapshot', data: app.training, nowMs: this.now })
        }
        if (ready.softState) {
          const isLeader = ready.softState.state === 'leader'
          const leader = ready.softState.lead
          members.input(group, position, {
            type: 'leadership',
            leader,
            isLeader,
            term: node.term,
            nowMs: this.now,
          })
        }
        this.checkCommitted(group, position, node)
        if (ready.committedEntries.length === 0) return
        for (const entry of ready.committedEntries) this.checkApplied(group, position, entry)
        this.applyCommitted(group, position, ready.committedEntries)
      },
      appending: (entries) =>
        members.input(group, position, { type: 'entries-appending', entries, nowMs: this.now }),
      appended: (entries) =>
        members.input(group, position, { type: 'entries-appended', entries, nowMs: this.now }),
      halted: () => group.done,
      advanced: (ready) => {
        if (ready.committedEntries.length > 0) this.maybeSnapshot(group, position, node)
      },
    }
  }

  private onNewLeader(group: GroupState, position: number, node: RaftNode): void {
    this.metrics.leaderElected()
    group.leaderChanges++
    this.metrics.counters.safetyChecks++
    const log = node.log
    this.trace(
      group,
      `member ${position + 1} became leader of term ${node.term} (last index ${log.lastIndex()})`,
    )
    group.checkers.newLeader(
      memberName(position),
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
      group.checkers.committedEntry(memberName(position), entry)
    }
  }

  private checkApplied(group: GroupState, position: number, entry: Entry): void {
    const state = chainDigest(group.digest[position], entryDigest(entry))
    this.metrics.counters.safetyChecks++
    group.checkers.applied(memberName(position), group.appliedIndex[position], entry, state)
    group.appliedIndex[position] = entry.index
    group.digest[position] = state
  }

  /** The member's core applies the committed entries; a training entry that moves no step is a duplicate. */
  private applyCommitted(group: GroupState, position: number, entries: Entry[]): void {
    const before = this.members.stepsApplied(group, position)
    this.members.input(group, position, { type: 'entries-committed', entries, nowMs: this.now })
    if (position !== 0 || group.done) return
    let training = 0
    for (const entry of entries) if (entry.type === 'normal' && entry.data.length > 0) training++
    this.metrics.counters.duplicateStepEntries +=
      training - (this.members.stepsApplied(group, position) - before)
  }

  /** A member applied step `step`: the group's progress, and its completion at the last step. */
  private stepApplied(group: GroupState, step: number): void {
    if (step <= group.committedStep) return
    group.committedStep = step
    group.lastProgressAtMs = this.now
    this.metrics.stepCommitted(group.slot)
    if (step >= group.lastStep) this.complete(group)
  }

  private maybeSnapshot(group: GroupState, position: number, node: RaftNode): void {
    const storage = group.storages[position]
    const snapshotIndex = storage.snapshot().metadata.index
    const applied = group.appliedIndex[position]
    // a training group's cadence in the daemon: a snapshot every snapshotEntries applied entries,
    // then the log compacted to its last compactionKeepEntries
    const { snapshotEntries, compactionKeepEntries } = GROUP_RAFT_DEFAULTS
    if (applied - snapshotIndex < snapshotEntries) return
    storage.createSnapshot(applied, node.confState(), this.encodeAppState(group, position))
    const compactTo = applied - compactionKeepEntries
    if (compactTo >= storage.firstIndex()) storage.compact(compactTo)
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
    group.drivers.fill(undefined)
    for (let position = 0; position < group.members.length; position++) this.members.stop(group, position)
    group.storages = []
    group.checkers = new SafetyCheckers()
    group.trace = []
  }
}
