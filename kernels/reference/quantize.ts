// Reference symmetric int8 quantization with one scale per block of `blockSize` elements.
//
// Every backend computes the same bits, so the definition uses only operations a GPU can do exactly:
// - scale = fl32(max|x| / 127), correctly rounded (JS: float64 division then one rounding to float32,
//   which equals the direct rounding because 53 >= 2 * 24 + 2; WGSL: integer division of mantissas);
// - q = the integer nearest the EXACT quotient |x| / scale (not a rounded float quotient), an exact
//   half going away from zero, clamped to 127, with the sign of x. Exact in float64 here: 2|x| and
//   (2k +- 1) * scale (8 by 24 significant bits) are representable, so the comparisons are exact;
// - a block whose largest magnitude is below INT8_BLOCK_MAX_MIN gets scale 0 and values 0: its scale
//   would be subnormal or nearly so, and GPUs may flush subnormals to zero.
import type { QuantizedInt8 } from '../backend.js'

/** blocks whose largest magnitude is below this quantize to scale 0 (keeps every scale normal) */
export const INT8_BLOCK_MAX_MIN = 2 ** -100

/** the smallest nonzero scale a quantizer produces: fl32(INT8_BLOCK_MAX_MIN / 127) */
export const INT8_SCALE_MIN = Math.fround(INT8_BLOCK_MAX_MIN / 127)

/** the scale of a block whose largest magnitude is `maxAbs` */
export function int8BlockScale(maxAbs: number): number {
  return maxAbs < INT8_BLOCK_MAX_MIN ? 0 : Math.fround(maxAbs / 127)
}

/** how near a half the float64 quotient must be to be checked exactly (its error is below 2^-45) */
const HALF_MARGIN = 2 ** -40

/**
 * x / scale rounded to the nearest integer (an exact half away from zero) and clamped to
 * [-127, 127], for a float32 x and a nonzero float32 scale; 0 for NaN.
 */
export function quantizeInt8Value(x: number, scale: number): number {
  const magnitude = Math.abs(x)
  // the float64 quotient (at most ~128, relative error 2^-53) decides unless it is within
  // HALF_MARGIN of a half; there exact comparisons settle it
  const shifted = magnitude / scale + 0.5
  let k = Math.floor(shifted)
  const fraction = shifted - k
  if (fraction < HALF_MARGIN || fraction > 1 - HALF_MARGIN) {
    while (k > 0 && 2 * magnitude < (2 * k - 1) * scale) k--
    while (2 * magnitude >= (2 * k + 1) * scale) k++
  }
  // k | 0 is 0 for NaN; the sign applied by a mask, not a branch (random signs mispredict)
  const clamped = Math.min(k, 127) | 0
  const negative = -((x < 0) as unknown as number)
  return (clamped ^ negative) - negative
}

/**
 * For each block b: scale[b] = int8BlockScale(max|x|); q[i] = quantizeInt8Value(x[i], scale[b]).
 * A block of zeros (or of magnitudes below INT8_BLOCK_MAX_MIN) gets scale 0 and values 0.
 */
export function quantizeInt8Reference(x: Float32Array, blockSize: number): QuantizedInt8 {
  const blocks = Math.ceil(x.length / blockSize)
  const values = new Int8Array(x.length)
  const scales = new Float32Array(blocks)
  for (let b = 0; b < blocks; b++) {
    const start = b * blockSize
    const end = Math.min(start + blockSize, x.length)
    let max = 0
    for (let i = start; i < end; i++) max = Math.max(max, Math.abs(x[i]))
    const scale = int8BlockScale(max)
    scales[b] = scale
    if (scale === 0) continue
    for (let i = start; i < end; i++) values[i] = quantizeInt8Value(x[i], scale)
  }
  return { values, scales, blockSize, length: x.length }
}

/** x[i] = q[i] * scale[floor(i / blockSize)] */
export function dequantizeInt8Reference(quantized: QuantizedInt8): Float32Array {
  const { values, scales, blockSize, length } = quantized
  const x = new Float32Array(length)
  // block by block: the same products as per element, without a division per value
  for (let b = 0, start = 0; start < length; b++, start += blockSize) {
    const scale = scales[b]
    const end = Math.min(start + blockSize, length)
    for (let i = start; i < end; i++) x[i] = values[i] * scale
  }
  return x
}
