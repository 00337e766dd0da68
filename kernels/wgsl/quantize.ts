// Symmetric int8 quantization with per-block scales, in two passes:
// 1. one thread per block: scale = max|x| / 127;
// 2. one thread per 4 elements: quantize and pack into one u32 (little-endian bytes), so no two
//    threads write the same word whatever the block size.
// Dequantization: one thread per element, sign-extending its byte.
import { elementwiseEntry } from './common.js'

export const blockScalesSource = /* wgsl */ `
struct Params { length: u32, blockSize: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
${elementwiseEntry(`  if (index >= params.blocks) { return; }
  let start = index * params.blockSize;
  let end = min(start + params.blockSize, params.length);
  var maximum = 0.0;
  for (var i = start; i < end; i++) { maximum = max(maximum, abs(x[i])); }
  scales[index] = maximum / 127.0;`)}`

export const quantizePackSource = /* wgsl */ `
struct Params { length: u32, blockSize: u32, words: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> packed: array<u32>;

fn quantizeOne(i: u32) -> u32 {
  if (i >= params.length) { return 0u; }
  let scale = scales[i / params.blockSize];
  if (scale == 0.0) { return 0u; }
  let q = x[i] / scale;
  // round half away from zero, as the reference does
  let rounded = clamp(sign(q) * floor(abs(q) + 0.5), -127.0, 127.0);
  return bitcast<u32>(i32(rounded)) & 0xffu;
}
${elementwiseEntry(`  if (index >= params.words) { return; }
  let first = index * 4u;
  packed[index] = quantizeOne(first) | (quantizeOne(first + 1u) << 8u) | (quantizeOne(first + 2u) << 16u)
    | (quantizeOne(first + 3u) << 24u);`)}`

export const dequantizeSource = /* wgsl */ `
struct Params { length: u32, blockSize: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${elementwiseEntry(`  if (index >= params.length) { return; }
  let byte = (packed[index / 4u] >> (8u * (index % 4u))) & 0xffu;
  let q = bitcast<i32>(byte << 24u) >> 24u;
  y[index] = f32(q) * scales[index / params.blockSize];`)}`
