// Deterministic sample orders: the per-epoch shuffle of one trainer, and the split of a dataset into
// shards for the members of a training task. Everything is a pure function of (seed, counts, epoch),
// so every peer computes the same order without talking to the others.
import { SeededRandom } from './random.js'

/** The identity order 0..count-1 as 32-bit indices. */
export function identityOrder(count: number): Uint32Array {
  const order = new Uint32Array(count)
  for (let i = 0; i < count; i++) order[i] = i
  return order
}

/** The order in which `count` samples are visited in `epoch` (0-based) of a task seeded `seed`. */
export function epochOrder(count: number, seed: number, epoch: number): Uint32Array {
  return SeededRandom.stream(seed, `shuffle/epoch-${epoch}`).shuffleInPlace(identityOrder(count))
}

/**
 * The sample indices of shard `shardIndex` of `shardCount`: a seeded permutation of all samples cut
 * into contiguous pieces whose sizes differ by at most one. The shards are disjoint and cover every
 * sample exactly once.
 */
export function shardIndices(
  count: number,
  shardCount: number,
  shardIndex: number,
  seed: number,
): Uint32Array {
  if (!Number.isInteger(shardCount) || shardCount < 1)
    throw new RangeError(`shardCount must be >= 1, got ${shardCount}`)
  if (!Number.isInteger(shardIndex) || shardIndex < 0 || shardIndex >= shardCount) {
    throw new RangeError(`shardIndex must be in [0, ${shardCount - 1}], got ${shardIndex}`)
  }
  const permutation = SeededRandom.stream(seed, 'shards').shuffleInPlace(identityOrder(count))
  const start = Math.floor((shardIndex * count) / shardCount)
  const end = Math.floor(((shardIndex + 1) * count) / shardCount)
  return permutation.slice(start, end)
}
