// The public entry of the kernel library: createBackend picks WebGPU (Dawn) when it can and the
// CPU backend otherwise, saying why in info.fallbackReason; the CPU backend computes on the fastest
// engine that loads (kernels/cpu/engine.ts).
import { logger } from '@libp2p/logger'
import type { Backend } from './backend.js'
import type { CpuEngineName } from './cpu/engine.js'
import { loadCpuEngine } from './cpu/engines.js'
import { CpuBackend } from './cpu-backend.js'
import { acquireDawnDevice, type DeviceFactory } from './runtime.js'
import { WebGpuBackend } from './webgpu-backend.js'
import type { MatmulVersion } from './wgsl/matmul.js'

export type {
  AdamWOptions,
  AttentionDims,
  Backend,
  BackendInfo,
  BackendKind,
  CachedAttentionDims,
  MatmulOptions,
  QuantizedInt8,
  SgdMomentumOptions,
  Tensor,
} from './backend.js'
export { AliasedTensorError, ShapeError } from './backend.js'
export { CPU_ENGINE_NAMES, type CpuEngine, type CpuEngineName } from './cpu/engine.js'
export { CpuEngineUnavailableError, loadCpuEngine, nativeEngineError } from './cpu/engines.js'
export { CpuBackend, type CpuBackendOptions } from './cpu-backend.js'
export type { AcquiredDevice, DeviceFactory } from './runtime.js'
export { WebGpuBackend } from './webgpu-backend.js'
export { MATMUL_VERSIONS, type MatmulVersion } from './wgsl/matmul.js'

const log = logger('shardnet:kernels')

export interface CreateBackendOptions {
  /** @default 'webgpu' */
  prefer?: 'webgpu' | 'cpu'
  /** how to obtain the WebGPU device; @default Dawn through the `webgpu` package */
  deviceFactory?: DeviceFactory
  /** force a matmul kernel instead of the per-adapter choice */
  matmulVersion?: MatmulVersion
  /**
   * the cpu backend's engine; @default the fastest that loads (native, else wasm, else reference).
   * A named engine that cannot run throws CpuEngineUnavailableError.
   */
  cpuEngine?: CpuEngineName
}

/**
 * Returns a WebGPU backend when `prefer` is 'webgpu' (the default) and a device can be acquired;
 * otherwise the CPU backend, whose info.fallbackReason says why WebGPU was not used.
 */
export async function createBackend(options: CreateBackendOptions = {}): Promise<Backend> {
  const prefer = options.prefer ?? 'webgpu'
  if (prefer !== 'webgpu' && prefer !== 'cpu')
    throw new TypeError(`prefer must be 'webgpu' or 'cpu', got ${String(prefer)}`)
  if (prefer === 'cpu') return new CpuBackend({ engine: await loadCpuEngine(options.cpuEngine) })
  const factory = options.deviceFactory ?? acquireDawnDevice
  let acquired: Awaited<ReturnType<DeviceFactory>>
  try {
    acquired = await factory()
  } catch (error) {
    const reason = `webgpu unavailable: ${error instanceof Error ? error.message : String(error)}`
    log('falling back to the cpu backend: %s', reason)
    return new CpuBackend({ engine: await loadCpuEngine(options.cpuEngine), fallbackReason: reason })
  }
  return new WebGpuBackend(acquired, { matmulVersion: options.matmulVersion })
}
