// Proves, by property-based shape fuzzing (fast-check), that the webgpu backend's default matmul,
// bias add and row reductions match the reference for random small shapes and transposes: the
// padding and edge paths of the kernels (dimensions that are not multiples of 4, 8 or the
// workgroup size) are hit in every combination, not just the hand-picked shapes of ops.test.ts.
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { matmulReference, sumRowsReference } from '../../../kernels/reference/index.js'
import { WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { expectClose, openBackend, randomArray, seededRandom } from './helpers.js'

describe('webgpu kernels on fuzzed shapes', () => {
  let backend: WebGpuBackend

  beforeAll(async () => {
    const opened = await openBackend('webgpu')
    if (!(opened instanceof WebGpuBackend)) throw new Error('expected the webgpu backend')
    backend = opened
  })
  afterAll(() => {
    expect(backend.runtime.stats.deviceErrors).toBe(0)
    backend?.destroy()
  })

  it('matmul matches the reference for any shape up to 40 and any transposes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        async (m, k, n, transposeA, transposeB, seed) => {
          const random = seededRandom(seed)
          const a = randomArray(random, m * k)
          const b = randomArray(random, k * n)
          const ta = backend.upload(a, transposeA ? [k, m] : [m, k])
          const tb = backend.upload(b, transposeB ? [n, k] : [k, n])
          const c = backend.matmul(ta, tb, { transposeA, transposeB })
          const got = await backend.read(c)
          for (const tensor of [ta, tb, c]) tensor.dispose()
          const reference = matmulReference(a, b, m, k, n, transposeA, transposeB)
          expectClose(`matmul ${m}x${k}x${n} tA=${transposeA} tB=${transposeB}`, reference, got, {
            atol: 2e-7 * k,
            rtol: 1e-5,
          })
        },
      ),
      { numRuns: 60, seed: 20261123 },
    )
  })

  it('biasAdd and sumRows match the reference for any [M,N] up to 300x70', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer(),
        async (m, n, seed) => {
          const random = seededRandom(seed)
          const x = randomArray(random, m * n)
          const bias = randomArray(random, n)
          const tx = backend.upload(x, [m, n])
          const tb = backend.upload(bias, [n])
          const y = backend.biasAdd(tx, tb)
          const s = backend.sumRows(tx)
          const [gotY, gotS] = [await backend.read(y), await backend.read(s)]
          for (const tensor of [tx, tb, y, s]) tensor.dispose()
          const expectedY = Float32Array.from(x, (value, i) => value + bias[i % n])
          expectClose(`biasAdd [${m},${n}]`, expectedY, gotY, { atol: 1e-7, rtol: 2e-7 })
          expectClose(`sumRows [${m},${n}]`, sumRowsReference(x, m, n), gotS, {
            atol: 1.6e-6 * Math.sqrt(m),
            rtol: 1e-5,
          })
        },
      ),
      { numRuns: 40, seed: 20261123 },
    )
  })
})
