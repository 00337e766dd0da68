// Typed wrappers for the optimizer kernels; constants resolved on the host like the reference.
import type { AdamWOptions, SgdMomentumOptions } from '../backend.js'
import { adamWConstants } from '../reference/optimizers.js'
import type { GpuRuntime } from '../runtime.js'
import { adamWSource, sgdMomentumSource } from '../wgsl/optimizers.js'
import { runElementwise } from './elementwise.js'
import { f32 } from './params.js'

export function runSgdMomentum(
  runtime: GpuRuntime,
  param: GPUBuffer,
  grad: GPUBuffer,
  velocity: GPUBuffer,
  count: number,
  options: SgdMomentumOptions,
): void {
  runElementwise(
    runtime,
    sgdMomentumSource,
    count,
    [f32(options.learningRate), f32(options.momentum ?? 0.9), f32(options.weightDecay ?? 0)],
    [param, grad, velocity],
  )
}

export function runAdamW(
  runtime: GpuRuntime,
  param: GPUBuffer,
  grad: GPUBuffer,
  m: GPUBuffer,
  v: GPUBuffer,
  count: number,
  options: AdamWOptions,
): void {
  const k = adamWConstants(options)
  runElementwise(
    runtime,
    adamWSource,
    count,
    [
      f32(k.learningRate),
      f32(k.beta1),
      f32(k.beta2),
      f32(k.epsilon),
      f32(k.weightDecay),
      f32(k.gradientScale),
      f32(k.biasCorrection1),
      f32(k.biasCorrection2),
    ],
    [param, grad, m, v],
  )
}
