// The transformer ops of the Backend contract (add, embedding and its backward, LayerNorm and its
// backward, GELU and its backward, sum of squares, AdamW's gradient scale) on the cpu and webgpu
// backends, against float64 computations written here (not the reference ops under test), on odd
// shapes; GELU at exact points of the tanh formula, central-difference gradient checks, invalid ids,
// determinism and dispatches past 65535 workgroups.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend, Tensor } from '../../../kernels/index.js'
import { adamWReference } from '../../../kernels/reference/optimizers.js'
import { WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { BACKENDS, expectClose, openBackend, randomArray, seededRandom, type Tolerance } from './helpers.js'

/** float32's unit roundoff */
const U = 2 ** -24

/** [M, D] shapes: single element, odd sizes, a GPT-2 width, a row wider than any workgroup */
const SHAPES: readonly (readonly [number, number])[] = [
  [1, 1],
  [7, 13],
  [257, 129],
  [33, 768],
  [3, 8192],
]

/**
 * Asserts |ref - got| <= bound[i] elementwise (per-element error bounds of a sum, see sumBound);
 * lists the first violations.
 */
function expectWithin(label: string, reference: ArrayLike<number>, got: ArrayLike<number>, bound: number[]) {
  expect(got.length, `${label}: length`).toBe(reference.length)
  const bad: string[] = []
  for (let i = 0; i < reference.length; i++) {
    const error = Math.abs(reference[i] - got[i])
    if (!(error <= bound[i]) && !(Number.isNaN(reference[i]) && Number.isNaN(got[i])))
      bad.push(`[${i}] ref=${reference[i]} got=${got[i]} |diff|=${error} bound=${bound[i]}`)
  }
  expect(bad.slice(0, 8), `${label}: ${bad.length} elements outside their bound`).toEqual([])
}

/**
 * A sum accumulated in float64 with the first-order error bound of float32 recursive summation in
 * the same order, u * sum_k |S_k| over the partial sums S_k (Higham, Accuracy and Stability, 4.2),
 * plus `termRoundings` roundings of each term (a product computed in float32 before it is added).
 */
class SumWithBound {
  value = 0
  #partials = 0
  #terms = 0
  add(term: number): void {
    this.value += term
    this.#partials += Math.abs(this.value)
    this.#terms += Math.abs(term)
  }
  bound(termRoundings = 0): number {
    return U * (this.#partials + termRoundings * this.#terms) + U * Math.abs(this.value) + 1e-30
  }
}

/** the tanh form of GELU in float64, as the contract states it */
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))

/** float64 LayerNorm of one row: mean, rstd (biased variance) and y */
function layerNorm64(x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number) {
  const d = x.length
  let mean = 0
  for (let j = 0; j < d; j++) mean += x[j] / d
  let variance = 0
  for (let j = 0; j < d; j++) variance += (x[j] - mean) ** 2 / d
  const rstd = 1 / Math.sqrt(variance + eps)
  const y = Array.from({ length: d }, (_, j) => (x[j] - mean) * rstd * gamma[j] + beta[j])
  return { mean, rstd, y }
}

// Tolerances. The cpu backend computes in float64 and rounds once; the webgpu kernels compute in
// float32 with device exp (not correctly rounded: a few ulps of its argument's scale).
/** add is one float32 rounding on both backends: bit-exact with the float64 sum rounded */
const EXACT: Tolerance = { atol: 0, rtol: 0 }
/**
 * GELU for x in [-6, 6] is x / (1 + e) with e = exp(-a), a = 2u: a device exp off by a relative
 * delta (a few ulps of its argument: ~|a| u) moves y by |x| delta e / (1 + e)^2 <= |x| |a| u e^-|a|,
 * below 6 * 0.37 u ~ 1.3e-7, plus a few roundings of y; atol 2e-6 leaves room for a less accurate
 * device exp (lavapipe's measured error: ~1/8 of it)
 */
const GELU: Tolerance = { atol: 2e-6, rtol: 4e-7 }
/** the slope adds 2 x k (1 + 3 c x^2) s (1 - s), whose factors each carry a few roundings */
const GELU_BACKWARD: Tolerance = { atol: 4e-6, rtol: 1e-6 }
/**
 * LayerNorm for x in [-4, 4] + row offset (|x| <= 8), d <= 8192: the device's mean is a 64-thread
 * strided sum (d/64 terms each) then a 6-level tree. Rounding errors of a sum of random-signed terms
 * grow like the square root of their count: ~(sqrt(d/64) + 6) u max|x| for the mean, which y carries
 * times rstd |gamma| (< 2); a safety factor of 8 over that estimate (measured errors on lavapipe sit
 * near 1/20 of these bounds), plus a few roundings of |y| itself (rtol). A biased/unbiased variance
 * mix-up (relative 1/(2d)) or a wrong epsilon placement exceeds them.
 */
const layerNormTolerance = (d: number): Tolerance => ({ atol: (Math.sqrt(d / 64) + 6) * U * 16, rtol: 8 * U })
/** the statistics: mean as above; rstd's relative error is that of the variance's sum, halved */
const statisticsTolerance = (d: number): Tolerance => ({
  atol: (Math.sqrt(d / 64) + 6) * U * 8,
  rtol: (Math.sqrt(d / 64) + 8) * U * 4,
})
/**
 * dx = rstd (g - mean(g) - xhat mean(g xhat)): the two row means are tree sums like the forward's,
 * over terms |g| <= 1.5 and |g xhat| <= 1.5 |xhat| (|xhat| <= 1.8 for uniform rows), scaled by rstd
 * (~0.45) and |xhat|: ~(sqrt(d/64) + 8) u * 1.5 * 1.8 * 0.45 * 1.8 with a safety factor of 4 (measured
 * errors on lavapipe: below 1/40 of this), plus a few roundings of |dx|
 */
const layerNormBackwardTolerance = (d: number): Tolerance => ({
  atol: (Math.sqrt(d / 64) + 8) * U * 8,
  rtol: 8 * U,
})
/**
 * sum of squares (non-negative terms): on the device chunks of 64 consecutive terms summed in order,
 * then the column reduction's passes of 64 in order; at most 4 passes here (16.7M elements), so by
 * the recursive-summation bound the relative error is below 4 * 64 u
 */
const SUM_SQUARES: Tolerance = { atol: 0, rtol: 4 * 64 * U }

describe.each(BACKENDS)('%s backend transformer ops', (name) => {
  let backend: Backend
  const random = seededRandom(20270118)
  const live: Tensor[] = []
  const track = <T extends Tensor>(tensor: T): T => {
    live.push(tensor)
    return tensor
  }
  const upload = (data: Float32Array, shape: readonly number[]) => track(backend.upload(data, shape))
  const read = (tensor: Tensor) => backend.read(track(tensor))

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

  for (const [m, d] of SHAPES) {
    it(`add, gelu, geluBackward and sumSquares on [${m},${d}]`, async () => {
      const a = randomArray(random, m * d, -6, 6)
      const b = randomArray(random, m * d)
      const dy = randomArray(random, m * d)
      const ta = upload(a, [m, d])
      const sum = await read(backend.add(ta, upload(b, [m, d])))
      expectClose(
        'add',
        Float64Array.from(a, (v, i) => Math.fround(v + b[i])),
        sum,
        EXACT,
      )
      expectClose('gelu', Float64Array.from(a, geluTanh), await read(backend.gelu(ta)), GELU)
      // d/dx of the tanh form, by hand: 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)
      const k = Math.sqrt(2 / Math.PI)
      const slope = (x: number) => {
        const t = Math.tanh(k * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
      }
      expectClose(
        'geluBackward',
        Float64Array.from(a, (x, i) => dy[i] * slope(x)),
        await read(backend.geluBackward(upload(dy, [m, d]), ta)),
        GELU_BACKWARD,
      )
      let squares = 0
      for (const v of a) squares += v * v
      expectClose('sumSquares', [squares], await read(backend.sumSquares(ta)), SUM_SQUARES)
    })

    it(`embedding and embeddingBackward with ${m * 3} ids into a [${m + 4},${d}] table`, async () => {
      const rows = m + 4
      const count = m * 3
      const table = randomArray(random, rows * d)
      // ids drawn from the first half of the table: repeats (sums of several rows), untouched rows
      const ids = Float32Array.from({ length: count }, () => Math.floor(random() * Math.ceil(rows / 2)))
      if (count > 2) ids.set([rows, -1, 1.5].slice(0, count - 2), 1) // invalid ids
      const tIds = upload(ids, [count])
      const out = track(backend.embedding(upload(table, [rows, d]), tIds))
      expect(out.shape).toEqual([count, d])
      const valid = (id: number) => Number.isInteger(id) && id >= 0 && id < rows
      const expected = new Float64Array(count * d)
      for (let n = 0; n < count; n++) {
        for (let j = 0; j < d; j++) expected[n * d + j] = valid(ids[n]) ? table[ids[n] * d + j] : Number.NaN
      }
      expectClose('embedding', expected, await backend.read(out), EXACT)

      const dy = randomArray(random, count * d)
      const sums = Array.from({ length: rows * d }, () => new SumWithBound())
      for (let n = 0; n < count; n++) {
        if (!valid(ids[n])) continue
        for (let j = 0; j < d; j++) sums[ids[n] * d + j].add(dy[n * d + j])
      }
      const grad = track(backend.embeddingBackward(upload(dy, [count, d]), tIds, rows))
      expect(grad.shape).toEqual([rows, d])
      expectWithin(
        'embeddingBackward',
        sums.map((s) => s.value),
        await backend.read(grad),
        sums.map((s) => s.bound()),
      )
    })

    it(`layerNorm and layerNormBackward on [${m},${d}]`, async () => {
      const epsilon = 1e-5
      // rows off-centre (offset up to 4) so that the mean matters
      const x = new Float32Array(m * d)
      for (let i = 0; i < m; i++) {
        const offset = 8 * random() - 4
        for (let j = 0; j < d; j++) x[i * d + j] = offset + 8 * random() - 4
      }
      const gamma = randomArray(random, d, 0.5, 1.5)
      const beta = randomArray(random, d, -0.5, 0.5)
      const tx = upload(x, [m, d])
      const tGamma = upload(gamma, [d])
      const result = backend.layerNorm(tx, tGamma, upload(beta, [d]), epsilon)
      const expectedY = new Float64Array(m * d)
      const expectedMean = new Float64Array(m)
      const expectedRstd = new Float64Array(m)
      for (let i = 0; i < m; i++) {
        const row = layerNorm64(x.subarray(i * d, (i + 1) * d), gamma, beta, epsilon)
        expectedY.set(row.y, i * d)
        expectedMean[i] = row.mean
        expectedRstd[i] = row.rstd
      }
      expectClose('layerNorm y', expectedY, await read(result.y), layerNormTolerance(d))
      expectClose('layerNorm mean', expectedMean, await read(result.mean), statisticsTolerance(d))
      expectClose('layerNorm rstd', expectedRstd, await read(result.rstd), statisticsTolerance(d))

      // the backward from the float64 statistics rounded to float32, as a forward would store them
      const mean = Float32Array.from(expectedMean)
      const rstd = Float32Array.from(expectedRstd)
      const dy = randomArray(random, m * d)
      const expectedDx = new Float64Array(m * d)
      const dGamma = Array.from({ length: d }, () => new SumWithBound())
      const dBeta = Array.from({ length: d }, () => new SumWithBound())
      for (let i = 0; i < m; i++) {
        let meanG = 0
        let meanGXhat = 0
        const xhat = (j: number) => (x[i * d + j] - mean[i]) * rstd[i]
        for (let j = 0; j < d; j++) {
          const g = dy[i * d + j] * gamma[j]
          meanG += g / d
          meanGXhat += (g * xhat(j)) / d
          dGamma[j].add(dy[i * d + j] * xhat(j))
          dBeta[j].add(dy[i * d + j])
        }
        for (let j = 0; j < d; j++) {
          expectedDx[i * d + j] = rstd[i] * (dy[i * d + j] * gamma[j] - meanG - xhat(j) * meanGXhat)
        }
      }
      const grads = backend.layerNormBackward(
        upload(dy, [m, d]),
        tx,
        tGamma,
        upload(mean, [m]),
        upload(rstd, [m]),
      )
      expectClose('layerNorm dx', expectedDx, await read(grads.gradInput), layerNormBackwardTolerance(d))
      // each term dy * xhat carries the roundings of x - mean, of * rstd and of * dy: 3
      const gammaBound = dGamma.map((s) => s.bound(3))
      expectWithin(
        'layerNorm dGamma',
        dGamma.map((s) => s.value),
        await read(grads.gradGamma),
        gammaBound,
      )
      const betaBound = dBeta.map((s) => s.bound())
      expectWithin(
        'layerNorm dBeta',
        dBeta.map((s) => s.value),
        await read(grads.gradBeta),
        betaBound,
      )
    })
  }

  it('GELU equals the tanh formula at exact points', async () => {
    const points = Float32Array.of(0, 1, -1, 0.5, -0.5, 2, -2, 3, -3, 5, -5, 10, -10, 40, -40)
    const got = await read(backend.gelu(upload(points, [points.length])))
    expectClose('gelu points', Float64Array.from(points, geluTanh), got, GELU)
    expect(got[0]).toBe(0)
    expect(got[11]).toBe(10) // x (1 + tanh(u)) / 2 with tanh(u) = 1 to float32
    expect(got[13]).toBe(40)
    expect(Math.abs(got[14])).toBeLessThan(1e-30) // gelu(-40) ~ -40 e^-5000
  })

  it('geluBackward matches central differences of the float64 GELU', async () => {
    const points = Float32Array.of(-4, -2.5, -1, -0.3, 0, 0.2, 0.7, 1.5, 3, 4.5)
    const got = await read(
      backend.geluBackward(
        upload(new Float32Array(points.length).fill(1), [points.length]),
        upload(points, [10]),
      ),
    )
    const h = 1e-5
    // central differences: truncation O(h^2 f''') ~ 1e-10, cancellation ~ 1e-16 / h ~ 1e-11
    const numeric = Float64Array.from(points, (x) => (geluTanh(x + h) - geluTanh(x - h)) / (2 * h))
    expectClose('gelu slope', numeric, got, GELU_BACKWARD)
  })

  it('layerNormBackward matches central differences of the float64 LayerNorm', async () => {
    const [m, d] = [3, 5]
    const epsilon = 1e-5
    const x = randomArray(random, m * d, -2, 2)
    const gamma = randomArray(random, d, 0.5, 1.5)
    const beta = randomArray(random, d, -0.5, 0.5)
    const w = randomArray(random, m * d) // loss = sum(w * y): dy = w
    const loss = (xs: ArrayLike<number>, gs: ArrayLike<number>, bs: ArrayLike<number>) => {
      let total = 0
      for (let i = 0; i < m; i++) {
        const { y } = layerNorm64(
          Array.from({ length: d }, (_, j) => xs[i * d + j]),
          gs,
          bs,
          epsilon,
        )
        for (let j = 0; j < d; j++) total += w[i * d + j] * y[j]
      }
      return total
    }
    const h = 1e-6
    const numeric = (values: Float32Array, which: 0 | 1 | 2) =>
      Float64Array.from(values, (_, index) => {
        const shifted = (delta: number) => {
          const copy = Float64Array.from(values)
          copy[index] += delta
          const args: ArrayLike<number>[] = [x, gamma, beta]
          args[which] = copy
          return loss(args[0], args[1], args[2])
        }
        return (shifted(h) - shifted(-h)) / (2 * h)
      })
    const tx = upload(x, [m, d])
    const tGamma = upload(gamma, [d])
    const forward = backend.layerNorm(tx, tGamma, upload(beta, [d]), epsilon)
    track(forward.y)
    const grads = backend.layerNormBackward(
      upload(w, [m, d]),
      tx,
      tGamma,
      track(forward.mean),
      track(forward.rstd),
    )
    // float32 statistics and sums against a float64 difference quotient (error ~ 1e-10 / h): 1e-5
    const tolerance: Tolerance = { atol: 1e-5, rtol: 1e-5 }
    expectClose('dx', numeric(x, 0), await read(grads.gradInput), tolerance)
    expectClose('dGamma', numeric(gamma, 1), await read(grads.gradGamma), tolerance)
    expectClose('dBeta', numeric(beta, 2), await read(grads.gradBeta), tolerance)
  })

  it('embedding of out-of-range ids: NaN rows forward, nothing backward', async () => {
    const table = Float32Array.of(1, 2, 3, 4, 5, 6) // [3, 2]
    const ids = Float32Array.of(2, 3, -1, 0.5, Number.NaN, 0, 2)
    const tIds = upload(ids, [ids.length])
    const out = await read(backend.embedding(upload(table, [3, 2]), tIds))
    expect([...out.slice(0, 2)]).toEqual([5, 6])
    expect([...out.slice(2, 10)].every(Number.isNaN)).toBe(true)
    expect([...out.slice(10)]).toEqual([1, 2, 5, 6])
    const dy = Float32Array.from({ length: ids.length * 2 }, (_, i) => 2 ** i)
    const grad = await read(backend.embeddingBackward(upload(dy, [ids.length, 2]), tIds, 3))
    // row 0 from n = 5; row 1 untouched; row 2 from n = 0 and n = 6
    expect([...grad]).toEqual([2 ** 10, 2 ** 11, 0, 0, 2 ** 0 + 2 ** 12, 2 ** 1 + 2 ** 13])
  })

  it('handles empty operands', async () => {
    const none = upload(new Float32Array(0), [0])
    expect(await read(backend.sumSquares(none))).toEqual(Float32Array.of(0))
    const grad = await read(backend.embeddingBackward(upload(new Float32Array(0), [0, 3]), none, 2))
    expect(grad).toEqual(new Float32Array(6))
    const embedded = track(backend.embedding(upload(Float32Array.of(1, 2), [1, 2]), none))
    expect(embedded.shape).toEqual([0, 2])
    const noRows = upload(new Float32Array(0), [0, 3])
    const gamma = upload(Float32Array.of(1, 1, 1), [3])
    const forward = backend.layerNorm(noRows, gamma, gamma, 1e-5)
    expect(await read(forward.y)).toEqual(new Float32Array(0))
    const grads = backend.layerNormBackward(noRows, noRows, gamma, track(forward.mean), track(forward.rstd))
    expect(await read(grads.gradGamma)).toEqual(new Float32Array(3))
    expect(await read(grads.gradBeta)).toEqual(new Float32Array(3))
    track(grads.gradInput)
  })

  it('runs past 65535 workgroups per dimension', async () => {
    const count = 65536 * 256 + 3 // elementwise workgroups of 256: 65537 of them
    const a = randomArray(random, count)
    const ta = upload(a, [count])
    const doubled = await read(backend.add(ta, ta))
    let wrong = 0
    for (let i = 0; i < count; i++) if (doubled[i] !== 2 * a[i]) wrong++
    expect(wrong).toBe(0)
    let squares = 0
    for (const v of a) squares += v * v
    expectClose('sumSquares', [squares], await read(backend.sumSquares(ta)), SUM_SQUARES)
    // one workgroup per row: 70001 rows of LayerNorm, 70001 + 1 workgroups backward
    const m = 70001
    // rows (a, a +- [0.5, 1.5]): well separated, so that float32 resolves their normalised values
    const x = new Float32Array(m * 2)
    for (let i = 0; i < m; i++) {
      x[2 * i] = 2 * random() - 1
      x[2 * i + 1] = x[2 * i] + (random() < 0.5 ? -1 : 1) * (0.5 + random())
    }
    const ones = upload(Float32Array.of(1, 1), [2])
    const zeros = upload(Float32Array.of(0, 0), [2])
    const forward = backend.layerNorm(upload(x, [m, 2]), ones, zeros, 0)
    const y = await read(forward.y)
    // a row of two values normalises to -1, 1 (ordered as the values); to a few roundings
    let off = 0
    for (let i = 0; i < m; i++) {
      const sign = Math.sign(x[2 * i + 1] - x[2 * i])
      if (!(Math.abs(y[2 * i + 1] - sign) < 1e-5 && Math.abs(y[2 * i] + sign) < 1e-5)) off++
    }
    expect(off).toBe(0)
    const grads = backend.layerNormBackward(
      upload(new Float32Array(m * 2).fill(1), [m, 2]),
      upload(x, [m, 2]),
      ones,
      track(forward.mean),
      track(forward.rstd),
    )
    track(grads.gradInput)
    track(grads.gradGamma)
    expect(await read(grads.gradBeta)).toEqual(Float32Array.of(m, m))
  })

  it('scales the gradient before the AdamW moments', async () => {
    const size = 1031
    const param = randomArray(random, size)
    const m = new Float32Array(size)
    const v = new Float32Array(size)
    const tParam = upload(param, [size])
    const tM = upload(m, [size])
    const tV = upload(v, [size])
    for (let step = 1; step <= 3; step++) {
      const grad = randomArray(random, size, -4, 4)
      const options = { learningRate: 1e-2, weightDecay: 0.01, step }
      backend.adamWInPlace(tParam, upload(grad, [size]), tM, tV, { ...options, gradientScale: 0.125 })
      // the same update from the gradient pre-scaled (0.125: exact in float32)
      adamWReference(
        param,
        grad.map((g) => g * 0.125),
        m,
        v,
        options,
      )
    }
    const tolerance: Tolerance = { atol: 1e-6, rtol: 1e-4 } // several steps of float32 updates
    expectClose('param', param, await backend.read(tParam), tolerance)
    expectClose('m', m, await backend.read(tM), tolerance)
    expectClose('v', v, await backend.read(tV), tolerance)
  })

  if (name === 'webgpu') {
    it('gives the same bits on every run (embeddingBackward, layerNormBackward, sumSquares)', async () => {
      const [count, d, rows] = [4099, 33, 7]
      const ids = upload(
        Float32Array.from({ length: count }, () => Math.floor(random() * rows)),
        [count],
      )
      const dy = upload(randomArray(random, count * d, -1, 1), [count, d])
      const first = await read(backend.embeddingBackward(dy, ids, rows))
      const second = await read(backend.embeddingBackward(dy, ids, rows))
      expect(new Uint32Array(second.buffer)).toEqual(new Uint32Array(first.buffer))

      const [m, width] = [257, 129]
      const x = upload(randomArray(random, m * width, -3, 3), [m, width])
      const gamma = upload(randomArray(random, width), [width])
      const g = upload(randomArray(random, m * width), [m, width])
      const forward = backend.layerNorm(x, gamma, gamma, 1e-5)
      track(forward.y)
      const [mean, rstd] = [track(forward.mean), track(forward.rstd)]
      const runs = []
      for (let run = 0; run < 2; run++) {
        const grads = backend.layerNormBackward(g, x, gamma, mean, rstd)
        runs.push(await Promise.all([read(grads.gradInput), read(grads.gradGamma), read(grads.gradBeta)]))
      }
      for (let k = 0; k < 3; k++)
        expect(new Uint32Array(runs[1][k].buffer)).toEqual(new Uint32Array(runs[0][k].buffer))
      const big = upload(randomArray(random, 1 << 20), [1 << 20])
      const s1 = await read(backend.sumSquares(big))
      const s2 = await read(backend.sumSquares(big))
      expect(s2).toEqual(s1)
    })
  }
})
