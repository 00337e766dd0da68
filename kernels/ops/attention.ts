// Typed wrappers for the attention kernels (WGSL in wgsl/attention.ts). Filled in by the kernels
// work of the GPT model kind.
import type { GpuRuntime } from '../runtime.js'
import type { AttentionSizes, CachedAttentionSizes } from './transformer-shapes.js'

const pending = (op: string): never => {
  throw new Error(`${op}: not implemented yet on webgpu`)
}

export function runAttention(
  _runtime: GpuRuntime,
  _qkv: GPUBuffer,
  _output: GPUBuffer,
  _logSumExp: GPUBuffer,
  _sizes: AttentionSizes,
): void {
  pending('attention')
}
export function runAttentionBackward(
  _runtime: GpuRuntime,
  _gradOutput: GPUBuffer,
  _qkv: GPUBuffer,
  _output: GPUBuffer,
  _logSumExp: GPUBuffer,
  _gradQkv: GPUBuffer,
  _sizes: AttentionSizes,
): void {
  pending('attentionBackward')
}
export function runAttentionCached(
  _runtime: GpuRuntime,
  _queries: GPUBuffer,
  _keys: GPUBuffer,
  _values: GPUBuffer,
  _output: GPUBuffer,
  _sizes: CachedAttentionSizes,
): void {
  pending('attentionCached')
}
