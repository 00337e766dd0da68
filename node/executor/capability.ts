import { totalmem } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { Backend, BackendKind } from '../../kernels/backend.js'
import type { CpuEngineName } from '../../kernels/cpu/engine.js'
import type { WorkerOffer } from '../../protocols/tasks/spec.js'

/** One backend's figure as a node shows and advertises it. */
export interface BackendFigure {
  backend: BackendKind
  /** the cpu backend's engine; absent on webgpu */
  engine?: CpuEngineName
  adapterName: string
  /** measured float32 matmul throughput */
  matmulGflops: number
  /** whether this node computes on it */
  inUse: boolean
}

/** A backend that did not open on this machine, and why. */
export interface BackendUnavailable {
  backend: BackendKind
  engine?: CpuEngineName
  reason: string
}

/**
 * What a node can compute, measured at start-up and advertised to the network (the capability
 * record of protocols/discovery is built from it).
 */
export interface NodeCapability {
  backend: BackendKind
  /** e.g. "llvmpipe (LLVM 19.1.7, 256 bits)" or "cpu (plain TypeScript matmul)" */
  adapterName: string
  /** true for software adapters (lavapipe) and the cpu backend */
  isFallbackAdapter: boolean
  /** largest single buffer the backend takes, in bytes */
  maxBufferBytes: number
  /** host memory, in bytes */
  memoryBytes: number
  /** measured float32 matmul throughput */
  matmulGflops: number
  /** the matmul size the figure was measured with (n x n times n x n) */
  matmulSize: number
  /** set when webgpu was asked for and this node measured cpu instead: why */
  fallbackReason?: string
  /** the cpu backend's engine when `backend` is cpu and the probe named it */
  cpuEngine?: CpuEngineName
  /** every backend measured, fastest first; the one this node computes on has inUse */
  backends: BackendFigure[]
  /** how the backend in use was chosen: the fastest measured, or the config's pin */
  chosenBy?: 'fastest' | 'pinned'
  /**
   * where the figures came from: measured at this start or read from the data dir's cache; how long
   * that took; the load average they were measured under; whether they are cached now
   */
  probe?: {
    source: 'measured' | 'cache'
    seconds: number
    measuredAtMs: number
    loadAverage: number
    cached: boolean
  }
  /** backends that did not open here, and why */
  unavailable?: BackendUnavailable[]
}

/** What a node with this capability offers a task (the figures a task's requirements are held against). */
export function offerOf(
  capability: Pick<NodeCapability, 'backend' | 'maxBufferBytes' | 'matmulGflops'>,
): WorkerOffer {
  return {
    backend: capability.backend,
    maxBufferBytes: capability.maxBufferBytes,
    gflops: capability.matmulGflops,
  }
}

/** Measures a node's capability once, at start-up. */
export interface CapabilityProbe {
  measure(): Promise<NodeCapability>
}

export interface MatmulTiming {
  size: number
  seconds: number
  gflops: number
}

/** GFLOP/s of an n x n by n x n product (2 n^3 floating-point operations) done in `seconds` */
export function gflopsOf(size: number, seconds: number): number {
  return (2 * size ** 3) / seconds / 1e9
}

/**
 * C[n,n] = A[n,n] B[n,n] in plain TypeScript, loop order i-k-j so the inner loop walks rows of B and C.
 * The cpu figure of a node that has no compute backend loaded.
 */
export function plainMatmul(a: Float32Array, b: Float32Array, size: number): Float32Array {
  const c = new Float32Array(size * size)
  for (let i = 0; i < size; i++) {
    const rowC = i * size
    for (let k = 0; k < size; k++) {
      const aik = a[i * size + k]
      const rowB = k * size
      for (let j = 0; j < size; j++) c[rowC + j] += aik * b[rowB + j]
    }
  }
  return c
}

/** An n x n matrix of values in [-0.5, 0.5) from a fixed sequence, the same on every run. */
export function filledMatrix(size: number, seed: number): Float32Array {
  const values = new Float32Array(size * size)
  // a fixed linear congruential sequence: the figure must not depend on Math.random
  let state = seed >>> 0
  for (let index = 0; index < values.length; index++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    values[index] = state / 2 ** 32 - 0.5
  }
  return values
}

/** Times `repeats` plain-TypeScript matmuls of `size` after one warm-up and keeps the fastest. */
export function timePlainMatmul(size: number, repeats: number): MatmulTiming {
  const a = filledMatrix(size, 1)
  const b = filledMatrix(size, 2)
  plainMatmul(a, b, size)
  let best = Number.POSITIVE_INFINITY
  for (let repeat = 0; repeat < repeats; repeat++) {
    const start = performance.now()
    plainMatmul(a, b, size)
    best = Math.min(best, (performance.now() - start) / 1000)
  }
  return { size, seconds: best, gflops: gflopsOf(size, best) }
}

/** The plain probe's matmul size: 128 takes a few milliseconds, so start-up stays fast. */
export const PLAIN_PROBE_SIZE_DEFAULT = 128
/**
 * The backend probe's matmul size. 256 is large enough that a fast engine's time is not mostly the
 * call's fixed cost (OpenBLAS on 2 cores: ~0.25 ms, 100+ GFLOP/s) and a GPU dispatch is not mostly
 * launch latency (lavapipe: ~3 ms), and small enough that the slowest engine (the reference ops,
 * ~1.3 GFLOP/s: ~26 ms a product) keeps the whole start-up probe well under a second.
 */
export const BACKEND_PROBE_SIZE_DEFAULT = 256
/** Timed matmuls per measurement (after one warm-up). */
export const PROBE_REPEATS_DEFAULT = 3

export interface PlainCpuProbeInit {
  /** matmul size. @default PLAIN_PROBE_SIZE_DEFAULT */
  size?: number
  /** @default PROBE_REPEATS_DEFAULT */
  repeats?: number
}

/** The cpu capability of a node measured with a plain TypeScript matmul (no kernels loaded). */
export function plainCpuProbe(init: PlainCpuProbeInit = {}): CapabilityProbe {
  const size = init.size ?? PLAIN_PROBE_SIZE_DEFAULT
  const repeats = init.repeats ?? PROBE_REPEATS_DEFAULT
  return {
    async measure() {
      const timing = timePlainMatmul(size, repeats)
      const adapterName = 'cpu (plain TypeScript matmul)'
      return {
        backend: 'cpu',
        adapterName,
        isFallbackAdapter: true,
        maxBufferBytes: 2 ** 31 - 1,
        memoryBytes: totalmem(),
        matmulGflops: timing.gflops,
        matmulSize: size,
        backends: [{ backend: 'cpu', adapterName, matmulGflops: timing.gflops, inUse: true }],
      }
    },
  }
}

export interface BackendProbeInit {
  /** opens the backend to measure, e.g. `() => createBackend({ prefer: 'webgpu' })` from kernels/ */
  openBackend: () => Promise<Backend>
  /** @default BACKEND_PROBE_SIZE_DEFAULT */
  size?: number
  /** @default PROBE_REPEATS_DEFAULT */
  repeats?: number
  /**
   * keep the backend open after measuring (the executor reuses it) instead of destroying it
   * @default false
   */
  keepOpen?: boolean
}

export interface BackendTimingInit {
  /** @default BACKEND_PROBE_SIZE_DEFAULT */
  size?: number
  /** @default PROBE_REPEATS_DEFAULT */
  repeats?: number
}

/**
 * Times an n x n matmul through a backend: upload, one warm-up (which also compiles a GPU pipeline),
 * then `repeats` timed runs each ended by `sync`; the fastest counts.
 */
export async function timeBackendMatmul(
  backend: Backend,
  init: BackendTimingInit = {},
): Promise<MatmulTiming> {
  const size = init.size ?? BACKEND_PROBE_SIZE_DEFAULT
  const repeats = init.repeats ?? PROBE_REPEATS_DEFAULT
  const a = backend.upload(filledMatrix(size, 1), [size, size])
  const b = backend.upload(filledMatrix(size, 2), [size, size])
  try {
    backend.matmul(a, b).dispose()
    await backend.sync()
    let best = Number.POSITIVE_INFINITY
    for (let repeat = 0; repeat < repeats; repeat++) {
      const start = performance.now()
      const c = backend.matmul(a, b)
      await backend.sync()
      best = Math.min(best, (performance.now() - start) / 1000)
      c.dispose()
    }
    return { size, seconds: best, gflops: gflopsOf(size, best) }
  } finally {
    a.dispose()
    b.dispose()
  }
}

/**
 * The capability of any backend that implements the kernels/backend.ts contract: its own info plus
 * a matmul timed through it (timeBackendMatmul). It measures the one backend `openBackend` gives;
 * the daemon measures every backend and picks one (node/executor/backend-probe.ts).
 */
export function backendProbe(init: BackendProbeInit): CapabilityProbe {
  const size = init.size ?? BACKEND_PROBE_SIZE_DEFAULT
  const repeats = init.repeats ?? PROBE_REPEATS_DEFAULT
  return {
    async measure() {
      const backend = await init.openBackend()
      try {
        const timing = await timeBackendMatmul(backend, { size, repeats })
        const capability: NodeCapability = {
          backend: backend.kind,
          adapterName: backend.info.adapterName,
          isFallbackAdapter: backend.info.isFallbackAdapter || backend.kind === 'cpu',
          maxBufferBytes: backend.info.maxBufferBytes,
          memoryBytes: totalmem(),
          matmulGflops: timing.gflops,
          matmulSize: size,
          backends: [
            {
              backend: backend.kind,
              ...(backend.info.cpuEngine === undefined ? {} : { engine: backend.info.cpuEngine }),
              adapterName: backend.info.adapterName,
              matmulGflops: timing.gflops,
              inUse: true,
            },
          ],
        }
        if (backend.info.cpuEngine !== undefined) capability.cpuEngine = backend.info.cpuEngine
        if (backend.info.fallbackReason != null) capability.fallbackReason = backend.info.fallbackReason
        return capability
      } finally {
        if (init.keepOpen !== true) backend.destroy()
      }
    },
  }
}

/** A capability given as is (tests that need a node to advertise `webgpu`, the simulator). */
export function fixedCapabilityProbe(capability: NodeCapability): CapabilityProbe {
  return { measure: async () => ({ ...capability }) }
}
