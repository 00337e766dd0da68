// Gradient compression for the wire: float32 as is, or symmetric int8 with one float32 scale per
// block (the reference ops of kernels/reference/quantize.ts, bit-identical to the backend's) and
// error feedback: what quantization loses in one step is added to the next step's gradient, so
// the error does not accumulate in the model (Seide et al. 2014, Karimireddy et al. 2019).
import type { QuantizedInt8 } from '../../kernels/backend.js'
import { dequantizeInt8Reference, quantizeInt8Reference } from '../../kernels/reference/quantize.js'
import { Gradient } from '../wire/training.js'
import { bytesToFloats, floatBytesView, floatsToBytes } from './params.js'
import type { Compression } from './types.js'

export const COMPRESSION_BLOCK_SIZE_DEFAULT = 256
export const BLOCK_SIZE_MAX = 1 << 20

/** A member's compressor: holds the error-feedback residual between steps. */
export class GradientCompressor {
  readonly compression: Compression
  readonly blockSize: number
  private residual: Float32Array | undefined

  constructor(compression: Compression, blockSize = COMPRESSION_BLOCK_SIZE_DEFAULT) {
    if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > BLOCK_SIZE_MAX) {
      throw new RangeError(`block size must be an integer in [1, ${BLOCK_SIZE_MAX}], got ${blockSize}`)
    }
    this.compression = compression
    this.blockSize = blockSize
  }

  /**
   * Encodes `gradient` for step `step`. int8: quantizes gradient + residual and keeps the new
   * residual (input - dequantized). Returns the wire message fields and what the receiver will decode.
   */
  encode(
    gradient: Float32Array,
    step: number,
    baseDigest: Uint8Array<ArrayBuffer>,
    loss: number,
  ): { message: Gradient; decoded: Float32Array } {
    if (this.compression === 'none') {
      return {
        message: {
          step,
          baseDigest,
          loss,
          encoding: Gradient.Encoding.FLOAT32,
          length: gradient.length,
          // the gradient is not changed after this (it is the decoded value too): no copy
          values: floatBytesView(gradient),
          scales: new Uint8Array(0),
          blockSize: 0,
        },
        decoded: gradient,
      }
    }
    const corrected = new Float32Array(gradient.length)
    const residual = this.residual?.length === gradient.length ? this.residual : undefined
    for (let i = 0; i < gradient.length; i++) corrected[i] = gradient[i] + (residual ? residual[i] : 0)
    const quantized = quantizeInt8Reference(corrected, this.blockSize)
    const decoded = dequantizeInt8Reference(quantized)
    const nextResidual = new Float32Array(gradient.length)
    for (let i = 0; i < gradient.length; i++) nextResidual[i] = corrected[i] - decoded[i]
    this.residual = nextResidual
    return {
      message: {
        step,
        baseDigest,
        loss,
        encoding: Gradient.Encoding.INT8,
        length: gradient.length,
        values: new Uint8Array(quantized.values.buffer.slice(0)) as Uint8Array<ArrayBuffer>,
        scales: floatsToBytes(quantized.scales),
        blockSize: this.blockSize,
      },
      decoded,
    }
  }

  /** the residual carried to the next step (int8 only), for tests */
  residualNorm(): number {
    let sum = 0
    for (const value of this.residual ?? []) sum += value * value
    return Math.sqrt(sum)
  }
}

export type DecodeGradientResult =
  | { ok: true; gradient: Float32Array }
  | { ok: false; reason: 'wrong-length' }

/**
 * Decodes a wire gradient of `expectedLength` values. Inconsistent sizes (values, scales, block
 * size, declared length) are 'wrong-length'; NaN/Inf are left for screening to count.
 */
export function decodeGradient(message: Gradient, expectedLength: number): DecodeGradientResult {
  if (message.length !== expectedLength) return { ok: false, reason: 'wrong-length' }
  if (message.encoding === Gradient.Encoding.FLOAT32) {
    if (message.values.byteLength !== expectedLength * 4) return { ok: false, reason: 'wrong-length' }
    return { ok: true, gradient: bytesToFloats(message.values) }
  }
  if (message.encoding !== Gradient.Encoding.INT8) return { ok: false, reason: 'wrong-length' }
  const blockSize = message.blockSize
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > BLOCK_SIZE_MAX) {
    return { ok: false, reason: 'wrong-length' }
  }
  const blocks = Math.ceil(expectedLength / blockSize)
  if (message.values.byteLength !== expectedLength || message.scales.byteLength !== blocks * 4) {
    return { ok: false, reason: 'wrong-length' }
  }
  const quantized: QuantizedInt8 = {
    values: new Int8Array(message.values.buffer, message.values.byteOffset, message.values.byteLength),
    scales: bytesToFloats(message.scales),
    blockSize,
    length: expectedLength,
  }
  return { ok: true, gradient: dequantizeInt8Reference(quantized) }
}
