// Transformer kernels: add, embedding gather and its deterministic scatter, LayerNorm forward and
// backward (one workgroup per row, shared-memory tree sums), GELU (tanh approximation) forward and
// backward, and the first pass of the sum of squares. Every sum runs in a fixed order, so results
// are the same bits from run to run; there are no atomics.
import { elementwiseEntry } from './common.js'

/** y = a + b */
export const addSource = /* wgsl */ `
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  y[index] = a[index] + b[index];`)}`

/** the WGSL test that an id (float32) is an integer in [0, rows) */
const validId = (id: string) =>
  `(${id} >= 0.0 && ${id} < f32(params.rows) && floor(${id}) == ${id} && u32(${id}) < params.rows)`

/** out[n, j] = table[ids[n], j], one thread per output element; an invalid id gives NaN */
export const embeddingSource = /* wgsl */ `
// nanBits: common.ts QUIET_NAN_BITS
struct Params { count: u32, width: u32, rows: u32, nanBits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let n = index / params.width;
  let column = index % params.width;
  let id = ids[n];
  if (${validId('id')}) {
    out[index] = table[u32(id) * params.width + column];
  } else {
    out[index] = bitcast<f32>(params.nanBits);
  }`)}`

/** the end of an occurrence chain in embeddingLinkSource's output */
export const EMBEDDING_CHAIN_END = 0xffffffff

/**
 * The first pass of embeddingBackward, one thread per id n: link[n] = the next m > n with the same
 * id (EMBEDDING_CHAIN_END if none) and link[count + n] = 1 when n is the id's first occurrence.
 * Invalid ids are never heads, so they contribute nothing.
 */
export const embeddingLinkSource = /* wgsl */ `
struct Params { count: u32, rows: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
@group(0) @binding(2) var<storage, read_write> link: array<u32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let id = ids[index];
  var next = ${EMBEDDING_CHAIN_END}u;
  var head = 0u;
  if (${validId('id')}) {
    for (var m = index + 1u; m < params.count; m++) {
      if (ids[m] == id) { next = m; break; }
    }
    head = 1u;
    for (var m = index; m > 0u; m--) {
      if (ids[m - 1u] == id) { head = 0u; break; }
    }
  }
  link[index] = next;
  link[params.count + index] = head;`)}`

/**
 * The second pass, one thread per (n, column): where n heads its id's chain, out[id, column] is the
 * sum of gradOutput[m, column] along the chain, in ascending m. Rows no id selects stay as the
 * clear before this pass left them (zero).
 */
export const embeddingScatterSource = /* wgsl */ `
struct Params { total: u32, width: u32, count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gradOutput: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read> link: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${elementwiseEntry(`  if (index >= params.total) { return; }
  let n = index / params.width;
  if (link[params.count + n] == 0u) { return; }
  let column = index % params.width;
  var total = 0.0;
  var m = n;
  loop {
    total += gradOutput[m * params.width + column];
    m = link[m];
    if (m == ${EMBEDDING_CHAIN_END}u) { break; }
  }
  out[u32(ids[n]) * params.width + column] = total;`)}`

/** threads per LayerNorm workgroup (one workgroup per row); a power of two for the tree sums */
export const LAYER_NORM_WORKGROUP_SIZE = 64

/** a fixed-order tree sum of one value per thread over the workgroup, with its shared array */
function workgroupSumFunction(type: 'f32' | 'vec2<f32>', size: number): string {
  return /* wgsl */ `
var<workgroup> partial: array<${type}, ${size}>;

// every thread must call this (uniform control flow); all get the total
fn workgroupSum(value: ${type}, local: u32) -> ${type} {
  partial[local] = value;
  workgroupBarrier();
  for (var stride = ${size / 2}u; stride > 0u; stride >>= 1u) {
    if (local < stride) { partial[local] = partial[local] + partial[local + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  // the next call overwrites partial: everyone reads the total first
  workgroupBarrier();
  return total;
}
`
}

/**
 * LayerNorm, one workgroup per row of x [rows, width]: mean, then the biased variance around it
 * (two passes over the row, both tree-summed), then y. Thread 0 writes mean[row] and rstd[row].
 */
export const layerNormSource = /* wgsl */ `
// nanBits: common.ts QUIET_NAN_BITS (the statistics of an empty row)
struct Params { rows: u32, width: u32, epsilon: f32, nanBits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> meanOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstdOut: array<f32>;
${workgroupSumFunction('f32', LAYER_NORM_WORKGROUP_SIZE)}
@compute @workgroup_size(${LAYER_NORM_WORKGROUP_SIZE})
fn main(
  @builtin(workgroup_id) workgroupId: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
  @builtin(num_workgroups) workgroupCount: vec3<u32>,
) {
  let row = workgroupId.y * workgroupCount.x + workgroupId.x;
  if (row >= params.rows) { return; }
  let width = params.width;
  if (width == 0u) {
    if (local == 0u) {
      meanOut[row] = bitcast<f32>(params.nanBits);
      rstdOut[row] = bitcast<f32>(params.nanBits);
    }
    return;
  }
  let base = row * width;
  var sum = 0.0;
  for (var j = local; j < width; j += ${LAYER_NORM_WORKGROUP_SIZE}u) { sum += x[base + j]; }
  let mean = workgroupSum(sum, local) / f32(width);
  var squares = 0.0;
  for (var j = local; j < width; j += ${LAYER_NORM_WORKGROUP_SIZE}u) {
    let centred = x[base + j] - mean;
    squares += centred * centred;
  }
  let variance = workgroupSum(squares, local) / f32(width);
  let rstd = 1.0 / sqrt(variance + params.epsilon);
  for (var j = local; j < width; j += ${LAYER_NORM_WORKGROUP_SIZE}u) {
    y[base + j] = (x[base + j] - mean) * rstd * gamma[j] + beta[j];
  }
  if (local == 0u) {
    meanOut[row] = mean;
    rstdOut[row] = rstd;
  }
}
`

/**
 * LayerNorm backward in one dispatch. The first `columnGroups` workgroups give one thread per
 * column: dGamma[j] and dBeta[j] summed over rows in ascending order. The rest are one workgroup
 * per row: with xhat = (x - mean) * rstd and g = dy * gamma,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), both means tree-summed together.
 */
export const layerNormBackwardSource = /* wgsl */ `
struct Params { rows: u32, width: u32, columnGroups: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gradOutput: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> gradInput: array<f32>;
@group(0) @binding(7) var<storage, read_write> gradGamma: array<f32>;
@group(0) @binding(8) var<storage, read_write> gradBeta: array<f32>;
${workgroupSumFunction('vec2<f32>', LAYER_NORM_WORKGROUP_SIZE)}
@compute @workgroup_size(${LAYER_NORM_WORKGROUP_SIZE})
fn main(
  @builtin(workgroup_id) workgroupId: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
  @builtin(num_workgroups) workgroupCount: vec3<u32>,
) {
  let group = workgroupId.y * workgroupCount.x + workgroupId.x;
  let width = params.width;
  if (group < params.columnGroups) {
    let column = group * ${LAYER_NORM_WORKGROUP_SIZE}u + local;
    if (column < width) {
      var dGamma = 0.0;
      var dBeta = 0.0;
      for (var r = 0u; r < params.rows; r++) {
        let dy = gradOutput[r * width + column];
        dGamma += dy * ((x[r * width + column] - mean[r]) * rstd[r]);
        dBeta += dy;
      }
      gradGamma[column] = dGamma;
      gradBeta[column] = dBeta;
    }
    return;
  }
  let row = group - params.columnGroups;
  if (row >= params.rows) { return; }
  let base = row * width;
  let rowMean = mean[row];
  let rowRstd = rstd[row];
  var sums = vec2<f32>(0.0, 0.0);
  for (var j = local; j < width; j += ${LAYER_NORM_WORKGROUP_SIZE}u) {
    let g = gradOutput[base + j] * gamma[j];
    let xhat = (x[base + j] - rowMean) * rowRstd;
    sums += vec2<f32>(g, g * xhat);
  }
  let means = workgroupSum(sums, local) / f32(width);
  for (var j = local; j < width; j += ${LAYER_NORM_WORKGROUP_SIZE}u) {
    let g = gradOutput[base + j] * gamma[j];
    let xhat = (x[base + j] - rowMean) * rowRstd;
    gradInput[base + j] = rowRstd * (g - means.x - xhat * means.y);
  }
}
`

/** GELU's constants: sqrt(2/pi) and the cubic coefficient; saturation as in the reference */
const GELU_CONSTANTS = /* wgsl */ `
const GELU_K = 0.7978845608028654;
const GELU_C = 0.044715;
// exp of at most 80 stays finite in float32 (e^80 ~ 5.5e34); beyond it sigmoid(2u) is 0 or 1 to
// float32 precision anyway
const GELU_EXPONENT_MAX = 80.0;
// beyond this |x| the second term of gelu'(x) is below e^-1900: zero
const GELU_SATURATION = 30.0;
`

/** y = x * sigmoid(2u) with u = k (x + c x^3): 0.5 x (1 + tanh(u)) without its cancellation */
export const geluSource = /* wgsl */ `
${GELU_CONSTANTS}
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let v = x[index];
  let twiceU = 2.0 * GELU_K * (v + GELU_C * v * v * v);
  y[index] = v / (1.0 + exp(clamp(-twiceU, -GELU_EXPONENT_MAX, GELU_EXPONENT_MAX)));`)}`

/** dx = dy * (s + 2 x k (1 + 3 c x^2) s (1 - s)) with s = sigmoid(2u) */
export const geluBackwardSource = /* wgsl */ `
${GELU_CONSTANTS}
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gradOutput: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> gradInput: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let v = x[index];
  let twiceU = clamp(2.0 * GELU_K * (v + GELU_C * v * v * v), -GELU_EXPONENT_MAX, GELU_EXPONENT_MAX);
  let s = 1.0 / (1.0 + exp(-twiceU));
  let oneMinusS = 1.0 / (1.0 + exp(twiceU));
  var slope = 2.0 * v * GELU_K * (1.0 + 3.0 * GELU_C * v * v) * s * oneMinusS;
  if (abs(v) > GELU_SATURATION) { slope = 0.0; }
  gradInput[index] = gradOutput[index] * (s + slope);`)}`

/** consecutive elements one thread of the sum of squares adds, in order */
export const SUM_SQUARES_CHUNK = 64

/**
 * The first pass of the sum of squares: partial[i] = sum of x[k]^2 over the i-th chunk of
 * SUM_SQUARES_CHUNK consecutive elements, in order; reduceColumns sums the partials further. No
 * workgroup memory: on lavapipe a workgroup barrier costs more than the whole chunk.
 */
export const sumSquaresSource = /* wgsl */ `
struct Params { count: u32, chunks: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
${elementwiseEntry(`  if (index >= params.chunks) { return; }
  let first = index * ${SUM_SQUARES_CHUNK}u;
  let last = min(first + ${SUM_SQUARES_CHUNK}u, params.count);
  var total = 0.0;
  for (var i = first; i < last; i++) {
    let value = x[i];
    total += value * value;
  }
  partial[index] = total;`)}`
