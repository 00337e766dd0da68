// The worker's side of inference, and the submitter's client for it: /shardnet/infer/1.0.0.
//
// A worker runs shards only for tasks whose submitter assigned them to it, and only while it has room.
// Every stream starts with ONE small length-prefixed JSON frame (at most INFER_HEADER_BYTES_MAX,
// refused as soon as its length prefix says more, read within INFER_HEADER_TIMEOUT_MS_DEFAULT):
//   { op: 'assign', task, shards }   the submitter asks this worker to take shards of its task: the
//                                    worker fetches the TaskSpec block (its CID is the task id) from
//                                    the stream's remote peer, which must be the spec's submitter, checks
//                                    the shards against the spec and its requirements against what it
//                                    offers, and accepts while it holds fewer than
//                                    INFER_ASSIGNED_TASKS_MAX_DEFAULT tasks (this is its claim)
//   { op: 'run', task, shard, modelCid, inputCid, rows }
//                                    runs one assigned shard: refused at once unless the remote peer is
//                                    the submitter that assigned (task, shard) here and the model is the
//                                    spec's; refused as busy when INFER_QUEUE_MAX_DEFAULT requests are
//                                    already queued or running
//   { op: 'release', task }          the submitter is done with the task (or cancelled it): running
//                                    shards of it stop and its slot frees
// A request without `op` is a run. The answer is a JSON header frame
//   { ok: true, backendClass, rows, classes } | { ok: false, reason, declined?, busy? }
// followed (a run that succeeded) by one frame of rows x classes float32 little-endian logits.
// A run fetches the model bundle and the input shard from the submitter (verified by CID; the model is
// cached) and computes on the cpu backend in a worker thread (node/tasks/infer-thread-pool.ts), or on
// the main thread in slices (webgpu, whose work is on the GPU, or a test's predictor). It stops when
// the stream closes, the task is released, the deadline passes or the daemon stops.
// Bad input is counted in `rejected` by reason and never crashes the node.
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { Backend } from '../../kernels/backend.js'
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { BACKENDS, decodeTaskSpec, type Requirements, unmetRequirement } from '../../protocols/tasks/spec.js'
import {
  BudgetExceededError,
  boundedLpStream,
  FrameTimeoutError,
  isOversizedFrameError,
  PeerBudgets,
  type PeerLimits,
} from '../../protocols/wire/framing.js'
import { type NodeCapability, offerOf } from '../executor/capability.js'
import {
  type BundledModel,
  bytesToFloats,
  decodeModelBundle,
  floatsToBytes,
  INFER_ROWS_MAX,
  INFER_SHARD_ROWS_MAX,
} from './infer-files.js'
import { FORWARD_ROWS_MAIN_THREAD, type ForwardOptions, predictLogits } from './infer-forward.js'
import { InferAbortedError, InferThread } from './infer-thread-pool.js'

export { predictLogits }

const log = logger('shardnet:tasks:infer')

export const INFER_PROTOCOL = '/shardnet/infer/1.0.0'
/** The first frame of every stream (and every answer header). */
export const INFER_HEADER_BYTES_MAX = 4096
const LOGITS_BYTES_MAX = INFER_SHARD_ROWS_MAX * CLASS_COUNT * 4
/** How long one shard may take, on the worker's side and on the submitter's. */
export const INFER_TIMEOUT_MS_DEFAULT = 120_000
/** How long the first frame may take to arrive. */
export const INFER_HEADER_TIMEOUT_MS_DEFAULT = 10_000
/** Shard requests a worker holds at once (running or waiting for its backend); more are refused. */
export const INFER_QUEUE_MAX_DEFAULT = 4
/** Tasks a worker holds assignments of at once, and of one submitter. */
export const INFER_ASSIGNED_TASKS_MAX_DEFAULT = 4
export const INFER_ASSIGNED_PER_SUBMITTER_MAX_DEFAULT = 2
/** An assignment with no run for this long frees its slot (a submitter that assigns and goes away). */
export const INFER_ASSIGNMENT_IDLE_MS_DEFAULT = 60_000
/**
 * Assignments being checked at once (each fetches a task spec block from its sender); more are refused
 * as busy, so a stranger's stream of assignments costs at most this many fetches at a time.
 */
export const INFER_ASSIGNS_IN_FLIGHT_MAX = 2
/**
 * Per-peer stream budgets (protocols/wire/framing.ts): a submitter holding an assignment here may
 * keep a few runs and their answers open; any other peer (a stranger, or a submitter's first assign)
 * gets 2 streams, and all of them together 16; only headers are read, so bytes in flight stay small.
 */
export const INFER_KNOWN_LIMITS: Readonly<PeerLimits> = {
  streamsPerPeer: 8,
  bytesInFlightPerPeer: 64 * 1024,
  readTimeoutMs: INFER_HEADER_TIMEOUT_MS_DEFAULT,
}
export const INFER_STRANGER_LIMITS: Readonly<PeerLimits> = {
  streamsPerPeer: 2,
  bytesInFlightPerPeer: 16 * 1024,
  readTimeoutMs: 5_000,
}
export const INFER_STRANGER_STREAMS_MAX = 16
/** Shards of one task one assignment may name. */
const ASSIGNED_SHARDS_MAX = 1024
const INFER_INBOUND_STREAMS_MAX = 32
const INFER_OUTBOUND_STREAMS_MAX = 64
/** Models a worker keeps decoded: the two most recent. */
const MODEL_CACHE_MAX = 2
/** How long fetching a task's spec block may take when it is assigned. */
const SPEC_FETCH_TIMEOUT_MS = 15_000

export interface InferRunFrame {
  task: string
  shard: number
  modelCid: string
  inputCid: string
  rows: number
  /** the task's requirements; a worker that does not meet them declines (not a failure) */
  requirements?: Requirements
}
/** @deprecated the run frame's old name */
export type InferRequestFrame = InferRunFrame

export type InferFrame =
  | ({ op: 'run' } & InferRunFrame)
  | { op: 'assign'; task: string; shards: number[] }
  | { op: 'release'; task: string }

/** A worker declined a shard or an assignment because it does not meet the task's requirements. */
export class InferDeclinedError extends Error {
  static override name = 'InferDeclinedError'
  override name = 'InferDeclinedError'
}

/** A worker refused a request because its queue or its assignment slots are full (try another). */
export class InferBusyError extends Error {
  static override name = 'InferBusyError'
  override name = 'InferBusyError'
}

export type InferHeader =
  | { ok: true; backendClass: string; rows: number; classes: number }
  | { ok: false; reason: string; declined?: boolean; busy?: boolean }

/**
 * The compute step of a shard on the main thread: logits [rows, classes] of `inputs`
 * [rows, PIXEL_COUNT] through the model on `backend`. Tests put a slow or a lying one in place of the
 * worker's own (the cpu thread, or predictLogits in slices on webgpu) to see what the submitter makes of it.
 */
export type ShardPredictor = (
  backend: Backend,
  model: BundledModel,
  inputs: Float32Array,
  request: InferRunFrame,
  options: ForwardOptions,
) => Promise<Float32Array>

export interface InferHost {
  handle(
    protocol: string,
    handler: (stream: Stream, connection: Connection) => void | Promise<void>,
    options?: { maxInboundStreams?: number; maxOutboundStreams?: number },
  ): Promise<void>
  unhandle(protocol: string): Promise<void>
  dialProtocol(peer: PeerId, protocol: string, options?: { signal?: AbortSignal }): Promise<Stream>
}

export function backendClassOf(backend: Backend): string {
  return `${backend.kind}:${backend.info.adapterName}`
}

export interface InferWorkerInit {
  /** what this worker offers; requests whose requirements it does not meet are declined */
  capability?: Pick<NodeCapability, 'backend' | 'maxBufferBytes' | 'matmulGflops'>
  host: InferHost
  blocks: BlockExchange
  openBackend: () => Promise<Backend>
  /** computes a shard's logits on the main thread instead of the cpu thread (tests) */
  predict?: ShardPredictor
  /** how long one request may take on this side. @default INFER_TIMEOUT_MS_DEFAULT */
  timeoutMs?: number
  /** @default INFER_QUEUE_MAX_DEFAULT */
  queueMax?: number
  /** @default INFER_ASSIGNED_TASKS_MAX_DEFAULT */
  assignedTasksMax?: number
  /** @default INFER_ASSIGNMENT_IDLE_MS_DEFAULT */
  assignmentIdleMs?: number
  now?: () => number
}

interface Assignment {
  task: string
  submitter: string
  shards: Set<number>
  modelCid: string
  /** aborted when the submitter releases the task (its running shards stop) */
  controller: AbortController
  running: number
  lastUsedMs: number
}

export const INFER_REJECT_REASONS = [
  'budget',
  'timeout',
  'oversized',
  'malformed',
  'unassigned',
  'busy',
  'declined',
  'unusable',
  'aborted',
  'stream-error',
] as const
export type InferRejectReason = (typeof INFER_REJECT_REASONS)[number]

/** Serves /shardnet/infer/1.0.0: runs assigned shards for their submitters. */
export class InferWorker {
  private readonly init: InferWorkerInit
  private readonly timeoutMs: number
  private readonly queueMax: number
  private readonly assignedTasksMax: number
  private readonly assignmentIdleMs: number
  private readonly now: () => number
  private readonly shutdown = new AbortController()
  private readonly models = new Map<string, Promise<BundledModel>>()
  private readonly assignments = new Map<string, Assignment>()
  private readonly thread = new InferThread()
  /** stream and byte budgets per peer: submitters with an assignment here are known, others strangers */
  readonly budgets: PeerBudgets
  private mainQueue: Promise<unknown> = Promise.resolve()
  /** run requests queued or running */
  private pending = 0
  /** assignments being checked */
  private assigning = 0
  /** requests refused, by reason (bad input is counted, never crashes) */
  readonly rejected: Record<InferRejectReason, number> = Object.fromEntries(
    INFER_REJECT_REASONS.map((r) => [r, 0]),
  ) as Record<InferRejectReason, number>
  served = 0
  assigned = 0

  constructor(init: InferWorkerInit) {
    this.init = init
    this.timeoutMs = init.timeoutMs ?? INFER_TIMEOUT_MS_DEFAULT
    this.queueMax = init.queueMax ?? INFER_QUEUE_MAX_DEFAULT
    this.assignedTasksMax = init.assignedTasksMax ?? INFER_ASSIGNED_TASKS_MAX_DEFAULT
    this.assignmentIdleMs = init.assignmentIdleMs ?? INFER_ASSIGNMENT_IDLE_MS_DEFAULT
    this.now = init.now ?? Date.now
    this.budgets = new PeerBudgets({
      known: INFER_KNOWN_LIMITS,
      stranger: INFER_STRANGER_LIMITS,
      strangerStreamsMax: INFER_STRANGER_STREAMS_MAX,
      isKnown: (peer) => [...this.assignments.values()].some((a) => a.submitter === peer),
    })
  }

  async start(): Promise<void> {
    await this.init.host.handle(INFER_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: INFER_INBOUND_STREAMS_MAX,
      maxOutboundStreams: INFER_OUTBOUND_STREAMS_MAX,
    })
  }

  async stop(): Promise<void> {
    this.shutdown.abort(new Error('the daemon is stopping'))
    await this.init.host.unhandle(INFER_PROTOCOL).catch(() => {})
    await this.thread.close()
  }

  /** Tasks this worker holds assignments of (for the API and tests). */
  assignedTasks(): Array<{ task: string; submitter: string; shards: number[]; running: number }> {
    this.expire()
    return [...this.assignments.values()].map((a) => ({
      task: a.task,
      submitter: a.submitter,
      shards: [...a.shards].sort((x, y) => x - y),
      running: a.running,
    }))
  }

  /** Shard requests queued or running now. */
  get queued(): number {
    return this.pending
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer
    // before any byte is read: a peer over its stream budget is refused outright (counted)
    const lease = this.budgets.acquire(from)
    if (lease === undefined) {
      this.rejected.budget++
      stream.abort(new BudgetExceededError('over this peer’s inference stream budget'))
      return
    }
    try {
      await this.serveWithin(stream, from, lease)
    } finally {
      lease.release()
    }
  }

  private async serveWithin(
    stream: Stream,
    from: PeerId,
    lease: NonNullable<ReturnType<PeerBudgets['acquire']>>,
  ): Promise<void> {
    const closed = new AbortController()
    stream.addEventListener('close', () => closed.abort(new Error('the stream closed')), { once: true })
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.shutdown.signal, closed.signal])
    const lp = boundedLpStream(stream, INFER_HEADER_BYTES_MAX, { lease })
    const reply = async (header: InferHeader, logits?: Float32Array) => {
      // lpStream bounds what it reads; the logits frame it writes may be larger
      await lp.write(new TextEncoder().encode(JSON.stringify(header)), { signal })
      if (logits !== undefined) await lp.write(floatsToBytes(logits), { signal })
      await stream.close({ signal })
    }
    const refuse = async (reason: InferRejectReason, header: Omit<InferHeader & { ok: false }, 'ok'>) => {
      this.rejected[reason]++
      await reply({ ok: false, ...header })
    }
    try {
      let frame: InferFrame
      try {
        const bytes = await lp.read({
          signal: AbortSignal.any([signal, AbortSignal.timeout(INFER_HEADER_TIMEOUT_MS_DEFAULT)]),
        })
        frame = checkFrame(JSON.parse(new TextDecoder().decode(bytes.subarray())))
      } catch (error) {
        if (
          isOversizedFrameError(error) ||
          error instanceof FrameTimeoutError ||
          error instanceof BudgetExceededError
        ) {
          this.rejected[
            error instanceof FrameTimeoutError
              ? 'timeout'
              : error instanceof BudgetExceededError
                ? 'budget'
                : 'oversized'
          ]++
          stream.abort(error as Error)
          return
        }
        if (signal.aborted || (error as Error).name === 'TimeoutError') throw error
        await refuse('malformed', { reason: `malformed request: ${(error as Error).message}` })
        return
      }
      if (frame.op === 'assign') {
        if (this.assigning >= INFER_ASSIGNS_IN_FLIGHT_MAX) {
          await refuse('busy', { reason: 'busy: other assignments are being checked', busy: true })
          return
        }
        this.assigning++
        const answer = await this.assign(from, frame.task, frame.shards, signal).finally(() => {
          this.assigning--
        })
        if (!answer.ok)
          await refuse(
            answer.busy === true ? 'busy' : answer.declined === true ? 'declined' : 'unusable',
            answer,
          )
        else await reply(answer)
        return
      }
      if (frame.op === 'release') {
        const assignment = this.assignments.get(frame.task)
        if (assignment === undefined || assignment.submitter !== from.toString()) {
          await refuse('unassigned', { reason: 'no assignment of that task from you' })
          return
        }
        this.assignments.delete(frame.task)
        assignment.controller.abort(new Error('the submitter released the task'))
        await reply({ ok: true, backendClass: '', rows: 0, classes: 0 })
        return
      }
      // a run: refused from the header unless assigned, before anything is fetched or queued
      this.expire()
      const assignment = this.assignments.get(frame.task)
      if (
        assignment === undefined ||
        assignment.submitter !== from.toString() ||
        !assignment.shards.has(frame.shard)
      ) {
        await refuse('unassigned', {
          reason:
            `shard ${frame.shard} of task ${frame.task.slice(0, 100)} ` +
            'is not assigned to this worker by you',
        })
        return
      }
      if (frame.modelCid !== assignment.modelCid) {
        await refuse('malformed', { reason: 'malformed request: the model is not the task’s' })
        return
      }
      const declined = this.ineligibility(frame.requirements)
      if (declined !== undefined) {
        await refuse('declined', { reason: declined, declined: true })
        return
      }
      if (this.pending >= this.queueMax) {
        await refuse('busy', {
          reason: `busy: ${this.pending} shard requests are queued here, the most this worker takes`,
          busy: true,
        })
        return
      }
      this.pending++
      assignment.running++
      assignment.lastUsedMs = this.now()
      let result: { logits: Float32Array; backendClass: string }
      try {
        result = await this.run(from, frame, AbortSignal.any([signal, assignment.controller.signal]))
      } catch (error) {
        if (signal.aborted || assignment.controller.signal.aborted || error instanceof InferAbortedError) {
          this.rejected.aborted++
          log('shard %d of %s stopped: %s', frame.shard, frame.task, (error as Error).message)
          stream.abort(error instanceof Error ? error : new Error(String(error)))
          return
        }
        log('shard %d of %s failed: %s', frame.shard, frame.task, (error as Error).message)
        await refuse('unusable', { reason: (error as Error).message.slice(0, 500) })
        return
      } finally {
        this.pending--
        assignment.running--
        assignment.lastUsedMs = this.now()
      }
      this.served++
      const { logits, backendClass } = result
      await reply({ ok: true, backendClass, rows: frame.rows, classes: logits.length / frame.rows }, logits)
    } catch (error) {
      this.rejected['stream-error']++
      log('serving %p failed: %s', from, (error as Error).message)
      stream.abort(error instanceof Error ? error : new Error(String(error)))
    }
  }

  private ineligibility(r: Requirements | undefined): string | undefined {
    const c = this.init.capability
    if (r === undefined || c === undefined) return undefined
    return unmetRequirement(r, offerOf(c))
  }

  /** Drops assignments idle for longer than the idle limit (no run in progress). */
  private expire(): void {
    const nowMs = this.now()
    for (const [task, a] of this.assignments)
      if (a.running === 0 && nowMs - a.lastUsedMs > this.assignmentIdleMs) this.assignments.delete(task)
  }

  private async assign(
    from: PeerId,
    task: string,
    shards: number[],
    signal: AbortSignal,
  ): Promise<InferHeader> {
    this.expire()
    const submitter = from.toString()
    const existing = this.assignments.get(task)
    if (existing !== undefined && existing.submitter !== submitter)
      return { ok: false, reason: 'that task is assigned here by its submitter, not by you' }
    if (existing === undefined) {
      const held = [...this.assignments.values()]
      if (held.length >= this.assignedTasksMax)
        return { ok: false, reason: `busy: this worker holds ${held.length} tasks`, busy: true }
      if (held.filter((a) => a.submitter === submitter).length >= INFER_ASSIGNED_PER_SUBMITTER_MAX_DEFAULT)
        return { ok: false, reason: 'busy: this worker holds the most tasks it takes from you', busy: true }
    }
    let cid: CID
    try {
      cid = CID.parse(task)
    } catch {
      return { ok: false, reason: 'the task id is not a CID' }
    }
    let specBytes: Uint8Array
    try {
      specBytes = await this.init.blocks.get(cid, {
        peers: [from],
        signal: AbortSignal.any([signal, AbortSignal.timeout(SPEC_FETCH_TIMEOUT_MS)]),
      })
    } catch (error) {
      return { ok: false, reason: `cannot fetch the task spec from you: ${(error as Error).message}` }
    }
    const decoded = decodeTaskSpec(specBytes)
    if (!decoded.ok) return { ok: false, reason: `the task spec is invalid: ${decoded.reason}` }
    const spec = decoded.spec
    if (spec.kind !== 'infer') return { ok: false, reason: 'the task is not an inference task' }
    if (!spec.submitter.equals(from)) return { ok: false, reason: 'the task spec names another submitter' }
    const bad = shards.find((s) => s >= spec.infer.shards)
    if (bad !== undefined) return { ok: false, reason: `the task has no shard ${bad}` }
    const declined = this.ineligibility(spec.requirements)
    if (declined !== undefined) return { ok: false, reason: declined, declined: true }
    // a concurrent assign of the same task may have landed while the spec was fetched
    const now = this.assignments.get(task)
    if (now !== undefined && now.submitter !== submitter)
      return { ok: false, reason: 'that task is assigned here by its submitter, not by you' }
    const assignment: Assignment = now ?? {
      task,
      submitter,
      shards: new Set(),
      modelCid: spec.infer.modelCid.toString(),
      controller: new AbortController(),
      running: 0,
      lastUsedMs: this.now(),
    }
    if (assignment.shards.size + shards.length > ASSIGNED_SHARDS_MAX)
      return { ok: false, reason: 'too many shards assigned' }
    for (const s of shards) assignment.shards.add(s)
    assignment.lastUsedMs = this.now()
    this.assignments.set(task, assignment)
    this.assigned++
    return { ok: true, backendClass: '', rows: 0, classes: 0 }
  }

  private model(cid: CID, from: PeerId, signal: AbortSignal): Promise<BundledModel> {
    const key = cid.toString()
    let cached = this.models.get(key)
    if (cached === undefined) {
      cached = this.init.blocks.get(cid, { peers: [from], signal }).then(decodeModelBundle)
      cached.catch(() => this.models.delete(key))
      this.models.set(key, cached)
      for (const oldest of [...this.models.keys()].slice(0, -MODEL_CACHE_MAX)) this.models.delete(oldest)
    }
    return cached
  }

  private async run(
    from: PeerId,
    request: InferRunFrame,
    signal: AbortSignal,
  ): Promise<{ logits: Float32Array; backendClass: string }> {
    const model = await this.model(CID.parse(request.modelCid), from, signal)
    const inputs = bytesToFloats(
      await this.init.blocks.get(CID.parse(request.inputCid), { peers: [from], signal }),
    )
    if (inputs.length !== request.rows * PIXEL_COUNT)
      throw new Error(`the input shard holds ${inputs.length} values, ${request.rows} rows were announced`)
    signal.throwIfAborted()
    const backend = await this.init.openBackend()
    if (this.init.predict === undefined && backend.kind === 'cpu') {
      // the cpu forward pass runs in the worker thread, never on the event loop, on the same engine
      const engine = backend.info.cpuEngine
      backend.destroy()
      return this.thread.run(
        { architecture: model.architecture, layers: model.layers },
        inputs,
        signal,
        engine,
      )
    }
    // webgpu (or a test's predictor): on the main thread, one at a time, in slices
    const predict = this.init.predict ?? ((b, m, x, _r, o) => predictLogits(b, m, x, o))
    const work = async () => {
      signal.throwIfAborted()
      const logits = await predict(backend, model, inputs, request, {
        signal,
        sliceRows: backend.kind === 'cpu' ? FORWARD_ROWS_MAIN_THREAD : 256,
      })
      return { logits, backendClass: backendClassOf(backend) }
    }
    const result = this.mainQueue.then(work, work).finally(() => backend.destroy())
    this.mainQueue = result.catch(() => {})
    return result
  }
}

function checkCid(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length > 200) throw new Error(name)
  CID.parse(value)
  return value
}

function checkTask(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 200) throw new Error('task')
  return value
}

function checkShard(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= ASSIGNED_SHARDS_MAX)
    throw new Error('shard')
  return value
}

/** Checks the first frame of a stream; throws naming the first bad field. */
export function checkFrame(value: unknown): InferFrame {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object')
  const r = value as Record<string, unknown>
  const op = r.op ?? 'run'
  if (op === 'assign') {
    const task = checkTask(r.task)
    if (!Array.isArray(r.shards) || r.shards.length === 0 || r.shards.length > ASSIGNED_SHARDS_MAX)
      throw new Error('shards')
    return { op, task, shards: [...new Set(r.shards.map(checkShard))] }
  }
  if (op === 'release') return { op, task: checkTask(r.task) }
  if (op !== 'run') throw new Error('op')
  const task = checkTask(r.task)
  const shard = checkShard(r.shard)
  if (typeof r.rows !== 'number' || !Number.isInteger(r.rows) || r.rows < 1 || r.rows > INFER_ROWS_MAX)
    throw new Error('rows')
  if (r.rows > INFER_SHARD_ROWS_MAX) throw new Error('rows')
  const modelCid = checkCid(r.modelCid, 'modelCid')
  const inputCid = checkCid(r.inputCid, 'inputCid')
  let requirements: Requirements | undefined
  if (r.requirements !== undefined) {
    const q = r.requirements as Record<string, unknown>
    if (
      q === null ||
      typeof q !== 'object' ||
      !(BACKENDS as readonly unknown[]).includes(q.backend) ||
      typeof q.minMemoryBytes !== 'number' ||
      typeof q.minGflops !== 'number'
    )
      throw new Error('requirements')
    requirements = {
      backend: q.backend as Requirements['backend'],
      minMemoryBytes: q.minMemoryBytes,
      minGflops: q.minGflops,
    }
  }
  return {
    op: 'run',
    task,
    shard,
    rows: r.rows,
    modelCid,
    inputCid,
    ...(requirements !== undefined ? { requirements } : {}),
  }
}

interface ExchangeOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

/** Sends one frame, reads the answer header (and the logits when `logits`); throws on refusal. */
async function exchange(
  host: Pick<InferHost, 'dialProtocol'>,
  peer: PeerId,
  frame: InferFrame,
  logits: boolean,
  options: ExchangeOptions,
): Promise<{ header: InferHeader & { ok: true }; logits?: Float32Array }> {
  const signal = AbortSignal.any([
    AbortSignal.timeout(options.timeoutMs ?? INFER_TIMEOUT_MS_DEFAULT),
    ...(options.signal !== undefined ? [options.signal] : []),
  ])
  const stream = await host.dialProtocol(peer, INFER_PROTOCOL, { signal })
  try {
    const lp = boundedLpStream(stream, Math.max(INFER_HEADER_BYTES_MAX, LOGITS_BYTES_MAX))
    await lp.write(new TextEncoder().encode(JSON.stringify(frame)), { signal })
    const headerFrame = await lp.read({ signal })
    if (headerFrame.byteLength > INFER_HEADER_BYTES_MAX) throw new Error('the answer header is oversized')
    const header = JSON.parse(new TextDecoder().decode(headerFrame.subarray())) as InferHeader
    if (header === null || typeof header !== 'object') throw new Error('the answer is malformed')
    if (!header.ok) {
      if (header.declined === true)
        throw new InferDeclinedError(`the worker declined: ${String(header.reason)}`)
      if (header.busy === true) throw new InferBusyError(`the worker is busy: ${String(header.reason)}`)
      throw new Error(`the worker refused: ${String(header.reason)}`)
    }
    if (typeof header.backendClass !== 'string' || header.backendClass.length > 300)
      throw new Error('the answer names no backend class')
    const values = logits ? bytesToFloats((await lp.read({ signal })).subarray()) : undefined
    await stream.close({ signal }).catch(() => {})
    return { header, ...(values !== undefined ? { logits: values } : {}) }
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)))
    throw error
  }
}

/** The submitter's side: asks `peer` to take `shards` of `task`; throws when it declines or refuses. */
export async function assignShards(
  host: Pick<InferHost, 'dialProtocol'>,
  peer: PeerId,
  task: string,
  shards: number[],
  options: ExchangeOptions = {},
): Promise<void> {
  await exchange(host, peer, { op: 'assign', task, shards }, false, options)
}

/** The submitter's side: tells `peer` the task is over (its running shards stop). */
export async function releaseTask(
  host: Pick<InferHost, 'dialProtocol'>,
  peer: PeerId,
  task: string,
  options: ExchangeOptions = {},
): Promise<void> {
  await exchange(host, peer, { op: 'release', task }, false, options)
}

/** The submitter's side: asks `peer` to run one assigned shard; resolves with its logits or throws. */
export async function requestShard(
  host: Pick<InferHost, 'dialProtocol'>,
  peer: PeerId,
  request: InferRunFrame,
  options: ExchangeOptions = {},
): Promise<{ backendClass: string; logits: Float32Array }> {
  const { header, logits } = await exchange(host, peer, { op: 'run', ...request }, true, options)
  return { backendClass: header.backendClass, logits: logits! }
}
