// The worker's side of inference, and the submitter's client for it: /shardnet/infer/1.0.0.
//
// The submitter opens a stream and sends one length-prefixed JSON request
//   { task, shard, modelCid, inputCid, rows }
// The worker fetches the model bundle and the input shard from the submitter (verified by CID; the
// model is cached), runs the MLP forward pass on its backend, and answers with a JSON header frame
//   { ok: true, backendClass, rows, classes } | { ok: false, reason }
// followed (when ok) by one frame of rows x classes float32 little-endian logits.
// One shard runs at a time per worker; others wait their turn within the requester's deadline.
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import type { Backend } from '../../kernels/backend.js'
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { Mlp } from '../../kernels/models/mlp.js'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { BACKENDS, type Requirements, unmetRequirement } from '../../protocols/tasks/spec.js'
import { type NodeCapability, offerOf } from '../executor/capability.js'
import {
  type BundledModel,
  bytesToFloats,
  decodeModelBundle,
  floatsToBytes,
  INFER_ROWS_MAX,
} from './infer-files.js'

const log = logger('shardnet:tasks:infer')

export const INFER_PROTOCOL = '/shardnet/infer/1.0.0'
const REQUEST_BYTES_MAX = 4096
const HEADER_BYTES_MAX = 4096
const LOGITS_BYTES_MAX = INFER_ROWS_MAX * CLASS_COUNT * 4
/** rows per forward pass */
const BATCH_ROWS = 1000
/** How long one shard may take, on the worker's side and on the submitter's. */
export const INFER_TIMEOUT_MS_DEFAULT = 120_000
/** Shard requests a worker serves at once (they queue for its backend) and opens itself. */
const INFER_INBOUND_STREAMS_MAX = 32
const INFER_OUTBOUND_STREAMS_MAX = 64
/** Models a worker keeps decoded: the two most recent. */
const MODEL_CACHE_MAX = 2

export interface InferRequestFrame {
  task: string
  shard: number
  modelCid: string
  inputCid: string
  rows: number
  /** the task's requirements; a worker that does not meet them declines (not a failure) */
  requirements?: Requirements
}

/** A worker declined a shard because it does not meet the task's requirements. */
export class InferDeclinedError extends Error {
  static override name = 'InferDeclinedError'
  override name = 'InferDeclinedError'
}

export type InferHeader =
  | { ok: true; backendClass: string; rows: number; classes: number }
  | { ok: false; reason: string; declined?: boolean }

/**
 * The compute step of a shard: logits [rows, classes] of `inputs` [rows, PIXEL_COUNT] through the
 * model on `backend`. {@link predictLogits} is the worker's; tests put a slow or a lying one in its
 * place to see what the submitter makes of it.
 */
export type ShardPredictor = (
  backend: Backend,
  model: BundledModel,
  inputs: Float32Array,
  request: InferRequestFrame,
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

/** Logits [rows, classes] of `inputs` [rows, PIXEL_COUNT] through the model on `backend`. */
export async function predictLogits(
  backend: Backend,
  model: BundledModel,
  inputs: Float32Array,
): Promise<Float32Array> {
  const rows = inputs.length / PIXEL_COUNT
  const classes = model.architecture.outputSize
  const mlp = Mlp.fromHost(backend, model.architecture, model.layers)
  try {
    const out = new Float32Array(rows * classes)
    for (let start = 0; start < rows; start += BATCH_ROWS) {
      const end = Math.min(rows, start + BATCH_ROWS)
      const x = backend.upload(inputs.subarray(start * PIXEL_COUNT, end * PIXEL_COUNT), [
        end - start,
        PIXEL_COUNT,
      ])
      const logits = mlp.logits(x)
      out.set(await backend.read(logits), start * classes)
      x.dispose()
      logits.dispose()
    }
    return out
  } finally {
    for (const tensor of mlp.parameters()) tensor.dispose()
  }
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
  /** computes a shard's logits. @default predictLogits */
  predict?: ShardPredictor
  /** how long one request may take on this side. @default INFER_TIMEOUT_MS_DEFAULT */
  timeoutMs?: number
}

/** Serves /shardnet/infer/1.0.0: runs shards for submitters. */
export class InferWorker {
  private readonly init: InferWorkerInit
  private readonly predict: ShardPredictor
  private readonly timeoutMs: number
  private readonly shutdown = new AbortController()
  private readonly models = new Map<string, Promise<BundledModel>>()
  private queue: Promise<unknown> = Promise.resolve()
  /** requests refused as malformed or unusable, by reason (bad input is counted, never crashes) */
  readonly rejected = { malformed: 0, unusable: 0, 'stream-error': 0 }
  served = 0

  constructor(init: InferWorkerInit) {
    this.init = init
    this.predict = init.predict ?? predictLogits
    this.timeoutMs = init.timeoutMs ?? INFER_TIMEOUT_MS_DEFAULT
  }

  async start(): Promise<void> {
    await this.init.host.handle(INFER_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: INFER_INBOUND_STREAMS_MAX,
      maxOutboundStreams: INFER_OUTBOUND_STREAMS_MAX,
    })
  }

  async stop(): Promise<void> {
    this.shutdown.abort()
    await this.init.host.unhandle(INFER_PROTOCOL).catch(() => {})
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.shutdown.signal])
    const lp = lpStream(stream, { maxDataLength: Math.max(REQUEST_BYTES_MAX, LOGITS_BYTES_MAX) })
    const reply = async (header: InferHeader, logits?: Float32Array) => {
      await lp.write(new TextEncoder().encode(JSON.stringify(header)), { signal })
      if (logits !== undefined) await lp.write(floatsToBytes(logits), { signal })
      await stream.close({ signal })
    }
    try {
      let request: InferRequestFrame
      try {
        const frame = await lp.read({ signal })
        if (frame.byteLength > REQUEST_BYTES_MAX) throw new Error('oversized')
        request = checkRequest(JSON.parse(new TextDecoder().decode(frame.subarray())))
      } catch (error) {
        this.rejected.malformed++
        await reply({ ok: false, reason: `malformed request: ${(error as Error).message}` })
        return
      }
      const declined = this.ineligibility(request.requirements)
      if (declined !== undefined) {
        await reply({ ok: false, reason: declined, declined: true })
        return
      }
      let result: { logits: Float32Array; backendClass: string }
      try {
        result = await this.run(connection.remotePeer, request, signal)
      } catch (error) {
        this.rejected.unusable++
        log('shard %d of %s failed: %s', request.shard, request.task, (error as Error).message)
        await reply({ ok: false, reason: (error as Error).message.slice(0, 500) })
        return
      }
      this.served++
      const { logits, backendClass } = result
      await reply(
        { ok: true, backendClass, rows: request.rows, classes: logits.length / request.rows },
        logits,
      )
    } catch (error) {
      this.rejected['stream-error']++
      log('serving %p failed: %s', connection.remotePeer, (error as Error).message)
      stream.abort(error instanceof Error ? error : new Error(String(error)))
    }
  }

  private ineligibility(r: Requirements | undefined): string | undefined {
    const c = this.init.capability
    if (r === undefined || c === undefined) return undefined
    return unmetRequirement(r, offerOf(c))
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

  private run(
    from: PeerId,
    request: InferRequestFrame,
    signal: AbortSignal,
  ): Promise<{ logits: Float32Array; backendClass: string }> {
    const work = async () => {
      signal.throwIfAborted()
      const model = await this.model(CID.parse(request.modelCid), from, signal)
      const inputs = bytesToFloats(
        await this.init.blocks.get(CID.parse(request.inputCid), { peers: [from], signal }),
      )
      if (inputs.length !== request.rows * PIXEL_COUNT)
        throw new Error(`the input shard holds ${inputs.length} values, ${request.rows} rows were announced`)
      const backend = await this.init.openBackend()
      try {
        const logits = await this.predict(backend, model, inputs, request)
        return { logits, backendClass: backendClassOf(backend) }
      } finally {
        backend.destroy()
      }
    }
    const result = this.queue.then(work, work)
    this.queue = result.catch(() => {})
    return result
  }
}

function checkRequest(value: unknown): InferRequestFrame {
  if (value === null || typeof value !== 'object') throw new Error('not an object')
  const r = value as Record<string, unknown>
  if (typeof r.task !== 'string' || r.task.length > 200) throw new Error('task')
  if (typeof r.shard !== 'number' || !Number.isInteger(r.shard) || r.shard < 0 || r.shard > 1024)
    throw new Error('shard')
  if (typeof r.rows !== 'number' || !Number.isInteger(r.rows) || r.rows < 1 || r.rows > INFER_ROWS_MAX)
    throw new Error('rows')
  for (const key of ['modelCid', 'inputCid'] as const) {
    if (typeof r[key] !== 'string') throw new Error(key)
    CID.parse(r[key] as string)
  }
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
    task: r.task,
    shard: r.shard,
    rows: r.rows,
    modelCid: r.modelCid as string,
    inputCid: r.inputCid as string,
    ...(requirements !== undefined ? { requirements } : {}),
  }
}

/** The submitter's side: asks `peer` to run one shard; resolves with its logits or throws. */
export async function requestShard(
  host: Pick<InferHost, 'dialProtocol'>,
  peer: PeerId,
  request: InferRequestFrame,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<{ backendClass: string; logits: Float32Array }> {
  const signal = AbortSignal.any([
    AbortSignal.timeout(options.timeoutMs ?? INFER_TIMEOUT_MS_DEFAULT),
    ...(options.signal !== undefined ? [options.signal] : []),
  ])
  const stream = await host.dialProtocol(peer, INFER_PROTOCOL, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: Math.max(HEADER_BYTES_MAX, LOGITS_BYTES_MAX) })
    await lp.write(new TextEncoder().encode(JSON.stringify(request)), { signal })
    const headerFrame = await lp.read({ signal })
    if (headerFrame.byteLength > HEADER_BYTES_MAX) throw new Error('the answer header is oversized')
    const header = JSON.parse(new TextDecoder().decode(headerFrame.subarray())) as InferHeader
    if (header === null || typeof header !== 'object') throw new Error('the answer is malformed')
    if (!header.ok) {
      if (header.declined === true)
        throw new InferDeclinedError(`the worker declined: ${String(header.reason)}`)
      throw new Error(`the worker refused: ${String(header.reason)}`)
    }
    if (typeof header.backendClass !== 'string' || header.backendClass.length > 300)
      throw new Error('the answer names no backend class')
    const logits = bytesToFloats((await lp.read({ signal })).subarray())
    await stream.close({ signal }).catch(() => {})
    return { backendClass: header.backendClass, logits }
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)))
    throw error
  }
}
