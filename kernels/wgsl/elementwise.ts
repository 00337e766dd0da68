// Elementwise kernels: bias add, ReLU forward/backward, axpy, scale, and the zero-padding copy the
// register-blocked matmul uses for operands whose dimensions are not multiples of 4.
// One thread per output element; `params.count` bounds the tail of the last workgroup.
import { elementwiseEntry } from './common.js'

/** y[i] = x[i] + bias[i % n] */
export const biasAddSource = /* wgsl */ `
struct Params { count: u32, n: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  y[index] = x[index] + bias[index % params.n];`)}`

/** y = x > 0 ? x : 0 (NaN maps to 0, as in the reference) */
export const reluSource = /* wgsl */ `
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let value = x[index];
  y[index] = select(0.0, value, value > 0.0);`)}`

/** dx = x > 0 ? dy : 0 */
export const reluBackwardSource = /* wgsl */ `
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gradOutput: array<f32>;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> gradInput: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  gradInput[index] = select(0.0, gradOutput[index], input[index] > 0.0);`)}`

/** y += alpha * x */
export const axpySource = /* wgsl */ `
struct Params { count: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  y[index] = y[index] + params.alpha * x[index];`)}`

/** y = alpha * x */
export const scaleSource = /* wgsl */ `
struct Params { count: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  y[index] = params.alpha * x[index];`)}`

/** dst[paddedRows, paddedColumns] = src[rows, columns] with zeros in the extra rows and columns */
export const padSource = /* wgsl */ `
struct Params { count: u32, rows: u32, columns: u32, paddedColumns: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let row = index / params.paddedColumns;
  let column = index % params.paddedColumns;
  var value = 0.0;
  if (row < params.rows && column < params.columns) { value = src[row * params.columns + column]; }
  dst[index] = value;`)}`
