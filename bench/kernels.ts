// Matmul throughput (GFLOP/s) in two groups, each timed in its own interleaved rounds:
// - webgpu: our WGSL kernel versions side by side with @tensorflow/tfjs-backend-webgpu on the same
//   Dawn adapter (the ratio column divides by tfjs-webgpu);
// - cpu: the cpu backend on its native engine (every core, and one thread), on its wasm engine (every
//   core, also with B changed each product, and one thread) and on the reference engine,
//   @tensorflow/tfjs-backend-wasm (one thread; the same B, and a new B each product), a plain
//   TypeScript loop, and numpy's float32 matmul (OpenBLAS sgemm, every core) in a python3 child
//   process (the ratio column divides by numpy).
// Every implementation is first checked against the reference.
//
//   npm run bench:kernels -- [--sizes 256,1024,2048] [--only webgpu,cpu] [--json] [--rounds 3]
//     [--min-seconds 0.5]
//
// Timing: one iteration = matmul of two NxN float32 matrices already on the device + reading the
// NxN result back to the host (the same work for every implementation; numpy's product is timed in
// python around `a @ b`, whose result is already on the host). After one warm-up each, whose result
// must agree with the group's base implementation's (our default kernel; the native engine),
// implementations run in interleaved rounds (at least --rounds, and at least --min-seconds per
// implementation in all) and we report the median iteration time. We also report GFLOP per
// CPU-second of the process that computes (all threads, lavapipe's included): on a shared machine
// wall-clock figures move with other processes' load, the CPU-time ones much less.
// The groups run one after the other, each size's webgpu group first: lavapipe computes on the same
// cores as the cpu group, so no cpu figure is taken while a webgpu kernel is queued. Within the cpu
// group no implementation's threads may spin on the cores the next one needs: the native engine's
// OpenMP threads sleep when idle (OMP_WAIT_POLICY=PASSIVE), and numpy answers each product only once
// its OpenBLAS threads have stopped spinning (bench/numpy-matmul.py); so every multi-threaded
// product starts with sleeping threads, as a call between other work does.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { startWasmEngine, wasmThreads } from '../kernels/cpu/wasm-engine.js'
import type { Backend } from '../kernels/index.js'
import { CpuBackend, type CpuEngine, loadCpuEngine } from '../kernels/index.js'
import { NATIVE_ADDON_PATH } from '../kernels/native/loader.js'
import type { MatmulTuning } from '../kernels/ops/matmul.js'
import { matmulLoopFloat32, matmulReference } from '../kernels/reference/index.js'
import { acquireDawnDevice } from '../kernels/runtime.js'
import { WebGpuBackend } from '../kernels/webgpu-backend.js'
import {
  DEFAULT_PACKED_SUBGROUP,
  DEFAULT_REGISTER_BLOCKED,
  MATMUL_VERSIONS,
  PACKED_SUBGROUP_TUNINGS,
  REGISTER_BLOCKED_TUNINGS,
} from '../kernels/wgsl/matmul.js'

const GROUPS = ['webgpu', 'cpu'] as const
type GroupName = (typeof GROUPS)[number]
const USAGE =
  'usage: npm run bench:kernels -- [--sizes 256,1024,2048] [--only webgpu,cpu] [--json] [--rounds 3] ' +
  '[--min-seconds 0.5]'

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,1024,2048' },
    only: { type: 'string', default: GROUPS.join(',') },
    json: { type: 'boolean', default: false },
    'min-seconds': { type: 'string', default: '0.5' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log(USAGE)
  process.exit(0)
}
const sizes = flags.sizes.split(',').map((text) => Number(text.trim()))
if (sizes.some((size) => !Number.isInteger(size) || size < 1 || size > 4096)) {
  console.error(`--sizes must be integers in 1..4096, got ${flags.sizes}`)
  process.exit(2)
}
const only = flags.only.split(',').map((name) => name.trim())
if (only.length === 0 || only.some((name) => !GROUPS.includes(name as GroupName))) {
  console.error(`--only takes groups among ${GROUPS.join(',')}, got ${flags.only}`)
  process.exit(2)
}
const selected = new Set(only as GroupName[])
const minSeconds = Number(flags['min-seconds'])
const rounds = Number(flags.rounds)
if (!(minSeconds >= 0) || !Number.isInteger(rounds) || rounds < 1) {
  console.error('--min-seconds must be >= 0 and --rounds a positive integer')
  process.exit(2)
}
/** an implementation slower than this per iteration is timed in one round only */
const SLOW_SECONDS = 5
const results: Measurement[] = []
const TFJS_WEBGPU_LABEL = 'tfjs-backend-webgpu (same adapter)'
const WASM_LABEL = 'tfjs-backend-wasm (XNNPACK, 1 thread)'
/**
 * tfjs-backend-wasm with B uploaded as a new tensor for each product, as in training (the weights
 * change every step): XNNPACK then packs B on every call, as the wasm engine always does, where the
 * row above reuses the operator it packed for B's tensor on the first call
 */
const WASM_NEW_B_LABEL = 'tfjs-backend-wasm, a new B each product (1 thread)'
const NATIVE_LABEL = 'cpu backend, native engine (all cores)'
const NATIVE_ONE_LABEL = 'cpu backend, native engine (1 thread)'
const WASM_ENGINE_LABEL = 'cpu backend, wasm engine (all cores)'
const WASM_ENGINE_ONE_LABEL = 'cpu backend, wasm engine (1 thread)'
/**
 * the wasm engine given a B with other bits than the product before (two B tensors taken in turn,
 * one float apart), as in training: its module keeps the packing of a B it multiplied only for a B
 * with the same bits, so here it packs B on every call, as tfjs does for a new B tensor; the row
 * above reuses its packing, as tfjs does for the same B tensor
 */
const WASM_ENGINE_NEW_B_LABEL = 'cpu backend, wasm engine, B changed each product (all cores)'
const REFERENCE_LABEL = 'cpu backend, reference engine (today)'
const LOOP_LABEL = 'plain TypeScript loop (i-k-j)'
const NUMPY_LABEL = 'numpy float32 matmul (all cores)'
/** an implementation predicted to need longer than this for one iteration is skipped, and says so */
const SKIP_SECONDS = 30

const loadAtStart = loadavg()
const progress = (message: string) => process.stderr.write(`${message}\n`)

interface Implementation {
  name: string
  group: GroupName
  setup(size: number, a: Float32Array, b: Float32Array): Promise<void>
  /** one iteration: returns the product, on the host */
  run(): Promise<Float32Array>
  /** one iteration timed by the implementation itself (numpy's, in its own process) */
  timedRun?(): Promise<{ ms: number; cpuMs: number }>
  teardown(): void
}

interface Measurement {
  implementation: string
  group: GroupName
  size: number
  gflops?: number
  msPerIteration?: number
  /** GFLOP per second of CPU time of the computing process (user + system, all threads) */
  gflopsPerCpuSecond?: number
  iterations?: number
  skipped?: string
}

function randomMatrix(length: number, seed: number): Float32Array {
  let state = seed >>> 0
  const out = new Float32Array(length)
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    out[i] = state / 2 ** 31 - 1
  }
  return out
}

function maxViolation(reference: Float32Array, got: Float32Array, k: number): number {
  // the matmul tolerance of the kernel tests: |ref - got| <= 2e-7*k + 1e-5*|ref|
  if (reference.length !== got.length) return Number.POSITIVE_INFINITY
  let worst = 0
  for (let i = 0; i < reference.length; i++) {
    const allowed = 2e-7 * k + 1e-5 * Math.abs(reference[i])
    const excess = Math.abs(reference[i] - got[i]) / allowed
    if (!(excess <= worst)) worst = Number.isNaN(excess) ? Number.POSITIVE_INFINITY : excess
  }
  return worst
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const implementations: Implementation[] = []
/** implementations that cannot run here, and why */
const unavailable: { implementation: string; group: GroupName; why: string }[] = []

// --- webgpu group: our kernels and tfjs-backend-webgpu -------------------------------------------

let ours: WebGpuBackend | undefined
let defaultLabel: string | undefined
let subgroupsUsable = false
if (selected.has('webgpu')) {
  const acquired = await acquireDawnDevice()
  const backend = new WebGpuBackend(acquired)
  ours = backend
  progress(`adapter: ${backend.info.adapterName} (fallback adapter: ${backend.info.isFallbackAdapter})`)

  const ourImplementation = (
    label: string,
    version: (typeof MATMUL_VERSIONS)[number],
    tuning?: MatmulTuning,
  ): Implementation => {
    let tensors: ReturnType<Backend['upload']>[] = []
    return {
      name: label,
      group: 'webgpu',
      async setup(size, a, b) {
        tensors = [backend.upload(a, [size, size]), backend.upload(b, [size, size])]
        await backend.sync()
      },
      async run() {
        const c = backend.matmulWith(version, tensors[0], tensors[1], {}, tuning)
        const out = await backend.read(c)
        c.dispose()
        return out
      },
      teardown() {
        for (const tensor of tensors) tensor.dispose()
      },
    }
  }

  subgroupsUsable = backend.runtime.description.fixedSubgroupSize !== undefined
  implementations.push(
    ourImplementation('ours: naive', 'naive'),
    ourImplementation('ours: tiled (shared memory)', 'tiled'),
    ...Object.entries(REGISTER_BLOCKED_TUNINGS).map(([name, tuning]) =>
      ourImplementation(`ours: register-blocked ${name}`, 'register-blocked', tuning),
    ),
    ...(subgroupsUsable
      ? Object.entries(PACKED_SUBGROUP_TUNINGS).map(([name, tuning]) =>
          ourImplementation(`ours: packed-subgroup ${name}`, 'packed-subgroup', tuning),
        )
      : []),
  )
  const tuningName = (tunings: Record<string, unknown>, tuning: unknown) =>
    Object.entries(tunings).find(([, candidate]) => candidate === tuning)?.[0]
  // the label of the kernel `matmul` uses on this adapter, with its default tuning
  defaultLabel =
    backend.matmulVersion === 'packed-subgroup'
      ? `ours: packed-subgroup ${tuningName(PACKED_SUBGROUP_TUNINGS, DEFAULT_PACKED_SUBGROUP)}`
      : `ours: register-blocked ${tuningName(REGISTER_BLOCKED_TUNINGS, DEFAULT_REGISTER_BLOCKED)}`
  if (!implementations.some((implementation) => implementation.name === defaultLabel))
    throw new Error(`the default kernel ${backend.matmulVersion} is not among the timed versions`)

    // tfjs-backend-webgpu looks for navigator.gpu: give it the same Dawn GPU object (a second adapter
    // of the same device) before importing it.
  ;(globalThis as { navigator?: unknown }).navigator = { gpu: acquired.gpu }
}

const tf = await import('@tensorflow/tfjs-core')
if (selected.has('webgpu')) await import('@tensorflow/tfjs-backend-webgpu')

function tfjsImplementation(
  backendName: 'webgpu' | 'wasm',
  label: string,
  group: GroupName,
  newB = false,
): Implementation {
  let tensors: import('@tensorflow/tfjs-core').Tensor[] = []
  let freshB: Float32Array | undefined
  return {
    name: label,
    group,
    async setup(size, a, b) {
      if (tf.getBackend() !== backendName) {
        if (backendName === 'wasm') {
          // the label's one thread: tfjs picks its thread count when the backend first initialises
          const wasm = await import('@tensorflow/tfjs-backend-wasm')
          wasm.setThreadsCount(1)
        }
        if (!(await tf.setBackend(backendName)))
          throw new Error(`tfjs backend ${backendName} did not initialise`)
        await tf.ready()
      }
      tensors = [tf.tensor2d(a, [size, size]), tf.tensor2d(b, [size, size])]
      freshB = newB ? b : undefined
    },
    async run() {
      const b = freshB === undefined ? tensors[1] : tf.tensor2d(freshB, tensors[1].shape as [number, number])
      const c = tf.matMul(tensors[0], b)
      const out = (await c.data()) as Float32Array
      c.dispose()
      if (b !== tensors[1]) b.dispose()
      return out
    },
    teardown() {
      for (const tensor of tensors) tensor.dispose()
    },
  }
}

if (selected.has('webgpu')) implementations.push(tfjsImplementation('webgpu', TFJS_WEBGPU_LABEL, 'webgpu'))

// --- cpu group ----------------------------------------------------------------------------------

/** the native addon's thread switch: the loader sets every core (or SHARDNET_CPU_THREADS) once */
interface NativeThreads {
  setThreads(threads: number): void
  describe(): { blas: string; blasConfig: string; threads: number; processors: number }
}

function cpuBackendImplementation(
  label: string,
  backend: CpuBackend,
  around?: { before(): void; after(): void },
  changeB = false,
): Implementation {
  let tensors: ReturnType<Backend['upload']>[] = []
  let runs = 0
  return {
    name: label,
    group: 'cpu',
    async setup(size, a, b) {
      tensors = [backend.upload(a, [size, size]), backend.upload(b, [size, size])]
      if (changeB) {
        // the first run (the warm-up, checked) multiplies B itself, later runs it and this in turn
        const other = b.slice()
        other[0] = -other[0]
        tensors.push(backend.upload(other, [size, size]))
      }
      runs = 0
    },
    async run() {
      around?.before()
      try {
        const b = changeB && runs++ % 2 === 1 ? tensors[2] : tensors[1]
        const c = backend.matmul(tensors[0], b)
        const out = await backend.read(c)
        c.dispose()
        return out
      } finally {
        around?.after()
      }
    },
    teardown() {
      for (const tensor of tensors) tensor.dispose()
    },
  }
}

const typescriptLoop = (): Implementation => {
  let inputs: { a: Float32Array; b: Float32Array; size: number } | undefined
  return {
    name: LOOP_LABEL,
    group: 'cpu',
    async setup(size, a, b) {
      inputs = { a, b, size }
    },
    async run() {
      const { a, b, size } = inputs!
      return matmulLoopFloat32(a, b, size, size, size)
    },
    teardown() {},
  }
}

interface NumpyInfo {
  numpy: string
  blas: Record<string, unknown>
  runtime: Record<string, unknown>
}

/** numpy in a python3 child process (bench/numpy-matmul.py), or why it cannot run */
async function numpyImplementation(): Promise<
  { implementation: Implementation; info: NumpyInfo; close(): void } | { error: string }
> {
  const script = new URL('./numpy-matmul.py', import.meta.url).pathname
  const child = spawn('python3', [script], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const spawned = new Promise<string | undefined>((resolve) => {
    child.once('error', (error) => resolve(error.message))
    child.once('spawn', () => resolve(undefined))
  })
  const spawnError = await spawned
  if (spawnError !== undefined) return { error: `python3: ${spawnError}` }
  // a python that ends early is answered by the next read ('the numpy process ended'), not a crash
  child.stdin.on('error', () => {})
  const answer = async (command?: string): Promise<Record<string, unknown>> => {
    if (command !== undefined) child.stdin.write(`${command}\n`)
    const line = await lines.next()
    if (line.done) throw new Error('the numpy process ended')
    const parsed = JSON.parse(line.value) as Record<string, unknown>
    if (typeof parsed.error === 'string') throw new Error(parsed.error)
    return parsed
  }
  let info: NumpyInfo
  try {
    info = (await answer()) as unknown as NumpyInfo
  } catch (error) {
    child.kill()
    return { error: error instanceof Error ? error.message : String(error) }
  }
  const directory = mkdtempSync(join(tmpdir(), 'shardnet-numpy-'))
  const [aPath, bPath, cPath] = ['a', 'b', 'c'].map((name) => join(directory, `${name}.f32`))
  const bytes = (array: Float32Array) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength)
  let size = 0
  const implementation: Implementation = {
    name: NUMPY_LABEL,
    group: 'cpu',
    async setup(n, a, b) {
      size = n
      writeFileSync(aPath, bytes(a))
      writeFileSync(bPath, bytes(b))
      await answer(`load ${n} ${aPath} ${bPath}`)
    },
    async run() {
      await answer('run')
      await answer(`result ${cPath}`)
      const file = readFileSync(cPath)
      const out = new Float32Array(size * size)
      bytes(out).set(file.subarray(0, out.byteLength))
      return out
    },
    async timedRun() {
      const { ms, cpuMs } = await answer('run')
      return { ms: Number(ms), cpuMs: Number(cpuMs) }
    },
    teardown() {},
  }
  return {
    implementation,
    info,
    close() {
      child.stdin.end('quit\n')
      rmSync(directory, { recursive: true, force: true })
    },
  }
}

let nativeEngine: CpuEngine | undefined
let wasmEngine: CpuEngine | undefined
let nativeBlasConfig: string | undefined
let numpy: Awaited<ReturnType<typeof numpyImplementation>> | undefined
if (selected.has('cpu')) {
  const unavailableBecause = (implementation: string, error: unknown) => {
    const why = error instanceof Error ? error.message : String(error)
    unavailable.push({ implementation, group: 'cpu', why })
    progress(`${implementation}: unavailable: ${why}`)
  }
  try {
    nativeEngine = await loadCpuEngine('native')
    const engine = nativeEngine
    const native = cpuBackendImplementation(NATIVE_LABEL, new CpuBackend({ engine }))
    // the addon the loader loaded (one instance per process): its thread count is process-wide, so
    // the one-thread figure sets it around each of its own iterations, in this same process
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeThreads
    nativeBlasConfig = addon.describe().blasConfig
    const nativeOne = cpuBackendImplementation(NATIVE_ONE_LABEL, new CpuBackend({ engine }), {
      before: () => addon.setThreads(1),
      after: () => addon.setThreads(engine.threads),
    })
    implementations.push(native, nativeOne)
  } catch (error) {
    unavailableBecause(NATIVE_LABEL, error)
  }
  try {
    // the engine loadCpuEngine('wasm') gives (every core, or SHARDNET_CPU_THREADS), as engines of their
    // own so that their workers have started before anything is timed, and one on a single thread;
    // each row its own engine, whose kept packings of B no other row replaces
    const all = await startWasmEngine(wasmThreads())
    const allNewB = await startWasmEngine(wasmThreads())
    const one = await startWasmEngine(1)
    if ('error' in all) throw new Error(all.error)
    if ('error' in allNewB) throw new Error(allNewB.error)
    if ('error' in one) throw new Error(one.error)
    await Promise.all([all.startWorkers(), allNewB.startWorkers()])
    wasmEngine = all.engine
    implementations.push(
      cpuBackendImplementation(WASM_ENGINE_LABEL, new CpuBackend({ engine: all.engine })),
      cpuBackendImplementation(
        WASM_ENGINE_NEW_B_LABEL,
        new CpuBackend({ engine: allNewB.engine }),
        undefined,
        true,
      ),
      cpuBackendImplementation(WASM_ENGINE_ONE_LABEL, new CpuBackend({ engine: one.engine })),
    )
  } catch (error) {
    unavailableBecause(WASM_ENGINE_LABEL, error)
  }
  implementations.push(cpuBackendImplementation(REFERENCE_LABEL, new CpuBackend({ engine: 'reference' })))
  implementations.push(typescriptLoop())
  numpy = await numpyImplementation()
  if ('error' in numpy) {
    unavailable.push({ implementation: NUMPY_LABEL, group: 'cpu', why: numpy.error })
    progress(`numpy unavailable: ${numpy.error}`)
  } else implementations.push(numpy.implementation)
  // wasm last: once it has loaded, Emscripten turns any uncaught error into exit code 7
  implementations.push(tfjsImplementation('wasm', WASM_LABEL, 'cpu'))
  implementations.push(tfjsImplementation('wasm', WASM_NEW_B_LABEL, 'cpu', true))
}
const inGroup = (group: GroupName) =>
  implementations.filter((implementation) => implementation.group === group)
/** the implementation the others of its group must agree with at every timed size */
const groupBase = (group: GroupName) =>
  group === 'webgpu'
    ? defaultLabel!
    : implementations.some((i) => i.name === NATIVE_LABEL)
      ? NATIVE_LABEL
      : WASM_LABEL

// --- 1. correctness before timing ---------------------------------------------------------------

async function checkAll(): Promise<void> {
  const [m, k, n] = [127, 65, 33]
  // square sizes only are timed; check square 256 and one awkward square size
  for (const size of [97, 256]) {
    const a = randomMatrix(size * size, 1)
    const b = randomMatrix(size * size, 2)
    const reference = matmulReference(a, b, size, size, size)
    for (const implementation of implementations) {
      if (implementation.name === WASM_LABEL || implementation.name === WASM_NEW_B_LABEL)
        await import('@tensorflow/tfjs-backend-wasm')
      await implementation.setup(size, a, b)
      const got = await implementation.run()
      implementation.teardown()
      const violation = maxViolation(reference, got, size)
      if (violation > 1)
        throw new Error(`${implementation.name} does not match the reference at ${size}x${size}`)
    }
  }
  // transposed and non-square shapes for our versions (the tests cover them in depth)
  if (ours !== undefined) {
    const a = randomMatrix(m * k, 3)
    const b = randomMatrix(k * n, 4)
    const reference = matmulReference(a, b, m, k, n)
    for (const version of MATMUL_VERSIONS) {
      if (version === 'packed-subgroup' && !subgroupsUsable) continue
      const c = ours.matmulWith(version, ours.upload(a, [m, k]), ours.upload(b, [k, n]))
      if (maxViolation(reference, await ours.read(c), k) > 1)
        throw new Error(`${version} does not match at ${m}x${k}x${n}`)
    }
  }
  const ourShapes = ours === undefined ? '' : ', and 127x65x33 for ours'
  progress(`all implementations match the reference (97x97, 256x256${ourShapes})`)
}

// --- 2. timing ----------------------------------------------------------------------------------

/**
 * Times a group of implementations at one size in interleaved rounds (one iteration of each per
 * round), so that load from other processes on a shared machine hits all of them alike and the
 * ratios stay meaningful. Each warm-up result must agree with the group's base implementation's.
 * An implementation whose iteration is predicted (from the previous size) to exceed SKIP_SECONDS
 * is skipped and says so (except tfjs-webgpu, the webgpu ratio's baseline); one slower than
 * SLOW_SECONDS runs in one round only.
 */
async function measureInterleaved(groupName: GroupName, size: number): Promise<Measurement[]> {
  const group = inGroup(groupName)
  const baseName = groupBase(groupName)
  const flop = 2 * size ** 3
  const a = randomMatrix(size * size, 11)
  const b = randomMatrix(size * size, 12)
  const timed: { implementation: Implementation; times: number[]; cpuMs: number[]; slow: boolean }[] = []
  const out: Measurement[] = []
  let expected: Float32Array | undefined
  // the base warms up first: the others' warm-up results are checked against its
  const warmUpOrder = [...group].sort((x, y) => Number(y.name === baseName) - Number(x.name === baseName))
  for (const implementation of warmUpOrder) {
    const previous = [...results]
      .reverse()
      .find((r) => r.implementation === implementation.name && r.msPerIteration)
    // never skip the baseline of the webgpu ratio column, nor the group's base
    const skippable = implementation.name !== TFJS_WEBGPU_LABEL && implementation.name !== baseName
    if (previous?.msPerIteration !== undefined && skippable) {
      const predictedSeconds = (previous.msPerIteration / 1000) * (size / previous.size) ** 3
      if (predictedSeconds > SKIP_SECONDS) {
        out.push({
          implementation: implementation.name,
          group: groupName,
          size,
          skipped:
            `predicted ${predictedSeconds.toFixed(0)} s per iteration from ` +
            `${previous.size}: over ${SKIP_SECONDS} s`,
        })
        continue
      }
    }
    progress(`size ${size}: warming up ${implementation.name}`)
    await implementation.setup(size, a, b)
    const started = performance.now()
    const result = await implementation.run() // warm-up: pipeline compile, allocations
    const seconds = (performance.now() - started) / 1000
    if (implementation.name === baseName) expected = result
    // both sides float32: twice the single-sided tolerance
    else if (expected !== undefined && maxViolation(expected, result, size) > 2)
      throw new Error(`${implementation.name} disagrees with ${baseName} at ${size}`)
    timed.push({ implementation, times: [], cpuMs: [], slow: seconds > SLOW_SECONDS })
  }
  timed.sort((x, y) => group.indexOf(x.implementation) - group.indexOf(y.implementation))
  const started = performance.now()
  for (
    let round = 0;
    round < rounds || performance.now() - started < minSeconds * 1000 * timed.length;
    round++
  ) {
    progress(`size ${size}: ${groupName} round ${round + 1}`)
    for (const entry of timed) {
      if (entry.slow && entry.times.length > 0) continue
      if (entry.implementation.timedRun !== undefined) {
        const { ms, cpuMs } = await entry.implementation.timedRun()
        entry.times.push(ms)
        entry.cpuMs.push(cpuMs)
        continue
      }
      const t0 = performance.now()
      const cpu0 = process.cpuUsage()
      await entry.implementation.run()
      const cpu = process.cpuUsage(cpu0)
      entry.times.push(performance.now() - t0)
      entry.cpuMs.push((cpu.user + cpu.system) / 1000)
    }
  }
  for (const { implementation, times, cpuMs } of timed) {
    implementation.teardown()
    const ms = median(times)
    out.push({
      implementation: implementation.name,
      group: groupName,
      size,
      gflops: flop / (ms / 1000) / 1e9,
      msPerIteration: ms,
      gflopsPerCpuSecond: flop / (median(cpuMs) / 1000) / 1e9,
      iterations: times.length,
    })
  }
  return group.map((implementation) => out.find((m) => m.implementation === implementation.name)!)
}

let exitCode = 0
try {
  await checkAll()
  for (const size of sizes) {
    if (selected.has('webgpu')) {
      results.push(...(await measureInterleaved('webgpu', size)))
      // nothing of the webgpu group may still run on lavapipe's threads while the cpu group is timed
      await ours?.sync()
    }
    if (selected.has('cpu')) results.push(...(await measureInterleaved('cpu', size)))
  }
} catch (error) {
  console.error(`benchmark failed: ${error instanceof Error ? error.stack : String(error)}`)
  exitCode = 1
}
if (numpy !== undefined && !('error' in numpy)) numpy.close()

// --- 3. report ----------------------------------------------------------------------------------

const loadAverage = (values: number[]) => values.map((value) => value.toFixed(1)).join(' ')
const machine =
  `${cpus().length}-core ${cpus()[0]?.model ?? process.arch}, Node ` +
  `${process.version}${ours === undefined ? '' : `, ${ours.info.adapterName}`}`
const figure = (size: number, name: string) =>
  results.find((r) => r.size === size && r.implementation === name && r.gflops !== undefined)
const gflopsOf = (size: number, name: string) => figure(size, name)?.gflops
const ratioOf = (size: number, top: string, bottom: string) => {
  const [x, y] = [gflopsOf(size, top), gflopsOf(size, bottom)]
  return x === undefined || y === undefined ? undefined : x / y
}

/** the cpu ratios the issue asks for, with their goals where it sets one */
const CPU_RATIOS = [
  {
    name: 'native / numpy (both all cores)',
    top: NATIVE_LABEL,
    bottom: NUMPY_LABEL,
    goal: 0.5,
    goalSizes: [1024, 2048],
  },
  { name: 'native / tfjs-wasm', top: NATIVE_LABEL, bottom: WASM_LABEL },
  { name: 'native 1 thread / tfjs-wasm', top: NATIVE_ONE_LABEL, bottom: WASM_LABEL },
  {
    name: 'wasm engine (all cores) / tfjs-wasm (1 thread)',
    top: WASM_ENGINE_LABEL,
    bottom: WASM_LABEL,
    goal: 1,
  },
  {
    name: 'wasm engine (all cores), B changed / tfjs-wasm (1 thread), a new B',
    top: WASM_ENGINE_NEW_B_LABEL,
    bottom: WASM_NEW_B_LABEL,
    goal: 1,
  },
  { name: 'wasm engine (1 thread) / tfjs-wasm (1 thread)', top: WASM_ENGINE_ONE_LABEL, bottom: WASM_LABEL },
  {
    name: 'wasm engine all cores / wasm engine 1 thread',
    top: WASM_ENGINE_LABEL,
    bottom: WASM_ENGINE_ONE_LABEL,
  },
  { name: 'native / reference', top: NATIVE_LABEL, bottom: REFERENCE_LABEL },
  { name: 'native all cores / native 1 thread', top: NATIVE_LABEL, bottom: NATIVE_ONE_LABEL },
] as const
const cpuRatios = selected.has('cpu')
  ? sizes.flatMap((size) =>
      CPU_RATIOS.map((ratio) => {
        const value = ratioOf(size, ratio.top, ratio.bottom)
        const goal = 'goal' in ratio ? ratio.goal : undefined
        const goalApplies =
          goal !== undefined &&
          (!('goalSizes' in ratio) || (ratio.goalSizes as readonly number[]).includes(size))
        return {
          size,
          ratio: ratio.name,
          value: value ?? null,
          goal: goalApplies ? goal : null,
          met: goalApplies && value !== undefined ? value >= goal : null,
        }
      }),
    )
  : []
const numpyInfo = numpy !== undefined && !('error' in numpy) ? numpy.info : undefined

if (flags.json) {
  const ratios = selected.has('webgpu')
    ? sizes.map((size) => {
        const tfjs = gflopsOf(size, TFJS_WEBGPU_LABEL)
        const best = Math.max(
          ...results
            .filter((r) => r.size === size && r.implementation.startsWith('ours'))
            .map((r) => r.gflops ?? 0),
        )
        const cpuFigure = (name: string) => figure(size, name)?.gflopsPerCpuSecond ?? Number.NaN
        return {
          size,
          bestOursOverTfjsWebgpu: tfjs === undefined ? null : best / tfjs,
          defaultOursOverTfjsWebgpu: tfjs === undefined ? null : (gflopsOf(size, defaultLabel!) ?? 0) / tfjs,
          defaultOursOverTfjsWebgpuPerCpuSecond: cpuFigure(defaultLabel!) / cpuFigure(TFJS_WEBGPU_LABEL),
        }
      })
    : []
  console.log(
    JSON.stringify(
      {
        machine,
        groups: [...selected],
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg(),
        defaultKernel: defaultLabel ?? null,
        wasmEngine: wasmEngine?.description ?? null,
        nativeEngine:
          nativeEngine === undefined
            ? null
            : { description: nativeEngine.description, blasConfig: nativeBlasConfig },
        numpy: numpyInfo ?? null,
        unavailable,
        results,
        ratios,
        cpuRatios,
      },
      null,
      2,
    ),
  )
} else {
  console.log(`matmul f32 NxN, GFLOP/s (median of timed iterations incl. result readback)`)
  console.log(`machine: ${machine}`)
  console.log(
    `load average (1/5/15 min) at start: ${loadAverage(loadAtStart)}, at end: ${loadAverage(loadavg())}`,
  )
  if (defaultLabel !== undefined) console.log(`default kernel on this adapter: ${defaultLabel}`)
  if (nativeEngine !== undefined)
    console.log(`native engine: ${nativeEngine.description}; OpenBLAS config: ${nativeBlasConfig}`)
  if (wasmEngine !== undefined) console.log(`wasm engine: ${wasmEngine.description}`)
  if (numpyInfo !== undefined)
    console.log(
      `numpy ${numpyInfo.numpy}: BLAS ${JSON.stringify(numpyInfo.blas)}; ` +
        `runtime ${JSON.stringify(numpyInfo.runtime)}`,
    )
  for (const { implementation, why } of unavailable) console.log(`${implementation}: unavailable: ${why}`)
  for (const size of sizes) {
    console.log(`\nN = ${size}`)
    for (const group of GROUPS.filter((name) => selected.has(name))) {
      const baseline = group === 'webgpu' ? TFJS_WEBGPU_LABEL : NUMPY_LABEL
      const column = group === 'webgpu' ? 'x tfjs-webgpu' : 'x numpy'
      const base = figure(size, baseline)
      console.log(
        `${'implementation'.padEnd(40)} ${'GFLOP/s'.padStart(9)} ${'ms/iter'.padStart(10)} ` +
          `${column.padStart(14)} ${'GFLOP/cpu-s'.padStart(12)} ${`${column} (cpu)`.padStart(19)}`,
      )
      for (const r of results.filter((result) => result.size === size && result.group === group)) {
        if (r.gflops === undefined) {
          console.log(`${r.implementation.padEnd(40)} skipped: ${r.skipped}`)
          continue
        }
        const ratio = base?.gflops === undefined ? '' : (r.gflops / base.gflops).toFixed(2)
        const perCpu = r.gflopsPerCpuSecond ?? 0
        const cpuRatio =
          base?.gflopsPerCpuSecond === undefined ? '' : (perCpu / base.gflopsPerCpuSecond).toFixed(2)
        console.log(
          `${r.implementation.padEnd(40)} ${r.gflops.toFixed(2).padStart(9)} ` +
            `${r.msPerIteration!.toFixed(1).padStart(10)} ${ratio.padStart(14)} ` +
            `${perCpu.toFixed(2).padStart(12)} ${cpuRatio.padStart(19)}`,
        )
      }
      const ourDefault = defaultLabel === undefined ? undefined : figure(size, defaultLabel)
      if (group === 'webgpu' && base?.gflops !== undefined && ourDefault?.gflops !== undefined) {
        const cpuRatio = (ourDefault.gflopsPerCpuSecond ?? 0) / (base.gflopsPerCpuSecond ?? Number.NaN)
        console.log(
          `=> default kernel / tfjs-webgpu at ${size}: ${(ourDefault.gflops / base.gflops).toFixed(2)}x ` +
            `wall-clock, ${cpuRatio.toFixed(2)}x per CPU-second (goal: >= 2.5x on lavapipe)`,
        )
      }
      if (group === 'cpu')
        for (const ratio of cpuRatios.filter((entry) => entry.size === size)) {
          const value = ratio.value === null ? 'n/a (not measured)' : `${ratio.value.toFixed(2)}x`
          const goal =
            ratio.goal === null
              ? ''
              : ` (goal >= ${ratio.goal}x: ${ratio.met === null ? 'n/a' : ratio.met ? 'met' : 'NOT met'})`
          console.log(`=> ${ratio.ratio} at ${size}: ${value}${goal}`)
        }
    }
  }
}

ours?.destroy()
// exit explicitly: the wasm backend's Emscripten runtime keeps its own handlers installed
process.exit(exitCode)
