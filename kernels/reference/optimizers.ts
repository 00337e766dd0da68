// Reference optimizer updates, in place on float32 arrays (each step rounded to float32 as the
// device does, so results agree closely over many steps).
import type { AdamWOptions, SgdMomentumOptions } from '../backend.js'

/** v = momentum*v + g; p -= lr * (v + weightDecay*p) */
export function sgdMomentumReference(
  param: Float32Array,
  grad: Float32Array,
  velocity: Float32Array,
  options: SgdMomentumOptions,
): void {
  const lr = options.learningRate
  const momentum = options.momentum ?? 0.9
  const weightDecay = options.weightDecay ?? 0
  for (let i = 0; i < param.length; i++) {
    velocity[i] = momentum * velocity[i] + grad[i]
    param[i] = param[i] - lr * (velocity[i] + weightDecay * param[i])
  }
}

/** Resolved AdamW constants for one step, shared by the reference and the device kernels. */
export function adamWConstants(options: AdamWOptions) {
  const beta1 = options.beta1 ?? 0.9
  const beta2 = options.beta2 ?? 0.999
  return {
    learningRate: options.learningRate,
    beta1,
    beta2,
    epsilon: options.epsilon ?? 1e-8,
    weightDecay: options.weightDecay ?? 0,
    gradientScale: options.gradientScale ?? 1,
    /** 1 / (1 - beta1^step) */
    biasCorrection1: 1 / (1 - beta1 ** options.step),
    /** 1 / (1 - beta2^step) */
    biasCorrection2: 1 / (1 - beta2 ** options.step),
  }
}

/**
 * g = float32(grad * gradientScale) (exactly grad when the scale is 1)
 * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t)
 * p -= lr * (mhat / (sqrt(vhat) + eps) + weightDecay*p)
 */
export function adamWReference(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  options: AdamWOptions,
): void {
  // the constants in locals and m, v, param read once: the same float64 arithmetic and float32
  // roundings as the formula above, element by element (a training group's replicas run this)
  const {
    learningRate,
    beta1,
    beta2,
    epsilon,
    weightDecay,
    gradientScale,
    biasCorrection1,
    biasCorrection2,
  } = adamWConstants(options)
  const oneMinusBeta1 = 1 - beta1
  const oneMinusBeta2 = 1 - beta2
  for (let i = 0; i < param.length; i++) {
    const g = Math.fround(grad[i] * gradientScale)
    const mi = Math.fround(beta1 * m[i] + oneMinusBeta1 * g)
    const vi = Math.fround(beta2 * v[i] + oneMinusBeta2 * g * g)
    m[i] = mi
    v[i] = vi
    const p = param[i]
    param[i] =
      p -
      learningRate * ((mi * biasCorrection1) / (Math.sqrt(vi * biasCorrection2) + epsilon) + weightDecay * p)
  }
}
