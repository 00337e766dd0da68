// The host AdamW every replica of a training group runs (protocols/training/state.ts): bit for bit the
// formula in its doc comment, computed element by element from the stored float32 values, over many
// steps with weight decay, tiny and huge values, NaN and infinities.
import { describe, expect, it } from 'vitest'
import type { AdamWOptions } from '../../../kernels/backend.js'
import { SeededRandom } from '../../../kernels/data/random.js'
import { adamWConstants, adamWReference } from '../../../kernels/reference/optimizers.js'

/** The formula as written: every intermediate read back from the float32 arrays. */
function adamWFormula(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  options: AdamWOptions,
) {
  const k = adamWConstants(options)
  for (let i = 0; i < param.length; i++) {
    m[i] = k.beta1 * m[i] + (1 - k.beta1) * grad[i]
    v[i] = k.beta2 * v[i] + (1 - k.beta2) * grad[i] * grad[i]
    const mHat = m[i] * k.biasCorrection1
    const vHat = v[i] * k.biasCorrection2
    param[i] = param[i] - k.learningRate * (mHat / (Math.sqrt(vHat) + k.epsilon) + k.weightDecay * param[i])
  }
}

describe('adamWReference', () => {
  it('equals the formula bit for bit over 40 steps', () => {
    const random = SeededRandom.stream(3, 'adamw-bits')
    const length = 4099
    const values = () =>
      Float32Array.from({ length }, () => (random.float() - 0.5) * 10 ** (random.float() * 12 - 8))
    const expected = { param: values(), m: new Float32Array(length), v: new Float32Array(length) }
    const actual = { param: expected.param.slice(), m: new Float32Array(length), v: new Float32Array(length) }
    const bits = (array: Float32Array) => [...new Uint32Array(array.buffer)]
    for (let step = 1; step <= 40; step++) {
      const grad = values()
      if (step % 10 === 0)
        grad.set([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0], step)
      const options = { learningRate: 3e-3, weightDecay: step % 2 === 0 ? 0.01 : 0, step }
      adamWFormula(expected.param, grad, expected.m, expected.v, options)
      adamWReference(actual.param, grad, actual.m, actual.v, options)
      expect(bits(actual.param)).toEqual(bits(expected.param))
      expect(bits(actual.m)).toEqual(bits(expected.m))
      expect(bits(actual.v)).toEqual(bits(expected.v))
    }
  })

  it('scales the gradient before the moments: the update of the gradient rounded after scaling', () => {
    const random = SeededRandom.stream(4, 'adamw-scale')
    const length = 1031
    const values = () => Float32Array.from({ length }, () => (random.float() - 0.5) * 8)
    const scaled = { param: values(), m: new Float32Array(length), v: new Float32Array(length) }
    const plain = { param: scaled.param.slice(), m: new Float32Array(length), v: new Float32Array(length) }
    const bits = (array: Float32Array) => [...new Uint32Array(array.buffer)]
    for (let step = 1; step <= 5; step++) {
      const grad = values()
      // a scale whose products are not exact in float32: the scaled gradient is rounded once
      const gradientScale = 0.3 + step / 7
      const options = { learningRate: 3e-3, weightDecay: 0.01, step }
      adamWReference(scaled.param, grad, scaled.m, scaled.v, { ...options, gradientScale })
      const prescaled = Float32Array.from(grad, (g) => Math.fround(g * gradientScale))
      adamWFormula(plain.param, prescaled, plain.m, plain.v, options)
      expect(bits(scaled.param)).toEqual(bits(plain.param))
      expect(bits(scaled.m)).toEqual(bits(plain.m))
      expect(bits(scaled.v)).toEqual(bits(plain.v))
    }
  })

  it('leaves the update unchanged with gradientScale 1', () => {
    const random = SeededRandom.stream(5, 'adamw-scale-one')
    const grad = Float32Array.from({ length: 257 }, () => random.float() - 0.5)
    const run = (options: AdamWOptions) => {
      const param = Float32Array.from({ length: 257 }, (_, i) => i / 257)
      adamWReference(param, grad, new Float32Array(257), new Float32Array(257), options)
      return [...new Uint32Array(param.buffer)]
    }
    expect(run({ learningRate: 1e-3, step: 2, gradientScale: 1 })).toEqual(
      run({ learningRate: 1e-3, step: 2 }),
    )
  })
})
