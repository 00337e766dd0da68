// The models and machines of the chain simulation (chains.ts): the large models Petals serves over
// the Internet (BLOOM-176B, Llama 2 70B) and a small one, and the consumer and datacenter GPUs that
// serve their spans. A server's time for a step over its blocks is a roofline: a decode step of one
// row reads every weight of the span once (memory-bound at batch 1), a prefill of many rows is bound
// by the GPU's arithmetic. Only sizes and datasheet peaks enter; no kernel runs.

/** One model kind the chain simulation serves. */
export interface ChainModel {
  name: string
  /** Transformer blocks (numbered 0..blocks-1). */
  blocks: number
  /** Hidden width D: a row of hidden state on the wire is D float32 values (SERVING.md). */
  width: number
  /** Parameters of one block. */
  blockParameters: number
  /** Bytes of one block's weights as served (the precision Petals serves the model at). */
  blockBytes: number
  /** The client's part of a token (embedding, final norm, head over the vocabulary, sampling), ms. */
  clientStepMs: number
  /** What the figures rest on. */
  source: string
}

/**
 * BLOOM-176B: 70 blocks of width 14,336 (bigscience/bloom config.json), 176 B parameters of which
 * 3.6 B are the 250,880-token embedding, so 2.46 B a block; Petals serves it in 8-bit (LLM.int8),
 * about 2.5 GB a block (the Petals authors: "a 70-block transformer model with ~2.5 GB of weights per
 * block"). Llama 2 70B: 80 blocks of width 8,192, 69 B parameters, 0.86 B a block, served in 4-bit
 * (NF4, 0.5 byte a parameter plus scales). Llama 2 7B: 32 blocks of width 4,096, 0.2 B a block,
 * served in float16. The client's step (head over the vocabulary on the client's GPU) is an
 * assumption: 5 ms for the Llamas' 32,000-token head, 20 ms for BLOOM's 250,880.
 */
export const CHAIN_MODELS = {
  'bloom-176b': {
    name: 'bloom-176b',
    blocks: 70,
    width: 14_336,
    blockParameters: 2.46e9,
    blockBytes: 2.46e9,
    clientStepMs: 20,
    source: 'BLOOM-176B in 8-bit as Petals serves it',
  },
  'llama-2-70b': {
    name: 'llama-2-70b',
    blocks: 80,
    width: 8_192,
    blockParameters: 0.856e9,
    blockBytes: 0.856e9 * 0.53,
    clientStepMs: 5,
    source: 'Llama 2 70B in 4-bit NF4 as Petals serves it',
  },
  'llama-2-7b': {
    name: 'llama-2-7b',
    blocks: 32,
    width: 4_096,
    blockParameters: 0.202e9,
    blockBytes: 0.202e9 * 2,
    clientStepMs: 5,
    source: 'Llama 2 7B in float16 (the small model)',
  },
} as const satisfies Record<string, ChainModel>
export type ChainModelName = keyof typeof CHAIN_MODELS
export const CHAIN_MODEL_NAMES = Object.keys(CHAIN_MODELS) as ChainModelName[]

/** One kind of machine serving spans. */
export interface GpuClass {
  name: string
  /** Share of servers of this kind. */
  share: number
  memoryBytes: number
  /** Datasheet peak memory bandwidth, bytes per ms. */
  bandwidthBytesPerMs: number
  /** Datasheet peak dense float16 tensor arithmetic, FLOP per ms. */
  flopsPerMs: number
}

const GB = 1e9
/**
 * The swarm's machines: consumer GPUs as volunteers bring them, and some cloud ones (Petals' public
 * swarm was mostly RTX 3060-4090, T4 and A100). Memory, bandwidth and float16 tensor peaks are the
 * vendor datasheets'; the shares are an assumption.
 */
export const GPU_CLASSES: readonly GpuClass[] = [
  { name: 'rtx-3060', share: 0.25, memoryBytes: 12 * GB, bandwidthBytesPerMs: 360e6, flopsPerMs: 25e9 },
  { name: 't4', share: 0.15, memoryBytes: 16 * GB, bandwidthBytesPerMs: 320e6, flopsPerMs: 65e9 },
  { name: 'rtx-3090', share: 0.3, memoryBytes: 24 * GB, bandwidthBytesPerMs: 936e6, flopsPerMs: 71e9 },
  { name: 'rtx-4090', share: 0.2, memoryBytes: 24 * GB, bandwidthBytesPerMs: 1008e6, flopsPerMs: 165e9 },
  { name: 'a100-80g', share: 0.1, memoryBytes: 80 * GB, bandwidthBytesPerMs: 2039e6, flopsPerMs: 312e9 },
]

/** Share of a GPU's memory that holds weights; the rest holds sessions' caches and the runtime. */
export const WEIGHT_MEMORY_SHARE = 0.8
/** Share of the datasheet bandwidth a decode step reaches (memory-bound kernels reach 50-80%). */
export const BANDWIDTH_EFFICIENCY = 0.6
/** Share of the datasheet arithmetic a prefill reaches. */
export const FLOPS_EFFICIENCY = 0.4
/** Fixed cost of one block in one step (kernel launches, attention over the cache, the framework). */
export const BLOCK_OVERHEAD_MS = 0.3
/** Fixed cost of one request at a server (deserialising, scheduling, serialising). */
export const STEP_OVERHEAD_MS = 2

/** How many blocks of `model` a GPU of class `gpu` holds (at least 1, at most the model's). */
export function blocksThatFit(model: ChainModel, gpu: GpuClass): number {
  const fit = Math.floor((gpu.memoryBytes * WEIGHT_MEMORY_SHARE) / model.blockBytes)
  return Math.max(1, Math.min(model.blocks, fit))
}

/**
 * Time for a server of class `gpu` (slowed by `slowFactor`) to run `rows` rows through `blocks` of
 * `model`'s blocks, in ms: per block the larger of one read of the weights and the rows' arithmetic
 * (2 FLOP a parameter a row), plus the fixed costs.
 */
export function spanStepMs(
  model: ChainModel,
  gpu: GpuClass,
  slowFactor: number,
  blocks: number,
  rows: number,
): number {
  const readMs = model.blockBytes / (gpu.bandwidthBytesPerMs * BANDWIDTH_EFFICIENCY)
  const mathMs = (2 * model.blockParameters * rows) / (gpu.flopsPerMs * FLOPS_EFFICIENCY)
  return (STEP_OVERHEAD_MS + blocks * (Math.max(readMs, mathMs) + BLOCK_OVERHEAD_MS)) * slowFactor
}

/** Framing of one request or answer of hidden states (ids, offsets, lengths), bytes. */
export const HIDDEN_FRAME_BYTES = 200

/**
 * Servers needed to hold each block `coverage` times over on average, with the GPU classes in their
 * shares (the small swarms the figures compare with the 1,000-server one).
 */
export function serversForCoverage(model: ChainModel, coverage: number): number {
  let blocksPerServer = 0
  for (const gpu of GPU_CLASSES) blocksPerServer += gpu.share * blocksThatFit(model, gpu)
  return Math.ceil((coverage * model.blocks) / blocksPerServer)
}
