// Matmul kernels, C[M,N] = op(A)[M,K] op(B)[K,N], kept side by side (naive, tiled, register-blocked
// and the rest) so that each adapter gets the one measured fastest on it. All accumulate in float32
// in increasing k order.
//
// - naive: one thread per output, scalar loads with strides (transposes are just strides).
// - tiled: 16x16 shared-memory tiles, one output per thread. Usually beats naive on real GPUs; on
//   lavapipe workgroup barriers are expensive and it is slower than naive.
// - register-blocked: each thread computes a (4*rowVecs) x (4*colVecs) block of C from vec4 loads,
//   no shared memory. The operand dimension that is contiguous in memory is read 4 floats at a
//   time, so an operand whose stored rows are not a multiple of 4 floats is first copied into a
//   zero-padded buffer (ops/matmul.ts); the kernel is generated per transpose combination.
// - tiled-register-blocked: 64x64 blocks of C per workgroup staged through shared memory, 4x4
//   outputs per thread: the usual design for real GPUs (bench/RESULTS.md has no real-GPU figure).
// - packed-subgroup: for CPU-emulated adapters (lavapipe). B (and A when it is transposed or K
//   needs padding) is first copied into panels, GEMM-library style; one subgroup computes a
//   rows x (subgroupSize*4) block of C: each lane loads one value of A per row and per k step and
//   subgroupBroadcast hands it to the other lanes, so A costs 1/subgroupSize of a per-lane load per
//   use. Needs the `subgroups` feature and a fixed subgroup size (webgpu-backend.ts checks both).
//
// Why packing and broadcasts pay off on lavapipe (Mesa 25.0, measured with perf and gdb on the JIT
// code, bench/RESULTS.md): every storage load in a loop is emitted as a per-lane sequence
// (exec-mask test, bounds check, scalar load, insert: about 10 instructions per float and lane),
// even when the address is uniform, so loads, not arithmetic, bound a matmul. What is left to
// reduce is loads per multiply-add. And a column panel of a row-major B read with a stride of N
// floats (4 KiB at N=1024) misses cache on every row; a packed panel is read sequentially.

import { elementwiseEntry } from './common.js'

export const MATMUL_VERSIONS = [
  'naive',
  'tiled',
  'register-blocked',
  'tiled-register-blocked',
  'packed-subgroup',
] as const
export type MatmulVersion = (typeof MATMUL_VERSIONS)[number]

/** workgroup sizes, read by ops/matmul.ts to derive dispatch sizes */
export const NAIVE_WORKGROUP = { x: 16, y: 16 } as const
export const TILE_SIZE = 16

const stridedParams = /* wgsl */ `
struct Params {
  m: u32, n: u32, k: u32,
  // element strides of op(A)[i,p] = a[i*aRowStride + p*aColumnStride], same for op(B)
  aRowStride: u32, aColumnStride: u32, bRowStride: u32, bColumnStride: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
`

/** one thread per C[row, column] */
export const matmulNaiveSource = /* wgsl */ `${stridedParams}
@compute @workgroup_size(${NAIVE_WORKGROUP.x}, ${NAIVE_WORKGROUP.y})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let row = id.y;
  let column = id.x;
  if (row >= params.m || column >= params.n) { return; }
  var total = 0.0;
  for (var p = 0u; p < params.k; p++) {
    total += a[row * params.aRowStride + p * params.aColumnStride]
      * b[p * params.bRowStride + column * params.bColumnStride];
  }
  c[row * params.n + column] = total;
}
`

/** one thread per C[row, column], operands staged through TILE_SIZE x TILE_SIZE workgroup tiles */
export const matmulTiledSource = /* wgsl */ `${stridedParams}
var<workgroup> tileA: array<array<f32, ${TILE_SIZE}>, ${TILE_SIZE}>; // [row][p]
var<workgroup> tileB: array<array<f32, ${TILE_SIZE}>, ${TILE_SIZE}>; // [p][column]

@compute @workgroup_size(${TILE_SIZE}, ${TILE_SIZE})
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
  let row = group.y * ${TILE_SIZE}u + local.y;
  let column = group.x * ${TILE_SIZE}u + local.x;
  var total = 0.0;
  let tiles = (params.k + ${TILE_SIZE - 1}u) / ${TILE_SIZE}u;
  for (var t = 0u; t < tiles; t++) {
    let pA = t * ${TILE_SIZE}u + local.x;
    var valueA = 0.0;
    if (row < params.m && pA < params.k) { valueA = a[row * params.aRowStride + pA * params.aColumnStride]; }
    tileA[local.y][local.x] = valueA;
    let pB = t * ${TILE_SIZE}u + local.y;
    var valueB = 0.0;
    if (pB < params.k && column < params.n) {
      valueB = b[pB * params.bRowStride + column * params.bColumnStride];
    }
    tileB[local.y][local.x] = valueB;
    workgroupBarrier();
    for (var q = 0u; q < ${TILE_SIZE}u; q++) {
      total += tileA[local.y][q] * tileB[q][local.x];
    }
    workgroupBarrier();
  }
  if (row < params.m && column < params.n) { c[row * params.n + column] = total; }
}
`

export interface RegisterBlockedConfig {
  transposeA: boolean
  transposeB: boolean
  /** rows of C per thread / 4 */
  rowVecs: number
  /** columns of C per thread / 4 */
  colVecs: number
  workgroupX: number
  workgroupY: number
}

/** register-blocked tunings kept side by side, named by the block of C each thread computes */
export const REGISTER_BLOCKED_TUNINGS = {
  '4x4': { rowVecs: 1, colVecs: 1, workgroupX: 8, workgroupY: 8 },
  '4x8': { rowVecs: 1, colVecs: 2, workgroupX: 8, workgroupY: 8 },
  '8x4': { rowVecs: 2, colVecs: 1, workgroupX: 16, workgroupY: 8 },
} as const satisfies Record<string, Omit<RegisterBlockedConfig, 'transposeA' | 'transposeB'>>

/** the tuning `matmul` uses (best measured on lavapipe, see bench/RESULTS.md) */
export const DEFAULT_REGISTER_BLOCKED = REGISTER_BLOCKED_TUNINGS['8x4']

const lane = ['x', 'y', 'z', 'w'] as const

/**
 * Thread (gid.x, gid.y) owns rows r0 = gid.y*4*rowVecs.. and columns c0 = gid.x*4*colVecs.. of C.
 * Storage (in vec4 units, strides aStride/bStride per stored row):
 *   A   [M,Kp]: vec4 along k;  A^T [K,Mp]: vec4 along m;
 *   B   [K,Np]: vec4 along n;  B^T [N,Kp]: vec4 along k.
 * with Kp, Mp, Np rounded up to multiples of 4 and the padding zero (ops/matmul.ts copies an
 * operand into a padded buffer when needed; A^T and B also get zero rows up to Kp), so K is walked
 * in whole blocks of 4 with no tail. Rows that run past M or N are clamped on load and skipped on
 * store. One loop body keeps the LLVM compile on lavapipe short.
 */
export function matmulRegisterBlockedSource(config: RegisterBlockedConfig): string {
  const { transposeA, transposeB, rowVecs, colVecs, workgroupX, workgroupY } = config
  const rows = 4 * rowVecs
  const columns = 4 * colVecs
  const declarations: string[] = []
  for (let i = 0; i < rows; i++)
    for (let cv = 0; cv < colVecs; cv++) declarations.push(`var acc_${i}_${cv} = vec4<f32>(0.0);`)

  const block = (): string => {
    const lines: string[] = []
    const kRow = (j: number) => `(kb * 4u + ${j}u)`
    // A fragment: scalar op(A)[r0+i, kb*4+j] as an expression
    let aValue: (i: number, j: number) => string
    if (transposeA) {
      for (let rv = 0; rv < rowVecs; rv++) {
        for (let j = 0; j < 4; j++) {
          lines.push(
            `let t_${rv}_${j} = a[${kRow(j)} * params.aStride + min(rowVec0 + ${rv}u, params.aStride - 1u)];`,
          )
        }
      }
      aValue = (i, j) => `t_${Math.floor(i / 4)}_${j}.${lane[i % 4]}`
    } else {
      for (let i = 0; i < rows; i++) lines.push(`let a_${i} = a[aRow_${i} + kb];`)
      aValue = (i, j) => `a_${i}.${lane[j]}`
    }
    // B fragment: vec4 op(B)[kb*4+j, c0+4cv .. +3] as an expression
    let bValue: (j: number, cv: number) => string
    if (transposeB) {
      for (let c = 0; c < columns; c++) lines.push(`let u_${c} = b[bRow_${c} + kb];`)
      bValue = (j, cv) => {
        const parts = [0, 1, 2, 3].map((cc) => `u_${cv * 4 + cc}.${lane[j]}`)
        return `vec4<f32>(${parts.join(', ')})`
      }
    } else {
      for (let j = 0; j < 4; j++) {
        for (let cv = 0; cv < colVecs; cv++) {
          lines.push(
            `let b_${j}_${cv} = b[${kRow(j)} * params.bStride + min(colVec0 + ${cv}u, params.bStride - 1u)];`,
          )
        }
      }
      bValue = (j, cv) => `b_${j}_${cv}`
    }
    if (transposeB) {
      for (let j = 0; j < 4; j++)
        for (let cv = 0; cv < colVecs; cv++) lines.push(`let bt_${j}_${cv} = ${bValue(j, cv)};`)
      bValue = (j, cv) => `bt_${j}_${cv}`
    }
    for (let i = 0; i < rows; i++) {
      for (let cv = 0; cv < colVecs; cv++) {
        const terms = [0, 1, 2, 3].map((j) => `${aValue(i, j)} * ${bValue(j, cv)}`)
        lines.push(`acc_${i}_${cv} += ${terms.join(' + ')};`)
      }
    }
    return lines.map((line) => `    ${line}`).join('\n')
  }

  const rowSetup: string[] = []
  if (!transposeA) {
    for (let i = 0; i < rows; i++)
      rowSetup.push(`let aRow_${i} = min(r0 + ${i}u, params.m - 1u) * params.aStride;`)
  }
  if (transposeB) {
    for (let c = 0; c < columns; c++)
      rowSetup.push(`let bRow_${c} = min(c0 + ${c}u, params.n - 1u) * params.bStride;`)
  }
  const stores: string[] = []
  for (let i = 0; i < rows; i++) {
    stores.push(`if (r0 + ${i}u < params.m) {`)
    for (let cv = 0; cv < colVecs; cv++) {
      for (let cc = 0; cc < 4; cc++) {
        const column = `c0 + ${cv * 4 + cc}u`
        const index = `(r0 + ${i}u) * params.n + ${column}`
        stores.push(`  if (${column} < params.n) { c[${index}] = acc_${i}_${cv}.${lane[cc]}; }`)
      }
    }
    stores.push('}')
  }

  return /* wgsl */ `
// register-blocked matmul, ${rows}x${columns} outputs per thread
// transposeA=${transposeA} transposeB=${transposeB}
struct Params {
  m: u32, n: u32, k: u32,
  // vec4s per stored row of a and b
  aStride: u32, bStride: u32,
  // Kp / 4
  kBlocks: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(${workgroupX}, ${workgroupY})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let rowVec0 = id.y * ${rowVecs}u;
  let colVec0 = id.x * ${colVecs}u;
  let r0 = rowVec0 * 4u;
  let c0 = colVec0 * 4u;
  if (r0 >= params.m || c0 >= params.n) { return; }
  ${rowSetup.join('\n  ')}
  ${declarations.join('\n  ')}
  for (var kb = 0u; kb < params.kBlocks; kb++) {
${block()}
  }
  ${stores.join('\n  ')}
}
`
}

/** tiled-register-blocked: a workgroup of 16x16 threads computes a 64x64 block of C */
export const TILED_BLOCK = { threadsX: 16, threadsY: 16, tileM: 64, tileN: 64, tileK: 8 } as const

/**
 * Shared-memory tiles plus register blocking, for real GPUs: per k step of TILE_K, the workgroup
 * stages a 64xTILE_K slab of op(A) and a TILE_Kx64 slab of op(B) in workgroup memory (k-major),
 * then each thread accumulates a 4x4 block: rows local.y + 16i, columns local.x + 16j, so that
 * neighbouring threads read neighbouring words. Global loads walk each operand's contiguous
 * dimension (a uniform switch on the transposes, so one pipeline serves all four) so they
 * coalesce; edges load zeros.
 */
export const matmulTiledRegisterBlockedSource = (() => {
  const { tileM, tileN, tileK, threadsX, threadsY } = TILED_BLOCK
  const threads = threadsX * threadsY
  const lane = ['x', 'y', 'z', 'w']
  const accumulate = [0, 1, 2, 3].map((i) => `acc${i} += a.${lane[i]} * b;`).join('\n      ')
  const stores = [0, 1, 2, 3]
    .map((i) =>
      [0, 1, 2, 3]
        .map((j) => {
          const column = `column0 + ${16 * j}u`
          const store = `c[row${i} * params.n + ${column}] = acc${i}.${lane[j]};`
          return `if (row${i} < params.m && ${column} < params.n) { ${store} }`
        })
        .join('\n  '),
    )
    .join('\n  ')
  return /* wgsl */ `${stridedParams}
var<workgroup> tileA: array<f32, ${tileM * tileK}>; // [p][row]
var<workgroup> tileB: array<f32, ${tileN * tileK}>; // [p][column]

@compute @workgroup_size(${threadsX}, ${threadsY})
fn main(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_id) local: vec3<u32>,
  @builtin(local_invocation_index) flat: u32,
) {
  let rowBase = group.y * ${tileM}u;
  let columnBase = group.x * ${tileN}u;
  // A^T is contiguous along m (aRowStride == 1), A along k; B^T along k, B along n
  let aAlongRows = params.aRowStride == 1u;
  let bAlongK = params.bRowStride == 1u;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  let tiles = (params.k + ${tileK - 1}u) / ${tileK}u;
  for (var t = 0u; t < tiles; t++) {
    for (var e = flat; e < ${tileM * tileK}u; e += ${threads}u) {
      let r = select(e / ${tileK}u, e % ${tileM}u, aAlongRows);
      let p = select(e % ${tileK}u, e / ${tileM}u, aAlongRows);
      let row = rowBase + r;
      let kk = t * ${tileK}u + p;
      var value = 0.0;
      if (row < params.m && kk < params.k) { value = a[row * params.aRowStride + kk * params.aColumnStride]; }
      tileA[p * ${tileM}u + r] = value;
    }
    for (var e = flat; e < ${tileN * tileK}u; e += ${threads}u) {
      let col = select(e % ${tileN}u, e / ${tileK}u, bAlongK);
      let p = select(e / ${tileN}u, e % ${tileK}u, bAlongK);
      let column = columnBase + col;
      let kk = t * ${tileK}u + p;
      var value = 0.0;
      if (column < params.n && kk < params.k) {
        value = b[kk * params.bRowStride + column * params.bColumnStride];
      }
      tileB[p * ${tileN}u + col] = value;
    }
    workgroupBarrier();
    for (var p = 0u; p < ${tileK}u; p++) {
      let aBase = p * ${tileM}u + local.y;
      let bBase = p * ${tileN}u + local.x;
      let a = vec4<f32>(tileA[aBase], tileA[aBase + 16u], tileA[aBase + 32u], tileA[aBase + 48u]);
      let b = vec4<f32>(tileB[bBase], tileB[bBase + 16u], tileB[bBase + 32u], tileB[bBase + 48u]);
      ${accumulate}
    }
    workgroupBarrier();
  }
  let row0 = rowBase + local.y;
  let row1 = row0 + 16u;
  let row2 = row0 + 32u;
  let row3 = row0 + 48u;
  let column0 = columnBase + local.x;
  ${stores}
}
`
})()

export interface PackedSubgroupTuning {
  /** rows of C per subgroup: a multiple of 4 */
  rows: number
}

/** packed-subgroup tunings kept side by side, named by the block of C each lane computes */
export const PACKED_SUBGROUP_TUNINGS = {
  '8x4': { rows: 8 },
  '12x4': { rows: 12 },
  '16x4': { rows: 16 },
} as const satisfies Record<string, PackedSubgroupTuning>

/**
 * The tuning `matmul` uses: 8 rows x 4 columns per lane, the best median over three full benchmark
 * runs on lavapipe (bench/RESULTS.md; 12x4 close behind, 16x4 spills its 64 accumulator vectors
 * out of the 32 AVX-512 registers and is 1.5-2x slower)
 */
export const DEFAULT_PACKED_SUBGROUP = PACKED_SUBGROUP_TUNINGS['8x4']

/** columns of C per lane in the packed-subgroup kernel (one vec4 of a packed B row) */
export const PACKED_COLUMNS_PER_LANE = 4

/**
 * Copies op(X), a [depth, extent] or [extent, depth] matrix given by strides, into panels:
 * out[(panel * depthPadded + p) * panelWidth + j] = X(panel * panelWidth + j, p), zero outside X.
 * For A the extent is M (panels of rows), for B it is N (panels of columns); depth is K, padded
 * to a multiple of the subgroup size. One thread writes one vec4 (4 consecutive j).
 */
export const packPanelsSource = /* wgsl */ `
struct Params {
  count: u32,          // vec4s to write
  extent: u32, depth: u32, depthPadded: u32,
  panelVecs: u32,      // panelWidth / 4
  extentStride: u32, depthStride: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let j4 = index % params.panelVecs;
  let rest = index / params.panelVecs;
  let p = rest % params.depthPadded;
  let panel = rest / params.depthPadded;
  let e0 = (panel * params.panelVecs + j4) * 4u;
  var value = vec4<f32>(0.0);
  if (p < params.depth) {
    let base = p * params.depthStride;
    for (var lane = 0u; lane < 4u; lane++) {
      if (e0 + lane < params.extent) { value[lane] = src[base + (e0 + lane) * params.extentStride]; }
    }
  }
  dst[index] = value;`)}`

/**
 * Subgroup s (one workgroup of `subgroupSize` lanes) owns rows blockRow*rows.. and columns
 * panel*subgroupSize*4.. of C. Operands come packed by packPanelsSource:
 *   ap: [Mp/rows][Kp][rows] (as vec4s: [..][Kp][rows/4]), bp: [Np/(S*4)][Kp][S*4] (vec4s: [..][Kp][S]),
 * or, with aLayout 'row-major', A is read in place as [M, Kp] (when it is not transposed and K is a
 * multiple of S, packing it would only cost a copy: at N=256 the two packs took 25-30% of the time).
 * Per block of S k-steps lane l loads op(A)[row, kb*S + l] for its block's rows (rows/4 vec4 loads),
 * then for each k step kk: one vec4 of B (its 4 columns) and subgroupBroadcast(a, kk) for each row.
 * Padding is zero, so there are no bounds checks in the loop; stores skip rows and columns past M, N.
 */
export function matmulPackedSubgroupSource(
  tuning: PackedSubgroupTuning,
  subgroupSize: number,
  aLayout: 'packed' | 'row-major',
): string {
  const { rows } = tuning
  if (rows % 4 !== 0 || rows < 4)
    throw new RangeError(`packed-subgroup rows must be a multiple of 4, got ${rows}`)
  const rowVecs = rows / 4
  const declarations: string[] = []
  for (let i = 0; i < rows; i++) declarations.push(`var acc_${i} = vec4<f32>(0.0);`)
  const body: string[] = []
  const setup: string[] = []
  let aValue: (i: number) => string
  if (aLayout === 'packed') {
    for (let q = 0; q < rowVecs; q++)
      body.push(`let a_${q} = ap[(aBase + kb * ${subgroupSize}u + lane) * ${rowVecs}u + ${q}u];`)
    aValue = (i) => `a_${Math.floor(i / 4)}.${lane[i % 4]}`
  } else {
    // rows past M repeat row M-1 (uniform index); their results are not stored
    for (let i = 0; i < rows; i++)
      setup.push(`let aRow_${i} = min(row0 + ${i}u, params.m - 1u) * params.kPadded;`)
    for (let i = 0; i < rows; i++) body.push(`let a_${i} = ap[aRow_${i} + kb * ${subgroupSize}u + lane];`)
    aValue = (i) => `a_${i}`
  }
  for (let kk = 0; kk < subgroupSize; kk++) {
    body.push(`let b_${kk} = bp[(bBase + kb * ${subgroupSize}u + ${kk}u) * ${subgroupSize}u + lane];`)
    for (let i = 0; i < rows; i++) {
      body.push(`acc_${i} += subgroupBroadcast(${aValue(i)}, ${kk}u) * b_${kk};`)
    }
  }
  const stores: string[] = []
  for (let i = 0; i < rows; i++) {
    const row = `row0 + ${i}u`
    stores.push(`if (${row} < params.m) {`)
    for (let j = 0; j < PACKED_COLUMNS_PER_LANE; j++) {
      const column = `column0 + ${j}u`
      stores.push(`  if (${column} < params.n) { c[(${row}) * params.n + ${column}] = acc_${i}.${lane[j]}; }`)
    }
    stores.push('}')
  }
  return /* wgsl */ `enable subgroups;
// packed-subgroup matmul, ${rows}x${PACKED_COLUMNS_PER_LANE} outputs per lane
// subgroup size ${subgroupSize}, A ${aLayout}
struct Params { m: u32, n: u32, kPadded: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ap: array<${aLayout === 'packed' ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read> bp: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(${subgroupSize})
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let panel = group.x;
  let blockRow = group.y;
  let aBase = blockRow * params.kPadded;
  let bBase = panel * params.kPadded;
  let row0 = blockRow * ${rows}u;
  let column0 = (panel * ${subgroupSize}u + lane) * ${PACKED_COLUMNS_PER_LANE}u;
  ${setup.join('\n  ')}
  ${declarations.join('\n  ')}
  for (var kb = 0u; kb < params.kPadded / ${subgroupSize}u; kb++) {
    ${body.join('\n    ')}
  }
  ${stores.join('\n  ')}
}
`
}
