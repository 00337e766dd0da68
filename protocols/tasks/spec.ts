/**
 * The TaskSpec: what a user asks the network to compute.
 *
 * Two forms:
 * - {@link TaskRequest}: what the CLI sends to its own daemon (JSON). {@link parseTaskRequest} checks
 *   every field and refuses with a {@link TaskSpecError} naming the first bad field and the accepted
 *   range, e.g. `groupSize must be an odd integer from 1 to 15, got 4`.
 * - {@link TaskSpec} (protocols/wire/task-spec.proto): what the daemon stores as a block and workers
 *   fetch by CID. {@link decodeTaskSpec} decodes untrusted bytes with a size limit and checks the same
 *   ranges; it never throws, it returns a reason.
 */
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { z } from 'zod'
import { TaskSpec as WireTaskSpec } from '../wire/task-spec.js'
import { cidFromBytes, GROUP_SIZE_MAX, GROUPS_MAX, peerIdFromBytes } from '../wire/validation/index.js'

export { WireTaskSpec }

export const TASK_SPEC_VERSION = 1
/** Largest encoded TaskSpec block accepted, in bytes. */
export const TASK_SPEC_BYTES_MAX = 64 * 1024
export const STEPS_MAX = 1_000_000
export const BATCH_SIZE_MAX = 8192
/** Samples per member per step when a task does not say (`submit --batch`) */
export const BATCH_SIZE_DEFAULT = 64
export const LEARNING_RATE_MAX = 10
export const SEED_MAX = 0xffff_ffff
export const HIDDEN_LAYERS_MAX = 8
export const LAYER_WIDTH_MAX = 65_536
export const REPLICAS_MAX = 15
export const INFER_SHARDS_MAX = 64
/** The longest a submitter waits for workers. */
export const STAFFING_DEADLINE_MS_MAX = 24 * 3600_000
/** Default of TrainRequest.replaceAfterMs. */
export const REPLACE_AFTER_MS_DEFAULT = 60_000
/** Longest TrainRequest.replaceAfterMs. */
export const REPLACE_AFTER_MS_MAX = 24 * 3600_000
export const STAFFING_DEADLINE_MS_MIN = 1_000
export const STAFFING_DEADLINE_MS_DEFAULT = 60_000
/** No worker anywhere has a buffer this large: a larger requirement is refused outright. */
export const MIN_MEMORY_BYTES_MAX = 2 ** 50
export const GFLOPS_REQUIREMENT_MAX = 1e7

export const MODELS = ['mnist-mlp'] as const
export type ModelName = (typeof MODELS)[number]
export const AGGREGATES = ['mean', 'median', 'trimmed-mean'] as const
export type AggregateRule = (typeof AGGREGATES)[number]
export const COMPRESSIONS = ['none', 'int8'] as const
export type Compression = (typeof COMPRESSIONS)[number]
export const BACKENDS = ['any', 'webgpu', 'cpu'] as const
export type BackendRequirement = (typeof BACKENDS)[number]

/** A field of a task that is missing, of the wrong type or out of range. `field` names it. */
export class TaskSpecError extends Error {
  static override name = 'TaskSpecError'
  override name = 'TaskSpecError'
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message)
  }
}

const integer = (field: string, min: number, max: number) =>
  z
    .number({ error: `${field} must be a number` })
    .refine((n) => Number.isInteger(n) && n >= min && n <= max, {
      error: (issue) => `${field} must be an integer from ${min} to ${max}, got ${String(issue.input)}`,
    })

const requirementsSchema = z.strictObject({
  backend: z
    .enum(BACKENDS, { error: `requirements.backend must be one of ${BACKENDS.join(', ')}` })
    .default('any'),
  minMemoryBytes: integer('requirements.minMemoryBytes', 0, MIN_MEMORY_BYTES_MAX).default(0),
  minGflops: z
    .number({ error: 'requirements.minGflops must be a number' })
    .refine((n) => Number.isFinite(n) && n >= 0 && n <= GFLOPS_REQUIREMENT_MAX, {
      error: `requirements.minGflops must be a number from 0 to ${GFLOPS_REQUIREMENT_MAX}`,
    })
    .default(0),
})

const common = {
  requirements: requirementsSchema.default({ backend: 'any', minMemoryBytes: 0, minGflops: 0 }),
  deadlineMs: integer('deadlineMs', STAFFING_DEADLINE_MS_MIN, STAFFING_DEADLINE_MS_MAX).default(
    STAFFING_DEADLINE_MS_DEFAULT,
  ),
}

const trainRequestSchema = z
  .strictObject({
    kind: z.literal('train'),
    model: z.enum(MODELS, { error: `model must be one of ${MODELS.join(', ')}` }),
    hiddenSizes: z
      .array(integer('every hiddenSizes width', 1, LAYER_WIDTH_MAX), {
        error: 'hiddenSizes must be a list of layer widths',
      })
      .max(HIDDEN_LAYERS_MAX, { error: `hiddenSizes takes at most ${HIDDEN_LAYERS_MAX} layers` })
      .default([256]),
    groups: integer('groups', 1, GROUPS_MAX),
    groupSize: integer('groupSize', 1, GROUP_SIZE_MAX).refine((n) => n % 2 === 1, {
      error: (issue) =>
        `groupSize must be an odd integer from 1 to ${GROUP_SIZE_MAX} (a Raft group needs a clear majority), got ${String(issue.input)}`,
    }),
    steps: integer('steps', 1, STEPS_MAX),
    batchSize: integer('batchSize', 1, BATCH_SIZE_MAX).default(BATCH_SIZE_DEFAULT),
    learningRate: z
      .number({ error: 'learningRate must be a number' })
      .refine((n) => Number.isFinite(n) && n > 0 && n <= LEARNING_RATE_MAX, {
        error: (issue) =>
          `learningRate must be a number above 0 and at most ${LEARNING_RATE_MAX}, got ${String(issue.input)}`,
      })
      .default(1e-3),
    seed: integer('seed', 0, SEED_MAX).default(1),
    aggregate: z
      .enum(AGGREGATES, { error: `aggregate must be one of ${AGGREGATES.join(', ')}` })
      .default('mean'),
    outerEvery: integer('outerEvery', 0, STEPS_MAX).default(0),
    compress: z
      .enum(COMPRESSIONS, { error: `compress must be one of ${COMPRESSIONS.join(', ')}` })
      .default('none'),
    /**
     * how long a group that lost its majority waits for its members to return before new claimants
     * replace them (membership change); 0: never replace
     */
    replaceAfterMs: integer('replaceAfterMs', 0, REPLACE_AFTER_MS_MAX).default(REPLACE_AFTER_MS_DEFAULT),
    /** absolute path of a --data file on the submitter's machine; default: MNIST from the package */
    dataFile: z.string({ error: 'dataFile must be a path' }).min(1).max(4096).optional(),
    ...common,
  })
  .refine((t) => t.outerEvery <= t.steps, {
    error: 'outerEvery must not exceed steps (0 averages the groups only at the end)',
    path: ['outerEvery'],
  })

const inferRequestSchema = z.strictObject({
  kind: z.literal('infer'),
  /** a model directory on the submitter's machine, or a model checkpoint's CID */
  model: z.string({ error: 'model must be a model directory or a CID' }).min(1).max(4096),
  /** absolute path of the inputs file on the submitter's machine */
  inputFile: z.string({ error: 'inputFile must be a path' }).min(1).max(4096),
  replicas: integer('replicas', 1, REPLICAS_MAX).default(2),
  shards: integer('shards', 1, INFER_SHARDS_MAX).default(2),
  ...common,
})

const requestSchema = z.discriminatedUnion('kind', [trainRequestSchema, inferRequestSchema], {
  error: 'kind must be "train" or "infer"',
})

export type TrainRequest = z.infer<typeof trainRequestSchema>
export type InferRequest = z.infer<typeof inferRequestSchema>
export type TaskRequest = TrainRequest | InferRequest
export type Requirements = z.infer<typeof requirementsSchema>

/** Checks a submission; throws TaskSpecError naming the first bad field. */
export function parseTaskRequest(value: unknown): TaskRequest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TaskSpecError('', 'a task must be a JSON object')
  }
  const result = requestSchema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const field = issue.path.map(String).join('.')
  if (issue.code === 'unrecognized_keys') {
    throw new TaskSpecError(field, `unknown task field ${issue.keys.map((k) => `"${k}"`).join(', ')}`)
  }
  const given = issue.path.reduce<unknown>(
    (at, key) =>
      at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[key] : undefined,
    value,
  )
  if (issue.code === 'invalid_type' && given === undefined) {
    throw new TaskSpecError(field, `${field} is required`)
  }
  const message =
    issue.message.startsWith(field) || field === '' ? issue.message : `${field}: ${issue.message}`
  throw new TaskSpecError(field, message)
}

// ---------------------------------------------------------------------------------------------------
// the stored form

/** A TaskSpec in the shapes callers use. */
export interface TrainSpec {
  model: ModelName
  hiddenSizes: number[]
  groups: number
  groupSize: number
  steps: number
  batchSize: number
  learningRate: number
  seed: number
  aggregate: AggregateRule
  outerEvery: number
  compress: Compression
  dataset: {
    name: 'mnist' | 'custom'
    shardCids: CID[]
    testCid: CID
    trainCount: number
    testCount: number
  }
}

export interface InferSpec {
  modelCid: CID
  inputCid: CID
  inputCount: number
  replicas: number
  shards: number
}

export interface TaskSpec {
  version: number
  kind: 'train' | 'infer'
  requirements: Requirements
  staffingDeadlineMs: number
  createdMs: number
  submitter: PeerId
  nonce: Uint8Array
  train?: TrainSpec
  infer?: InferSpec
}

const AGGREGATE_TO_WIRE: Record<AggregateRule, WireTaskSpec.Aggregate> = {
  mean: WireTaskSpec.Aggregate.MEAN,
  median: WireTaskSpec.Aggregate.MEDIAN,
  'trimmed-mean': WireTaskSpec.Aggregate.TRIMMED_MEAN,
}
const BACKEND_TO_WIRE: Record<BackendRequirement, WireTaskSpec.Backend> = {
  any: WireTaskSpec.Backend.ANY,
  webgpu: WireTaskSpec.Backend.WEBGPU,
  cpu: WireTaskSpec.Backend.CPU,
}

function invert<K extends string, V>(table: Record<K, V>): Map<V, K> {
  return new Map(Object.entries(table).map(([k, v]) => [v as V, k as K]))
}
const AGGREGATE_FROM_WIRE = invert(AGGREGATE_TO_WIRE)
const BACKEND_FROM_WIRE = invert(BACKEND_TO_WIRE)

/** Encodes a spec for storage as a block. */
export function encodeTaskSpec(spec: TaskSpec): Uint8Array {
  const wire: WireTaskSpec = {
    version: spec.version,
    kind: spec.kind === 'train' ? WireTaskSpec.Kind.TRAIN : WireTaskSpec.Kind.INFER,
    requirements: {
      backend: BACKEND_TO_WIRE[spec.requirements.backend],
      minMemoryBytes: spec.requirements.minMemoryBytes,
      minGflops: spec.requirements.minGflops,
    },
    staffingDeadlineMs: spec.staffingDeadlineMs,
    createdMs: spec.createdMs,
    submitter: spec.submitter.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    nonce: spec.nonce as Uint8Array<ArrayBuffer>,
  }
  if (spec.train !== undefined) {
    const t = spec.train
    wire.train = {
      model: t.model,
      hiddenSizes: t.hiddenSizes,
      groups: t.groups,
      groupSize: t.groupSize,
      steps: t.steps,
      batchSize: t.batchSize,
      learningRate: t.learningRate,
      seed: t.seed,
      aggregate: AGGREGATE_TO_WIRE[t.aggregate],
      outerEvery: t.outerEvery,
      compress: t.compress === 'int8' ? WireTaskSpec.Compress.INT8 : WireTaskSpec.Compress.NONE,
      dataset: {
        name: t.dataset.name,
        shardCids: t.dataset.shardCids.map((cid) => cid.bytes as Uint8Array<ArrayBuffer>),
        testCid: t.dataset.testCid.bytes as Uint8Array<ArrayBuffer>,
        trainCount: t.dataset.trainCount,
        testCount: t.dataset.testCount,
      },
    }
  }
  if (spec.infer !== undefined) {
    const i = spec.infer
    wire.infer = {
      modelCid: i.modelCid.bytes as Uint8Array<ArrayBuffer>,
      inputCid: i.inputCid.bytes as Uint8Array<ArrayBuffer>,
      inputCount: i.inputCount,
      replicas: i.replicas,
      shards: i.shards,
    }
  }
  const bytes = WireTaskSpec.encode(wire)
  const reason = checkWireSpec(WireTaskSpec.decode(bytes))
  if (typeof reason === 'string')
    throw new TaskSpecError(reason.split(' ')[0], `invalid task spec: ${reason}`)
  return bytes
}

export type DecodedSpec = { ok: true; spec: TaskSpec } | { ok: false; reason: string }

/** Decodes and checks an untrusted TaskSpec block. Never throws. */
export function decodeTaskSpec(bytes: Uint8Array): DecodedSpec {
  if (bytes.byteLength > TASK_SPEC_BYTES_MAX) return { ok: false, reason: 'oversized' }
  let wire: WireTaskSpec
  try {
    wire = WireTaskSpec.decode(bytes, {
      limits: { train: { hiddenSizes: HIDDEN_LAYERS_MAX, dataset: { shardCids: GROUPS_MAX } } },
    })
  } catch {
    return { ok: false, reason: 'malformed' }
  }
  const checked = checkWireSpec(wire)
  if (typeof checked === 'string') return { ok: false, reason: checked }
  return { ok: true, spec: checked }
}

function inRange(n: number, min: number, max: number): boolean {
  return Number.isInteger(n) && n >= min && n <= max
}

/** The spec in caller shapes, or a reason naming the bad field. */
function checkWireSpec(w: WireTaskSpec): TaskSpec | string {
  if (w.version !== TASK_SPEC_VERSION) return `version ${w.version} is not supported`
  const submitter = peerIdFromBytes(w.submitter)
  if (submitter === undefined) return 'submitter is not a peer id'
  if (w.nonce.byteLength < 8 || w.nonce.byteLength > 32) return 'nonce must be 8 to 32 bytes'
  if (!inRange(w.staffingDeadlineMs, STAFFING_DEADLINE_MS_MIN, STAFFING_DEADLINE_MS_MAX))
    return 'staffingDeadlineMs out of range'
  if (!Number.isSafeInteger(w.createdMs) || w.createdMs < 0) return 'createdMs out of range'
  const r = w.requirements
  const backend = BACKEND_FROM_WIRE.get(r?.backend ?? WireTaskSpec.Backend.ANY)
  if (backend === undefined) return 'requirements.backend unknown'
  const requirements: Requirements = {
    backend,
    minMemoryBytes: r?.minMemoryBytes ?? 0,
    minGflops: r?.minGflops ?? 0,
  }
  if (!inRange(requirements.minMemoryBytes, 0, MIN_MEMORY_BYTES_MAX))
    return 'requirements.minMemoryBytes out of range'
  if (!(requirements.minGflops >= 0 && requirements.minGflops <= GFLOPS_REQUIREMENT_MAX))
    return 'requirements.minGflops out of range'
  const base = {
    version: w.version,
    requirements,
    staffingDeadlineMs: w.staffingDeadlineMs,
    createdMs: w.createdMs,
    submitter,
    nonce: w.nonce,
  }
  if (w.kind === WireTaskSpec.Kind.TRAIN) {
    const t = w.train
    if (t === undefined || w.infer !== undefined) return 'a train task must carry train settings only'
    if (!(MODELS as readonly string[]).includes(t.model)) return `model "${t.model}" is unknown`
    if (
      t.hiddenSizes.length > HIDDEN_LAYERS_MAX ||
      !t.hiddenSizes.every((n) => inRange(n, 1, LAYER_WIDTH_MAX))
    )
      return 'hiddenSizes out of range'
    if (!inRange(t.groups, 1, GROUPS_MAX)) return 'groups out of range'
    if (!inRange(t.groupSize, 1, GROUP_SIZE_MAX) || t.groupSize % 2 === 0) return 'groupSize must be odd'
    if (!inRange(t.steps, 1, STEPS_MAX)) return 'steps out of range'
    if (!inRange(t.batchSize, 1, BATCH_SIZE_MAX)) return 'batchSize out of range'
    if (!(Number.isFinite(t.learningRate) && t.learningRate > 0 && t.learningRate <= LEARNING_RATE_MAX))
      return 'learningRate out of range'
    if (!inRange(t.seed, 0, SEED_MAX)) return 'seed out of range'
    const aggregate = AGGREGATE_FROM_WIRE.get(t.aggregate)
    if (aggregate === undefined) return 'aggregate unknown'
    if (!inRange(t.outerEvery, 0, t.steps)) return 'outerEvery out of range'
    if (t.compress !== WireTaskSpec.Compress.NONE && t.compress !== WireTaskSpec.Compress.INT8)
      return 'compress unknown'
    const d = t.dataset
    if (d === undefined) return 'dataset missing'
    if (d.name !== 'mnist' && d.name !== 'custom') return 'dataset.name unknown'
    if (d.shardCids.length !== t.groups) return 'dataset.shardCids must hold one block per group'
    const shardCids = d.shardCids.map(cidFromBytes)
    const testCid = cidFromBytes(d.testCid)
    if (shardCids.some((cid) => cid === undefined) || testCid === undefined) return 'dataset CIDs invalid'
    if (!inRange(d.trainCount, t.groups, 2 ** 31) || !inRange(d.testCount, 1, 2 ** 31))
      return 'dataset counts out of range'
    return {
      ...base,
      kind: 'train',
      train: {
        model: t.model as ModelName,
        hiddenSizes: [...t.hiddenSizes],
        groups: t.groups,
        groupSize: t.groupSize,
        steps: t.steps,
        batchSize: t.batchSize,
        learningRate: t.learningRate,
        seed: t.seed,
        aggregate,
        outerEvery: t.outerEvery,
        compress: t.compress === WireTaskSpec.Compress.INT8 ? 'int8' : 'none',
        dataset: {
          name: d.name,
          shardCids: shardCids as CID[],
          testCid,
          trainCount: d.trainCount,
          testCount: d.testCount,
        },
      },
    }
  }
  if (w.kind === WireTaskSpec.Kind.INFER) {
    const i = w.infer
    if (i === undefined || w.train !== undefined) return 'an infer task must carry infer settings only'
    const modelCid = cidFromBytes(i.modelCid)
    const inputCid = cidFromBytes(i.inputCid)
    if (modelCid === undefined || inputCid === undefined) return 'infer CIDs invalid'
    if (!inRange(i.replicas, 1, REPLICAS_MAX)) return 'replicas out of range'
    if (!inRange(i.shards, 1, INFER_SHARDS_MAX)) return 'shards out of range'
    if (!inRange(i.inputCount, 1, 2 ** 31)) return 'inputCount out of range'
    return {
      ...base,
      kind: 'infer',
      infer: { modelCid, inputCid, inputCount: i.inputCount, replicas: i.replicas, shards: i.shards },
    }
  }
  return 'kind unknown'
}

/** Workers a task needs: every member of every group, or every replica of every shard. */
export function workersNeeded(spec: Pick<TaskSpec, 'kind' | 'train' | 'infer'>): number {
  if (spec.train !== undefined) return spec.train.groups * spec.train.groupSize
  if (spec.infer !== undefined) return spec.infer.replicas
  return 0
}
