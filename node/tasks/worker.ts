// The worker's side of tasks: hear announcements, claim the ones this node can run (or tell the
// submitter why not), and on an assignment fetch the spec and the shard (verified by CID), record the
// assignment durably and run it with the executor for its kind, streaming progress to the submitter.
// A restarted worker daemon resumes its assignments from the data dir (the Raft log is durable too).
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import type { Backend } from '../../kernels/backend.js'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { computeChallenge } from '../../protocols/tasks/challenge.js'
import {
  type ClaimPart,
  type ClaimReply,
  ClaimResponse,
  type ClaimsProtocol,
  finalRefusal,
} from '../../protocols/tasks/claims.js'
import type { ReceivedAnnouncement, TaskGossip } from '../../protocols/tasks/index.js'
import {
  decodeTaskSpec,
  type InferTaskSpec,
  type TaskKind,
  type TaskSpec,
  type TrainTaskSpec,
  unmetRequirement,
} from '../../protocols/tasks/spec.js'
import type { GroupProgress, MemberCounts } from '../../protocols/wire/claims.js'
import { peerIdFromBytes } from '../../protocols/wire/validation/index.js'
import { type NodeCapability, offerOf } from '../executor/capability.js'
import { CoalescingWriter, RecordFolder } from './records.js'

const log = logger('shardnet:tasks:worker')

/** attempts to fetch one block before the assignment fails */
const FETCH_ATTEMPTS_MAX = 6
/** Assignments a worker runs at the same time when its init does not say. */
export const CONCURRENT_TASKS_MAX_DEFAULT = 1
/** How often a running assignment reports its progress to the submitter. */
export const PROGRESS_INTERVAL_MS_DEFAULT = 1000
/**
 * How long a claim holds one of this worker's slots when the submitter does not assign, whatever the
 * announcement's own expiry says: a submitter that never assigns (or an attacker's announcement) cannot
 * keep the worker from real tasks for longer. A task still staffing is announced again every
 * REANNOUNCE_MS_DEFAULT, and the worker claims it again once the cool-down below has passed.
 */
export const CLAIM_STAFFING_TIMEOUT_MS_DEFAULT = 30_000
/**
 * After a claim lapsed unassigned, the same task is not claimed again for this long, so the slot is free
 * for other announcements meanwhile; nor is any task of its submitter when that submitter did not even
 * send the capability challenge (a shardnet submitter always does: one that does not only holds slots).
 */
export const CLAIM_COOLDOWN_MS_DEFAULT = 30_000
/** Tasks remembered as declined (or cooling down); the entry set longest ago goes first. */
export const DECLINED_MAX_DEFAULT = 1_000
/** How long a declined task is remembered at most, whatever its announcement's expiry says. */
export const DECLINED_TTL_MS_MAX = 10 * 60_000
/**
 * Declines (an "I cannot run this" answer to an announcement) on their way to submitters at once; more
 * ineligible announcements are not answered (counted). Claims have no such cap (the worker's slots bound
 * them), so a flood of announcements the worker cannot run never keeps it from claiming a real task.
 */
export const DECLINE_SENDS_MAX_DEFAULT = 4
/** Claims remembered (live, or lapsed but still assignable while a slot is free). */
export const CLAIMED_MAX_DEFAULT = 256

/** What the worker dropped or refused, by reason (exported as metrics by the daemon). */
export interface WorkerCounters {
  /** claims that lapsed unassigned after the staffing timeout */
  claimsLapsed: number
  /** declined (or cooling-down) entries evicted to stay within DECLINED_MAX_DEFAULT */
  declinedEvicted: number
  /** ineligible announcements not answered because DECLINE_SENDS_MAX_DEFAULT declines were in flight */
  sendsBusy: number
  /** announcements of submitters not on this worker's allow-list */
  submitterNotAllowed: number
  /** cancels, challenges and assignments from a peer that is not the claim's submitter */
  notFromSubmitter: number
  /** challenges computed for submitters */
  challengesAnswered: number
}

/** The requests a submitter sends its workers. */
export type WorkerRequest = Extract<ClaimPart, { type: 'assignment' | 'outer' | 'cancel' | 'challenge' }>

/** What an assignment says, stored so a restarted daemon resumes it. */
export interface AssignedRecord {
  taskId: string
  kind: TaskKind
  submitter: string
  group: number
  members: string[]
  shardCid: string
  /** the group's incarnation (0 as first formed; more after each re-formation) */
  incarnation?: number
  /** from incarnation 1 on: the TrainingState block the group starts from */
  stateCid?: string
  state: 'running' | 'done' | 'cancelled' | 'failed'
  assignedMs: number
  error?: string
  /** what the executor recorded at the end of its part, e.g. the final step and params digest */
  outcome?: { step: number; digest: string }
}

/** Progress fields an executor reports; merged into the latest report, sent periodically. */
export type ProgressUpdate = Partial<
  Pick<GroupProgress, 'step' | 'loss' | 'samplesPerSecond' | 'outerRound' | 'done' | 'error' | 'appliedRound'>
> & {
  leader?: string
  members?: string[]
  paramsCid?: CID | null
  stateCid?: CID | null
  /** the group's per-member counts (MemberReport of protocols/training) and whether it distrusts each */
  reports?: Array<{
    member: string
    accepted: number
    rejected: number
    suspect: number
    distrusted: boolean
  }>
}

/** Everything an executor needs to run one assignment of a task with this spec. */
export interface ExecutionContext<S extends TaskSpec = TaskSpec> {
  taskId: string
  spec: S
  assignment: AssignedRecord
  self: PeerId
  /** a block from the submitter (or anyone who has it), verified against its CID */
  fetchBlock(cid: CID): Promise<Uint8Array>
  /** stores bytes as a block this node serves */
  putBlock(bytes: Uint8Array): Promise<CID>
  /** merges fields into the progress report; `urgent` sends at once instead of at the next interval */
  report(update: ProgressUpdate, urgent?: boolean): void
  /** true once after the submitter asked for this member's state (to re-form its group without
   * members that went silent): publish it and report its block */
  takeStateRequest(): boolean
  /** resolves with the averaged params' CID of an outer round once the submitter sends it */
  outerUpdate(round: number): Promise<CID>
  /** stores the outcome of this node's part in the durable assignment record */
  recordOutcome(outcome: { step: number; digest: string }): Promise<void>
  /** a folder of this assignment's own (e.g. its Raft log) */
  folder: string
  openBackend(): Promise<Backend>
  /** aborted when the task ends (completed, cancelled, failed) or the daemon stops */
  signal: AbortSignal
}

/** Runs assignments of one task kind. `run` resolves once this node's part is finished. */
export interface TaskExecutor<S extends TaskSpec> {
  kind: S['kind']
  run(context: ExecutionContext<S>): Promise<void>
}

/** An executor of any kind; its `kind` says which specs its `run` takes. */
export type AnyTaskExecutor = TaskExecutor<TrainTaskSpec> | TaskExecutor<InferTaskSpec>

/** Runs `context` on the executor for its spec's kind; false when this worker has none. */
async function runExecutor(executors: AnyTaskExecutor[], context: ExecutionContext): Promise<boolean> {
  const { spec } = context
  for (const executor of executors) {
    if (executor.kind === 'train' && spec.kind === 'train') {
      await executor.run({ ...context, spec })
      return true
    }
    if (executor.kind === 'infer' && spec.kind === 'infer') {
      await executor.run({ ...context, spec })
      return true
    }
  }
  return false
}

export interface WorkerInit {
  peerId: PeerId
  claims: ClaimsProtocol
  blocks: BlockExchange
  gossip: TaskGossip
  capability: NodeCapability
  assignedFolder: string
  workFolder: string
  executors: AnyTaskExecutor[]
  openBackend: () => Promise<Backend>
  /** assignments run at the same time; claims beyond are not made. @default CONCURRENT_TASKS_MAX_DEFAULT */
  concurrentTasksMax?: number
  /** how often a running assignment reports its progress. @default PROGRESS_INTERVAL_MS_DEFAULT */
  progressIntervalMs?: number
  /** @default CLAIM_STAFFING_TIMEOUT_MS_DEFAULT */
  claimTimeoutMs?: number
  /** @default CLAIM_COOLDOWN_MS_DEFAULT */
  claimCooldownMs?: number
  /** @default DECLINED_MAX_DEFAULT */
  declinedMax?: number
  /**
   * peer ids (strings) of the submitters whose tasks this worker claims; empty or absent: anyone's.
   */
  allowedSubmitters?: ReadonlySet<string>
  now?: () => number
}

interface Running {
  record: AssignedRecord
  writer: CoalescingWriter<AssignedRecord>
  controller: AbortController
  progress: GroupProgress
  urgent: boolean
  timer: NodeJS.Timeout | undefined
  outerCids: Map<number, CID>
  outerWaiters: Map<number, Array<(cid: CID) => void>>
  sending: boolean
  /** the submitter asked for this member's state in its last progress reply */
  stateWanted: boolean
}

export class Worker {
  private readonly init: WorkerInit
  private readonly concurrentTasksMax: number
  private readonly progressIntervalMs: number
  private readonly claimTimeoutMs: number
  private readonly claimCooldownMs: number
  private readonly declinedMax: number
  private readonly records: RecordFolder<AssignedRecord>
  private readonly running = new Map<string, Running>()
  /**
   * tasks claimed and not yet assigned: task id -> (submitter, when the claim stops holding a slot,
   * whether the submitter's one challenge was answered). A lapsed claim is still assignable while a
   * slot is free; it is dropped once CLAIMED_MAX_DEFAULT newer ones are held.
   */
  private readonly claimed = new Map<
    string,
    { submitter: string; expiresMs: number; challenged: boolean; lapsed: boolean }
  >()
  /**
   * tasks this worker told the submitter it cannot run, and tasks whose claim lapsed unassigned:
   * task id -> until when re-announcements are not answered (bounded: declinedMax, DECLINED_TTL_MS_MAX)
   */
  private readonly declined = new Map<string, number>()
  /** submitters whose claim lapsed unassigned: peer id -> until when their tasks are not claimed */
  private readonly coolingSubmitters = new Map<string, number>()
  private declineSends = 0
  private challengeBackend: Promise<Backend> | undefined
  readonly counters: WorkerCounters = {
    claimsLapsed: 0,
    declinedEvicted: 0,
    sendsBusy: 0,
    submitterNotAllowed: 0,
    notFromSubmitter: 0,
    challengesAnswered: 0,
  }
  private readonly shutdown = new AbortController()
  private readonly now: () => number
  private readonly onAnnouncement = (event: CustomEvent<ReceivedAnnouncement>) =>
    void this.consider(event.detail)

  constructor(init: WorkerInit) {
    this.init = init
    this.records = new RecordFolder(init.assignedFolder)
    this.now = init.now ?? Date.now
    this.concurrentTasksMax = init.concurrentTasksMax ?? CONCURRENT_TASKS_MAX_DEFAULT
    this.progressIntervalMs = init.progressIntervalMs ?? PROGRESS_INTERVAL_MS_DEFAULT
    this.claimTimeoutMs = init.claimTimeoutMs ?? CLAIM_STAFFING_TIMEOUT_MS_DEFAULT
    this.claimCooldownMs = init.claimCooldownMs ?? CLAIM_COOLDOWN_MS_DEFAULT
    this.declinedMax = init.declinedMax ?? DECLINED_MAX_DEFAULT
  }

  /** Whether `peer` submitted a task this worker runs or holds a claim on (the claim protocol's budgets). */
  knows(peer: string): boolean {
    for (const task of this.running.values()) if (task.record.submitter === peer) return true
    for (const claim of this.claimed.values()) if (claim.submitter === peer) return true
    return false
  }

  /** The claim this worker holds on a task, if any (lapsed: it no longer holds a slot). */
  claimOn(taskId: string): { submitter: string; lapsed: boolean } | undefined {
    const claim = this.claimed.get(taskId)
    return claim === undefined
      ? undefined
      : { submitter: claim.submitter, lapsed: claim.expiresMs <= this.now() }
  }

  /** Sizes of the worker's bookkeeping (each bounded), for tests and metrics. */
  sizes(): { claimed: number; declined: number; coolingSubmitters: number } {
    return {
      claimed: this.claimed.size,
      declined: this.declined.size,
      coolingSubmitters: this.coolingSubmitters.size,
    }
  }

  async start(): Promise<void> {
    this.init.gossip.addEventListener('announcement', this.onAnnouncement)
    for (const { value } of await this.records.loadAll()) {
      if (value.state !== 'running') continue
      log('resuming assignment %s group %d', value.taskId, value.group)
      this.begin(value)
    }
  }

  async stop(): Promise<void> {
    this.init.gossip.removeEventListener('announcement', this.onAnnouncement)
    this.shutdown.abort()
    for (const task of this.running.values()) {
      clearInterval(task.timer)
      task.controller.abort()
    }
    await Promise.all([...this.running.values()].map((t) => t.writer.flush()))
    const backend = this.challengeBackend
    this.challengeBackend = undefined
    if (backend !== undefined) (await backend.catch(() => undefined))?.destroy()
  }

  /** Every assignment this node holds a record of, running or ended (for the API and tests). */
  async assignments(): Promise<AssignedRecord[]> {
    const stored = new Map((await this.records.loadAll()).map(({ id, value }) => [id, value]))
    for (const task of this.running.values()) stored.set(task.record.taskId, { ...task.record })
    return [...stored.values()]
  }

  private busy(): number {
    return this.running.size + [...this.claimed.values()].filter((c) => c.expiresMs > this.now()).length
  }

  /** Remembers `id` as not to be answered until `untilMs` (bounded in count and time). */
  private decline(id: string, untilMs: number, nowMs: number): void {
    this.declined.delete(id)
    this.declined.set(id, Math.min(untilMs, nowMs + DECLINED_TTL_MS_MAX))
    while (this.declined.size > this.declinedMax) {
      this.declined.delete(this.declined.keys().next().value as string)
      this.counters.declinedEvicted++
    }
  }

  /**
   * Claims past the staffing timeout stop holding a slot: the task and its submitter cool down (their
   * re-announcements are not claimed for claimCooldownMs), so other submitters' tasks get the slot.
   */
  private expireClaims(nowMs: number): void {
    for (const [id, claim] of this.claimed) {
      if (claim.lapsed || claim.expiresMs > nowMs) continue
      claim.lapsed = true
      this.counters.claimsLapsed++
      log('claim on %s lapsed: %s did not assign within the staffing timeout', id, claim.submitter)
      this.decline(id, nowMs + this.claimCooldownMs, nowMs)
      if (!claim.challenged) {
        this.coolingSubmitters.delete(claim.submitter)
        this.coolingSubmitters.set(claim.submitter, nowMs + this.claimCooldownMs)
      }
    }
    for (const [peer, untilMs] of this.coolingSubmitters)
      if (untilMs <= nowMs) this.coolingSubmitters.delete(peer)
    while (this.coolingSubmitters.size > this.declinedMax)
      this.coolingSubmitters.delete(this.coolingSubmitters.keys().next().value as string)
    while (this.claimed.size > CLAIMED_MAX_DEFAULT) {
      const oldest = [...this.claimed].find(([, c]) => c.lapsed)
      if (oldest === undefined) break
      this.claimed.delete(oldest[0])
    }
  }

  /** Why this node cannot run the announced task, or undefined. */
  private ineligibility(announcement: ReceivedAnnouncement['announcement']): string | undefined {
    if (!this.init.executors.some((e) => e.kind === announcement.kind))
      return `this worker runs no ${announcement.kind} tasks`
    return unmetRequirement(announcement.requirements, offerOf(this.init.capability))
  }

  private async consider(received: ReceivedAnnouncement): Promise<void> {
    const a = received.announcement
    if (a.submitter.equals(this.init.peerId)) return
    const id = a.taskCid.toString()
    const submitter = a.submitter.toString()
    const nowMs = this.now()
    const allowed = this.init.allowedSubmitters
    if (allowed !== undefined && allowed.size > 0 && !allowed.has(submitter)) {
      this.counters.submitterNotAllowed++
      return
    }
    this.expireClaims(nowMs)
    for (const [task, untilMs] of this.declined) if (untilMs <= nowMs) this.declined.delete(task)
    // a re-announcement of a task this worker runs, has a live claim on, or declined: nothing to say
    if (this.running.has(id) || this.declined.has(id) || (this.claimed.get(id)?.expiresMs ?? 0) > nowMs)
      return
    const reason = this.ineligibility(a)
    if (reason === undefined && this.busy() >= this.concurrentTasksMax) return
    if (reason === undefined && (this.coolingSubmitters.get(submitter) ?? 0) > nowMs) return
    if (reason !== undefined && this.declineSends >= DECLINE_SENDS_MAX_DEFAULT) {
      this.counters.sendsBusy++
      return
    }
    const c = this.init.capability
    if (reason === undefined) {
      // the submitter times its challenge: the backend opens while the claim travels, not during it
      this.challengeBackend ??= this.init.openBackend()
      this.challengeBackend.catch((error: unknown) => {
        log('opening the backend for challenges failed: %s', (error as Error).message)
        this.challengeBackend = undefined
      })
      this.claimed.delete(id)
      this.claimed.set(id, {
        submitter,
        expiresMs: Math.min(a.expiresMs, nowMs + this.claimTimeoutMs),
        challenged: false,
        lapsed: false,
      })
    } else {
      this.decline(id, a.expiresMs, nowMs)
      this.declineSends++
    }
    try {
      await this.init.claims.send(a.submitter, {
        claim: {
          taskCid: a.taskCid.bytes as Uint8Array<ArrayBuffer>,
          eligible: reason === undefined,
          reason: reason ?? '',
          capability: {
            backend: c.backend,
            gflops: c.matmulGflops,
            maxBufferBytes: c.maxBufferBytes,
            memoryBytes: c.memoryBytes,
          },
        },
      })
      log('%s task %s', reason === undefined ? 'claimed' : 'declined', id)
    } catch (error) {
      this.claimed.delete(id)
      this.declined.delete(id)
      log('claiming %s failed: %s', id, (error as Error).message)
    } finally {
      if (reason !== undefined) this.declineSends--
    }
  }

  // -------------------------------------------------------------------------------------------------
  // requests from submitters

  async handle(from: PeerId, request: WorkerRequest): Promise<ClaimReply> {
    if (request.type === 'assignment') return this.onAssignment(from, request.assignment)
    if (request.type === 'challenge') return this.onChallenge(from, request.challenge)
    if (request.type === 'cancel') {
      const { cancel } = request
      const id = CID.decode(cancel.taskCid).toString()
      const task = this.running.get(id)
      const claim = this.claimed.get(id)
      // the connection's remote peer must be the task's submitter: a stranger cannot free a claim
      if ((task?.record.submitter ?? claim?.submitter ?? from.toString()) !== from.toString()) {
        this.counters.notFromSubmitter++
        return { status: ClaimResponse.Status.REFUSED, reason: 'only the submitter can cancel' }
      }
      this.claimed.delete(id)
      if (task === undefined) return { status: ClaimResponse.Status.OK, reason: 'nothing to cancel' }
      this.finish(task, cancel.reason === 'completed' ? 'done' : 'cancelled', cancel.reason)
      return { status: ClaimResponse.Status.OK, reason: 'cancelled' }
    }
    const { outer } = request
    const task = this.running.get(CID.decode(outer.taskCid).toString())
    if (task === undefined)
      return { status: ClaimResponse.Status.UNKNOWN_TASK, reason: 'not running that task' }
    if (task.record.submitter !== from.toString())
      return { status: ClaimResponse.Status.REFUSED, reason: 'not from the submitter' }
    const cid = CID.decode(outer.paramsCid)
    task.outerCids.set(outer.round, cid)
    for (const wake of task.outerWaiters.get(outer.round) ?? []) wake(cid)
    task.outerWaiters.delete(outer.round)
    return { status: ClaimResponse.Status.OK, reason: 'outer update received' }
  }

  /**
   * Computes the submitter's capability challenge: only for a task this worker claimed from that
   * submitter, once per claim, so nobody else can make it compute.
   */
  private async onChallenge(
    from: PeerId,
    challenge: Extract<WorkerRequest, { type: 'challenge' }>['challenge'],
  ): Promise<ClaimReply> {
    const id = CID.decode(challenge.taskCid).toString()
    const claim = this.claimed.get(id)
    if (claim === undefined || claim.submitter !== from.toString() || claim.challenged) {
      this.counters.notFromSubmitter++
      return {
        status: ClaimResponse.Status.REFUSED,
        reason: 'this worker has no unchallenged claim on that task from you',
      }
    }
    claim.challenged = true
    this.challengeBackend ??= this.init.openBackend()
    const backend = await this.challengeBackend
    const result = await computeChallenge(backend, challenge.seed, challenge)
    this.counters.challengesAnswered++
    return { status: ClaimResponse.Status.OK, reason: 'challenge answered', challengeResult: result }
  }

  private async onAssignment(
    from: PeerId,
    assignment: Extract<WorkerRequest, { type: 'assignment' }>['assignment'],
  ): Promise<ClaimReply> {
    const id = CID.decode(assignment.taskCid).toString()
    const members = assignment.members.map((m) => peerIdFromBytes(m)!.toString())
    if (!members.includes(this.init.peerId.toString())) {
      return { status: ClaimResponse.Status.REFUSED, reason: 'the assignment does not name this worker' }
    }
    const record: AssignedRecord = {
      taskId: id,
      kind: 'train',
      submitter: from.toString(),
      group: assignment.group,
      members,
      shardCid: CID.decode(assignment.shardCid).toString(),
      incarnation: assignment.incarnation,
      ...(assignment.stateCid.byteLength > 0 ? { stateCid: CID.decode(assignment.stateCid).toString() } : {}),
      state: 'running',
      assignedMs: this.now(),
    }
    const existing = this.running.get(id)
    if (existing !== undefined) {
      if (existing.record.group !== assignment.group)
        return { status: ClaimResponse.Status.REFUSED, reason: 'already running this task in another group' }
      const running = existing.record.incarnation ?? 0
      if (assignment.incarnation === running)
        return { status: ClaimResponse.Status.OK, reason: 'already running' }
      if (assignment.incarnation < running || existing.record.submitter !== from.toString())
        return {
          status: ClaimResponse.Status.REFUSED,
          reason: 'this worker runs a later incarnation of the group',
        }
      // the group was re-formed around this member: leave the old Raft group, join the new one
      log(
        'task %s group %d re-formed: incarnation %d -> %d',
        id,
        assignment.group,
        running,
        assignment.incarnation,
      )
      this.finish(existing, 'cancelled', 'the group was re-formed', false)
    } else {
      const claim = this.claimed.get(id)
      if (claim === undefined || claim.submitter !== from.toString()) {
        return {
          status: ClaimResponse.Status.REFUSED,
          reason: 'this worker did not claim that task from you',
        }
      }
      // a lapsed claim no longer holds a slot: it is taken only if one is free now
      const nowMs = this.now()
      this.expireClaims(nowMs)
      if (claim.lapsed && this.busy() >= this.concurrentTasksMax) {
        return {
          status: ClaimResponse.Status.REFUSED,
          reason: 'the claim lapsed (no assignment within the staffing timeout) and this worker is busy',
        }
      }
      this.claimed.delete(id)
    }
    await this.records.save(id, record)
    this.begin(record)
    return { status: ClaimResponse.Status.OK, reason: 'assignment accepted' }
  }

  // -------------------------------------------------------------------------------------------------
  // running an assignment

  private begin(record: AssignedRecord): void {
    const controller = new AbortController()
    const task: Running = {
      record,
      writer: new CoalescingWriter((value) => this.records.save(value.taskId, value)),
      controller,
      progress: {
        taskCid: CID.parse(record.taskId).bytes as Uint8Array<ArrayBuffer>,
        group: record.group,
        step: 0,
        loss: Number.NaN,
        samplesPerSecond: 0,
        leader: new Uint8Array(0),
        members: record.members.map(
          (m) => peerIdFromString(m).toMultihash().bytes as Uint8Array<ArrayBuffer>,
        ),
        outerRound: 0,
        paramsCid: new Uint8Array(0),
        done: false,
        error: '',
        appliedRound: 0,
        incarnation: record.incarnation ?? 0,
        stateCid: new Uint8Array(0),
        reports: [],
      },
      urgent: false,
      timer: undefined,
      outerCids: new Map(),
      outerWaiters: new Map(),
      sending: false,
      stateWanted: false,
    }
    this.running.set(record.taskId, task)
    task.timer = setInterval(() => void this.sendProgress(task), this.progressIntervalMs)
    task.timer.unref()
    void this.execute(task)
  }

  private async execute(task: Running): Promise<void> {
    const record = task.record
    const submitter = peerIdFromString(record.submitter)
    const signal = AbortSignal.any([task.controller.signal, this.shutdown.signal])
    const incarnation = record.incarnation ?? 0
    const folder = join(
      this.init.workFolder,
      `${record.taskId}-g${record.group}${incarnation > 0 ? `-i${incarnation}` : ''}`,
    )
    // transient stream errors (a connection being set up, a stream limit hit) are retried
    const fetchBlock = async (cid: CID): Promise<Uint8Array> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.init.blocks.get(cid, { peers: [submitter], signal })
        } catch (error) {
          if (signal.aborted || attempt >= FETCH_ATTEMPTS_MAX) throw error
          log('fetching %s failed (attempt %d), retrying: %s', cid, attempt, (error as Error).message)
          await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt))
        }
      }
    }
    try {
      const specBytes = await fetchBlock(CID.parse(record.taskId))
      const decoded = decodeTaskSpec(specBytes)
      if (!decoded.ok) throw new Error(`the task spec is invalid: ${decoded.reason}`)
      const spec = decoded.spec
      if (!spec.submitter.equals(submitter)) throw new Error('the task spec names another submitter')
      if (
        spec.kind === 'train' &&
        spec.train.dataset.shardCids[record.group]?.toString() !== record.shardCid
      ) {
        throw new Error('the assigned shard is not the one the spec lists for this group')
      }
      const ran = await runExecutor(this.init.executors, {
        taskId: record.taskId,
        spec,
        assignment: record,
        self: this.init.peerId,
        fetchBlock,
        putBlock: (bytes) => this.init.blocks.put(bytes, { provide: false }),
        report: (update, urgent) => this.merge(task, update, urgent === true),
        takeStateRequest: () => {
          const wanted = task.stateWanted
          task.stateWanted = false
          return wanted
        },
        outerUpdate: (round) => this.outerUpdate(task, round, signal),
        recordOutcome: async (outcome) => {
          task.record = { ...task.record, outcome }
          await task.writer.schedule(task.record)
        },
        folder,
        openBackend: this.init.openBackend,
        signal,
      })
      if (!ran) throw new Error(`this worker runs no ${spec.kind} tasks`)
      if (!signal.aborted) this.finish(task, 'done')
    } catch (error) {
      if (signal.aborted) return
      const message = (error as Error).message
      log.error('assignment %s failed: %s', record.taskId, message)
      this.merge(task, { error: message.slice(0, 1000) }, true)
      // the report goes out before the assignment is forgotten
      await this.sendProgress(task)
      this.finish(task, 'failed', message)
    } finally {
      // an assignment that ended (not one interrupted by a daemon stop) no longer needs its Raft log
      if (task.record.state !== 'running') {
        await rm(folder, { recursive: true, force: true }).catch((error: unknown) =>
          log('removing %s failed: %s', folder, (error as Error).message),
        )
      }
    }
  }

  private outerUpdate(task: Running, round: number, signal: AbortSignal): Promise<CID> {
    const known = task.outerCids.get(round)
    if (known !== undefined) return Promise.resolve(known)
    return new Promise((resolve, reject) => {
      const waiters = task.outerWaiters.get(round) ?? []
      waiters.push(resolve)
      task.outerWaiters.set(round, waiters)
      signal.addEventListener('abort', () => reject(signal.reason ?? new Error('task ended')), { once: true })
    })
  }

  private merge(task: Running, update: ProgressUpdate, urgent: boolean): void {
    const p = task.progress
    if (update.step !== undefined) p.step = update.step
    if (update.loss !== undefined) p.loss = update.loss
    if (update.samplesPerSecond !== undefined) p.samplesPerSecond = update.samplesPerSecond
    if (update.outerRound !== undefined) p.outerRound = update.outerRound
    if (update.appliedRound !== undefined) p.appliedRound = update.appliedRound
    if (update.done !== undefined) p.done = update.done
    if (update.error !== undefined) p.error = update.error
    if (update.leader !== undefined) {
      p.leader =
        update.leader === ''
          ? new Uint8Array(0)
          : (peerIdFromString(update.leader).toMultihash().bytes as Uint8Array<ArrayBuffer>)
    }
    if (update.paramsCid !== undefined) {
      p.paramsCid =
        update.paramsCid === null ? new Uint8Array(0) : (update.paramsCid.bytes as Uint8Array<ArrayBuffer>)
    }
    if (update.stateCid !== undefined) {
      p.stateCid =
        update.stateCid === null ? new Uint8Array(0) : (update.stateCid.bytes as Uint8Array<ArrayBuffer>)
    }
    if (update.reports !== undefined)
      p.reports = update.reports
        .slice(0, p.members.length)
        .map(toMemberCounts)
        .filter((r) => r !== undefined)
    if (urgent) {
      task.urgent = true
      void this.sendProgress(task)
    }
  }

  private async sendProgress(task: Running): Promise<void> {
    if (task.sending) return
    task.sending = true
    try {
      do {
        task.urgent = false
        const progress = { ...task.progress }
        try {
          const response = await this.init.claims.send(
            peerIdFromString(task.record.submitter),
            { progress },
            { signal: this.shutdown.signal },
          )
          if (response.stateWanted) task.stateWanted = true
        } catch (error) {
          const message = (error as Error).message
          log('progress report for %s failed: %s', task.record.taskId, message)
          // the submitter says the task is over, or the group went on without this member (it was
          // replaced while away): stop working on it. A completed task ends this part as done (as a
          // cancellation with reason 'completed' does): a member whose group finished can still be
          // wrapping up when the submitter already completed the task
          const final = finalRefusal(error)
          if (final !== undefined) this.finish(task, final === 'completed' ? 'done' : 'cancelled', message)
          return
        }
      } while (task.urgent)
    } finally {
      task.sending = false
    }
  }

  /** Ends an assignment; `save: false` when a new record of the same task replaces it (re-formed group). */
  private finish(task: Running, state: AssignedRecord['state'], reason?: string, save = true): void {
    if (this.running.get(task.record.taskId) !== task) return
    clearInterval(task.timer)
    task.controller.abort(new Error(reason ?? state))
    this.running.delete(task.record.taskId)
    task.record = {
      ...task.record,
      state,
      ...(reason !== undefined && state !== 'done' ? { error: reason } : {}),
    }
    if (save) void task.writer.schedule(task.record)
    log('assignment %s %s%s', task.record.taskId, state, reason !== undefined ? `: ${reason}` : '')
  }
}

const COUNT_MAX = 2 ** 32 - 1

/** The wire form of one member's counts; undefined when `member` is not a peer id. */
function toMemberCounts(report: NonNullable<ProgressUpdate['reports']>[number]): MemberCounts | undefined {
  const count = (n: number) => Math.min(COUNT_MAX, Math.max(0, Number.isFinite(n) ? Math.floor(n) : 0))
  let member: Uint8Array<ArrayBuffer>
  try {
    member = peerIdFromString(report.member).toMultihash().bytes as Uint8Array<ArrayBuffer>
  } catch {
    return undefined
  }
  return {
    member,
    accepted: count(report.accepted),
    rejected: count(report.rejected),
    suspect: count(report.suspect),
    distrusted: report.distrusted,
  }
}
