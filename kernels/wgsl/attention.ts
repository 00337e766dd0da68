// Fused causal attention kernels (FlashAttention-2 in shape): the forward and the cached forward
// keep a running max, running sum and output accumulator per query row while streaming key/value
// tiles through workgroup memory, so no [T, T] score matrix is ever written; the backward recomputes
// the probabilities from the forward's log-sum-exp, once per query row for dQ and once per key row
// for dK and dV, each thread summing in a fixed order (deterministic, no atomics).
//
// One thread owns one row (a query row in the forward and dQ kernels, a key row in the dK/dV
// kernel); a workgroup owns ATTENTION_ROWS consecutive rows of one (sequence, head) and loads the
// other side's rows a tile at a time into workgroup memory, where every thread of the group reads
// them. Head rows are held as vec4s, the head width rounded up to a multiple of 4 with zeros, so
// any head width works; the sources are generated per head width (private arrays need constant
// sizes) and the runtime caches one pipeline per source.
import { elementwiseEntry } from './common.js'

/** rows (threads) per workgroup of the row kernels */
export const ATTENTION_ROWS = 64

/** most rows of the other side held in workgroup memory at a time */
export const ATTENTION_TILE_MAX = 64

/**
 * Workgroup memory the kernels plan for: WebGPU's guaranteed minimum of
 * maxComputeWorkgroupStorageSize, so the kernels run on every adapter.
 */
export const ATTENTION_WORKGROUP_BYTES_MAX = 16384

/** the running max before any key: below every score, exp(MASKED - score) is 0; WGSL has no -inf */
const MASKED = '-3.0e38'

/**
 * Head widths up to 4 * this loop over the head with a constant bound, which the shader compiler
 * unrolls: faster kernels for seconds of compile on lavapipe (kept in Mesa's disk shader cache).
 * Wider heads read the bound from the uniforms, which keeps the loops rolled: unrolled, lavapipe's
 * compile time grows to minutes at head width 128.
 */
export const ATTENTION_UNROLLED_VECTORS_MAX = 8

/** vec4s per head row */
export const headVectors = (headWidth: number): number => Math.ceil(headWidth / 4)

/**
 * Rows per tile for two [rows, head width] tiles plus `extraFloats` floats per row in workgroup
 * memory: the largest power of two within the budget, at most ATTENTION_TILE_MAX.
 */
export function attentionTileRows(headWidth: number, extraFloats: number): number {
  const bytesPerRow = 2 * headVectors(headWidth) * 16 + extraFloats * 4
  let rows = ATTENTION_TILE_MAX
  while (rows > 1 && rows * bytesPerRow > ATTENTION_WORKGROUP_BYTES_MAX) rows /= 2
  return rows
}

/**
 * A loop over the vec4s of a head row, c = 0 .. hv - 1 (see ATTENTION_UNROLLED_VECTORS_MAX: hv is
 * the constant HEAD_VECTORS for narrow heads, the same number read from the uniforms for wide ones).
 */
function headLoop(line: (c: string) => string): string {
  return `  for (var c = 0u; c < hv; c++) { ${line('c')} }`
}

/** a private array of the head row's vec4s, zero */
function declare(name: string): string {
  return `  var ${name}: array<vec4<f32>, HEAD_VECTORS>;`
}

/** a private array name = the head row at `base` of `matrix`, zero where `valid` is false */
function loadRow(name: string, matrix: string, base: string, valid: string, hd: number): string {
  const element = (e: number) =>
    `select(0.0, ${matrix}[${base} + c * 4u + ${e}u], ${valid} && c * 4u + ${e}u < ${hd}u)`
  return `${declare(name)}
${headLoop((c) => `${name}[${c}] = vec4<f32>(${[0, 1, 2, 3].map(element).join(', ')});`)}`
}

/**
 * Loads rows first .. first + TILE of two matrices (the same head columns) into the workgroup tiles
 * `tileA` and `tileB`, rows at or past `limit` and columns past the head width as zeros: all threads
 * of the group share the work.
 */
function loadTiles(
  a: { matrix: string; stride: string; column: string },
  b: { matrix: string; stride: string; column: string },
  rowBase: string,
  first: string,
  limit: string,
  hd: number,
): string {
  const vector = (matrix: string, base: string) =>
    `vec4<f32>(${[0, 1, 2, 3]
      .map((e) => `select(0.0, ${matrix}[${base} + ${e}u], ok && c * 4u + ${e}u < ${hd}u)`)
      .join(', ')})`
  return /* wgsl */ `
  for (var slot = local; slot < TILE * HEAD_VECTORS; slot += ROWS) {
    let r = slot / HEAD_VECTORS;
    let c = slot % HEAD_VECTORS;
    let row = ${first} + r;
    let ok = row < ${limit};
    let baseA = (${rowBase} + row) * (${a.stride}) + (${a.column}) + c * 4u;
    let baseB = (${rowBase} + row) * (${b.stride}) + (${b.column}) + c * 4u;
    tileA[slot] = ${vector(a.matrix, 'baseA')};
    tileB[slot] = ${vector(b.matrix, 'baseB')};
  }`
}

/** sum += dot(name[c], tile[r * HEAD_VECTORS + c]) over the head */
function dotTile(sum: string, name: string, tile: string): string {
  return headLoop((c) => `${sum} += dot(${name}[${c}], ${tile}[r * HEAD_VECTORS + ${c}]);`)
}

/** writes factor * name[c] to matrix[base ..] for the head's columns */
function storeRow(matrix: string, base: string, name: string, factor: string, hd: number): string {
  return headLoop((c) => {
    const stores = [0, 1, 2, 3].map(
      (e) => `if (${c} * 4u + ${e}u < ${hd}u) { ${matrix}[${base} + ${c} * 4u + ${e}u] = value[${e}]; }`,
    )
    return `let value = ${factor} * ${name}[${c}]; ${stores.join(' ')}`
  })
}

/** the head loops' bound (see ATTENTION_UNROLLED_VECTORS_MAX) */
const UNROLLED_BOUND = 'const hv = HEAD_VECTORS;'
const ROLLED_BOUND = 'let hv = params.headVectors;'

/** the head of every row kernel: workgroup folding, (sequence, head, block) and the row index */
const rowKernelEntry = (hd: number) => /* wgsl */ `
@compute @workgroup_size(${ATTENTION_ROWS})
fn main(
  @builtin(workgroup_id) workgroupId: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
  @builtin(num_workgroups) workgroupCount: vec3<u32>,
) {
  let group = workgroupId.y * workgroupCount.x + workgroupId.x;
  if (group >= params.groups) { return; }
  let sequenceHead = group / params.blocks;
  // the longest (last) blocks of a head first: the causal triangle's heavy work starts early
  let block = params.blocks - 1u - group % params.blocks;
  let sequence = sequenceHead / params.heads;
  let head = sequenceHead % params.heads;
  let index = block * ROWS + local;
  ${headVectors(hd) <= ATTENTION_UNROLLED_VECTORS_MAX ? UNROLLED_BOUND : ROLLED_BOUND}`

/** constants of a row kernel with tiles of `tile` rows */
function constants(hd: number, tile: number, tileFloats: number): string {
  const vectors = headVectors(hd)
  return /* wgsl */ `
const HEAD_VECTORS = ${vectors}u;
const TILE = ${tile}u;
const ROWS = ${ATTENTION_ROWS}u;
const SCALE = ${1 / Math.sqrt(hd)}f;
var<workgroup> tileA: array<vec4<f32>, ${tile * vectors}>;
var<workgroup> tileB: array<vec4<f32>, ${tile * vectors}>;
${tileFloats > 0 ? `var<workgroup> tileS: array<f32, ${tile}>;` : ''}
${tileFloats > 0 ? `var<workgroup> tileT: array<f32, ${tile}>;` : ''}`
}

/**
 * Forward attention (kind 'self': over packed qkv, writing the log-sum-exp too) or cached attention
 * (kind 'cached': separate query, key and value matrices, one sequence). Query `index` of a
 * sequence sits at absolute position offset + index and sees keys 0 ..= offset + index.
 *
 * Params: queries per sequence, key rows per sequence, heads, workgroups, blocks per head, offset,
 * row strides of q, k, v and output, the column of head 0 in q, k and v.
 */
export function attentionForwardSource(hd: number, kind: 'self' | 'cached'): string {
  const tile = attentionTileRows(hd, 0)
  return /* wgsl */ `
struct Params {
  queries: u32, keys: u32, heads: u32, groups: u32, blocks: u32, offset: u32,
  qStride: u32, kStride: u32, vStride: u32, outStride: u32, qColumn: u32, kColumn: u32, vColumn: u32,
  headVectors: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;
${kind === 'self' ? '@group(0) @binding(5) var<storage, read_write> logSumExp: array<f32>;' : ''}
${constants(hd, tile, 0)}
${rowKernelEntry(hd)}
  let valid = index < params.queries;
  let position = params.offset + index;
  let headColumn = head * ${hd}u;
  let queryBase = (sequence * params.queries + index) * params.qStride + params.qColumn + headColumn;
${loadRow('query', 'q', 'queryBase', 'valid', hd)}
${declare('acc')}
  var runningMax = ${MASKED};
  var runningSum = 0.0;
  // keys seen by the block's last row
  let keyLimit = params.offset + min(params.queries, (block + 1u) * ROWS);
  let keyBase = sequence * params.keys;
  for (var first = 0u; first < keyLimit; first += TILE) {
    workgroupBarrier();
    ${loadTiles(
      { matrix: 'k', stride: 'params.kStride', column: 'params.kColumn + headColumn' },
      { matrix: 'v', stride: 'params.vStride', column: 'params.vColumn + headColumn' },
      'keyBase',
      'first',
      'keyLimit',
      hd,
    )}
    workgroupBarrier();
    let count = min(TILE, keyLimit - first);
    for (var r = 0u; r < count; r++) {
      if (first + r <= position) {
        var s = 0.0;
${dotTile('s', 'query', 'tileA')}
        s *= SCALE;
        if (s > runningMax) {
          // a new maximum: rescale what was summed so far (rare after the first keys)
          let correction = exp(runningMax - s);
          runningSum *= correction;
${headLoop((c) => `acc[${c}] *= correction;`)}
          runningMax = s;
        }
        let p = exp(s - runningMax);
        runningSum += p;
${headLoop((c) => `acc[${c}] += p * tileB[r * HEAD_VECTORS + ${c}];`)}
      }
    }
  }
  if (!valid) { return; }
  let inverse = 1.0 / runningSum;
  let outBase = (sequence * params.queries + index) * params.outStride + headColumn;
${storeRow('output', 'outBase', 'acc', 'inverse', hd)}
  ${kind === 'self' ? 'logSumExp[sequenceHead * params.queries + index] = runningMax + log(runningSum);' : ''}
}
`
}

/**
 * delta[(b*H + h)*T + t] = sum over the head's columns of gradOutput * output (row b*T + t), the
 * D_i of FlashAttention-2's backward.
 * Params: count (B*H*T), sequence T, heads, width D.
 */
export function attentionDeltaSource(hd: number): string {
  return /* wgsl */ `
struct Params { count: u32, sequence: u32, heads: u32, width: u32, headWidth: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gradOutput: array<f32>;
@group(0) @binding(2) var<storage, read> output: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let t = index % params.sequence;
  let sequenceHead = index / params.sequence;
  let b = sequenceHead / params.heads;
  let h = sequenceHead % params.heads;
  let base = (b * params.sequence + t) * params.width + h * ${hd}u;
  var sum = 0.0;
  for (var c = 0u; c < params.headWidth; c++) { sum += gradOutput[base + c] * output[base + c]; }
  delta[index] = sum;`)}`
}

const BACKWARD_PARAMS = /* wgsl */ `
struct Params { queries: u32, keys: u32, heads: u32, groups: u32, blocks: u32, width: u32, headVectors: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> gradOutput: array<f32>;
@group(0) @binding(3) var<storage, read> logSumExp: array<f32>;
@group(0) @binding(4) var<storage, read> delta: array<f32>;
@group(0) @binding(5) var<storage, read_write> gradQkv: array<f32>;`

/**
 * dQ of query row t: sum over keys j <= t of P_tj (dP_tj - D_t) k_j / sqrt(hd), with
 * P_tj = exp(q_t . k_j / sqrt(hd) - lse_t) and dP_tj = dO_t . v_j; key/value tiles in workgroup
 * memory. Params: sequence T (queries and keys), heads, workgroups, blocks per head, width D.
 */
export function attentionGradQuerySource(hd: number): string {
  const tile = attentionTileRows(hd, 0)
  return /* wgsl */ `
${BACKWARD_PARAMS}
${constants(hd, tile, 0)}
${rowKernelEntry(hd)}
  let valid = index < params.queries;
  let headColumn = head * ${hd}u;
  let row = sequence * params.queries + index;
  let qkvStride = 3u * params.width;
${loadRow('query', 'qkv', 'row * qkvStride + headColumn', 'valid', hd)}
${loadRow('gradOut', 'gradOutput', 'row * params.width + headColumn', 'valid', hd)}
${declare('grad')}
  let statistic = sequenceHead * params.queries + min(index, params.queries - 1u);
  let lse = logSumExp[statistic];
  let rowDelta = delta[statistic];
  let keyLimit = min(params.queries, (block + 1u) * ROWS);
  let keyBase = sequence * params.keys;
  for (var first = 0u; first < keyLimit; first += TILE) {
    workgroupBarrier();
    ${loadTiles(
      { matrix: 'qkv', stride: 'qkvStride', column: 'params.width + headColumn' },
      { matrix: 'qkv', stride: 'qkvStride', column: '2u * params.width + headColumn' },
      'keyBase',
      'first',
      'keyLimit',
      hd,
    )}
    workgroupBarrier();
    let count = min(TILE, keyLimit - first);
    for (var r = 0u; r < count; r++) {
      if (first + r <= index) {
        var s = 0.0;
        var dp = 0.0;
${dotTile('s', 'query', 'tileA')}
${dotTile('dp', 'gradOut', 'tileB')}
        let ds = exp(s * SCALE - lse) * (dp - rowDelta);
${headLoop((c) => `grad[${c}] += ds * tileA[r * HEAD_VECTORS + ${c}];`)}
      }
    }
  }
  if (!valid) { return; }
  let outBase = row * qkvStride + headColumn;
${storeRow('gradQkv', 'outBase', 'grad', 'SCALE', hd)}
}
`
}

/**
 * dK and dV of key row j: dV_j = sum over queries i >= j of P_ij dO_i, dK_j = sum of
 * P_ij (dP_ij - D_i) q_i / sqrt(hd); query and output-gradient tiles, with their lse and D, in
 * workgroup memory. Same params as attentionGradQuerySource.
 */
export function attentionGradKeyValueSource(hd: number): string {
  const tile = attentionTileRows(hd, 2)
  return /* wgsl */ `
${BACKWARD_PARAMS}
${constants(hd, tile, 2)}
${rowKernelEntry(hd)}
  let valid = index < params.keys;
  let headColumn = head * ${hd}u;
  let row = sequence * params.keys + index;
  let qkvStride = 3u * params.width;
${loadRow('key', 'qkv', 'row * qkvStride + params.width + headColumn', 'valid', hd)}
${loadRow('value', 'qkv', 'row * qkvStride + 2u * params.width + headColumn', 'valid', hd)}
${declare('gradKey')}
${declare('gradValue')}
  let queryBase = sequence * params.queries;
  let statisticBase = sequenceHead * params.queries;
  // queries from the tile holding the block's first key to the end of the sequence
  for (var first = (block * ROWS / TILE) * TILE; first < params.queries; first += TILE) {
    workgroupBarrier();
    ${loadTiles(
      { matrix: 'qkv', stride: 'qkvStride', column: 'headColumn' },
      { matrix: 'gradOutput', stride: 'params.width', column: 'headColumn' },
      'queryBase',
      'first',
      'params.queries',
      hd,
    )}
    for (var r = local; r < TILE; r += ROWS) {
      let i = min(first + r, params.queries - 1u);
      tileS[r] = logSumExp[statisticBase + i];
      tileT[r] = delta[statisticBase + i];
    }
    workgroupBarrier();
    let count = min(TILE, params.queries - first);
    for (var r = 0u; r < count; r++) {
      if (first + r >= index) {
        var s = 0.0;
        var dp = 0.0;
${dotTile('s', 'key', 'tileA')}
${dotTile('dp', 'value', 'tileB')}
        let p = exp(s * SCALE - tileS[r]);
        let ds = p * (dp - tileT[r]);
${headLoop((c) => `gradValue[${c}] += p * tileB[r * HEAD_VECTORS + ${c}];`)}
${headLoop((c) => `gradKey[${c}] += ds * tileA[r * HEAD_VECTORS + ${c}];`)}
      }
    }
  }
  if (!valid) { return; }
  let outBase = row * qkvStride + headColumn;
${storeRow('gradQkv', 'outBase + params.width', 'gradKey', 'SCALE', hd)}
${storeRow('gradQkv', 'outBase + 2u * params.width', 'gradValue', '1.0', hd)}
}
`
}
