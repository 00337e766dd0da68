// The submitter's side of a task: validate the request, publish the data and the spec as blocks,
// announce the task, collect claims, assign groups, record progress durably, run the DiLoCo outer
// step across groups, and at the end fetch the final params and write the model. The decisions are
// the pure state machine of protocols/tasks/lifecycle.ts; this file carries out its effects, one
// handler per effect type (the `effects` table: the compiler refuses a table that misses one).

import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import type { Backend } from '../../kernels/backend.js'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { type Claimant, NEUTRAL_SCORE } from '../../protocols/tasks/assignment.js'
import {
  CHALLENGE_SEED_BYTES,
  CHALLENGE_SHAPE_DEFAULT,
  CHALLENGE_TIMEOUT_MS_DEFAULT,
  type ChallengeShape,
  challengeGflops,
  checkChallengeAnswer,
} from '../../protocols/tasks/challenge.js'
import {
  type ClaimPart,
  ClaimRefusedError,
  type ClaimReply,
  ClaimResponse,
  type ClaimsProtocol,
  progressRefusal,
} from '../../protocols/tasks/claims.js'
import {
  REANNOUNCE_INTERVAL_MIN_MS,
  REANNOUNCE_MS_DEFAULT,
  type TaskGossip,
} from '../../protocols/tasks/index.js'
import {
  type GroupRecord,
  INITIAL_STATE,
  isRecruiting,
  isTerminal,
  newTaskRecord,
  STALL_MS_DEFAULT,
  stateWantedFrom,
  stepTask,
  type TaskEffect,
  type TaskEvent,
  type TaskRecord,
} from '../../protocols/tasks/lifecycle.js'
import { GroupReports, type MemberCountsView } from '../../protocols/tasks/reports.js'
import {
  decodeTaskSpec,
  encodeTaskSpec,
  type InferRequest,
  TASK_SPEC_VERSION,
  type TaskRequest,
  type TrainRequest,
  type TrainTaskSpec,
  unmetRequirement,
  workersNeeded,
} from '../../protocols/tasks/spec.js'
import { INLINE_UPDATE_BYTES_MAX, TRAINABLE_PARAMETERS_MAX } from '../../protocols/training/group.js'
import { averageParams } from '../../protocols/training/outer.js'
import { bytesToFloats, floatsToBytes } from '../../protocols/training/params.js'
import { createTrainingState, decodeState, encodeState } from '../../protocols/training/state.js'
import { peerIdFromBytes } from '../../protocols/wire/validation/index.js'
import { ModelFilesError } from '../executor/model-files.js'
import type { ReputationBook } from '../reputation.js'
import type { FileBlockStore } from '../store/block-store.js'
import { InferenceInputError } from './infer-files.js'
import { CoalescingWriter, RecordFolder } from './records.js'
import { TASK_MODELS, type TaskScore } from './task-models.js'

const log = logger('shardnet:tasks:coordinator')

/** A request the daemon refuses (bad field, unknown task, inference not available); status for the API. */
export class TaskRefusedError extends Error {
  static override name = 'TaskRefusedError'
  override name = 'TaskRefusedError'
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message)
  }
}

/** What `shardnet task ID` shows. */
export interface TaskView extends TaskRecord {
  submitter: string
}

export interface CoordinatorInit {
  peerId: PeerId
  claims: ClaimsProtocol
  blocks: BlockExchange
  blockStore: FileBlockStore
  gossip: TaskGossip
  /** how many peers subscribe to the task topic (an announcement with none would reach nobody) */
  topicPeers: () => number
  /** folders: records and results */
  recordsFolder: string
  resultsFolder: string
  /** opens a backend to score the final model on the test set */
  openBackend: () => Promise<Backend>
  /** a group whose step has not advanced for this long is reported stalled. @default STALL_MS_DEFAULT */
  stallMs?: number
  /** runs inference tasks (node/tasks/infer-coordinator.ts); without it infer tasks are refused */
  inference?: InferenceTasks
  /** how often stalls, deadlines and re-announcements are checked. @default TICK_MS_DEFAULT */
  tickMs?: number
  /**
   * how long to wait for a peer on the task topic before announcing anyway
   * @default ANNOUNCE_WAIT_MS_DEFAULT
   */
  announceWaitMs?: number
  /**
   * A task still staffing is announced again this often, so that nodes which joined (or came back)
   * after the first announcement hear it; at least REANNOUNCE_INTERVAL_MIN_MS.
   * @default REANNOUNCE_MS_DEFAULT
   */
  reannounceMs?: number
  /** this node's record of its peers: staffing prefers better scores; outcomes are recorded in it */
  reputation?: ReputationBook
  /** peer ids (strings) of the workers this submitter staffs; empty or absent: anyone */
  allowedWorkers?: ReadonlySet<string>
  /** the capability challenge's shape. @default CHALLENGE_SHAPE_DEFAULT */
  challengeShape?: ChallengeShape
  /** how long a challenge's answer may take. @default CHALLENGE_TIMEOUT_MS_DEFAULT */
  challengeTimeoutMs?: number
  now?: () => number
}

/** A claimant whose reputation score is below this is not staffed (one lie with no other history is). */
export const STAFF_SCORE_MIN = 0.25
/** Challenges waiting for their turn at once (they run one at a time, so timings do not overlap). */
export const CHALLENGES_PENDING_MAX = 32
/** A peer's measured speed is reused for this long (a worker re-claims while a task keeps staffing). */
export const MEASURED_REUSE_MS = 10 * 60_000
/** Peers whose measured speed is remembered. */
export const MEASURED_MAX = 1_000
/** What the submitter refused or measured, by reason (the daemon exports them as metrics). */
export interface CoordinatorCounters {
  /** claims from workers not on the allow-list */
  claimsNotAllowed: number
  /** claims from peers whose reputation score is under STAFF_SCORE_MIN */
  claimsLowScore: number
  challengesPassed: number
  /** answers that failed the float64 check (recorded as 'lied') */
  challengesWrong: number
  /** answers later than the challenge timeout, or none (recorded as 'timed-out') */
  challengesLate: number
  /** claims refused because CHALLENGES_PENDING_MAX challenges were waiting */
  challengesBusy: number
}

/** The result of measuring a claimant. */
type Measurement =
  | { ok: true; gflops: number }
  | { ok: false; fault: 'wrong' | 'late' | 'busy'; reason: string }

/** How often the coordinator checks stalls, deadlines and re-announcements. */
export const TICK_MS_DEFAULT = 500
/** How long a new task waits for a peer on the task topic before it is announced anyway. */
export const ANNOUNCE_WAIT_MS_DEFAULT = 10_000
/** Attempts to send a member a message (an assignment, the averaged params) before giving up on it. */
const SEND_ATTEMPTS_MAX = 5
/** Attempts for an outer round's params: a dead member must not hold the round up long. */
const OUTER_SEND_ATTEMPTS_MAX = 3

/** CoordinatorInit with every default filled in. */
interface CoordinatorConfig {
  stallMs: number
  tickMs: number
  announceWaitMs: number
  reannounceMs: number
  now: () => number
}

function resolveConfig(init: CoordinatorInit): CoordinatorConfig {
  return {
    stallMs: init.stallMs ?? STALL_MS_DEFAULT,
    tickMs: init.tickMs ?? TICK_MS_DEFAULT,
    announceWaitMs: init.announceWaitMs ?? ANNOUNCE_WAIT_MS_DEFAULT,
    reannounceMs: Math.max(REANNOUNCE_INTERVAL_MIN_MS, init.reannounceMs ?? REANNOUNCE_MS_DEFAULT),
    now: init.now ?? Date.now,
  }
}

type EffectType = TaskEffect['type']
type EffectOf<T extends EffectType> = Extract<TaskEffect, { type: T }>
/** One handler per effect of stepTask; a type missing here is a compile error. */
type EffectHandlers = { [T in EffectType]: (live: LiveTask, effect: EffectOf<T>) => Promise<void> }

/**
 * Effects carried out as soon as stepTask returns them. The others run one at a time per task, in
 * order, behind the task's earlier network effects; a record write must not wait behind those.
 */
const IMMEDIATE_EFFECTS: ReadonlySet<EffectType> = new Set<EffectType>(['persist'])

/** The requests workers send a submitter. */
export type SubmitterRequest = Extract<ClaimPart, { type: 'claim' | 'progress' }>
type SubmitterClaim = Extract<ClaimPart, { type: 'claim' }>['claim']
type SubmitterProgress = Extract<ClaimPart, { type: 'progress' }>['progress']

interface LiveTask {
  record: TaskRecord
  spec: TrainTaskSpec
  writer: CoalescingWriter<TaskRecord>
  /** effects run one at a time per task, in order */
  queue: Promise<void>
  /** when the task was last announced (undefined: not yet by this process, e.g. resumed) */
  announcedMs?: number
  announcing: boolean
}

export class Coordinator {
  private readonly init: CoordinatorInit
  private readonly config: CoordinatorConfig
  private readonly tasks = new Map<string, LiveTask>()
  private readonly records: RecordFolder<TaskRecord>
  private readonly now: () => number
  private timer: NodeJS.Timeout | undefined
  private readonly shutdown = new AbortController()
  readonly counters: CoordinatorCounters = {
    claimsNotAllowed: 0,
    claimsLowScore: 0,
    challengesPassed: 0,
    challengesWrong: 0,
    challengesLate: 0,
    challengesBusy: 0,
  }
  /** measured speeds: peer id -> (GFLOP/s, when) */
  private readonly measured = new Map<string, { gflops: number; atMs: number }>()
  private challengeTurn: Promise<void> = Promise.resolve()
  private challengesPending = 0
  /** what each training group reported of its members: `${task}/${group}/${incarnation}` -> tally */
  private readonly reportsSeen = new Map<string, GroupReports>()
  private readonly effects: EffectHandlers = {
    assign: (live, effect) => this.assign(live, effect),
    'fetch-state': (live, effect) => this.fetchState(live, effect),
    'initial-state': (live, effect) => this.initialState(live, effect),
    reform: (live, effect) => this.reform(live, effect),
    dismiss: (live, effect) => this.dismiss(live, effect),
    'outer-round': (live, effect) => this.outerRound(live, effect),
    'resend-outer': (live, effect) => this.resendOuter(live, effect),
    finalize: (live, effect) => this.finalize(live, effect),
    release: (live, effect) => this.release(live, effect),
    persist: async (live) => {
      void live.writer.schedule(live.record)
    },
  }

  constructor(init: CoordinatorInit) {
    this.init = init
    this.config = resolveConfig(init)
    this.records = new RecordFolder<TaskRecord>(init.recordsFolder)
    this.now = this.config.now
  }

  /** Loads every stored task; live ones resume (claims, progress and outer rounds keep arriving). */
  async start(): Promise<void> {
    for (const { id, value } of await this.records.loadAll()) {
      const bytes = await this.init.blockStore.get(CID.parse(id))
      const decoded = bytes === undefined ? undefined : decodeTaskSpec(bytes)
      if (decoded === undefined || !decoded.ok) {
        log.error('task %s has no readable spec block; skipped', id)
        continue
      }
      if (decoded.spec.kind !== 'train') {
        log.error('task %s is not a training task; skipped', id)
        continue
      }
      // members had no one to report to while this daemon was down: none is presumed gone for that
      const nowMs = this.now()
      for (const group of value.groups)
        group.seenMs = Object.fromEntries(group.members.map((m) => [m, nowMs]))
      const live = this.track(value, decoded.spec)
      log('resumed task %s in state %s', id, value.state)
      // an outer round or the final average that was in progress when the daemon stopped is redone
      if (value.state === 'finishing')
        this.enqueue(live, [{ type: 'finalize', sources: this.sourcesOf(value) }])
      else if (value.state === 'running' && (value.averagingRound ?? 0) > 0) {
        this.enqueue(live, [
          { type: 'outer-round', round: value.averagingRound, sources: this.sourcesOf(value) },
        ])
      }
    }
    this.timer = setInterval(() => this.tick(), this.config.tickMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.shutdown.abort()
    await Promise.all([...this.tasks.values()].map((t) => t.writer.flush()))
  }

  private sourcesOf(record: TaskRecord) {
    return record.groups.map((g) => ({ group: g.group, paramsCid: g.paramsCid, from: g.paramsFrom }))
  }

  /** `announcing`: a new task whose first announcement is about to go out (no re-announce before it) */
  private track(record: TaskRecord, spec: TrainTaskSpec, announcing = false): LiveTask {
    const live: LiveTask = {
      record,
      spec,
      writer: new CoalescingWriter((value) => this.records.save(value.id, value)),
      queue: Promise.resolve(),
      announcing,
    }
    this.tasks.set(record.id, live)
    return live
  }

  // -------------------------------------------------------------------------------------------------
  // the user's requests

  async submit(request: TaskRequest): Promise<TaskView> {
    if (request.kind === 'infer' && this.init.inference !== undefined) {
      try {
        return await this.init.inference.submit(request)
      } catch (error) {
        if (error instanceof InferenceInputError || error instanceof ModelFilesError)
          throw new TaskRefusedError(error.message, 400)
        throw error
      }
    }
    if (request.kind !== 'train') {
      throw new TaskRefusedError(
        'inference tasks are not available on this daemon yet (no inference executor is registered)',
        501,
      )
    }
    return this.submitTrain(request)
  }

  private async submitTrain(request: TrainRequest): Promise<TaskView> {
    const parameters = TASK_MODELS[request.model].parameterCount(request)
    if (parameters > TRAINABLE_PARAMETERS_MAX) {
      throw new TaskRefusedError(
        `this ${request.model} has ${parameters} parameters; a training group carries at most ` +
          `${TRAINABLE_PARAMETERS_MAX} (an update travels inside one Raft entry of ` +
          `${INLINE_UPDATE_BYTES_MAX} bytes): choose a smaller model`,
      )
    }
    const put = (bytes: Uint8Array) => this.init.blocks.put(bytes, { provide: false })
    const dataset = await TASK_MODELS[request.model].prepareData(request, put)
    const createdMs = this.now()
    const spec: TrainTaskSpec = {
      version: TASK_SPEC_VERSION,
      kind: 'train',
      requirements: request.requirements,
      staffingDeadlineMs: request.deadlineMs,
      createdMs,
      submitter: this.init.peerId,
      nonce: crypto.getRandomValues(new Uint8Array(16)),
      train: {
        model: request.model,
        hiddenSizes: request.hiddenSizes,
        groups: request.groups,
        groupSize: request.groupSize,
        steps: request.steps,
        batchSize: request.batchSize,
        learningRate: request.learningRate,
        seed: request.seed,
        aggregate: request.aggregate,
        minGradients: request.minGradients,
        outerEvery: request.outerEvery,
        compress: request.compress,
        dataset,
        ...(request.gpt !== undefined ? { gpt: request.gpt } : {}),
      },
    }
    const specCid = await put(encodeTaskSpec(spec))
    const id = specCid.toString()
    const record = newTaskRecord({
      id,
      kind: 'train',
      createdMs,
      deadlineMs: createdMs + request.deadlineMs,
      groupCount: request.groups,
      groupSize: request.groupSize,
      steps: request.steps,
      needed: workersNeeded(spec),
      replaceAfterMs: request.replaceAfterMs,
      summary: {
        model: request.model,
        hiddenSizes: request.hiddenSizes,
        batchSize: request.batchSize,
        learningRate: request.learningRate,
        seed: request.seed,
        aggregate: request.aggregate,
        outerEvery: request.outerEvery,
        compress: request.compress,
        ...(request.gpt !== undefined ? { gpt: request.gpt } : {}),
        dataset: dataset.name,
        trainCount: dataset.trainCount,
        testCount: dataset.testCount,
        shardCids: dataset.shardCids.map(String),
        requirements: request.requirements,
      },
    })
    const live = this.track(record, spec, true)
    await live.writer.schedule(record)
    void this.announce(live)
    return this.view(live.record)
  }

  /** Waits (bounded) until someone listens on the task topic, then announces. */
  private async announce(live: LiveTask): Promise<void> {
    live.announcing = true
    const waitUntil = this.now() + this.config.announceWaitMs
    while (this.init.topicPeers() === 0 && this.now() < waitUntil && !this.shutdown.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    try {
      await this.publishAnnouncement(live, live.spec.staffingDeadlineMs)
    } catch (error) {
      this.apply(live, {
        type: 'fail',
        reason: `announcing the task failed: ${(error as Error).message}`,
        nowMs: this.now(),
      })
    } finally {
      live.announcing = false
    }
  }

  /**
   * Announces a task that is still staffing (or replacing members of a group) again (tick): nodes that
   * joined after the first announcement hear it. It lives until the staffing deadline; a failure is
   * logged, not fatal (the first announcement went out, or the next tick tries again).
   */
  private async reannounce(live: LiveTask, nowMs: number): Promise<void> {
    // a running task recruits replacements for a group that lost its majority: its announcement
    // lives a staffing period of its own
    const remainingMs =
      live.record.state === 'staffing' ? live.record.deadlineMs - nowMs : live.spec.staffingDeadlineMs
    if (remainingMs < 1_000 || this.init.topicPeers() === 0) return
    live.announcing = true
    try {
      await this.publishAnnouncement(live, remainingMs)
    } catch (error) {
      log('re-announcing task %s failed: %s', live.record.id, (error as Error).message)
    } finally {
      live.announcing = false
    }
  }

  private async publishAnnouncement(live: LiveTask, ttlMs: number): Promise<void> {
    const spec = live.spec
    await this.init.gossip.announce({
      taskCid: CID.parse(live.record.id),
      kind: spec.kind,
      requirements: spec.requirements,
      groups: spec.train.groups,
      groupSize: spec.train.groupSize,
      ttlMs,
    })
    live.announcedMs = this.now()
    log('announced task %s to %d topic peers', live.record.id, this.init.topicPeers())
  }

  list(): TaskView[] {
    return [...this.tasks.values()]
      .map((t) => this.view(t.record))
      .concat(this.init.inference?.list() ?? [])
      .sort((a, b) => b.createdMs - a.createdMs)
  }

  /** A task by id or unique id prefix (at least 6 characters); TaskRefusedError 404 otherwise. */
  find(idOrPrefix: string): LiveTask {
    const exact = this.tasks.get(idOrPrefix)
    if (exact !== undefined) return exact
    const matches =
      idOrPrefix.length >= 6
        ? [...this.tasks.keys()].filter((id) => id.startsWith(idOrPrefix) || id.endsWith(idOrPrefix))
        : []
    if (matches.length === 1) return this.tasks.get(matches[0])!
    if (matches.length > 1)
      throw new TaskRefusedError(`the id ${idOrPrefix} matches ${matches.length} tasks; give more of it`, 400)
    throw new TaskRefusedError(`no task ${idOrPrefix} was submitted from this node`, 404)
  }

  get(idOrPrefix: string): TaskView {
    const inference = this.init.inference?.get(idOrPrefix)
    if (inference !== undefined) return inference
    return this.view(this.find(idOrPrefix).record)
  }

  cancel(idOrPrefix: string): TaskView {
    const inference = this.init.inference?.cancel(idOrPrefix)
    if (inference !== undefined) return inference
    const live = this.find(idOrPrefix)
    if (isTerminal(live.record.state)) {
      throw new TaskRefusedError(`task ${live.record.id} is already ${live.record.state}`, 409)
    }
    this.apply(live, { type: 'cancel', reason: 'cancelled by the submitter', nowMs: this.now() })
    return this.view(live.record)
  }

  /** Forgets a finished task and its result folder. */
  async remove(idOrPrefix: string): Promise<void> {
    const live = this.find(idOrPrefix)
    if (!isTerminal(live.record.state)) throw new TaskRefusedError('cancel the task before removing it', 409)
    this.tasks.delete(live.record.id)
    await rm(join(this.init.recordsFolder, `${live.record.id}.json`), { force: true })
    if (live.record.resultDir !== undefined) await rm(live.record.resultDir, { recursive: true, force: true })
  }

  private view(record: TaskRecord): TaskView {
    return { ...structuredClone(record), submitter: this.init.peerId.toString() }
  }

  // -------------------------------------------------------------------------------------------------
  // requests from workers

  /** Claims and progress for tasks we submitted; UNKNOWN_TASK for anything else. */
  async handle(from: PeerId, request: SubmitterRequest): Promise<ClaimReply> {
    const taskCid = request.type === 'claim' ? request.claim.taskCid : request.progress.taskCid
    const live = this.tasks.get(CID.decode(taskCid).toString())
    if (live === undefined) return { status: ClaimResponse.Status.UNKNOWN_TASK, reason: 'no such task here' }
    return request.type === 'claim'
      ? this.onClaim(live, from.toString(), request.claim)
      : this.onProgress(live, from.toString(), request.progress)
  }

  private async onClaim(live: LiveTask, peer: string, claim: SubmitterClaim): Promise<ClaimReply> {
    const nowMs = this.now()
    const allowed = this.init.allowedWorkers
    if (allowed !== undefined && allowed.size > 0 && !allowed.has(peer)) {
      this.counters.claimsNotAllowed++
      return {
        status: ClaimResponse.Status.REFUSED,
        reason: 'this submitter staffs only the workers it lists',
      }
    }
    if (!isRecruiting(live.record)) {
      return {
        status: ClaimResponse.Status.REFUSED,
        reason:
          live.record.state === 'running' ? 'the task is fully staffed' : `the task is ${live.record.state}`,
      }
    }
    if (!claim.eligible) {
      this.apply(live, { type: 'decline', peerId: peer, reason: claim.reason || 'no reason given', nowMs })
      return { status: ClaimResponse.Status.OK, reason: 'noted' }
    }
    // a worker claims again when its claim lapsed while the task kept staffing: already counted
    const record = live.record
    if (
      record.claimants.some((c) => c.peerId === peer) ||
      (record.spares ?? []).some((c) => c.peerId === peer) ||
      record.groups.some((g) => g.members.includes(peer))
    )
      return { status: ClaimResponse.Status.OK, reason: 'claim recorded' }
    const score = this.init.reputation?.score(peer) ?? NEUTRAL_SCORE
    if (score < STAFF_SCORE_MIN) {
      this.counters.claimsLowScore++
      const reason = 'this submitter does not staff peers with its record of this one'
      this.apply(live, { type: 'decline', peerId: peer, reason, nowMs })
      return { status: ClaimResponse.Status.REFUSED, reason }
    }
    const declared: Claimant = {
      peerId: peer,
      backend: claim.capability.backend,
      gflops: claim.capability.gflops,
      maxBufferBytes: claim.capability.maxBufferBytes,
    }
    // what the claim admits to is checked first (no need to measure a worker that says it is too slow)
    const admitted = unmetRequirement(live.spec.requirements, declared)
    if (admitted !== undefined) {
      this.apply(live, { type: 'decline', peerId: peer, reason: admitted, nowMs })
      return { status: ClaimResponse.Status.REFUSED, reason: admitted }
    }
    const measurement = await this.measure(peer, this.taskCidBytes(live))
    if (!measurement.ok) {
      if (measurement.fault !== 'busy') {
        this.apply(live, { type: 'decline', peerId: peer, reason: measurement.reason, nowMs: this.now() })
      }
      return { status: ClaimResponse.Status.REFUSED, reason: measurement.reason }
    }
    const claimant: Claimant = { ...declared, gflops: measurement.gflops, score }
    const refusal = unmetRequirement(live.spec.requirements, claimant)
    if (refusal !== undefined) {
      const reason = `measured: ${refusal}`
      this.apply(live, { type: 'decline', peerId: peer, reason, nowMs: this.now() })
      return { status: ClaimResponse.Status.REFUSED, reason }
    }
    this.apply(live, { type: 'claim', claimant, nowMs: this.now() })
    // the task may have been staffed by others while this claimant was measured: then the claim is not
    // recorded, and the worker is told so at once (it would otherwise hold its slot until its claim lapses)
    const after = live.record
    const recorded =
      after.claimants.some((c) => c.peerId === peer) ||
      (after.spares ?? []).some((c) => c.peerId === peer) ||
      after.groups.some((g) => g.members.includes(peer))
    if (!recorded)
      return {
        status: ClaimResponse.Status.REFUSED,
        reason: after.state === 'running' ? 'the task is fully staffed' : `the task is ${after.state}`,
      }
    return { status: ClaimResponse.Status.OK, reason: 'claim recorded' }
  }

  /**
   * Measures a claimant with the capability challenge (protocols/tasks/challenge.ts): one challenge at a
   * time, so timings do not overlap; a wrong answer is recorded as 'lied', a late one as 'timed-out'. A
   * speed measured in the last MEASURED_REUSE_MS is reused.
   */
  private async measure(peer: string, taskCid: Uint8Array<ArrayBuffer>): Promise<Measurement> {
    const known = this.measured.get(peer)
    if (known !== undefined && this.now() - known.atMs < MEASURED_REUSE_MS)
      return { ok: true, gflops: known.gflops }
    if (this.challengesPending >= CHALLENGES_PENDING_MAX) {
      this.counters.challengesBusy++
      return {
        ok: false,
        fault: 'busy',
        reason: 'the submitter is measuring other claimants; claim again later',
      }
    }
    this.challengesPending++
    const turn = this.challengeTurn.then(() => this.challenge(peer, taskCid))
    this.challengeTurn = turn.then(
      () => {},
      () => {},
    )
    try {
      return await turn
    } finally {
      this.challengesPending--
    }
  }

  private async challenge(peer: string, taskCid: Uint8Array<ArrayBuffer>): Promise<Measurement> {
    const shape = this.init.challengeShape ?? CHALLENGE_SHAPE_DEFAULT
    const timeoutMs = this.init.challengeTimeoutMs ?? CHALLENGE_TIMEOUT_MS_DEFAULT
    const seed = crypto.getRandomValues(new Uint8Array(CHALLENGE_SEED_BYTES))
    const started = performance.now()
    let answer: Uint8Array
    try {
      const response = await this.init.claims.send(
        peerIdFromString(peer),
        { challenge: { taskCid, seed, ...shape } },
        { signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.shutdown.signal]) },
      )
      answer = response.challengeResult
    } catch (error) {
      this.counters.challengesLate++
      this.init.reputation?.record(peer, 'timed-out', this.now())
      return {
        ok: false,
        fault: 'late',
        reason: `no answer to the capability challenge within ${timeoutMs} ms (${(error as Error).message})`,
      }
    }
    const seconds = (performance.now() - started) / 1000
    if (seconds * 1000 > timeoutMs) {
      this.counters.challengesLate++
      this.init.reputation?.record(peer, 'timed-out', this.now())
      return {
        ok: false,
        fault: 'late',
        reason: `the capability challenge took ${Math.round(seconds * 1000)} ms`,
      }
    }
    const fault = checkChallengeAnswer(seed, shape, answer)
    if (fault !== undefined) {
      this.counters.challengesWrong++
      this.init.reputation?.record(peer, 'lied', this.now())
      log('%s answered the capability challenge wrong (%s)', peer, fault)
      return { ok: false, fault: 'wrong', reason: `a wrong answer to the capability challenge (${fault})` }
    }
    this.counters.challengesPassed++
    const gflops = challengeGflops(shape, seconds)
    this.measured.delete(peer)
    this.measured.set(peer, { gflops, atMs: this.now() })
    while (this.measured.size > MEASURED_MAX)
      this.measured.delete(this.measured.keys().next().value as string)
    log('measured %s: %d GFLOP/s (%d ms)', peer, gflops, Math.round(seconds * 1000))
    return { ok: true, gflops }
  }

  /** Whether `peer` claimed, or works on, a live task of this submitter (the claim protocol's budgets). */
  knows(peer: string): boolean {
    for (const live of this.tasks.values()) {
      const r = live.record
      if (isTerminal(r.state)) continue
      if (r.claimants.some((c) => c.peerId === peer) || r.groups.some((g) => g.members.includes(peer)))
        return true
      if ((r.spares ?? []).some((c) => c.peerId === peer)) return true
    }
    return false
  }

  /** The speed this submitter measured for `peer` (for tests and the API), if any. */
  measuredGflops(peer: string): number | undefined {
    return this.measured.get(peer)?.gflops
  }

  /**
   * Records reputation from the per-member counts of a group's reports, as far as a majority of the
   * group agrees on them (protocols/tasks/reports.ts): 'lied' once a majority distrusts a member.
   */
  private noteReports(
    live: LiveTask,
    group: GroupRecord,
    reporter: string,
    progress: SubmitterProgress,
  ): void {
    const book = this.init.reputation
    if (book === undefined || progress.reports.length === 0) return
    const key = `${live.record.id}/${group.group}/${group.incarnation ?? 0}`
    let tally = this.reportsSeen.get(key)
    if (tally === undefined) {
      tally = new GroupReports(group.members)
      this.reportsSeen.set(key, tally)
      // tallies of ended tasks and old incarnations go; a live one per group stays
      for (const old of this.reportsSeen.keys()) {
        const [task, g, incarnation] = old.split('/')
        const other = this.tasks.get(task)
        const current = other?.record.groups.find((x) => String(x.group) === g)
        if (
          other === undefined ||
          isTerminal(other.record.state) ||
          String(current?.incarnation ?? 0) !== incarnation
        )
          this.reportsSeen.delete(old)
      }
    }
    const counts = new Map<string, MemberCountsView>()
    for (const report of progress.reports) {
      counts.set(peerIdFromBytesString(report.member), {
        rejected: report.rejected,
        suspect: report.suspect,
        distrusted: report.distrusted,
      })
    }
    const nowMs = this.now()
    for (const news of tally.report(reporter, counts)) {
      // only a lie a majority of the group caught counts: refused gradients and low agreement scores
      // also come from honest members (a converged model's noisy gradients, an exclusion), and counted
      // one per step they shut honest workers out of staffing (the e2e crash tests)
      if (news.distrusted) book.record(news.member, 'lied', nowMs)
    }
  }

  private onProgress(live: LiveTask, peer: string, progress: SubmitterProgress): ClaimReply {
    const nowMs = this.now()
    const state = live.record.state
    if (isTerminal(state))
      return { status: ClaimResponse.Status.REFUSED, reason: progressRefusal.ended(state) }
    const group = live.record.groups.find((g) => g.group === progress.group)
    if (group === undefined || !group.members.includes(peer)) {
      return { status: ClaimResponse.Status.REFUSED, reason: progressRefusal.notMember }
    }
    if (progress.incarnation !== (group.incarnation ?? 0)) {
      return {
        status: ClaimResponse.Status.REFUSED,
        reason: progressRefusal.reformed(group.incarnation ?? 0),
      }
    }
    if (progress.error !== '') {
      this.apply(live, {
        type: 'member-error',
        peerId: peer,
        group: progress.group,
        error: progress.error,
        nowMs,
      })
      return { status: ClaimResponse.Status.OK, reason: 'error recorded' }
    }
    this.noteReports(live, group, peer, progress)
    const leader = progress.leader.byteLength > 0 ? peerIdFromBytesString(progress.leader) : ''
    this.apply(live, {
      type: 'progress',
      from: peer,
      group: progress.group,
      step: progress.step,
      loss: progress.loss,
      samplesPerSecond: progress.samplesPerSecond,
      leader,
      waitingRound: progress.outerRound,
      paramsCid: progress.paramsCid.byteLength > 0 ? CID.decode(progress.paramsCid).toString() : '',
      appliedRound: progress.appliedRound,
      done: progress.done,
      incarnation: progress.incarnation,
      stateCid: progress.stateCid.byteLength > 0 ? CID.decode(progress.stateCid).toString() : '',
      nowMs,
    })
    // the group trains on without silent members: its leader is asked for the state to re-form it from
    const stateWanted = stateWantedFrom(live.record, progress.group, peer, leader)
    return { status: ClaimResponse.Status.OK, reason: 'progress recorded', stateWanted }
  }

  private tick(): void {
    const nowMs = this.now()
    for (const live of this.tasks.values()) {
      if (isTerminal(live.record.state)) continue
      this.apply(live, { type: 'tick', nowMs, stallMs: this.config.stallMs })
      const due = live.announcedMs === undefined || nowMs - live.announcedMs >= this.config.reannounceMs
      if (isRecruiting(live.record) && !live.announcing && due) void this.reannounce(live, nowMs)
    }
  }

  // -------------------------------------------------------------------------------------------------
  // effects

  private apply(live: LiveTask, event: TaskEvent): void {
    const before = live.record
    const { record, effects } = stepTask(before, event)
    live.record = record
    if (record.state !== before.state) log('task %s: %s -> %s', record.id, before.state, record.state)
    this.enqueue(live, effects)
  }

  private enqueue(live: LiveTask, effects: TaskEffect[]): void {
    for (const effect of effects) {
      if (IMMEDIATE_EFFECTS.has(effect.type)) {
        void this.perform(live, effect.type, effect)
        continue
      }
      live.queue = live.queue.then(() =>
        this.perform(live, effect.type, effect).catch((error: unknown) => {
          if (this.shutdown.signal.aborted) return
          log.error('task %s: %s failed: %e', live.record.id, effect.type, error)
          this.apply(live, {
            type: 'fail',
            reason: `${effect.type} failed: ${(error as Error).message}`,
            nowMs: this.now(),
          })
        }),
      )
    }
  }

  /** Carries out one effect through its handler (the type is passed apart so the two stay paired). */
  private perform<T extends EffectType>(live: LiveTask, type: T, effect: EffectOf<T>): Promise<void> {
    return this.effects[type](live, effect)
  }

  private taskCidBytes(live: LiveTask): Uint8Array<ArrayBuffer> {
    return CID.parse(live.record.id).bytes as Uint8Array<ArrayBuffer>
  }

  private async assign(live: LiveTask, effect: EffectOf<'assign'>): Promise<void> {
    const taskCid = this.taskCidBytes(live)
    const assigned = new Set(effect.groups.flatMap((g) => g.members))
    await Promise.all(effect.groups.map((group) => this.sendAssignments(live, group, 0, undefined)))
    // claimants that were not picked are free again
    for (const claimant of live.record.claimants) {
      if (!assigned.has(claimant.peerId)) void this.sendCancel(claimant.peerId, taskCid, 'not selected')
    }
    log('task %s assigned: %o', live.record.id, effect.groups)
  }

  /** Keeps a live member's TrainingState here, so a re-formed group's newcomers fetch it from us. */
  private async fetchState(live: LiveTask, effect: EffectOf<'fetch-state'>): Promise<void> {
    try {
      const cid = CID.parse(effect.stateCid)
      const bytes = await this.init.blocks.get(cid, {
        peers: [peerIdFromString(effect.from)],
        signal: this.shutdown.signal,
      })
      const train = live.spec.train
      const state = decodeState(bytes, TASK_MODELS[train.model].parameterCount(train))
      // a member that trains on publishes a state at most as far as the step it reports with it
      if (state === undefined || state.step > effect.step) throw new Error('not a valid training state')
      await this.init.blocks.put(bytes, { provide: false })
      this.apply(live, { ...effect, step: state.step, type: 'state-stored', nowMs: this.now() })
    } catch (error) {
      log(
        'fetching the state of group %d from %s failed: %s',
        effect.group,
        effect.from,
        (error as Error).message,
      )
      this.apply(live, {
        type: 'state-unavailable',
        group: effect.group,
        stateCid: effect.stateCid,
        nowMs: this.now(),
      })
    }
  }

  /** Every member of the group is gone and none left a state: it starts over from the task's seed. */
  private async initialState(live: LiveTask, effect: EffectOf<'initial-state'>): Promise<void> {
    try {
      const train = live.spec.train
      const state = createTrainingState(TASK_MODELS[train.model].initialParams(train), [])
      const cid = await this.init.blocks.put(encodeState(state), { provide: false })
      log('task %s: group %d starts over from step 0 (initial state %s)', live.record.id, effect.group, cid)
      this.apply(live, {
        type: 'state-stored',
        group: effect.group,
        incarnation: effect.incarnation,
        stateCid: cid.toString(),
        step: 0,
        initial: true,
        nowMs: this.now(),
      })
    } catch (error) {
      log('building the initial state of group %d failed: %s', effect.group, (error as Error).message)
      this.apply(live, {
        type: 'state-unavailable',
        group: effect.group,
        stateCid: INITIAL_STATE,
        nowMs: this.now(),
      })
    }
  }

  private async reform(live: LiveTask, effect: EffectOf<'reform'>): Promise<void> {
    log(
      'task %s: group %d re-formed (incarnation %d) without %o, members %o',
      live.record.id,
      effect.group,
      effect.incarnation,
      effect.vacated,
      effect.members,
    )
    await this.sendAssignments(live, effect, effect.incarnation, CID.parse(effect.stateCid))
    // the members replaced are presumed gone: telling them must not hold up the task's next effects
    const taskCid = this.taskCidBytes(live)
    for (const peer of effect.vacated) void this.sendCancel(peer, taskCid, 'replaced')
  }

  private async dismiss(live: LiveTask, effect: EffectOf<'dismiss'>): Promise<void> {
    const taskCid = this.taskCidBytes(live)
    await Promise.all(effect.peers.map((peer) => this.sendCancel(peer, taskCid, effect.reason)))
  }

  private async outerRound(live: LiveTask, effect: EffectOf<'outer-round'>): Promise<void> {
    const signal = this.shutdown.signal
    const averaged = await this.average(effect.sources)
    const cid = await this.init.blocks.put(floatsToBytes(averaged), { provide: false })
    const update = {
      taskCid: this.taskCidBytes(live),
      round: effect.round,
      paramsCid: cid.bytes as Uint8Array<ArrayBuffer>,
    }
    await Promise.all(
      live.record.groups.flatMap((group) =>
        group.members.map((member) =>
          this.withRetries(
            () =>
              this.init.claims.send(
                peerIdFromString(member),
                { outer: { ...update, group: group.group } },
                { signal },
              ),
            // a dead member must not hold up the round: a member that asks again later gets it resent
            OUTER_SEND_ATTEMPTS_MAX,
          ).catch((error: unknown) => log('outer update to %s failed: %s', member, (error as Error).message)),
        ),
      ),
    )
    // scored after the groups have their params back, so the score costs them no time
    const score = await this.score(live, averaged, true).catch((error: unknown) => {
      log('scoring outer round %d failed: %s', effect.round, (error as Error).message)
      return undefined
    })
    this.apply(live, {
      type: 'outer-sent',
      round: effect.round,
      paramsCid: cid.toString(),
      ...(score?.accuracy !== undefined ? { accuracy: score.accuracy } : {}),
      ...(score?.bitsPerByte !== undefined ? { bitsPerByte: score.bitsPerByte } : {}),
      nowMs: this.now(),
    })
  }

  private async resendOuter(live: LiveTask, effect: EffectOf<'resend-outer'>): Promise<void> {
    if (effect.paramsCid === undefined) return
    await this.init.claims
      .send(
        peerIdFromString(effect.to),
        {
          outer: {
            taskCid: this.taskCidBytes(live),
            group: effect.group,
            round: effect.round,
            paramsCid: CID.parse(effect.paramsCid).bytes as Uint8Array<ArrayBuffer>,
          },
        },
        { signal: this.shutdown.signal },
      )
      .catch((error: unknown) =>
        log('resending outer round to %s failed: %s', effect.to, (error as Error).message),
      )
  }

  private async finalize(live: LiveTask, effect: EffectOf<'finalize'>): Promise<void> {
    const averaged = await this.average(effect.sources)
    const train = live.spec.train
    const score = await this.score(live, averaged, false)
    const resultDir = join(this.init.resultsFolder, live.record.id)
    await TASK_MODELS[train.model].save(resultDir, train, averaged, {
      model: train.model,
      dataset: {
        name: train.dataset.name,
        trainCount: train.dataset.trainCount,
        testCount: train.dataset.testCount,
      },
      seed: train.seed,
      training: {
        task: live.record.id,
        groups: train.groups,
        groupSize: train.groupSize,
        steps: train.steps,
        batchSize: train.batchSize,
        learningRate: train.learningRate,
        aggregate: train.aggregate,
        outerEvery: train.outerEvery,
        compress: train.compress,
        outerRounds: live.record.outerRound,
        consensus: 'raft per group, DiLoCo parameter averaging across groups',
      },
      backend: {
        kind: 'network',
        groups: live.record.groups.map((g) => ({ group: g.group, members: g.members })),
      },
      metrics: {
        ...(score.accuracy !== undefined ? { testAccuracy: score.accuracy, testLoss: score.loss } : {}),
        ...(score.bitsPerByte !== undefined
          ? { validationBitsPerByte: score.bitsPerByte, validationBytesScored: score.scoredBytes }
          : {}),
      },
      history: live.record.history.map((point) => ({ ...point })),
      createdAt: new Date(this.now()).toISOString(),
    })
    // every member of the final groups did its part
    for (const group of live.record.groups)
      for (const member of group.members) this.init.reputation?.record(member, 'completed', this.now())
    for (const key of this.reportsSeen.keys())
      if (key.startsWith(`${live.record.id}/`)) this.reportsSeen.delete(key)
    this.apply(live, {
      type: 'finished',
      ...(score.accuracy !== undefined ? { accuracy: score.accuracy } : {}),
      ...(score.bitsPerByte !== undefined ? { bitsPerByte: score.bitsPerByte } : {}),
      testLoss: score.loss,
      resultDir,
      nowMs: this.now(),
    })
  }

  private async release(live: LiveTask, effect: EffectOf<'release'>): Promise<void> {
    const taskCid = this.taskCidBytes(live)
    const members = new Set([
      ...live.record.groups.flatMap((g) => g.members),
      ...live.record.claimants.map((c) => c.peerId),
    ])
    await Promise.all([...members].map((member) => this.sendCancel(member, taskCid, effect.reason)))
  }

  /** Tells each member of a group its role; a member that cannot be reached is reported failed. */
  private async sendAssignments(
    live: LiveTask,
    group: Pick<GroupRecord, 'group' | 'members'>,
    incarnation: number,
    stateCid: CID | undefined,
  ): Promise<void> {
    const taskCid = this.taskCidBytes(live)
    const shardCid = live.spec.train.dataset.shardCids[group.group].bytes as Uint8Array<ArrayBuffer>
    const members = group.members.map(
      (m) => peerIdFromString(m).toMultihash().bytes as Uint8Array<ArrayBuffer>,
    )
    await Promise.all(
      group.members.map(async (member) => {
        try {
          await this.withRetries(() =>
            this.init.claims.send(
              peerIdFromString(member),
              {
                assignment: {
                  taskCid,
                  group: group.group,
                  members,
                  shardCid,
                  incarnation,
                  stateCid: (stateCid?.bytes ?? new Uint8Array(0)) as Uint8Array<ArrayBuffer>,
                },
              },
              { signal: this.shutdown.signal },
            ),
          )
        } catch (error) {
          this.apply(live, {
            type: 'assignment-failed',
            peerId: member,
            group: group.group,
            reason: (error as Error).message,
            nowMs: this.now(),
          })
        }
      }),
    )
  }

  /** The score of `params` on the task's held-out data (an estimate when `quick`). */
  private async score(live: LiveTask, params: Float32Array, quick: boolean): Promise<TaskScore> {
    const train = live.spec.train
    const backend = await this.init.openBackend()
    try {
      return await TASK_MODELS[train.model].score(train, params, backend, this.localBlock, quick)
    } finally {
      backend.destroy()
    }
  }

  /** A block this node stored itself (the task's test data). */
  private readonly localBlock = async (cid: CID): Promise<Uint8Array> => {
    const bytes = await this.init.blockStore.get(cid)
    if (bytes === undefined) throw new Error(`the block ${cid} is missing from the block store`)
    return bytes
  }

  private async sendCancel(member: string, taskCid: Uint8Array<ArrayBuffer>, reason: string): Promise<void> {
    try {
      await this.init.claims.send(
        peerIdFromString(member),
        { cancel: { taskCid, reason: reason.slice(0, 1000) } },
        { signal: this.shutdown.signal },
      )
    } catch (error) {
      log('telling %s the task ended failed: %s', member, (error as Error).message)
    }
  }

  /** Fetches each group's params from the member that reported them (verified by CID) and averages them. */
  private async average(
    sources: Array<{ group: number; paramsCid: string; from: string }>,
  ): Promise<Float32Array> {
    const params = await Promise.all(
      sources.map(async (source) => {
        const bytes = await this.withRetries(() =>
          this.init.blocks.get(CID.parse(source.paramsCid), {
            peers: [peerIdFromString(source.from)],
            signal: this.shutdown.signal,
          }),
        )
        const values = bytesToFloats(bytes)
        for (const value of values) {
          if (!Number.isFinite(value))
            throw new Error(`group ${source.group} sent parameters with NaN or Inf`)
        }
        return values
      }),
    )
    return averageParams(params)
  }

  /** Retries a send with backoff; a refusal is an answer, not a failure to reach the peer: not retried. */
  private async withRetries<T>(work: () => Promise<T>, attempts = SEND_ATTEMPTS_MAX): Promise<T> {
    let lastError: unknown
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (this.shutdown.signal.aborted) break
      try {
        return await work()
      } catch (error) {
        lastError = error
        if (error instanceof ClaimRefusedError) throw error
        await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt))
      }
    }
    throw lastError ?? new Error('stopped')
  }
}

/** The inference side of the coordinator (implemented by node/tasks/infer-coordinator.ts). */
export interface InferenceTasks {
  submit(request: InferRequest): Promise<TaskView>
  list(): TaskView[]
  get(idOrPrefix: string): TaskView | undefined
  cancel(idOrPrefix: string): TaskView | undefined
}

function peerIdFromBytesString(bytes: Uint8Array): string {
  return peerIdFromBytes(bytes)?.toString() ?? ''
}
