// Seeded randomness for init, shuffling and sharding. pure-rand's xoroshiro128+ gives the raw
// 32-bit stream; this wrapper adds the few distributions we need (uniform float, integer range,
// standard normal) and derives independent named streams from one task seed, so that changing how
// many numbers one stream draws (e.g. a wider hidden layer) never shifts another (the shuffle).
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { uniformInt } from 'pure-rand/distribution/uniformInt'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator'

/** Largest seed accepted: seeds are unsigned 32-bit integers. */
export const SEED_MAX = 0xffff_ffff

export function assertSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) {
    throw new RangeError(`seed must be an integer in [0, ${SEED_MAX}], got ${seed}`)
  }
}

/**
 * A 32-bit seed derived from `seed` and a stream name (FNV-1a over the name, mixed with the seed
 * through murmur3's finalizer). Deterministic across platforms: integer arithmetic only.
 */
export function deriveSeed(seed: number, streamName: string): number {
  assertSeed(seed)
  let hash = 0x811c9dc5
  for (let i = 0; i < streamName.length; i++) {
    hash ^= streamName.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  let mixed = (hash ^ seed) >>> 0
  mixed ^= mixed >>> 16
  mixed = Math.imul(mixed, 0x85ebca6b)
  mixed ^= mixed >>> 13
  mixed = Math.imul(mixed, 0xc2b2ae35)
  mixed ^= mixed >>> 16
  return mixed >>> 0
}

export class SeededRandom {
  private readonly generator: RandomGenerator
  /** second value of the last Box-Muller pair, used by the next normal() call */
  private spareNormal: number | undefined

  constructor(seed: number) {
    assertSeed(seed)
    this.generator = xoroshiro128plus(seed)
  }

  /** An independent stream named `streamName` of the task seed `seed`. */
  static stream(seed: number, streamName: string): SeededRandom {
    return new SeededRandom(deriveSeed(seed, streamName))
  }

  /** uniform in [0, 1) */
  float(): number {
    return uniformFloat64(this.generator)
  }

  /** uniform integer in [from, to], both included */
  int(from: number, to: number): number {
    return uniformInt(this.generator, from, to)
  }

  /** standard normal (Box-Muller) */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const value = this.spareNormal
      this.spareNormal = undefined
      return value
    }
    // 1 - float() is in (0, 1]: the logarithm stays finite
    const radius = Math.sqrt(-2 * Math.log(1 - this.float()))
    const angle = 2 * Math.PI * this.float()
    this.spareNormal = radius * Math.sin(angle)
    return radius * Math.cos(angle)
  }

  /** Fisher-Yates shuffle of `items` in place; returns it. */
  shuffleInPlace<T extends { length: number; [index: number]: unknown }>(items: T): T {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      const held = items[i]
      items[i] = items[j]
      items[j] = held
    }
    return items
  }
}
