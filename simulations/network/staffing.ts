// Training tasks and their staffing: the network is kept busy with tasks while group slots are
// free; each task is announced over gossip, the first idle peers it reaches claim it over direct
// streams, and the submitter's real lifecycle record (lifecycle.ts StaffingRound over
// protocols/tasks stepTask -> assignGroups) staffs it as soon as enough claims are in. The
// assignments travel to the members (groups.ts starts them). A task completes when all its groups
// have; a group dissolved for good is re-announced from its last committed step.
//
// Events handled here: announce, claimArrives, staffingDeadline.
import { assert } from '../../protocols/raft/types.js'
import { REANNOUNCE_MS_DEFAULT } from '../../protocols/tasks/index.js'
import type { SafetyCheckers } from '../raft/checkers.js'
import { EventKind, type EventLoop } from './events.js'
import { ASSIGNMENT_BYTES, type GroupOwner, type GroupState, Groups } from './groups.js'
import { CLAIMANT_MAX_BUFFER_BYTES, StaffingRound } from './lifecycle.js'
import { type Metrics, round3 } from './metrics.js'
import type { Network } from './network.js'
import type { DerivedParameters } from './parameters.js'
import { CLAIM_BACKEND_BY_CLASS } from './peers.js'

/** Bytes of a task announcement (signed gossip message with the task CID and requirements). */
export const ANNOUNCEMENT_BYTES = 400
export const CLAIM_BYTES = 200
/** The staffing deadline of one announcement: the task's record fails if too few claims came by then. */
export const CLAIM_WINDOW_MS = 2000
/** Claims asked for per seat (the first arrivals claim; the rest of the network stays quiet). */
export const CLAIM_SURPLUS = 2
/** Most claims one announcement may collect. */
export const TASK_CLAIMS_MAX = 2000
/** Re-announcements of a task that found too few claimers before it is abandoned. */
export const ANNOUNCE_RETRIES_MAX = 10
/** Most tasks (and so groups, a few per task) one run may create; their summaries stay for the report. */
export const TASKS_MAX = 1_000_000

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

export class Staffing implements GroupOwner {
  private readonly tasks: TaskState[] = []
  /** Group slots no task holds (the network runs at most `groups` groups at once). */
  private readonly freeSlots: number[] = []
  /** The task each peer has claimed and holds itself free for, -1 when none. */
  private readonly claimedBy: Int32Array
  private nextTaskAtMs = 0
  /** The groups of every task (each task owns the groups staffed for it). */
  readonly groups: Groups

  constructor(
    private readonly parameters: DerivedParameters,
    private readonly loop: EventLoop,
    private readonly network: Network,
    private readonly metrics: Metrics,
    createCheckers: () => SafetyCheckers,
  ) {
    this.groups = new Groups(parameters, loop, network, metrics, this, createCheckers)
    this.claimedBy = new Int32Array(network.peers.capacity).fill(-1)
    for (let slot = parameters.groups - 1; slot >= 0; slot--) this.freeSlots.push(slot)
    loop.handle({
      [EventKind.announce]: (task) => this.announce(this.tasks[task]),
      [EventKind.claimArrives]: (task, peer, round) => this.claimArrives(this.tasks[task], peer, round),
      [EventKind.staffingDeadline]: (task, round) => this.staffingDeadline(this.tasks[task], round),
    })
  }

  private get now(): number {
    return this.loop.now
  }

  /** Creates tasks while group slots are free, announced over the next `spreadMs`. */
  startTasks(spreadMs: number): void {
    const p = this.parameters
    const network = this.network
    while (this.freeSlots.length >= p.groupsPerTask && network.upCount > p.groupsPerTask * p.groupSize * 2) {
      const id = this.tasks.length
      assert(id < TASKS_MAX, `more than ${TASKS_MAX} tasks in one run`)
      const task: TaskState = {
        id,
        submitter: network.randomUpPeer(),
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
      const at =
        Math.max(this.now, this.nextTaskAtMs) + (spreadMs > 0 ? network.random.float() * spreadMs : 0)
      this.nextTaskAtMs = this.now
      this.loop.at(at, EventKind.announce, id)
    }
  }

  submitterOf(task: number): number {
    return this.tasks[task].submitter
  }

  /** A churn event hit `peer`: counted against the task its group serves. */
  noteChurn(peer: number): void {
    const slot = this.network.peers.groupSlot[peer]
    if (slot >= 0) {
      const group = this.groups.all[slot]
      if (!group.done) this.tasks[group.task].churnSeen++
    }
  }

  private announce(task: TaskState): void {
    const p = this.parameters
    const network = this.network
    const peers = network.peers
    const counters = this.metrics.counters
    if (!peers.isUp(task.submitter)) task.submitter = network.randomUpPeer()
    task.announcedAtMs = task.announcedAtMs < 0 ? this.now : task.announcedAtMs
    task.round++
    task.staffing = new StaffingRound({
      id: `task-${task.id}-${task.round}`,
      groups: task.pending.length,
      groupSize: p.groupSize,
      steps: task.steps,
      nowMs: this.now,
      deadlineMs: this.now + CLAIM_WINDOW_MS,
    })
    counters.announcements++
    const flood = network.gossip.flood(
      task.submitter,
      this.now,
      ANNOUNCEMENT_BYTES,
      network.upList,
      network.upCount,
    )
    counters.gossipReachedSum += flood.reached
    counters.gossipUpSum += flood.peersUp
    counters.gossipReachedShareMin = Math.min(counters.gossipReachedShareMin, flood.reached / flood.peersUp)
    counters.gossipDuplicates += flood.duplicates
    counters.gossipLost += flood.lost
    counters.gossipLazyDeliveries += flood.lazyDeliveries
    const arrival = network.gossip.arrivalMs
    // the first idle arrivals claim (bounded insertion into a sorted window)
    const wanted = Math.min(TASK_CLAIMS_MAX, task.pending.length * p.groupSize * CLAIM_SURPLUS)
    const window: number[] = []
    for (let i = 0; i < network.upCount; i++) {
      const peer = network.upList[i]
      const time = arrival[peer]
      if (time === Number.POSITIVE_INFINITY) continue
      if (peer !== task.submitter) this.metrics.propagation.add(time)
      if (peer === task.submitter || peers.groupSlot[peer] >= 0 || this.claimedBy[peer] >= 0) continue
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
      this.claimedBy[peer] = task.id
      counters.claimsSent++
      peers.countSent(peer, CLAIM_BYTES)
      if (network.lost(peer, task.submitter)) {
        counters.claimsLost++
        continue
      }
      const at = this.now + arrival[peer] + network.latencyMs(peer, task.submitter)
      this.loop.at(at, EventKind.claimArrives, task.id, peer, task.round)
    }
    this.loop.at(this.now + CLAIM_WINDOW_MS, EventKind.staffingDeadline, task.id, task.round)
  }

  /** A claim reaches the submitter: its real lifecycle record takes it, and may staff the task with it. */
  private claimArrives(task: TaskState, peer: number, round: number): void {
    const staffing = task.staffing
    const peers = this.network.peers
    if (!staffing || task.round !== round || !peers.isUp(task.submitter)) return
    // a claimer that gave up on the task (its claim window passed) no longer holds itself free for it
    if (this.claimedBy[peer] !== task.id) return
    peers.countReceived(task.submitter, CLAIM_BYTES)
    const plan = staffing.claim(
      peer,
      {
        backend: CLAIM_BACKEND_BY_CLASS[peers.backend[peer]],
        gflops: peers.gflops[peer],
        maxBufferBytes: CLAIMANT_MAX_BUFFER_BYTES,
      },
      this.now,
    )
    if (plan) this.assign(task, plan)
  }

  private releaseClaims(task: TaskState): void {
    // claimers that were not picked, and those whose claims were lost, are free again
    for (let peer = 0; peer < this.network.peers.count; peer++)
      if (this.claimedBy[peer] === task.id) this.claimedBy[peer] = -1
  }

  /** The staffing deadline of an announcement: a record still staffing fails; the task is announced again. */
  private staffingDeadline(task: TaskState, round: number): void {
    const staffing = task.staffing
    if (!staffing || task.round !== round) return
    task.staffing = undefined
    // a submitter that is down stays silent; its record fails at the deadline all the same
    const reason = staffing.expire(this.now)
    assert(reason !== undefined, 'a staffing record outlived its deadline')
    this.releaseClaims(task)
    if (++task.retries > ANNOUNCE_RETRIES_MAX) {
      task.failed = true
      this.metrics.counters.tasksAbandoned++
      for (const [slot] of task.pending) this.freeSlots.push(slot)
      task.pending = []
      this.record(task)
      return
    }
    this.metrics.counters.announcementsRetried++
    // announced again as the coordinator re-announces a task still staffing
    this.loop.at(this.now + REANNOUNCE_MS_DEFAULT, EventKind.announce, task.id)
  }

  /** The record staffed the task: every member gets its assignment over a stream. */
  private assign(task: TaskState, plan: number[][]): void {
    const p = this.parameters
    const network = this.network
    task.staffing = undefined
    const assigned = new Set<number>()
    plan.forEach((members, g) => {
      assert(members.length === p.groupSize, 'assignment returned a group of the wrong size')
      const [slot, firstStep] = task.pending[g]
      const group = this.groups.create(task, slot, firstStep, members)
      task.activeGroups.push(group.id)
      for (const [position, peer] of members.entries()) {
        assert(!assigned.has(peer), `assignment put peer ${peer} in two groups`)
        assigned.add(peer)
        network.peers.groupSlot[peer] = group.id
        network.peers.countSent(task.submitter, ASSIGNMENT_BYTES)
        // an assignment travels over a stream: a loss costs a retransmission, not the message
        const delay = network.streamLatencyMs(task.submitter, peer)
        this.loop.at(this.now + delay, EventKind.assignmentArrives, group.id, position)
      }
    })
    task.pending = []
    this.releaseClaims(task)
  }

  groupCompleted(group: GroupState): void {
    this.freeSlots.push(group.slot)
    const task = this.tasks[group.task]
    task.doneGroups++
    task.activeGroups = task.activeGroups.filter((id) => id !== group.id)
    if (task.activeGroups.length === 0 && task.pending.length === 0 && task.completedAtMs < 0) {
      task.completedAtMs = this.now
      this.metrics.counters.tasksCompleted++
      this.record(task)
    }
    this.startTasks(0)
  }

  /** The group's slot stays with its task, which is announced again for the remaining steps. */
  groupDissolved(group: GroupState): void {
    const task = this.tasks[group.task]
    task.reassignments++
    task.activeGroups = task.activeGroups.filter((id) => id !== group.id)
    task.pending.push([group.slot, group.committedStep + 1])
    task.retries = 0
    this.loop.at(this.now, EventKind.announce, task.id)
  }

  private record(task: TaskState): void {
    this.metrics.taskRecords.push({
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

  /** At the end of the run: every task announced, neither completed nor abandoned, is recorded as running. */
  recordUnfinished(): void {
    for (const task of this.tasks) {
      if (task.completedAtMs < 0 && !task.failed && task.announcedAtMs >= 0) this.record(task)
    }
  }
}
