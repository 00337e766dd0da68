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

/** Number of updates in one epoch of `count` samples at `batchSize` (the last batch may be short). */
export function stepsPerEpoch(count: number, batchSize: number): number {
  return Math.ceil(count / batchSize)
}

/**
 * The samples member `memberIndex` of `memberCount` processes at global update `step` (0-based) of
 * a data-parallel task: update s takes the next `globalBatchSize` samples of its epoch's seeded
 * order (epochs never straddle: the last batch of an epoch is short), and the members split that
 * batch into contiguous slices whose sizes differ by at most one. Every peer computes the same
 * assignment from (seed, step) alone; together the members of a step cover its batch exactly.
 */
export function stepBatchIndices(
  count: number,
  seed: number,
  step: number,
  globalBatchSize: number,
  memberCount: number,
  memberIndex: number,
): Uint32Array {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`count must be >= 1, got ${count}`)
  if (!Number.isInteger(step) || step < 0)
    throw new RangeError(`step must be a non-negative integer, got ${step}`)
  if (!Number.isInteger(globalBatchSize) || globalBatchSize < 1) {
    throw new RangeError(`globalBatchSize must be >= 1, got ${globalBatchSize}`)
  }
  if (!Number.isInteger(memberCount) || memberCount < 1)
    throw new RangeError(`memberCount must be >= 1, got ${memberCount}`)
  if (!Number.isInteger(memberIndex) || memberIndex < 0 || memberIndex >= memberCount) {
    throw new RangeError(`memberIndex must be in [0, ${memberCount - 1}], got ${memberIndex}`)
  }
  const perEpoch = stepsPerEpoch(count, globalBatchSize)
  const epoch = Math.floor(step / perEpoch)
  const batchStart = (step % perEpoch) * globalBatchSize
  const batchEnd = Math.min(count, batchStart + globalBatchSize)
  const batchLength = batchEnd - batchStart
  const start = batchStart + Math.floor((memberIndex * batchLength) / memberCount)
  const end = batchStart + Math.floor(((memberIndex + 1) * batchLength) / memberCount)
  return epochOrder(count, seed, epoch).slice(start, end)
}

/**
 * The sample indices of member `memberIndex`'s micro-batch at `step`: the group's shard is visited
 * in seeded per-epoch orders (epochOrder of the task seed), each step taking the next
 * memberCount x batchSize samples, member i the i-th slice. The members of a step thus see disjoint
 * samples, and one epoch covers the shard once.
 */
export class MicroBatchPlan {
  private readonly orders = new Map<number, Uint32Array>()

  constructor(
    readonly sampleCount: number,
    readonly seed: number,
    readonly memberCount: number,
    readonly batchSize: number,
  ) {
    if (sampleCount < 1) throw new RangeError('the shard holds no samples')
  }

  indices(step: number, memberIndex: number): Uint32Array {
    const out = new Uint32Array(this.batchSize)
    const start = (step * this.memberCount + memberIndex) * this.batchSize
    for (let j = 0; j < this.batchSize; j++) {
      const position = start + j
      const epoch = Math.floor(position / this.sampleCount)
      out[j] = this.order(epoch)[position % this.sampleCount]
    }
    return out
  }

  private order(epoch: number): Uint32Array {
    let order = this.orders.get(epoch)
    if (!order) {
      order = epochOrder(this.sampleCount, this.seed, epoch)
      this.orders.set(epoch, order)
      // keep the two most recent epochs: a step straddles at most two
      for (const key of this.orders.keys()) if (key < epoch - 1) this.orders.delete(key)
    }
    return order
  }
}
