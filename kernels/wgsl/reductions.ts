// Column reduction: x[R,N] -> partial[ceil(R/rowsPerChunk), N], each thread summing one chunk of
// rows of one column in order. Applied repeatedly until one row is left; the last pass multiplies
// by `scale` (1 for sums, 1/rows for means). sum/mean of a whole tensor view it as [size, 1].
import { elementwiseEntry } from './common.js'

/** rows summed by one thread per pass */
export const REDUCE_ROWS_PER_CHUNK = 64

/** partial[chunk, column] = scale * sum of x[chunk*rowsPerChunk .. +rowsPerChunk, column] */
export const reduceColumnsSource = /* wgsl */ `
struct Params { rows: u32, columns: u32, chunks: u32, scale: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
${elementwiseEntry(`  if (index >= params.chunks * params.columns) { return; }
  let chunk = index / params.columns;
  let column = index % params.columns;
  let firstRow = chunk * ${REDUCE_ROWS_PER_CHUNK}u;
  let lastRow = min(firstRow + ${REDUCE_ROWS_PER_CHUNK}u, params.rows);
  var total = 0.0;
  for (var row = firstRow; row < lastRow; row++) {
    total += x[row * params.columns + column];
  }
  partial[index] = total * params.scale;`)}`
