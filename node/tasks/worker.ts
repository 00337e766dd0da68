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
import type { GroupProgress } from '../../protocols/wire/claims.js'
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

/** The requests a submitter sends its workers. */
export type WorkerRequest = Extract<ClaimPart, { type: 'assignment' | 'outer' | 'cancel' }>

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
> & { leader?: string; members?: string[]; paramsCid?: CID | null; stateCid?: CID | null }

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
  /** a claim not answered with an assignment within the task's staffing deadline is dropped. */
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
  private readonly records: RecordFolder<AssignedRecord>
  private readonly running = new Map<string, Running>()
  /** tasks claimed and not yet assigned (or refused): task id -> (submitter, expiry) */
  private readonly claimed = new Map<string, { submitter: string; expiresMs: number }>()
  /**
   * tasks this worker told the submitter it cannot run: task id -> expiry
   * (re-announcements are not answered again)
   */
  private readonly declined = new Map<string, number>()
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
    const nowMs = this.now()
    for (const [task, expiresMs] of this.declined) if (expiresMs <= nowMs) this.declined.delete(task)
    // a re-announcement of a task this worker runs, has a live claim on, or declined: nothing to say
    if (this.running.has(id) || this.declined.has(id) || (this.claimed.get(id)?.expiresMs ?? 0) > nowMs)
      return
    const reason = this.ineligibility(a)
    if (reason === undefined && this.busy() >= this.concurrentTasksMax) return
    const c = this.init.capability
    if (reason === undefined)
      this.claimed.set(id, { submitter: a.submitter.toString(), expiresMs: a.expiresMs })
    else this.declined.set(id, a.expiresMs)
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
    }
  }

  // -------------------------------------------------------------------------------------------------
  // requests from submitters

  async handle(from: PeerId, request: WorkerRequest): Promise<ClaimReply> {
    if (request.type === 'assignment') return this.onAssignment(from, request.assignment)
    if (request.type === 'cancel') {
      const { cancel } = request
      const id = CID.decode(cancel.taskCid).toString()
      const task = this.running.get(id)
      this.claimed.delete(id)
      if (task === undefined) return { status: ClaimResponse.Status.OK, reason: 'nothing to cancel' }
      if (task.record.submitter !== from.toString())
        return { status: ClaimResponse.Status.REFUSED, reason: 'only the submitter can cancel' }
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
