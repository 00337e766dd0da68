// Proves the leader's pure step rules: each aggregation rule against hand-computed tables and
// properties (fast-check) of order invariance and robustness, screening of wrong length, NaN/Inf and
// norm outliers (factor 10 x the leave-one-out median), the quorum/straggler decision, and the
// leave-one-out agreement score against a naive computation (also with squared norms carried in).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../kernels/data/random.js'
import {
  aggregateGradients,
  agreementScores,
  type Contribution,
  cosineSimilarity,
  expectedMembers,
  findSuspects,
  l2Norm,
  NORM_FACTOR_MAX_DEFAULT,
  quorumDecision,
  quorumSize,
  screenGradients,
  screenIfReady,
  sortSmall,
  squaredNorm,
} from '../../../protocols/training/aggregate.js'

const f32 = (values: number[]) => Float32Array.from(values)
const contribution = (member: string, values: number[], loss = 1): Contribution => ({
  member,
  gradient: f32(values),
  loss,
})
const finite = fc.float({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true })
const vectors = (count: number, length: number) =>
  fc.array(fc.array(finite, { minLength: length, maxLength: length }), { minLength: count, maxLength: count })

describe('aggregateGradients', () => {
  it.each([
    [
      'mean',
      [
        [1, 10],
        [2, 20],
        [6, 60],
      ],
      [3, 30],
    ],
    [
      'median',
      [
        [1, 10],
        [2, 20],
        [6, 60],
      ],
      [2, 20],
    ],
    [
      'median',
      [
        [1, -5],
        [4, 5],
        [2, 0],
        [100, 1],
      ],
      [3, 0.5],
    ],
    [
      'trimmed-mean',
      [
        [1, 0],
        [2, 0],
        [3, 0],
        [4, 0],
        [100, 9],
      ],
      [3, 0],
    ],
    [
      'trimmed-mean',
      [
        [5, 1],
        [1, 2],
      ],
      [3, 1.5],
    ], // n <= 2k: falls back to the median
  ] as const)('%s of %j is %j', (rule, inputs, expected) => {
    const result = aggregateGradients(
      inputs.map((values) => f32([...values])),
      rule,
      1,
    )
    expect([...result]).toEqual(expected.map((value) => Math.fround(value)))
  })

  it('trimmed-mean with trimCount 0 equals the mean; a single gradient is returned as is', () => {
    fc.assert(
      fc.property(vectors(4, 5), (inputs) => {
        const gradients = inputs.map(f32)
        // equal up to summation order (trimmed-mean sums sorted values): within float rounding of sum |x|
        const trimmed = aggregateGradients(gradients, 'trimmed-mean', 0)
        const mean = aggregateGradients(gradients, 'mean')
        for (let i = 0; i < 5; i++) {
          const magnitude = gradients.reduce((total, gradient) => total + Math.abs(gradient[i]), 0)
          expect(Math.abs(trimmed[i] - mean[i])).toBeLessThanOrEqual(1e-6 * magnitude + 1e-44)
        }
        const plain = (values: Float32Array) => Array.from(values, (value) => value + 0) // -0 is 0
        expect(plain(aggregateGradients([gradients[0]], 'median'))).toEqual(plain(gradients[0]))
      }),
    )
  })

  it('is invariant to the order of contributions (median and trimmed-mean exactly)', () => {
    fc.assert(
      fc.property(vectors(5, 6), (inputs) => {
        const gradients = inputs.map(f32)
        const reversed = [...gradients].reverse()
        for (const rule of ['median', 'trimmed-mean'] as const) {
          expect(aggregateGradients(reversed, rule)).toEqual(aggregateGradients(gradients, rule))
        }
      }),
    )
  })

  it('median and trimmed-mean stay within the honest range whatever one of three sends', () => {
    fc.assert(
      fc.property(vectors(2, 8), fc.array(finite, { minLength: 8, maxLength: 8 }), (honest, liar) => {
        const gradients = [...honest.map(f32), f32(liar)]
        for (const rule of ['median', 'trimmed-mean'] as const) {
          const result = aggregateGradients(gradients, rule)
          for (let i = 0; i < 8; i++) {
            const low = Math.min(honest[0][i], honest[1][i])
            const high = Math.max(honest[0][i], honest[1][i])
            expect(result[i]).toBeGreaterThanOrEqual(Math.fround(low))
            expect(result[i]).toBeLessThanOrEqual(Math.fround(high))
          }
        }
      }),
    )
  })

  it('mean: bit for bit the float64 sum in member order over n, for 1-6 members and special values', () => {
    const special = [0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-45, -3.4e38]
    const random = SeededRandom.stream(7, 'mean-bits')
    const gradient = () =>
      Float32Array.from({ length: 999 }, (_, i) =>
        i % 9 === 0
          ? special[(i / 9) % special.length]
          : (random.float() - 0.5) * 10 ** (random.float() * 10 - 5),
      )
    for (let n = 1; n <= 6; n++) {
      const gradients = Array.from({ length: n }, gradient)
      const expected = new Float32Array(999)
      for (let i = 0; i < expected.length; i++) {
        let sum = 0
        for (const g of gradients) sum += g[i]
        expected[i] = sum / n
      }
      const bits = (values: Float32Array) => [...new Uint32Array(values.buffer)]
      expect(bits(aggregateGradients(gradients, 'mean'))).toEqual(bits(expected))
    }
  })

  it('sorts a small column exactly as Float64Array sort does (-0 before +0, NaN last), 1-17 values', () => {
    const special = [0, -0, Number.NaN, 1, -1, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-45]
    const random = new SeededRandom(11)
    for (let trial = 0; trial < 2000; trial++) {
      const n = 1 + (trial % 17)
      const values = Array.from({ length: n }, () =>
        random.float() < 0.3 ? special[Math.floor(random.float() * special.length)] : random.float() * 4 - 2,
      )
      const expected = Float64Array.from(values).sort()
      const actual = Float64Array.from(values)
      sortSmall(actual, n)
      expect([...actual].map((v) => (Object.is(v, -0) ? '-0' : String(v)))).toEqual(
        [...expected].map((v) => (Object.is(v, -0) ? '-0' : String(v))),
      )
    }
  })

  it('refuses empty input and mixed lengths', () => {
    expect(() => aggregateGradients([], 'mean')).toThrow(RangeError)
    expect(() => aggregateGradients([f32([1]), f32([1, 2])], 'median')).toThrow(RangeError)
  })
})

describe('screenGradients', () => {
  it('refuses wrong lengths, NaN, Inf and a non-finite loss, naming the reason', () => {
    const result = screenGradients(
      [
        contribution('a', [1, 2, 3]),
        contribution('b', [1, 2]),
        contribution('c', [1, Number.NaN, 3]),
        contribution('d', [1, Number.POSITIVE_INFINITY, 3]),
        contribution('e', [1, 2, 3], Number.NaN),
        contribution('f', [2, 2, 3]),
      ],
      3,
    )
    expect(result.accepted.map((c) => c.member)).toEqual(['a', 'f'])
    expect(result.rejected).toEqual([
      { member: 'b', reason: 'wrong-length' },
      { member: 'c', reason: 'non-finite' },
      { member: 'd', reason: 'non-finite' },
      { member: 'e', reason: 'non-finite' },
    ])
  })

  it(`refuses a norm above ${NORM_FACTOR_MAX_DEFAULT}x the median norm of the others, and only that`, () => {
    const result = screenGradients(
      [
        contribution('a', [3, 4]),
        contribution('b', [0, 6]),
        contribution('liar', [0, 100]),
        contribution('d', [0, 49]),
      ],
      2,
    )
    // liar: 100 > 10 x median(5, 6, 49) = 60; d: 49 <= 10 x median(5, 6, 100) = 60
    expect(result.rejected).toEqual([{ member: 'liar', reason: 'norm-outlier' }])
    expect(result.accepted.map((c) => c.member)).toEqual(['a', 'b', 'd'])
  })

  it('applies the norm bar only against two others or more: two gradients 100x apart both pass', () => {
    // with one other there is no telling which of the two is the outlier
    const two = screenGradients([contribution('a', [1]), contribution('b', [100])], 1)
    expect(two.rejected).toEqual([])
    expect(two.accepted.map((c) => c.member)).toEqual(['a', 'b'])
    expect(screenGradients([contribution('a', [1e30])], 1).accepted).toHaveLength(1)
    // a third names it: 100 > 10 x median(1, 2)
    const three = screenGradients(
      [contribution('a', [1]), contribution('b', [100]), contribution('c', [2])],
      1,
    )
    expect(three.rejected).toEqual([{ member: 'b', reason: 'norm-outlier' }])
    // non-finite values are refused whatever the count
    expect(screenGradients([contribution('a', [1]), contribution('b', [Number.NaN])], 1).rejected).toEqual([
      { member: 'b', reason: 'non-finite' },
    ])
  })

  it('never admits a non-finite value (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.float(), { minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
        (inputs) => {
          const result = screenGradients(
            inputs.map((values, i) => contribution(`m${i}`, values)),
            4,
          )
          for (const { gradient } of result.accepted)
            for (const value of gradient) expect(Number.isFinite(value)).toBe(true)
          expect(result.accepted.length + result.rejected.length).toBe(inputs.length)
        },
      ),
    )
  })
})

describe('quorum', () => {
  it('needs a strict majority', () => {
    expect([1, 2, 3, 4, 5].map(quorumSize)).toEqual([1, 2, 2, 3, 3])
  })

  it.each([
    // received, quorumAt, now, expected -> decision
    [['a'], undefined, 0, ['a', 'b', 'c'], 'wait'],
    [['a', 'b'], 100, 200, ['a', 'b', 'c'], 'wait'],
    [['a', 'b'], 100, 350, ['a', 'b', 'c'], 'aggregate'],
    [['a', 'b', 'c'], 100, 100, ['a', 'b', 'c'], 'aggregate'],
    [['a', 'b'], 100, 101, ['a', 'b'], 'aggregate'],
    [['a'], 0, 10_000, ['a'], 'wait'],
  ] as const)(
    'received %j (quorum at %s, now %s, expecting %j): %s',
    (received, quorumAtMs, nowMs, expected, decision) => {
      expect(
        quorumDecision({ memberCount: 3, expected, received, quorumAtMs, nowMs, stragglerTimeoutMs: 250 }),
      ).toBe(decision)
    },
  )

  it('stops waiting for a member silent for the last three steps', () => {
    const seen = new Map([
      ['a', 9],
      ['b', 9],
      ['c', 5],
    ])
    expect(expectedMembers(['a', 'b', 'c'], seen, 10)).toEqual(['a', 'b'])
    expect(expectedMembers(['a', 'b', 'c'], seen, 8)).toEqual(['a', 'b', 'c'])
    expect(expectedMembers(['a', 'b', 'c'], new Map(), 1)).toEqual(['a', 'b', 'c'])
    // a new leader (since step 9) waits for everyone for three steps before trusting its history
    expect(expectedMembers(['a', 'b', 'c'], new Map([['a', 10]]), 11, 9)).toEqual(['a', 'b', 'c'])
    expect(expectedMembers(['a', 'b', 'c'], new Map([['a', 10]]), 12, 9)).toEqual(['a'])
  })
})

describe('agreement', () => {
  it('equals the naive cosine with the mean of the others', () => {
    fc.assert(
      fc.property(vectors(4, 6), (inputs) => {
        const accepted = inputs.map((values, i) => contribution(`m${i}`, values))
        const scores = agreementScores(accepted)
        accepted.forEach((own, i) => {
          const naive = new Float64Array(6)
          accepted.forEach((other, j) => {
            if (j !== i) for (let k = 0; k < 6; k++) naive[k] += other.gradient[k]
          })
          let dot = 0
          let ownSquared = 0
          let othersSquared = 0
          for (let k = 0; k < 6; k++) {
            dot += own.gradient[k] * naive[k]
            ownSquared += own.gradient[k] ** 2
            othersSquared += naive[k] ** 2
          }
          const expected = ownSquared * othersSquared > 0 ? dot / Math.sqrt(ownSquared * othersSquared) : 0
          expect(scores.get(own.member)!).toBeCloseTo(expected, 6)
        })
      }),
    )
  })

  it('stays exact when the others nearly cancel (a liar negating an honest gradient)', () => {
    // fast-check's counterexample against the Gram-matrix sums: |others|^2 = 0.098 came out of
    // sums of 1e12-sized dot products, with the last digit wrong
    const accepted = [
      [0, -0.000312500138534233, 0, 0, 0, 0],
      [0, 0, 0, 0, -999997.8125, 0],
      [0, 0, 0, 0, 999997.5, 0],
      [0, 0, 0, 0, -1.1453645032303019e-24, 0],
    ].map((values, i) => contribution(`m${i}`, values))
    const scores = agreementScores(accepted)
    const others = [0, -0.000312500138534233, 0, 0, -0.3125, 0]
    expect(scores.get('m3')!).toBeCloseTo(0.3125 / Math.hypot(...others), 12)
    expect(scores.get('m0')).toBe(0)
    // a and z cancel but for float32 rounding in the last element: b is read against that remainder
    const honest = f32([1, 2, 3])
    const liar = f32([-1, -2, -3.0001])
    const small = f32([0, 0, 1e-3])
    const scored = agreementScores([
      { member: 'a', gradient: honest, loss: 1 },
      { member: 'z', gradient: liar, loss: 1 },
      { member: 'b', gradient: small, loss: 1 },
    ])
    expect(scored.get('b')).toBe(-1)
    const othersOfA = Array.from(liar, (value, i) => value + small[i])
    const dot = othersOfA.reduce((total, value, i) => total + value * honest[i], 0)
    expect(scored.get('a')!).toBeCloseTo(dot / (Math.hypot(...honest) * Math.hypot(...othersOfA)), 12)
  })

  it('uses a squared norm carried with a contribution, and gives what it would compute itself', () => {
    fc.assert(
      fc.property(vectors(3, 5), (inputs) => {
        const plain = inputs.map((values, i) => contribution(`m${i}`, values))
        const carried = plain.map((c) => ({ ...c, squaredNorm: squaredNorm(c.gradient) }))
        expect(agreementScores(carried)).toEqual(agreementScores(plain))
        expect(screenGradients(carried, 5).rejected).toEqual(screenGradients(plain, 5).rejected)
      }),
    )
    // the carried value is what is used: a norm of 1e6 where the values say 1 is an outlier
    const honest = [contribution('a', [1, 0]), contribution('b', [0, 1]), contribution('c', [1, 1])]
    expect(screenGradients(honest, 2).rejected).toEqual([])
    const claimed = honest.map((c) => (c.member === 'c' ? { ...c, squaredNorm: 1e12 } : c))
    expect(screenGradients(claimed, 2).rejected).toEqual([{ member: 'c', reason: 'norm-outlier' }])
    expect(squaredNorm(f32([3, 4]))).toBe(25)
    expect(squaredNorm(f32([3, Number.NaN]))).toBeNaN()
  })

  it('flags the contributor that agrees with nobody, not with fewer than three', () => {
    const honest = [contribution('a', [1, 1, 0, 0]), contribution('b', [1, 0.8, 0.1, 0])]
    const liar = contribution('z', [0, 0, 0, 5])
    expect(findSuspects([...honest, liar])).toEqual(['z'])
    expect(findSuspects([honest[0], liar])).toEqual([])
    expect(l2Norm(f32([3, 4]))).toBe(5)
    expect(cosineSimilarity(f32([1, 0]), f32([0, 2]))).toBe(0)
    expect(cosineSimilarity(f32([1, 1]), f32([2, 2]))).toBeCloseTo(1, 12)
  })
})

describe('screenIfReady (the leader step decision the group and the simulator share)', () => {
  const members = ['a', 'b', 'c']
  const input = (
    contributions: Contribution[],
    rejected: Array<[string, string]>,
    quorumAtMs?: number,
    nowMs = 0,
  ) =>
    screenIfReady({
      collected: {
        contributions: new Map(contributions.map((c) => [c.member, c])),
        rejected: new Map(rejected),
        quorumAtMs,
      },
      members,
      lastSeenStep: new Map(),
      step: 0,
      leaderSinceStep: 0,
      nowMs,
      stragglerTimeoutMs: 250,
      expectedLength: 2,
      normFactorMax: NORM_FACTOR_MAX_DEFAULT,
    })

  it('waits without a quorum of admitted gradients, even when every member answered', () => {
    expect(input([contribution('a', [1, 1])], [])).toBeUndefined()
    expect(
      input(
        [contribution('a', [1, 1])],
        [
          ['b', 'non-finite'],
          ['c', 'wrong-length'],
        ],
        0,
        1_000,
      ),
    ).toBeUndefined()
  })

  it('waits for an expected member until the straggler timeout, then screens in member order', () => {
    const two = [contribution('b', [1, 2]), contribution('a', [3, 4])]
    expect(input(two, [], 100, 200)).toBeUndefined()
    const screened = input(two, [], 100, 350)
    expect(screened?.accepted.map((c) => c.member)).toEqual(['a', 'b'])
    const all = input([...two, contribution('c', [Number.NaN, 0])], [], 100, 100)
    expect(all?.accepted.map((c) => c.member)).toEqual(['a', 'b'])
    expect(all?.rejected).toEqual([{ member: 'c', reason: 'non-finite' }])
  })
})
