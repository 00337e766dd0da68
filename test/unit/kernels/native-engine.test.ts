// The native cpu engine (kernels/native/) beyond the shared op suites: sizes large enough that every
// op runs on every thread, bit-for-bit agreement with the reference where the contract asks for it
// (int8 quantization, and the optimizers, whose replicas must agree), the same bits run after run and
// for every thread count, and a clear TypeError for arguments the addon cannot take.
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { type CpuOps, REFERENCE_OPS } from '../../../kernels/cpu/engine.js'
import { loadNativeEngine, NATIVE_ADDON_PATH } from '../../../kernels/native/loader.js'
import { expectClose, randomArray, seededRandom } from './helpers.js'

const run = promisify(execFile)
let native: Partial<CpuOps>

beforeAll(() => {
  const load = loadNativeEngine()
  // CI builds the engine (scripts/setup.sh): a missing build is a failure, not a skip
  if ('error' in load) throw new Error(`the native engine did not load: ${load.error}`)
  native = load.engine.ops
})

/** the native op, which must exist */
function op<K extends keyof CpuOps>(name: K): CpuOps[K] {
  const found = native[name]
  if (found === undefined) throw new Error(`the native engine lacks ${name}`)
  return found as CpuOps[K]
}

const random = seededRandom(20261207)

describe('native engine on every thread, against the reference ops', () => {
  it('matmul with every transpose flag at sizes off any block', () => {
    const [m, k, n] = [301, 517, 263]
    const a = randomArray(random, m * k)
    const b = randomArray(random, k * n)
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const expected = REFERENCE_OPS.matmul(a, b, m, k, n, ta, tb)
      expectClose(`matmul ta=${ta} tb=${tb}`, expected, op('matmul')(a, b, m, k, n, ta, tb), {
        atol: 2e-7 * k,
        rtol: 1e-5,
      })
    }
  })

  it('matmul with an empty inner dimension is zeros, and empty outputs are empty', () => {
    expect(Array.from(op('matmul')(new Float32Array(0), new Float32Array(0), 2, 0, 3))).toEqual([
      0, 0, 0, 0, 0, 0,
    ])
    expect(op('matmul')(new Float32Array(0), new Float32Array(12), 0, 4, 3).length).toBe(0)
  })

  it('elementwise ops, reductions, softmax cross-entropy and LayerNorm over 300k elements', () => {
    const [m, d] = [600, 500]
    const x = randomArray(random, m * d, -4, 4)
    const dy = randomArray(random, m * d)
    const bias = randomArray(random, d)
    const gamma = randomArray(random, d)
    const close = { atol: 1e-6, rtol: 1e-5 }
    expectClose('biasAdd', REFERENCE_OPS.biasAdd(x, bias), op('biasAdd')(x, bias), close)
    expectClose('relu', REFERENCE_OPS.relu(x), op('relu')(x), { atol: 0, rtol: 0 })
    expectClose('add', REFERENCE_OPS.add(x, dy), op('add')(x, dy), { atol: 0, rtol: 0 })
    expectClose('gelu', REFERENCE_OPS.gelu(x), op('gelu')(x), close)
    expectClose('geluBackward', REFERENCE_OPS.geluBackward(dy, x), op('geluBackward')(dy, x), close)
    expectClose('sumRows', REFERENCE_OPS.sumRows(x, m, d), op('sumRows')(x, m, d), { atol: 0, rtol: 0 })
    expectClose('meanRows', REFERENCE_OPS.meanRows(x, m, d), op('meanRows')(x, m, d), { atol: 0, rtol: 0 })
    expectClose('sum', REFERENCE_OPS.sum(x), op('sum')(x), { atol: 1e-3, rtol: 1e-6 })
    expectClose('sumSquares', REFERENCE_OPS.sumSquares(x), op('sumSquares')(x), { atol: 0, rtol: 1e-6 })
    const labels = Float32Array.from({ length: m }, (_, i) => (i * 31) % d)
    const ce = REFERENCE_OPS.softmaxCrossEntropy(x, labels, m, d)
    const got = op('softmaxCrossEntropy')(x, labels, m, d)
    expectClose('cross-entropy loss', ce.loss, got.loss, { atol: 2e-6, rtol: 2e-6 })
    expectClose('cross-entropy gradient', ce.gradLogits, got.gradLogits, { atol: 1e-9, rtol: 2e-5 })
    const norm = REFERENCE_OPS.layerNorm(x, gamma, bias, m, d, 1e-5)
    const normGot = op('layerNorm')(x, gamma, bias, m, d, 1e-5)
    expectClose('layerNorm y', norm.y, normGot.y, close)
    expectClose('layerNorm rstd', norm.rstd, normGot.rstd, close)
    const back = REFERENCE_OPS.layerNormBackward(dy, x, gamma, norm.mean, norm.rstd, m, d)
    const backGot = op('layerNormBackward')(dy, x, gamma, norm.mean, norm.rstd, m, d)
    expectClose('layerNorm dx', back.gradInput, backGot.gradInput, { atol: 1e-5, rtol: 1e-4 })
    expectClose('layerNorm dGamma', back.gradGamma, backGot.gradGamma, { atol: 1e-4, rtol: 1e-5 })
    expectClose('layerNorm dBeta', back.gradBeta, backGot.gradBeta, { atol: 0, rtol: 0 })
  })

  it('embedding backward adds repeated ids in order and skips ids outside the table', () => {
    const [rows, width, count] = [97, 130, 4000]
    const ids = Float32Array.from({ length: count }, (_, i) => (i % 11 === 0 ? rows + 3 : (i * 7) % rows))
    ids[5] = 2.5
    const dy = randomArray(random, count * width)
    const expected = REFERENCE_OPS.embeddingBackward(dy, ids, rows, width)
    expectClose('embeddingBackward', expected, op('embeddingBackward')(dy, ids, rows, width), {
      atol: 0,
      rtol: 0,
    })
    const table = randomArray(random, rows * width)
    expectClose(
      'embedding',
      REFERENCE_OPS.embedding(table, ids, rows, width),
      op('embedding')(table, ids, rows, width),
      {
        atol: 0,
        rtol: 0,
      },
    )
  })

  it('attention forward and backward over many heads', () => {
    const sizes = { batch: 3, sequence: 77, heads: 6, width: 96, headWidth: 16 }
    const rows = sizes.batch * sizes.sequence
    const qkv = randomArray(random, rows * 3 * sizes.width, -2, 2)
    const dOut = randomArray(random, rows * sizes.width)
    const expected = REFERENCE_OPS.attention(qkv, sizes)
    const got = op('attention')(qkv, sizes)
    expectClose('attention output', expected.output, got.output, { atol: 2e-6, rtol: 2e-5 })
    expectClose('attention lse', expected.logSumExp, got.logSumExp, { atol: 2e-6, rtol: 2e-6 })
    const gradExpected = REFERENCE_OPS.attentionBackward(
      dOut,
      qkv,
      expected.output,
      expected.logSumExp,
      sizes,
    )
    const gradGot = op('attentionBackward')(dOut, qkv, got.output, got.logSumExp, sizes)
    expectClose('attention dqkv', gradExpected, gradGot, { atol: 2e-5, rtol: 2e-4 })
    const cached = { queries: 5, keys: 64, width: 96, heads: 6, headWidth: 16, offset: 40 }
    const queries = randomArray(random, 5 * 96)
    const keys = randomArray(random, 64 * 96)
    const values = randomArray(random, 64 * 96)
    expectClose(
      'cached attention',
      REFERENCE_OPS.attentionCached(queries, keys, values, cached),
      op('attentionCached')(queries, keys, values, cached),
      { atol: 2e-6, rtol: 2e-5 },
    )
  })
})

describe('native engine agrees with the reference bit for bit where replicas must', () => {
  const length = 200_003
  it('AdamW, with clipping and weight decay, over 5 steps', () => {
    const first = randomArray(random, length)
    const params = [first, Float32Array.from(first)]
    const m = [new Float32Array(length), new Float32Array(length)]
    const v = [new Float32Array(length), new Float32Array(length)]
    for (let step = 1; step <= 5; step++) {
      const grad = randomArray(random, length, -3, 3)
      const options = { learningRate: 3e-3, weightDecay: 0.1, beta2: 0.95, step, gradientScale: 0.37 }
      REFERENCE_OPS.adamW(params[0], grad, m[0], v[0], options)
      op('adamW')(params[1], grad, m[1], v[1], options)
    }
    expect(Buffer.from(params[1].buffer).equals(Buffer.from(params[0].buffer))).toBe(true)
    expect(Buffer.from(v[1].buffer).equals(Buffer.from(v[0].buffer))).toBe(true)
  })

  it('SGD with momentum, axpy and scale', () => {
    const p0 = randomArray(random, length)
    const p1 = Float32Array.from(p0)
    const v0 = new Float32Array(length)
    const v1 = new Float32Array(length)
    for (let step = 0; step < 3; step++) {
      const grad = randomArray(random, length)
      REFERENCE_OPS.sgdMomentum(p0, grad, v0, { learningRate: 0.05, weightDecay: 1e-4 })
      op('sgdMomentum')(p1, grad, v1, { learningRate: 0.05, weightDecay: 1e-4 })
      REFERENCE_OPS.axpy(-0.3, grad, p0)
      op('axpy')(-0.3, grad, p1)
    }
    expect(Buffer.from(p1.buffer).equals(Buffer.from(p0.buffer))).toBe(true)
    expect(
      Buffer.from(op('scale')(p0, 1.7).buffer).equals(Buffer.from(REFERENCE_OPS.scale(p0, 1.7).buffer)),
    ).toBe(true)
  })

  it('int8 quantization and dequantization of a tensor with zero blocks and exact halves', () => {
    const x = randomArray(random, length, -5, 5)
    x.fill(0, 1000, 1128)
    for (let i = 5000; i < 5064; i++) x[i] = (i % 2 === 0 ? 127 : 0.5) * (i % 3 === 0 ? -1 : 1)
    const expected = REFERENCE_OPS.quantizeInt8(x, 64)
    const got = op('quantizeInt8')(x, 64)
    expect(Buffer.from(got.scales.buffer).equals(Buffer.from(expected.scales.buffer))).toBe(true)
    expect(Buffer.from(got.values.buffer).equals(Buffer.from(expected.values.buffer))).toBe(true)
    const back = op('dequantizeInt8')(got)
    expect(Buffer.from(back.buffer).equals(Buffer.from(REFERENCE_OPS.dequantizeInt8(expected).buffer))).toBe(
      true,
    )
  })
})

describe('native engine determinism', () => {
  it('gives the same bits run after run', () => {
    const [m, k, n] = [512, 512, 512]
    const a = randomArray(random, m * k)
    const b = randomArray(random, k * n)
    const first = op('matmul')(a, b, m, k, n)
    for (let round = 0; round < 3; round++) {
      expect(Buffer.from(op('matmul')(a, b, m, k, n).buffer).equals(Buffer.from(first.buffer))).toBe(true)
    }
  })

  it('gives the same bits on 1, 2 and 3 threads', async () => {
    const script = fileURLToPath(new URL('./fixtures/native-digest.ts', import.meta.url))
    const outputs = await Promise.all(
      [1, 2, 3].map(async (threads) => {
        const { stdout } = await run(process.execPath, ['--import', 'tsx', script], {
          timeout: 60_000,
          env: { ...process.env, SHARDNET_CPU_THREADS: String(threads) },
        })
        return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as {
          threads: number
          digests: Record<string, string>
        }
      }),
    )
    expect(outputs.map((output) => output.threads)).toEqual([1, 2, 3])
    expect(Object.keys(outputs[0].digests).length).toBe(12)
    expect(outputs[1].digests).toEqual(outputs[0].digests)
    expect(outputs[2].digests).toEqual(outputs[0].digests)
  })
})

describe('native addon refuses arguments it cannot take', () => {
  it('throws a TypeError for wrong types, counts and lengths instead of crashing', () => {
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as Record<
      string,
      (...args: unknown[]) => unknown
    >
    const a = new Float32Array(6)
    expect(() => addon.matmul(a, a, a, 2, 3, 2, false, false)).toThrow(TypeError)
    expect(() => addon.matmul(new Float64Array(6), a, a, 2, 3, 2, false, false)).toThrow(/Float32Array/)
    expect(() => addon.matmul(a, a, a, -1, 3, 2, false, false)).toThrow(/non-negative/)
    expect(() => addon.relu(a)).toThrow(/number of arguments/)
    expect(() => addon.quantizeInt8(a, new Uint8Array(6), new Float32Array(1), 6)).toThrow(/Int8Array/)
    expect(() => addon.attention(a, a, a, 1, 1, 0, 2)).toThrow(TypeError)
    expect(() => addon.setThreads(0)).toThrow(TypeError)
  })
})
