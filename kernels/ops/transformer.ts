// Typed wrappers for the transformer kernels (WGSL in wgsl/transformer.ts). Filled in by the kernels
// work of the GPT model kind.
import type { GpuRuntime } from '../runtime.js'

const pending = (op: string): never => {
  throw new Error(`${op}: not implemented yet on webgpu`)
}

export function runAdd(
  _runtime: GpuRuntime,
  _a: GPUBuffer,
  _b: GPUBuffer,
  _y: GPUBuffer,
  _count: number,
): void {
  pending('add')
}
export function runEmbedding(
  _runtime: GpuRuntime,
  _table: GPUBuffer,
  _ids: GPUBuffer,
  _out: GPUBuffer,
  _rows: number,
  _width: number,
  _count: number,
): void {
  pending('embedding')
}
export function runEmbeddingBackward(
  _runtime: GpuRuntime,
  _gradOutput: GPUBuffer,
  _ids: GPUBuffer,
  _out: GPUBuffer,
  _rows: number,
  _width: number,
  _count: number,
): void {
  pending('embeddingBackward')
}
export function runLayerNorm(
  _runtime: GpuRuntime,
  _x: GPUBuffer,
  _gamma: GPUBuffer,
  _beta: GPUBuffer,
  _y: GPUBuffer,
  _mean: GPUBuffer,
  _rstd: GPUBuffer,
  _m: number,
  _d: number,
  _epsilon: number,
): void {
  pending('layerNorm')
}
export function runLayerNormBackward(
  _runtime: GpuRuntime,
  _gradOutput: GPUBuffer,
  _x: GPUBuffer,
  _gamma: GPUBuffer,
  _mean: GPUBuffer,
  _rstd: GPUBuffer,
  _gradInput: GPUBuffer,
  _gradGamma: GPUBuffer,
  _gradBeta: GPUBuffer,
  _m: number,
  _d: number,
): void {
  pending('layerNormBackward')
}
export function runGelu(_runtime: GpuRuntime, _x: GPUBuffer, _y: GPUBuffer, _count: number): void {
  pending('gelu')
}
export function runGeluBackward(
  _runtime: GpuRuntime,
  _gradOutput: GPUBuffer,
  _x: GPUBuffer,
  _gradInput: GPUBuffer,
  _count: number,
): void {
  pending('geluBackward')
}
export function runSumSquares(_runtime: GpuRuntime, _x: GPUBuffer, _y: GPUBuffer, _count: number): void {
  pending('sumSquares')
}
