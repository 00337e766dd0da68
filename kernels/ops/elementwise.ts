// Typed wrappers for the elementwise kernels: bias add, ReLU forward/backward, axpy, scale.
import { dispatch1d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import {
  axpySource,
  biasAddSource,
  reluBackwardSource,
  reluSource,
  scaleSource,
} from '../wgsl/elementwise.js'
import { f32, type ParamField, packParams, u32 } from './params.js'

function runElementwise(
  runtime: GpuRuntime,
  source: string,
  count: number,
  fields: readonly ParamField[],
  buffers: GPUBuffer[],
): void {
  if (count === 0) return
  runtime.run([
    {
      pipeline: runtime.pipeline(source),
      uniform: packParams([u32(count), ...fields]),
      buffers,
      workgroups: dispatch1d(
        count,
        ELEMENTWISE_WORKGROUP_SIZE,
        runtime.description.maxComputeWorkgroupsPerDimension,
      ),
    },
  ])
}

/** y[count] = x + bias[i % n] */
export function runBiasAdd(
  runtime: GpuRuntime,
  x: GPUBuffer,
  bias: GPUBuffer,
  y: GPUBuffer,
  count: number,
  n: number,
) {
  runElementwise(runtime, biasAddSource, count, [u32(n)], [x, bias, y])
}

export function runRelu(runtime: GpuRuntime, x: GPUBuffer, y: GPUBuffer, count: number) {
  runElementwise(runtime, reluSource, count, [], [x, y])
}

export function runReluBackward(
  runtime: GpuRuntime,
  gradOutput: GPUBuffer,
  input: GPUBuffer,
  gradInput: GPUBuffer,
  count: number,
) {
  runElementwise(runtime, reluBackwardSource, count, [], [gradOutput, input, gradInput])
}

/** y += alpha * x, in place */
export function runAxpy(runtime: GpuRuntime, alpha: number, x: GPUBuffer, y: GPUBuffer, count: number) {
  runElementwise(runtime, axpySource, count, [f32(alpha)], [x, y])
}

export function runScale(runtime: GpuRuntime, x: GPUBuffer, y: GPUBuffer, alpha: number, count: number) {
  runElementwise(runtime, scaleSource, count, [f32(alpha)], [x, y])
}

export { runElementwise }
