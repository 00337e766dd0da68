// Matmul kernels, C[M,N] = op(A)[M,K] op(B)[K,N], kept side by side (STYLE.md: naive, tiled,
// register-blocked). All accumulate in float32 in increasing k order.
//
// - naive: one thread per output, scalar loads with strides (transposes are just strides).
// - tiled: 16x16 shared-memory tiles, one output per thread. Faster on real GPUs; on lavapipe
//   workgroup barriers are expensive and it is slower than naive (shared/notes/webgpu.md).
// - register-blocked: each thread computes a (4*rowVecs) x (4*colVecs) block of C from vec4 loads,
//   no shared memory. The operand dimension that is contiguous in memory is read 4 floats at a
//   time, so an operand whose stored rows are not a multiple of 4 floats is first copied into a
//   zero-padded buffer (ops/matmul.ts); the kernel is generated per transpose combination.

export const MATMUL_VERSIONS = ['naive', 'tiled', 'register-blocked'] as const
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
    total += a[row * params.aRowStride + p * params.aColumnStride] * b[p * params.bRowStride + column * params.bColumnStride];
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
    if (pB < params.k && column < params.n) { valueB = b[pB * params.bRowStride + column * params.bColumnStride]; }
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
  '8x8': { rowVecs: 2, colVecs: 2, workgroupX: 8, workgroupY: 8 },
} as const satisfies Record<string, Omit<RegisterBlockedConfig, 'transposeA' | 'transposeB'>>

/** the tuning `matmul` uses (best measured on lavapipe, see bench/RESULTS.md) */
export const DEFAULT_REGISTER_BLOCKED = REGISTER_BLOCKED_TUNINGS['4x8']

const lane = ['x', 'y', 'z', 'w'] as const

/**
 * Thread (gid.x, gid.y) owns rows r0 = gid.y*4*rowVecs.. and columns c0 = gid.x*4*colVecs.. of C.
 * Storage (in vec4 units, strides aStride/bStride per stored row):
 *   A   [M,Kp]: vec4 along k;  A^T [K,Mp]: vec4 along m;
 *   B   [K,Np]: vec4 along n;  B^T [N,Kp]: vec4 along k.
 * K is walked in blocks of 4. Rows that run past M or N are clamped on load and skipped on store;
 * in the last, partial k block the loads indexed by k (A^T and B rows) are guarded, and the
 * operands read along k are zero-padded in storage.
 */
export function matmulRegisterBlockedSource(config: RegisterBlockedConfig): string {
  const { transposeA, transposeB, rowVecs, colVecs, workgroupX, workgroupY } = config
  const rows = 4 * rowVecs
  const columns = 4 * colVecs
  const declarations: string[] = []
  for (let i = 0; i < rows; i++)
    for (let cv = 0; cv < colVecs; cv++) declarations.push(`var acc_${i}_${cv} = vec4<f32>(0.0);`)

  const block = (guarded: boolean): string => {
    const lines: string[] = []
    const kRow = (j: number) => `(kb * 4u + ${j}u)`
    const guard = (j: number, load: string) =>
      guarded
        ? `select(vec4<f32>(0.0), ${load.replace(kRow(j), `min(${kRow(j)}, params.k - 1u)`)}, ${kRow(j)} < params.k)`
        : load
    // A fragment: scalar op(A)[r0+i, kb*4+j] as an expression
    let aValue: (i: number, j: number) => string
    if (transposeA) {
      for (let rv = 0; rv < rowVecs; rv++) {
        for (let j = 0; j < 4; j++) {
          lines.push(
            `let t_${rv}_${j} = ${guard(j, `a[${kRow(j)} * params.aStride + min(rowVec0 + ${rv}u, params.aStride - 1u)]`)};`,
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
            `let b_${j}_${cv} = ${guard(j, `b[${kRow(j)} * params.bStride + min(colVec0 + ${cv}u, params.bStride - 1u)]`)};`,
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
        stores.push(
          `  if (${column} < params.n) { c[(r0 + ${i}u) * params.n + ${column}] = acc_${i}_${cv}.${lane[cc]}; }`,
        )
      }
    }
    stores.push('}')
  }

  return /* wgsl */ `
// register-blocked matmul: transposeA=${transposeA} transposeB=${transposeB}, ${rows}x${columns} outputs per thread
struct Params {
  m: u32, n: u32, k: u32,
  // vec4s per stored row of a and b
  aStride: u32, bStride: u32,
  // k blocks of 4 that need no guard
  fullBlocks: u32,
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
  for (var kb = 0u; kb < params.fullBlocks; kb++) {
${block(false)}
  }
  if (params.fullBlocks * 4u < params.k) {
    let kb = params.fullBlocks;
${block(true)}
  }
  ${stores.join('\n  ')}
}
`
}
