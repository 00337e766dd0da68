// The models the simulated tasks train and serve, one record per model kind (protocols/tasks/spec.ts
// MODELS). A record's sizes set the bytes of every gradient, state transfer and model fetch on the
// simulated links, and its compute figures the kernel time of a training step and of an inference
// row (the arithmetic itself runs on a few values: members.ts). The simulation picks one record with
// its `model` option (parameters.ts) and hands it on in DerivedParameters.
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import {
  checkGptConfig,
  GPT_VOCAB_SIZE,
  gptParameterCount,
  LAYER_NORM_EPSILON,
} from '../../kernels/models/gpt/config.js'
import { parameterCount } from '../../kernels/models/mlp.js'
import {
  BATCH_SIZE_DEFAULT,
  GPT_BATCH_SIZE_DEFAULT,
  GPT_SHAPE_DEFAULT,
  type GptShape,
  HIDDEN_SIZES_DEFAULT,
  type ModelName,
  trainArchitecture,
} from '../../protocols/tasks/spec.js'

/** What inference tasks of a model cost: kernel time per input row and logits per row. */
export interface SimulatedInference {
  /** Kernel time of the forward pass per input row, in ms, by backend class (order: BACKEND_CLASSES). */
  rowMsByBackend: readonly number[]
  /** Logits each row answers with. */
  classes: number
}

/** The figures of one simulated model kind. */
export interface SimulatedModel {
  kind: ModelName
  /** The GPT's shape (kind gpt only). */
  gpt?: GptShape
  parameterCount: number
  /** Bytes of one input row: an MNIST image as float32, or a GPT sequence of byte tokens. */
  inputRowBytes: number
  /** Input rows (images or sequences) of one member's micro-batch in a training step. */
  stepRows: number
  /**
   * Kernel time of one training step (forward + backward of one member's micro-batch), in ms, by
   * backend class (order: BACKEND_CLASSES: webgpu on real hardware, webgpu on lavapipe, cpu).
   */
  stepComputeMsByBackend: readonly number[]
  /** Inference figures; undefined for a kind the network does not serve (inference.ts). */
  inference?: SimulatedInference
}

/** A model with inference figures: one the simulated inference tasks can run. */
export type ServedModel = SimulatedModel & { inference: SimulatedInference }

/** Bytes of a model's params as float32 (a gradient, a model fetch). */
export function modelBytes(model: SimulatedModel): number {
  return model.parameterCount * 4
}

/**
 * Submit's default model: the MNIST MLP with HIDDEN_SIZES_DEFAULT (784-256-10, trainArchitecture, as
 * a task's members build it), at BATCH_SIZE_DEFAULT images per member step.
 */
export const MNIST_MLP_MODEL: ServedModel = Object.freeze({
  kind: 'mnist-mlp',
  parameterCount: parameterCount(trainArchitecture({ hiddenSizes: [...HIDDEN_SIZES_DEFAULT] })),
  inputRowBytes: PIXEL_COUNT * 4,
  stepRows: BATCH_SIZE_DEFAULT,
  /**
   * An assumption, not a measurement (bench:train's samples/s at the batch size would replace it):
   * 25 ms on real-hardware WebGPU, 180 ms on lavapipe, 400 ms on the cpu backend.
   */
  stepComputeMsByBackend: Object.freeze([25, 180, 400]),
  inference: Object.freeze({
    /**
     * Measured (bench/RESULTS.md, training, inference samples/s at batch 64-256): cpu about
     * 5,000-11,000 rows/s, WebGPU on lavapipe about 4,300-11,600; real-hardware WebGPU assumed 10x.
     */
    rowMsByBackend: Object.freeze([0.01, 0.15, 0.15]),
    classes: CLASS_COUNT,
  }),
})

/**
 * Training tokens per second of the tiny GPT preset for the whole machine (2 cores here), at a member
 * micro-batch of GPT_BATCH_SIZE_DEFAULT (4) sequences of 256 bytes, by backend class. Measured on this
 * machine: WebGPU on lavapipe about 1,050 tokens/s, the cpu backend about 190. Real-hardware WebGPU
 * was not measured: 100x lavapipe is an assumption.
 */
export const GPT_TINY_TRAIN_TOKENS_PER_S_BY_BACKEND = Object.freeze([105_000, 1_050, 190])

/**
 * Training FLOPs per token of a GPT shape: 6 per parameter (forward and backward of every matmul)
 * plus 12 L T D for attention's scores and weighted sums (the PaLM paper's estimate). Only the ratio
 * between two shapes is used: it carries the tiny preset's measured speed over to other shapes.
 */
export function gptTrainFlopsPerToken(shape: GptShape): number {
  return 6 * gptParameterCount(gptConfig(shape)) + 12 * shape.layers * shape.context * shape.width
}

/** The GptConfig of a shape; a shape out of range throws GptConfigError naming the field. */
function gptConfig(shape: GptShape) {
  return checkGptConfig({ ...shape, vocabSize: GPT_VOCAB_SIZE, layerNormEpsilon: LAYER_NORM_EPSILON })
}

/**
 * The GPT model kind at `shape`, GPT_BATCH_SIZE_DEFAULT sequences of its context per member step. A
 * step's kernel time is the member's tokens per step at the tiny preset's measured tokens/s
 * (GPT_TINY_TRAIN_TOKENS_PER_S_BY_BACKEND), scaled by the shape's FLOPs per token over the tiny
 * preset's. The network does not serve GPTs: it has no inference figures.
 */
export function gptModel(shape: GptShape = GPT_SHAPE_DEFAULT): SimulatedModel {
  const tokensPerStep = GPT_BATCH_SIZE_DEFAULT * shape.context
  const flopsRatio = gptTrainFlopsPerToken(shape) / gptTrainFlopsPerToken(GPT_SHAPE_DEFAULT)
  return Object.freeze({
    kind: 'gpt',
    gpt: Object.freeze({ ...shape }),
    parameterCount: gptParameterCount(gptConfig(shape)),
    // a byte vocabulary: one byte per token
    inputRowBytes: shape.context,
    stepRows: GPT_BATCH_SIZE_DEFAULT,
    stepComputeMsByBackend: Object.freeze(
      GPT_TINY_TRAIN_TOKENS_PER_S_BY_BACKEND.map(
        (tokensPerS) => (1000 * tokensPerStep * flopsRatio) / tokensPerS,
      ),
    ),
  })
}

/** The record of each model kind, the GPT at its default shape (the tiny preset). */
export const SIMULATED_MODELS: Readonly<Record<ModelName, SimulatedModel>> = Object.freeze({
  'mnist-mlp': MNIST_MLP_MODEL,
  gpt: gptModel(),
})

/** The record a simulation of `kind` trains (a GPT at `gpt`, default the tiny preset). */
export function simulatedModel(kind: ModelName, gpt?: GptShape): SimulatedModel {
  return kind === 'gpt' && gpt ? gptModel(gpt) : SIMULATED_MODELS[kind]
}

/**
 * The model the simulated inference tasks run: the trained one when the network serves its kind,
 * otherwise the MNIST MLP (the network serves no GPT; inference tasks of a gpt simulation stay on
 * the MLP, beside the GPT training tasks).
 */
export function servedModel(model: SimulatedModel): ServedModel {
  return model.inference ? (model as ServedModel) : MNIST_MLP_MODEL
}
