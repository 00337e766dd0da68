// Proves seeded randomness is deterministic and well-behaved: the same seed gives the same numbers,
// shuffles, shards and per-step member batches; named streams are independent; shards and batches are
// disjoint and cover every sample.
import { describe, expect, it } from 'vitest'
import {
  deriveSeed,
  epochOrder,
  SeededRandom,
  shardIndices,
  stepBatchIndices,
  stepsPerEpoch,
} from '../../../kernels/data/index.js'

describe('SeededRandom', () => {
  it('repeats its sequence for the same seed and differs for another', () => {
    const draw = (seed: number) => {
      const random = new SeededRandom(seed)
      return Array.from({ length: 8 }, () => random.float())
    }
    expect(draw(42)).toEqual(draw(42))
    expect(draw(42)).not.toEqual(draw(43))
  })

  it('draws standard normals with mean about 0 and variance about 1', () => {
    const random = new SeededRandom(7)
    const count = 20_000
    let sum = 0
    let sumSquares = 0
    for (let i = 0; i < count; i++) {
      const value = random.normal()
      sum += value
      sumSquares += value * value
    }
    const mean = sum / count
    // standard error of the mean is 1/sqrt(20000) = 0.007; of the variance about 0.01
    expect(Math.abs(mean)).toBeLessThan(0.03)
    expect(Math.abs(sumSquares / count - mean * mean - 1)).toBeLessThan(0.05)
  })

  it('derives different seeds for different stream names and refuses invalid seeds', () => {
    expect(deriveSeed(1, 'init')).toBe(deriveSeed(1, 'init'))
    expect(deriveSeed(1, 'init')).not.toBe(deriveSeed(1, 'shuffle/epoch-0'))
    expect(deriveSeed(1, 'init')).not.toBe(deriveSeed(2, 'init'))
    expect(() => new SeededRandom(-1)).toThrow(RangeError)
    expect(() => new SeededRandom(1.5)).toThrow(RangeError)
    expect(() => new SeededRandom(2 ** 32)).toThrow(RangeError)
  })
})

describe('epochOrder', () => {
  it('is a permutation, the same for the same seed and epoch, different across epochs and seeds', () => {
    const order = epochOrder(1000, 5, 0)
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    expect(epochOrder(1000, 5, 0)).toEqual(order)
    expect(epochOrder(1000, 5, 1)).not.toEqual(order)
    expect(epochOrder(1000, 6, 0)).not.toEqual(order)
  })
})

describe('shardIndices', () => {
  it('cuts a seeded permutation into disjoint shards that cover every sample, sizes within one', () => {
    const count = 1003
    const shards = Array.from({ length: 4 }, (_, index) => shardIndices(count, 4, index, 9))
    const all = shards.flatMap((shard) => [...shard]).sort((a, b) => a - b)
    expect(all).toEqual(Array.from({ length: count }, (_, i) => i))
    const sizes = shards.map((shard) => shard.length)
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
    expect(shardIndices(count, 4, 2, 9)).toEqual(shards[2])
    expect(shardIndices(count, 4, 2, 10)).not.toEqual(shards[2])
  })

  it('refuses out-of-range shard arguments', () => {
    expect(() => shardIndices(10, 0, 0, 1)).toThrow(RangeError)
    expect(() => shardIndices(10, 2, 2, 1)).toThrow(RangeError)
  })
})

describe('stepBatchIndices', () => {
  it('splits each step of the seeded epoch order among the members, every sample once per epoch', () => {
    const count = 103
    const batch = 10
    expect(stepsPerEpoch(count, batch)).toBe(11)
    for (const epoch of [0, 1]) {
      const seen: number[] = []
      for (let step = epoch * 11; step < (epoch + 1) * 11; step++) {
        const slices = Array.from({ length: 3 }, (_, member) =>
          stepBatchIndices(count, 4, step, batch, 3, member),
        )
        const sizes = slices.map((slice) => slice.length)
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
        const joined = slices.flatMap((slice) => [...slice])
        // the members of a step together hold exactly that step's batch of the epoch order
        const order = epochOrder(count, 4, epoch)
        const first = (step - epoch * 11) * batch
        expect(joined).toEqual([...order.subarray(first, Math.min(count, first + batch))])
        seen.push(...joined)
      }
      expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i))
    }
    expect(stepBatchIndices(count, 4, 5, batch, 3, 1)).toEqual(stepBatchIndices(count, 4, 5, batch, 3, 1))
    expect(stepBatchIndices(count, 4, 5, batch, 3, 1)).not.toEqual(stepBatchIndices(count, 5, 5, batch, 3, 1))
  })

  it('refuses out-of-range arguments', () => {
    expect(() => stepBatchIndices(10, 1, -1, 4, 1, 0)).toThrow(RangeError)
    expect(() => stepBatchIndices(10, 1, 0, 0, 1, 0)).toThrow(RangeError)
    expect(() => stepBatchIndices(10, 1, 0, 4, 2, 2)).toThrow(RangeError)
  })
})
