// decideStep is what a follower recomputes byte for byte: it must give the leader's entry whether a
// gradient is the author's in-memory message or the bytes that crossed the wire.
import { describe, expect, it } from 'vitest'
import { GradientCompressor } from '../../../protocols/training/compression.js'
import { createTrainingState, encodeEntry, type TrainingConfig } from '../../../protocols/training/state.js'
import {
  type Candidate,
  decideStep,
  gradientDigest,
  type StepRules,
} from '../../../protocols/training/verify.js'
import { Gradient } from '../../../protocols/wire/training.js'

const COUNT = 8
const training: TrainingConfig = {
  parameterCount: COUNT,
  steps: 10,
  learningRate: 0.01,
  schedule: 'constant',
  weightDecay: 0,
  outerEvery: 0,
}
const rules = (compression: 'none' | 'int8'): StepRules => ({
  training,
  aggregate: 'median',
  trimCount: 1,
  normFactorMax: 10,
  suspectCosineMin: 0.02,
  compression,
  compressionBlockSize: 4,
  minContributors: 3,
})

function candidates(compression: 'none' | 'int8', wire: boolean): Candidate[] {
  const state = createTrainingState(new Float32Array(COUNT).fill(0.5), ['a', 'b', 'c'])
  return ['a', 'b', 'c'].map((member, m) => {
    const values = Float32Array.from({ length: COUNT }, (_, i) => Math.sin(1 + m * 7 + i) * (m + 1))
    // losses a float32 cannot hold, whose float64 mean and float32 mean round to different float32s:
    // the author's copy keeps the float64, the wire a float32
    const loss = [0.05585714285714286, 0.37002999999999997, 1.8999899999999998][m]
    const { message } = new GradientCompressor(compression, 4).encode(values, 0, state.digest, loss)
    const sent = wire ? Gradient.decode(Gradient.encode(message)) : message
    return { member, digest: gradientDigest(sent), message: sent }
  })
}

describe('decideStep', () => {
  it.each(['none', 'int8'] as const)(
    'gives the same entry bytes from the authors own messages and from the wire (%s)',
    (compression) => {
      const state = createTrainingState(new Float32Array(COUNT).fill(0.5), ['a', 'b', 'c'])
      const own = decideStep(state, candidates(compression, false), rules(compression))
      const wire = decideStep(state, candidates(compression, true), rules(compression))
      expect(own.kind).toBe('entry')
      expect(wire.kind).toBe('entry')
      if (own.kind !== 'entry' || wire.kind !== 'entry') return
      expect(encodeEntry(own.entry)).toEqual(encodeEntry(wire.entry))
      expect(own.entry.contributors).toEqual(['a', 'b', 'c'])
      expect(own.entry.gradientDigests).toHaveLength(3)
    },
  )

  it('names a gradient by the same digest signed or not', () => {
    const [first] = candidates('none', true)
    const signed = { ...first.message, signature: new Uint8Array(64).fill(3) }
    expect(gradientDigest(signed)).toEqual(gradientDigest(first.message))
    expect(gradientDigest({ ...first.message, loss: 9 })).not.toEqual(gradientDigest(first.message))
  })

  it('decides on no fewer than minContributors gradients, nor without a majority passing screening', () => {
    const state = createTrainingState(new Float32Array(COUNT).fill(0.5), ['a', 'b', 'c'])
    const [a, b, c] = candidates('none', true)
    expect(decideStep(state, [a, b], rules('none'))).toEqual({ kind: 'too-few', gradients: 2, accepted: 2 })
    const nan = Gradient.decode(Gradient.encode(c.message))
    nan.values = new Uint8Array(nan.values).fill(0xff) // NaN everywhere
    const bad = { member: 'b', digest: gradientDigest(nan), message: { ...nan } }
    const worse = { member: 'c', digest: gradientDigest(nan), message: { ...nan } }
    expect(decideStep(state, [a, bad, worse], rules('none'))).toEqual({
      kind: 'too-few',
      gradients: 3,
      accepted: 1,
    })
  })
})
