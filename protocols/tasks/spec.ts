/**
 * The TaskSpec: what a user asks the network to compute.
 *
 * Two forms:
 * - {@link TaskRequest}: what the CLI sends to its own daemon (JSON). {@link parseTaskRequest} checks
 *   every field and refuses with a {@link TaskSpecError} naming the first bad field and the accepted
 *   range, e.g. `groupSize must be an odd integer from 1 to 15, got 4`.
 * - {@link TaskSpec} (protocols/wire/task-spec.proto): what the daemon stores as a block and workers
 *   fetch by CID. {@link decodeTaskSpec} decodes untrusted bytes with a size limit and converts the
 *   wire message into a {@link TrainTaskSpec} or an {@link InferTaskSpec}, checking the same ranges as
 *   the request (one set of field rules serves both); it never throws, it returns a reason naming the
 *   field.
 *
 * Both are unions discriminated by `kind`: a training task carries its `train` settings and an
 * inference task its `infer` settings, never both and never neither, so code that has checked `kind`
 * reads them without assertions.
 */
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { z } from 'zod'
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { SEED_MAX } from '../../kernels/data/random.js'
import { GPT_LIMITS, GPT_PRESET_DEFAULT, GPT_PRESETS } from '../../kernels/models/gpt/config.js'
import { MAX_LAYER_WIDTH, type MlpArchitecture } from '../../kernels/models/mlp.js'
import { TaskSpec as WireTaskSpec } from '../wire/task-spec.js'
import {
  cidFromBytes,
  GFLOPS_MAX,
  GROUP_SIZE_MAX,
  GROUPS_MAX,
  NONCE_BYTES_MAX,
  NONCE_BYTES_MIN,
  peerIdFromBytes,
} from '../wire/validation/index.js'

export { WireTaskSpec }

export const TASK_SPEC_VERSION = 1
/** Largest encoded TaskSpec block accepted, in bytes. */
export const TASK_SPEC_BYTES_MAX = 64 * 1024
export const STEPS_MAX = 1_000_000
export const BATCH_SIZE_MAX = 8192
/** Samples per member per step when a task does not say (`submit --batch`) */
export const BATCH_SIZE_DEFAULT = 64
export const LEARNING_RATE_MAX = 10
/** Adam's learning rate when a task does not say (`submit --lr`, `train --local --lr`) */
export const LEARNING_RATE_DEFAULT = 1e-3
/** Sequences of the model's context per member per step of a GPT task when it does not say */
export const GPT_BATCH_SIZE_DEFAULT = 4
/** AdamW's learning rate of a GPT task when it does not say */
export const GPT_LEARNING_RATE_DEFAULT = 1e-3
export { SEED_MAX }
/** Seed of the initial parameters, shards and micro-batches when a task does not say */
export const SEED_DEFAULT = 1
/** DiLoCo averages the groups only at the end when a task does not say (`submit --outer-every`) */
export const OUTER_EVERY_DEFAULT = 0
export const HIDDEN_LAYERS_MAX = 8
export const LAYER_WIDTH_MAX = MAX_LAYER_WIDTH
/**
 * Hidden layer widths of the MLP when a task does not say (`submit --hidden`, `train --local`):
 * 784-256-10, with Adam at LEARNING_RATE_DEFAULT, chosen by measurement (the TRAINING_DEFAULTS of
 * node/executor/local-training.ts say how)
 */
export const HIDDEN_SIZES_DEFAULT: readonly number[] = [256]
export const REPLICAS_MAX = 15
/** Peers that run each inference shard when a task does not say (`submit infer --replicas`) */
export const REPLICAS_DEFAULT = 2
export const INFER_SHARDS_MAX = 64
/** Pieces an inference input is split into when a task does not say (`submit infer --shards`) */
export const INFER_SHARDS_DEFAULT = 2
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
/** No worker measures more: a larger requirement is refused outright. */
export const GFLOPS_REQUIREMENT_MAX = GFLOPS_MAX
/** Largest sample count a dataset or an inference input declares. */
const SAMPLE_COUNT_MAX = 2 ** 31
/** Longest file path or model reference in a request. */
const PATH_LENGTH_MAX = 4096

export const TASK_KINDS = ['train', 'infer'] as const
export type TaskKind = (typeof TASK_KINDS)[number]
export const MODELS = ['mnist-mlp', 'gpt'] as const
export type ModelName = (typeof MODELS)[number]
export const AGGREGATES = ['mean', 'median', 'trimmed-mean'] as const
export type AggregateRule = (typeof AGGREGATES)[number]
export const AGGREGATE_DEFAULT: AggregateRule = 'median'
/**
 * Fewest gradients a group decides a step on (capped at the group's size): with two, a median is a
 * mean and one liar decides the step; 2 keeps a group of three training through a crash instead.
 */
export const MIN_GRADIENTS_DEFAULT = 3
export const COMPRESSIONS = ['none', 'int8'] as const
export type Compression = (typeof COMPRESSIONS)[number]
export const COMPRESSION_DEFAULT: Compression = 'none'
export const BACKENDS = ['any', 'webgpu', 'cpu'] as const
export type BackendRequirement = (typeof BACKENDS)[number]

export interface Requirements {
  backend: BackendRequirement
  minMemoryBytes: number
  minGflops: number
}

/** What a task asks of its workers when it does not say: anything goes. */
export const REQUIREMENTS_DEFAULT: Readonly<Requirements> = Object.freeze({
  backend: 'any',
  minMemoryBytes: 0,
  minGflops: 0,
})

/** What a worker offers, as its claim or its capability record says. */
export interface WorkerOffer {
  backend: 'webgpu' | 'cpu'
  /** the largest buffer its backend allocates */
  maxBufferBytes: number
  /** its measured matmul throughput */
  gflops: number
}

/**
 * Why a worker that offers `offer` cannot run a task with these requirements, in one sentence, or
 * undefined when it can. Workers decline with it, and a submitter refuses a claim with it.
 */
export function unmetRequirement(requirements: Requirements, offer: WorkerOffer): string | undefined {
  if (requirements.backend !== 'any' && requirements.backend !== offer.backend)
    return `needs a ${requirements.backend} backend, this worker has ${offer.backend}`
  if (offer.maxBufferBytes < requirements.minMemoryBytes) {
    return (
      `needs ${formatBytes(requirements.minMemoryBytes)} of memory, ` +
      `the most this worker has is ${formatBytes(offer.maxBufferBytes)}`
    )
  }
  if (offer.gflops < requirements.minGflops)
    return `needs ${requirements.minGflops} GFLOP/s, this worker measured ${offer.gflops.toFixed(2)}`
  return undefined
}

/** Bytes in binary units, e.g. `32 TiB`, `1.5 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value >= 10 || unit === 0 ? 0 : 1)} ${units[unit]}`
}

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

// ---------------------------------------------------------------------------------------------------
// field rules, shared by the request and the stored form. `prefix` is where the field sits in its
// message ('' in a request, 'train.' in a stored spec), so that every refusal names the field by its
// full path.

const integer = (field: string, min: number, max: number) =>
  z
    .number({ error: `${field} must be a number` })
    .refine((n) => Number.isInteger(n) && n >= min && n <= max, {
      error: (issue) => `${field} must be an integer from ${min} to ${max}, got ${String(issue.input)}`,
    })

const oneOf = <T extends readonly [string, ...string[]]>(field: string, values: T) =>
  z.enum(values, { error: `${field} must be one of ${values.join(', ')}` })

const requirementFields = (prefix: string) => ({
  minMemoryBytes: integer(`${prefix}minMemoryBytes`, 0, MIN_MEMORY_BYTES_MAX),
  minGflops: z
    .number({ error: `${prefix}minGflops must be a number` })
    .refine((n) => Number.isFinite(n) && n >= 0 && n <= GFLOPS_REQUIREMENT_MAX, {
      error: `${prefix}minGflops must be a number from 0 to ${GFLOPS_REQUIREMENT_MAX}`,
    }),
})

const staffingDeadline = (field: string) => integer(field, STAFFING_DEADLINE_MS_MIN, STAFFING_DEADLINE_MS_MAX)

/** The shape of a GPT a task trains (the vocabulary is bytes, LayerNorm epsilon 1e-5). */
export interface GptShape {
  context: number
  width: number
  layers: number
  heads: number
}

/** The GPT shape of a task that names none: the tiny preset. */
export const GPT_SHAPE_DEFAULT: Readonly<GptShape> = Object.freeze({
  context: GPT_PRESETS[GPT_PRESET_DEFAULT].context,
  width: GPT_PRESETS[GPT_PRESET_DEFAULT].width,
  layers: GPT_PRESETS[GPT_PRESET_DEFAULT].layers,
  heads: GPT_PRESETS[GPT_PRESET_DEFAULT].heads,
})

const gptShape = (prefix: string) =>
  z
    .object(
      {
        context: integer(`${prefix}gpt.context`, 1, GPT_LIMITS.contextMax),
        width: integer(`${prefix}gpt.width`, 1, GPT_LIMITS.widthMax),
        layers: integer(`${prefix}gpt.layers`, 1, GPT_LIMITS.layersMax),
        heads: integer(`${prefix}gpt.heads`, 1, GPT_LIMITS.headsMax),
      },
      { error: `${prefix}gpt must be an object with context, width, layers and heads` },
    )
    .refine((g) => g.width % g.heads === 0, {
      error: `${prefix}gpt.width must be a multiple of ${prefix}gpt.heads`,
      path: ['width'],
    })

/** A GPT task carries its shape and an MLP task none. */
const gptOnlyForGpt = (t: { model: string; gpt?: GptShape | undefined }) =>
  (t.model === 'gpt') === (t.gpt !== undefined)

const trainFields = (prefix: string) => ({
  model: oneOf(`${prefix}model`, MODELS),
  hiddenSizes: z
    .array(integer(`every ${prefix}hiddenSizes width`, 1, LAYER_WIDTH_MAX), {
      error: `${prefix}hiddenSizes must be a list of layer widths`,
    })
    .max(HIDDEN_LAYERS_MAX, { error: `${prefix}hiddenSizes takes at most ${HIDDEN_LAYERS_MAX} layers` }),
  groups: integer(`${prefix}groups`, 1, GROUPS_MAX),
  groupSize: integer(`${prefix}groupSize`, 1, GROUP_SIZE_MAX).refine((n) => n % 2 === 1, {
    error: (issue) =>
      `${prefix}groupSize must be an odd integer from 1 to ${GROUP_SIZE_MAX} (a Raft group needs a ` +
      `clear majority), got ${String(issue.input)}`,
  }),
  steps: integer(`${prefix}steps`, 1, STEPS_MAX),
  batchSize: integer(`${prefix}batchSize`, 1, BATCH_SIZE_MAX),
  learningRate: z
    .number({ error: `${prefix}learningRate must be a number` })
    .refine((n) => Number.isFinite(n) && n > 0 && n <= LEARNING_RATE_MAX, {
      error: (issue) =>
        `${prefix}learningRate must be a number above 0 and at most ${LEARNING_RATE_MAX}, ` +
        `got ${String(issue.input)}`,
    }),
  seed: integer(`${prefix}seed`, 0, SEED_MAX),
  outerEvery: integer(`${prefix}outerEvery`, 0, STEPS_MAX),
  minGradients: integer(`${prefix}minGradients`, 1, GROUP_SIZE_MAX),
})

/** DiLoCo rounds are counted in steps: a round past the last step would never run. */
const outerEveryWithinSteps = (t: { outerEvery: number; steps: number }) => t.outerEvery <= t.steps
const outerEveryRefusal = (prefix: string) => ({
  error: `${prefix}outerEvery must not exceed steps (0 averages the groups only at the end)`,
  path: ['outerEvery'],
})

const inferFields = (prefix: string) => ({
  replicas: integer(`${prefix}replicas`, 1, REPLICAS_MAX),
  shards: integer(`${prefix}shards`, 1, INFER_SHARDS_MAX),
})

/** The first problem zod found, as the field's dotted path and one sentence naming it. */
function firstIssue(error: z.ZodError, value: unknown): { field: string; message: string } {
  const issue = error.issues[0]
  const field = issue.path.map(String).join('.')
  if (issue.code === 'unrecognized_keys') {
    return { field, message: `unknown task field ${issue.keys.map((k) => `"${k}"`).join(', ')}` }
  }
  const given = issue.path.reduce<unknown>(
    (at, key) =>
      at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[key] : undefined,
    value,
  )
  if (issue.code === 'invalid_type' && given === undefined) return { field, message: `${field} is required` }
  // a rule that cannot know its full path (an entry of a list) says only what is wrong: "is ...", "must ..."
  const message =
    issue.message.startsWith(field) || field === ''
      ? issue.message
      : /^(is|must) /.test(issue.message)
        ? `${field} ${issue.message}`
        : `${field}: ${issue.message}`
  return { field, message }
}

// ---------------------------------------------------------------------------------------------------
// the request

const requestCommon = {
  requirements: z
    .strictObject({
      backend: oneOf('requirements.backend', BACKENDS).default(REQUIREMENTS_DEFAULT.backend),
      ...(() => {
        const fields = requirementFields('requirements.')
        return {
          minMemoryBytes: fields.minMemoryBytes.default(REQUIREMENTS_DEFAULT.minMemoryBytes),
          minGflops: fields.minGflops.default(REQUIREMENTS_DEFAULT.minGflops),
        }
      })(),
    })
    .default({ ...REQUIREMENTS_DEFAULT }),
  deadlineMs: staffingDeadline('deadlineMs').default(STAFFING_DEADLINE_MS_DEFAULT),
}

const trainRequestSchema = (() => {
  const fields = trainFields('')
  return z
    .strictObject({
      kind: z.literal('train'),
      model: fields.model,
      /** the MLP's hidden layers (model mnist-mlp) */
      hiddenSizes: fields.hiddenSizes.optional(),
      /** the GPT's shape (model gpt); default GPT_SHAPE_DEFAULT */
      gpt: gptShape('').optional(),
      groups: fields.groups,
      groupSize: fields.groupSize,
      steps: fields.steps,
      /** default: BATCH_SIZE_DEFAULT (MLP) or GPT_BATCH_SIZE_DEFAULT */
      batchSize: fields.batchSize.optional(),
      /** default: LEARNING_RATE_DEFAULT (MLP) or GPT_LEARNING_RATE_DEFAULT */
      learningRate: fields.learningRate.optional(),
      seed: fields.seed.default(SEED_DEFAULT),
      aggregate: oneOf('aggregate', AGGREGATES).default(AGGREGATE_DEFAULT),
      minGradients: fields.minGradients.default(MIN_GRADIENTS_DEFAULT),
      outerEvery: fields.outerEvery.default(OUTER_EVERY_DEFAULT),
      compress: oneOf('compress', COMPRESSIONS).default(COMPRESSION_DEFAULT),
      /**
       * how long a group that lost its majority waits for its members to return before new claimants
       * replace them (membership change); 0: never replace
       */
      replaceAfterMs: integer('replaceAfterMs', 0, REPLACE_AFTER_MS_MAX).default(REPLACE_AFTER_MS_DEFAULT),
      /** absolute path of a --data file on the submitter's machine; default: MNIST from the package */
      dataFile: z.string({ error: 'dataFile must be a path' }).min(1).max(PATH_LENGTH_MAX).optional(),
      ...requestCommon,
    })
    .refine(outerEveryWithinSteps, outerEveryRefusal(''))
    .refine((t) => t.model === 'gpt' || t.gpt === undefined, {
      error: 'gpt applies to model gpt only',
      path: ['gpt'],
    })
    .refine((t) => t.model !== 'gpt' || (t.hiddenSizes === undefined && t.dataFile === undefined), {
      error: 'a gpt task takes neither hiddenSizes nor dataFile (it trains on the linux-doc-6.1 corpus)',
      path: ['model'],
    })
    .transform((t) => {
      const gpt = t.model === 'gpt'
      return {
        ...t,
        hiddenSizes: gpt ? [] : (t.hiddenSizes ?? [...HIDDEN_SIZES_DEFAULT]),
        gpt: gpt ? (t.gpt ?? { ...GPT_SHAPE_DEFAULT }) : undefined,
        batchSize: t.batchSize ?? (gpt ? GPT_BATCH_SIZE_DEFAULT : BATCH_SIZE_DEFAULT),
        learningRate: t.learningRate ?? (gpt ? GPT_LEARNING_RATE_DEFAULT : LEARNING_RATE_DEFAULT),
      }
    })
})()

const inferRequestSchema = (() => {
  const fields = inferFields('')
  return z.strictObject({
    kind: z.literal('infer'),
    /** a model directory on the submitter's machine, or a model checkpoint's CID */
    model: z.string({ error: 'model must be a model directory or a CID' }).min(1).max(PATH_LENGTH_MAX),
    /** absolute path of the inputs file on the submitter's machine */
    inputFile: z.string({ error: 'inputFile must be a path' }).min(1).max(PATH_LENGTH_MAX),
    replicas: fields.replicas.default(REPLICAS_DEFAULT),
    shards: fields.shards.default(INFER_SHARDS_DEFAULT),
    ...requestCommon,
  })
})()

const requestSchema = z.discriminatedUnion('kind', [trainRequestSchema, inferRequestSchema], {
  error: 'kind must be "train" or "infer"',
})

export type TrainRequest = z.infer<typeof trainRequestSchema>
export type InferRequest = z.infer<typeof inferRequestSchema>
export type TaskRequest = TrainRequest | InferRequest

/** Checks a submission; throws TaskSpecError naming the first bad field. */
export function parseTaskRequest(value: unknown): TaskRequest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TaskSpecError('', 'a task must be a JSON object')
  }
  const result = requestSchema.safeParse(value)
  if (result.success) return result.data
  const { field, message } = firstIssue(result.error, value)
  throw new TaskSpecError(field, message)
}

// ---------------------------------------------------------------------------------------------------
// the stored form

/**
 * The data of a training task. mnist and custom: one block of samples per group and the held-out
 * samples, counts in samples. linux-doc-6.1 (a GPT's corpus): every worker builds the corpus itself
 * from Debian's package; every shard CID is the raw CID of the training split and testCid that of the
 * validation split (a worker checks its build against them), counts in bytes.
 */
export interface TaskDataset {
  name: DatasetName
  /** one per group */
  shardCids: CID[]
  testCid: CID
  trainCount: number
  testCount: number
}

export const DATASET_NAMES = ['mnist', 'custom', 'linux-doc-6.1'] as const
export type DatasetName = (typeof DATASET_NAMES)[number]

/** A training task's settings. */
export interface TrainSpec {
  model: ModelName
  /** the MLP's hidden layers ([] for a GPT) */
  hiddenSizes: number[]
  /** the GPT's shape (model gpt only) */
  gpt?: GptShape
  groups: number
  groupSize: number
  steps: number
  batchSize: number
  learningRate: number
  seed: number
  aggregate: AggregateRule
  /** fewest gradients a step is decided on (the group member caps it at the group's size) */
  minGradients: number
  outerEvery: number
  compress: Compression
  dataset: TaskDataset
}

/** An inference task's settings. */
export interface InferSpec {
  modelCid: CID
  inputCid: CID
  inputCount: number
  replicas: number
  shards: number
}

/** What every task carries, whatever its kind. */
interface TaskSpecCommon {
  version: number
  requirements: Requirements
  staffingDeadlineMs: number
  createdMs: number
  submitter: PeerId
  nonce: Uint8Array
}

export interface TrainTaskSpec extends TaskSpecCommon {
  kind: 'train'
  train: TrainSpec
}

export interface InferTaskSpec extends TaskSpecCommon {
  kind: 'infer'
  infer: InferSpec
}

export type TaskSpec = TrainTaskSpec | InferTaskSpec

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
const COMPRESSION_TO_WIRE: Record<Compression, WireTaskSpec.Compress> = {
  none: WireTaskSpec.Compress.NONE,
  int8: WireTaskSpec.Compress.INT8,
}

/** The reverse of a one-to-one table (every wire value the codec decodes has a name). */
function invert<K extends string, V extends string>(table: Record<K, V>): Record<V, K> {
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [v, k])) as Record<V, K>
}
const AGGREGATE_FROM_WIRE = invert(AGGREGATE_TO_WIRE)
const BACKEND_FROM_WIRE = invert(BACKEND_TO_WIRE)
const COMPRESSION_FROM_WIRE = invert(COMPRESSION_TO_WIRE)

// the wire message, checked and converted: bytes become CIDs and peer ids, enums become names

const bytes = (what: string) =>
  z.custom<Uint8Array>((value) => value instanceof Uint8Array, { error: `must be ${what} as bytes` })

const cid = () =>
  bytes('a CID').transform((value, context): CID => {
    const parsed = cidFromBytes(value)
    if (parsed === undefined) {
      context.issues.push({ code: 'custom', message: 'is not a sha2-256 CIDv1', input: value })
      return z.NEVER
    }
    return parsed
  })

/** A wire enum (a name protons decoded), as the name callers use. */
const wireEnum = <V extends string, K>(field: string, table: Record<V, K>) =>
  z
    .custom<V>((value) => typeof value === 'string' && Object.hasOwn(table, value), {
      error: `${field} is unknown`,
    })
    .transform((value) => table[value])

const count = (field: string, min: number) => integer(field, min, SAMPLE_COUNT_MAX)

const wireTrainSchema = z
  .object({
    ...trainFields('train.'),
    // 0 on the wire: the default (a spec written before the field)
    minGradients: integer('train.minGradients', 0, GROUP_SIZE_MAX).transform(
      (n) => n || MIN_GRADIENTS_DEFAULT,
    ),
    aggregate: wireEnum('train.aggregate', AGGREGATE_FROM_WIRE),
    compress: wireEnum('train.compress', COMPRESSION_FROM_WIRE),
    gpt: gptShape('train.').optional(),
    dataset: z.object(
      {
        name: z.enum(DATASET_NAMES, {
          error: `train.dataset.name must be one of ${DATASET_NAMES.join(', ')}`,
        }),
        shardCids: z.array(cid()),
        testCid: cid(),
        trainCount: count('train.dataset.trainCount', 1),
        testCount: count('train.dataset.testCount', 1),
      },
      { error: 'train.dataset is required' },
    ),
  })
  .refine(outerEveryWithinSteps, outerEveryRefusal('train.'))
  .refine(gptOnlyForGpt, { error: 'train.gpt must be present exactly for model gpt', path: ['gpt'] })
  .refine((t) => (t.model === 'gpt') === (t.dataset.name === 'linux-doc-6.1'), {
    error: 'train.dataset must be linux-doc-6.1 exactly for model gpt',
    path: ['dataset', 'name'],
  })
  .refine((t) => t.dataset.shardCids.length === t.groups, {
    error: 'train.dataset.shardCids must hold one block per group',
    path: ['dataset', 'shardCids'],
  })
  .refine((t) => t.dataset.trainCount >= t.groups, {
    error: 'train.dataset.trainCount must give every group a sample',
    path: ['dataset', 'trainCount'],
  })

const wireInferSchema = z.object({
  modelCid: cid(),
  inputCid: cid(),
  inputCount: count('infer.inputCount', 1),
  ...inferFields('infer.'),
})

const wireCommon = {
  version: z.literal(TASK_SPEC_VERSION, {
    error: (issue) => `version ${String(issue.input)} is not supported`,
  }),
  // proto3 leaves an all-default message out: no requirements on the wire is no requirements
  requirements: z
    .object({
      backend: wireEnum('requirements.backend', BACKEND_FROM_WIRE),
      ...requirementFields('requirements.'),
    })
    .optional()
    .transform((r): Requirements => r ?? { ...REQUIREMENTS_DEFAULT }),
  staffingDeadlineMs: staffingDeadline('staffingDeadlineMs'),
  createdMs: integer('createdMs', 0, Number.MAX_SAFE_INTEGER),
  submitter: bytes('a peer id').transform((value, context): PeerId => {
    const peer = peerIdFromBytes(value)
    if (peer === undefined) {
      context.issues.push({ code: 'custom', message: 'submitter is not a peer id', input: value })
      return z.NEVER
    }
    return peer
  }),
  nonce: bytes('random bytes').refine(
    (n) => n.byteLength >= NONCE_BYTES_MIN && n.byteLength <= NONCE_BYTES_MAX,
    { error: `nonce must be ${NONCE_BYTES_MIN} to ${NONCE_BYTES_MAX} bytes` },
  ),
}

const wireSpecSchema = z.discriminatedUnion(
  'kind',
  [
    z.object({
      ...wireCommon,
      kind: z.literal(WireTaskSpec.Kind.TRAIN),
      train: wireTrainSchema,
      infer: z.undefined({ error: 'a train task must not carry infer settings' }).optional(),
    }),
    z.object({
      ...wireCommon,
      kind: z.literal(WireTaskSpec.Kind.INFER),
      infer: wireInferSchema,
      train: z.undefined({ error: 'an infer task must not carry train settings' }).optional(),
    }),
  ],
  { error: 'kind must be TRAIN or INFER' },
)

/** The wire message in caller shapes, or the first bad field with a sentence naming it. */
function fromWire(
  wire: WireTaskSpec,
): { ok: true; spec: TaskSpec } | { ok: false; field: string; reason: string } {
  const result = wireSpecSchema.safeParse(wire)
  if (!result.success) {
    const { field, message } = firstIssue(result.error, wire)
    return { ok: false, field, reason: message }
  }
  const data = result.data
  if (data.kind === WireTaskSpec.Kind.TRAIN) {
    const { infer: _none, ...spec } = data
    return { ok: true, spec: { ...spec, kind: 'train' } }
  }
  const { train: _none, ...spec } = data
  return { ok: true, spec: { ...spec, kind: 'infer' } }
}

function toWire(spec: TaskSpec): WireTaskSpec {
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
  switch (spec.kind) {
    case 'train': {
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
        minGradients: t.minGradients,
        outerEvery: t.outerEvery,
        compress: COMPRESSION_TO_WIRE[t.compress],
        dataset: {
          name: t.dataset.name,
          shardCids: t.dataset.shardCids.map((c) => c.bytes as Uint8Array<ArrayBuffer>),
          testCid: t.dataset.testCid.bytes as Uint8Array<ArrayBuffer>,
          trainCount: t.dataset.trainCount,
          testCount: t.dataset.testCount,
        },
        ...(t.gpt !== undefined ? { gpt: { ...t.gpt } } : {}),
      }
      return wire
    }
    case 'infer': {
      const i = spec.infer
      wire.infer = {
        modelCid: i.modelCid.bytes as Uint8Array<ArrayBuffer>,
        inputCid: i.inputCid.bytes as Uint8Array<ArrayBuffer>,
        inputCount: i.inputCount,
        replicas: i.replicas,
        shards: i.shards,
      }
      return wire
    }
  }
}

/** Encodes a spec for storage as a block; a spec a worker would refuse throws TaskSpecError. */
export function encodeTaskSpec(spec: TaskSpec): Uint8Array {
  const bytes = WireTaskSpec.encode(toWire(spec))
  const checked = fromWire(WireTaskSpec.decode(bytes))
  if (!checked.ok) throw new TaskSpecError(checked.field, `invalid task spec: ${checked.reason}`)
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
  const checked = fromWire(wire)
  return checked.ok ? checked : { ok: false, reason: checked.reason }
}

/** Workers a task needs: every member of every group, or every replica of a shard. */
export function workersNeeded(spec: TaskSpec): number {
  switch (spec.kind) {
    case 'train':
      return spec.train.groups * spec.train.groupSize
    case 'infer':
      return spec.infer.replicas
  }
}

/** The MLP a training task trains: MNIST pixels in, the task's hidden layers, one logit per digit out. */
export function trainArchitecture(train: Pick<TrainSpec, 'hiddenSizes'>): MlpArchitecture {
  return { inputSize: PIXEL_COUNT, hiddenSizes: train.hiddenSizes, outputSize: CLASS_COUNT }
}
