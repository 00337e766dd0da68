// Adam(W) over a list of parameter tensors: keeps the first and second moments on the device and
// applies the backend's fused adamWInPlace per tensor.
import type { Backend, Tensor } from '../backend.js'

export interface AdamWHyperParameters {
  /** @default 0.9 */
  beta1?: number
  /** @default 0.999 */
  beta2?: number
  /** @default 1e-8 */
  epsilon?: number
  /** decoupled weight decay; 0 gives Adam. @default 0 */
  weightDecay?: number
}

export class AdamWOptimizer {
  readonly backend: Backend
  readonly parameters: readonly Tensor[]
  readonly hyperParameters: AdamWHyperParameters
  private readonly firstMoments: Tensor[]
  private readonly secondMoments: Tensor[]
  /** updates applied so far; the next update uses stepCount + 1 for bias correction */
  stepCount = 0

  constructor(backend: Backend, parameters: readonly Tensor[], hyperParameters: AdamWHyperParameters = {}) {
    this.backend = backend
    this.parameters = parameters
    this.hyperParameters = hyperParameters
    this.firstMoments = parameters.map((parameter) => backend.zeros(parameter.shape))
    this.secondMoments = parameters.map((parameter) => backend.zeros(parameter.shape))
  }

  /** One update of every parameter with its gradient (same order as `parameters`). */
  step(gradients: readonly Tensor[], learningRate: number): void {
    if (gradients.length !== this.parameters.length) {
      throw new RangeError(`expected ${this.parameters.length} gradients, got ${gradients.length}`)
    }
    this.stepCount++
    for (let i = 0; i < this.parameters.length; i++) {
      this.backend.adamWInPlace(
        this.parameters[i],
        gradients[i],
        this.firstMoments[i],
        this.secondMoments[i],
        {
          ...this.hyperParameters,
          learningRate,
          step: this.stepCount,
        },
      )
    }
  }

  /**
   * One update from a flat gradient vector laid out like the parameters, concatenated in order
   * (e.g. a gradient aggregated from several peers).
   */
  stepFlat(flatGradient: Float32Array, learningRate: number): void {
    const total = this.parameters.reduce((sum, parameter) => sum + parameter.size, 0)
    if (flatGradient.length !== total)
      throw new RangeError(`expected a gradient of ${total} values, got ${flatGradient.length}`)
    let offset = 0
    const gradients = this.parameters.map((parameter) => {
      const gradient = this.backend.upload(
        flatGradient.subarray(offset, offset + parameter.size),
        parameter.shape,
      )
      offset += parameter.size
      return gradient
    })
    this.step(gradients, learningRate)
    for (const gradient of gradients) gradient.dispose()
  }

  dispose(): void {
    for (const tensor of [...this.firstMoments, ...this.secondMoments]) tensor.dispose()
  }
}
