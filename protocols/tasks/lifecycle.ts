/**
 * The submitter's view of one task as a pure state machine: `stepTask(record, event)` returns the next
 * record and the effects the coordinator must carry out (send assignments, average an outer round,
 * write the result). No clock (time is in the events), no IO, no randomness, so the coordinator's
 * decisions are replayable in tests and a restarted daemon resumes from the stored record.
 *
 *   staffing --enough claims--> running --all groups done--> finishing --result written--> completed
 *   staffing --deadline--> failed        running/finishing --a group loses its majority to failed members--> failed
 *   any live state --cancel--> cancelled
 *
 * A group is `running` while it reports progress, `stalled` when it has not for `stallMs` or when its
 * members report no leader (no majority), `waiting` while it waits for an outer round, `done` at the end.
 */
import { assignGroups, type Claimant, type GroupAssignment } from './assignment.js'

export type TaskState = 'staffing' | 'running' | 'finishing' | 'completed' | 'failed' | 'cancelled'
export type GroupStatus = 'running' | 'stalled' | 'waiting' | 'done'

export const TERMINAL_STATES: readonly TaskState[] = ['completed', 'failed', 'cancelled']
/** Progress points kept per task (older ones are thinned out). */
export const HISTORY_MAX = 500
export const DECLINED_MAX = 256
export const CLAIMANTS_MAX = 1024

export interface GroupRecord {
  group: number
  members: string[]
  status: GroupStatus
  leader: string
  step: number
  loss: number
  samplesPerSecond: number
  /** when the group last reported */
  updatedMs: number
  /** when its step last advanced (stall detection) */
  advancedMs: number
  /** the outer round (1-based) the group is waiting at; 0 when not waiting */
  waitingRound: number
  /** where the group's parameters for waitingRound (or the end) can be fetched */
  paramsCid: string
  paramsFrom: string
  /** the outer round the group last applied */
  appliedRound: number
  /** members that could not be assigned or failed for good, with why; the group runs on while a majority remains */
  failed?: Array<{ peerId: string; reason: string }>
}

export interface TaskRecord {
  id: string
  kind: 'train' | 'infer'
  state: TaskState
  createdMs: number
  updatedMs: number
  /** staffing fails at this time */
  deadlineMs: number
  needed: number
  groupCount: number
  groupSize: number
  steps: number
  claimants: Claimant[]
  declined: Array<{ peerId: string; reason: string }>
  groups: GroupRecord[]
  /** the last outer round whose average was sent to every group */
  outerRound: number
  /** the averaged parameters' block of each completed outer round (index round - 1) */
  outerParamsCids: string[]
  /** the outer round being averaged now (0: none), so a burst of reports starts it only once */
  averagingRound: number
  /** (step, loss) of the slowest group, sampled */
  history: Array<{ step: number; loss: number; timeMs: number }>
  /** test accuracy of the last averaged model (each outer round, then the final one) */
  accuracy?: number
  testLoss?: number
  resultDir?: string
  error?: string
  /** the submitter's task-specific extras (spec summary shown by `task ID`) */
  summary: Record<string, unknown>
}

export type TaskEvent =
  | { type: 'claim'; claimant: Claimant; nowMs: number }
  | { type: 'decline'; peerId: string; reason: string; nowMs: number }
  | { type: 'tick'; nowMs: number; stallMs: number }
  | {
      type: 'progress'
      from: string
      group: number
      step: number
      loss: number
      samplesPerSecond: number
      leader: string
      waitingRound: number
      paramsCid: string
      appliedRound: number
      done: boolean
      nowMs: number
    }
  | { type: 'assignment-failed'; peerId: string; group: number; reason: string; nowMs: number }
  | { type: 'outer-sent'; round: number; paramsCid: string; accuracy?: number; nowMs: number }
  | { type: 'member-error'; peerId: string; group: number; error: string; nowMs: number }
  | { type: 'finished'; accuracy: number; testLoss: number; resultDir: string; nowMs: number }
  | { type: 'fail'; reason: string; nowMs: number }
  | { type: 'cancel'; reason: string; nowMs: number }

export type TaskEffect =
  | { type: 'assign'; groups: GroupAssignment[] }
  | { type: 'outer-round'; round: number; sources: Array<{ group: number; paramsCid: string; from: string }> }
  | { type: 'resend-outer'; round: number; paramsCid: string; to: string; group: number }
  | { type: 'finalize'; sources: Array<{ group: number; paramsCid: string; from: string }> }
  | { type: 'release'; reason: string }
  | { type: 'persist' }

export interface StepResult {
  record: TaskRecord
  effects: TaskEffect[]
}

export class IllegalTaskTransitionError extends Error {
  static override name = 'IllegalTaskTransitionError'
  override name = 'IllegalTaskTransitionError'
}

export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.includes(state)
}

export function newTaskRecord(init: {
  id: string
  kind: 'train' | 'infer'
  createdMs: number
  deadlineMs: number
  groupCount: number
  groupSize: number
  steps: number
  needed: number
  summary: Record<string, unknown>
}): TaskRecord {
  return {
    ...init,
    state: 'staffing',
    updatedMs: init.createdMs,
    claimants: [],
    declined: [],
    groups: [],
    outerRound: 0,
    outerParamsCids: [],
    averagingRound: 0,
    history: [],
  }
}

/** Why staffing failed, in one sentence. */
export function staffingFailureReason(record: TaskRecord): string {
  const found = record.claimants.length
  let reason = `could not staff the task before its deadline: found ${found} eligible worker${found === 1 ? '' : 's'}, needed ${record.needed}`
  if (record.declined.length > 0) {
    const reasons = new Map<string, number>()
    for (const d of record.declined) reasons.set(d.reason, (reasons.get(d.reason) ?? 0) + 1)
    const listed = [...reasons].map(([why, n]) => `${n} declined: ${why}`).join('; ')
    reason += ` (${listed})`
  }
  return reason
}

function clone(record: TaskRecord): TaskRecord {
  return structuredClone(record)
}

function pushHistory(record: TaskRecord, point: { step: number; loss: number; timeMs: number }): void {
  const last = record.history.at(-1)
  if (last !== undefined && last.step >= point.step) return
  record.history.push(point)
  if (record.history.length > HISTORY_MAX) {
    // keep the first point and every other one after it: the curve keeps its shape at half the points
    record.history = record.history.filter((_, i) => i === 0 || i % 2 === 1)
  }
}

function sources(record: TaskRecord) {
  return record.groups.map((g) => ({ group: g.group, paramsCid: g.paramsCid, from: g.paramsFrom }))
}

export function stepTask(previous: TaskRecord, event: TaskEvent): StepResult {
  const record = clone(previous)
  const effects: TaskEffect[] = []
  record.updatedMs = Math.max(record.updatedMs, event.nowMs)
  if (isTerminal(record.state)) {
    // late messages about a finished task are ignored, not errors: the network is asynchronous
    return { record: previous, effects }
  }
  switch (event.type) {
    case 'claim': {
      if (record.state !== 'staffing') return { record: previous, effects }
      if (record.claimants.some((c) => c.peerId === event.claimant.peerId))
        return { record: previous, effects }
      if (record.claimants.length >= CLAIMANTS_MAX) return { record: previous, effects }
      record.claimants.push(event.claimant)
      record.declined = record.declined.filter((d) => d.peerId !== event.claimant.peerId)
      const assignment = assignGroups(record.claimants, record.groupCount, record.groupSize)
      if (assignment.ok) {
        record.state = 'running'
        record.groups = assignment.groups.map((g) => ({
          group: g.group,
          members: g.members,
          status: 'running',
          leader: '',
          step: 0,
          loss: Number.NaN,
          samplesPerSecond: 0,
          updatedMs: event.nowMs,
          advancedMs: event.nowMs,
          waitingRound: 0,
          paramsCid: '',
          paramsFrom: '',
          appliedRound: 0,
          failed: [],
        }))
        effects.push({ type: 'assign', groups: assignment.groups })
      }
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'decline': {
      if (record.state !== 'staffing') return { record: previous, effects }
      if (record.declined.length >= DECLINED_MAX || record.declined.some((d) => d.peerId === event.peerId))
        return { record: previous, effects }
      record.declined.push({ peerId: event.peerId, reason: event.reason })
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'tick': {
      if (record.state === 'staffing') {
        if (event.nowMs >= record.deadlineMs) {
          record.state = 'failed'
          record.error = staffingFailureReason(record)
          effects.push({ type: 'release', reason: record.error }, { type: 'persist' })
          return { record, effects }
        }
        return { record: previous, effects }
      }
      let changed = false
      for (const group of record.groups) {
        if (group.status === 'running' && event.nowMs - group.advancedMs > event.stallMs) {
          group.status = 'stalled'
          changed = true
        }
      }
      if (!changed) return { record: previous, effects }
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'progress': {
      const group = record.groups.find((g) => g.group === event.group)
      if (group === undefined || !group.members.includes(event.from)) return { record: previous, effects }
      if (group.status === 'done') return { record: previous, effects }
      // a report from a member that is behind the others says little about the group: keep the furthest
      if (event.step < group.step && !event.done) return { record: previous, effects }
      if (event.waitingRound > 0 && event.waitingRound <= record.outerRound) {
        // a leader (perhaps a new one) asks again for a round already averaged: send it again
        effects.push({
          type: 'resend-outer',
          round: event.waitingRound,
          paramsCid: record.outerParamsCids[event.waitingRound - 1],
          to: event.from,
          group: group.group,
        })
      }
      if (event.step > group.step) group.advancedMs = event.nowMs
      group.step = event.step
      if (Number.isFinite(event.loss)) group.loss = event.loss
      group.samplesPerSecond = event.samplesPerSecond
      group.leader = event.leader
      group.updatedMs = event.nowMs
      group.appliedRound = Math.max(group.appliedRound, event.appliedRound)
      if (event.done) {
        group.status = 'done'
        group.paramsCid = event.paramsCid
        group.paramsFrom = event.from
        group.waitingRound = 0
      } else if (event.waitingRound > record.outerRound && event.paramsCid !== '') {
        group.status = 'waiting'
        group.waitingRound = event.waitingRound
        group.paramsCid = event.paramsCid
        group.paramsFrom = event.from
      } else if (event.leader === '' && group.step > 0) {
        // no leader after training started: the group lost its majority (before the first step the
        // first election is still running)
        group.status = 'stalled'
      } else if (group.waitingRound > record.outerRound) {
        group.status = 'waiting'
      } else if (group.status !== 'stalled' || group.advancedMs === event.nowMs) {
        // a stalled group is running again once its step advances
        group.status = 'running'
      }
      const slowest = Math.min(...record.groups.map((g) => g.step))
      const losses = record.groups.map((g) => g.loss).filter(Number.isFinite)
      if (losses.length > 0) {
        pushHistory(record, {
          step: slowest,
          loss: losses.reduce((a, b) => a + b, 0) / losses.length,
          timeMs: event.nowMs,
        })
      }
      if (record.state === 'running') {
        if (record.groups.every((g) => g.status === 'done')) {
          record.state = 'finishing'
          effects.push({ type: 'finalize', sources: sources(record) })
        } else {
          const round = record.outerRound + 1
          if (
            record.averagingRound !== round &&
            record.groups.every((g) => g.status === 'waiting' && g.waitingRound === round)
          ) {
            record.averagingRound = round
            effects.push({ type: 'outer-round', round, sources: sources(record) })
          }
        }
      }
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'outer-sent': {
      if (event.round !== record.outerRound + 1) return { record: previous, effects }
      record.outerRound = event.round
      record.averagingRound = 0
      record.outerParamsCids[event.round - 1] = event.paramsCid
      if (event.accuracy !== undefined) record.accuracy = event.accuracy
      for (const group of record.groups) {
        if (group.waitingRound === event.round) {
          group.waitingRound = 0
          group.status = 'running'
          group.advancedMs = event.nowMs
        }
      }
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'assignment-failed':
    case 'member-error': {
      if (record.state !== 'running' && record.state !== 'finishing') return { record: previous, effects }
      const group = record.groups.find((g) => g.group === event.group)
      if (group === undefined || !group.members.includes(event.peerId)) return { record: previous, effects }
      group.failed ??= []
      if (group.failed.some((f) => f.peerId === event.peerId)) return { record: previous, effects }
      const why = event.type === 'member-error' ? event.error : `could not be assigned: ${event.reason}`
      group.failed.push({ peerId: event.peerId, reason: why })
      // a Raft group of k runs on while a majority (floor(k/2) + 1) of its members remain
      if (group.members.length - group.failed.length <= Math.floor(group.members.length / 2)) {
        record.state = 'failed'
        record.error = `group ${group.group} lost its majority: ${group.failed.map((f) => `${f.peerId} ${f.reason}`).join('; ')}`
        effects.push({ type: 'release', reason: record.error })
      }
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'finished': {
      if (record.state !== 'finishing') {
        throw new IllegalTaskTransitionError(`a task in state ${record.state} cannot finish`)
      }
      record.state = 'completed'
      record.accuracy = event.accuracy
      record.testLoss = event.testLoss
      record.resultDir = event.resultDir
      effects.push({ type: 'release', reason: 'completed' }, { type: 'persist' })
      return { record, effects }
    }
    case 'fail': {
      record.state = 'failed'
      record.error = event.reason
      effects.push({ type: 'release', reason: event.reason }, { type: 'persist' })
      return { record, effects }
    }
    case 'cancel': {
      record.state = 'cancelled'
      record.error = event.reason
      effects.push({ type: 'release', reason: event.reason }, { type: 'persist' })
      return { record, effects }
    }
  }
}
