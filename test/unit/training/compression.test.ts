// Proves int8 gradient compression: the per-block quantization error is at most half a step of its
// block's scale, error feedback carries what was lost so that the decoded sum over many steps tracks
// the true sum (the residual stays bounded), the wire form is about 4x smaller, and decoding refuses
// every inconsistent size as 'wrong-length'.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../kernels/data/random.js'
import { dequantizeInt8Reference, quantizeInt8Reference } from '../../../kernels/reference/quantize.js'
import { decodeGradient, GradientCompressor } from '../../../protocols/training/compression.js'
import { floatsToBytes } from '../../../protocols/training/params.js'
import { Gradient } from '../../../protocols/wire/training.js'

const digest = new Uint8Array(32)
// a block whose largest value is below ~1e-43 gets a scale that underflows to 0 and quantizes to 0:
// harmless for gradients, so the property leaves such values out
const finite = fc
  .float({ min: -1e3, max: 1e3, noNaN: true, noDefaultInfinity: true })
  .map((value) => (Math.abs(value) < 1e-30 ? 0 : value))

describe('int8 compression', () => {
  it('quantizes each value to within half a step of its block scale, and decodes what it sent', () => {
    fc.assert(
      fc.property(
        fc.array(finite, { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 64 }),
        (values, block) => {
          const gradient = Float32Array.from(values)
          const { message, decoded } = new GradientCompressor('int8', block).encode(gradient, 3, digest, 0.5)
          const scales = new Float32Array(message.scales.buffer.slice(0))
          for (let i = 0; i < gradient.length; i++) {
            const scale = scales[Math.floor(i / block)]
            expect(Math.abs(gradient[i] - decoded[i])).toBeLessThanOrEqual(
              scale / 2 + 1e-6 * Math.abs(gradient[i]),
            )
          }
          const received = decodeGradient(Gradient.decode(Gradient.encode(message)), gradient.length)
          expect(received.ok && [...received.gradient]).toEqual([...decoded])
        },
      ),
    )
  })

  it('error feedback: the decoded sum over steps tracks the true sum within one quantization step', () => {
    const compressor = new GradientCompressor('int8', 16)
    const length = 64
    const trueSum = new Float64Array(length)
    const decodedSum = new Float64Array(length)
    let seed = 1
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31 - 0.5
    }
    let maxScale = 0
    for (let step = 0; step < 200; step++) {
      // small values next to one large value per block: without feedback the small ones round to 0
      const gradient = Float32Array.from({ length }, (_, i) => (i % 16 === 0 ? 10 : random() * 0.01))
      const { message, decoded } = compressor.encode(gradient, step, digest, 0)
      for (const scale of new Float32Array(message.scales.buffer.slice(0)))
        maxScale = Math.max(maxScale, scale)
      for (let i = 0; i < length; i++) {
        trueSum[i] += gradient[i]
        decodedSum[i] += decoded[i]
      }
    }
    for (let i = 0; i < length; i++)
      expect(Math.abs(trueSum[i] - decodedSum[i])).toBeLessThanOrEqual(maxScale)
    expect(compressor.residualNorm()).toBeLessThanOrEqual(maxScale * Math.sqrt(length))
  })

  it(
    'is bit for bit the reference quantizer and dequantizer with error feedback, ' + 'NaN and Inf included',
    () => {
      const random = SeededRandom.stream(5, 'int8-bits')
      const length = 1000 // a last block of 232 with blocks of 256
      const compressor = new GradientCompressor('int8', 256)
      let residual = new Float32Array(length)
      const bits = (values: ArrayLike<number>) => [...new Uint32Array(Float32Array.from(values).buffer)]
      for (let step = 0; step < 12; step++) {
        const gradient = Float32Array.from(
          { length },
          () => (random.float() - 0.5) * 10 ** (random.float() * 8 - 4),
        )
        // block 0 at step 0: max 127, so scale 1 and these quantize from exact halves (ties round away
        // from 0)
        if (step === 0) gradient.fill(1, 0, 256).set([127, -2.5, 2.5, -0.5, 0.5, -126.5, 3.5, -3.5, -0])
        if (step === 3) gradient.fill(0, 256, 512) // a block of zeros: scale 0
        if (step === 5) gradient.set([Number.NaN, Number.POSITIVE_INFINITY, -0], 600)
        if (step === 7) gradient.set([Number.NEGATIVE_INFINITY], 10)
        // the reference pipeline, as the compressor computed it before its fused loop
        const corrected = new Float32Array(length)
        for (let i = 0; i < length; i++) corrected[i] = gradient[i] + (step > 0 ? residual[i] : 0)
        const quantized = quantizeInt8Reference(corrected, 256)
        const reference = dequantizeInt8Reference(quantized)
        const nextResidual = new Float32Array(length)
        for (let i = 0; i < length; i++) nextResidual[i] = corrected[i] - reference[i]
        residual = nextResidual

        const { message, decoded } = compressor.encode(gradient, step, digest, 1)
        expect([...new Int8Array(message.values.buffer, message.values.byteOffset, length)]).toEqual([
          ...quantized.values,
        ])
        expect(bits(new Float32Array(message.scales.slice().buffer))).toEqual(bits(quantized.scales))
        expect(bits(decoded)).toEqual(bits(reference))
        const received = decodeGradient(message, length)
        expect(received.ok && bits(received.gradient)).toEqual(bits(reference))
      }
      let sum = 0
      for (const value of residual) sum += value * value
      expect(compressor.residualNorm()).toBe(Math.sqrt(sum))
    },
  )

  it('sends about 4x fewer bytes than float32 with blocks of 256', () => {
    const gradient = Float32Array.from({ length: 50_890 }, (_, i) => Math.sin(i))
    const float32 = Gradient.encode(new GradientCompressor('none').encode(gradient, 0, digest, 0).message)
    const int8 = Gradient.encode(new GradientCompressor('int8').encode(gradient, 0, digest, 0).message)
    expect(float32.length / int8.length).toBeGreaterThan(3.9)
  })

  it('float32 passes values through unchanged', () => {
    const gradient = Float32Array.from([1.5, -2.25, 3e-9])
    const { message } = new GradientCompressor('none').encode(gradient, 0, digest, 0)
    const received = decodeGradient(message, 3)
    expect(received.ok && [...received.gradient]).toEqual([...gradient])
  })

  it.each([
    ['declared length differs', { length: 4 }],
    ['float32 byte count differs', { values: new Uint8Array(8) }],
    [
      'int8 value count differs',
      {
        encoding: Gradient.Encoding.INT8,
        blockSize: 2,
        values: new Uint8Array(2),
        scales: new Uint8Array(8),
      },
    ],
    [
      'int8 scale count differs',
      {
        encoding: Gradient.Encoding.INT8,
        blockSize: 2,
        values: new Uint8Array(3),
        scales: new Uint8Array(4),
      },
    ],
    [
      'int8 block size 0',
      {
        encoding: Gradient.Encoding.INT8,
        blockSize: 0,
        values: new Uint8Array(3),
        scales: new Uint8Array(0),
      },
    ],
    ['unknown encoding', { encoding: 7 as unknown as Gradient.Encoding }],
  ])('refuses a gradient whose %s', (_, fields) => {
    const message: Gradient = {
      step: 0,
      baseDigest: digest,
      loss: 0,
      encoding: Gradient.Encoding.FLOAT32,
      length: 3,
      values: floatsToBytes(Float32Array.from([1, 2, 3])),
      scales: new Uint8Array(0),
      blockSize: 0,
      signature: new Uint8Array(0),
      ...fields,
    } as Gradient
    expect(decodeGradient(message, 3)).toEqual({ ok: false, reason: 'wrong-length' })
  })
})
