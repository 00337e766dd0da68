// Typed wrappers for the attention kernels (WGSL in wgsl/attention.ts): uniform packing, the
// workgroup grid (one group per block of ATTENTION_ROWS rows of one sequence and head, folded by
// dispatch1d) and the backward's scratch buffer of row statistics.
import { dispatch1d, type GpuRuntime } from '../runtime.js'
import {
  ATTENTION_ROWS,
  attentionDeltaSource,
  attentionForwardSource,
  attentionGradKeyValueSource,
  attentionGradQuerySource,
  headVectors,
} from '../wgsl/attention.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import { packParams, u32 } from './params.js'
import type { AttentionSizes, CachedAttentionSizes } from './transformer-shapes.js'

/** the grid of row-block workgroups for `rows` rows per (sequence, head) */
function rowGrid(runtime: GpuRuntime, rows: number, sequenceHeads: number) {
  const blocks = Math.ceil(rows / ATTENTION_ROWS)
  const groups = blocks * sequenceHeads
  return {
    blocks,
    groups,
    workgroups: dispatch1d(groups, 1, runtime.description.maxComputeWorkgroupsPerDimension),
  }
}

/** output [B*T, D] and logSumExp [B*H*T] of causal attention over qkv [B*T, 3D] */
export function runAttention(
  runtime: GpuRuntime,
  qkv: GPUBuffer,
  output: GPUBuffer,
  logSumExp: GPUBuffer,
  sizes: AttentionSizes,
): void {
  const { batch, sequence, heads, width, headWidth } = sizes
  const grid = rowGrid(runtime, sequence, batch * heads)
  runtime.run([
    {
      pipeline: runtime.pipeline(attentionForwardSource(headWidth, 'self')),
      uniform: packParams([
        u32(sequence),
        u32(sequence),
        u32(heads),
        u32(grid.groups),
        u32(grid.blocks),
        u32(0),
        u32(3 * width),
        u32(3 * width),
        u32(3 * width),
        u32(width),
        u32(0),
        u32(width),
        u32(2 * width),
        u32(headVectors(headWidth)),
      ]),
      buffers: [qkv, qkv, qkv, output, logSumExp],
      workgroups: grid.workgroups,
    },
  ])
}

/** gradQkv [B*T, 3D] of runAttention from gradOutput [B*T, D] and the forward's results */
export function runAttentionBackward(
  runtime: GpuRuntime,
  gradOutput: GPUBuffer,
  qkv: GPUBuffer,
  output: GPUBuffer,
  logSumExp: GPUBuffer,
  gradQkv: GPUBuffer,
  sizes: AttentionSizes,
): void {
  const { batch, sequence, heads, width, headWidth } = sizes
  const statistics = batch * heads * sequence
  const maxGroups = runtime.description.maxComputeWorkgroupsPerDimension
  const delta = runtime.storageBuffer(statistics * 4)
  const grid = rowGrid(runtime, sequence, batch * heads)
  const params = packParams([
    u32(sequence),
    u32(sequence),
    u32(heads),
    u32(grid.groups),
    u32(grid.blocks),
    u32(width),
    u32(headVectors(headWidth)),
  ])
  const buffers = [qkv, gradOutput, logSumExp, delta, gradQkv]
  runtime.run([
    {
      pipeline: runtime.pipeline(attentionDeltaSource(headWidth)),
      uniform: packParams([u32(statistics), u32(sequence), u32(heads), u32(width), u32(headWidth)]),
      buffers: [gradOutput, output, delta],
      workgroups: dispatch1d(statistics, ELEMENTWISE_WORKGROUP_SIZE, maxGroups),
    },
    {
      pipeline: runtime.pipeline(attentionGradQuerySource(headWidth)),
      uniform: params,
      buffers,
      workgroups: grid.workgroups,
    },
    {
      pipeline: runtime.pipeline(attentionGradKeyValueSource(headWidth)),
      uniform: params,
      buffers,
      workgroups: grid.workgroups,
    },
  ])
  runtime.releaseStorageBuffer(delta)
}

/** output [N, D] of queries [N, D] against the cached keys and values [L, D] */
export function runAttentionCached(
  runtime: GpuRuntime,
  queries: GPUBuffer,
  keys: GPUBuffer,
  values: GPUBuffer,
  output: GPUBuffer,
  sizes: CachedAttentionSizes,
): void {
  const { queries: count, keys: rows, width, heads, headWidth, offset } = sizes
  const grid = rowGrid(runtime, count, heads)
  runtime.run([
    {
      pipeline: runtime.pipeline(attentionForwardSource(headWidth, 'cached')),
      uniform: packParams([
        u32(count),
        u32(rows),
        u32(heads),
        u32(grid.groups),
        u32(grid.blocks),
        u32(offset),
        u32(width),
        u32(width),
        u32(width),
        u32(width),
        u32(0),
        u32(0),
        u32(0),
        u32(headVectors(headWidth)),
      ]),
      buffers: [queries, keys, values, output],
      workgroups: grid.workgroups,
    },
  ])
}
