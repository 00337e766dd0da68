// The training and evaluation loops of a classifier on one backend: batches in a given order,
// forward + backward + AdamW per batch, the running loss kept on the device and read back only every
// few steps (a read waits for the device, so reading every step would serialize the GPU).
import type { Backend, Tensor } from '../backend.js'
import { type Dataset, gatherBatch, PIXEL_COUNT } from '../data/mnist.js'
import { identityOrder } from '../data/sharding.js'
import type { Mlp } from './mlp.js'
import type { AdamWOptimizer } from './optimizer.js'

/** The loss became NaN or infinite: the learning rate is too high or the data is bad. */
export class TrainingDivergedError extends Error {
  static override name = 'TrainingDivergedError'
  constructor(message: string) {
    super(message)
    this.name = 'TrainingDivergedError'
  }
}

export type LearningRateSchedule = 'constant' | 'cosine'
/** The learning-rate schedule when none is chosen. */
export const SCHEDULE_DEFAULT: LearningRateSchedule = 'constant'
/** AdamW's decoupled weight decay when none is chosen. */
export const WEIGHT_DECAY_DEFAULT = 0

/**
 * Learning rate of update `step` (0-based) out of `totalSteps`: constant, or a half cosine from
 * `base` down to `base * floorFraction` at the last step.
 */
export function learningRateAt(
  schedule: LearningRateSchedule,
  base: number,
  step: number,
  totalSteps: number,
  floorFraction = 0,
): number {
  if (schedule === 'constant' || totalSteps <= 1) return base
  const progress = Math.min(1, step / (totalSteps - 1))
  return base * (floorFraction + (1 - floorFraction) * 0.5 * (1 + Math.cos(Math.PI * progress)))
}

export interface EpochProgress {
  /** samples processed so far in this epoch */
  samples: number
  /** mean loss over those samples */
  meanLoss: number
}

export interface TrainEpochOptions {
  batchSize: number
  /** learning rate of the optimizer's next update, given its 0-based update index */
  learningRate: (step: number) => number
  /** read the running loss and report every this many batches; @default 16 */
  reportEveryBatches?: number
  /** checked before every batch: an aborted signal stops the epoch with its reason */
  signal?: AbortSignal
  onProgress?: (progress: EpochProgress) => void
}

export interface EpochResult {
  samples: number
  meanLoss: number
}

/** Reusable batch buffers: host staging arrays and device tensors for full batches. */
class BatchStager {
  private readonly images: Float32Array
  private readonly labels: Float32Array
  private fullImages: Tensor | undefined
  private fullLabels: Tensor | undefined

  constructor(
    private readonly backend: Backend,
    private readonly batchSize: number,
  ) {
    this.images = new Float32Array(batchSize * PIXEL_COUNT)
    this.labels = new Float32Array(batchSize)
  }

  /** Device tensors holding samples order[start..end); valid until the next call. */
  stage(
    dataset: Dataset,
    order: ArrayLike<number>,
    start: number,
    end: number,
  ): { x: Tensor; y: Tensor; owned: boolean } {
    const rows = end - start
    gatherBatch(dataset, order, start, end, this.images, this.labels)
    if (rows === this.batchSize) {
      this.fullImages ??= this.backend.zeros([rows, PIXEL_COUNT])
      this.fullLabels ??= this.backend.zeros([rows])
      this.backend.write(this.fullImages, this.images)
      this.backend.write(this.fullLabels, this.labels)
      return { x: this.fullImages, y: this.fullLabels, owned: false }
    }
    // the short last batch of an epoch gets its own tensors
    return {
      x: this.backend.upload(this.images.subarray(0, rows * PIXEL_COUNT), [rows, PIXEL_COUNT]),
      y: this.backend.upload(this.labels.subarray(0, rows), [rows]),
      owned: true,
    }
  }

  dispose(): void {
    this.fullImages?.dispose()
    this.fullLabels?.dispose()
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0))
}

async function readLossSum(backend: Backend, lossSum: Tensor, samples: number): Promise<number> {
  const [total] = await backend.read(lossSum)
  const meanLoss = total / samples
  if (!Number.isFinite(meanLoss)) {
    throw new TrainingDivergedError(`the training loss became ${meanLoss} after ${samples} samples`)
  }
  return meanLoss
}

/** One pass over `dataset` in `order`; the last batch may be shorter. */
export async function trainEpoch(
  model: Mlp,
  optimizer: AdamWOptimizer,
  dataset: Dataset,
  order: ArrayLike<number>,
  options: TrainEpochOptions,
): Promise<EpochResult> {
  const backend = model.backend
  const reportEveryBatches = options.reportEveryBatches ?? 16
  const stager = new BatchStager(backend, options.batchSize)
  const lossSum = backend.zeros([1])
  try {
    let batchIndex = 0
    for (let start = 0; start < order.length; start += options.batchSize) {
      options.signal?.throwIfAborted()
      const end = Math.min(order.length, start + options.batchSize)
      const batch = stager.stage(dataset, order, start, end)
      const result = model.lossAndGradients(batch.x, batch.y)
      const gradients = result.layers.flatMap((layer) => [layer.weight, layer.bias])
      optimizer.step(gradients, options.learningRate(optimizer.stepCount))
      const batchLoss = backend.sum(result.loss)
      backend.axpyInPlace(1, batchLoss, lossSum)
      for (const tensor of [batchLoss, result.loss, result.logits, ...gradients]) tensor.dispose()
      if (batch.owned) {
        batch.x.dispose()
        batch.y.dispose()
      }
      batchIndex++
      // the cpu backend computes synchronously: without a macrotask turn now and then, a signal
      // handler (Ctrl-C) could not run until the epoch ends
      if (options.signal !== undefined && batchIndex % reportEveryBatches === 0) await yieldToEventLoop()
      if (options.onProgress !== undefined && batchIndex % reportEveryBatches === 0 && end < order.length) {
        options.onProgress({ samples: end, meanLoss: await readLossSum(backend, lossSum, end) })
      }
    }
    const meanLoss = await readLossSum(backend, lossSum, order.length)
    options.onProgress?.({ samples: order.length, meanLoss })
    return { samples: order.length, meanLoss }
  } finally {
    lossSum.dispose()
    stager.dispose()
  }
}

export interface BatchGradient {
  samples: number
  /** mean cross-entropy over the samples */
  meanLoss: number
  /** gradient of the mean loss, in the model's parameterLayout() order */
  gradient: Float32Array
}

/**
 * Loss and flat gradient of `model` on the samples `indices` of `dataset`, without updating it: what
 * a member of a training group computes for its share of a step.
 */
export async function batchGradient(
  model: Mlp,
  dataset: Dataset,
  indices: ArrayLike<number>,
): Promise<BatchGradient> {
  const backend = model.backend
  const rows = indices.length
  if (rows < 1) throw new RangeError('a batch needs at least one sample')
  const images = new Float32Array(rows * PIXEL_COUNT)
  const labels = new Float32Array(rows)
  gatherBatch(dataset, indices, 0, rows, images, labels)
  const x = backend.upload(images, [rows, PIXEL_COUNT])
  const y = backend.upload(labels, [rows])
  const result = model.lossAndGradients(x, y)
  const gradients = result.layers.flatMap((layer) => [layer.weight, layer.bias])
  try {
    const [gradient, losses] = await Promise.all([model.readFlat(gradients), backend.read(result.loss)])
    const meanLoss = losses.reduce((total, value) => total + value, 0) / rows
    if (!Number.isFinite(meanLoss)) throw new TrainingDivergedError(`the batch loss is ${meanLoss}`)
    return { samples: rows, meanLoss, gradient }
  } finally {
    for (const tensor of [x, y, result.loss, result.logits, ...gradients]) tensor.dispose()
  }
}

export interface Predictions {
  /** [rows] index of the largest logit of each row (the first on ties) */
  classes: Uint8Array
  /** [rows, outputSize] */
  logits: Float32Array
}

/** Forward pass over `rows` images [rows, inputSize] (host memory), in batches of `batchSize`. */
export async function predict(
  model: Mlp,
  images: Float32Array,
  rows: number,
  batchSize = 1000,
): Promise<Predictions> {
  const { inputSize, outputSize } = model.architecture
  if (images.length !== rows * inputSize) {
    throw new RangeError(`expected ${rows}x${inputSize} = ${rows * inputSize} values, got ${images.length}`)
  }
  if (outputSize > 256) throw new RangeError('predict returns classes as bytes: at most 256 outputs')
  const backend = model.backend
  const logits = new Float32Array(rows * outputSize)
  for (let start = 0; start < rows; start += batchSize) {
    const end = Math.min(rows, start + batchSize)
    const x = backend.upload(images.subarray(start * inputSize, end * inputSize), [end - start, inputSize])
    const batchLogits = model.logits(x)
    logits.set(await backend.read(batchLogits), start * outputSize)
    x.dispose()
    batchLogits.dispose()
  }
  const classes = new Uint8Array(rows)
  for (let row = 0; row < rows; row++) {
    let best = 0
    for (let c = 1; c < outputSize; c++)
      if (logits[row * outputSize + c] > logits[row * outputSize + best]) best = c
    classes[row] = best
  }
  return { classes, logits }
}

export interface EvaluationResult {
  samples: number
  /** fraction of samples whose largest logit is the label */
  accuracy: number
  meanLoss: number
  /** per class: [correct, total] */
  perClass: Array<[number, number]>
}

/** Accuracy and mean cross-entropy of `model` on every sample of `dataset`. */
export async function evaluate(model: Mlp, dataset: Dataset, batchSize = 1000): Promise<EvaluationResult> {
  const backend = model.backend
  const outputSize = model.architecture.outputSize
  const identity = identityOrder(dataset.count)
  const stager = new BatchStager(backend, Math.min(batchSize, dataset.count))
  const perClass: Array<[number, number]> = Array.from({ length: outputSize }, () => [0, 0])
  let correct = 0
  let lossTotal = 0
  try {
    for (let start = 0; start < dataset.count; start += batchSize) {
      const end = Math.min(dataset.count, start + batchSize)
      const batch = stager.stage(dataset, identity, start, end)
      const logitsTensor = model.logits(batch.x)
      const { loss, gradLogits } = backend.softmaxCrossEntropy(logitsTensor, batch.y)
      gradLogits.dispose()
      const [logits, losses] = await Promise.all([backend.read(logitsTensor), backend.read(loss)])
      logitsTensor.dispose()
      loss.dispose()
      if (batch.owned) {
        batch.x.dispose()
        batch.y.dispose()
      }
      for (let row = 0; row < end - start; row++) {
        let best = 0
        for (let c = 1; c < outputSize; c++)
          if (logits[row * outputSize + c] > logits[row * outputSize + best]) best = c
        const label = dataset.labels[start + row]
        perClass[label][1]++
        if (best === label) {
          correct++
          perClass[label][0]++
        }
        lossTotal += losses[row]
      }
    }
  } finally {
    stager.dispose()
  }
  const meanLoss = lossTotal / dataset.count
  if (!Number.isFinite(meanLoss)) throw new TrainingDivergedError(`the evaluation loss is ${meanLoss}`)
  return { samples: dataset.count, accuracy: correct / dataset.count, meanLoss, perClass }
}
