// Proves the replicated training state machine: the params digest is sha2-256 over float32
// little-endian bytes; entries and states survive encode/decode; applying the same entries gives
// bitwise-identical params on every copy (fast-check over random updates); an entry for a step
// already applied is skipped (a step is never applied twice), one ahead says 'behind', one whose
// digest differs marks the copy diverged; outer entries replace params once per round; the
// micro-batch plan gives disjoint samples per step and covers the shard each epoch; the flat
// parameter layout matches the MLP's device tensors.

import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MicroBatchPlan } from '../../../kernels/data/sharding.js'
import { CpuBackend } from '../../../kernels/index.js'
import { readParams } from '../../../kernels/models/kind.js'
import { Mlp } from '../../../kernels/models/mlp.js'
import { hostLayersToParams, initialParams, paramsToHostLayers } from '../../../kernels/models/mlp-kind.js'
import { GradientCompressor } from '../../../protocols/training/compression.js'
import { averageParams, OuterStepBarrier, outerStepParams } from '../../../protocols/training/outer.js'
import { bytesToFloats, floatsToBytes, paramsDigest, toHex } from '../../../protocols/training/params.js'
import {
  applyEntry,
  computeStep,
  createTrainingState,
  type DecodedEntry,
  decodeEntry,
  decodeState,
  encodeEntry,
  encodeState,
  isFinished,
  needsOuterStep,
  outerRoundsRequired,
  precomputeEntry,
  readyForStep,
  type TrainingConfig,
  type TrainingState,
} from '../../../protocols/training/state.js'

const config = (overrides: Partial<TrainingConfig> = {}): TrainingConfig => ({
  parameterCount: 6,
  steps: 10,
  learningRate: 0.01,
  schedule: 'constant',
  weightDecay: 0,
  outerEvery: 0,
  ...overrides,
})
const start = () => createTrainingState(Float32Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]), ['a', 'b', 'c'])

function stepEntry(state: TrainingState, update: Float32Array, cfg = config()): DecodedEntry {
  return {
    kind: 'step',
    step: state.step,
    contributors: ['a', 'b'],
    rejected: [{ member: 'c', reason: 'non-finite' }],
    suspects: [],
    agreement: [],
    loss: 2.5,
    update: floatsToBytes(update),
    updateEncoding: 'float32',
    updateScales: new Uint8Array(0),
    updateBlockSize: 0,
    updateCid: '',
    digestAfter: computeStep(state, update, cfg).digest,
    outerRound: 0,
  }
}

describe('params', () => {
  it('digest is sha2-256 over float32 little-endian bytes', () => {
    const params = Float32Array.from([1, -2.5, 3e-8])
    const expected = createHash('sha256').update(Buffer.from(params.buffer)).digest('hex')
    expect(toHex(paramsDigest(params))).toBe(expected)
    // sha256(00 00 80 3f), computed with Python's hashlib
    expect(toHex(paramsDigest(Float32Array.from([1]))).slice(0, 16)).toBe('e00e5eb9444182f3')
  })

  it('bytes round trip at any offset; a length not a multiple of 4 is refused', () => {
    fc.assert(
      fc.property(fc.float32Array({ maxLength: 20 }), fc.integer({ min: 0, max: 3 }), (values, offset) => {
        const bytes = floatsToBytes(values)
        const shifted = new Uint8Array(bytes.length + offset)
        shifted.set(bytes, offset)
        expect(bytesToFloats(shifted.subarray(offset))).toEqual(values)
      }),
    )
    expect(() => bytesToFloats(new Uint8Array(5))).toThrow(RangeError)
  })

  it('flat layout is the MLP device layout; host layers convert both ways', async () => {
    const architecture = { inputSize: 5, hiddenSizes: [4, 3], outputSize: 2 }
    const backend = new CpuBackend()
    const model = Mlp.initialize(backend, architecture, 9)
    const flat = initialParams(architecture, 9)
    expect(await readParams(backend, model.parameters())).toEqual(flat)
    expect(hostLayersToParams(architecture, paramsToHostLayers(architecture, flat))).toEqual(flat)
    expect(paramsToHostLayers(architecture, flat)).toEqual(await model.toHost())
    backend.destroy()
  })
})

describe('entries and states', () => {
  it('encode and decode without loss', () => {
    const state = start()
    const entry = stepEntry(state, Float32Array.from([1, 2, 3, 4, 5, 6]))
    entry.agreement = [0.25, -0.5]
    const decoded = decodeEntry(encodeEntry(entry))!
    expect({ ...decoded, update: [...decoded.update], digestAfter: [...decoded.digestAfter] }).toEqual({
      ...entry,
      gradientDigests: [],
      update: [...entry.update],
      digestAfter: [...entry.digestAfter],
    })
    applyEntry(state, entry, config())
    const restored = decodeState(encodeState(state), 6)!
    expect(restored).toEqual(state)
  })

  it('refuses malformed bytes, wrong sizes and mismatched agreement lists', () => {
    expect(decodeEntry(new Uint8Array([0xff, 0xff, 0xff]))).toBeUndefined()
    expect(decodeState(new Uint8Array([0x0a, 0x05]), 6)).toBeUndefined()
    expect(decodeState(encodeState(start()), 7)).toBeUndefined()
    const entry = stepEntry(start(), new Float32Array(6))
    entry.agreement = [1]
    expect(decodeEntry(encodeEntry(entry))).toBeUndefined()
  })
})

describe('applyEntry', () => {
  it('gives bitwise-identical params on every copy that applies the same entries', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.float({ min: -10, max: 10, noNaN: true }), { minLength: 6, maxLength: 6 }), {
          minLength: 1,
          maxLength: 8,
        }),
        (updates) => {
          const leader = start()
          const entries = updates.map((update) => {
            const entry = stepEntry(leader, Float32Array.from(update))
            expect(applyEntry(leader, entry, config())).toEqual({ kind: 'applied', step: entry.step })
            return entry
          })
          const follower = start()
          for (const entry of entries) applyEntry(follower, decodeEntry(encodeEntry(entry))!, config())
          expect(toHex(follower.digest)).toBe(toHex(leader.digest))
          expect(follower.params).toEqual(leader.params)
          expect(follower.secondMoment).toEqual(leader.secondMoment)
          expect(follower.step).toBe(updates.length)
        },
      ),
    )
  })

  it('applies a step once: a second entry for the same step is a duplicate', () => {
    const state = start()
    const first = stepEntry(state, Float32Array.from([1, 1, 1, 1, 1, 1]))
    // another leader's proposal for step 0
    const second = stepEntry(state, Float32Array.from([9, 9, 9, 9, 9, 9]))
    expect(applyEntry(state, first, config())).toEqual({ kind: 'applied', step: 0 })
    const digest = toHex(state.digest)
    expect(applyEntry(state, second, config())).toEqual({ kind: 'duplicate' })
    expect(toHex(state.digest)).toBe(digest)
    expect(state.step).toBe(1)
    expect(state.counts.get('a')!.accepted).toBe(1)
    expect(state.counts.get('c')!.rejected).toBe(1)
  })

  it('says behind for an entry ahead of the state, and marks a digest mismatch as diverged', () => {
    const state = start()
    const ahead = { ...stepEntry(state, new Float32Array(6)), step: 3 }
    expect(applyEntry(state, ahead, config())).toEqual({ kind: 'behind' })
    const lying = { ...stepEntry(state, new Float32Array(6)), digestAfter: new Uint8Array(32) }
    expect(applyEntry(state, lying, config())).toEqual({ kind: 'mismatch' })
    expect(state.diverged).toBe(true)
    expect(readyForStep(state, config())).toBe(false)
    expect(applyEntry(state, stepEntry(start(), new Float32Array(6)), config()).kind).toBe('ignored')
  })

  it('uses a precomputation only for the same update bytes on the same state', () => {
    const update = Float32Array.from([1, 2, 3, 4, 5, 6])
    const wrong = (state: TrainingState) => computeStep(state, new Float32Array(6), config())
    // for other bytes, or for the same bytes on another state (digest, step), it is ignored: the
    // entry is computed afresh and matches its digest after
    const cases = [
      (s: TrainingState) => ({ step: 0, baseDigest: s.digest, update: { update: new Uint8Array(24) } }),
      (s: TrainingState) => ({ step: 0, baseDigest: new Uint8Array(32), update: stepEntry(s, update) }),
      (s: TrainingState) => ({ step: 1, baseDigest: s.digest, update: stepEntry(s, update) }),
    ]
    for (const precomputation of cases) {
      const state = start()
      const entry = stepEntry(state, update)
      const precomputed = { ...precomputation(state), result: wrong(state) }
      expect(applyEntry(state, entry, config(), precomputed)).toEqual({ kind: 'applied', step: 0 })
      expect(toHex(state.digest)).toBe(toHex(entry.digestAfter))
    }
  })

  it('works an entry out ahead of its commit only when it applies to the state as it is', () => {
    const state = start()
    const before = encodeState(state)
    const update = Float32Array.from([0.5, -1, 2, 0, 3, -4])
    const entry = decodeEntry(encodeEntry(stepEntry(state, update)))!
    const precomputed = precomputeEntry(state, entry, config())
    expect(precomputed).toBeDefined()
    expect(encodeState(state)).toEqual(before)
    expect(toHex(precomputed!.result.digest)).toBe(toHex(entry.digestAfter))
    // at commit it is taken as it is (its arrays become the state's), the same as applying afresh
    const afresh = start()
    expect(applyEntry(afresh, entry, config())).toEqual({ kind: 'applied', step: 0 })
    expect(applyEntry(state, entry, config(), precomputed)).toEqual({ kind: 'applied', step: 0 })
    expect(state.params).toBe(precomputed!.result.params)
    expect(encodeState(state)).toEqual(encodeState(afresh))
    // not the state's step, a digest after the update does not give, a wrong size, an outer entry,
    // a diverged state: nothing, and the state untouched
    const other = start()
    const refused: Array<[TrainingState, DecodedEntry]> = [
      [other, { ...entry, step: 1 }],
      [other, { ...entry, digestAfter: new Uint8Array(32) }],
      [other, { ...entry, update: entry.update.subarray(0, 20) }],
      [other, { ...entry, kind: 'outer', outerRound: 1 }],
      [{ ...other, diverged: true }, entry],
    ]
    for (const [copy, bad] of refused) expect(precomputeEntry(copy, bad, config())).toBeUndefined()
    expect(encodeState(other)).toEqual(encodeState(start()))
    // an int8 update is worked out as its dequantized values, as applying does
    const { message, decoded } = new GradientCompressor('int8', 4).encode(update, 0, new Uint8Array(32), 2.5)
    const int8: DecodedEntry = {
      ...stepEntry(other, decoded),
      update: message.values,
      updateEncoding: 'int8',
      updateScales: message.scales,
      updateBlockSize: 4,
    }
    const int8Result = precomputeEntry(other, int8, config())
    expect(int8Result && toHex(int8Result.result.digest)).toBe(toHex(int8.digestAfter))
  })

  it(
    'applies an int8 update as its dequantized values, the same on every copy; ' + 'refuses bad int8 sizes',
    () => {
      const update = Float32Array.from([0.5, -1, 2, 0, 3, -4])
      // blocks of 4: scales 2/127 and 4/127
      const { message, decoded } = new GradientCompressor('int8', 4).encode(
        update,
        0,
        new Uint8Array(32),
        2.5,
      )
      const int8 = (state: TrainingState): DecodedEntry => ({
        ...stepEntry(state, decoded),
        update: message.values,
        updateEncoding: 'int8',
        updateScales: message.scales,
        updateBlockSize: 4,
      })
      const [a, b, float32Copy] = [start(), start(), start()]
      const entry = decodeEntry(encodeEntry(int8(a)))
      expect(entry?.updateEncoding).toBe('int8')
      expect(entry?.update.byteLength).toBe(6)
      expect(entry && applyEntry(a, entry, config()).kind).toBe('applied')
      expect(applyEntry(b, int8(b), config()).kind).toBe('applied')
      expect(applyEntry(float32Copy, stepEntry(float32Copy, decoded), config()).kind).toBe('applied')
      expect(toHex(a.digest)).toBe(toHex(b.digest))
      expect(toHex(a.digest)).toBe(toHex(float32Copy.digest))
      // sizes that do not fit the parameter count are refused without touching the state
      const c = start()
      const bad: DecodedEntry[] = [
        { ...int8(c), update: message.values.subarray(0, 5) },
        { ...int8(c), updateScales: message.scales.subarray(0, 4) },
        { ...int8(c), updateBlockSize: 0 },
        { ...int8(c), kind: 'outer', outerRound: 1 },
      ]
      for (const entry of bad)
        expect(applyEntry(c, entry, config())).toEqual({ kind: 'ignored', reason: 'wrong-length' })
      expect(c.step).toBe(0)
      // an encoding this version does not know is not a training entry
      // (a field repeated at the end of a protobuf message overrides the earlier value: field 12 = 7)
      expect(decodeEntry(new Uint8Array([...encodeEntry(int8(c)), 12 << 3, 7]))).toBeUndefined()
      expect(decodeEntry(new Uint8Array([...encodeEntry(int8(c)), 12 << 3, 1]))?.updateEncoding).toBe('int8')
    },
  )

  it('computes a step into given arrays exactly as into new ones, leaving the state as it was', () => {
    const state = start()
    const update = Float32Array.from([0.5, -1, 2, 0, 3, -4])
    const fresh = computeStep(state, update, config())
    const into = {
      params: new Float32Array(6),
      firstMoment: new Float32Array(6),
      secondMoment: new Float32Array(6),
    }
    const before = encodeState(state)
    const reused = computeStep(state, update, config(), into)
    expect(reused.params).toBe(into.params)
    expect(reused.firstMoment).toBe(into.firstMoment)
    expect(reused.secondMoment).toBe(into.secondMoment)
    expect([...reused.params]).toEqual([...fresh.params])
    expect([...reused.secondMoment]).toEqual([...fresh.secondMoment])
    expect(toHex(reused.digest)).toBe(toHex(fresh.digest))
    expect(encodeState(state)).toEqual(before)
    // the state's own arrays, or arrays of another size, are never written: it copies instead
    const own = computeStep(state, update, config(), { ...into, params: state.params })
    expect(own.params).not.toBe(state.params)
    expect(encodeState(state)).toEqual(before)
  })

  it('outer entries replace params once per round, between the right steps', () => {
    const cfg = config({ steps: 4, outerEvery: 2 })
    const state = start()
    for (let step = 0; step < 2; step++)
      applyEntry(state, stepEntry(state, new Float32Array(6).fill(1), cfg), cfg)
    expect(needsOuterStep(state, cfg)).toBe(true)
    expect(readyForStep(state, cfg)).toBe(false)
    const params = Float32Array.from([7, 7, 7, 7, 7, 7])
    const outer: DecodedEntry = {
      ...stepEntry(state, params, cfg),
      kind: 'outer',
      update: floatsToBytes(params),
      digestAfter: paramsDigest(params),
      outerRound: 1,
    }
    expect(applyEntry(state, outer, cfg)).toEqual({ kind: 'outer', round: 1 })
    expect(state.params).toEqual(params)
    expect(applyEntry(state, outer, cfg)).toEqual({ kind: 'duplicate' })
    expect(readyForStep(state, cfg)).toBe(true)
    for (let step = 2; step < 4; step++) applyEntry(state, stepEntry(state, new Float32Array(6), cfg), cfg)
    expect(isFinished(state, cfg)).toBe(false) // the final round is still due
    applyEntry(state, { ...outer, step: 4, outerRound: 2 }, cfg)
    expect(isFinished(state, cfg)).toBe(true)
  })

  it.each([
    [0, 10, 0, 0],
    [5, 10, 3, 1],
    [6, 10, 3, 2],
    [10, 10, 3, 4], // 3, 6, 9 and the final step 10
    [9, 9, 3, 3],
  ])('outer rounds due before step %d of %d every %d: %d', (step, steps, every, rounds) => {
    expect(outerRoundsRequired(step, config({ steps, outerEvery: every }))).toBe(rounds)
  })
})

describe('MicroBatchPlan', () => {
  it('gives the members of a step disjoint samples and covers the shard once per epoch', () => {
    const plan = new MicroBatchPlan(60, 5, 3, 4) // 12 samples per step: 5 steps per epoch
    const seen = new Set<number>()
    for (let step = 0; step < 5; step++) {
      for (let member = 0; member < 3; member++)
        for (const sample of plan.indices(step, member)) seen.add(sample)
    }
    expect(seen.size).toBe(60)
    expect(plan.indices(7, 1)).toEqual(new MicroBatchPlan(60, 5, 3, 4).indices(7, 1))
    expect(plan.indices(7, 1)).not.toEqual(new MicroBatchPlan(60, 6, 3, 4).indices(7, 1))
  })
})

describe('outer step', () => {
  it('averages, or moves by an outer learning rate toward the average', () => {
    const a = Float32Array.from([1, 2])
    const b = Float32Array.from([3, 6])
    expect(averageParams([a, b])).toEqual(Float32Array.from([2, 4]))
    expect(outerStepParams([a, b], Float32Array.from([0, 0]), 0.5)).toEqual(Float32Array.from([1, 2]))
    expect(() => averageParams([])).toThrow(RangeError)
  })

  it('the barrier answers every group, and a repeated request, with the same average', async () => {
    const barrier = new OuterStepBarrier(2)
    const first = barrier.outerStep({ groupId: 'g0', round: 1, step: 5, params: Float32Array.from([0, 4]) })
    const second = barrier.outerStep({ groupId: 'g1', round: 1, step: 5, params: Float32Array.from([2, 0]) })
    expect(await first).toEqual(Float32Array.from([1, 2]))
    expect(await second).toEqual(Float32Array.from([1, 2]))
    const again = await barrier.outerStep({
      groupId: 'g0',
      round: 1,
      step: 5,
      params: Float32Array.from([9, 9]),
    })
    expect(again).toEqual(Float32Array.from([1, 2]))
  })
})
