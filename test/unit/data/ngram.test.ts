// Proves the Kneser-Ney estimator of bench/ngram-model.ts on a toy text: for seen, partly seen and
// unseen contexts its probabilities over the 256 bytes sum to 1, and every probability equals the
// one of a direct float64 transcription of Chen & Goodman's interpolated modified Kneser-Ney (string
// keyed maps, context totals summed over the 256 bytes), including the discounts from the
// count-of-counts (and their clamp to [DISCOUNT_MIN, j], which the order-2 model needs) and the
// shorter contexts at the start of a scored stream.
import { describe, expect, it } from 'vitest'
import {
  DISCOUNT_MIN,
  KneserNeyModel,
  modifiedKneserNeyDiscounts,
  unigramAddOneBitsPerByte,
} from '../../../bench/ngram-model.js'
import { SeededRandom } from '../../../kernels/data/random.js'

/**
 * 1,500 words (about 9 KB) drawn with a skewed distribution from 60 seeded random words over 51
 * characters: rich enough that every order up to 4 has n-grams seen 1, 2, 3 and 4 times
 */
const TOY = (() => {
  const random = SeededRandom.stream(1, 'ngram-toy')
  const letters = 'etaoinshrdlucmfwypvbgkjqxzETAOIN.,;:!?-()0123456789'
  const vocabulary = Array.from({ length: 60 }, () =>
    Array.from(
      { length: random.int(1, 7) },
      () => letters[Math.floor(letters.length * random.float() ** 2)],
    ).join(''),
  )
  const picked = Array.from({ length: 1500 }, () => vocabulary[Math.floor(60 * random.float() ** 3)])
  // bytes seen 1 to 4 times and byte pairs seen 1 to 4 times, for orders 1 and 2
  return new TextEncoder().encode(`${picked.join(' ')} ~ ^^ ||| &&&& %%%%%`)
})()

/** Chen & Goodman's interpolated modified Kneser-Ney, written out with string-keyed maps. */
function oracle(text: Uint8Array, order: number) {
  const key = (bytes: ArrayLike<number>) => Array.from(bytes).join(',')
  const counts: Array<Map<string, number>> = Array.from({ length: order + 1 }, () => new Map())
  for (let i = 0; i + order <= text.length; i++) {
    const gram = key(text.subarray(i, i + order))
    counts[order].set(gram, (counts[order].get(gram) ?? 0) + 1)
  }
  // continuation counts: distinct left extensions
  for (let k = order - 1; k >= 1; k--) {
    for (const gram of counts[k + 1].keys()) {
      const suffix = gram.split(',').slice(1).join(',')
      counts[k].set(suffix, (counts[k].get(suffix) ?? 0) + 1)
    }
  }
  const discounts = counts.map((map) => {
    const n = [0, 0, 0, 0, 0]
    for (const count of map.values()) if (count <= 4) n[count]++
    const y = n[1] / (n[1] + 2 * n[2])
    const raw = [0, 1 - (2 * y * n[2]) / n[1], 2 - (3 * y * n[3]) / n[2], 3 - (4 * y * n[4]) / n[3]]
    // the documented clamp: D_j within [0.1, j]
    return { raw, clamped: raw.map((value, j) => Math.min(Math.max(value, 0.1), j)) }
  })
  // per context: [total, N1, N2, N3+], summed over the 256 next bytes
  const contextStatistics = new Map<string, number[]>()
  const probability = (context: number[], next: number): number => {
    let p = 1 / 256
    for (let k = 1; k <= Math.min(order, context.length + 1); k++) {
      const h = context.slice(context.length - (k - 1))
      let statistics = contextStatistics.get(`${k}:${key(h)}`)
      if (statistics === undefined) {
        statistics = [0, 0, 0, 0]
        for (let w = 0; w < 256; w++) {
          const count = counts[k].get(key([...h, w])) ?? 0
          statistics[0] += count
          if (count > 0) statistics[Math.min(count, 3)]++
        }
        contextStatistics.set(`${k}:${key(h)}`, statistics)
      }
      const total = statistics[0]
      const n = [0, statistics[1], statistics[2], statistics[3]]
      if (total === 0) continue
      const count = counts[k].get(key([...h, next])) ?? 0
      const d = discounts[k].clamped
      const discount = count === 0 ? 0 : d[Math.min(count, 3)]
      p = (Math.max(count - discount, 0) + (d[1] * n[1] + d[2] * n[2] + d[3] * n[3]) * p) / total
    }
    return p
  }
  return { discounts, probability }
}

const bytesOf = (text: string) => Array.from(new TextEncoder().encode(text))

describe('KneserNeyModel', () => {
  for (const order of [1, 2, 3, 4]) {
    it(`order ${order}: sums to 1 over the 256 bytes and matches the direct transcription`, () => {
      const model = KneserNeyModel.train(TOY, order)
      const reference = oracle(TOY, order)
      let clampedCount = 0
      for (const row of model.statistics()) {
        const { raw, clamped } = reference.discounts[row.order]
        for (const j of [1, 2, 3]) {
          expect(raw[j]).not.toBeNaN()
          expect(row.discounts[j - 1]).toBeCloseTo(clamped[j], 12)
          clampedCount += raw[j] === clamped[j] ? 0 : 1
        }
      }
      // the toy text has n1..n4 > 0 at every order; the formula stays inside [0, j] except for D2 and
      // D3+ of the order-2 model's raw bigram counts (both negative), which test the clamp
      expect(clampedCount).toBe(order === 2 ? 2 : 0)
      // contexts from the text, one whose first bytes never occur (only its suffix was seen), bytes
      // that never occur (only p_0 remains), the empty context
      const contexts = [
        TOY.subarray(100, 103),
        TOY.subarray(5000, 5005),
        TOY.subarray(8000, 8001),
        Uint8Array.from([...bytesOf('\u00e9~'), ...TOY.subarray(300, 302)]),
        Uint8Array.from(bytesOf('\u00e9\u00e9\u00e9')),
        new Uint8Array(0),
      ]
      for (const bytes of contexts) {
        let sum = 0
        for (let w = 0; w < 256; w++) {
          const p = model.probability(bytes, w)
          expect(p).toBeGreaterThan(0)
          expect(p).toBeCloseTo(reference.probability(Array.from(bytes), w), 14)
          sum += p
        }
        expect(sum).toBeCloseTo(1, 12)
      }
    })
  }

  it('scores a stream byte by byte with the bytes before each one as its context', () => {
    const model = KneserNeyModel.train(TOY, 3)
    const reference = oracle(TOY, 3)
    const stream = Uint8Array.from([...TOY.subarray(2000, 2030), ...bytesOf('\u00e9~ the end')])
    let bits = 0
    for (let i = 0; i < stream.length; i++) {
      // the first two bytes have a context of 0 and 1 bytes
      bits -= Math.log2(reference.probability(Array.from(stream.subarray(Math.max(0, i - 2), i)), stream[i]))
    }
    expect(model.crossEntropyBits(stream)).toBeCloseTo(bits, 10)
  })

  it('estimates the discounts from the count-of-counts', () => {
    // n1..n4 = 10, 4, 2, 1: Y = 10/18
    const [d1, d2, d3] = modifiedKneserNeyDiscounts(10, 4, 2, 1)
    const y = 10 / 18
    expect(d1).toBeCloseTo(1 - (2 * y * 4) / 10, 14)
    expect(d2).toBeCloseTo(2 - (3 * y * 2) / 4, 14)
    expect(d3).toBeCloseTo(3 - (4 * y * 1) / 2, 14)
    // missing counts never give a discount above the count it takes from
    expect(modifiedKneserNeyDiscounts(3, 0, 0, 0)).toEqual([1, 0.1, 0.1])
    expect(DISCOUNT_MIN).toBe(0.1)
  })

  it('gives the add-one unigram bits per byte', () => {
    const text = Uint8Array.from([1, 1, 1, 2])
    const stream = Uint8Array.from([1, 3])
    const expected = -(Math.log2(4 / 260) + Math.log2(1 / 260)) / 2
    expect(unigramAddOneBitsPerByte(text, stream)).toBeCloseTo(expected, 14)
  })
})
