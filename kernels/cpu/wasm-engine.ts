// The wasm cpu engine: tfjs-backend-wasm's XNNPACK matmul on one thread, for machines where the
// native engine (kernels/native/) cannot be built; attention and its backward are built from the
// same products. The reference ops compute everything else.
//
// It instantiates its own copy of tfjs-backend-wasm's WebAssembly module (the Emscripten factory in
// wasm-out/, with the SIMD binary where this runtime validates it) and calls the module's C entry
// points directly: tfjs-core's engine, its global backend registry and its kernel registry are never
// touched, so code in the same process that uses tfjs with any backend (bench/gpt-anchor.ts,
// test/unit/models/gpt-tfjs.test.ts) sees nothing of it. The factory adds process-wide
// 'uncaughtException' and 'unhandledRejection' listeners that rethrow; they are removed as soon as
// the module exists.
//
// matmul copies A and B into scratch regions of the module's heap (transposing on the way where the
// op transposes: the module's XNNPACK path takes only untransposed [M,K] x [K,N], and its own
// transposed path is a scalar loop), registers them as tensors, calls BatchMatMul, and copies C out.
// Tensor ids are fresh on every call, and disposing B's id drops the XNNPACK operator (packed
// weights) the module caches per B id, so every call packs its B afresh (as tfjs does for every new
// B tensor). The copies in and out cost about 8% of a 256^3 product and 3% of a 1024^3 one; the
// scratch regions keep the size of the largest operands seen so far.
import { createRequire } from 'node:module'
import { logger } from '@libp2p/logger'
import type { AttentionSizes } from '../ops/transformer-shapes.js'
import { attentionBackwardReference, attentionReference } from '../reference/attention.js'
import { matmulReference } from '../reference/index.js'
import type { CpuEngine, CpuOps } from './engine.js'

const log = logger('shardnet:kernels:cpu:wasm')

export type EngineLoad = { engine: CpuEngine } | { error: string }

/** a failure inside the WebAssembly module during an op (it reported one on its error stream) */
export class WasmEngineError extends Error {
  static override name = 'WasmEngineError'
  constructor(message: string) {
    super(message)
    this.name = 'WasmEngineError'
  }
}

/** the part of the Emscripten module that the engine uses (pointers are byte offsets into the heap) */
interface WasmModule {
  HEAPF32: Float32Array
  HEAP32: Int32Array
  _malloc(bytes: number): number
  _free(pointer: number): void
  _init_with_threads_count(threads: number): void
  _get_threads_count(): number
  _register_tensor(id: number, size: number, pointer: number): void
  _dispose_data(id: number): void
  _BatchMatMul(
    aId: number,
    aShape: number,
    aRank: number,
    bId: number,
    bShape: number,
    bRank: number,
    transposeA: number,
    transposeB: number,
    outId: number,
  ): void
}

interface ModuleOptions {
  wasmBinary: Uint8Array
  locateFile: (path: string, prefix: string) => string
  print: (text: string) => void
  printErr: (text: string) => void
}

type ModuleFactory = (options: ModuleOptions) => Promise<WasmModule>

/**
 * Attention below these sizes stays with the reference: per (sequence, head) the module's products
 * cost a few microseconds each whatever their size, which the reference's float64 loops beat on
 * [T, T] blocks of under ATTENTION_WORK_MIN = T*T*hd multiply-adds or heads narrower than
 * ATTENTION_HEAD_WIDTH_MIN. Measured forward and backward: even at T=8 hd=8 and T=16 hd=4, the
 * reference faster at T=33 hd=1, the module 1.4x at T=16 hd=8 and 5x to 9x at T=128..1024 hd=32..64.
 */
const ATTENTION_WORK_MIN = 1024
const ATTENTION_HEAD_WIDTH_MIN = 4
/**
 * The module holds whole [T, T] blocks (two in the backward) and its heap never shrinks: longer
 * sequences than this (T = 4096) stay with the reference, which needs O(T) memory.
 */
const ATTENTION_SCORES_MAX = 4096 * 4096

/** whether attention of these sizes runs on the module (else on the reference) */
function attentionOnWasm({ sequence, headWidth }: AttentionSizes): boolean {
  return (
    headWidth >= ATTENTION_HEAD_WIDTH_MIN &&
    sequence * sequence * headWidth >= ATTENTION_WORK_MIN &&
    sequence * sequence <= ATTENTION_SCORES_MAX
  )
}

/** floats per side of the blocks a transposing copy moves (two 32x32 float blocks stay in L1) */
const TRANSPOSE_BLOCK = 32

/** into[offset + r*cols + c] = source[c*rows + r]: the [cols, rows] matrix `source` transposed */
function copyTransposed(
  source: Float32Array,
  rows: number,
  cols: number,
  into: Float32Array,
  offset: number,
) {
  for (let r0 = 0; r0 < rows; r0 += TRANSPOSE_BLOCK) {
    const r1 = Math.min(r0 + TRANSPOSE_BLOCK, rows)
    for (let c0 = 0; c0 < cols; c0 += TRANSPOSE_BLOCK) {
      const c1 = Math.min(c0 + TRANSPOSE_BLOCK, cols)
      for (let r = r0; r < r1; r++) {
        const to = offset + r * cols
        for (let c = c0; c < c1; c++) into[to + c] = source[c * rows + r]
      }
    }
  }
}

/** the largest scratch region: the module's heap is 32-bit */
const REGION_BYTES_MAX = 2 ** 32 - 2 ** 16

/** A scratch region of the module's heap that grows to the largest size asked for. */
class Region {
  pointer = 0
  floats = 0
  constructor(private readonly module: WasmModule) {}

  /** the region's float offset into HEAPF32, holding at least `floats` floats; -1 when out of memory */
  reserve(floats: number): number {
    // malloc takes a 32-bit size: a larger one would wrap to a small allocation
    if (floats * 4 > REGION_BYTES_MAX) return -1
    if (floats > this.floats) {
      if (this.pointer !== 0) this.module._free(this.pointer)
      // `>>> 0`: malloc returns a signed int32 and the heap may pass 2 GiB
      this.pointer = this.module._malloc(floats * 4) >>> 0
      this.floats = this.pointer === 0 ? 0 : floats
      if (this.pointer === 0) return -1
    }
    return this.pointer / 4
  }
}

/** The ops over one instance of the module. */
class WasmKernels {
  readonly #module: WasmModule
  /** 6 int32: A's shape [1, M, K] then B's [1, K, N] */
  readonly #shapes: number
  #nextId = 1
  /** what the module wrote to its error stream during the current call */
  #errors: string[] = []
  readonly #regions = new Map<string, Region>()

  constructor(module: WasmModule) {
    this.#module = module
    this.#shapes = module._malloc(6 * 4) >>> 0
    if (this.#shapes === 0) throw new WasmEngineError('out of WebAssembly memory for 6 ints')
  }

  /** the module's error stream lands here */
  reportError(text: string): void {
    this.#errors.push(text)
  }

  /**
   * Float offsets into HEAPF32 of scratch regions of the given sizes (named, reused across calls),
   * or undefined when the heap cannot hold them. Reserving may move earlier regions: reserve every
   * region an op needs first, then fill them, and read HEAPF32 afresh after reserving.
   */
  #reserve(sizes: Record<string, number>): Record<string, number> | undefined {
    const offsets: Record<string, number> = {}
    for (const [name, floats] of Object.entries(sizes)) {
      let region = this.#regions.get(name)
      if (region === undefined) {
        region = new Region(this.#module)
        this.#regions.set(name, region)
      }
      const at = region.reserve(floats)
      if (at < 0) return undefined
      offsets[name] = at
    }
    return offsets
  }

  /**
   * C = A B on the heap: A [m, k] at float offset aAt, B [k, n] at bAt, C [m, n] at cAt, all
   * row-major and untransposed (XNNPACK's fully connected operator; B is packed afresh, and its
   * cached operator dropped when its tensor id is disposed). m, k, n > 0. May grow the heap.
   */
  #product(aAt: number, bAt: number, cAt: number, m: number, k: number, n: number): void {
    const module = this.#module
    const shapes = module.HEAP32
    const s = this.#shapes / 4
    shapes[s] = 1
    shapes[s + 1] = m
    shapes[s + 2] = k
    shapes[s + 3] = 1
    shapes[s + 4] = k
    shapes[s + 5] = n
    const aId = this.#nextId++
    const bId = this.#nextId++
    const cId = this.#nextId++
    module._register_tensor(aId, m * k, aAt * 4)
    module._register_tensor(bId, k * n, bAt * 4)
    module._register_tensor(cId, m * n, cAt * 4)
    this.#errors = []
    try {
      module._BatchMatMul(aId, this.#shapes, 3, bId, this.#shapes + 12, 3, 0, 0, cId)
    } finally {
      module._dispose_data(aId)
      module._dispose_data(bId)
      module._dispose_data(cId)
    }
    if (this.#errors.length > 0)
      throw new WasmEngineError(`matmul ${m}x${k}x${n}: ${this.#errors.join('; ')}`)
  }

  matmul(
    a: Float32Array,
    b: Float32Array,
    m: number,
    k: number,
    n: number,
    transposeA = false,
    transposeB = false,
  ): Float32Array {
    if (a.length < m * k || b.length < k * n) {
      throw new RangeError(`matmul: a has ${a.length} floats for ${m}x${k}, b ${b.length} for ${k}x${n}`)
    }
    // XNNPACK takes no empty dimension; the product of an empty inner dimension is zeros
    if (m === 0 || n === 0 || k === 0) return new Float32Array(m * n)
    const at = this.#reserve({ a: m * k, b: k * n, c: m * n })
    if (at === undefined) {
      log('no WebAssembly memory for %dx%dx%d: computing it with the reference matmul', m, k, n)
      return matmulReference(a, b, m, k, n, transposeA, transposeB)
    }
    const heap = this.#module.HEAPF32
    if (transposeA) copyTransposed(a, m, k, heap, at.a)
    else heap.set(a.length === m * k ? a : a.subarray(0, m * k), at.a)
    if (transposeB) copyTransposed(b, k, n, heap, at.b)
    else heap.set(b.length === k * n ? b : b.subarray(0, k * n), at.b)
    this.#product(at.a, at.b, at.c, m, k, n)
    // the call may have grown the heap (XNNPACK's packed weights): read the view again
    return this.#module.HEAPF32.slice(at.c, at.c + m * n)
  }

  /**
   * Per (sequence, head): S = Q K^T and O = P V as XNNPACK products over the whole [T, T] block
   * (the masked half of P is zeros), the causal softmax in float64 in between.
   */
  attention(qkv: Float32Array, sizes: AttentionSizes): { output: Float32Array; logSumExp: Float32Array } {
    const { batch, sequence: T, heads, width: D, headWidth: hd } = sizes
    const output = new Float32Array(batch * T * D)
    const logSumExp = new Float32Array(batch * heads * T)
    if (output.length === 0) return { output, logSumExp }
    if (!attentionOnWasm(sizes)) return attentionReference(qkv, sizes)
    const at = this.#reserve({ q: T * hd, kt: hd * T, v: T * hd, s: T * T, o: T * hd })
    if (at === undefined) return attentionReference(qkv, sizes)
    const scale = 1 / Math.sqrt(hd)
    const stride = 3 * D
    const row = new Float64Array(T)
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        let heap = this.#module.HEAPF32
        const base = b * T * stride + h * hd
        for (let t = 0; t < T; t++) {
          const from = base + t * stride
          for (let c = 0; c < hd; c++) {
            heap[at.q + t * hd + c] = qkv[from + c]
            heap[at.kt + c * T + t] = qkv[from + D + c]
            heap[at.v + t * hd + c] = qkv[from + 2 * D + c]
          }
        }
        this.#product(at.q, at.kt, at.s, T, hd, T)
        heap = this.#module.HEAPF32
        const lseBase = (b * heads + h) * T
        for (let i = 0; i < T; i++) {
          const s = at.s + i * T
          let max = Number.NEGATIVE_INFINITY
          for (let j = 0; j <= i; j++) {
            const score = heap[s + j] * scale
            row[j] = score
            if (score > max) max = score
          }
          let sum = 0
          for (let j = 0; j <= i; j++) {
            const p = Math.exp(row[j] - max)
            row[j] = p
            sum += p
          }
          for (let j = 0; j <= i; j++) heap[s + j] = row[j] / sum
          heap.fill(0, s + i + 1, s + T)
          logSumExp[lseBase + i] = max + Math.log(sum)
        }
        this.#product(at.s, at.v, at.o, T, T, hd)
        heap = this.#module.HEAPF32
        for (let t = 0; t < T; t++) {
          const to = (b * T + t) * D + h * hd
          for (let c = 0; c < hd; c++) output[to + c] = heap[at.o + t * hd + c]
        }
      }
    }
    return { output, logSumExp }
  }

  /**
   * Per (sequence, head), with P = exp(S / sqrt(hd) - lse) recomputed from S = Q K^T:
   * dV^T = dO^T P, dP = dO V^T, dS = P * (dP - rowsum(dO * O)) / sqrt(hd), dQ = dS K,
   * dK^T = Q^T dS: five XNNPACK products, the transposed ones taken from transposed copies of the
   * [T, hd] operands so that no [T, T] matrix is transposed.
   */
  attentionBackward(
    gradOutput: Float32Array,
    qkv: Float32Array,
    output: Float32Array,
    logSumExp: Float32Array,
    sizes: AttentionSizes,
  ): Float32Array {
    const { batch, sequence: T, heads, width: D, headWidth: hd } = sizes
    const gradQkv = new Float32Array(batch * T * 3 * D)
    if (gradQkv.length === 0) return gradQkv
    if (!attentionOnWasm(sizes)) return attentionBackwardReference(gradOutput, qkv, output, logSumExp, sizes)
    const at = this.#reserve({
      q: T * hd,
      qt: hd * T,
      k: T * hd,
      kt: hd * T,
      vt: hd * T,
      dO: T * hd,
      dOt: hd * T,
      s: T * T,
      dp: T * T,
      dq: T * hd,
      dkt: hd * T,
      dvt: hd * T,
    })
    if (at === undefined) return attentionBackwardReference(gradOutput, qkv, output, logSumExp, sizes)
    const scale = 1 / Math.sqrt(hd)
    const stride = 3 * D
    const delta = new Float64Array(T)
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        let heap = this.#module.HEAPF32
        for (let t = 0; t < T; t++) {
          const from = (b * T + t) * stride + h * hd
          const fromRow = (b * T + t) * D + h * hd
          let dot = 0
          for (let c = 0; c < hd; c++) {
            const q = qkv[from + c]
            const k = qkv[from + D + c]
            const dO = gradOutput[fromRow + c]
            heap[at.q + t * hd + c] = q
            heap[at.qt + c * T + t] = q
            heap[at.k + t * hd + c] = k
            heap[at.kt + c * T + t] = k
            heap[at.vt + c * T + t] = qkv[from + 2 * D + c]
            heap[at.dO + t * hd + c] = dO
            heap[at.dOt + c * T + t] = dO
            dot += dO * output[fromRow + c]
          }
          delta[t] = dot
        }
        this.#product(at.q, at.kt, at.s, T, hd, T)
        heap = this.#module.HEAPF32
        const lseBase = (b * heads + h) * T
        for (let i = 0; i < T; i++) {
          const s = at.s + i * T
          const lse = logSumExp[lseBase + i]
          for (let j = 0; j <= i; j++) heap[s + j] = Math.exp(heap[s + j] * scale - lse)
          heap.fill(0, s + i + 1, s + T)
        }
        this.#product(at.dOt, at.s, at.dvt, hd, T, T)
        this.#product(at.dO, at.vt, at.dp, T, hd, T)
        heap = this.#module.HEAPF32
        for (let i = 0; i < T; i++) {
          const s = at.s + i * T
          const dp = at.dp + i * T
          const d = delta[i]
          for (let j = 0; j <= i; j++) heap[dp + j] = heap[s + j] * (heap[dp + j] - d) * scale
          heap.fill(0, dp + i + 1, dp + T)
        }
        this.#product(at.dp, at.k, at.dq, T, T, hd)
        this.#product(at.qt, at.dp, at.dkt, hd, T, T)
        heap = this.#module.HEAPF32
        for (let t = 0; t < T; t++) {
          const to = (b * T + t) * stride + h * hd
          for (let c = 0; c < hd; c++) {
            gradQkv[to + c] = heap[at.dq + t * hd + c]
            gradQkv[to + D + c] = heap[at.dkt + c * T + t]
            gradQkv[to + 2 * D + c] = heap[at.dvt + c * T + t]
          }
        }
      }
    }
    return gradQkv
  }
}

/** the package's files, resolved from here */
function packageFiles(): { factory: string; simd: string; plain: string; version: string } {
  const require = createRequire(import.meta.url)
  const factory = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js')
  const folder = factory.slice(0, factory.lastIndexOf('/') + 1)
  const { version } = require('@tensorflow/tfjs-backend-wasm/package.json') as { version: string }
  return {
    factory,
    simd: `${folder}tfjs-backend-wasm-simd.wasm`,
    plain: `${folder}tfjs-backend-wasm.wasm`,
    version,
  }
}

/** the runtime's WebAssembly object (the compiler's libraries here do not declare it) */
const webAssembly = (globalThis as unknown as { WebAssembly: { validate(bytes: Uint8Array): boolean } })
  .WebAssembly

/** the events the Emscripten factory hooks process-wide */
type HookedEvent = 'uncaughtException' | 'unhandledRejection'
const HOOKED_EVENTS: readonly HookedEvent[] = ['uncaughtException', 'unhandledRejection']
type Listener = (...args: unknown[]) => void
const listenersOf = (event: HookedEvent): Listener[] =>
  process.listeners(event as 'uncaughtException') as Listener[]

async function instantiate(): Promise<EngineLoad> {
  const { readFile } = await import('node:fs/promises')
  const files = packageFiles()
  const require = createRequire(import.meta.url)
  const factory = require(files.factory) as ModuleFactory
  let binary = new Uint8Array(await readFile(files.simd))
  const simd = webAssembly.validate(binary)
  if (!simd) binary = new Uint8Array(await readFile(files.plain))

  let kernels: WasmKernels | undefined
  const early: string[] = []
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(listenersOf(event))]))
  const removeAddedListeners = () => {
    for (const event of HOOKED_EVENTS) {
      const known = before.get(event) ?? new Set()
      for (const listener of listenersOf(event))
        if (!known.has(listener)) process.removeListener(event, listener)
    }
  }
  let module: WasmModule
  try {
    const ready = factory({
      wasmBinary: binary,
      locateFile: (path, prefix) => prefix + path,
      print: (text) => log('%s', text),
      printErr: (text) => {
        log('%s', text)
        if (kernels === undefined) early.push(text)
        else kernels.reportError(text)
      },
    })
    removeAddedListeners()
    module = await ready
  } finally {
    removeAddedListeners()
  }
  if (early.length > 0) return { error: `the module reported: ${early.join('; ')}` }
  module._init_with_threads_count(1)
  const threads = module._get_threads_count()
  kernels = new WasmKernels(module)

  // a product checked against the reference before the engine is offered, every transpose
  const [m, k, n] = [5, 7, 3]
  const a = Float32Array.from({ length: m * k }, (_, i) => ((i * 37) % 11) - 5)
  const b = Float32Array.from({ length: k * n }, (_, i) => ((i * 23) % 7) - 3)
  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    const expected = matmulReference(a, b, m, k, n, ta, tb)
    const got = kernels.matmul(a, b, m, k, n, ta, tb)
    // small integers: every float32 sum is exact
    if (got.some((value, i) => value !== expected[i])) {
      return { error: `its matmul (transposeA ${ta}, transposeB ${tb}) disagrees with the reference` }
    }
  }

  const engineKernels = kernels
  const ops: Partial<CpuOps> = {
    matmul: (a, b, m, k, n, transposeA = false, transposeB = false) =>
      engineKernels.matmul(a, b, m, k, n, transposeA, transposeB),
    attention: (qkv, sizes) => engineKernels.attention(qkv, sizes),
    attentionBackward: (gradOutput, qkv, output, logSumExp, sizes) =>
      engineKernels.attentionBackward(gradOutput, qkv, output, logSumExp, sizes),
  }
  return {
    engine: Object.freeze({
      name: 'wasm' as const,
      description: `tfjs-backend-wasm ${files.version} (XNNPACK${simd ? ', SIMD' : ''}), ${threads} thread${
        threads === 1 ? '' : 's'
      }`,
      threads,
      ops: Object.freeze(ops),
    }),
  }
}

let loading: Promise<EngineLoad> | undefined

/** The wasm engine, or why it cannot run here; the module is instantiated once per process (or worker). */
export function loadWasmEngine(): Promise<EngineLoad> {
  loading ??= instantiate().catch((error: unknown) => ({
    error: error instanceof Error ? error.message.split('\n')[0] : String(error),
  }))
  return loading
}
