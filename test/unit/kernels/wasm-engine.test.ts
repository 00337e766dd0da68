// The wasm cpu engine (kernels/cpu/wasm-engine.ts): its matmul against the float64 reference for
// every transpose combination on shapes that fit no tile, bit-identical repeats, and that it leaves
// tfjs' process-wide state (backend registry, global backend) and the process' listeners alone.
// The op suites (ops, attention, transformer-ops, ...) also run on it as the 'cpu-wasm' backend.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import '@tensorflow/tfjs-backend-cpu'
import * as tf from '@tensorflow/tfjs-core'
import { afterAll, describe, expect, it, vi } from 'vitest'
import type { CpuEngine } from '../../../kernels/cpu/engine.js'
import { loadCpuEngine } from '../../../kernels/cpu/engines.js'
import { BLOCKS_MAX } from '../../../kernels/cpu/wasm-control.js'
import {
  loadWasmEngine,
  PARALLEL_WORK_MIN,
  startWasmEngine,
  type WasmEngineHandle,
  wasmThreads,
} from '../../../kernels/cpu/wasm-engine.js'
import { attentionSplits, splitOf, WORKER_WAIT_MIN_MS } from '../../../kernels/cpu/wasm-pool.js'
import { createBackend } from '../../../kernels/index.js'
import { attentionBackwardReference, attentionReference } from '../../../kernels/reference/attention.js'
import { matmulReference } from '../../../kernels/reference/index.js'
import { expectClose, randomArray, seededRandom, type Tolerance } from './helpers.js'

/** the op suites' matmul tolerance (ops.test.ts): float32 accumulation over K terms in [-1,1] */
const matmulTolerance = (k: number): Tolerance => ({ atol: 2e-7 * k, rtol: 1e-5 })

/** [M, K, N]: ones, primes and a size past every XNNPACK tile and the transposing copy's 32-block */
const SHAPES: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [1, 37, 1],
  [1, 5, 129],
  [129, 5, 1],
  [3, 2, 7],
  [17, 33, 9],
  [65, 31, 127],
  [127, 257, 63],
  [97, 1031, 35],
]

const FLAGS = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const

const label = (ta: boolean, tb: boolean) => `A${ta ? 'T' : ''}B${tb ? 'T' : ''}`

/** the same floats, bit for bit (so -0 differs from 0 and every NaN payload counts) */
function sameBits(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false
  const a = new Uint32Array(x.buffer, x.byteOffset, x.length)
  const b = new Uint32Array(y.buffer, y.byteOffset, y.length)
  return a.every((bits, i) => bits === b[i])
}

const execFileAsync = promisify(execFile)

const listenerCounts = () => ({
  uncaughtException: process.listeners('uncaughtException').length,
  unhandledRejection: process.listeners('unhandledRejection').length,
})

describe('the wasm cpu engine', () => {
  // before anything loads the engine: what the process and tfjs look like without it
  const listenersBefore = listenerCounts()

  it('loads once, describes itself, leaves process listeners and the tfjs registry alone', async () => {
    await tf.setBackend('cpu')
    const load = await loadWasmEngine()
    if ('error' in load) throw new Error(`the wasm engine did not load: ${load.error}`)
    const { engine } = load
    expect(engine.name).toBe('wasm')
    expect(engine.threads).toBe(wasmThreads())
    expect(engine.description).toMatch(/^tfjs-backend-wasm 4\.\d+\.\d+ \(XNNPACK(, SIMD)?\), \d+ threads?$/)
    expect(engine.description).toContain(`${wasmThreads()} thread`)
    expect(Object.keys(engine.ops).sort()).toEqual(['attention', 'attentionBackward', 'matmul'])
    const again = await loadWasmEngine()
    expect('engine' in again && again.engine).toBe(engine)
    expect(await loadCpuEngine('wasm')).toBe(engine)
    expect(listenerCounts()).toEqual(listenersBefore)
    // no backend named wasm registered with tfjs, and tfjs' global backend unchanged
    expect(tf.findBackendFactory('wasm')).toBeNull()
    expect(tf.getBackend()).toBe('cpu')
  })

  it('a cpu backend on it reports the engine', async () => {
    const backend = await createBackend({ prefer: 'cpu', cpuEngine: 'wasm' })
    expect(backend.kind).toBe('cpu')
    expect(backend.info.cpuEngine).toBe('wasm')
    expect(backend.info.adapterName).toMatch(/tfjs-backend-wasm/)
    backend.destroy()
  })

  it.each(SHAPES)(
    'matmul %ix%ix%i matches the reference with every transpose combination',
    async (m, k, n) => {
      const engine = await wasmEngine()
      const random = seededRandom(m * 1_000_003 + k * 1009 + n)
      const a = randomArray(random, m * k)
      const b = randomArray(random, k * n)
      const aCopy = a.slice()
      const bCopy = b.slice()
      for (const [ta, tb] of FLAGS) {
        const got = matmulOf(engine)(a, b, m, k, n, ta, tb)
        expect(got).toBeInstanceOf(Float32Array)
        expectClose(
          `${m}x${k}x${n} ${label(ta, tb)}`,
          matmulReference(a, b, m, k, n, ta, tb),
          got,
          matmulTolerance(k),
        )
      }
      expect(sameBits(a, aCopy) && sameBits(b, bCopy), 'inputs unchanged').toBe(true)
    },
  )

  it('reads only the first m*k and k*n floats of longer inputs', async () => {
    const matmul = matmulOf(await wasmEngine())
    const random = seededRandom(5)
    const [m, k, n] = [6, 9, 4]
    const a = randomArray(random, m * k + 11)
    const b = randomArray(random, k * n + 3)
    for (const [ta, tb] of FLAGS) {
      const expected = matmulReference(a.subarray(0, m * k), b.subarray(0, k * n), m, k, n, ta, tb)
      expectClose(`long inputs ${label(ta, tb)}`, expected, matmul(a, b, m, k, n, ta, tb), matmulTolerance(k))
    }
  })

  it('empty products: zeros of the right size, or nothing', async () => {
    const matmul = matmulOf(await wasmEngine())
    expect(Array.from(matmul(new Float32Array(0), new Float32Array(0), 2, 0, 3))).toEqual([0, 0, 0, 0, 0, 0])
    expect(matmul(new Float32Array(0), new Float32Array(12), 0, 4, 3).length).toBe(0)
    expect(matmul(new Float32Array(8), new Float32Array(0), 2, 4, 0).length).toBe(0)
  })

  it('inputs shorter than their shape are a RangeError, not a read of stale memory', async () => {
    const matmul = matmulOf(await wasmEngine())
    expect(() => matmul(new Float32Array(5), new Float32Array(6), 2, 3, 2)).toThrow(RangeError)
    expect(() => matmul(new Float32Array(6), new Float32Array(5), 2, 3, 2)).toThrow(RangeError)
  })

  it('repeats are bit-identical, also after other products reused its memory', async () => {
    const matmul = matmulOf(await wasmEngine())
    const random = seededRandom(17)
    const [m, k, n] = [73, 300, 41]
    const a = randomArray(random, m * k)
    const b = randomArray(random, k * n)
    for (const [ta, tb] of FLAGS) {
      const first = matmul(a, b, m, k, n, ta, tb)
      // a larger product in between grows and overwrites the scratch memory
      const other = randomArray(random, 200 * 200)
      const between = matmul(other, other, 200, 200, 200, ta, tb)
      const second = matmul(a, b, m, k, n, ta, tb)
      const third = matmul(a, b, m, k, n, ta, tb)
      expect(sameBits(first, second) && sameBits(second, third), `repeat ${label(ta, tb)}`).toBe(true)
      // results are copies: later products do not change them
      expect(sameBits(between, matmul(other, other, 200, 200, 200, ta, tb)), 'earlier result kept').toBe(true)
    }
  })

  it('a new B with the same shape and the same tensor slot is not served from a stale packing', async () => {
    // the module caches XNNPACK's packed weights per B tensor id: each call must pack its own B
    const matmul = matmulOf(await wasmEngine())
    const random = seededRandom(23)
    const [m, k, n] = [8, 16, 12]
    const a = randomArray(random, m * k)
    for (let round = 0; round < 4; round++) {
      const b = randomArray(random, k * n)
      expectClose(`round ${round}`, matmulReference(a, b, m, k, n), matmul(a, b, m, k, n), matmulTolerance(k))
    }
  })

  // the attention suite (attention.test.ts) checks both ops against a float64 oracle on the cpu-wasm
  // backend; here: the reference ops directly, on both sides of the size below which the reference runs
  it.each([
    { batch: 2, sequence: 8, heads: 2, headWidth: 8 },
    { batch: 2, sequence: 16, heads: 3, headWidth: 8 },
    { batch: 1, sequence: 67, heads: 2, headWidth: 32 },
  ])(
    'attention and its backward at T=$sequence hd=$headWidth match the reference, bit-identical on repeat',
    async ({ batch, sequence, heads, headWidth }) => {
      const { attention, attentionBackward } = (await wasmEngine()).ops
      if (attention === undefined || attentionBackward === undefined) throw new Error('no attention ops')
      const sizes = { batch, sequence, heads, width: heads * headWidth, headWidth }
      const random = seededRandom(sequence * 31 + headWidth)
      const qkv = randomArray(random, batch * sequence * 3 * sizes.width)
      const gradOutput = randomArray(random, batch * sequence * sizes.width)
      const reference = attentionReference(qkv, sizes)
      const got = attention(qkv, sizes)
      expectClose('output', reference.output, got.output, { atol: 2e-6, rtol: 1e-5 })
      expectClose('logSumExp', reference.logSumExp, got.logSumExp, { atol: 4e-6, rtol: 2e-6 })
      const gradReference = attentionBackwardReference(gradOutput, qkv, got.output, got.logSumExp, sizes)
      const grad = attentionBackward(gradOutput, qkv, got.output, got.logSumExp, sizes)
      expectClose('gradQkv', gradReference, grad, { atol: 1e-5, rtol: 1e-4 })
      const again = attention(qkv, sizes)
      expect(sameBits(again.output, got.output) && sameBits(again.logSumExp, got.logSumExp)).toBe(true)
      expect(sameBits(attentionBackward(gradOutput, qkv, got.output, got.logSumExp, sizes), grad)).toBe(true)
    },
  )

  it("tfjs' own backends still work beside it, the wasm one included", async () => {
    const engine = await wasmEngine()
    const random = seededRandom(29)
    const [m, k, n] = [19, 23, 11]
    const a = randomArray(random, m * k)
    const b = randomArray(random, k * n)
    const before = matmulOf(engine)(a, b, m, k, n, false, true)
    const reference = matmulReference(a, b, m, k, n)

    expect(await tf.setBackend('cpu')).toBe(true)
    const onCpu = tf.tidy(() => tf.matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, n])).dataSync())
    expectClose('tfjs cpu', reference, onCpu, matmulTolerance(k))

    // bench/gpt-anchor.ts runs tfjs-backend-wasm and a cpu backend on this engine in one process
    await import('@tensorflow/tfjs-backend-wasm')
    expect(await tf.setBackend('wasm')).toBe(true)
    expect(tf.getBackend()).toBe('wasm')
    const onWasm = tf.tidy(() => tf.matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, n])).dataSync())
    expectClose('tfjs wasm', reference, onWasm, matmulTolerance(k))
    expect(sameBits(matmulOf(engine)(a, b, m, k, n, false, true), before), 'engine unchanged').toBe(true)
    expect(sameBits(matmulOf(engine)(a, b, m, k, n), new Float32Array(onWasm)), 'same XNNPACK product').toBe(
      true,
    )

    expect(await tf.setBackend('cpu')).toBe(true)
    expect(tf.getBackend()).toBe('cpu')
  })
})

describe('the wasm cpu engine where the module cannot load', () => {
  it('answers with the reason instead of throwing, and loadCpuEngine falls back', async () => {
    vi.resetModules()
    vi.doMock('node:fs/promises', () => ({
      readFile: async () => {
        throw new Error('ENOENT: no such file, the wasm binary')
      },
    }))
    try {
      const wasm = await import('../../../kernels/cpu/wasm-engine.js')
      expect(await wasm.loadWasmEngine()).toEqual({ error: 'ENOENT: no such file, the wasm binary' })
      const engines = await import('../../../kernels/cpu/engines.js')
      await expect(engines.loadCpuEngine('wasm')).rejects.toThrow(engines.CpuEngineUnavailableError)
    } finally {
      vi.doUnmock('node:fs/promises')
      vi.resetModules()
    }
  })
})

/** [M, K, N] of at least PARALLEL_WORK_MIN multiply-adds: split by rows, by columns, and awkward sizes */
const SPLIT_SHAPES: readonly (readonly [number, number, number])[] = [
  // blocks of rows on 2 and 3 threads, whole on one
  [1500, 150, 150],
  [2049, 128, 130],
  // B of 330,000 floats: blocks of 112 columns on one thread, 64 on two, 32 on three
  [200, 1100, 300],
  // blocks of 80 columns on one and two threads, 64 on three
  [37, 1500, 613],
]

describe('the wasm cpu engine on several threads', () => {
  const handles: WasmEngineHandle[] = []
  /** an engine of its own on `threads` threads, its workers started */
  async function engineOn(threads: number): Promise<WasmEngineHandle> {
    const started = await startWasmEngine(threads)
    if ('error' in started) throw new Error(`the wasm engine did not load: ${started.error}`)
    handles.push(started)
    await started.startWorkers()
    expect(started.readyWorkers()).toBe(threads - 1)
    expect(started.engine.threads).toBe(threads)
    return started
  }
  afterAll(async () => {
    for (const handle of handles) await handle.close()
  })

  it('splits C into blocks of 16-multiples: columns where there are enough, else its longer side', () => {
    // columns: about 4 a thread, within 2^17 floats of B, at least 64 wide
    expect(splitOf(256, 256, 256, 2)).toEqual({ alongRows: false, step: 64, count: 4 })
    expect(splitOf(1024, 1024, 1024, 2)).toEqual({ alongRows: false, step: 128, count: 8 })
    expect(splitOf(2048, 2048, 2048, 2)).toEqual({ alongRows: false, step: 64, count: 32 })
    expect(splitOf(37, 211, 613, 3)).toEqual({ alongRows: false, step: 64, count: 10 })
    // one thread: columns only where B is larger than 2^17 floats
    expect(splitOf(1024, 1024, 1024, 1)).toEqual({ alongRows: false, step: 128, count: 8 })
    expect(splitOf(2048, 128, 384, 1)).toEqual({ alongRows: true, step: 2048, count: 1 })
    // too few columns for two blocks a thread: rows, each block at least 2^20 multiply-adds
    expect(splitOf(2048, 384, 128, 2)).toEqual({ alongRows: true, step: 256, count: 8 })
    expect(splitOf(1031, 64, 65, 3)).toEqual({ alongRows: true, step: 256, count: 5 })
    expect(splitOf(100, 10, 10, 2)).toEqual({ alongRows: true, step: 10496, count: 1 })
    for (const [m, k, n, threads] of [
      [4096, 4096, 4096, 64],
      [300, 97, 171, 3],
      [64, 33, 2047, 2],
      [100_000, 1, 50, 64],
    ]) {
      const { alongRows, step, count } = splitOf(m, k, n, threads)
      const side = alongRows ? m : n
      expect(step % 16).toBe(0)
      expect(count).toBeLessThanOrEqual(BLOCKS_MAX)
      expect((count - 1) * step < side && side <= count * step).toBe(true)
    }
  })

  it('products split among 1, 2 and 3 threads match the reference and each other bit for bit', async () => {
    const engines = [await engineOn(1), await engineOn(2), await engineOn(3)]
    const shared = await wasmEngine()
    for (const [m, k, n] of SPLIT_SHAPES) {
      expect(m * k * n).toBeGreaterThanOrEqual(PARALLEL_WORK_MIN)
      const random = seededRandom(m * 7 + k * 11 + n)
      const a = randomArray(random, m * k)
      const b = randomArray(random, k * n)
      for (const [ta, tb] of FLAGS) {
        const what = `${m}x${k}x${n} ${label(ta, tb)}`
        const [one, ...others] = engines.map(({ engine }) => matmulOf(engine)(a, b, m, k, n, ta, tb))
        expectClose(what, matmulReference(a, b, m, k, n, ta, tb), one, matmulTolerance(k))
        for (const [i, got] of others.entries())
          expect(sameBits(got, one), `${what} on ${i + 2} threads`).toBe(true)
        const again = matmulOf(engines[2].engine)(a, b, m, k, n, ta, tb)
        expect(sameBits(again, one), `${what} repeated`).toBe(true)
        expect(sameBits(matmulOf(shared)(a, b, m, k, n, ta, tb), one), `${what}, process engine`).toBe(true)
      }
    }
    // the second and third engines split products, and their workers computed blocks of them
    const stats = engines.map((handle) => handle.stats())
    expect(stats[0].splitProducts).toBe(0)
    expect(stats[1].splitProducts).toBeGreaterThan(0)
    expect(stats[2].splitProducts).toBeGreaterThan(0)
    expect(stats[0].workerBlocks).toBe(0)
    expect(stats[1].workerBlocks).toBeGreaterThan(0)
    expect(stats[2].workerBlocks).toBeGreaterThan(0)
  })

  it('attention and its backward split by pairs on 1, 2, 3 threads: same bits, near the oracle', async () => {
    const engines = [await engineOn(1), await engineOn(2), await engineOn(3)]
    // 12 pairs of 2 x 256 x 256 x 32 multiply-adds: 50M, above PARALLEL_WORK_MIN
    const sizes = { batch: 4, sequence: 256, heads: 3, width: 96, headWidth: 32 }
    expect(attentionSplits(sizes)).toBe(true)
    const random = seededRandom(61)
    const qkv = randomArray(random, sizes.batch * sizes.sequence * 3 * sizes.width)
    const gradOutput = randomArray(random, sizes.batch * sizes.sequence * sizes.width)
    const before = engines.map((handle) => handle.stats())
    const forward = engines.map(({ engine }) => attentionOf(engine).attention(qkv, sizes))
    const reference = attentionReference(qkv, sizes)
    expectClose('output', reference.output, forward[0].output, { atol: 2e-6, rtol: 1e-5 })
    expectClose('logSumExp', reference.logSumExp, forward[0].logSumExp, { atol: 4e-6, rtol: 2e-6 })
    const { output, logSumExp } = forward[0]
    const backward = engines.map(({ engine }) =>
      attentionOf(engine).attentionBackward(gradOutput, qkv, output, logSumExp, sizes),
    )
    const gradReference = attentionBackwardReference(gradOutput, qkv, output, logSumExp, sizes)
    expectClose('gradQkv', gradReference, backward[0], { atol: 1e-5, rtol: 1e-4 })
    for (const i of [1, 2]) {
      expect(sameBits(forward[i].output, output), `output on ${i + 1} threads`).toBe(true)
      expect(sameBits(forward[i].logSumExp, logSumExp), `logSumExp on ${i + 1} threads`).toBe(true)
      expect(sameBits(backward[i], backward[0]), `gradQkv on ${i + 1} threads`).toBe(true)
      const stats = engines[i].stats()
      // the forward at least (a late worker keeps the next jobs on the calling thread for a while)
      expect(stats.splitProducts - before[i].splitProducts, `split on ${i + 1} threads`).toBeGreaterThan(0)
      expect(stats.workerBlocks).toBeGreaterThan(before[i].workerBlocks)
    }
    // a worker that exits on a pair it claimed: the calling thread computes it, the same bits
    const { engine, injectFault, readyWorkers } = engines[2]
    injectFault(0, 'exit')
    const began = performance.now()
    for (let run = 0; readyWorkers() === 2 && performance.now() - began < 20_000; run++) {
      const again = attentionOf(engine).attentionBackward(gradOutput, qkv, output, logSumExp, sizes)
      expect(sameBits(again, backward[0]), `backward run ${run}`).toBe(true)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(readyWorkers()).toBe(1)
    expect(sameBits(attentionOf(engine).attention(qkv, sizes).output, output)).toBe(true)
  })

  it('a B multiplied again is served from the packing kept for it, and a changed B never is', async () => {
    const engines = [await engineOn(1), await engineOn(3)]
    let usedBefore = 0
    for (const [m, k, n] of [
      [20, 50, 30],
      [64, 300, 500],
      [700, 160, 90],
      [300, 400, 400],
    ]) {
      const random = seededRandom(m + k + n)
      const a = randomArray(random, m * k)
      for (const [ta, tb] of FLAGS) {
        const b = randomArray(random, k * n)
        const what = `${m}x${k}x${n} ${label(ta, tb)}`
        const [first, ...others] = engines.map(({ engine }) => matmulOf(engine)(a, b, m, k, n, ta, tb))
        expectClose(what, matmulReference(a, b, m, k, n, ta, tb), first, matmulTolerance(k))
        for (const got of others) expect(sameBits(got, first), `${what}: thread counts`).toBe(true)
        for (const { engine } of engines) {
          // the same bits again, from the same array and from a copy of it
          expect(sameBits(matmulOf(engine)(a, b, m, k, n, ta, tb), first), `${what} again`).toBe(true)
          expect(sameBits(matmulOf(engine)(a, b.slice(), m, k, n, ta, tb), first), `${what} copy`).toBe(true)
        }
        // the one-thread engine computes every block itself: its kept packings served both repeats
        const used = engines[0].stats().keptWeightsUsed
        expect(used - usedBefore).toBeGreaterThanOrEqual(2)
        usedBefore = used
        // one float changed in place, the last one a comparison reaches
        b[k * n - 1] += 0.5
        const changed = matmulReference(a, b, m, k, n, ta, tb)
        for (const { engine } of engines) {
          const got = matmulOf(engine)(a, b, m, k, n, ta, tb)
          expectClose(`${what}, B changed`, changed, got, matmulTolerance(k))
          expect(sameBits(got, first), `${what}: not the old product`).toBe(false)
        }
      }
    }
  })

  it.each(['exit', 'hang'] as const)(
    'a worker that %ss on a block it claimed: the calling thread computes it, the same bits, no hang',
    async (fault) => {
      const handle = await engineOn(3)
      const { engine, injectFault, readyWorkers } = handle
      const single = (await engineOn(1)).engine
      // 11 blocks of 96 rows, 7 MFLOP each: the faulty worker wakes in time to claim one
      const [m, k, n] = [1024, 256, 300]
      const random = seededRandom(41)
      const a = randomArray(random, m * k)
      const b = randomArray(random, k * n)
      const expected = matmulOf(single)(a, b, m, k, n)
      injectFault(1, fault)
      // the fault strikes at the worker's next claim (a product may end before that worker claims
      // one); the worker leaves the pool when its exit is heard, or once busy past WORKER_WAIT_MIN_MS
      let slowest = 0
      const began = performance.now()
      for (let product = 0; readyWorkers() === 2 && performance.now() - began < 20_000; product++) {
        const productBegan = performance.now()
        const got = matmulOf(engine)(a, b, m, k, n)
        slowest = Math.max(slowest, performance.now() - productBegan)
        expect(sameBits(got, expected), `product ${product}: the same bits`).toBe(true)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(readyWorkers()).toBe(1)
      expect(handle.stats().stolenBlocks).toBeGreaterThan(0)
      // no product waited for the faulty worker: its block was computed here
      expect(slowest).toBeLessThan(WORKER_WAIT_MIN_MS)
      // later products: the other worker and the calling thread, the same bits
      const later = matmulOf(engine)(b, a, n, k, m, true, true)
      expect(sameBits(later, matmulOf(single)(b, a, n, k, m, true, true))).toBe(true)
    },
  )

  it('after close the workers are gone and products run on the calling thread', async () => {
    const handle = await engineOn(2)
    const [m, k, n] = [512, 256, 300]
    const random = seededRandom(43)
    const a = randomArray(random, m * k)
    const b = randomArray(random, k * n)
    const before = matmulOf(handle.engine)(a, b, m, k, n)
    await handle.close()
    expect(handle.readyWorkers()).toBe(0)
    expect(sameBits(matmulOf(handle.engine)(a, b, m, k, n), before)).toBe(true)
  })

  it('a process that used the workers and never closed them exits on its own', async () => {
    const engineUrl = new URL('../../../kernels/cpu/wasm-engine.ts', import.meta.url).href
    const script = `
      const { startWasmEngine } = await import(${JSON.stringify(engineUrl)})
      const handle = await startWasmEngine(3)
      await handle.startWorkers()
      const a = new Float32Array(512 * 512).fill(1)
      const c = handle.engine.ops.matmul(a, a, 512, 512, 512)
      console.log(handle.readyWorkers(), c[0], c[c.length - 1])
    `
    const began = performance.now()
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        timeout: 30_000,
      },
    )
    expect(stdout.trim()).toBe('2 512 512')
    expect(performance.now() - began).toBeLessThan(30_000)
  })
})

async function wasmEngine(): Promise<CpuEngine> {
  const load = await loadWasmEngine()
  if ('error' in load) throw new Error(`the wasm engine did not load: ${load.error}`)
  return load.engine
}

function attentionOf(engine: CpuEngine): Required<Pick<CpuEngine['ops'], 'attention' | 'attentionBackward'>> {
  const { attention, attentionBackward } = engine.ops
  if (attention === undefined || attentionBackward === undefined) throw new Error('no attention ops')
  return { attention, attentionBackward }
}

function matmulOf(engine: CpuEngine): NonNullable<CpuEngine['ops']['matmul']> {
  const { matmul } = engine.ops
  if (matmul === undefined) throw new Error('the wasm engine has no matmul')
  return matmul
}
