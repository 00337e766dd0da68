// Proves every labelled WGSL matmul version (naive, tiled, register-blocked and packed-subgroup
// with their default tunings, tiled-register-blocked) matches the reference on awkward shapes
// (edges of every tile, K not a multiple of the subgroup size), on shapes every tile divides, and
// on the MLP's training shape, with every transpose combination, and at 1024x1024x1024, on the
// real Dawn device; the other tunings the benchmark times are checked untransposed. Also checks
// which version the backend picks, and that a device without the subgroups feature falls back to
// register-blocked and refuses packed-subgroup with a named error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MATMUL_VERSIONS } from '../../../kernels/index.js'
import { matmulReference } from '../../../kernels/reference/index.js'
import { acquireDawnDevice } from '../../../kernels/runtime.js'
import { chooseMatmulVersion, WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { PACKED_SUBGROUP_TUNINGS, REGISTER_BLOCKED_TUNINGS } from '../../../kernels/wgsl/matmul.js'
import { expectClose, openBackend, randomArray, seededRandom, type Tolerance } from './helpers.js'

/**
 * 1024^3 on lavapipe: a few seconds per kernel on an idle 2-core machine, but the naive and tiled
 * kernels take 10-20 s each when other processes load it (measured here at load average 13-30).
 */
const SLOW_TEST_TIMEOUT_MS = 300_000

/** float32 accumulation over K terms in [-1,1] against a float64 reference */
const matmulTolerance = (k: number): Tolerance => ({ atol: 2e-7 * k, rtol: 1e-5 })

const SHAPES: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [1, 257, 1],
  [3, 5, 7],
  [127, 65, 33],
  [33, 127, 65],
  [17, 64, 36],
  // every tile divides: 48 rows (4, 8, 12, 16), K 64 (4, 8), 64 columns (4, 32)
  [48, 64, 64],
  // the MLP's first layer: a batch of 64 images times 784 inputs, 256 units
  [64, 784, 256],
]

const TRANSPOSES = [
  { transposeA: false, transposeB: false },
  { transposeA: true, transposeB: false },
  { transposeA: false, transposeB: true },
  { transposeA: true, transposeB: true },
] as const

const label = (t: { transposeA: boolean; transposeB: boolean }) =>
  `A${t.transposeA ? 'T' : ''}B${t.transposeB ? 'T' : ''}`

describe('WGSL matmul versions match the reference', () => {
  let backend: WebGpuBackend
  const random = seededRandom(7)

  beforeAll(async () => {
    const opened = await openBackend('webgpu')
    if (!(opened instanceof WebGpuBackend)) throw new Error('expected the webgpu backend')
    backend = opened
  })
  afterAll(() => {
    expect(backend.runtime.stats.deviceErrors).toBe(0)
    backend?.destroy()
  })

  /** stores a row-major [rows, columns] matrix transposed, as [columns, rows] */
  function transposed(data: Float32Array, rows: number, columns: number): Float32Array {
    const out = new Float32Array(data.length)
    for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) out[c * rows + r] = data[r * columns + c]
    return out
  }

  /**
   * One logical op(A) [M,K] and op(B) [K,N] and one reference product; each transpose
   * combination stores the operands transposed as needed, so all must give the same C.
   */
  async function check(
    m: number,
    k: number,
    n: number,
    run: (
      a: Float32Array,
      b: Float32Array,
      transposes: (typeof TRANSPOSES)[number],
    ) => Promise<[string, Float32Array][]>,
    transposes: readonly (typeof TRANSPOSES)[number][] = TRANSPOSES,
  ) {
    const a = randomArray(random, m * k)
    const b = randomArray(random, k * n)
    const reference = matmulReference(a, b, m, k, n)
    for (const t of transposes) {
      const storedA = t.transposeA ? transposed(a, m, k) : a
      const storedB = t.transposeB ? transposed(b, k, n) : b
      for (const [name, got] of await run(storedA, storedB, t)) {
        expectClose(`${name} ${m}x${k}x${n} ${label(t)}`, reference, got, matmulTolerance(k))
      }
    }
  }

  const runVersions =
    (
      m: number,
      k: number,
      n: number,
      versions: readonly (typeof MATMUL_VERSIONS)[number][],
      tunings = true,
    ) =>
    async (a: Float32Array, b: Float32Array, t: (typeof TRANSPOSES)[number]) => {
      const ta = backend.upload(a, t.transposeA ? [k, m] : [m, k])
      const tb = backend.upload(b, t.transposeB ? [n, k] : [k, n])
      const results: [string, Float32Array][] = []
      for (const version of versions) {
        const c = backend.matmulWith(version, ta, tb, t)
        results.push([version, await backend.read(c)])
        c.dispose()
      }
      // the other tunings once per shape, untransposed: each costs a fresh LLVM compile on lavapipe
      if (tunings && !t.transposeA && !t.transposeB) {
        for (const [name, tuning] of Object.entries(REGISTER_BLOCKED_TUNINGS)) {
          const c = backend.matmulWith('register-blocked', ta, tb, t, tuning)
          results.push([`register-blocked ${name}`, await backend.read(c)])
          c.dispose()
        }
        for (const [name, tuning] of Object.entries(PACKED_SUBGROUP_TUNINGS)) {
          const c = backend.matmulWith('packed-subgroup', ta, tb, t, tuning)
          results.push([`packed-subgroup ${name}`, await backend.read(c)])
          c.dispose()
        }
      }
      ta.dispose()
      tb.dispose()
      return results
    }

  it('picks packed-subgroup on a fallback adapter with fixed-size subgroups (lavapipe: 8 lanes)', () => {
    expect(chooseMatmulVersion(true, 8)).toBe('packed-subgroup')
    expect(chooseMatmulVersion(true, undefined)).toBe('register-blocked')
    expect(chooseMatmulVersion(false, 8)).toBe('tiled-register-blocked')
    const { isFallbackAdapter, fixedSubgroupSize } = backend.runtime.description
    expect(backend.matmulVersion).toBe(chooseMatmulVersion(isFallbackAdapter, fixedSubgroupSize))
    if (/llvmpipe/.test(backend.info.adapterName)) {
      expect(fixedSubgroupSize).toBe(8)
      expect(backend.matmulVersion).toBe('packed-subgroup')
    }
  })

  it('without the subgroups feature: register-blocked, and packed-subgroup is refused by name', async () => {
    // the process's Dawn instance; the device acquireDawnDevice made (with subgroups) is not needed
    const acquired = await acquireDawnDevice()
    acquired.device.destroy()
    const gpu = acquired.gpu
    const adapter = await gpu.requestAdapter()
    if (adapter === null) throw new Error('no adapter')
    const device = await adapter.requestDevice()
    const plain = new WebGpuBackend({ gpu, adapter, device })
    try {
      expect(plain.runtime.description.fixedSubgroupSize).toBeUndefined()
      expect(plain.matmulVersion).toBe(
        plain.info.isFallbackAdapter ? 'register-blocked' : 'tiled-register-blocked',
      )
      const a = plain.upload(new Float32Array([1, 2, 3, 4]), [2, 2])
      let caught: unknown
      try {
        plain.matmulWith('packed-subgroup', a, a)
      } catch (error) {
        caught = error
      }
      expect((caught as Error | undefined)?.name).toBe('MatmulVersionUnsupportedError')
      const c = plain.matmul(a, a)
      expect([...(await plain.read(c))]).toEqual([7, 10, 15, 22])
    } finally {
      plain.destroy()
    }
  })

  for (const [m, k, n] of SHAPES) {
    it(`${m}x${k}x${n}: every version and tuning, every transpose combination`, async () => {
      await check(m, k, n, runVersions(m, k, n, MATMUL_VERSIONS))
    })
  }

  it(
    '1024x1024x1024: the default kernel with every transpose combination',
    async () => {
      await check(1024, 1024, 1024, runVersions(1024, 1024, 1024, [backend.matmulVersion], false))
    },
    SLOW_TEST_TIMEOUT_MS,
  )

  it(
    '1024x1024x1024: every version and tuning once',
    async () => {
      await check(1024, 1024, 1024, runVersions(1024, 1024, 1024, MATMUL_VERSIONS), [TRANSPOSES[0]])
    },
    SLOW_TEST_TIMEOUT_MS,
  )
})
