// Which backend a node computes on. At start-up every backend that opens here is timed on a small
// matmul (the cpu backend on each engine that loads, webgpu where an adapter exists) and the fastest
// by GFLOP/s is used, unless the config pins a backend or a cpu engine. The figures are cached per
// machine in the data dir (backend-probe.json), so a restart skips measuring; a cache that is corrupt,
// of another format, or written for another machine or other engines is ignored and rewritten.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { arch, availableParallelism, cpus, loadavg, platform, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { logger } from '@libp2p/logger'
import { z } from 'zod'
import type { Backend, BackendKind, Tensor } from '../../kernels/backend.js'
import { CPU_ENGINE_NAMES, type CpuEngineName } from '../../kernels/cpu/engine.js'
import { CpuBackend, createBackend, loadCpuEngine } from '../../kernels/index.js'
import { loadNativeEngine } from '../../kernels/native/loader.js'
import { writeFileAtomic } from '../store/atomic-file.js'
import {
  BACKEND_PROBE_SIZE_DEFAULT,
  type BackendUnavailable,
  type CapabilityProbe,
  filledMatrix,
  gflopsOf,
  type NodeCapability,
} from './capability.js'

const log = logger('shardnet:executor:backend-probe')

/** The probe's cache, in the data dir. */
export const BACKEND_PROBE_FILE = 'backend-probe.json'
/** The cache file's format; a file of another format is measured again. */
export const BACKEND_PROBE_FORMAT = 1
/**
 * Each backend's timed matmuls run until they have taken this many ms (one always runs) or
 * PROBE_RUNS_MAX_DEFAULT are done, and the fastest counts. On a machine that other work shares, a few
 * runs can all land in someone else's time slice (OpenBLAS on 2 busy cores: 8 GFLOP/s over 3 runs,
 * 47 over 40 ms of runs, side by side); the best of many is what the backend can do. The reference
 * ops (~26 ms a product at BACKEND_PROBE_SIZE_DEFAULT here) get one or two.
 */
export const PROBE_BACKEND_CAP_MS_DEFAULT = 40
/** Rounds the time of each backend is split into, so a burst of other work slows all alike. */
export const PROBE_ROUNDS = 4
/** The most timed matmuls per backend: a fast engine (~0.25 ms a product) stops here first. */
export const PROBE_RUNS_MAX_DEFAULT = 100

/** The config's say in the choice: 'auto' takes the fastest; a pin is used even where it is slower. */
export interface BackendPins {
  backend: 'auto' | 'webgpu' | 'cpu'
  /** the cpu backend's engine; undefined: the fastest cpu engine */
  cpuEngine?: CpuEngineName
}

export const BACKEND_PINS_AUTO: BackendPins = Object.freeze({ backend: 'auto' })

/** One backend as the probe measured it. */
export interface MeasuredBackend {
  backend: BackendKind
  /** the cpu backend's engine; absent on webgpu */
  engine?: CpuEngineName
  adapterName: string
  isFallbackAdapter: boolean
  maxBufferBytes: number
  matmulGflops: number
}

export interface BackendProbeResult {
  /** the matmul size every figure was measured with (n x n times n x n) */
  matmulSize: number
  /** fastest first */
  measured: MeasuredBackend[]
  unavailable: BackendUnavailable[]
  measuredAtMs: number
  /** how long measuring took */
  seconds: number
  /** the machine's 1-minute load average when measuring began (os.loadavg) */
  loadAverage: number
}

/** A backend the probe tries: what it is and how to open it. */
export interface ProbeTarget {
  backend: BackendKind
  engine?: CpuEngineName
  /** opens it; throws, or returns a backend of another kind, where it cannot run here */
  open(): Promise<Backend>
}

/** Every backend a node can compute on: the cpu backend on each engine, then webgpu. */
export function probeTargets(): ProbeTarget[] {
  return [
    ...CPU_ENGINE_NAMES.map(
      (engine): ProbeTarget => ({
        backend: 'cpu',
        engine,
        open: () => createBackend({ prefer: 'cpu', cpuEngine: engine }),
      }),
    ),
    { backend: 'webgpu', open: () => createBackend({ prefer: 'webgpu' }) },
  ]
}

/** What identifies the machine and the engines a cache was measured with. */
export interface MachineKey {
  cpuModel: string
  cores: number
  memoryBytes: number
  arch: string
  platform: string
  node: string
  /** the native engine's description (BLAS, threads), or 'unavailable' */
  nativeEngine: string
  /** the wasm engine's package (@tensorflow/tfjs-backend-wasm) version, or 'absent' */
  wasmEngine: string
  /** the `webgpu` package's version, or 'absent' */
  webgpu: string
}

function packageVersion(name: string): string {
  try {
    const require = createRequire(import.meta.url)
    return String((require(`${name}/package.json`) as { version: unknown }).version)
  } catch {
    return 'absent'
  }
}

/** This machine's key. Cheap: it loads the native addon (milliseconds) but opens no device. */
export function machineKey(): MachineKey {
  const native = loadNativeEngine()
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryBytes: totalmem(),
    arch: arch(),
    platform: platform(),
    node: process.version,
    nativeEngine: 'engine' in native ? native.engine.description : 'unavailable',
    wasmEngine: packageVersion('@tensorflow/tfjs-backend-wasm'),
    webgpu: packageVersion('webgpu'),
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export interface MeasureInit {
  /** @default BACKEND_PROBE_SIZE_DEFAULT */
  size?: number
  /** timed runs per backend at most. @default PROBE_RUNS_MAX_DEFAULT */
  repeats?: number
  /** @default PROBE_BACKEND_CAP_MS_DEFAULT */
  capMs?: number
}

/** a backend under measurement: its operands on the device and its runs so far */
interface Trial {
  target: ProbeTarget
  backend: Backend
  a: Tensor
  b: Tensor
  runs: number
  spentMs: number
  bestMs: number
}

/**
 * Opens every target, uploads the operands and runs one warm-up product on each (a GPU compiles its
 * pipeline there), then times them in PROBE_ROUNDS rounds, a short burst of products each per round,
 * so a burst of other work on the machine slows every backend alike instead of the one that happened
 * to be running. The targets that do not open, or fail, say why. Everything opened is closed before
 * it returns.
 */
export async function measureBackends(
  targets: readonly ProbeTarget[],
  init: MeasureInit = {},
): Promise<BackendProbeResult> {
  const size = init.size ?? BACKEND_PROBE_SIZE_DEFAULT
  const runsMax = init.repeats ?? PROBE_RUNS_MAX_DEFAULT
  const capMs = init.capMs ?? PROBE_BACKEND_CAP_MS_DEFAULT
  const started = performance.now()
  const loadAverage = loadavg()[0]
  const trials: Trial[] = []
  const unavailable: BackendUnavailable[] = []
  const which = (target: ProbeTarget) => ({
    backend: target.backend,
    ...(target.engine === undefined ? {} : { engine: target.engine }),
  })
  const fail = (target: ProbeTarget, backend: Backend, error: unknown) => {
    unavailable.push({ ...which(target), reason: `measuring failed: ${messageOf(error)}` })
    const index = trials.findIndex((trial) => trial.backend === backend)
    if (index >= 0) trials.splice(index, 1)
    backend.destroy()
  }
  try {
    for (const target of targets) {
      let backend: Backend
      try {
        backend = await target.open()
      } catch (error) {
        unavailable.push({ ...which(target), reason: messageOf(error) })
        continue
      }
      if (backend.kind !== target.backend) {
        unavailable.push({
          ...which(target),
          reason: backend.info.fallbackReason ?? `${target.backend} did not open`,
        })
        backend.destroy()
        continue
      }
      try {
        const a = backend.upload(filledMatrix(size, 1), [size, size])
        const b = backend.upload(filledMatrix(size, 2), [size, size])
        backend.matmul(a, b).dispose()
        await backend.sync()
        trials.push({ target, backend, a, b, runs: 0, spentMs: 0, bestMs: Number.POSITIVE_INFINITY })
      } catch (error) {
        fail(target, backend, error)
      }
    }
    const burstMs = capMs / PROBE_ROUNDS
    for (;;) {
      const due = trials.filter((t) => t.runs === 0 || (t.runs < runsMax && t.spentMs < capMs))
      if (due.length === 0) break
      for (const trial of due) {
        try {
          // a burst of back-to-back products: an engine's worker threads wake on the first (on a busy
          // machine that can take a scheduler slice) and stay awake for the rest, as in training
          let burstSpent = 0
          do {
            const start = performance.now()
            const c = trial.backend.matmul(trial.a, trial.b)
            await trial.backend.sync()
            const ms = performance.now() - start
            c.dispose()
            trial.runs++
            trial.spentMs += ms
            burstSpent += ms
            trial.bestMs = Math.min(trial.bestMs, ms)
          } while (burstSpent < burstMs && trial.runs < runsMax)
        } catch (error) {
          fail(trial.target, trial.backend, error)
        }
      }
    }
    const measured: MeasuredBackend[] = trials.map((trial) => ({
      ...which(trial.target),
      adapterName: trial.backend.info.adapterName,
      isFallbackAdapter: trial.backend.info.isFallbackAdapter,
      maxBufferBytes: trial.backend.info.maxBufferBytes,
      matmulGflops: gflopsOf(size, trial.bestMs / 1000),
    }))
    measured.sort((a, b) => b.matmulGflops - a.matmulGflops)
    return {
      matmulSize: size,
      measured,
      unavailable,
      measuredAtMs: Date.now(),
      seconds: (performance.now() - started) / 1000,
      loadAverage,
    }
  } finally {
    for (const trial of trials) trial.backend.destroy()
  }
}

/** A pin that cannot be honoured here (the pinned engine or backend does not open). */
export class BackendUnavailableError extends Error {
  static override name = 'BackendUnavailableError'
  constructor(message: string) {
    super(message)
    this.name = 'BackendUnavailableError'
  }
}

export interface BackendChoice {
  chosen: MeasuredBackend
  /** 'pinned' when the config narrowed the choice */
  chosenBy: 'fastest' | 'pinned'
  /** set when webgpu was pinned and did not open: why (the node computes on cpu) */
  fallbackReason?: string
}

function isPinned(pins: BackendPins): boolean {
  return pins.backend !== 'auto' || pins.cpuEngine !== undefined
}

/**
 * The backend to compute on: the fastest measured that the pins allow. A pinned webgpu that did not
 * open falls back to cpu, saying why; a pinned cpu engine that did not open is an error.
 */
export function chooseBackend(
  result: BackendProbeResult,
  pins: BackendPins = BACKEND_PINS_AUTO,
): BackendChoice {
  // Among the cpu engines the first that runs wins (native, wasm, reference: CPU_ENGINE_NAMES), not
  // the best figure: their order holds on every machine measured (native 4-6x wasm, wasm ~30x the
  // reference; docs/cpu-backend.md), while a 40 ms figure taken on a busy machine can put native
  // (its threads wait for each other) below wasm, and the engine, with it the bits a node computes,
  // would change from one start to the next. The figures decide between cpu and webgpu only.
  const cpuRunning = result.measured.filter(
    (m) => m.backend === 'cpu' && (pins.cpuEngine === undefined || m.engine === pins.cpuEngine),
  )
  const firstEngine = CPU_ENGINE_NAMES.find((engine) => cpuRunning.some((m) => m.engine === engine))
  const cpu = cpuRunning.filter((m) => m.engine === firstEngine)
  const webgpu = result.measured.filter((m) => m.backend === 'webgpu')
  const reasonOf = (backend: BackendKind, engine?: CpuEngineName) =>
    result.unavailable.find((u) => u.backend === backend && (engine === undefined || u.engine === engine))
      ?.reason ?? 'not measured'
  let candidates: MeasuredBackend[]
  let fallbackReason: string | undefined
  if (pins.backend === 'cpu') candidates = cpu
  else if (pins.backend === 'webgpu' && webgpu.length > 0) candidates = webgpu
  else if (pins.backend === 'webgpu') {
    candidates = cpu
    fallbackReason = reasonOf('webgpu')
  } else candidates = [...webgpu, ...cpu]
  if (candidates.length === 0) {
    const what = pins.cpuEngine !== undefined ? `the cpu engine "${pins.cpuEngine}"` : 'the cpu backend'
    throw new BackendUnavailableError(
      `the config pins ${what}, which cannot run here: ${reasonOf('cpu', pins.cpuEngine)}`,
    )
  }
  const chosen = candidates.reduce((best, m) => (m.matmulGflops > best.matmulGflops ? m : best))
  return {
    chosen,
    chosenBy: isPinned(pins) ? 'pinned' : 'fastest',
    ...(fallbackReason === undefined ? {} : { fallbackReason }),
  }
}

const backendKind = z.enum(['webgpu', 'cpu'])
const cpuEngineName = z.enum(CPU_ENGINE_NAMES)

const cacheSchema = z.strictObject({
  format: z.literal(BACKEND_PROBE_FORMAT),
  machine: z.strictObject({
    cpuModel: z.string(),
    cores: z.number().int().positive(),
    memoryBytes: z.number().int().nonnegative(),
    arch: z.string(),
    platform: z.string(),
    node: z.string(),
    nativeEngine: z.string(),
    wasmEngine: z.string(),
    webgpu: z.string(),
  }),
  probe: z.strictObject({
    matmulSize: z.number().int().positive(),
    measured: z
      .array(
        z.strictObject({
          backend: backendKind,
          engine: cpuEngineName.optional(),
          adapterName: z.string().max(1024),
          isFallbackAdapter: z.boolean(),
          maxBufferBytes: z.number().int().nonnegative(),
          matmulGflops: z.number().positive(),
        }),
      )
      .max(16),
    unavailable: z
      .array(z.strictObject({ backend: backendKind, engine: cpuEngineName.optional(), reason: z.string() }))
      .max(16),
    measuredAtMs: z.number().int().nonnegative(),
    seconds: z.number().nonnegative(),
    loadAverage: z.number().nonnegative(),
  }),
})

type CacheFile = z.infer<typeof cacheSchema>

/** The cached figures when the file is valid and was written for `machine`; else why not. */
export async function readProbeCache(
  path: string,
  machine: MachineKey,
): Promise<{ result: BackendProbeResult } | { ignored: string }> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    return { ignored: `unreadable (${(error as NodeJS.ErrnoException).code ?? messageOf(error)})` }
  }
  let parsed: CacheFile
  try {
    const checked = cacheSchema.safeParse(JSON.parse(text))
    if (!checked.success) return { ignored: 'not a probe cache of this format' }
    parsed = checked.data
  } catch {
    return { ignored: 'not JSON' }
  }
  if (JSON.stringify(canonicalKey(parsed.machine)) !== JSON.stringify(canonicalKey(machine)))
    return { ignored: 'written for another machine or other engines' }
  return { result: parsed.probe }
}

/** the key's fields in one order, so two keys compare as strings */
function canonicalKey(key: MachineKey): MachineKey {
  return {
    cpuModel: key.cpuModel,
    cores: key.cores,
    memoryBytes: key.memoryBytes,
    arch: key.arch,
    platform: key.platform,
    node: key.node,
    nativeEngine: key.nativeEngine,
    wasmEngine: key.wasmEngine,
    webgpu: key.webgpu,
  }
}

export async function writeProbeCache(
  path: string,
  machine: MachineKey,
  result: BackendProbeResult,
): Promise<void> {
  const file: CacheFile = { format: BACKEND_PROBE_FORMAT, machine: canonicalKey(machine), probe: result }
  await writeFileAtomic(path, `${JSON.stringify(file, null, 2)}\n`)
}

export interface ProbeBackendsInit extends MeasureInit {
  /** the folder whose backend-probe.json caches the figures (it must exist); undefined: no cache */
  dataDir?: string
  /** @default BACKEND_PINS_AUTO */
  pins?: BackendPins
  /** @default probeTargets() */
  targets?: readonly ProbeTarget[]
  /** @default machineKey() */
  machine?: MachineKey
  /**
   * a probe measured while the 1-minute load average was above this is used but not cached, so the
   * next start measures again: figures taken while other work held the cores (a login, a build)
   * could rank the backends wrongly for good
   * @default the machine's core count
   */
  busyLoadAverage?: number
}

export interface ProbedBackends {
  result: BackendProbeResult
  source: 'measured' | 'cache'
  /** how long the probe took at this start, cache read included */
  seconds: number
  /** whether these figures are in the data dir's cache (read from it, or written to it now) */
  cached: boolean
}

/**
 * The figures of this machine's backends: from the cache when it is valid for this machine, else
 * measured. With a pin and no valid cache only what the pin allows is measured (a node pinned to cpu
 * opens no GPU device), and that partial probe is not cached; nor is one measured on a busy machine.
 */
export async function probeBackends(init: ProbeBackendsInit = {}): Promise<ProbedBackends> {
  const started = performance.now()
  const pins = init.pins ?? BACKEND_PINS_AUTO
  const machine = init.machine ?? machineKey()
  const path = init.dataDir === undefined ? undefined : join(init.dataDir, BACKEND_PROBE_FILE)
  if (path !== undefined) {
    const cached = await readProbeCache(path, machine)
    if ('result' in cached) {
      const seconds = (performance.now() - started) / 1000
      return { result: cached.result, source: 'cache', seconds, cached: true }
    }
    log('measuring the backends: the cache %s is %s', path, cached.ignored)
  }
  const targets = init.targets ?? probeTargets()
  const allowed = targets.filter((target) =>
    target.backend === 'cpu'
      ? pins.cpuEngine === undefined || target.engine === pins.cpuEngine
      : pins.backend !== 'cpu',
  )
  const result = await measureBackends(allowed, init)
  const busy = result.loadAverage > (init.busyLoadAverage ?? machine.cores)
  let cached = false
  if (path !== undefined && allowed.length === targets.length && !busy) {
    try {
      await writeProbeCache(path, machine, result)
      cached = true
    } catch (error) {
      // the cache only saves the next start some time; the node runs without it
      log.error('writing the backend probe cache %s failed: %e', path, error)
    }
  }
  if (busy) log('not caching the figures: load average %d on %d cores', result.loadAverage, machine.cores)
  return { result, source: 'measured', seconds: (performance.now() - started) / 1000, cached }
}

/** The capability of a node that computes on the backend chooseBackend picks from these figures. */
export function capabilityOf(probed: ProbedBackends, pins: BackendPins = BACKEND_PINS_AUTO): NodeCapability {
  const { chosen, chosenBy, fallbackReason } = chooseBackend(probed.result, pins)
  const capability: NodeCapability = {
    backend: chosen.backend,
    adapterName: chosen.adapterName,
    isFallbackAdapter: chosen.isFallbackAdapter || chosen.backend === 'cpu',
    maxBufferBytes: chosen.maxBufferBytes,
    memoryBytes: totalmem(),
    matmulGflops: chosen.matmulGflops,
    matmulSize: probed.result.matmulSize,
    backends: probed.result.measured.map((m) => ({
      backend: m.backend,
      ...(m.engine === undefined ? {} : { engine: m.engine }),
      adapterName: m.adapterName,
      matmulGflops: m.matmulGflops,
      inUse: m === chosen,
    })),
    chosenBy,
    probe: {
      source: probed.source,
      seconds: probed.seconds,
      measuredAtMs: probed.result.measuredAtMs,
      loadAverage: probed.result.loadAverage,
      cached: probed.cached,
    },
    unavailable: probed.result.unavailable,
  }
  if (chosen.engine !== undefined) capability.cpuEngine = chosen.engine
  if (fallbackReason !== undefined) capability.fallbackReason = fallbackReason
  return capability
}

/** The daemon's probe: every backend's figure (cached in `dataDir`), computing on the chosen one. */
export function probedCapability(init: ProbeBackendsInit = {}): CapabilityProbe {
  return { measure: async () => capabilityOf(await probeBackends(init), init.pins) }
}

/**
 * Opens the backend (and cpu engine) a capability names, as the executors compute on it. A cpu
 * backend chosen where webgpu could not open says why in its info.fallbackReason.
 */
export async function openCapabilityBackend(
  capability: Pick<NodeCapability, 'backend' | 'cpuEngine' | 'unavailable'>,
): Promise<Backend> {
  const webgpuMissing = capability.unavailable?.find((entry) => entry.backend === 'webgpu')
  if (capability.backend === 'cpu' && webgpuMissing !== undefined) {
    return new CpuBackend({
      engine: await loadCpuEngine(capability.cpuEngine),
      fallbackReason: webgpuMissing.reason,
    })
  }
  return createBackend({
    prefer: capability.backend,
    ...(capability.cpuEngine === undefined ? {} : { cpuEngine: capability.cpuEngine }),
  })
}
