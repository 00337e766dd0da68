// The public entry of the kernel library: createBackend picks WebGPU (Dawn) when it can and the
// CPU reference backend otherwise, saying why in info.fallbackReason.
import type { Backend } from './backend.js'
import { CpuBackend } from './cpu-backend.js'

export type {
  AdamWOptions,
  Backend,
  BackendInfo,
  BackendKind,
  MatmulOptions,
  QuantizedInt8,
  SgdMomentumOptions,
  Tensor,
} from './backend.js'
export { ShapeError } from './backend.js'

export interface CreateBackendOptions {
  /** @default 'webgpu' */
  prefer?: 'webgpu' | 'cpu'
}

export async function createBackend(options: CreateBackendOptions = {}): Promise<Backend> {
  const prefer = options.prefer ?? 'webgpu'
  if (prefer === 'cpu') return new CpuBackend()
  return new CpuBackend('the webgpu backend is not built yet')
}
