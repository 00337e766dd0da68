// One instance of tfjs-backend-wasm's WebAssembly module and the kernels over it (XNNPACK's matmul,
// attention built from it), for the wasm cpu engine (wasm-engine.ts): the calling thread holds one,
// and each of the engine's worker threads (wasm-worker.ts) holds its own.
//
// The module is the Emscripten factory in the package's wasm-out/, with the SIMD binary where this
// runtime validates it; the engine calls the module's C entry points directly, so tfjs-core's engine,
// its global backend registry and its kernel registry are never touched, and code in the same
// process that uses tfjs with any backend (bench/gpt-anchor.ts, test/unit/models/gpt-tfjs.test.ts)
// sees nothing of it. The factory adds process-wide 'uncaughtException' and 'unhandledRejection'
// listeners that rethrow; they are removed as soon as the module exists.
//
// A product copies its operands into regions of the module's heap (transposing on the way where the
// op transposes: the module's XNNPACK path takes only untransposed [M,K] x [K,N], and its own
// transposed path is a scalar loop), registers them as tensors, calls BatchMatMul per block of C, and
// copies C out. The module caches XNNPACK's operator (B packed) per B tensor id until the id is
// disposed: the engine keeps each block of B's id and bits, and a later product whose block of B has
// the same bits (compared in full) reuses it instead of copying and packing B again (as tfjs does
// when the same B tensor is multiplied again); any other B is packed afresh. The scratch regions keep
// the size of the largest operands seen so far.
//
// Every element of C is the same XNNPACK microkernel's sum over K in the same order whichever block
// of C it is computed in, as long as blocks of columns start at multiples of BLOCK_ALIGN (a column's
// place in the kernel's vector registers can decide its order): so C's bits do not depend on how C is
// split into blocks (wasm-engine.test.ts checks it across thread counts).
import { createRequire } from 'node:module'
import type { AttentionSizes } from '../ops/transformer-shapes.js'
import { attentionBackwardReference, attentionReference } from '../reference/attention.js'
import { matmulReference } from '../reference/index.js'

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

type WasmImports = Record<string, Record<string, unknown>>

interface ModuleOptions {
  instantiateWasm: (imports: WasmImports, done: (instance: unknown, module: unknown) => void) => object
  locateFile: (path: string, prefix: string) => string
  print: (text: string) => void
  printErr: (text: string) => void
}

type ModuleFactory = (options: ModuleOptions) => Promise<WasmModule>

/** the runtime's WebAssembly object (the compiler's libraries here do not declare it) */
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean
  compile(bytes: Uint8Array): Promise<object>
  instantiate(module: object, imports: WasmImports): Promise<object>
}
const webAssembly = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly

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
export function attentionOnWasm({ sequence, headWidth }: AttentionSizes): boolean {
  return (
    headWidth >= ATTENTION_HEAD_WIDTH_MIN &&
    sequence * sequence * headWidth >= ATTENTION_WORK_MIN &&
    sequence * sequence <= ATTENTION_SCORES_MAX
  )
}

/** blocks of C's columns start at multiples of this (XNNPACK's widest f32 tile is 16 columns) */
export const BLOCK_ALIGN = 16

/** floats per side of the blocks a transposing copy moves (two 32x32 float blocks stay in L1) */
const TRANSPOSE_BLOCK = 32

/**
 * Copies rows [r0, r1) and columns [c0, c1) of op(X), a [rows, cols] matrix, into `into` at `at`,
 * row-major with c1 - c0 floats a row. X is stored at `from` in `source`, row-major: [rows, cols],
 * or [cols, rows] when `transposed`.
 */
export function copyBlock(
  source: Float32Array,
  from: number,
  rows: number,
  cols: number,
  transposed: boolean,
  r0: number,
  r1: number,
  c0: number,
  c1: number,
  into: Float32Array,
  at: number,
): void {
  const width = c1 - c0
  if (!transposed) {
    if (c0 === 0 && c1 === cols) {
      into.set(source.subarray(from + r0 * cols, from + r1 * cols), at)
      return
    }
    for (let r = r0; r < r1; r++) {
      const row = from + r * cols
      into.set(source.subarray(row + c0, row + c1), at + (r - r0) * width)
    }
    return
  }
  // op(X)[r][c] = X[c][r]
  for (let rb = r0; rb < r1; rb += TRANSPOSE_BLOCK) {
    const rEnd = Math.min(rb + TRANSPOSE_BLOCK, r1)
    for (let cb = c0; cb < c1; cb += TRANSPOSE_BLOCK) {
      const cEnd = Math.min(cb + TRANSPOSE_BLOCK, c1)
      for (let r = rb; r < rEnd; r++) {
        const to = at + (r - r0) * width - c0
        const column = from + r
        for (let c = cb; c < cEnd; c++) into[to + c] = source[column + c * rows]
      }
    }
  }
}

/**
 * Whether rows [r0, r1) and columns [c0, c1) of op(X) (as in copyBlock) have the same bits as the
 * row-major block at `at` in `copy`; stops at the first difference.
 */
export function sameBlock(
  source: Float32Array,
  from: number,
  rows: number,
  cols: number,
  transposed: boolean,
  r0: number,
  r1: number,
  c0: number,
  c1: number,
  copy: Float32Array,
  at: number,
): boolean {
  const width = c1 - c0
  if (!transposed) {
    // rows of X are rows of the block: compared as bytes (memcmp), a whole block at once where it can
    const bytes = (array: Float32Array, start: number, floats: number) =>
      Buffer.from(array.buffer, array.byteOffset + start * 4, floats * 4)
    if (c0 === 0 && c1 === cols)
      return bytes(source, from + r0 * cols, (r1 - r0) * cols).equals(bytes(copy, at, (r1 - r0) * cols))
    for (let r = r0; r < r1; r++)
      if (!bytes(source, from + r * cols + c0, width).equals(bytes(copy, at + (r - r0) * width, width)))
        return false
    return true
  }
  const x = new Uint32Array(source.buffer, source.byteOffset, source.length)
  const y = new Uint32Array(copy.buffer, copy.byteOffset, copy.length)
  for (let r = r0; r < r1; r++) {
    const to = at + (r - r0) * width - c0
    const column = from + r
    for (let c = c0; c < c1; c++) if (x[column + c * rows] !== y[to + c]) return false
  }
  return true
}

/** the operands of C = op(A) op(B), op(A) [m, k] and op(B) [k, n], each stored from an offset */
export interface MatmulOperands {
  a: Float32Array
  aAt: number
  b: Float32Array
  bAt: number
  m: number
  k: number
  n: number
  transposeA: boolean
  transposeB: boolean
}

/** a block of C: rows [r0, r1) and columns [c0, c1) */
export interface Block {
  r0: number
  r1: number
  c0: number
  c1: number
}

/** C's blocks: `count` blocks of `step` rows (alongRows) or columns, the last one possibly narrower */
export interface Split {
  alongRows: boolean
  step: number
  count: number
}

/** C [m, n] as one block */
export const wholeOf = (m: number): Split => ({ alongRows: true, step: m, count: 1 })

/** block `index` of the split */
export function blockOf(split: Split, m: number, n: number, index: number): Block {
  const start = index * split.step
  return split.alongRows
    ? { r0: start, r1: Math.min(start + split.step, m), c0: 0, c1: n }
    : { r0: 0, r1: m, c0: start, c1: Math.min(start + split.step, n) }
}

/** a claim function that hands out block 0 once: a product as one block */
export function once(): () => number {
  let given = false
  return () => {
    if (given) return -1
    given = true
    return 0
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

  free(): void {
    if (this.pointer !== 0) this.module._free(this.pointer)
    this.pointer = 0
    this.floats = 0
  }
}

/** a block of B registered as a tensor, kept with its bits for the next product that has the same */
interface KeptWeights {
  region: Region
  floats: number
  id: number
}

/**
 * floats of B a module keeps (each block kept costs as much again in XNNPACK's packed copy); the
 * least recently used go first
 */
export const KEPT_WEIGHTS_FLOATS_MAX = 2 ** 23

/** The ops over one instance of the module. */
export class WasmKernels {
  readonly #module: WasmModule
  /** 6 int32: A's shape [1, M, K] then B's [1, K, N] */
  readonly #shapes: number
  #nextId = 1
  /** what the module wrote to its error stream during the current call */
  #errors: string[] = []
  readonly #regions = new Map<string, Region>()
  /** blocks of B kept by their shape and place, least recently used first */
  readonly #kept = new Map<string, KeptWeights>()
  #keptFloats = 0
  /** blocks of B served from #kept so far */
  keptUsed = 0

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
   * Runs BatchMatMul on registered tensors: C [m, n] = A [m, k] B [k, n], row-major, untransposed
   * (XNNPACK's fully connected operator, cached by the module under B's id until that id is
   * disposed). m, k, n > 0. May grow the heap.
   */
  #run(aId: number, bId: number, cId: number, m: number, k: number, n: number): void {
    const module = this.#module
    const shapes = module.HEAP32
    const s = this.#shapes / 4
    shapes[s] = 1
    shapes[s + 1] = m
    shapes[s + 2] = k
    shapes[s + 3] = 1
    shapes[s + 4] = k
    shapes[s + 5] = n
    this.#errors = []
    module._BatchMatMul(aId, this.#shapes, 3, bId, this.#shapes + 12, 3, 0, 0, cId)
    if (this.#errors.length > 0)
      throw new WasmEngineError(`matmul ${m}x${k}x${n}: ${this.#errors.join('; ')}`)
  }

  /** registers `floats` floats of the heap from float offset `at` as a new tensor; returns its id */
  #register(at: number, floats: number): number {
    const id = this.#nextId++
    this.#module._register_tensor(id, floats, at * 4)
    return id
  }

  /**
   * C = A B on the heap: A [m, k] at float offset aAt, B [k, n] at bAt, C [m, n] at cAt, all
   * row-major and untransposed; B is packed afresh. m, k, n > 0. May grow the heap.
   */
  #product(aAt: number, bAt: number, cAt: number, m: number, k: number, n: number): void {
    const aId = this.#register(aAt, m * k)
    const bId = this.#register(bAt, k * n)
    const cId = this.#register(cAt, m * n)
    try {
      this.#run(aId, bId, cId, m, k, n)
    } finally {
      this.#module._dispose_data(aId)
      this.#module._dispose_data(bId)
      this.#module._dispose_data(cId)
    }
  }

  /**
   * The tensor id of op(B)'s columns [c0, c1) ([k, c1 - c0]), and whether it is kept (else the caller
   * disposes of it); -1 when the heap cannot hold it. XNNPACK packs a B tensor once per id, and the
   * module keeps the packing until the id is disposed: the id is kept with B's bits, for the next
   * product whose block of B of the same shape and place has the same bits (compared in full), which
   * then neither copies nor packs B (weights multiplied again: inference, the same B again). Blocks
   * larger than KEPT_WEIGHTS_FLOATS_MAX are not kept.
   */
  #weights(operands: MatmulOperands, c0: number, c1: number): { id: number; kept: boolean } {
    const { b, bAt, k, n, transposeB } = operands
    const module = this.#module
    const floats = k * (c1 - c0)
    const key = `${k} ${n} ${transposeB ? 'T' : 'N'} ${c0} ${c1}`
    const kept = this.#kept.get(key)
    if (kept !== undefined) {
      if (sameBlock(b, bAt, k, n, transposeB, 0, k, c0, c1, module.HEAPF32, kept.region.pointer / 4)) {
        this.#kept.delete(key)
        this.#kept.set(key, kept)
        this.keptUsed++
        return { id: kept.id, kept: true }
      }
      this.#forget(key, kept)
    }
    if (floats > KEPT_WEIGHTS_FLOATS_MAX) {
      const at = this.#reserve({ b: floats })
      if (at === undefined) return { id: -1, kept: false }
      copyBlock(b, bAt, k, n, transposeB, 0, k, c0, c1, module.HEAPF32, at.b)
      return { id: this.#register(at.b, floats), kept: false }
    }
    for (const [oldest, weights] of this.#kept) {
      if (this.#keptFloats + floats <= KEPT_WEIGHTS_FLOATS_MAX) break
      this.#forget(oldest, weights)
    }
    const region = new Region(module)
    const at = region.reserve(floats)
    if (at < 0) return { id: -1, kept: false }
    copyBlock(b, bAt, k, n, transposeB, 0, k, c0, c1, module.HEAPF32, at)
    const id = this.#register(at, floats)
    this.#kept.set(key, { region, floats, id })
    this.#keptFloats += floats
    return { id, kept: true }
  }

  #forget(key: string, weights: KeptWeights): void {
    this.#module._dispose_data(weights.id)
    weights.region.free()
    this.#kept.delete(key)
    this.#keptFloats -= weights.floats
  }

  /**
   * Computes the blocks of C = op(A) op(B) that `claim` hands out (their indices in `split`; -1:
   * no more), writing each into `into` from `at`, `width` floats a row of C there, and telling
   * `done`. The operand every block shares (B for blocks of rows, A for blocks of columns) is copied
   * and registered once, so XNNPACK packs B once for all blocks of rows; blocks of B are kept for
   * later products (#weights). False, having claimed nothing, when the module's heap cannot hold the
   * operands. k > 0.
   */
  matmulBlocks(
    operands: MatmulOperands,
    split: Split,
    claim: () => number,
    into: Float32Array,
    at: number,
    width: number,
    done?: (index: number) => void,
  ): boolean {
    const { a, aAt, m, k, n, transposeA } = operands
    const { alongRows } = split
    const rowsMax = alongRows ? Math.min(split.step, m) : m
    const colsMax = alongRows ? n : Math.min(split.step, n)
    const region = this.#reserve({ a: rowsMax * k, c: rowsMax * colsMax })
    if (region === undefined) return false
    const module = this.#module
    // blocks of rows share B, blocks of columns A
    let shared: { id: number; kept: boolean }
    if (alongRows) {
      shared = this.#weights(operands, 0, n)
      if (shared.id < 0) return false
    } else {
      copyBlock(a, aAt, m, k, transposeA, 0, m, 0, k, module.HEAPF32, region.a)
      shared = { id: this.#register(region.a, m * k), kept: false }
    }
    try {
      for (let index = claim(); index >= 0; index = claim()) {
        const { r0, r1, c0, c1 } = blockOf(split, m, n, index)
        const rows = r1 - r0
        const cols = c1 - c0
        let own: { id: number; kept: boolean }
        if (alongRows) {
          copyBlock(a, aAt, m, k, transposeA, r0, r1, 0, k, module.HEAPF32, region.a)
          own = { id: this.#register(region.a, rows * k), kept: false }
        } else {
          own = this.#weights(operands, c0, c1)
          if (own.id < 0) throw new WasmEngineError(`no WebAssembly memory for a block of ${k}x${cols} of B`)
        }
        const cId = this.#register(region.c, rows * cols)
        try {
          if (alongRows) this.#run(own.id, shared.id, cId, rows, k, cols)
          else this.#run(shared.id, own.id, cId, rows, k, cols)
        } finally {
          if (!own.kept) module._dispose_data(own.id)
          module._dispose_data(cId)
        }
        // the call may have grown the heap (XNNPACK's packed weights): read the view again
        const result = module.HEAPF32
        if (c0 === 0 && c1 === width)
          into.set(result.subarray(region.c, region.c + rows * cols), at + r0 * width)
        else
          for (let r = 0; r < rows; r++) {
            const row = region.c + r * cols
            into.set(result.subarray(row, row + cols), at + (r0 + r) * width + c0)
          }
        done?.(index)
      }
    } finally {
      if (!shared.kept) module._dispose_data(shared.id)
    }
    return true
  }

  /**
   * Per (sequence, head): S = Q K^T and O = P V as XNNPACK products over the whole [T, T] block
   * (the masked half of P is zeros), the causal softmax in float64 in between.
   */
  attention(qkv: Float32Array, sizes: AttentionSizes): { output: Float32Array; logSumExp: Float32Array } {
    const { batch, sequence: T, heads, width: D } = sizes
    const output = new Float32Array(batch * T * D)
    const logSumExp = new Float32Array(batch * heads * T)
    if (output.length === 0) return { output, logSumExp }
    if (
      !attentionOnWasm(sizes) ||
      !this.attentionPairs(qkv, sizes, inOrder(batch * heads), output, logSumExp)
    )
      return attentionReference(qkv, sizes)
    return { output, logSumExp }
  }

  /**
   * attention's pairs (sequence b, head h; pair b * heads + h) that `claim` hands out (-1: no more),
   * each written into its columns of `output` and its rows of `logSumExp`; false, having claimed
   * nothing, when the module's heap cannot hold a pair's blocks. Sizes for which attentionOnWasm.
   */
  attentionPairs(
    qkv: Float32Array,
    sizes: AttentionSizes,
    claim: () => number,
    output: Float32Array,
    logSumExp: Float32Array,
  ): boolean {
    const { sequence: T, heads, width: D, headWidth: hd } = sizes
    const at = this.#reserve({ q: T * hd, kt: hd * T, v: T * hd, s: T * T, o: T * hd })
    if (at === undefined) return false
    const scale = 1 / Math.sqrt(hd)
    const stride = 3 * D
    const row = new Float64Array(T)
    for (let pair = claim(); pair >= 0; pair = claim()) {
      const b = Math.floor(pair / heads)
      const h = pair % heads
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
      const lseBase = pair * T
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
    return true
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
    const { batch, sequence: T, heads, width: D } = sizes
    const gradQkv = new Float32Array(batch * T * 3 * D)
    if (gradQkv.length === 0) return gradQkv
    const claim = inOrder(batch * heads)
    if (
      !attentionOnWasm(sizes) ||
      !this.attentionBackwardPairs(gradOutput, qkv, output, logSumExp, sizes, claim, gradQkv)
    )
      return attentionBackwardReference(gradOutput, qkv, output, logSumExp, sizes)
    return gradQkv
  }

  /** attentionBackward's pairs that `claim` hands out, as attentionPairs, into their parts of gradQkv */
  attentionBackwardPairs(
    gradOutput: Float32Array,
    qkv: Float32Array,
    output: Float32Array,
    logSumExp: Float32Array,
    sizes: AttentionSizes,
    claim: () => number,
    gradQkv: Float32Array,
  ): boolean {
    const { sequence: T, heads, width: D, headWidth: hd } = sizes
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
    if (at === undefined) return false
    const scale = 1 / Math.sqrt(hd)
    const stride = 3 * D
    const delta = new Float64Array(T)
    for (let pair = claim(); pair >= 0; pair = claim()) {
      const b = Math.floor(pair / heads)
      const h = pair % heads
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
      const lseBase = pair * T
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
    return true
  }
}

/** a claim function that hands out 0, 1, ..., count - 1, then -1 */
export function inOrder(count: number): () => number {
  let next = 0
  return () => (next < count ? next++ : -1)
}

/** the package's files, resolved from here */
export function packageFiles(): { factory: string; simd: string; plain: string; version: string } {
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

/** the module compiled once per process, handed to each worker thread (which instantiates its own) */
export interface CompiledModule {
  /** a WebAssembly.Module */
  module: object
  simd: boolean
  version: string
}

/** Reads and compiles the package's module: the SIMD binary where this runtime validates it. */
export async function compileModule(): Promise<CompiledModule> {
  const { readFile } = await import('node:fs/promises')
  const files = packageFiles()
  let binary = new Uint8Array(await readFile(files.simd))
  const simd = webAssembly.validate(binary)
  if (!simd) binary = new Uint8Array(await readFile(files.plain))
  return { module: await webAssembly.compile(binary), simd, version: files.version }
}

/** the events the Emscripten factory hooks process-wide */
type HookedEvent = 'uncaughtException' | 'unhandledRejection'
const HOOKED_EVENTS: readonly HookedEvent[] = ['uncaughtException', 'unhandledRejection']
type Listener = (...args: unknown[]) => void
const listenersOf = (event: HookedEvent): Listener[] =>
  process.listeners(event as 'uncaughtException') as Listener[]

/**
 * Kernels over a new instance of the compiled module, on one thread, checked against a small exact
 * product for every transpose; or why not. `log` receives the module's output.
 */
export async function instantiateKernels(
  compiled: CompiledModule,
  log: (text: string) => void,
): Promise<{ kernels: WasmKernels } | { error: string }> {
  const require = createRequire(import.meta.url)
  const factory = require(packageFiles().factory) as ModuleFactory
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
  let failed: (error: unknown) => void = () => {}
  // the factory waits for `done` forever: a failed instantiation must end the wait itself
  const instantiationFailed = new Promise<never>((_, reject) => {
    failed = reject
  })
  try {
    const ready = factory({
      instantiateWasm: (imports, done) => {
        webAssembly.instantiate(compiled.module, imports).then(
          (instance) => done(instance, compiled.module),
          (error: unknown) => failed(error),
        )
        return {}
      },
      locateFile: (path, prefix) => prefix + path,
      print: log,
      printErr: (text) => {
        log(text)
        if (kernels === undefined) early.push(text)
        else kernels.reportError(text)
      },
    })
    removeAddedListeners()
    module = await Promise.race([ready, instantiationFailed])
  } finally {
    removeAddedListeners()
  }
  if (early.length > 0) return { error: `the module reported: ${early.join('; ')}` }
  module._init_with_threads_count(1)
  kernels = new WasmKernels(module)

  // a product checked against an exact one before the kernels are offered, every transpose
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
    const got = new Float32Array(m * n)
    const operands = { a, aAt: 0, b, bAt: 0, m, k, n, transposeA: ta, transposeB: tb }
    kernels.matmulBlocks(operands, wholeOf(m), once(), got, 0, n)
    // small integers: every float32 sum is exact
    if (got.some((value, i) => value !== expected[i])) {
      return { error: `its matmul (transposeA ${ta}, transposeB ${tb}) disagrees with the reference` }
    }
  }
  return { kernels }
}
