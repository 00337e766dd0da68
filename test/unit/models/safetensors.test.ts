// Proves our safetensors encoder writes the documented format (8-byte little-endian header length,
// JSON header with F32 dtype, shape and data_offsets, 8-byte alignment) and that the decoder round
// trips it, reads a file written byte by byte from the spec, and refuses every kind of corrupt file.
import { describe, expect, it } from 'vitest'
import {
  CheckpointError,
  decodeMlpCheckpoint,
  decodeSafetensors,
  encodeMlpCheckpoint,
  encodeSafetensors,
  initialHostLayers,
  SafetensorsError,
} from '../../../kernels/models/index.js'

function headerOf(bytes: Uint8Array): { length: number; json: Record<string, unknown> } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true))
  return { length, json: JSON.parse(Buffer.from(bytes.subarray(8, 8 + length)).toString('utf8')) }
}

/** A file assembled from the spec by hand: header text, then the raw little-endian floats. */
function handMadeFile(headerText: string, floats: number[]): Uint8Array {
  const header = Buffer.from(headerText, 'utf8')
  const out = Buffer.alloc(8 + header.length + floats.length * 4)
  out.writeBigUInt64LE(BigInt(header.length), 0)
  header.copy(out, 8)
  floats.forEach((value, i) => {
    out.writeFloatLE(value, 8 + header.length + i * 4)
  })
  return new Uint8Array(out)
}

describe('safetensors', () => {
  const weight = Float32Array.from([1.5, -2, 0, -0, 3.4028234663852886e38, 1e-45])
  const bias = Float32Array.from([0.25, Number.MIN_VALUE])

  it('round trips tensors, shapes, order and metadata', () => {
    const bytes = encodeSafetensors(
      [
        ['w', { shape: [2, 3], data: weight }],
        ['b', { shape: [2], data: bias }],
      ],
      { note: 'hello' },
    )
    const decoded = decodeSafetensors(bytes)
    expect([...decoded.tensors.keys()]).toEqual(['w', 'b'])
    expect(decoded.tensors.get('w')).toEqual({ shape: [2, 3], data: weight })
    expect(Object.is(decoded.tensors.get('w')!.data[3], -0)).toBe(true)
    expect(decoded.tensors.get('b')!.data).toEqual(Float32Array.from(bias))
    expect(decoded.metadata).toEqual({ note: 'hello' })
  })

  it('writes the documented layout: u64 LE header length, JSON header, aligned data, F32 entries', () => {
    const bytes = encodeSafetensors([['w', { shape: [2, 3], data: weight }]], { k: 'v' })
    const { length, json } = headerOf(bytes)
    expect((8 + length) % 8).toBe(0)
    expect(json).toEqual({
      __metadata__: { k: 'v' },
      w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
    })
    expect(bytes.length).toBe(8 + length + 24)
    expect(Buffer.from(bytes).readFloatLE(8 + length)).toBe(1.5)
  })

  it('reads a file assembled by hand from the specification', () => {
    const file = handMadeFile(
      '{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],' +
        '"data_offsets":[0,8]}}',
      [1, 2, 3],
    )
    const decoded = decodeSafetensors(file)
    expect(decoded.tensors.get('a')!.data).toEqual(Float32Array.from([1, 2]))
    expect(decoded.tensors.get('b')!.data).toEqual(Float32Array.from([3]))
  })

  const valid = encodeSafetensors([['w', { shape: [2, 3], data: weight }]])
  const corrupt: Array<[string, Uint8Array]> = [
    ['an empty file', new Uint8Array(0)],
    ['a file shorter than the length prefix', valid.subarray(0, 5)],
    ['a truncated data section', valid.subarray(0, valid.length - 4)],
    ['a truncated header', valid.subarray(0, 20)],
    ['trailing bytes after the tensors', new Uint8Array([...valid, 0, 0, 0, 0])],
    [
      'a header length beyond the file',
      (() => {
        const copy = valid.slice()
        new DataView(copy.buffer).setBigUint64(0, 1_000_000n, true)
        return copy
      })(),
    ],
    [
      'a header length above the limit',
      (() => {
        const copy = valid.slice()
        new DataView(copy.buffer).setBigUint64(0, 2n ** 62n, true)
        return copy
      })(),
    ],
    ['a header that is not JSON', handMadeFile('{"w": nonsense}', [1])],
    ['a header that is a JSON array', handMadeFile('[1, 2]  ', [])],
    ['an unsupported dtype', handMadeFile('{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', [1])],
    [
      'a shape that disagrees with the offsets',
      handMadeFile('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', [1, 2]),
    ],
    ['a negative dimension', handMadeFile('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', [1, 2])],
    [
      'overlapping tensors',
      handMadeFile(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],' +
          '"data_offsets":[4,12]}}',
        [1, 2, 3],
      ),
    ],
    [
      'a hole between tensors',
      handMadeFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', [1, 2]),
    ],
    ['metadata that is not strings', handMadeFile('{"__metadata__":{"n":1}}', [])],
  ]
  it.each(corrupt)('refuses %s with a SafetensorsError', (_name, bytes) => {
    expect(() => decodeSafetensors(bytes)).toThrow(SafetensorsError)
  })
})

describe('MLP checkpoints', () => {
  const architecture = { inputSize: 5, hiddenSizes: [4, 3], outputSize: 2 }
  const layers = initialHostLayers(architecture, 3)

  it('names tensors layers.<i>.weight [out,in] and layers.<i>.bias and round trips them', () => {
    const bytes = encodeMlpCheckpoint(architecture, layers)
    const { json } = headerOf(bytes)
    expect(json['layers.0.weight']).toMatchObject({ dtype: 'F32', shape: [4, 5] })
    expect(json['layers.1.weight']).toMatchObject({ dtype: 'F32', shape: [3, 4] })
    expect(json['layers.2.bias']).toMatchObject({ dtype: 'F32', shape: [2] })
    const decoded = decodeMlpCheckpoint(bytes)
    expect(decoded.architecture).toEqual(architecture)
    expect(decoded.layers).toEqual(layers)
  })

  it('refuses NaN or infinite weights', () => {
    const poisoned = layers.map((layer) => ({ weight: layer.weight.slice(), bias: layer.bias.slice() }))
    poisoned[1].weight[5] = Number.NaN
    expect(() => decodeMlpCheckpoint(encodeMlpCheckpoint(architecture, poisoned))).toThrow(CheckpointError)
    poisoned[1].weight[5] = 0
    poisoned[2].bias[0] = Number.POSITIVE_INFINITY
    expect(() => decodeMlpCheckpoint(encodeMlpCheckpoint(architecture, poisoned))).toThrow(/non-finite/)
  })

  it('refuses layers that do not chain, a missing bias and stray tensors', () => {
    const unchained = encodeSafetensors([
      ['layers.0.weight', { shape: [4, 5], data: new Float32Array(20) }],
      ['layers.0.bias', { shape: [4], data: new Float32Array(4) }],
      ['layers.1.weight', { shape: [2, 3], data: new Float32Array(6) }],
      ['layers.1.bias', { shape: [2], data: new Float32Array(2) }],
    ])
    expect(() => decodeMlpCheckpoint(unchained)).toThrow(CheckpointError)
    const noBias = encodeSafetensors([['layers.0.weight', { shape: [4, 5], data: new Float32Array(20) }]])
    expect(() => decodeMlpCheckpoint(noBias)).toThrow(/bias is missing/)
    const stray = encodeSafetensors([
      ['layers.0.weight', { shape: [4, 5], data: new Float32Array(20) }],
      ['layers.0.bias', { shape: [4], data: new Float32Array(4) }],
      ['optimizer.m', { shape: [1], data: new Float32Array(1) }],
    ])
    expect(() => decodeMlpCheckpoint(stray)).toThrow(/unexpected tensor/)
    expect(() => decodeMlpCheckpoint(encodeSafetensors([]))).toThrow(CheckpointError)
  })
})
