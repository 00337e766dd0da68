// Matmul throughput (GFLOP/s) of our WGSL kernel versions side by side with, in the same run and
// on the same Dawn adapter, @tensorflow/tfjs-backend-webgpu, plus @tensorflow/tfjs-backend-wasm
// and a plain TypeScript loop. Every implementation is first checked against the reference.
//
//   npm run bench:kernels -- [--sizes 256,1024,2048] [--json] [--rounds 3] [--min-seconds 0.5]
//
// Timing: one iteration = matmul of two NxN float32 matrices already on the device + reading the
// NxN result back to the host (the same work for every implementation). After one warm-up each,
// implementations run in interleaved rounds (at least --rounds, and at least --min-seconds per
// implementation in all) and we report the median iteration time. We also report GFLOP per
// CPU-second of this process (all threads, lavapipe's included): on a shared machine wall-clock
// figures move with other processes' load, the CPU-time ones much less.
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import type { Backend } from '../kernels/index.js'
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

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,1024,2048' },
    json: { type: 'boolean', default: false },
    'min-seconds': { type: 'string', default: '0.5' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log(
    'usage: npm run bench:kernels -- [--sizes 256,1024,2048] [--json] [--rounds 3] [--min-seconds 0.5]',
  )
  process.exit(0)
}
const sizes = flags.sizes.split(',').map((text) => Number(text.trim()))
if (sizes.some((size) => !Number.isInteger(size) || size < 1 || size > 4096)) {
  console.error(`--sizes must be integers in 1..4096, got ${flags.sizes}`)
  process.exit(2)
}
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
/** an implementation predicted to need longer than this for one iteration is skipped, and says so */
const SKIP_SECONDS = 30

const loadAtStart = loadavg()
const progress = (message: string) => process.stderr.write(`${message}\n`)

interface Implementation {
  name: string
  /** the GPU implementations; the ratio column divides by tfjs-webgpu */
  group: 'ours' | 'baseline'
  setup(size: number, a: Float32Array, b: Float32Array): Promise<void>
  /** one iteration: returns the product, on the host */
  run(): Promise<Float32Array>
  teardown(): void
}

interface Measurement {
  implementation: string
  size: number
  gflops?: number
  msPerIteration?: number
  /** GFLOP per second of this process's CPU time (user + system, all threads: lavapipe's too) */
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

// --- our kernels --------------------------------------------------------------------------------

const acquired = await acquireDawnDevice()
const ours = new WebGpuBackend(acquired)
progress(`adapter: ${ours.info.adapterName} (fallback adapter: ${ours.info.isFallbackAdapter})`)

function ourImplementation(
  label: string,
  version: (typeof MATMUL_VERSIONS)[number],
  tuning?: MatmulTuning,
): Implementation {
  let tensors: ReturnType<Backend['upload']>[] = []
  return {
    name: label,
    group: 'ours',
    async setup(size, a, b) {
      tensors = [ours.upload(a, [size, size]), ours.upload(b, [size, size])]
      await ours.sync()
    },
    async run() {
      const c = ours.matmulWith(version, tensors[0], tensors[1], {}, tuning)
      const out = await ours.read(c)
      c.dispose()
      return out
    },
    teardown() {
      for (const tensor of tensors) tensor.dispose()
    },
  }
}

const subgroupsUsable = ours.runtime.description.fixedSubgroupSize !== undefined
const implementations: Implementation[] = [
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
]
const tuningName = (tunings: Record<string, unknown>, tuning: unknown) =>
  Object.entries(tunings).find(([, candidate]) => candidate === tuning)?.[0]
// the label of the kernel `matmul` uses on this adapter, with its default tuning
const defaultLabel =
  ours.matmulVersion === 'packed-subgroup'
    ? `ours: packed-subgroup ${tuningName(PACKED_SUBGROUP_TUNINGS, DEFAULT_PACKED_SUBGROUP)}`
    : `ours: register-blocked ${tuningName(REGISTER_BLOCKED_TUNINGS, DEFAULT_REGISTER_BLOCKED)}`
if (!implementations.some((implementation) => implementation.name === defaultLabel))
  throw new Error(`the default kernel ${ours.matmulVersion} is not among the timed versions`)

  // --- tfjs baselines -----------------------------------------------------------------------------

  // tfjs-backend-webgpu looks for navigator.gpu: give it the same Dawn GPU object (a second adapter
  // of the same device) before importing it.
;(globalThis as { navigator?: unknown }).navigator = { gpu: acquired.gpu }
const tf = await import('@tensorflow/tfjs-core')
await import('@tensorflow/tfjs-backend-webgpu')

function tfjsImplementation(backendName: 'webgpu' | 'wasm', label: string): Implementation {
  let tensors: import('@tensorflow/tfjs-core').Tensor[] = []
  return {
    name: label,
    group: 'baseline',
    async setup(size, a, b) {
      if (tf.getBackend() !== backendName) {
        if (!(await tf.setBackend(backendName)))
          throw new Error(`tfjs backend ${backendName} did not initialise`)
        await tf.ready()
      }
      tensors = [tf.tensor2d(a, [size, size]), tf.tensor2d(b, [size, size])]
    },
    async run() {
      const c = tf.matMul(tensors[0], tensors[1])
      const out = (await c.data()) as Float32Array
      c.dispose()
      return out
    },
    teardown() {
      for (const tensor of tensors) tensor.dispose()
    },
  }
}

const typescriptLoop = (): Implementation => {
  let inputs: { a: Float32Array; b: Float32Array; size: number } | undefined
  return {
    name: 'plain TypeScript loop (i-k-j)',
    group: 'baseline',
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

implementations.push(tfjsImplementation('webgpu', TFJS_WEBGPU_LABEL))
implementations.push(typescriptLoop())
// wasm last: once it has loaded, Emscripten turns any uncaught error into exit code 7
const WASM_LABEL = 'tfjs-backend-wasm (XNNPACK, 1 thread)'
implementations.push(tfjsImplementation('wasm', WASM_LABEL))

// --- 1. correctness before timing ---------------------------------------------------------------

async function checkAll(): Promise<void> {
  const [m, k, n] = [127, 65, 33]
  // square sizes only are timed; check square 256 and one awkward square size
  for (const size of [97, 256]) {
    const a = randomMatrix(size * size, 1)
    const b = randomMatrix(size * size, 2)
    const reference = matmulReference(a, b, size, size, size)
    for (const implementation of implementations) {
      if (implementation.name === WASM_LABEL) await import('@tensorflow/tfjs-backend-wasm')
      await implementation.setup(size, a, b)
      const got = await implementation.run()
      implementation.teardown()
      const violation = maxViolation(reference, got, size)
      if (violation > 1)
        throw new Error(`${implementation.name} does not match the reference at ${size}x${size}`)
    }
  }
  // transposed and non-square shapes for our versions (the tests cover them in depth)
  const a = randomMatrix(m * k, 3)
  const b = randomMatrix(k * n, 4)
  const reference = matmulReference(a, b, m, k, n)
  for (const version of MATMUL_VERSIONS) {
    if (version === 'packed-subgroup' && !subgroupsUsable) continue
    const c = ours.matmulWith(version, ours.upload(a, [m, k]), ours.upload(b, [k, n]))
    if (maxViolation(reference, await ours.read(c), k) > 1)
      throw new Error(`${version} does not match at ${m}x${k}x${n}`)
  }
  progress('all implementations match the reference (97x97, 256x256, and 127x65x33 for ours)')
}

// --- 2. timing ----------------------------------------------------------------------------------

/**
 * Times a set of implementations at one size in interleaved rounds (one iteration of each per
 * round), so that load from other processes on a shared machine hits all of them alike and the
 * ratios stay meaningful. An implementation whose iteration is predicted (from the previous size)
 * to exceed SKIP_SECONDS is skipped and says so (except tfjs-webgpu, the ratio's baseline); one
 * slower than SLOW_SECONDS runs in one round only.
 */
async function measureInterleaved(group: Implementation[], size: number): Promise<Measurement[]> {
  const flop = 2 * size ** 3
  const a = randomMatrix(size * size, 11)
  const b = randomMatrix(size * size, 12)
  const timed: { implementation: Implementation; times: number[]; cpuMs: number[]; slow: boolean }[] = []
  const out: Measurement[] = []
  for (const implementation of group) {
    const previous = [...results]
      .reverse()
      .find((r) => r.implementation === implementation.name && r.msPerIteration)
    // never skip the baseline of the ratio column
    if (previous?.msPerIteration !== undefined && implementation.name !== TFJS_WEBGPU_LABEL) {
      const predictedSeconds = (previous.msPerIteration / 1000) * (size / previous.size) ** 3
      if (predictedSeconds > SKIP_SECONDS) {
        out.push({
          implementation: implementation.name,
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
    await implementation.run() // warm-up: pipeline compile, allocations
    timed.push({
      implementation,
      times: [],
      cpuMs: [],
      slow: performance.now() - started > SLOW_SECONDS * 1000,
    })
  }
  const started = performance.now()
  for (
    let round = 0;
    round < rounds || performance.now() - started < minSeconds * 1000 * timed.length;
    round++
  ) {
    progress(`size ${size}: round ${round + 1}`)
    for (const entry of timed) {
      if (entry.slow && entry.times.length > 0) continue
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
      size,
      gflops: flop / (ms / 1000) / 1e9,
      msPerIteration: ms,
      gflopsPerCpuSecond: flop / (median(cpuMs) / 1000) / 1e9,
      iterations: times.length,
    })
  }
  return group.map((implementation) => out.find((m) => m.implementation === implementation.name)!)
}

async function crossCheck(size: number): Promise<void> {
  // at each timed size, every GPU implementation must agree with our default kernel
  const a = randomMatrix(size * size, 11)
  const b = randomMatrix(size * size, 12)
  const byName = new Map(implementations.map((implementation) => [implementation.name, implementation]))
  const base = byName.get(defaultLabel)!
  await base.setup(size, a, b)
  const expected = await base.run()
  base.teardown()
  for (const name of [TFJS_WEBGPU_LABEL, WASM_LABEL]) {
    const implementation = byName.get(name)!
    await implementation.setup(size, a, b)
    const got = await implementation.run()
    implementation.teardown()
    // both sides float32: twice the single-sided tolerance
    if (maxViolation(expected, got, size) > 2)
      throw new Error(`${name} disagrees with ${defaultLabel} at ${size}`)
  }
}

let exitCode = 0
try {
  await checkAll()
  for (const size of sizes) {
    await crossCheck(size)
    // ours, tfjs-webgpu and the TS loop interleaved; wasm on its own afterwards, since tfjs tensors
    // belong to one tfjs backend at a time
    const interleaved = implementations.filter((implementation) => implementation.name !== WASM_LABEL)
    results.push(...(await measureInterleaved(interleaved, size)))
    results.push(...(await measureInterleaved([implementations.find((i) => i.name === WASM_LABEL)!], size)))
  }
} catch (error) {
  console.error(`benchmark failed: ${error instanceof Error ? error.stack : String(error)}`)
  exitCode = 1
}

// --- 3. report ----------------------------------------------------------------------------------

const loadAverage = (values: number[]) => values.map((value) => value.toFixed(1)).join(' ')
const machine =
  `${cpus().length}-core ${cpus()[0]?.model ?? process.arch}, Node ` +
  `${process.version}, ${ours.info.adapterName}`
const cpuFigure = (size: number, name: string) =>
  results.find((r) => r.size === size && r.implementation === name)?.gflopsPerCpuSecond
const ratioTo = (size: number, name: string) =>
  results.find((r) => r.size === size && r.implementation === name)?.gflops
if (flags.json) {
  const ratios = sizes.map((size) => {
    const tfjs = ratioTo(size, TFJS_WEBGPU_LABEL)
    const best = Math.max(
      ...results
        .filter((r) => r.size === size && r.implementation.startsWith('ours'))
        .map((r) => r.gflops ?? 0),
    )
    return {
      size,
      bestOursOverTfjsWebgpu: tfjs === undefined ? null : best / tfjs,
      defaultOursOverTfjsWebgpu: tfjs === undefined ? null : (ratioTo(size, defaultLabel) ?? 0) / tfjs,
      defaultOursOverTfjsWebgpuPerCpuSecond:
        (cpuFigure(size, defaultLabel) ?? Number.NaN) / (cpuFigure(size, TFJS_WEBGPU_LABEL) ?? Number.NaN),
    }
  })
  console.log(
    JSON.stringify(
      {
        machine,
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg(),
        defaultKernel: defaultLabel,
        results,
        ratios,
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
  console.log(`default kernel on this adapter: ${defaultLabel}`)
  for (const size of sizes) {
    const tfjs = ratioTo(size, TFJS_WEBGPU_LABEL)
    console.log(`\nN = ${size}`)
    const tfjsCpu = results.find(
      (r) => r.size === size && r.implementation === TFJS_WEBGPU_LABEL,
    )?.gflopsPerCpuSecond
    console.log(
      `${'implementation'.padEnd(40)} ${'GFLOP/s'.padStart(9)} ${'ms/iter'.padStart(10)} ` +
        `${'x tfjs-webgpu'.padStart(14)} ${'GFLOP/cpu-s'.padStart(12)} ${'x tfjs (cpu)'.padStart(13)}`,
    )
    for (const r of results.filter((result) => result.size === size)) {
      if (r.gflops === undefined) {
        console.log(`${r.implementation.padEnd(40)} skipped: ${r.skipped}`)
        continue
      }
      const ratio = tfjs === undefined ? '' : (r.gflops / tfjs).toFixed(2)
      const perCpu = r.gflopsPerCpuSecond ?? 0
      const cpuRatio = tfjsCpu === undefined ? '' : (perCpu / tfjsCpu).toFixed(2)
      console.log(
        `${r.implementation.padEnd(40)} ${r.gflops.toFixed(2).padStart(9)} ` +
          `${r.msPerIteration!.toFixed(1).padStart(10)} ${ratio.padStart(14)} ` +
          `${perCpu.toFixed(2).padStart(12)} ${cpuRatio.padStart(13)}`,
      )
    }
    const ourDefault = ratioTo(size, defaultLabel)
    if (tfjs !== undefined && ourDefault !== undefined) {
      const cpuRatio = (cpuFigure(size, defaultLabel) ?? 0) / (tfjsCpu ?? Number.NaN)
      console.log(
        `=> default kernel / tfjs-webgpu at ${size}: ${(ourDefault / tfjs).toFixed(2)}x wall-clock, ` +
          `${cpuRatio.toFixed(2)}x per CPU-second (goal: >= 2.5x on lavapipe)`,
      )
    }
  }
}

ours.destroy()
// exit explicitly: the wasm backend's Emscripten runtime keeps its own handlers installed
process.exit(exitCode)
