// The wasm cpu engine: tfjs-backend-wasm's XNNPACK matmul on one thread, for machines where the
// native engine (kernels/native/) cannot be built. The reference ops compute everything else.
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
// weights) the module caches per B id. The scratch regions keep the size of the largest product
// seen so far.
import { createRequire } from 'node:module'
import { logger } from '@libp2p/logger'
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

/** A scratch region of the module's heap that grows to the largest size asked for. */
class Region {
  pointer = 0
  floats = 0
  constructor(private readonly module: WasmModule) {}

  /** the region's float offset into HEAPF32, holding at least `floats` floats; -1 when out of memory */
  reserve(floats: number): number {
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

/** The matmul over one instance of the module. */
class WasmMatmul {
  readonly #module: WasmModule
  readonly #a: Region
  readonly #b: Region
  readonly #c: Region
  /** 6 int32: A's shape [1, M, K] then B's [1, K, N] */
  readonly #shapes: number
  #nextId = 1
  /** what the module wrote to its error stream during the current call */
  #errors: string[] = []

  constructor(module: WasmModule) {
    this.#module = module
    this.#a = new Region(module)
    this.#b = new Region(module)
    this.#c = new Region(module)
    this.#shapes = module._malloc(6 * 4) >>> 0
    if (this.#shapes === 0) throw new WasmEngineError('out of WebAssembly memory for 6 ints')
  }

  /** the module's error stream lands here */
  reportError(text: string): void {
    this.#errors.push(text)
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
    const module = this.#module
    const aAt = this.#a.reserve(m * k)
    const bAt = this.#b.reserve(k * n)
    const cAt = this.#c.reserve(m * n)
    if (aAt < 0 || bAt < 0 || cAt < 0) {
      log('no WebAssembly memory for %dx%dx%d: computing it with the reference matmul', m, k, n)
      return matmulReference(a, b, m, k, n, transposeA, transposeB)
    }
    // read the views after every malloc: growing the heap replaces them
    const heap = module.HEAPF32
    if (transposeA) copyTransposed(a, m, k, heap, aAt)
    else heap.set(a.length === m * k ? a : a.subarray(0, m * k), aAt)
    if (transposeB) copyTransposed(b, k, n, heap, bAt)
    else heap.set(b.length === k * n ? b : b.subarray(0, k * n), bAt)
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
    // the call may have grown the heap (XNNPACK's packed weights): read the view again
    return module.HEAPF32.slice(cAt, cAt + m * n)
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

  let matmul: WasmMatmul | undefined
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
        if (matmul === undefined) early.push(text)
        else matmul.reportError(text)
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
  matmul = new WasmMatmul(module)

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
    const got = matmul.matmul(a, b, m, k, n, ta, tb)
    // small integers: every float32 sum is exact
    if (got.some((value, i) => value !== expected[i])) {
      return { error: `its matmul (transposeA ${ta}, transposeB ${tb}) disagrees with the reference` }
    }
  }

  const engineMatmul = matmul
  const ops: Partial<CpuOps> = {
    matmul: (a, b, m, k, n, transposeA = false, transposeB = false) =>
      engineMatmul.matmul(a, b, m, k, n, transposeA, transposeB),
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
