// Typed wrapper for the matmul kernels: picks the version, pads operands for the register-blocked
// kernel and derives dispatch sizes from the workgroup sizes in wgsl/matmul.ts.
import { type DispatchStep, dispatch1d, dispatch2d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import { padSource } from '../wgsl/elementwise.js'
import {
  DEFAULT_REGISTER_BLOCKED,
  type MatmulVersion,
  matmulNaiveSource,
  matmulRegisterBlockedSource,
  matmulTiledRegisterBlockedSource,
  matmulTiledSource,
  NAIVE_WORKGROUP,
  type RegisterBlockedConfig,
  TILE_SIZE,
  TILED_BLOCK,
} from '../wgsl/matmul.js'
import { packParams, u32 } from './params.js'

export interface MatmulDims {
  m: number
  k: number
  n: number
  transposeA: boolean
  transposeB: boolean
}

export type RegisterBlockedTuning = Omit<RegisterBlockedConfig, 'transposeA' | 'transposeB'>

function stridedParams(dims: MatmulDims): ArrayBuffer {
  const { m, k, n, transposeA, transposeB } = dims
  return packParams([
    u32(m),
    u32(n),
    u32(k),
    u32(transposeA ? 1 : k),
    u32(transposeA ? m : 1),
    u32(transposeB ? 1 : n),
    u32(transposeB ? k : 1),
  ])
}

/**
 * Enqueues C = op(A) op(B) into `c` (at least M*N floats) with the chosen kernel version and
 * enqueues it. Scratch buffers for padding go back to the pool at once (see runtime.releaseStorageBuffer).
 */
export function runMatmul(
  runtime: GpuRuntime,
  version: MatmulVersion,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  dims: MatmulDims,
  tuning: RegisterBlockedTuning = DEFAULT_REGISTER_BLOCKED,
): void {
  const { m, k, n } = dims
  if (m === 0 || n === 0) return
  const maxGroups = runtime.description.maxComputeWorkgroupsPerDimension
  if (k === 0) {
    runtime.clear(c, m * n * 4)
    return
  }
  if (version === 'naive') {
    runtime.run([
      {
        pipeline: runtime.pipeline(matmulNaiveSource),
        uniform: stridedParams(dims),
        buffers: [a, b, c],
        workgroups: dispatch2d(n, m, NAIVE_WORKGROUP.x, NAIVE_WORKGROUP.y, maxGroups),
      },
    ])
    return
  }
  if (version === 'tiled') {
    runtime.run([
      {
        pipeline: runtime.pipeline(matmulTiledSource),
        uniform: stridedParams(dims),
        buffers: [a, b, c],
        workgroups: dispatch2d(n, m, TILE_SIZE, TILE_SIZE, maxGroups),
      },
    ])
    return
  }
  if (version === 'tiled-register-blocked') {
    runtime.run([
      {
        pipeline: runtime.pipeline(matmulTiledRegisterBlockedSource),
        uniform: stridedParams(dims),
        buffers: [a, b, c],
        workgroups: dispatch2d(n, m, TILED_BLOCK.tileN, TILED_BLOCK.tileM, maxGroups),
      },
    ])
    return
  }
  runRegisterBlocked(runtime, a, b, c, dims, tuning, maxGroups)
}

function runRegisterBlocked(
  runtime: GpuRuntime,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  dims: MatmulDims,
  tuning: RegisterBlockedTuning,
  maxGroups: number,
): void {
  const { m, k, n, transposeA, transposeB } = dims
  const steps: DispatchStep[] = []
  const scratch: GPUBuffer[] = []
  const roundUp4 = (value: number) => Math.ceil(value / 4) * 4
  // stored [rows, columns]; vec4 loads run along columns, which must be a multiple of 4, and
  // operands whose rows are indexed by k need zero rows up to a multiple of 4 as well
  const padded = (
    buffer: GPUBuffer,
    rows: number,
    columns: number,
    paddedRows: number,
  ): { buffer: GPUBuffer; stride: number } => {
    const paddedColumns = roundUp4(columns)
    if (paddedColumns === columns && paddedRows === rows) return { buffer, stride: columns / 4 }
    const count = paddedRows * paddedColumns
    const target = runtime.storageBuffer(count * 4)
    scratch.push(target)
    steps.push({
      pipeline: runtime.pipeline(padSource),
      uniform: packParams([u32(count), u32(rows), u32(columns), u32(paddedColumns)]),
      buffers: [buffer, target],
      workgroups: dispatch1d(count, ELEMENTWISE_WORKGROUP_SIZE, maxGroups),
    })
    return { buffer: target, stride: paddedColumns / 4 }
  }
  const aStored = transposeA ? padded(a, k, m, roundUp4(k)) : padded(a, m, k, m)
  const bStored = transposeB ? padded(b, n, k, n) : padded(b, k, n, roundUp4(k))
  const config: RegisterBlockedConfig = { ...tuning, transposeA, transposeB }
  const rowsPerThread = 4 * tuning.rowVecs
  const columnsPerThread = 4 * tuning.colVecs
  steps.push({
    pipeline: runtime.pipeline(matmulRegisterBlockedSource(config)),
    uniform: packParams([
      u32(m),
      u32(n),
      u32(k),
      u32(aStored.stride),
      u32(bStored.stride),
      u32(roundUp4(k) / 4),
    ]),
    buffers: [aStored.buffer, bStored.buffer, c],
    workgroups: dispatch2d(
      Math.ceil(n / columnsPerThread),
      Math.ceil(m / rowsPerThread),
      tuning.workgroupX,
      tuning.workgroupY,
      maxGroups,
    ),
  })
  runtime.run(steps)
  for (const buffer of scratch) runtime.releaseStorageBuffer(buffer)
}
