// Typed wrappers for the transformer kernels (WGSL in wgsl/transformer.ts). Each op is one dispatch,
// except embeddingBackward (a clear, a linking pass over the ids and the scatter) and sumSquares on
// more than SUM_SQUARES_CHUNK elements (the column reduction's passes over the partial sums).
import { dispatch1d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE, QUIET_NAN_BITS } from '../wgsl/common.js'
import {
  addSource,
  embeddingLinkSource,
  embeddingScatterSource,
  embeddingSource,
  geluBackwardSource,
  geluSource,
  LAYER_NORM_WORKGROUP_SIZE,
  layerNormBackwardSource,
  layerNormSource,
  SUM_SQUARES_CHUNK,
  sumSquaresSource,
} from '../wgsl/transformer.js'
import { runElementwise } from './elementwise.js'
import { f32, packParams, u32 } from './params.js'
import { runReduceRows } from './reductions.js'

const maxPerDimension = (runtime: GpuRuntime) => runtime.description.maxComputeWorkgroupsPerDimension

/** y = a + b over `count` elements */
export function runAdd(runtime: GpuRuntime, a: GPUBuffer, b: GPUBuffer, y: GPUBuffer, count: number): void {
  runElementwise(runtime, addSource, count, [], [a, b, y])
}

/** out[count, width] = table[rows, width][ids] */
export function runEmbedding(
  runtime: GpuRuntime,
  table: GPUBuffer,
  ids: GPUBuffer,
  out: GPUBuffer,
  rows: number,
  width: number,
  count: number,
): void {
  runElementwise(
    runtime,
    embeddingSource,
    count * width,
    [u32(width), u32(rows), u32(QUIET_NAN_BITS)],
    [table, ids, out],
  )
}

/** out[rows, width]: row v sums gradOutput[n, :] over ids[n] = v in ascending n */
export function runEmbeddingBackward(
  runtime: GpuRuntime,
  gradOutput: GPUBuffer,
  ids: GPUBuffer,
  out: GPUBuffer,
  rows: number,
  width: number,
  count: number,
): void {
  const size = rows * width
  if (size === 0) return
  runtime.clear(out, size * 4)
  if (count === 0) return
  const link = runtime.storageBuffer(2 * count * 4)
  runtime.run([
    {
      pipeline: runtime.pipeline(embeddingLinkSource),
      uniform: packParams([u32(count), u32(rows)]),
      buffers: [ids, link],
      workgroups: dispatch1d(count, ELEMENTWISE_WORKGROUP_SIZE, maxPerDimension(runtime)),
    },
    {
      pipeline: runtime.pipeline(embeddingScatterSource),
      uniform: packParams([u32(count * width), u32(width), u32(count)]),
      buffers: [gradOutput, ids, link, out],
      workgroups: dispatch1d(count * width, ELEMENTWISE_WORKGROUP_SIZE, maxPerDimension(runtime)),
    },
  ])
  runtime.releaseStorageBuffer(link)
}

/** LayerNorm over rows of x [m, d]: y [m, d], mean [m], rstd [m] */
export function runLayerNorm(
  runtime: GpuRuntime,
  x: GPUBuffer,
  gamma: GPUBuffer,
  beta: GPUBuffer,
  y: GPUBuffer,
  mean: GPUBuffer,
  rstd: GPUBuffer,
  m: number,
  d: number,
  epsilon: number,
): void {
  if (m === 0) return
  runtime.run([
    {
      pipeline: runtime.pipeline(layerNormSource),
      uniform: packParams([u32(m), u32(d), f32(epsilon), u32(QUIET_NAN_BITS)]),
      buffers: [x, gamma, beta, y, mean, rstd],
      workgroups: dispatch1d(m, 1, maxPerDimension(runtime)),
    },
  ])
}

/** dx [m, d], dGamma [d], dBeta [d] of LayerNorm, in one dispatch */
export function runLayerNormBackward(
  runtime: GpuRuntime,
  gradOutput: GPUBuffer,
  x: GPUBuffer,
  gamma: GPUBuffer,
  mean: GPUBuffer,
  rstd: GPUBuffer,
  gradInput: GPUBuffer,
  gradGamma: GPUBuffer,
  gradBeta: GPUBuffer,
  m: number,
  d: number,
): void {
  if (d === 0) return
  const columnGroups = Math.ceil(d / LAYER_NORM_WORKGROUP_SIZE)
  runtime.run([
    {
      pipeline: runtime.pipeline(layerNormBackwardSource),
      uniform: packParams([u32(m), u32(d), u32(columnGroups)]),
      buffers: [gradOutput, x, gamma, mean, rstd, gradInput, gradGamma, gradBeta],
      workgroups: dispatch1d(columnGroups + m, 1, maxPerDimension(runtime)),
    },
  ])
}

/** y = gelu(x), tanh approximation */
export function runGelu(runtime: GpuRuntime, x: GPUBuffer, y: GPUBuffer, count: number): void {
  runElementwise(runtime, geluSource, count, [], [x, y])
}

/** dx = dy * gelu'(x) */
export function runGeluBackward(
  runtime: GpuRuntime,
  gradOutput: GPUBuffer,
  x: GPUBuffer,
  gradInput: GPUBuffer,
  count: number,
): void {
  runElementwise(runtime, geluBackwardSource, count, [], [gradOutput, x, gradInput])
}

/**
 * y[1] = sum of x^2: chunks of SUM_SQUARES_CHUNK consecutive squares summed into partial sums,
 * which the column reduction sums further (a fixed order: deterministic)
 */
export function runSumSquares(runtime: GpuRuntime, x: GPUBuffer, y: GPUBuffer, count: number): void {
  if (count === 0) {
    runtime.clear(y, 4)
    return
  }
  const chunks = Math.ceil(count / SUM_SQUARES_CHUNK)
  const partial = chunks === 1 ? y : runtime.storageBuffer(chunks * 4)
  runtime.run([
    {
      pipeline: runtime.pipeline(sumSquaresSource),
      uniform: packParams([u32(count), u32(chunks)]),
      buffers: [x, partial],
      workgroups: dispatch1d(chunks, ELEMENTWISE_WORKGROUP_SIZE, maxPerDimension(runtime)),
    },
  ])
  if (chunks === 1) return
  runReduceRows(runtime, partial, y, chunks, 1, 1)
  runtime.releaseStorageBuffer(partial)
}
