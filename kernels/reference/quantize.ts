// Reference symmetric int8 quantization with one scale per block of `blockSize` elements.
import type { QuantizedInt8 } from '../backend.js'

/**
 * For each block b: scale[b] = max|x| / 127 (float32);
 * q[i] = clamp(roundHalfAwayFromZero(x[i] / scale), -127, 127).
 * A block of zeros gets scale 0 and values 0.
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
    const scale = Math.fround(max / 127)
    scales[b] = scale
    if (scale === 0) continue
    for (let i = start; i < end; i++) {
      const q = Math.fround(x[i] / scale)
      const rounded = Math.sign(q) * Math.floor(Math.abs(q) + 0.5)
      values[i] = Math.max(-127, Math.min(127, rounded))
    }
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
