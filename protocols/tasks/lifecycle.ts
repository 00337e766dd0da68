/**
 * The submitter's view of one task as a pure state machine: `stepTask(record, event)` returns the next
 * record and the effects the coordinator must carry out (send assignments, average an outer round,
 * write the result). No clock (time is in the events), no IO, no randomness, so the coordinator's
 * decisions are replayable in tests and a restarted daemon resumes from the stored record.
 *
 *   staffing --enough claims--> running --all groups done--> finishing --result written--> completed
 *   staffing --deadline--> failed
 *   running/finishing --a group loses its majority to failed members--> failed
 *   any live state --cancel--> cancelled
 *
 * A group is `running` while it reports progress, `stalled` when it has not for `stallMs` or when its
 * members report no leader (no majority), `waiting` while it waits for an outer round, `done` at the end.
 *
 * Membership change: a group stalled for `replaceAfterMs` more, whose silent members (no report for
 * `stallMs`) are presumed gone, goes `replacing` once the submitter holds a TrainingState one of its live
 * members published (they publish it while they have no leader). The task is announced again and new
 * claimants fill the vacated places; the group is then re-formed as its next incarnation (a new Raft
 * group of the survivors and the newcomers) starting from that state:
 *
 *   running --no progress for stallMs--> stalled --replaceAfterMs more, a state held--> replacing
 *   replacing --enough new claims--> running (incarnation + 1)
 *   stalled/replacing --step advances--> running
 *
 * Members that come back before the re-formation rejoin their group as before.
 *
 * A group that still trains on its majority while some of its members stay silent for `stallMs` +
 * `replaceAfterMs` is re-formed the same way, without stopping first: the submitter asks the next
 * member that reports to publish its TrainingState (`stateWanted`, answered in the progress reply),
 * and once it holds that state the silent members are `vacated` and new claimants take their places.
 * The group trains on meanwhile; the steps it commits after that state are recomputed by the new
 * incarnation. A vacated member that reports again before then keeps its place.
 *
 * A group whose every member went silent before any of them published a state starts over: the
 * submitter builds the initial TrainingState (step 0, the task's seed) and new claimants re-form the
 * whole group from it. Its steps are recomputed; at each outer boundary it is sent the round already
 * averaged (as a new leader is), so it rejoins the other groups with the agreed parameters.
 */
import { assignGroups, type Claimant, type GroupAssignment, rankClaimants } from './assignment.js'
import { REPLACE_AFTER_MS_DEFAULT } from './spec.js'

export const TERMINAL_STATES = ['completed', 'failed', 'cancelled'] as const
export type TerminalState = (typeof TERMINAL_STATES)[number]
export type TaskState = 'staffing' | 'running' | 'finishing' | TerminalState
export type GroupStatus = 'running' | 'stalled' | 'replacing' | 'waiting' | 'done'

/** A group whose step has not advanced for this long is stalled (the `stallMs` of a tick). */
export const STALL_MS_DEFAULT = 15_000
/** Progress points kept per task (older ones are thinned out). */
export const HISTORY_MAX = 500
export const DECLINED_MAX = 256
export const CLAIMANTS_MAX = 1024
/** `stateFetching` while the submitter builds a group's initial state (every member is gone) */
export const INITIAL_STATE = 'initial'

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
  /**
   * members that could not be assigned or failed for good, with why;
   * the group runs on while a majority remains
   */
  failed?: Array<{ peerId: string; reason: string }>
  /** 0 as first formed; one more each time the group is re-formed with new members */
  incarnation?: number
  /** when each current member last reported (a member silent for stallMs is presumed gone) */
  seenMs?: Record<string, number>
  /**
   * the most advanced TrainingState a live member published while the group had no leader,
   * held by the submitter
   */
  stateCid?: string
  stateStep?: number
  /** a state block being fetched from the member that published it (INITIAL_STATE: being built) */
  stateFetching?: string
  /** the members presumed gone, whose places new claimants take (status `replacing`, or a group
   * that trains on its majority meanwhile) */
  vacated?: string[]
  /** the group trains on without some members: the next member that reports is asked for its state */
  stateWanted?: boolean
  /** earlier incarnations: who left, when, and the step the group went on from */
  reformed?: Array<{ incarnation: number; vacated: string[]; joined: string[]; step: number; timeMs: number }>
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
  /** test accuracy of the last averaged model (each outer round, then the final one): classifiers */
  accuracy?: number
  /**
   * validation bits per byte of the last averaged model (byte language models): an estimate on part
   * of the split at outer rounds, the whole split at the end
   */
  bitsPerByte?: number
  testLoss?: number
  resultDir?: string
  error?: string
  /** the submitter's task-specific extras (spec summary shown by `task ID`) */
  summary: Record<string, unknown>
  /** how long a stalled group waits for its members before new claimants replace them; 0: never */
  replaceAfterMs?: number
  /** claims received while a group is replacing members, not placed yet */
  spares?: Claimant[]
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
      /** the incarnation the reporter runs (reports of another are the coordinator's to refuse) */
      incarnation?: number
      /** a TrainingState block the reporter published while its group had no leader ('' for none) */
      stateCid?: string
      nowMs: number
    }
  | {
      type: 'state-stored'
      group: number
      incarnation: number
      stateCid: string
      step: number
      /** the state answers an initial-state effect */
      initial?: boolean
      nowMs: number
    }
  /** a state could not be fetched (stateCid), or built (stateCid INITIAL_STATE) */
  | { type: 'state-unavailable'; group: number; stateCid: string; nowMs: number }
  | { type: 'assignment-failed'; peerId: string; group: number; reason: string; nowMs: number }
  | {
      type: 'outer-sent'
      round: number
      paramsCid: string
      accuracy?: number
      bitsPerByte?: number
      nowMs: number
    }
  | { type: 'member-error'; peerId: string; group: number; error: string; nowMs: number }
  | {
      type: 'finished'
      accuracy?: number
      bitsPerByte?: number
      testLoss: number
      resultDir: string
      nowMs: number
    }
  | { type: 'fail'; reason: string; nowMs: number }
  | { type: 'cancel'; reason: string; nowMs: number }

export type TaskEffect =
  | { type: 'assign'; groups: GroupAssignment[] }
  | { type: 'outer-round'; round: number; sources: Array<{ group: number; paramsCid: string; from: string }> }
  | { type: 'resend-outer'; round: number; paramsCid: string; to: string; group: number }
  | { type: 'finalize'; sources: Array<{ group: number; paramsCid: string; from: string }> }
  | { type: 'release'; reason: string }
  /** fetch a member's TrainingState block into the submitter's store, then report state-stored */
  | { type: 'fetch-state'; group: number; incarnation: number; stateCid: string; from: string; step: number }
  /** build the task's initial TrainingState (step 0) as a block, then report state-stored with initial */
  | { type: 'initial-state'; group: number; incarnation: number }
  /** send the re-formed group its assignments (incarnation > 0, starting from stateCid) */
  | {
      type: 'reform'
      group: number
      members: string[]
      incarnation: number
      stateCid: string
      vacated: string[]
    }
  /** tell these peers the task does not need them (claims not placed) */
  | { type: 'dismiss'; peers: string[]; reason: string }
  | { type: 'persist' }

export interface StepResult {
  record: TaskRecord
  effects: TaskEffect[]
}

export class IllegalTaskTransitionError extends Error {
  static override name = 'IllegalTaskTransitionError'
  override name = 'IllegalTaskTransitionError'
}

export function isTerminal(state: TaskState): state is TerminalState {
  return (TERMINAL_STATES as readonly TaskState[]).includes(state)
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
  replaceAfterMs?: number
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
  let reason =
    `could not staff the task before its deadline: found ${found} eligible ` +
    `worker${found === 1 ? '' : 's'}, needed ${record.needed}`
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

/** Whether the task takes claims: while staffing, and while a running group waits for new members. */
export function isRecruiting(record: TaskRecord): boolean {
  return (
    record.state === 'staffing' ||
    (record.state === 'running' && record.groups.some((g) => g.vacated !== undefined))
  )
}

/** The group's members that have not reported for more than `silentMs`. */
function silentMembers(group: GroupRecord, nowMs: number, silentMs: number): string[] {
  return group.members.filter((m) => nowMs - (group.seenMs?.[m] ?? 0) > silentMs)
}

/**
 * Whether the reply to `from`'s progress report asks it for its TrainingState: its group trains on
 * without silent members, no state is held or being fetched yet, and `from` reported itself leader.
 */
export function stateWantedFrom(record: TaskRecord, group: number, from: string, leader: string): boolean {
  const g = record.groups.find((candidate) => candidate.group === group)
  return (
    g?.stateWanted === true && g.stateCid === undefined && g.stateFetching === undefined && leader === from
  )
}

/** Re-forms every replacing group that enough spare claimants can fill; dismisses spares nobody needs. */
function placeSpares(record: TaskRecord, nowMs: number, effects: TaskEffect[]): void {
  for (const group of record.groups) {
    if (group.vacated === undefined || group.stateCid === undefined) continue
    const ranked = rankClaimants(record.spares ?? [])
    const vacated = group.vacated
    if (ranked.length < vacated.length) continue
    const joined = ranked.slice(0, vacated.length).map((c) => c.peerId)
    record.spares = ranked.slice(vacated.length)
    const members = [...group.members.filter((m) => !vacated.includes(m)), ...joined]
    const incarnation = (group.incarnation ?? 0) + 1
    const step = group.stateStep ?? 0
    effects.push({
      type: 'reform',
      group: group.group,
      members,
      incarnation,
      stateCid: group.stateCid,
      vacated,
    })
    group.reformed = [...(group.reformed ?? []), { incarnation, vacated, joined, step, timeMs: nowMs }]
    group.members = members
    group.incarnation = incarnation
    group.status = 'running'
    group.step = step
    group.leader = ''
    group.advancedMs = nowMs
    group.updatedMs = nowMs
    group.seenMs = Object.fromEntries(members.map((m) => [m, nowMs]))
    group.failed = []
    group.vacated = undefined
    group.stateWanted = undefined
    // the new incarnation publishes states of its own if it stalls in turn
    group.stateCid = undefined
    group.stateStep = undefined
    group.stateFetching = undefined
  }
  const spares = record.spares ?? []
  if (spares.length > 0 && !record.groups.some((g) => g.vacated !== undefined)) {
    effects.push({ type: 'dismiss', peers: spares.map((c) => c.peerId), reason: 'not selected' })
    record.spares = []
  }
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
      if (record.state === 'running' && isRecruiting(record)) {
        const peerId = event.claimant.peerId
        const spares = record.spares ?? []
        if (
          record.groups.some((g) => g.members.includes(peerId)) ||
          spares.some((c) => c.peerId === peerId) ||
          spares.length >= CLAIMANTS_MAX
        ) {
          return { record: previous, effects }
        }
        record.spares = [...spares, event.claimant]
        placeSpares(record, event.nowMs, effects)
        effects.push({ type: 'persist' })
        return { record, effects }
      }
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
          incarnation: 0,
          seenMs: Object.fromEntries(g.members.map((m) => [m, event.nowMs])),
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
      const replaceAfterMs = record.replaceAfterMs ?? REPLACE_AFTER_MS_DEFAULT
      for (const group of record.groups) {
        if (group.status === 'running' && event.nowMs - group.advancedMs > event.stallMs) {
          group.status = 'stalled'
          changed = true
        }
        // stalled for replaceAfterMs more: the silent members' places go to new claimants, if the
        // submitter holds a state to re-form the group from
        if (
          group.status === 'stalled' &&
          record.state === 'running' &&
          replaceAfterMs > 0 &&
          event.nowMs - group.advancedMs > event.stallMs + replaceAfterMs
        ) {
          const vacated = silentMembers(group, event.nowMs, event.stallMs)
          if (group.stateCid !== undefined && vacated.length > 0) {
            group.status = 'replacing'
            group.vacated = vacated
            changed = true
          } else if (
            group.stateCid === undefined &&
            group.stateFetching === undefined &&
            vacated.length === group.members.length
          ) {
            // every member is gone and none left a state: the group starts over from step 0
            group.stateFetching = INITIAL_STATE
            effects.push({ type: 'initial-state', group: group.group, incarnation: group.incarnation ?? 0 })
            changed = true
          }
        }
      }
      for (const group of record.groups) {
        // a group training on its majority without members silent for stallMs + replaceAfterMs: ask
        // for a fresh state, then vacate their places
        if (
          (group.status !== 'running' && group.status !== 'waiting') ||
          group.vacated !== undefined ||
          record.state !== 'running' ||
          replaceAfterMs <= 0
        ) {
          continue
        }
        const silent = silentMembers(group, event.nowMs, event.stallMs + replaceAfterMs)
        if (silent.length === 0) {
          if (group.stateWanted === true) {
            group.stateWanted = undefined
            changed = true
          }
        } else if (group.stateWanted !== true) {
          // a state published before this (while leaderless) is stale: wait for a fresh one
          group.stateWanted = true
          group.stateCid = undefined
          group.stateStep = undefined
          changed = true
        } else if (group.stateCid !== undefined) {
          group.vacated = silent
          changed = true
        }
      }
      if (!changed) return { record: previous, effects }
      placeSpares(record, event.nowMs, effects)
      effects.push({ type: 'persist' })
      return { record, effects }
    }
    case 'progress': {
      const group = record.groups.find((g) => g.group === event.group)
      if (group === undefined || !group.members.includes(event.from)) return { record: previous, effects }
      if (group.status === 'done') return { record: previous, effects }
      group.seenMs = { ...group.seenMs, [event.from]: event.nowMs }
      // a vacated member of a group that trains on without it reports again: it keeps its place
      const minorityReturned =
        group.status !== 'replacing' &&
        group.status !== 'stalled' &&
        group.vacated?.includes(event.from) === true
      if (minorityReturned) {
        group.vacated = undefined
        group.stateWanted = undefined
      }
      const stateCid = event.stateCid ?? ''
      if (
        stateCid !== '' &&
        stateCid !== group.stateCid &&
        stateCid !== group.stateFetching &&
        event.step >= (group.stateStep ?? 0)
      ) {
        group.stateFetching = stateCid
        effects.push({
          type: 'fetch-state',
          group: group.group,
          incarnation: group.incarnation ?? 0,
          stateCid,
          from: event.from,
          step: event.step,
        })
      }
      // a report from a member that is behind the others says little about the group: keep the furthest
      if (event.step < group.step && !event.done) return { record, effects }
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
      const halted = group.status === 'stalled' || group.status === 'replacing'
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
      } else if (event.leader === '' && group.step > (group.reformed?.at(-1)?.step ?? 0)) {
        // no leader after training started: the group lost its majority (before the first step of
        // this incarnation its first election is still running)
        if (group.status !== 'replacing') group.status = 'stalled'
      } else if (group.waitingRound > record.outerRound) {
        group.status = 'waiting'
      } else if (!halted || group.advancedMs === event.nowMs) {
        // a stalled group is running again once its step advances (its members came back)
        group.status = 'running'
        if (halted) group.vacated = undefined
      }
      if ((halted && group.status !== 'stalled' && group.status !== 'replacing') || minorityReturned)
        placeSpares(record, event.nowMs, effects)
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
          // a round every group applied was sent, even if the submitter stopped before recording it
          const appliedByAll = Math.min(...record.groups.map((g) => g.appliedRound))
          record.outerRound = Math.max(record.outerRound, appliedByAll)
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
      // (a round may already be counted: every group applied it and finished before this arrived)
      const counted =
        event.round <= record.outerRound && record.outerParamsCids[event.round - 1] === undefined
      if (event.round !== record.outerRound + 1 && !counted) return { record: previous, effects }
      record.outerRound = Math.max(record.outerRound, event.round)
      record.averagingRound = 0
      record.outerParamsCids[event.round - 1] = event.paramsCid
      if (event.accuracy !== undefined) record.accuracy = event.accuracy
      if (event.bitsPerByte !== undefined) record.bitsPerByte = event.bitsPerByte
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
    case 'state-stored':
    case 'state-unavailable': {
      const group = record.groups.find((g) => g.group === event.group)
      if (group === undefined) return { record: previous, effects }
      const awaited = event.type === 'state-stored' && event.initial === true ? INITIAL_STATE : event.stateCid
      if (group.stateFetching === awaited) group.stateFetching = undefined
      if (
        event.type === 'state-stored' &&
        event.incarnation === (group.incarnation ?? 0) &&
        event.step >= (group.stateStep ?? 0)
      ) {
        group.stateCid = event.stateCid
        group.stateStep = event.step
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
        record.error =
          `group ${group.group} lost its majority: ` +
          `${group.failed.map((f) => `${f.peerId} ${f.reason}`).join('; ')}`
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
      if (event.accuracy !== undefined) record.accuracy = event.accuracy
      if (event.bitsPerByte !== undefined) record.bitsPerByte = event.bitsPerByte
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
