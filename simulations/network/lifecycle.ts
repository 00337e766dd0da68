// A thin adapter from the simulator's peer rows and numbers to the real task lifecycle the daemon
// runs, so the simulator decides nothing of its own about staffing: protocols/tasks/lifecycle.ts
// `stepTask` (the node coordinator's state machine, which calls `assignGroups` from
// protocols/tasks/assignment.ts) gets every claim as it arrives and decides when a task is staffed
// and who goes into which group. (Training steps run the real member core: members.ts.)

import { assert } from '../../protocols/raft/types.js'
import type { Claimant } from '../../protocols/tasks/assignment.js'
import { newTaskRecord, stepTask, type TaskRecord } from '../../protocols/tasks/lifecycle.js'

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
