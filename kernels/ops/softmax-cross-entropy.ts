// Typed wrapper for the fused softmax cross-entropy kernel (one thread per row).
import { dispatch1d, type GpuRuntime } from '../runtime.js'
import { QUIET_NAN_BITS } from '../wgsl/common.js'
import { SOFTMAX_WORKGROUP_SIZE, softmaxCrossEntropySource } from '../wgsl/softmax-cross-entropy.js'
import { f32, packParams, u32 } from './params.js'

export function runSoftmaxCrossEntropy(
  runtime: GpuRuntime,
  logits: GPUBuffer,
  labels: GPUBuffer,
  loss: GPUBuffer,
  gradLogits: GPUBuffer,
  m: number,
  c: number,
): void {
  if (m === 0) return
  runtime.run([
    {
      pipeline: runtime.pipeline(softmaxCrossEntropySource),
      uniform: packParams([u32(m), u32(c), f32(1 / m), u32(QUIET_NAN_BITS)]),
      buffers: [logits, labels, loss, gradLogits],
      workgroups: dispatch1d(m, SOFTMAX_WORKGROUP_SIZE, runtime.description.maxComputeWorkgroupsPerDimension),
    },
  ])
}
