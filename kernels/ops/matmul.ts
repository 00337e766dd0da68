// Typed wrapper for the matmul kernels: picks the version, pads operands for the register-blocked
// kernel and derives dispatch sizes from the workgroup sizes in wgsl/matmul.ts.
import { type DispatchStep, dispatch1d, dispatch2d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import { padSource } from '../wgsl/elementwise.js'
import {
  DEFAULT_PACKED_SUBGROUP,
  DEFAULT_REGISTER_BLOCKED,
  type MatmulVersion,
  matmulNaiveSource,
  matmulPackedSubgroupSource,
  matmulRegisterBlockedSource,
  matmulTiledRegisterBlockedSource,
  matmulTiledSource,
  NAIVE_WORKGROUP,
  PACKED_COLUMNS_PER_LANE,
  type PackedSubgroupTuning,
  packPanelsSource,
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

/** a tuning of the register-blocked or the packed-subgroup kernel; other versions have none */
export type MatmulTuning = RegisterBlockedTuning | PackedSubgroupTuning

const isPackedSubgroupTuning = (tuning: MatmulTuning): tuning is PackedSubgroupTuning => 'rows' in tuning

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
  tuning?: MatmulTuning,
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
  if (version === 'packed-subgroup') {
    if (tuning !== undefined && !isPackedSubgroupTuning(tuning))
      throw new TypeError('packed-subgroup takes a PackedSubgroupTuning')
    runPackedSubgroup(runtime, a, b, c, dims, tuning ?? DEFAULT_PACKED_SUBGROUP, maxGroups)
    return
  }
  if (tuning !== undefined && isPackedSubgroupTuning(tuning))
    throw new TypeError('register-blocked takes a RegisterBlockedTuning')
  runRegisterBlocked(runtime, a, b, c, dims, tuning ?? DEFAULT_REGISTER_BLOCKED, maxGroups)
}

/** thrown when a kernel version needs a device feature this device lacks */
export class MatmulVersionUnsupportedError extends Error {
  static override name = 'MatmulVersionUnsupportedError'
  constructor(message: string) {
    super(message)
    this.name = 'MatmulVersionUnsupportedError'
  }
}

/**
 * Packs op(B) into column panels and, unless it can be read in place, op(A) into row panels
 * (wgsl/matmul.ts, packPanelsSource), K padded to a multiple of the subgroup size, then runs the
 * packed-subgroup kernel: one subgroup per (row panel, column panel) pair.
 */
function runPackedSubgroup(
  runtime: GpuRuntime,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  dims: MatmulDims,
  tuning: PackedSubgroupTuning,
  maxGroups: number,
): void {
  const subgroupSize = runtime.description.fixedSubgroupSize
  if (subgroupSize === undefined) {
    throw new MatmulVersionUnsupportedError(
      'packed-subgroup needs the subgroups feature with a fixed subgroup size; this device has neither',
    )
  }
  const { m, k, n, transposeA, transposeB } = dims
  const rows = tuning.rows
  const panelWidth = subgroupSize * PACKED_COLUMNS_PER_LANE
  const kPadded = Math.ceil(k / subgroupSize) * subgroupSize
  const rowPanels = Math.ceil(m / rows)
  const columnPanels = Math.ceil(n / panelWidth)
  const packedBytes = Math.max(rowPanels * rows, columnPanels * panelWidth) * kPadded * 4
  if (columnPanels > maxGroups || rowPanels > maxGroups || packedBytes > runtime.description.maxBufferBytes) {
    // an operand near the binding limit has no room for its padded copy: run unpacked instead
    runRegisterBlocked(runtime, a, b, c, dims, DEFAULT_REGISTER_BLOCKED, maxGroups)
    return
  }
  const pack = (
    source: GPUBuffer,
    extent: number,
    panelSize: number,
    panels: number,
    extentStride: number,
    depthStride: number,
  ): { buffer: GPUBuffer; step: DispatchStep } => {
    const count = (panels * kPadded * panelSize) / 4
    const buffer = runtime.storageBuffer(count * 16)
    return {
      buffer,
      step: {
        pipeline: runtime.pipeline(packPanelsSource),
        uniform: packParams([
          u32(count),
          u32(extent),
          u32(k),
          u32(kPadded),
          u32(panelSize / 4),
          u32(extentStride),
          u32(depthStride),
        ]),
        buffers: [source, buffer],
        workgroups: dispatch1d(count, ELEMENTWISE_WORKGROUP_SIZE, maxGroups),
      },
    }
  }
  // op(A)[i, p]: A stored [M,K] has strides (K, 1), A^T stored [K,M] has (1, M); likewise op(B)[p, j]
  // A needs no copy when its rows are already contiguous along k with no tail to pad
  const aInPlace = !transposeA && kPadded === k
  const packedA = aInPlace ? undefined : pack(a, m, rows, rowPanels, transposeA ? 1 : k, transposeA ? m : 1)
  const packedB = pack(b, n, panelWidth, columnPanels, transposeB ? k : 1, transposeB ? 1 : n)
  runtime.run([
    ...(packedA === undefined ? [] : [packedA.step]),
    packedB.step,
    {
      pipeline: runtime.pipeline(
        matmulPackedSubgroupSource(tuning, subgroupSize, aInPlace ? 'row-major' : 'packed'),
      ),
      uniform: packParams([u32(m), u32(n), u32(kPadded)]),
      buffers: [packedA?.buffer ?? a, packedB.buffer, c],
      workgroups: [columnPanels, rowPanels, 1],
    },
  ])
  if (packedA !== undefined) runtime.releaseStorageBuffer(packedA.buffer)
  runtime.releaseStorageBuffer(packedB.buffer)
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
