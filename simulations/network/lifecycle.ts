// Thin adapters from the simulator's peer rows and numbers to the real pure state machines the
// daemon runs, so the simulator decides nothing of its own about staffing or gradient acceptance:
// - staffing: protocols/tasks/lifecycle.ts `stepTask` (the node coordinator's state machine, which
//   calls `assignGroups` from protocols/tasks/assignment.ts) gets every claim as it arrives and
//   decides when a task is staffed and who goes into which group;
// - one training step at the leader: protocols/training/aggregate.ts `screenGradients` (refuses
//   NaN/Inf on arrival and norm outliers at aggregation), `quorumSize`, `quorumDecision` and
//   `expectedMembers` (when to stop waiting for stragglers), in the order TrainingGroup.admit and
//   TrainingGroup.maybeAggregate (protocols/training/group.ts) call them.
// Gradients are not computed (kernel work is modelled by time): a member's gradient is a short
// probe vector whose L2 norm is the one the simulator chose (NaN or huge for a lying peer), which is
// all the screening rule reads of a gradient besides its length and its loss.

import { assert } from '../../protocols/raft/types.js'
import type { Claimant } from '../../protocols/tasks/assignment.js'
import { newTaskRecord, stepTask, type TaskRecord } from '../../protocols/tasks/lifecycle.js'
import {
  type Contribution,
  NORM_FACTOR_MAX_DEFAULT,
  quorumSize,
  type ScreeningReason,
  STRAGGLER_TIMEOUT_MS_DEFAULT,
  screenGradients,
  screenIfReady,
} from '../../protocols/training/aggregate.js'

/** A peer row's id in the real state machines (they order and deduplicate peers by this string). */
export function peerName(row: number): string {
  return `p${row}`
}

export function peerRow(name: string): number {
  const row = Number(name.slice(1))
  assert(name[0] === 'p' && Number.isInteger(row) && row >= 0, `not a simulated peer id: ${name}`)
  return row
}

/** The buffer size a simulated claimant reports (no simulated task sets a memory requirement). */
export const CLAIMANT_MAX_BUFFER_BYTES = 256 * 2 ** 20

/**
 * One staffing round of one task as the submitter's real lifecycle record sees it: claims go in as
 * they arrive; the record turns `running` (and yields its groups) as soon as `assignGroups` finds
 * enough claimants, exactly when the daemon's coordinator would send its assignments.
 */
export class StaffingRound {
  private record: TaskRecord

  constructor(init: {
    id: string
    groups: number
    groupSize: number
    steps: number
    nowMs: number
    deadlineMs: number
  }) {
    this.record = newTaskRecord({
      id: init.id,
      kind: 'train',
      createdMs: init.nowMs,
      deadlineMs: init.deadlineMs,
      groupCount: init.groups,
      groupSize: init.groupSize,
      steps: init.steps,
      needed: init.groups * init.groupSize,
      summary: {},
    })
  }

  get state(): TaskRecord['state'] {
    return this.record.state
  }

  get claimants(): number {
    return this.record.claimants.length
  }

  /** Feeds one claim; returns the groups (peer rows, group by group) when this claim staffed the task. */
  claim(peer: number, claimant: Omit<Claimant, 'peerId'>, nowMs: number): number[][] | undefined {
    const { record, effects } = stepTask(this.record, {
      type: 'claim',
      claimant: { peerId: peerName(peer), ...claimant },
      nowMs,
    })
    this.record = record
    for (const effect of effects) {
      if (effect.type === 'assign') return effect.groups.map((group) => group.members.map(peerRow))
    }
    return undefined
  }

  /** The staffing deadline passed: the record fails unless it was staffed; returns why it failed. */
  expire(nowMs: number): string | undefined {
    const { record } = stepTask(this.record, { type: 'tick', nowMs, stallMs: Number.POSITIVE_INFINITY })
    this.record = record
    return record.state === 'failed' ? record.error : undefined
  }
}

/** Length of the probe gradient that stands for a member's real gradient. */
export const GRADIENT_PROBE_LENGTH = 4
/** The loss an honest member reports with its gradient (the screening rule only checks it is finite). */
export const PROBE_LOSS = 2.3

/** A gradient of GRADIENT_PROBE_LENGTH equal values whose L2 norm is `norm` (NaN/Infinity give NaN/Inf values). */
export function probeGradient(norm: number): Float32Array {
  return new Float32Array(GRADIENT_PROBE_LENGTH).fill(norm / Math.sqrt(GRADIENT_PROBE_LENGTH))
}

export type StepDecision =
  | { kind: 'wait'; decideAtMs: number | undefined }
  | {
      kind: 'aggregate'
      /** Member positions whose gradients go into the step. */
      accepted: number[]
      /** Member positions refused, on arrival or at aggregation, with the rule's reason. */
      rejected: { position: number; reason: ScreeningReason }[]
    }

/**
 * The leader's collection for one step of one group, as TrainingGroup keeps it: admitted
 * contributions, members refused on arrival, when the quorum was reached, and each member's last
 * step seen (a silent member stops being waited for after a few steps). Members are named by
 * position ("0", "1", ...), as the sorted names the real group uses.
 */
export class StepCollector {
  step = -1
  leader = -1
  private readonly memberNames: string[]
  private contributions = new Map<string, Contribution>()
  private rejected = new Map<string, ScreeningReason>()
  private quorumAtMs: number | undefined
  private readonly lastSeenStep = new Map<string, number>()
  private leaderSinceStep = 0

  constructor(
    members: number,
    readonly stragglerTimeoutMs = STRAGGLER_TIMEOUT_MS_DEFAULT,
    readonly normFactorMax = NORM_FACTOR_MAX_DEFAULT,
  ) {
    this.memberNames = Array.from({ length: members }, (_, position) => String(position))
  }

  /** A member became leader while `step` was the next step (TrainingGroup.leaderChanged). */
  leaderChanged(step: number): void {
    this.leaderSinceStep = step
  }

  /** A member was heard from about `step` (any gradient at or below the step being collected). */
  seen(position: number, step: number): void {
    const name = this.memberNames[position]
    this.lastSeenStep.set(name, Math.max(this.lastSeenStep.get(name) ?? -1, step))
  }

  /** Starts collecting `step` under `leader`, dropping what was collected for another step or leader. */
  collect(step: number, leader: number): void {
    if (this.step === step && this.leader === leader) return
    this.step = step
    this.leader = leader
    this.contributions = new Map()
    this.rejected = new Map()
    this.quorumAtMs = undefined
  }

  /** TrainingGroup.admit: NaN/Inf are refused on arrival; returns the reason or undefined. */
  admit(position: number, norm: number, loss: number, nowMs: number): ScreeningReason | undefined {
    const name = this.memberNames[position]
    this.seen(position, this.step)
    const contribution: Contribution = { member: name, gradient: probeGradient(norm), loss }
    const screened = screenGradients([contribution], GRADIENT_PROBE_LENGTH)
    if (screened.rejected.length > 0) {
      if (!this.contributions.has(name)) this.rejected.set(name, screened.rejected[0].reason)
      return screened.rejected[0].reason
    }
    if (!this.contributions.has(name)) {
      this.rejected.delete(name)
      this.contributions.set(name, contribution)
    }
    if (this.quorumAtMs === undefined && this.contributions.size >= quorumSize(this.memberNames.length))
      this.quorumAtMs = nowMs
    return undefined
  }

  /** When the straggler timer runs out: the first time t with t - quorumAtMs >= stragglerTimeoutMs. */
  private timeoutAtMs(): number | undefined {
    const quorumAtMs = this.quorumAtMs
    if (quorumAtMs === undefined) return undefined
    let at = quorumAtMs + this.stragglerTimeoutMs
    // float rounding can leave (at - quorumAtMs) a hair under the timeout: step past it
    while (at - quorumAtMs < this.stragglerTimeoutMs) at += Math.max(Number.MIN_VALUE, at * Number.EPSILON)
    return at
  }

  /** TrainingGroup.maybeAggregate: aggregate now, or wait (until `decideAtMs` when the straggler timer runs). */
  decide(nowMs: number): StepDecision {
    const screened = screenIfReady({
      collected: { contributions: this.contributions, rejected: this.rejected, quorumAtMs: this.quorumAtMs },
      members: this.memberNames,
      lastSeenStep: this.lastSeenStep,
      step: this.step,
      leaderSinceStep: this.leaderSinceStep,
      nowMs,
      stragglerTimeoutMs: this.stragglerTimeoutMs,
      expectedLength: GRADIENT_PROBE_LENGTH,
      normFactorMax: this.normFactorMax,
    })
    if (screened === undefined) return { kind: 'wait', decideAtMs: this.timeoutAtMs() }
    return {
      kind: 'aggregate',
      accepted: screened.accepted.map((c) => Number(c.member)),
      rejected: [
        ...[...this.rejected].map(([member, reason]) => ({ position: Number(member), reason })),
        ...screened.rejected.map((r) => ({ position: Number(r.member), reason: r.reason })),
      ],
    }
  }
}
