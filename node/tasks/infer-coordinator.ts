// The submitter's side of inference tasks: stream the input file to a rows file on disk (never parsed
// whole), publish the model bundle and the input shards as blocks, store the TaskSpec block (its CID is
// the task id), and run every shard on distinct peers over /shardnet/infer/1.0.0: a peer serves a
// replica only once it accepted the shard's assignment (its claim; it declines when it does not meet
// the requirements or has no room). Replicas per shard follow BOINC's adaptive replication through the
// ReputationBook: the requested R, one more while any chosen peer is a newcomer or disagreed lately,
// one fewer (not below 2) when all of them have a long clean record; peers are chosen best reputation
// first. Vote (protocols/inference: the element-wise median of the agreeing cluster), re-run
// disagreements and failures elsewhere, record agreed/disagreed/timed-out per replica in the book,
// write the ordered, complete predictions durably as DIR/predictions.json, and only then mark the task
// completed and release the workers. Tasks are recorded durably; one that was running when the daemon
// stopped runs again on restart.
import { randomBytes } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import {
  applyScores,
  argmaxRows,
  choosePeers,
  LOGIT_TOLERANCE,
  planShards,
  type ReplicaResult,
  type ShardRange,
  scoreChanges,
  vote,
} from '../../protocols/inference/quorum.js'
import { newTaskRecord } from '../../protocols/tasks/lifecycle.js'
import {
  encodeTaskSpec,
  type InferRequest,
  type InferTaskSpec,
  type Requirements,
  TASK_SPEC_VERSION,
} from '../../protocols/tasks/spec.js'
import { ReputationBook } from '../reputation.js'
import { syncFolder, writeFileAtomic } from '../store/atomic-file.js'
import type { TaskView } from './coordinator.js'
import {
  assignShards,
  INFER_TIMEOUT_MS_DEFAULT,
  InferBusyError,
  InferDeclinedError,
  type InferHost,
  releaseTask,
  requestShard,
} from './infer-executor.js'
import {
  decodeModelBundle,
  INFER_SHARD_ROWS_MAX,
  type InferenceAgreement,
  InferenceInputError,
  type InferenceOutput,
  PREDICTIONS_FILE,
  readModelBundle,
  readRows,
  type ShardOutcome,
  streamInputFile,
} from './infer-files.js'
import { CoalescingWriter, RecordFolder } from './records.js'

const log = logger('shardnet:tasks:infer-coordinator')

export interface InferCoordinatorInit {
  peerId: PeerId
  host: Pick<InferHost, 'dialProtocol'> & { getPeers(): PeerId[] }
  blocks: BlockExchange
  recordsFolder: string
  resultsFolder: string
  /** how long one shard run may take. @default INFER_TIMEOUT_MS_DEFAULT */
  runTimeoutMs?: number
  /** peers' agreement history; @default a book of its own in recordsFolder/reputation.json */
  reputation?: ReputationBook
  now?: () => number
}

/**
 * Shard requests this submitter has in flight to one peer, over all its tasks: below a worker's queue
 * (INFER_QUEUE_MAX_DEFAULT), so an honest submitter never finds a worker busy with its own requests.
 */
export const INFER_REQUESTS_PER_PEER_MAX_DEFAULT = 2
/** Tries of a request a worker answered busy (its queue full of other submitters' work), spaced out. */
const BUSY_TRIES_MAX = 4
const BUSY_RETRY_MS = 500

/** The errors the API shows as a 400 (bad input) instead of a 500. */
export { InferenceInputError }

/** What a restarted daemon needs to run a task again (kept in the record's summary). */
interface StoredJob {
  modelCid: string
  shardCids: string[]
  ranges: ShardRange[]
  replicas: number
  classes: number
  staffingMs: number
  requirements: Requirements
}

interface LiveInference {
  view: TaskView
  writer: CoalescingWriter<TaskView>
  controller: AbortController
  /** shards each peer accepted (its assignment) */
  assigned: Map<string, Set<number>>
  /** peers that declined the task (requirements not met): not asked again */
  declined: Map<string, string>
}

export class InferCoordinator {
  private readonly init: InferCoordinatorInit
  private readonly runTimeoutMs: number
  private readonly records: RecordFolder<TaskView>
  private readonly tasks = new Map<string, LiveInference>()
  private readonly now: () => number
  private readonly shutdown = new AbortController()
  /** peer scores, shared by every inference task of this submitter */
  private scores = new Map<string, number>()
  private book: ReputationBook | undefined
  /** shard requests in flight per peer, and the requests waiting for one of its slots */
  private readonly perPeer = new Map<string, { active: number; waiting: Array<() => void> }>()

  constructor(init: InferCoordinatorInit) {
    this.init = init
    this.runTimeoutMs = init.runTimeoutMs ?? INFER_TIMEOUT_MS_DEFAULT
    this.records = new RecordFolder(init.recordsFolder)
    this.now = init.now ?? Date.now
  }

  /**
   * Loads the stored tasks. One that was running when the daemon stopped runs again from its stored
   * job (its blocks are in this node's block store; every shard is voted on afresh), with a new
   * staffing deadline counted from now.
   */
  async start(): Promise<void> {
    this.book =
      this.init.reputation ?? (await ReputationBook.open(join(this.init.recordsFolder, 'reputation.json')))
    for (const { value } of await this.records.loadAll()) {
      const live = this.track(value)
      if (value.state !== 'running' && value.state !== 'staffing') continue
      const stored = value.summary.job as StoredJob | undefined
      if (stored === undefined) {
        this.update(live, {
          state: 'failed',
          error: 'the daemon stopped while the inference ran; submit it again',
        })
        continue
      }
      log('resuming inference %s', value.id)
      this.update(live, {
        state: 'running',
        groups: live.view.groups.map((g) => ({ ...g, status: 'running', step: 0, members: [], leader: '' })),
      })
      void this.execute(live, {
        modelCid: CID.parse(stored.modelCid),
        shardCids: stored.shardCids.map((cid) => CID.parse(cid)),
        ranges: stored.ranges,
        replicas: stored.replicas,
        deadlineMs: this.now() + stored.staffingMs,
        classes: stored.classes,
        requirements: stored.requirements,
      })
    }
  }

  async stop(): Promise<void> {
    this.shutdown.abort()
    await Promise.all([...this.tasks.values()].map((t) => t.writer.flush()))
    if (this.init.reputation === undefined) await this.book?.close()
    else await this.book?.flush()
  }

  /** The reputation book replicas are chosen with (for tests). */
  get reputation(): ReputationBook | undefined {
    return this.book
  }

  /** Peer scores (agreeing +1, outlier -5, failed -1), for the API and tests. */
  peerScores(): Record<string, number> {
    return Object.fromEntries(this.scores)
  }

  private track(view: TaskView): LiveInference {
    const live: LiveInference = {
      view,
      writer: new CoalescingWriter<TaskView>((value) => this.records.save(value.id, value)),
      controller: new AbortController(),
      assigned: new Map(),
      declined: new Map(),
    }
    this.tasks.set(view.id, live)
    return live
  }

  private update(live: LiveInference, fields: Partial<TaskView>): void {
    live.view = { ...live.view, ...fields, updatedMs: this.now() }
    void live.writer.schedule(live.view)
  }

  list(): TaskView[] {
    return [...this.tasks.values()].map((t) => structuredClone(t.view))
  }

  /** A task by id or unique prefix/suffix (6+ characters); undefined when none matches. */
  get(idOrPrefix: string): TaskView | undefined {
    const live = this.find(idOrPrefix)
    return live === undefined ? undefined : structuredClone(live.view)
  }

  private find(idOrPrefix: string): LiveInference | undefined {
    const exact = this.tasks.get(idOrPrefix)
    if (exact !== undefined || idOrPrefix.length < 6) return exact
    const matches = [...this.tasks.keys()].filter(
      (id) => id.startsWith(idOrPrefix) || id.endsWith(idOrPrefix),
    )
    return matches.length === 1 ? this.tasks.get(matches[0]) : undefined
  }

  /** Cancels a running inference task; undefined when it is not one of ours. */
  cancel(idOrPrefix: string): TaskView | undefined {
    const live = this.find(idOrPrefix)
    if (live === undefined) return undefined
    if (live.view.state === 'running') {
      live.controller.abort(new Error('cancelled by the submitter'))
      this.update(live, { state: 'cancelled', error: 'cancelled by the submitter' })
      void this.release(live)
    }
    return structuredClone(live.view)
  }

  async submit(request: InferRequest): Promise<TaskView> {
    // the input streams to a rows file beside the records; the shards are read from it one at a time
    await mkdir(this.init.recordsFolder, { recursive: true })
    const rowsFile = join(this.init.recordsFolder, `.input-${randomBytes(6).toString('hex')}.rows`)
    try {
      return await this.submitFrom(request, rowsFile)
    } finally {
      await rm(rowsFile, { force: true })
    }
  }

  private async submitFrom(request: InferRequest, rowsFile: string): Promise<TaskView> {
    const input = await streamInputFile(request.inputFile, rowsFile)
    const put = (bytes: Uint8Array) => this.init.blocks.put(bytes, { provide: false })
    let modelCid: CID
    let bundle: Uint8Array
    let parsedCid: CID | undefined
    try {
      parsedCid = CID.parse(request.model)
    } catch {
      parsedCid = undefined
    }
    if (parsedCid !== undefined) {
      bundle = await this.init.blocks
        .get(parsedCid, { signal: AbortSignal.timeout(30_000) })
        .catch((error) => {
          throw new InferenceInputError(
            `cannot fetch the model ${request.model}: ${(error as Error).message}`,
          )
        })
      modelCid = parsedCid
    } else {
      bundle = await readModelBundle(request.model)
      modelCid = await put(bundle)
    }
    const model = decodeModelBundle(bundle)
    const ranges = planShards(input.rows, request.shards)
    const largest = Math.max(...ranges.map((r) => r.end - r.start))
    if (largest > INFER_SHARD_ROWS_MAX)
      throw new InferenceInputError(
        `${input.rows} input rows in ${ranges.length} shards make shards of ${largest} rows, at most ` +
          `${INFER_SHARD_ROWS_MAX} are accepted: ask for at least ` +
          `${Math.ceil(input.rows / INFER_SHARD_ROWS_MAX)} shards`,
      )
    // the whole input's CID names it in the spec; only the shards are stored as blocks
    const inputCid = input.cid
    const shardCids: CID[] = []
    for (const r of ranges) shardCids.push(await put(await readRows(input.rowsFile, r.start, r.end)))
    const createdMs = this.now()
    const spec: InferTaskSpec = {
      version: TASK_SPEC_VERSION,
      kind: 'infer',
      requirements: request.requirements,
      staffingDeadlineMs: request.deadlineMs,
      createdMs,
      submitter: this.init.peerId,
      nonce: crypto.getRandomValues(new Uint8Array(16)),
      infer: {
        modelCid,
        inputCid,
        inputCount: input.rows,
        replicas: request.replicas,
        shards: ranges.length,
      },
    }
    const id = (await put(encodeTaskSpec(spec))).toString()
    const record = newTaskRecord({
      id,
      kind: 'infer',
      createdMs,
      deadlineMs: createdMs + request.deadlineMs,
      groupCount: ranges.length,
      groupSize: request.replicas,
      steps: 1,
      needed: request.replicas,
      summary: {
        model: request.model,
        modelCid: modelCid.toString(),
        architecture: model.architecture,
        inputFile: request.inputFile,
        inputCount: input.rows,
        replicas: request.replicas,
        shards: ranges.length,
        tolerance: LOGIT_TOLERANCE,
      },
    })
    const job: StoredJob = {
      modelCid: modelCid.toString(),
      shardCids: shardCids.map(String),
      ranges,
      replicas: request.replicas,
      classes: model.architecture.outputSize,
      staffingMs: request.deadlineMs,
      requirements: request.requirements,
    }
    record.summary.job = job
    const view: TaskView = {
      ...record,
      state: 'running',
      submitter: this.init.peerId.toString(),
      // one "group" per shard: members are the peers asked, step 1 once accepted
      groups: ranges.map((r) => ({
        group: r.index,
        members: [],
        status: 'running',
        leader: '',
        step: 0,
        loss: Number.NaN,
        samplesPerSecond: 0,
        updatedMs: createdMs,
        advancedMs: createdMs,
        waitingRound: 0,
        paramsCid: '',
        paramsFrom: '',
        appliedRound: 0,
      })),
    }
    const live = this.track(view)
    await live.writer.schedule(view)
    void this.execute(live, {
      modelCid,
      shardCids,
      ranges,
      replicas: request.replicas,
      deadlineMs: createdMs + request.deadlineMs,
      classes: model.architecture.outputSize,
      requirements: request.requirements,
    })
    return structuredClone(view)
  }

  private candidates(): string[] {
    const self = this.init.peerId.toString()
    return this.init.host
      .getPeers()
      .map(String)
      .filter((p) => p !== self)
  }

  private async execute(
    live: LiveInference,
    job: {
      modelCid: CID
      shardCids: CID[]
      ranges: ShardRange[]
      replicas: number
      deadlineMs: number
      classes: number
      requirements?: Requirements
    },
  ): Promise<void> {
    const signal = AbortSignal.any([live.controller.signal, this.shutdown.signal])
    const started = this.now()
    try {
      // wait (up to the staffing deadline) until enough peers are connected
      while (this.candidates().length < job.replicas) {
        if (this.now() > job.deadlineMs)
          throw new Error(
            `could not staff the task before its deadline: found ${this.candidates().length} peers, ` +
              `needed ${job.replicas}`,
          )
        signal.throwIfAborted()
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      const outcomes = await Promise.all(job.ranges.map((range) => this.runShard(live, job, range, signal)))
      const logits = new Float32Array((job.ranges.at(-1)?.end ?? 0) * job.classes)
      for (const { range, accepted } of outcomes) logits.set(accepted, range.start * job.classes)
      const classes = argmaxRows(logits, job.classes)
      const shards = outcomes.map((o) => o.outcome)
      const results = shards.reduce((n, s) => n + s.agreeing.length + s.outliers.length, 0)
      const agreeingResults = shards.reduce((n, s) => n + s.agreeing.length, 0)
      const agreement: InferenceAgreement = {
        shards: shards.length,
        replicas: job.replicas,
        agreeingResults,
        results,
        agreement: results === 0 ? 0 : agreeingResults / results,
        reruns: shards.reduce((n, s) => n + s.reruns, 0),
        outliers: [...new Set(shards.flatMap((s) => s.outliers))],
        scores: this.peerScores(),
      }
      const output: InferenceOutput = {
        format: 'shardnet-predictions/1',
        task: live.view.id,
        model: job.modelCid.toString(),
        count: classes.length,
        classes: job.classes,
        predictions: classes.map((c, index) => ({
          index,
          class: c,
          logits: Array.from(logits.subarray(index * job.classes, (index + 1) * job.classes)),
        })),
        agreement,
        shards,
        tolerance: {
          ...LOGIT_TOLERANCE,
          rule:
            'bitwise on the same backend class; across classes |a-b| <= absolute + relative*max(|a|,|b|); ' +
            'the accepted logits are the element-wise median of the agreeing results',
        },
      }
      // durable before the record says completed: the file and its folder fsynced, the folder's entry too
      const resultDir = join(this.init.resultsFolder, live.view.id)
      await mkdir(resultDir, { recursive: true })
      await syncFolder(this.init.resultsFolder)
      await writeFileAtomic(join(resultDir, PREDICTIONS_FILE), `${JSON.stringify(output)}\n`)
      signal.throwIfAborted()
      this.update(live, {
        state: 'completed',
        resultDir,
        summary: {
          ...live.view.summary,
          inference: agreement,
          shardOutcomes: shards,
          seconds: (this.now() - started) / 1000,
        },
      })
      void this.release(live)
      log(
        'inference %s completed: agreement %d, reruns %d',
        live.view.id,
        agreement.agreement,
        agreement.reruns,
      )
    } catch (error) {
      // a stopping daemon leaves the task running in its record: the next start runs it again
      if (live.view.state !== 'running' || this.shutdown.signal.aborted) return
      this.update(live, { state: 'failed', error: (error as Error).message })
      void this.release(live)
      log('inference %s failed: %s', live.view.id, (error as Error).message)
    }
  }

  /** Tells every peer that took part that the task is over (best effort: assignments also idle out). */
  private async release(live: LiveInference): Promise<void> {
    const peers = [...live.assigned.keys()]
    live.assigned.clear()
    await Promise.allSettled(
      peers.map((peer) =>
        releaseTask(this.init.host, peerIdFromString(peer), live.view.id, { timeoutMs: 10_000 }),
      ),
    )
  }

  /** Assigns `shard` to `peer` unless it holds it already; throws InferDeclinedError/InferBusyError. */
  private async ensureAssigned(live: LiveInference, peer: string, shard: number, signal: AbortSignal) {
    const held = live.assigned.get(peer)
    if (held?.has(shard)) return
    await assignShards(this.init.host, peerIdFromString(peer), live.view.id, [shard], {
      signal,
      timeoutMs: this.runTimeoutMs,
    })
    const now = live.assigned.get(peer) ?? new Set<number>()
    now.add(shard)
    live.assigned.set(peer, now)
  }

  /** Runs `work` once fewer than INFER_REQUESTS_PER_PEER_MAX_DEFAULT requests to `peer` are in flight. */
  private async withPeerSlot<T>(peer: string, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    let slot = this.perPeer.get(peer)
    if (slot === undefined) {
      slot = { active: 0, waiting: [] }
      this.perPeer.set(peer, slot)
    }
    const s = slot
    while (s.active >= INFER_REQUESTS_PER_PEER_MAX_DEFAULT) {
      signal.throwIfAborted()
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake)
          resolve()
        }
        s.waiting.push(wake)
        signal.addEventListener('abort', wake, { once: true })
      })
    }
    signal.throwIfAborted()
    s.active++
    try {
      return await work()
    } finally {
      s.active--
      s.waiting.shift()?.()
      if (s.active === 0 && s.waiting.length === 0) this.perPeer.delete(peer)
    }
  }

  private reputationScores(peers: readonly string[]): Map<string, number> {
    return new Map(peers.map((p) => [p, this.book?.score(p) ?? 0]))
  }

  /**
   * Runs one shard to a quorum: its replicas (adaptive, see the module comment) on peers that accept
   * the assignment, then re-runs elsewhere until a majority agree.
   */
  private async runShard(
    live: LiveInference,
    job: { modelCid: CID; shardCids: CID[]; replicas: number; classes: number; requirements?: Requirements },
    range: ShardRange,
    signal: AbortSignal,
  ): Promise<{ range: ShardRange; accepted: Float32Array; outcome: ShardOutcome }> {
    const rows = range.end - range.start
    const asked = new Set<string>()
    const results: ReplicaResult[] = []
    const failed: string[] = []
    const busy: string[] = []
    const eligible = () => this.candidates().filter((p) => !live.declined.has(p))
    // the replicas of this shard: R, adapted to the reputation of the peers it would go to first
    const first = choosePeers(eligible(), {
      count: job.replicas,
      scores: this.reputationScores(eligible()),
      shard: range.index,
    })
    // never more than the peers there are to run them (nor fewer than R: the vote then reports why)
    const adapted = this.book?.replicasFor(first, job.replicas) ?? job.replicas
    const replicas = Math.min(adapted, Math.max(job.replicas, eligible().length))
    let count = replicas
    for (;;) {
      signal.throwIfAborted()
      const candidates = eligible()
      const peers = choosePeers(candidates, {
        count,
        exclude: asked,
        scores: this.reputationScores(candidates),
        shard: range.index,
      })
      if (peers.length === 0 && asked.size === 0 && live.declined.size === 0)
        throw new Error(`no peer is available for shard ${range.index}`)
      for (const peer of peers) asked.add(peer)
      this.setShard(live, range.index, { members: [...asked] })
      const settled = await Promise.allSettled(
        peers.map(async (peer) => {
          for (let attempt = 1; ; attempt++) {
            try {
              await this.withPeerSlot(peer, signal, () =>
                this.ensureAssigned(live, peer, range.index, signal),
              )
              const answer = await this.withPeerSlot(peer, signal, () =>
                requestShard(
                  this.init.host,
                  peerIdFromString(peer),
                  {
                    task: live.view.id,
                    shard: range.index,
                    modelCid: job.modelCid.toString(),
                    inputCid: job.shardCids[range.index].toString(),
                    rows,
                    ...(job.requirements !== undefined ? { requirements: job.requirements } : {}),
                  },
                  { signal, timeoutMs: this.runTimeoutMs },
                ),
              )
              return { peer, ...answer }
            } catch (error) {
              if (!(error instanceof InferBusyError) || attempt >= BUSY_TRIES_MAX) throw error
              await new Promise((resolve) => setTimeout(resolve, BUSY_RETRY_MS * attempt))
            }
          }
        }),
      )
      settled.forEach((s, i) => {
        if (s.status === 'fulfilled') results.push(s.value)
        else if (s.reason instanceof InferDeclinedError) live.declined.set(peers[i], s.reason.message)
        else if (s.reason instanceof InferBusyError) busy.push(peers[i])
        else {
          failed.push(peers[i])
          log('shard %d on %s failed: %s', range.index, peers[i], (s.reason as Error).message)
        }
      })
      const available = eligible().filter((p) => !asked.has(p)).length
      const decision = vote({
        replicas,
        expectedLength: rows * job.classes,
        results,
        // a peer that declined (requirements not met) or was busy used no run
        runs: results.length + failed.length,
        available,
      })
      if (decision.kind === 'run') {
        log('shard %d: %s; running %d more elsewhere', range.index, decision.reason, decision.count)
        count = decision.count
        continue
      }
      this.scores = applyScores(this.scores, scoreChanges(decision, failed))
      if (decision.kind === 'accept') {
        for (const peer of decision.agreeing) this.book?.record(peer, 'agreed')
        for (const peer of decision.outliers) this.book?.record(peer, 'disagreed')
      }
      for (const peer of failed) this.book?.record(peer, 'timed-out')
      if (decision.kind === 'fail') {
        const declined = [...live.declined].map(([peer, reason]) => `${peer}: ${reason}`)
        const notes = [
          ...(declined.length > 0 ? [`${declined.length} declined: ${declined.join('; ')}`] : []),
          ...(busy.length > 0 ? [`${busy.length} busy`] : []),
        ]
        const noted = notes.length > 0 ? ` (${notes.join('; ')})` : ''
        throw new Error(`shard ${range.index} failed: ${decision.reason}${noted}`)
      }
      const outcome: ShardOutcome = {
        shard: range.index,
        start: range.start,
        end: range.end,
        replicas,
        agreeing: decision.agreeing,
        outliers: decision.outliers,
        failed,
        reruns: Math.max(0, results.length + failed.length - replicas),
        backendClasses: [
          ...new Set(results.filter((r) => decision.agreeing.includes(r.peer)).map((r) => r.backendClass)),
        ],
      }
      this.setShard(live, range.index, {
        members: decision.agreeing,
        leader: decision.agreeing[0],
        status: 'done',
        step: 1,
      })
      return { range, accepted: decision.logits, outcome }
    }
  }

  private setShard(live: LiveInference, shard: number, fields: Partial<TaskView['groups'][number]>): void {
    const nowMs = this.now()
    this.update(live, {
      groups: live.view.groups.map((g) => (g.group === shard ? { ...g, ...fields, updatedMs: nowMs } : g)),
    })
  }
}
