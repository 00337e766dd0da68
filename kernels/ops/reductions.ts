// Typed wrapper for the column reduction: repeated passes of reduceColumns until one row remains.
import { type DispatchStep, dispatch1d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import { REDUCE_ROWS_PER_CHUNK, reduceColumnsSource } from '../wgsl/reductions.js'
import { f32, packParams, u32 } from './params.js'

/**
 * y[N] = scale * sum over rows of x[M,N], written to `y`. M = 0 gives zeros times scale.
 * Intermediate partial sums live in pooled scratch buffers released after submission.
 */
export function runReduceRows(
  runtime: GpuRuntime,
  x: GPUBuffer,
  y: GPUBuffer,
  m: number,
  n: number,
  scale: number,
): void {
  if (n === 0) return
  if (m === 0) {
    runtime.clear(y, n * 4)
    return
  }
  const steps: DispatchStep[] = []
  const scratch: GPUBuffer[] = []
  let source = x
  let rows = m
  do {
    const chunks = Math.ceil(rows / REDUCE_ROWS_PER_CHUNK)
    const last = chunks === 1
    const target = last ? y : runtime.storageBuffer(chunks * n * 4)
    if (!last) scratch.push(target)
    steps.push({
      pipeline: runtime.pipeline(reduceColumnsSource),
      uniform: packParams([u32(rows), u32(n), u32(chunks), f32(last ? scale : 1)]),
      buffers: [source, target],
      workgroups: dispatch1d(
        chunks * n,
        ELEMENTWISE_WORKGROUP_SIZE,
        runtime.description.maxComputeWorkgroupsPerDimension,
      ),
    })
    source = target
    rows = chunks
  } while (rows > 1)
  runtime.run(steps)
  for (const buffer of scratch) runtime.releaseStorageBuffer(buffer)
}
