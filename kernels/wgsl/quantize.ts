// Symmetric int8 quantization with per-block scales, in two passes, bit for bit the reference
// (reference/quantize.ts) on any device: both passes work on the float bits with integer
// arithmetic, because WGSL allows division 2.5 ulps of error and devices may flush subnormals.
// 1. one thread per block: max|x| over the bits (for non-negative floats the order of the bits is
//    the order of the values), then scale = fl32(max / 127) by integer division of the mantissa,
//    rounded to nearest even; a block below INT8_BLOCK_MAX_MIN gets scale 0;
// 2. one thread per 4 elements: q = the integer nearest |x| / scale (an exact half away from zero),
//    found by binary search over k in [0, 127] with exact integer comparisons 2|x| >= (2k-1) scale,
//    packed into one u32 (little-endian bytes), so no two threads write the same word.
// Dequantization: one thread per element, sign-extending its byte; f32(q) * scale is one correctly
// rounded product, and every nonzero scale a quantizer makes is normal.
import { INT8_BLOCK_MAX_MIN } from '../reference/quantize.js'
import { elementwiseEntry } from './common.js'

/** the bits of INT8_BLOCK_MAX_MIN (a power of two: exponent field only) */
const BLOCK_MAX_MIN_BITS = new Uint32Array(Float32Array.of(INT8_BLOCK_MAX_MIN).buffer)[0]

export const blockScalesSource = /* wgsl */ `
struct Params { length: u32, blockSize: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<u32>;

// fl32(m / 127) for the bits of a normal float m, rounded to nearest even
fn divideBy127(bits: u32) -> u32 {
  let exponent = bits >> 23u;
  // the mantissa with its implicit bit, shifted to fill 32 bits: [2^31, 2^32)
  let numerator = ((bits & 0x7fffffu) | 0x800000u) << 8u;
  let quotient = numerator / 127u;
  let remainder = numerator % 127u;
  // quotient is in [2^24, 2^26): keep 24 bits
  var shift = 1u;
  if (quotient >= 0x2000000u) { shift = 2u; }
  var kept = quotient >> shift;
  let dropped = quotient & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  if (dropped > half || (dropped == half && (remainder != 0u || (kept & 1u) == 1u))) { kept += 1u; }
  // value = kept * 2^(exponent - 150 - 8 + shift): the biased exponent of kept in [2^23, 2^24)
  var biased = exponent - 8u + shift;
  if (kept == 0x1000000u) {
    kept = 0x800000u;
    biased += 1u;
  }
  return (biased << 23u) | (kept & 0x7fffffu);
}

${elementwiseEntry(`  if (index >= params.blocks) { return; }
  let start = index * params.blockSize;
  let end = min(start + params.blockSize, params.length);
  var maximum = 0u;
  for (var i = start; i < end; i++) { maximum = max(maximum, x[i] & 0x7fffffffu); }
  if (maximum < ${BLOCK_MAX_MIN_BITS}u) {
    scales[index] = 0u;
  } else {
    scales[index] = divideBy127(maximum);
  }`)}`

export const quantizePackSource = /* wgsl */ `
struct Params { length: u32, blockSize: u32, words: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read_write> packed: array<u32>;

// a * 2^shift >= b, exactly, for a < 2^26 and 0 < b < 2^32
fn atLeast(a: u32, shift: i32, b: u32) -> bool {
  if (a == 0u) { return false; }
  if (shift >= 0) {
    if (shift >= 32 || a > (0xffffffffu >> u32(shift))) { return true; }
    return (a << u32(shift)) >= b;
  }
  let right = u32(-shift);
  if (right >= 32u || b > (0xffffffffu >> right)) { return false; }
  return a >= (b << right);
}

fn quantizeOne(i: u32) -> u32 {
  if (i >= params.length) { return 0u; }
  let scale = scales[i / params.blockSize];
  if (scale == 0u) { return 0u; }
  let bits = x[i];
  let magnitude = bits & 0x7fffffffu;
  // |x| = xMantissa * 2^xExponent (subnormal x included), scale = sMantissa * 2^sExponent (normal)
  var xMantissa = magnitude & 0x7fffffu;
  var xExponent = -149;
  if ((magnitude >> 23u) != 0u) {
    xMantissa |= 0x800000u;
    xExponent = i32(magnitude >> 23u) - 150;
  }
  let sMantissa = (scale & 0x7fffffu) | 0x800000u;
  let shift = xExponent - (i32(scale >> 23u) - 150);
  // the largest k in [0, 127] with k == 0 or |x| / scale >= k - 1/2, i.e. 2|x| >= (2k - 1) scale
  var k = 0u;
  for (var step = 64u; step > 0u; step = step >> 1u) {
    if (atLeast(2u * xMantissa, shift, (2u * (k + step) - 1u) * sMantissa)) { k += step; }
  }
  var q = i32(k);
  if ((bits & 0x80000000u) != 0u) { q = -q; }
  return bitcast<u32>(q) & 0xffu;
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
