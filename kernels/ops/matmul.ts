// Typed wrapper for the matmul kernels: picks the version, pads operands for the register-blocked
// kernel and derives dispatch sizes from the workgroup sizes in wgsl/matmul.ts.
import { type DispatchStep, dispatch1d, dispatch2d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import { padColumnsSource } from '../wgsl/elementwise.js'
import {
  DEFAULT_REGISTER_BLOCKED,
  type MatmulVersion,
  matmulNaiveSource,
  matmulRegisterBlockedSource,
  matmulTiledSource,
  NAIVE_WORKGROUP,
  type RegisterBlockedConfig,
  TILE_SIZE,
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
  // stored [rows, columns]; vec4 loads run along columns, which must be a multiple of 4
  const padded = (
    buffer: GPUBuffer,
    rows: number,
    columns: number,
  ): { buffer: GPUBuffer; stride: number } => {
    const paddedColumns = Math.ceil(columns / 4) * 4
    if (paddedColumns === columns) return { buffer, stride: columns / 4 }
    const target = runtime.storageBuffer(rows * paddedColumns * 4)
    scratch.push(target)
    steps.push({
      pipeline: runtime.pipeline(padColumnsSource),
      uniform: packParams([u32(rows * paddedColumns), u32(columns), u32(paddedColumns)]),
      buffers: [buffer, target],
      workgroups: dispatch1d(rows * paddedColumns, ELEMENTWISE_WORKGROUP_SIZE, maxGroups),
    })
    return { buffer: target, stride: paddedColumns / 4 }
  }
  const aStored = transposeA ? padded(a, k, m) : padded(a, m, k)
  const bStored = transposeB ? padded(b, n, k) : padded(b, k, n)
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
      u32(Math.floor(k / 4)),
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
