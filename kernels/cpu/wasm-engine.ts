// The wasm cpu engine: tfjs-backend-wasm's XNNPACK matmul on every core, for machines where the
// native engine (kernels/native/) cannot be built; attention and its backward are built from the
// same products, each (sequence, head) pair on one thread. The reference ops compute everything else.
//
// The calling thread holds one instance of the package's WebAssembly module (wasm-module.ts) and each
// of threads - 1 worker threads its own (wasm-worker.ts, wasm-pool.ts). A product of at least
// PARALLEL_WORK_MIN multiply-adds (and attention of as much work) is cut into blocks of C (pairs, for
// attention) that the threads claim one at a time through shared memory; smaller ones stay on the
// calling thread, which also computes the blocks of a worker that fails or falls behind. Every element
// of C (every pair) is computed whole by one thread, and its bits do not depend on the blocks nor on
// the thread: the results are the same for every thread count and every run (wasm-engine.test.ts).
// Each module keeps the packing of the blocks of B it multiplied, for a later B with the same bits.
// The workers start in the background at the first product large enough to split: products before
// they are ready (and after all of them failed) run on the calling thread.
import { availableParallelism } from 'node:os'
import { logger } from '@libp2p/logger'
import { matmulReference } from '../reference/index.js'
import type { CpuEngine, CpuOps } from './engine.js'
import {
  compileModule,
  instantiateKernels,
  type MatmulOperands,
  type WasmKernels,
  wholeOf,
} from './wasm-module.js'
import { attentionSplits, PARALLEL_WORK_MIN, splitOf, WasmWorkerPool } from './wasm-pool.js'

export { WasmEngineError } from './wasm-module.js'
export { PARALLEL_WORK_MIN, type WorkerFault } from './wasm-pool.js'

const log = logger('shardnet:kernels:cpu:wasm')

export type EngineLoad = { engine: CpuEngine } | { error: string }

/** the most threads the engine splits a product for */
export const WASM_THREADS_MAX = 64

/** the threads the engine computes on: SHARDNET_CPU_THREADS (as the native engine), else every core */
export function wasmThreads(): number {
  const configured = process.env.SHARDNET_CPU_THREADS
  if (configured !== undefined && configured !== '') {
    const threads = Number(configured)
    if (Number.isInteger(threads) && threads >= 1) return Math.min(threads, WASM_THREADS_MAX)
  }
  return Math.min(availableParallelism(), WASM_THREADS_MAX)
}

/** an engine of its own, with what the tests and benchmarks need beside its ops */
export interface WasmEngineHandle {
  engine: CpuEngine
  /**
   * starts the workers now (the first product of PARALLEL_WORK_MIN multiply-adds or more starts them
   * otherwise) and resolves when every one has started or failed to
   */
  startWorkers(): Promise<void>
  /** how many worker threads answer jobs now */
  readyWorkers(): number
  /**
   * how many products (and attention ops) were split among the threads so far, how many of their
   * blocks workers computed, how many blocks workers failed or were late with (the calling thread
   * computed them), and how many blocks of B the calling thread took from the packings it kept
   */
  stats(): { splitProducts: number; workerBlocks: number; stolenBlocks: number; keptWeightsUsed: number }
  /** for the tests: the next job of worker `index` fails as a crash ('exit') or a hang would */
  injectFault(index: number, fault: import('./wasm-pool.js').WorkerFault): void
  /** stops the workers; the engine computes on the calling thread afterwards */
  close(): Promise<void>
}

/**
 * A wasm engine of its own (its own module and workers) splitting products for `threads` threads,
 * or why it cannot run here. loadWasmEngine gives the process' shared one.
 */
export async function startWasmEngine(threads: number): Promise<WasmEngineHandle | { error: string }> {
  if (!Number.isInteger(threads) || threads < 1 || threads > WASM_THREADS_MAX)
    throw new RangeError(`threads must be an integer in 1..${WASM_THREADS_MAX}, got ${threads}`)
  let compiled: Awaited<ReturnType<typeof compileModule>>
  let kernels: WasmKernels
  try {
    compiled = await compileModule()
    const loaded = await instantiateKernels(compiled, (text) => log('%s', text))
    if ('error' in loaded) return loaded
    kernels = loaded.kernels
  } catch (error) {
    return { error: error instanceof Error ? error.message.split('\n')[0] : String(error) }
  }
  // started by the first product large enough to split: a process that loads the engine only to
  // measure it (the backend probe beside the native engine) starts no threads
  let pool: WasmWorkerPool | undefined
  const startPool = () => {
    if (threads > 1) pool ??= new WasmWorkerPool(compiled, threads - 1)
    return pool
  }
  const local = kernels
  const matmul: CpuOps['matmul'] = (a, b, m, k, n, transposeA = false, transposeB = false) => {
    if (a.length < m * k || b.length < k * n) {
      throw new RangeError(`matmul: a has ${a.length} floats for ${m}x${k}, b ${b.length} for ${k}x${n}`)
    }
    // XNNPACK takes no empty dimension; the product of an empty inner dimension is zeros
    if (m === 0 || n === 0 || k === 0) return new Float32Array(m * n)
    const operands: MatmulOperands = { a, aAt: 0, b, bAt: 0, m, k, n, transposeA, transposeB }
    let split = wholeOf(m)
    if (m * k * n >= PARALLEL_WORK_MIN) {
      split = splitOf(m, k, n, threads)
      const product = startPool()?.matmul(local, operands, split)
      if (product !== undefined) return product
    }
    const c = new Float32Array(m * n)
    let next = 0
    const claim = () => (next < split.count ? next++ : -1)
    if (local.matmulBlocks(operands, split, claim, c, 0, n)) return c
    log('no WebAssembly memory for %dx%dx%d: computing it with the reference matmul', m, k, n)
    return matmulReference(a, b, m, k, n, transposeA, transposeB)
  }
  const ops: Partial<CpuOps> = {
    matmul,
    attention: (qkv, sizes) =>
      (attentionSplits(sizes) ? startPool()?.attention(local, qkv, sizes) : undefined) ??
      local.attention(qkv, sizes),
    attentionBackward: (gradOutput, qkv, output, logSumExp, sizes) =>
      (attentionSplits(sizes)
        ? startPool()?.attentionBackward(local, gradOutput, qkv, output, logSumExp, sizes)
        : undefined) ?? local.attentionBackward(gradOutput, qkv, output, logSumExp, sizes),
  }
  const engine: CpuEngine = Object.freeze({
    name: 'wasm' as const,
    description:
      `tfjs-backend-wasm ${compiled.version} (XNNPACK${compiled.simd ? ', SIMD' : ''}), ` +
      `${threads} thread${threads === 1 ? '' : 's'}`,
    threads,
    ops: Object.freeze(ops),
  })
  return {
    engine,
    startWorkers: async () => {
      await startPool()?.started
    },
    readyWorkers: () => pool?.ready ?? 0,
    stats: () => ({
      splitProducts: pool?.split ?? 0,
      workerBlocks: pool?.workerBlocks ?? 0,
      stolenBlocks: pool?.stolenBlocks ?? 0,
      keptWeightsUsed: local.keptUsed,
    }),
    injectFault: (index, fault) => {
      if (pool === undefined) throw new RangeError('an engine on one thread has no workers')
      pool.injectFault(index, fault)
    },
    close: async () => pool?.close(),
  }
}

let loading: Promise<EngineLoad> | undefined

/**
 * The process' wasm engine on wasmThreads() threads, or why it cannot run here; the module is
 * instantiated once per process (or worker).
 */
export function loadWasmEngine(): Promise<EngineLoad> {
  loading ??= startWasmEngine(wasmThreads()).then(
    (started) => ('error' in started ? started : { engine: started.engine }),
    (error: unknown) => ({ error: error instanceof Error ? error.message.split('\n')[0] : String(error) }),
  )
  return loading
}
