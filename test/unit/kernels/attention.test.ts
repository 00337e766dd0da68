// Causal multi-head attention on both backends against a float64 oracle written here: the explicit
// [T, T] score matrix per head, its softmax, and the matrix form of the backward (itself checked
// against central finite differences of the float64 forward). Covers head widths 1, 3, 32, 64 and
// 128, sequence lengths that are not multiples of the kernels' tiles, large scores, cached
// attention against the rows of full attention, and bitwise determinism of the webgpu kernels.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend, Tensor } from '../../../kernels/index.js'
import { WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { BACKENDS, expectClose, openBackend, randomArray, seededRandom, type Tolerance } from './helpers.js'

interface Case {
  batch: number
  sequence: number
  heads: number
  headWidth: number
}

/** the column of head h's element c in the q (part 0), k (1) or v (2) block of a qkv row */
const column = (part: number, width: number, h: number, hd: number, c: number) => part * width + h * hd + c

/** float64 causal attention with explicit score matrices: output, lse and the probabilities */
function oracleForward(qkv: ArrayLike<number>, { batch, sequence: T, heads, headWidth: hd }: Case) {
  const D = heads * hd
  const scale = 1 / Math.sqrt(hd)
  const output = new Float64Array(batch * T * D)
  const logSumExp = new Float64Array(batch * heads * T)
  const probabilities: Float64Array[] = []
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const P = new Float64Array(T * T)
      for (let i = 0; i < T; i++) {
        const scores: number[] = []
        for (let j = 0; j <= i; j++) {
          let dot = 0
          for (let c = 0; c < hd; c++) {
            dot +=
              qkv[(b * T + i) * 3 * D + column(0, D, h, hd, c)] *
              qkv[(b * T + j) * 3 * D + column(1, D, h, hd, c)]
          }
          scores.push(dot * scale)
        }
        const max = Math.max(...scores)
        const sum = scores.reduce((total, s) => total + Math.exp(s - max), 0)
        for (let j = 0; j <= i; j++) P[i * T + j] = Math.exp(scores[j] - max) / sum
        logSumExp[(b * heads + h) * T + i] = max + Math.log(sum)
        for (let c = 0; c < hd; c++) {
          let value = 0
          for (let j = 0; j <= i; j++)
            value += P[i * T + j] * qkv[(b * T + j) * 3 * D + column(2, D, h, hd, c)]
          output[(b * T + i) * D + h * hd + c] = value
        }
      }
      probabilities.push(P)
    }
  }
  return { output, logSumExp, probabilities }
}

/**
 * float64 gradient of sum(gradOutput * attention(qkv)) with respect to qkv, in matrix form:
 * dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = dS K / sqrt(hd), dK = dS^T Q / sqrt(hd)
 */
function oracleBackward(qkv: ArrayLike<number>, gradOutput: ArrayLike<number>, sizes: Case): Float64Array {
  const { batch, sequence: T, heads, headWidth: hd } = sizes
  const D = heads * hd
  const scale = 1 / Math.sqrt(hd)
  const { probabilities } = oracleForward(qkv, sizes)
  const grad = new Float64Array(batch * T * 3 * D)
  const at = (part: number, b: number, t: number, h: number, c: number) =>
    (b * T + t) * 3 * D + column(part, D, h, hd, c)
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const P = probabilities[b * heads + h]
      const dP = new Float64Array(T * T)
      for (let i = 0; i < T; i++) {
        for (let j = 0; j < T; j++) {
          let dot = 0
          for (let c = 0; c < hd; c++)
            dot += gradOutput[(b * T + i) * D + h * hd + c] * qkv[at(2, b, j, h, c)]
          dP[i * T + j] = dot
        }
      }
      const dS = new Float64Array(T * T)
      for (let i = 0; i < T; i++) {
        let rowSum = 0
        for (let j = 0; j < T; j++) rowSum += P[i * T + j] * dP[i * T + j]
        for (let j = 0; j < T; j++) dS[i * T + j] = P[i * T + j] * (dP[i * T + j] - rowSum)
      }
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < hd; c++) {
          let dq = 0
          let dk = 0
          let dv = 0
          for (let u = 0; u < T; u++) {
            dq += dS[t * T + u] * qkv[at(1, b, u, h, c)]
            dk += dS[u * T + t] * qkv[at(0, b, u, h, c)]
            dv += P[u * T + t] * gradOutput[(b * T + u) * D + h * hd + c]
          }
          grad[at(0, b, t, h, c)] = dq * scale
          grad[at(1, b, t, h, c)] = dk * scale
          grad[at(2, b, t, h, c)] = dv
        }
      }
    }
  }
  return grad
}

/** cases whose sequence lengths are not multiples of the kernels' tiles (64 rows, 16..64 keys) */
const CASES: readonly Case[] = [
  { batch: 1, sequence: 1, heads: 1, headWidth: 1 },
  { batch: 3, sequence: 7, heads: 2, headWidth: 3 },
  { batch: 1, sequence: 33, heads: 4, headWidth: 1 },
  { batch: 3, sequence: 33, heads: 2, headWidth: 32 },
  { batch: 1, sequence: 100, heads: 2, headWidth: 64 },
  { batch: 2, sequence: 70, heads: 1, headWidth: 128 },
]

// |oracle - got| <= atol + rtol*|oracle| with inputs in [-1, 1]: float32 dot products over hd terms
// and sums over up to T keys, device exp/log within a few ulps.
const FORWARD: Tolerance = { atol: 2e-6, rtol: 1e-5 }
const LOG_SUM_EXP: Tolerance = { atol: 4e-6, rtol: 2e-6 }
const BACKWARD: Tolerance = { atol: 1e-5, rtol: 1e-4 }

const describeCase = ({ batch, sequence, heads, headWidth }: Case) =>
  `B=${batch} T=${sequence} H=${heads} hd=${headWidth}`

describe('the float64 attention oracle', () => {
  it('has the gradient of central finite differences of its forward', () => {
    const sizes: Case = { batch: 2, sequence: 4, heads: 2, headWidth: 3 }
    const random = seededRandom(7)
    const D = sizes.heads * sizes.headWidth
    const qkv = Float64Array.from(randomArray(random, sizes.batch * sizes.sequence * 3 * D))
    const gradOutput = Float64Array.from(randomArray(random, sizes.batch * sizes.sequence * D))
    const loss = (x: Float64Array) =>
      oracleForward(x, sizes).output.reduce((total, o, i) => total + o * gradOutput[i], 0)
    const analytic = oracleBackward(qkv, gradOutput, sizes)
    const step = 1e-5
    for (let i = 0; i < qkv.length; i++) {
      const plus = Float64Array.from(qkv)
      const minus = Float64Array.from(qkv)
      plus[i] += step
      minus[i] -= step
      const numeric = (loss(plus) - loss(minus)) / (2 * step)
      expect(Math.abs(numeric - analytic[i]), `element ${i}`).toBeLessThan(1e-8)
    }
  })
})

describe.each(BACKENDS)('%s backend attention', (name) => {
  let backend: Backend
  const live: Tensor[] = []
  const track = <T extends Tensor>(tensor: T): T => {
    live.push(tensor)
    return tensor
  }
  const upload = (data: Float32Array, shape: readonly number[]) => track(backend.upload(data, shape))

  beforeAll(async () => {
    backend = await openBackend(name)
  })
  afterAll(() => {
    for (const tensor of live) tensor.dispose()
    if (backend instanceof WebGpuBackend) {
      expect(backend.runtime.lastDeviceError).toBeUndefined()
      expect(backend.runtime.stats.deviceErrors).toBe(0)
    }
    backend?.destroy()
  })

  /** forward and backward of one case on the backend */
  async function run(sizes: Case, qkv: Float32Array, gradOutput: Float32Array) {
    const rows = sizes.batch * sizes.sequence
    const D = sizes.heads * sizes.headWidth
    const dims = { batch: sizes.batch, sequence: sizes.sequence, heads: sizes.heads }
    const tqkv = upload(qkv, [rows, 3 * D])
    const { output, logSumExp } = backend.attention(tqkv, dims)
    track(output)
    track(logSumExp)
    expect(output.shape).toEqual([rows, D])
    expect(logSumExp.shape).toEqual([sizes.batch * sizes.heads * sizes.sequence])
    const gradQkv = track(
      backend.attentionBackward(upload(gradOutput, [rows, D]), tqkv, output, logSumExp, dims),
    )
    expect(gradQkv.shape).toEqual([rows, 3 * D])
    return {
      output: await backend.read(output),
      logSumExp: await backend.read(logSumExp),
      gradQkv: await backend.read(gradQkv),
    }
  }

  for (const sizes of CASES) {
    it(`forward and backward match the float64 oracle, ${describeCase(sizes)}`, async () => {
      const random = seededRandom(1000 + sizes.sequence * 7 + sizes.headWidth)
      const D = sizes.heads * sizes.headWidth
      const qkv = randomArray(random, sizes.batch * sizes.sequence * 3 * D)
      const gradOutput = randomArray(random, sizes.batch * sizes.sequence * D)
      const got = await run(sizes, qkv, gradOutput)
      const oracle = oracleForward(qkv, sizes)
      expectClose('output', oracle.output, got.output, FORWARD)
      expectClose('logSumExp', oracle.logSumExp, got.logSumExp, LOG_SUM_EXP)
      expectClose('gradQkv', oracleBackward(qkv, gradOutput, sizes), got.gradQkv, BACKWARD)
    })
  }

  it('stays finite and accurate with large scores (inputs scaled by 30)', async () => {
    const sizes: Case = { batch: 2, sequence: 45, heads: 2, headWidth: 32 }
    const random = seededRandom(99)
    const D = sizes.heads * sizes.headWidth
    const qkv = randomArray(random, sizes.batch * sizes.sequence * 3 * D, -30, 30)
    const gradOutput = randomArray(random, sizes.batch * sizes.sequence * D)
    const got = await run(sizes, qkv, gradOutput)
    for (const values of [got.output, got.logSumExp, got.gradQkv]) {
      expect(values.every(Number.isFinite)).toBe(true)
    }
    const oracle = oracleForward(qkv, sizes)
    // scores reach ~1e3, so float32 rounding of a score (~1e-4) moves probabilities by ~1e-4
    // relative: errors scale with the values (30) and the scores
    expectClose('output', oracle.output, got.output, { atol: 30 * 2e-4, rtol: 1e-4 })
    expectClose('logSumExp', oracle.logSumExp, got.logSumExp, { atol: 1e-4, rtol: 1e-6 })
    const grad = oracleBackward(qkv, gradOutput, sizes)
    const largest = grad.reduce((most, g) => Math.max(most, Math.abs(g)), 0)
    expectClose('gradQkv', grad, got.gradQkv, { atol: largest * 2e-4, rtol: 1e-4 })
  })

  it('cached attention equals the corresponding rows of full attention', async () => {
    const sizes: Case = { batch: 1, sequence: 77, heads: 3, headWidth: 32 }
    const random = seededRandom(31)
    const T = sizes.sequence
    const D = sizes.heads * sizes.headWidth
    const qkv = randomArray(random, T * 3 * D)
    const full = backend.attention(upload(qkv, [T, 3 * D]), sizes)
    track(full.output)
    track(full.logSumExp)
    const fullOutput = await backend.read(full.output)
    const oracle = oracleForward(qkv, sizes).output
    // a cache longer than offset + queries: the rows past it must not be read
    const cacheRows = T + 5
    const keys = randomArray(random, cacheRows * D, -1000, 1000)
    const values = randomArray(random, cacheRows * D, -1000, 1000)
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < D; c++) {
        keys[t * D + c] = qkv[t * 3 * D + D + c]
        values[t * D + c] = qkv[t * 3 * D + 2 * D + c]
      }
    }
    const tkeys = upload(keys, [cacheRows, D])
    const tvalues = upload(values, [cacheRows, D])
    for (const offset of [0, 1, 40, 76]) {
      const count = T - offset
      const queries = new Float32Array(count * D)
      for (let i = 0; i < count; i++) {
        for (let c = 0; c < D; c++) queries[i * D + c] = qkv[(offset + i) * 3 * D + c]
      }
      const output = track(
        backend.attentionCached(upload(queries, [count, D]), tkeys, tvalues, { heads: sizes.heads, offset }),
      )
      expect(output.shape).toEqual([count, D])
      const got = await backend.read(output)
      expectClose(`offset ${offset} against full attention`, fullOutput.subarray(offset * D), got, FORWARD)
      expectClose(`offset ${offset} against the oracle`, oracle.subarray(offset * D), got, FORWARD)
    }
  })

  it('gives bitwise identical results on repeated runs', async () => {
    const sizes: Case = { batch: 3, sequence: 100, heads: 2, headWidth: 32 }
    const random = seededRandom(5)
    const D = sizes.heads * sizes.headWidth
    const qkv = randomArray(random, sizes.batch * sizes.sequence * 3 * D)
    const gradOutput = randomArray(random, sizes.batch * sizes.sequence * D)
    const first = await run(sizes, qkv, gradOutput)
    const second = await run(sizes, qkv, gradOutput)
    const bits = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length)
    expect(bits(second.output)).toEqual(bits(first.output))
    expect(bits(second.logSumExp)).toEqual(bits(first.logSumExp))
    expect(bits(second.gradQkv)).toEqual(bits(first.gradQkv))
  })
})
