// Proves int8 quantization gives the same bits on every backend and in the reference, on the
// inputs where implementations part: exact halves (|x| / scale = k + 1/2), their float32
// neighbours, quotients a float32 division would round onto a half (0.5 - 2^-25), subnormal
// elements, the smallest and largest magnitudes. The oracle is exact rational arithmetic on the
// float bits (BigInt), independent of the code under test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend, QuantizedInt8, Tensor } from '../../../kernels/index.js'
import {
  dequantizeInt8Reference,
  INT8_BLOCK_MAX_MIN,
  INT8_SCALE_MIN,
  quantizeInt8Reference,
} from '../../../kernels/reference/index.js'
import { BACKENDS, openBackend, seededRandom } from './helpers.js'

const BLOCK = 64
const FLOAT32_MAX = 3.4028234663852886e38

const bits = new Uint32Array(1)
const view = new Float32Array(bits.buffer)
function floatBits(x: number): number {
  view[0] = x
  return bits[0]
}
function fromBits(value: number): number {
  bits[0] = value >>> 0
  return view[0]
}
/** the next float32 above / below a positive float32 */
const nextUp = (x: number) => fromBits(floatBits(x) + 1)
const nextDown = (x: number) => fromBits(floatBits(x) - 1)

/** |x| = mantissa * 2^exponent exactly, for a finite float32 */
function decompose(x: number): { mantissa: bigint; exponent: number } {
  const raw = floatBits(Math.abs(x))
  const field = raw >>> 23
  const fraction = BigInt(raw & 0x7fffff)
  return field === 0
    ? { mantissa: fraction, exponent: -149 }
    : { mantissa: fraction | 0x800000n, exponent: field - 150 }
}

/** a*|x| compared with b*|y| exactly (a, b non-negative integers): -1, 0 or 1 */
function compareScaled(a: bigint, x: number, b: bigint, y: number): number {
  const dx = decompose(x)
  const dy = decompose(y)
  const low = Math.min(dx.exponent, dy.exponent)
  const left = a * dx.mantissa * 2n ** BigInt(dx.exponent - low)
  const right = b * dy.mantissa * 2n ** BigInt(dy.exponent - low)
  return left < right ? -1 : left > right ? 1 : 0
}

/** fl32(max / 127) rounded to nearest even, chosen exactly among the float32s around the quotient */
function oracleScale(max: number): number {
  if (max < INT8_BLOCK_MAX_MIN) return 0
  const guess = Math.fround(max / 127)
  let best = guess
  for (const candidate of [nextDown(guess), nextUp(guess)]) {
    // |127 c - max| against |127 best - max|: both sides are on the same side of max or not
    const distance = (c: number) => {
      const d = decompose(c)
      const m = decompose(max)
      const low = Math.min(d.exponent, m.exponent)
      const value =
        127n * d.mantissa * 2n ** BigInt(d.exponent - low) - m.mantissa * 2n ** BigInt(m.exponent - low)
      return value < 0n ? -value : value
    }
    const a = distance(candidate)
    const b = distance(best)
    if (a < b || (a === b && (floatBits(candidate) & 1) === 0)) best = candidate
  }
  return best
}

/** the k in [0, 127] nearest |x| / scale exactly, a half going up; with the sign of x */
function oracleValue(x: number, scale: number): number {
  if (scale === 0) return 0
  let k = 0
  // k + 1 is at least as near as k when 2|x| >= (2k + 1) scale
  while (k < 127 && compareScaled(2n, x, BigInt(2 * k + 1), scale) >= 0) k++
  return x < 0 ? -k : k
}

function oracleQuantize(x: Float32Array, blockSize: number): QuantizedInt8 {
  const blocks = Math.ceil(x.length / blockSize)
  const values = new Int8Array(x.length)
  const scales = new Float32Array(blocks)
  for (let b = 0; b < blocks; b++) {
    const block = x.subarray(b * blockSize, Math.min((b + 1) * blockSize, x.length))
    const scale = oracleScale(block.reduce((max, value) => Math.max(max, Math.abs(value)), 0))
    scales[b] = scale
    block.forEach((value, i) => {
      values[b * blockSize + i] = oracleValue(value, scale)
    })
  }
  return { values, scales, blockSize, length: x.length }
}

/** blocks of BLOCK values whose first element is the block's largest magnitude */
function adversarialInput(): Float32Array {
  const random = seededRandom(20261207)
  const blocks: number[][] = []
  const sign = () => (random() < 0.5 ? -1 : 1)
  // scale 2^e: halves (k + 1/2) 2^e are exact float32s, and so are the issue's 0.5 - 2^-25
  for (const exponent of [-20, -3, 0, 7]) {
    const s = 2 ** exponent
    for (let start = 0; start < 127; start += 20) {
      const block = [127 * s]
      for (let k = start; k < Math.min(start + 20, 127); k++) {
        const half = (k + 0.5) * s
        block.push(sign() * half, nextDown(half), -nextUp(half))
      }
      block.push((0.5 - 2 ** -25) * s, -(0.5 - 2 ** -25) * s, (1.5 - 2 ** -24) * s)
      blocks.push(block)
    }
  }
  // random scales: float32 neighbours of (k + 1/2) scale, where a rounded quotient lands on a half
  for (let n = 0; n < 24; n++) {
    const max = Math.fround(2 ** (Math.floor(random() * 40) - 20) * (1 + random()))
    const s = Math.fround(max / 127)
    const block = [max]
    while (block.length < BLOCK) {
      const k = Math.floor(random() * 127)
      const near = Math.fround((k + 0.5) * s)
      block.push(sign() * near, sign() * nextUp(near), sign() * nextDown(near))
    }
    blocks.push(block.slice(0, BLOCK))
  }
  // maxima whose mantissa divides by 127 (an exact scale), and around 127/128 * 2^24, where the
  // integer quotient of the scale pass gains a bit
  for (const mantissa of [127 * 66061, 127 * 132104, 0xfe0000, 0xfe0001, 0xfdffff, 0xffffff, 0x800000]) {
    const max = mantissa * 2 ** -23
    blocks.push([max, max / 2, Math.fround(max / 254), -Math.fround(max / 3)])
  }
  // the extremes: largest float32, threshold maxima, subnormal elements in a normal block
  blocks.push([FLOAT32_MAX, -FLOAT32_MAX / 3, 1e38, 1])
  blocks.push([INT8_BLOCK_MAX_MIN, -INT8_BLOCK_MAX_MIN / 2, INT8_BLOCK_MAX_MIN / 254, 2 ** -149])
  blocks.push([nextDown(INT8_BLOCK_MAX_MIN), 2 ** -110, -(2 ** -149)])
  blocks.push([2 ** -130, 2 ** -149, -(2 ** -140)])
  blocks.push([1, 2 ** -149, -(2 ** -126), 2 ** -127, -0, 0])
  blocks.push([0, -0, 0])
  const x = new Float32Array(blocks.length * BLOCK - 5)
  blocks.forEach((block, b) => {
    for (let i = 0; i < block.length && b * BLOCK + i < x.length; i++) x[b * BLOCK + i] = block[i]
  })
  return x
}

/** the first differences between two arrays (a zero of either sign matches a zero) */
function differences(expected: ArrayLike<number>, got: ArrayLike<number>): string[] {
  const wrong: string[] = []
  if (got.length !== expected.length) wrong.push(`length ${got.length}, expected ${expected.length}`)
  for (let i = 0; i < expected.length && wrong.length < 8; i++) {
    if (!Object.is(expected[i], got[i]) && !(expected[i] === 0 && got[i] === 0)) {
      wrong.push(`[${i}] expected ${expected[i]} got ${got[i]}`)
    }
  }
  return wrong
}

function expectSameQuantization(label: string, expected: QuantizedInt8, got: QuantizedInt8): void {
  const found = {
    scales: differences(expected.scales, got.scales),
    values: differences(expected.values, got.values),
  }
  expect(found, label).toEqual({ scales: [], values: [] })
}

const input = adversarialInput()
const expected = oracleQuantize(input, BLOCK)

describe('int8 quantization oracle and reference', () => {
  it('the input holds exact halves and the issue near-half', () => {
    // guards the construction: the test is only as strong as its ties
    let halves = 0
    for (let i = 0; i < input.length; i++) {
      const scale = expected.scales[Math.floor(i / BLOCK)]
      if (scale === 0) continue
      const k = Math.floor(Math.abs(input[i]) / scale)
      if (compareScaled(2n, input[i], BigInt(2 * k + 1), scale) === 0) halves++
    }
    expect(halves).toBeGreaterThan(400)
    // 0.5 - 2^-25 of a power-of-two scale: float32 arithmetic rounds 0.5 + that up to 1
    const issueCase = Math.fround((0.5 - 2 ** -25) * 2 ** -3)
    expect(input.includes(issueCase)).toBe(true)
  })

  it('the reference quantizes bit for bit as the exact oracle', () => {
    expectSameQuantization('reference', expected, quantizeInt8Reference(input, BLOCK))
  })

  it('rounds exact halves away from zero and near-halves to the nearer integer', () => {
    const s = 2 ** -3
    const x = Float32Array.of(
      127 * s,
      0.5 * s,
      -0.5 * s,
      (0.5 - 2 ** -25) * s,
      2.5 * s,
      -2.5 * s,
      nextDown(2.5 * s),
    )
    expect([...quantizeInt8Reference(x, 8).values]).toEqual([127, 1, -1, 0, 3, -3, 2])
  })
})

describe.each(BACKENDS)('%s backend int8 quantization is bit for bit the oracle', (name) => {
  let backend: Backend
  const live: Tensor[] = []
  beforeAll(async () => {
    backend = await openBackend(name)
  })
  afterAll(() => {
    for (const tensor of live) tensor.dispose()
    backend.destroy()
  })

  it('quantizes ties, near-ties, subnormals and extremes as the oracle', async () => {
    const tensor = backend.upload(input, [input.length])
    live.push(tensor)
    expectSameQuantization(name, expected, await backend.quantizeInt8(tensor, BLOCK))
  })

  it('quantizes random blocks of every size as the oracle', async () => {
    const random = seededRandom(7)
    for (const blockSize of [1, 3, 256]) {
      const x = new Float32Array(1031)
      for (let i = 0; i < x.length; i++) x[i] = (random() - 0.5) * 2 ** (Math.floor(random() * 60) - 30)
      const tensor = backend.upload(x, [x.length])
      live.push(tensor)
      const got = await backend.quantizeInt8(tensor, blockSize)
      expectSameQuantization(`block ${blockSize}`, oracleQuantize(x, blockSize), got)
    }
  })

  it('dequantizes to the exact float32 products', async () => {
    const dequantized = backend.dequantizeInt8(expected)
    live.push(dequantized)
    // q * scale is exact in float64 (8 by 24 bits): one rounding to float32 is the correct product
    const want = new Float32Array(expected.length)
    for (let i = 0; i < want.length; i++)
      want[i] = expected.values[i] * expected.scales[Math.floor(i / BLOCK)]
    expect(differences(want, await backend.read(dequantized))).toEqual([])
    expect(differences(want, dequantizeInt8Reference(expected))).toEqual([])
  })

  it('refuses scales no quantizer makes', () => {
    const quantized = (scale: number): QuantizedInt8 => ({
      values: Int8Array.of(1, 2),
      scales: Float32Array.of(scale),
      blockSize: 2,
      length: 2,
    })
    for (const scale of [
      2 ** -130,
      -(2 ** -149),
      Math.fround(INT8_SCALE_MIN / 2),
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ]) {
      expect(() => backend.dequantizeInt8(quantized(scale)), String(scale)).toThrow(RangeError)
    }
    for (const scale of [0, INT8_SCALE_MIN, -1, FLOAT32_MAX]) {
      const tensor = backend.dequantizeInt8(quantized(scale))
      live.push(tensor)
    }
  })
})
