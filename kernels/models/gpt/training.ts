// A local training step of the GPT on its device: forward + backward, global gradient-norm clipping
// and AdamW per parameter tensor, with a linear warmup followed by a constant or cosine schedule.
//
// Clipping needs the global norm on the host (adamWInPlace takes its gradient scale as a number),
// so each step reads one float back: the sum of every gradient's sumSquares. That read waits for
// the step's backward, which is why `step` is async; the loss itself is returned as a device tensor
// and not read. Weight decay applies to the 2-D weights only (the matrices and the two embeddings);
// biases and LayerNorm gains and biases are not decayed, as in GPT-2 and nanoGPT.
import type { Tensor } from '../../backend.js'
import { type LearningRateSchedule, learningRateAt, TrainingDivergedError } from '../training.js'
import type { Gpt } from './model.js'

export interface GptTrainerOptions {
  /** peak learning rate */
  learningRate: number
  /** decoupled weight decay of the 2-D weights; @default 0 */
  weightDecay?: number
  /** @default 0.9 */
  beta1?: number
  /** @default 0.95 */
  beta2?: number
  /** @default 1e-8 */
  epsilon?: number
  /**
   * largest global gradient norm; larger gradients are scaled down to it. Infinity disables
   * clipping (and the read of the norm). @default 1
   */
  gradClip?: number
  /** linear warmup from learningRate / warmupSteps up to learningRate; @default 0 */
  warmupSteps?: number
  /** steps the schedule spans (cosine reaches its floor at the last one) */
  totalSteps: number
  /** @default 'constant' */
  schedule?: LearningRateSchedule
  /** the cosine schedule's floor as a fraction of learningRate; @default 0 */
  floorFraction?: number
}

export const GPT_BETA1_DEFAULT = 0.9
export const GPT_BETA2_DEFAULT = 0.95
export const GPT_GRAD_CLIP_DEFAULT = 1

/**
 * Learning rate of update `step` (0-based): step + 1 of warmupSteps times the peak during the
 * warmup, then the schedule over the remaining totalSteps - warmupSteps steps.
 */
export function gptLearningRateAt(options: GptTrainerOptions, step: number): number {
  const warmup = options.warmupSteps ?? 0
  if (step < warmup) return (options.learningRate * (step + 1)) / warmup
  return learningRateAt(
    options.schedule ?? 'constant',
    options.learningRate,
    step - warmup,
    Math.max(1, options.totalSteps - warmup),
    options.floorFraction ?? 0,
  )
}

export class GptTrainer {
  readonly gpt: Gpt
  readonly options: GptTrainerOptions
  /** updates applied so far; the next one uses stepCount + 1 for AdamW's bias correction */
  stepCount = 0
  /** the global gradient norm of the last step (before clipping); NaN before the first */
  lastGradientNorm = Number.NaN
  readonly #firstMoments: Tensor[]
  readonly #secondMoments: Tensor[]
  /** per parameter tensor: whether it is decayed (2-D weights only) */
  readonly #decayed: boolean[]

  constructor(gpt: Gpt, options: GptTrainerOptions) {
    const check = (name: string, value: number, ok: boolean) => {
      if (!ok) throw new RangeError(`${name} is out of range: ${value}`)
    }
    check('learningRate', options.learningRate, options.learningRate > 0)
    check('totalSteps', options.totalSteps, Number.isInteger(options.totalSteps) && options.totalSteps > 0)
    const warmup = options.warmupSteps ?? 0
    check('warmupSteps', warmup, Number.isInteger(warmup) && warmup >= 0)
    const clip = options.gradClip ?? GPT_GRAD_CLIP_DEFAULT
    check('gradClip', clip, clip > 0)
    this.gpt = gpt
    this.options = options
    const parameters = gpt.parameters()
    this.#firstMoments = parameters.map((parameter) => gpt.backend.zeros(parameter.shape))
    this.#secondMoments = parameters.map((parameter) => gpt.backend.zeros(parameter.shape))
    this.#decayed = parameters.map((parameter) => parameter.shape.length === 2)
  }

  /** the learning rate of the next step */
  get learningRate(): number {
    return gptLearningRateAt(this.options, this.stepCount)
  }

  /**
   * One update from a batch (see Gpt.lossAndGradients); resolves to the batch's mean loss [1] on
   * the device, which the caller disposes. Throws TrainingDivergedError, leaving the parameters
   * as they were, when the gradient norm is not finite.
   */
  async step(inputs: Float32Array, targets: Float32Array, batch: number): Promise<Tensor> {
    const backend = this.gpt.backend
    const { loss, gradients } = this.gpt.lossAndGradients(inputs, targets, batch)
    try {
      const clip = this.options.gradClip ?? GPT_GRAD_CLIP_DEFAULT
      let gradientScale = 1
      if (Number.isFinite(clip)) {
        let total: Tensor | undefined
        for (const gradient of gradients) {
          const squares = backend.sumSquares(gradient)
          if (total === undefined) total = squares
          else {
            const sum = backend.add(total, squares)
            total.dispose()
            squares.dispose()
            total = sum
          }
        }
        if (total === undefined) throw new Error('unreachable: a GPT has parameters')
        const [sumOfSquares] = await backend.read(total)
        total.dispose()
        const norm = Math.sqrt(sumOfSquares)
        this.lastGradientNorm = norm
        if (!Number.isFinite(norm))
          throw new TrainingDivergedError(`the gradient norm is ${norm} at step ${this.stepCount}`)
        gradientScale = norm > clip ? clip / norm : 1
      }
      const learningRate = this.learningRate
      this.stepCount++
      const parameters = this.gpt.parameters()
      for (let i = 0; i < parameters.length; i++) {
        backend.adamWInPlace(parameters[i], gradients[i], this.#firstMoments[i], this.#secondMoments[i], {
          learningRate,
          beta1: this.options.beta1 ?? GPT_BETA1_DEFAULT,
          beta2: this.options.beta2 ?? GPT_BETA2_DEFAULT,
          epsilon: this.options.epsilon ?? 1e-8,
          weightDecay: this.#decayed[i] ? (this.options.weightDecay ?? 0) : 0,
          step: this.stepCount,
          gradientScale,
        })
      }
      return loss
    } catch (error) {
      loss.dispose()
      throw error
    } finally {
      for (const gradient of gradients) gradient.dispose()
    }
  }

  dispose(): void {
    for (const tensor of [...this.#firstMoments, ...this.#secondMoments]) tensor.dispose()
  }
}
