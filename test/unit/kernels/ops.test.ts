// Proves every Backend op matches its TypeScript reference on seeded random inputs of awkward
// shapes, within a tolerance stated per op; the same suite runs on the cpu backend and on the
// webgpu backend (real WGSL on Dawn: lavapipe in CI).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Backend, ShapeError, type Tensor } from '../../../kernels/index.js'
import {
  adamWReference,
  axpyReference,
  biasAddReference,
  dequantizeInt8Reference,
  matmulReference,
  meanReference,
  meanRowsReference,
  quantizeInt8Reference,
  reluBackwardReference,
  reluReference,
  scaleReference,
  sgdMomentumReference,
  softmaxCrossEntropyReference,
  sumReference,
  sumRowsReference,
} from '../../../kernels/reference/index.js'
import { WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { BACKENDS, expectClose, openBackend, randomArray, seededRandom, type Tolerance } from './helpers.js'

/** [M, N] shapes for elementwise ops and reductions: single element, one long row, odd sizes */
const MATRIX_SHAPES: readonly (readonly [number, number])[] = [
  [1, 1],
  [1, 257],
  [257, 1],
  [127, 65],
  [33, 1024],
  [1000, 10],
]

/** [M, K, N] matmul shapes; 1024^3 runs in matmul-versions.test.ts for every kernel version */
const MATMUL_SHAPES: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [1, 257, 1],
  [1, 1, 257],
  [127, 65, 33],
  [64, 784, 10],
  [128, 128, 128],
]

// Tolerances, per op: |ref - got| <= atol + rtol*|ref|. The reference accumulates in float64.
/** float32 accumulation over K terms in [-1,1]: error grows about like sqrt(K) ulps of the sum */
const matmulTolerance = (k: number): Tolerance => ({ atol: 2e-7 * k, rtol: 1e-5 })
/** one rounding, possibly fused multiply-add: a couple of ulps */
const ELEMENTWISE: Tolerance = { atol: 1e-7, rtol: 2e-7 }
/** float32 sums of up to ~33k terms in [-1,1] */
const reductionTolerance = (terms: number): Tolerance => ({ atol: 2e-7 * Math.sqrt(terms) * 8, rtol: 1e-5 })
/** device exp/log are not correctly rounded */
const SOFTMAX_LOSS: Tolerance = { atol: 2e-6, rtol: 2e-6 }
const SOFTMAX_GRAD: Tolerance = { atol: 1e-7, rtol: 2e-5 }
/** several steps of float32 updates */
const SGD: Tolerance = { atol: 1e-6, rtol: 1e-5 }
const ADAMW: Tolerance = { atol: 1e-6, rtol: 1e-4 }
/** quantization is defined bit for bit on every backend (quantize-ties.test.ts has the ties) */
const QUANT_SCALES: Tolerance = { atol: 0, rtol: 0 }
const QUANT_VALUES: Tolerance = { atol: 0, rtol: 0 }
/** dequantize: one product per element */
const DEQUANT: Tolerance = { atol: 0, rtol: 1e-7 }

describe.each(BACKENDS)('%s backend ops match the reference', (name) => {
  let backend: Backend
  const random = seededRandom(20261123)
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

  it('round-trips upload, write, zeros and read', async () => {
    const data = randomArray(random, 257)
    const tensor = upload(data, [1, 257])
    expect(tensor.shape).toEqual([1, 257])
    expect(tensor.size).toBe(257)
    expect(await backend.read(tensor)).toEqual(data)
    const replacement = randomArray(random, 257)
    backend.write(tensor, replacement)
    expect(await backend.read(tensor)).toEqual(replacement)
    expect(await backend.read(track(backend.zeros([3, 5])))).toEqual(new Float32Array(15))
  })

  for (const [m, k, n] of MATMUL_SHAPES) {
    it(`matmul ${m}x${k}x${n} with every transpose combination`, async () => {
      const a = randomArray(random, m * k)
      const b = randomArray(random, k * n)
      for (const transposeA of [false, true]) {
        for (const transposeB of [false, true]) {
          const ta = upload(a, transposeA ? [k, m] : [m, k])
          const tb = upload(b, transposeB ? [n, k] : [k, n])
          const c = track(backend.matmul(ta, tb, { transposeA, transposeB }))
          expect(c.shape).toEqual([m, n])
          const reference = matmulReference(a, b, m, k, n, transposeA, transposeB)
          expectClose(
            `matmul A${transposeA ? 'T' : ''}B${transposeB ? 'T' : ''}`,
            reference,
            await backend.read(c),
            matmulTolerance(k),
          )
        }
      }
    })
  }

  for (const [m, n] of MATRIX_SHAPES) {
    it(`elementwise ops on [${m},${n}]`, async () => {
      const x = randomArray(random, m * n)
      const bias = randomArray(random, n)
      const dy = randomArray(random, m * n)
      const tx = upload(x, [m, n])
      expectClose(
        'biasAdd',
        biasAddReference(x, bias),
        await backend.read(track(backend.biasAdd(tx, upload(bias, [n])))),
        ELEMENTWISE,
      )
      expectClose('relu', reluReference(x), await backend.read(track(backend.relu(tx))), ELEMENTWISE)
      const tdy = upload(dy, [m, n])
      expectClose(
        'reluBackward',
        reluBackwardReference(dy, x),
        await backend.read(track(backend.reluBackward(tdy, tx))),
        ELEMENTWISE,
      )
      expectClose(
        'scale',
        scaleReference(x, -0.37),
        await backend.read(track(backend.scale(tx, -0.37))),
        ELEMENTWISE,
      )
      const y = randomArray(random, m * n)
      const ty = upload(y, [m, n])
      backend.axpyInPlace(1.7, tx, ty)
      backend.axpyInPlace(-0.3, tx, ty)
      axpyReference(1.7, x, y)
      axpyReference(-0.3, x, y)
      expectClose('axpyInPlace', y, await backend.read(ty), ELEMENTWISE)
    })

    it(`reductions on [${m},${n}]`, async () => {
      const x = randomArray(random, m * n)
      const tx = upload(x, [m, n])
      expectClose(
        'sumRows',
        sumRowsReference(x, m, n),
        await backend.read(track(backend.sumRows(tx))),
        reductionTolerance(m),
      )
      expectClose(
        'meanRows',
        meanRowsReference(x, m, n),
        await backend.read(track(backend.meanRows(tx))),
        reductionTolerance(1),
      )
      expectClose(
        'sum',
        sumReference(x),
        await backend.read(track(backend.sum(tx))),
        reductionTolerance(m * n),
      )
      expectClose(
        'mean',
        meanReference(x),
        await backend.read(track(backend.mean(tx))),
        reductionTolerance(1),
      )
    })

    it(`softmax cross-entropy on [${m},${n}] logits`, async () => {
      const logits = randomArray(random, m * n, -8, 8)
      const labels = Float32Array.from({ length: m }, () => Math.floor(random() * n))
      const reference = softmaxCrossEntropyReference(logits, labels, m, n)
      const { loss, gradLogits } = backend.softmaxCrossEntropy(upload(logits, [m, n]), upload(labels, [m]))
      track(loss)
      track(gradLogits)
      expect(loss.shape).toEqual([m])
      expect(gradLogits.shape).toEqual([m, n])
      expectClose('loss', reference.loss, await backend.read(loss), SOFTMAX_LOSS)
      expectClose('gradLogits', reference.gradLogits, await backend.read(gradLogits), SOFTMAX_GRAD)
    })

    it(`optimizers on [${m},${n}] over 3 steps`, async () => {
      const size = m * n
      const param = randomArray(random, size)
      const grads = [0, 1, 2].map(() => randomArray(random, size, -0.5, 0.5))
      const velocity = new Float32Array(size)
      const sgdOptions = { learningRate: 0.05, momentum: 0.9, weightDecay: 0.01 }
      const tParam = upload(param, [m, n])
      const tVelocity = upload(velocity, [m, n])
      const adamParam = Float32Array.from(param)
      const adamM = new Float32Array(size)
      const adamV = new Float32Array(size)
      const tAdamParam = upload(adamParam, [m, n])
      const tAdamM = upload(adamM, [m, n])
      const tAdamV = upload(adamV, [m, n])
      for (const [step, grad] of grads.entries()) {
        const tGrad = upload(grad, [m, n])
        backend.sgdMomentumInPlace(tParam, tGrad, tVelocity, sgdOptions)
        sgdMomentumReference(param, grad, velocity, sgdOptions)
        const adamOptions = { learningRate: 1e-3, weightDecay: 0.01, step: step + 1 }
        backend.adamWInPlace(tAdamParam, tGrad, tAdamM, tAdamV, adamOptions)
        adamWReference(adamParam, grad, adamM, adamV, adamOptions)
      }
      expectClose('sgd param', param, await backend.read(tParam), SGD)
      expectClose('sgd velocity', velocity, await backend.read(tVelocity), SGD)
      expectClose('adamW param', adamParam, await backend.read(tAdamParam), ADAMW)
      expectClose('adamW m', adamM, await backend.read(tAdamM), ADAMW)
      expectClose('adamW v', adamV, await backend.read(tAdamV), ADAMW)
    })
  }

  for (const [length, blockSize] of [
    [1, 1],
    [257, 64],
    [1000, 7],
    [4099, 4096],
    [33 * 1024, 256],
  ] as const) {
    it(`int8 quantize/dequantize of ${length} values in blocks of ${blockSize}`, async () => {
      const x = randomArray(random, length, -3, 3)
      if (length > blockSize) x.fill(0, 0, blockSize) // an all-zero block: scale 0
      const reference = quantizeInt8Reference(x, blockSize)
      const got = await backend.quantizeInt8(upload(x, [length]), blockSize)
      expect(got.length).toBe(length)
      expect(got.blockSize).toBe(blockSize)
      expectClose('scales', reference.scales, got.scales, QUANT_SCALES)
      expectClose('values', reference.values, got.values, QUANT_VALUES)
      const dequantized = track(backend.dequantizeInt8(reference))
      expect(dequantized.shape).toEqual([length])
      expectClose('dequantize', dequantizeInt8Reference(reference), await backend.read(dequantized), DEQUANT)
      // round trip: within half a step of each block's scale
      const roundTrip = await backend.read(track(backend.dequantizeInt8(got)))
      const outside: number[] = []
      for (let i = 0; i < length; i++) {
        const step = got.scales[Math.floor(i / blockSize)]
        if (!(Math.abs(roundTrip[i] - x[i]) <= step * 1.5 + 1e-7)) outside.push(i)
      }
      expect(outside.slice(0, 8)).toEqual([])
    })
  }

  it('handles empty tensors like the reference', async () => {
    const empty = upload(new Float32Array(0), [0, 3])
    expect(await backend.read(track(backend.relu(empty)))).toEqual(new Float32Array(0))
    expect(await backend.read(track(backend.sumRows(empty)))).toEqual(new Float32Array(3))
    expect([...(await backend.read(track(backend.meanRows(empty))))].every(Number.isNaN)).toBe(true)
    expect(await backend.read(track(backend.sum(empty)))).toEqual(Float32Array.of(0))
    expect(Number.isNaN((await backend.read(track(backend.mean(empty))))[0])).toBe(true)
    const product = track(backend.matmul(empty, upload(randomArray(random, 6), [3, 2])))
    expect(product.shape).toEqual([0, 2])
    expect(await backend.read(product)).toEqual(new Float32Array(0))
    const noInner = track(
      backend.matmul(upload(new Float32Array(0), [2, 0]), upload(new Float32Array(0), [0, 3])),
    )
    expect(await backend.read(noInner)).toEqual(new Float32Array(6))
  })

  it('gives NaN loss and gradient for rows with invalid labels', async () => {
    const logits = randomArray(random, 4 * 3)
    const labels = Float32Array.of(0, 3, -1, 1.5)
    const { loss, gradLogits } = backend.softmaxCrossEntropy(upload(logits, [4, 3]), upload(labels, [4]))
    const lossValues = await backend.read(track(loss))
    const grads = await backend.read(track(gradLogits))
    expect(Number.isFinite(lossValues[0])).toBe(true)
    expect([...lossValues.slice(1)].every(Number.isNaN)).toBe(true)
    expect([...grads.slice(3)].every(Number.isNaN)).toBe(true)
  })

  it('keeps the softmax cross-entropy loss exact for huge logits', async () => {
    // rows whose maximum dwarfs log(sum exp): log(sum) + max - logit would round log(sum) away
    const logits = Float32Array.of(1e30, 1e30, 0, -1e30, 30000, 29999, 0, -20000, -1e4, 1e4, 0, 1e4)
    const labels = Float32Array.of(1, 1, 0)
    // float64 oracle: log(sum_j exp(z_j - max)) - (z_label - max)
    const expected = [0, 1, 2].map((row) => {
      const z = [...logits.slice(row * 4, row * 4 + 4)]
      const max = Math.max(...z)
      const sum = z.reduce((total, value) => total + Math.exp(value - max), 0)
      return Math.log(sum) - (z[labels[row]] - max)
    })
    const { loss, gradLogits } = backend.softmaxCrossEntropy(upload(logits, [3, 4]), upload(labels, [3]))
    // log(2), log(1 + e^-1) + 1 and 1e4 + log(2): device log/exp within a few ulps
    expectClose('huge-logit loss', expected, await backend.read(track(loss)), { atol: 1e-6, rtol: 1e-6 })
    // float64 oracle of the gradient (softmax - onehot) / M: finite, and the rows' exact shares
    const expectedGrad = [0, 1, 2].flatMap((row) => {
      const z = [...logits.slice(row * 4, row * 4 + 4)]
      const max = Math.max(...z)
      const sum = z.reduce((total, value) => total + Math.exp(value - max), 0)
      return z.map((value, j) => (Math.exp(value - max) / sum - (j === labels[row] ? 1 : 0)) / 3)
    })
    expectClose('huge-logit gradient', expectedGrad, await backend.read(track(gradLogits)), SOFTMAX_GRAD)
  })

  it('throws ShapeError on mismatched shapes before enqueuing anything', () => {
    const a = upload(new Float32Array(6), [2, 3])
    const b = upload(new Float32Array(8), [2, 4])
    const v = upload(new Float32Array(3), [3])
    const shapeError = { name: 'ShapeError' }
    expect(() => backend.matmul(a, b)).toThrow(ShapeError)
    expect(() => backend.matmul(a, b, { transposeA: true })).not.toThrow()
    expect(() => backend.matmul(a, v)).toThrowError(expect.objectContaining(shapeError))
    expect(() => backend.biasAdd(b, v)).toThrow(ShapeError)
    expect(() => backend.reluBackward(a, b)).toThrow(ShapeError)
    expect(() => backend.axpyInPlace(1, a, b)).toThrow(ShapeError)
    expect(() => backend.softmaxCrossEntropy(a, upload(new Float32Array(3), [3]))).toThrow(ShapeError)
    expect(() => backend.sumRows(v)).toThrow(ShapeError)
    expect(() => backend.upload(new Float32Array(5), [2, 3])).toThrow(ShapeError)
    expect(() => backend.write(a, new Float32Array(5))).toThrow(ShapeError)
    expect(() => backend.sgdMomentumInPlace(a, a, b, { learningRate: 0.1 })).toThrow(ShapeError)
    expect(() => backend.adamWInPlace(a, a, a, b, { learningRate: 0.1, step: 1 })).toThrow(ShapeError)
    expect(() =>
      backend.dequantizeInt8({
        values: new Int8Array(5),
        scales: new Float32Array(1),
        blockSize: 2,
        length: 5,
      }),
    ).toThrow(ShapeError)
  })

  it('refuses a tensor after dispose', () => {
    const a = backend.upload(new Float32Array(4), [2, 2])
    a.dispose()
    a.dispose() // idempotent
    expect(() => backend.relu(a)).toThrow(/dispose/)
  })
})
