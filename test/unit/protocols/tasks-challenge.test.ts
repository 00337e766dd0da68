// Proves the capability challenge: an honest float32 answer from the cpu backend passes the float64
// check (and matches a float64 oracle within the float32 bound), every kind of shortcut or lie fails it,
// the shapes a worker accepts are bounded, and staffing ranks by measured speed, then reputation.
import { performance } from 'node:perf_hooks'
import { describe, expect, it } from 'vitest'
import { createBackend } from '../../../kernels/index.js'
import { rankClaimants } from '../../../protocols/tasks/assignment.js'
import {
  CHALLENGE_SHAPE_DEFAULT,
  type ChallengeShape,
  challengeGflops,
  challengeMatrices,
  challengeShapeProblem,
  checkChallengeAnswer,
  computeChallenge,
  floatsToLittleEndian,
  littleEndianToFloats,
} from '../../../protocols/tasks/challenge.js'

const seed = Uint8Array.from({ length: 16 }, (_, i) => i * 17 + 3)

/** C in float64, the oracle, rounded to float32 once at the end. */
function oracle(shape: ChallengeShape, skipEvery = 0): Float32Array {
  const { a, b } = challengeMatrices(seed, shape)
  const c = new Float32Array(shape.rows * shape.cols)
  for (let i = 0; i < shape.rows; i++)
    for (let j = 0; j < shape.cols; j++) {
      let sum = 0
      for (let l = 0; l < shape.inner; l++) {
        if (skipEvery > 0 && l % skipEvery === 0) continue
        sum += a[i * shape.inner + l] * b[l * shape.cols + j]
      }
      c[i * shape.cols + j] = sum
    }
  return c
}

describe('capability challenge', () => {
  it('passes an honest cpu-backend answer, which matches the float64 oracle', async () => {
    const backend = await createBackend({ prefer: 'cpu' })
    try {
      const shape = CHALLENGE_SHAPE_DEFAULT
      const started = performance.now()
      const answer = await computeChallenge(backend, seed, shape)
      const ms = performance.now() - started
      expect(answer.byteLength).toBe(shape.rows * shape.cols * 4)
      expect(checkChallengeAnswer(seed, shape, answer)).toBeUndefined()
      const got = littleEndianToFloats(answer)
      const want = oracle(shape)
      let worst = 0
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]))
      // entries are ~sqrt(12288)/3 = 37 in size; a float32 sum of 12288 terms is off by ~1e-3 at most
      expect(worst).toBeLessThan(0.01)
      // the figure a submitter would compute from this timing (this machine's cpu backend)
      console.log(
        `challenge ${shape.rows}x${shape.inner}x${shape.cols}: ${ms.toFixed(0)} ms, ` +
          `${challengeGflops(shape, ms / 1000).toFixed(2)} GFLOP/s`,
      )
      // and the float64 answer rounded once passes too (a different summation order)
      expect(checkChallengeAnswer(seed, shape, floatsToLittleEndian(want))).toBeUndefined()
    } finally {
      backend.destroy()
    }
  })

  it('refuses shortcuts and lies', () => {
    const shape = CHALLENGE_SHAPE_DEFAULT
    const right = oracle(shape)
    const wrong = (mutate: (c: Float32Array) => void) => {
      const c = right.slice()
      mutate(c)
      return checkChallengeAnswer(seed, shape, floatsToLittleEndian(c))
    }
    expect(wrong((c) => c.fill(0))).toBe('freivalds')
    // one entry off by 1 (entries are ~37, the tolerance of one entry ~0.01)
    expect(wrong((c) => (c[777] += 1))).toBe('freivalds')
    expect(wrong((c) => (c[5] = Number.NaN))).toBe('not-finite')
    // 1% of the products skipped
    expect(checkChallengeAnswer(seed, shape, floatsToLittleEndian(oracle(shape, 100)))).toBe('freivalds')
    // another seed's answer
    const other = challengeMatrices(new Uint8Array(16).fill(9), shape)
    expect(other.a[0]).not.toBe(challengeMatrices(seed, shape).a[0])
    expect(checkChallengeAnswer(seed, shape, new Uint8Array(10))).toBe('length')
    expect(checkChallengeAnswer(seed, shape, floatsToLittleEndian(right))).toBeUndefined()
  })

  it('bounds the shapes a worker computes', () => {
    expect(challengeShapeProblem(CHALLENGE_SHAPE_DEFAULT)).toBeUndefined()
    expect(challengeShapeProblem({ rows: 200, inner: 10, cols: 200 })).toBe('result size')
    expect(challengeShapeProblem({ rows: 64, inner: 1 << 20, cols: 64 })).toBe('input size')
    expect(challengeShapeProblem({ rows: 0, inner: 1, cols: 1 })).toBe('shape')
    expect(() => challengeMatrices(new Uint8Array(8), CHALLENGE_SHAPE_DEFAULT)).toThrow(RangeError)
  })

  it('ranks by measured speed class, then reputation, then exact speed', () => {
    const ranked = rankClaimants([
      { peerId: 'slow-trusted', backend: 'cpu', gflops: 1, maxBufferBytes: 1, score: 0.99 },
      { peerId: 'fast-new', backend: 'cpu', gflops: 10, maxBufferBytes: 1 },
      { peerId: 'fast-trusted', backend: 'cpu', gflops: 9.5, maxBufferBytes: 1, score: 0.9 },
      { peerId: 'fast-doubtful', backend: 'cpu', gflops: 10.1, maxBufferBytes: 1, score: 0.3 },
    ])
    expect(ranked.map((c) => c.peerId)).toEqual(['fast-trusted', 'fast-new', 'fast-doubtful', 'slow-trusted'])
  })
})
