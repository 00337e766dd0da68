// Proves the pure inference quorum logic (protocols/inference/quorum.ts): shard plans are ordered and
// complete, replicas land on distinct unasked peers by score, votes accept a majority (bitwise within a
// backend class, within the stated tolerance across classes), ask for re-runs on ties and disagreement,
// fail when no peer or run is left, and scores reward agreement and punish outliers; by tables and
// fast-check properties.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  agree,
  applyScores,
  argmaxRows,
  choosePeers,
  clusters,
  LOGIT_TOLERANCE,
  majority,
  planShards,
  type ReplicaResult,
  runsMax,
  SCORE_AGREED,
  SCORE_FAILED,
  SCORE_OUTLIER,
  scoreChanges,
  vote,
} from '../../../protocols/inference/quorum.js'

const result = (peer: string, values: number[], backendClass = 'cpu:ref'): ReplicaResult => ({
  peer,
  backendClass,
  logits: Float32Array.from(values),
})

describe('planShards', () => {
  it.each([
    [10, 3, [4, 3, 3]],
    [2, 5, [1, 1]],
    [7, 1, [7]],
    [9, 3, [3, 3, 3]],
  ])('%i rows in %i shards -> sizes %j', (count, shards, sizes) => {
    expect(planShards(count, shards).map((r) => r.end - r.start)).toEqual(sizes)
  })

  it('refuses nonsense', () => {
    expect(() => planShards(0, 2)).toThrow(RangeError)
    expect(() => planShards(5, 0)).toThrow(RangeError)
    expect(() => planShards(5, 1.5)).toThrow(RangeError)
  })

  it('covers every row once, in order, balanced', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 64 }), (count, shards) => {
        const plan = planShards(count, shards)
        expect(plan.length).toBe(Math.min(count, shards))
        expect(plan[0].start).toBe(0)
        expect(plan.at(-1)!.end).toBe(count)
        plan.forEach((r, i) => {
          expect(r.index).toBe(i)
          expect(r.end).toBeGreaterThan(r.start)
          if (i > 0) expect(r.start).toBe(plan[i - 1].end)
        })
        const sizes = plan.map((r) => r.end - r.start)
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
      }),
    )
  })
})

describe('choosePeers', () => {
  it('prefers higher scores and skips excluded peers', () => {
    const scores = new Map([
      ['a', -5],
      ['b', 2],
      ['c', 0],
    ])
    expect(choosePeers(['a', 'b', 'c', 'd'], { count: 2, scores, exclude: ['c'] })).toEqual(
      expect.arrayContaining(['b', 'd']),
    )
    expect(choosePeers(['a', 'b', 'c'], { count: 3, scores })[0]).toBe('b')
    expect(choosePeers(['a', 'b', 'c'], { count: 3, scores }).at(-1)).toBe('a')
  })

  it('returns distinct, unexcluded peers, never more than asked or available', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('p1', 'p2', 'p3', 'p4', 'p5', 'p6'), { maxLength: 12 }),
        fc.array(fc.constantFrom('p1', 'p2', 'p3'), { maxLength: 3 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 63 }),
        (candidates: string[], exclude: string[], count, shard) => {
          const chosen = choosePeers(candidates, { count, exclude, shard })
          expect(new Set(chosen).size).toBe(chosen.length)
          for (const peer of chosen) {
            expect(candidates).toContain(peer)
            expect(exclude).not.toContain(peer)
          }
          const available = new Set(candidates.filter((p) => !exclude.includes(p))).size
          expect(chosen.length).toBe(Math.min(count, available))
        },
      ),
    )
  })

  it('spreads shards over peers when scores tie', () => {
    const peers = ['p1', 'p2', 'p3', 'p4', 'p5']
    const firsts = new Set(
      Array.from({ length: 32 }, (_, shard) => choosePeers(peers, { count: 1, shard })[0]),
    )
    expect(firsts.size).toBeGreaterThan(1)
  })
})

describe('agree', () => {
  it('is bitwise within a backend class', () => {
    expect(agree(result('a', [1, 2]), result('b', [1, 2]))).toBe(true)
    expect(agree(result('a', [1, 2]), result('b', [1, 2 + 2 ** -20]))).toBe(false)
    // +0 and -0 differ in bits
    expect(agree(result('a', [0]), result('b', [-0]))).toBe(false)
  })

  it('uses the stated tolerance across backend classes', () => {
    const { absolute, relative } = LOGIT_TOLERANCE
    const x = 10
    const inside = x + 0.9 * (absolute + relative * x)
    const outside = x + 1.5 * (absolute + relative * x)
    expect(agree(result('a', [x]), result('b', [inside], 'webgpu:gpu'))).toBe(true)
    expect(agree(result('a', [x]), result('b', [outside], 'webgpu:gpu'))).toBe(false)
  })

  it('never accepts NaN, Inf or a wrong length', () => {
    expect(agree(result('a', [Number.NaN]), result('b', [Number.NaN]))).toBe(false)
    expect(agree(result('a', [Number.POSITIVE_INFINITY]), result('b', [Number.POSITIVE_INFINITY]))).toBe(
      false,
    )
    expect(agree(result('a', [1, 2]), result('b', [1]))).toBe(false)
  })

  it('is symmetric and reflexive on finite results', () => {
    const values = fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }), {
      minLength: 1,
      maxLength: 8,
    })
    fc.assert(
      fc.property(values, values, fc.boolean(), (p, q, sameClass) => {
        const a = result('a', p)
        const b = result('b', q.length === p.length ? q : p, sameClass ? 'cpu:ref' : 'webgpu:gpu')
        expect(agree(a, a)).toBe(true)
        expect(agree(a, b)).toBe(agree(b, a))
      }),
    )
  })
})

describe('vote', () => {
  const good = [1, 2, 3, 4]
  const bad = [1, 2, 3, 4.5]
  const base = { expectedLength: 4, available: 5 }

  it.each([
    ['R=3, all agree', 3, [good, good, good], 'accept', []],
    ['R=3, one liar', 3, [good, bad, good], 'accept', ['b']],
    ['R=2, one liar: tie, re-run', 2, [good, bad], 'run', []],
    ['R=2, both agree', 2, [good, good], 'accept', []],
    ['R=1: a single result', 1, [good], 'accept', []],
    ['R=3, three different: re-run', 3, [good, bad, [0, 0, 0, 0]], 'run', []],
    ['R=2, liar then a re-run agreeing with the honest one', 2, [good, bad, good], 'accept', ['b']],
    ['R=3, wrong length counts as no result', 3, [good, [1, 2], good], 'accept', ['b']],
    ['R=3, NaN counts as no result', 3, [good, [Number.NaN, 0, 0, 0], bad], 'run', []],
  ] as const)('%s', (_, replicas, values, kind, outliers) => {
    const results = values.map((v, i) => result(String.fromCharCode(97 + i), [...v]))
    const decision = vote({ ...base, replicas, results, runs: results.length })
    expect(decision.kind).toBe(kind)
    if (decision.kind === 'accept') {
      expect(decision.outliers).toEqual(outliers)
      expect(Array.from(decision.logits)).toEqual(good)
    }
  })

  it('asks for exactly the runs that could still make a majority', () => {
    const decision = vote({
      ...base,
      replicas: 5,
      results: [result('a', good), result('b', good), result('c', bad), result('d', bad)],
      runs: 4,
    })
    expect(decision).toMatchObject({ kind: 'run', count: 1 })
    const none = vote({ ...base, replicas: 3, results: [], runs: 3 })
    expect(none).toMatchObject({ kind: 'run', count: 2 })
  })

  it('fails when no peer is left or the run budget is spent', () => {
    const tie = [result('a', good), result('b', bad)]
    expect(vote({ ...base, replicas: 2, results: tie, runs: 2, available: 0 })).toMatchObject({
      kind: 'fail',
      reason: expect.stringContaining('no other peer'),
    })
    expect(vote({ ...base, replicas: 2, results: tie, runs: runsMax(2) })).toMatchObject({
      kind: 'fail',
      reason: expect.stringContaining('runs'),
    })
  })

  it('accepts only a majority of the replicas that is also a majority of all results', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 0, maxLength: 15 }),
        (replicas, picks) => {
          const variants = [good, bad, [9, 9, 9, 9]]
          const results = picks.map((p, i) => result(`p${i}`, variants[p]))
          const decision = vote({ ...base, replicas, results, runs: results.length, available: 100 })
          const sizes = [0, 1, 2].map((v) => picks.filter((p) => p === v).length)
          const best = Math.max(...sizes)
          if (decision.kind === 'accept') {
            expect(decision.agreeing.length).toBe(best)
            expect(best).toBeGreaterThanOrEqual(majority(replicas))
            expect(best * 2).toBeGreaterThan(results.length)
            expect(decision.agreeing.length + decision.outliers.length).toBe(results.length)
          } else if (decision.kind === 'run') {
            expect(decision.count).toBeGreaterThanOrEqual(1)
            // `count` more results agreeing with the largest set either make it accepted or spend the budget
            const leader = picks.find((p) => sizes[p] === best) ?? 0
            const more = [
              ...results,
              ...Array.from({ length: decision.count }, (_, i) => result(`q${i}`, variants[leader])),
            ]
            const next = vote({ ...base, replicas, results: more, runs: more.length, available: 100 })
            if (next.kind !== 'accept') expect(more.length).toBe(runsMax(replicas))
          } else {
            expect(results.length >= runsMax(replicas)).toBe(true)
          }
        },
      ),
    )
  })

  it('clusters bitwise-equal results of one class and keeps different classes apart when far', () => {
    const groups = clusters([result('a', good), result('b', good, 'webgpu:x'), result('c', bad)], 4)
    expect(groups.map((g) => g.map((r) => r.peer))).toEqual([['a', 'b'], ['c']])
  })
})

describe('scores', () => {
  it('rewards agreement, punishes outliers more, and failures a little', () => {
    const changes = scoreChanges(
      { kind: 'accept', logits: new Float32Array(0), agreeing: ['a', 'b'], outliers: ['c'] },
      ['d', 'd'],
    )
    expect(Object.fromEntries(changes)).toEqual({
      a: SCORE_AGREED,
      b: SCORE_AGREED,
      c: SCORE_OUTLIER,
      d: 2 * SCORE_FAILED,
    })
    const scores = applyScores(new Map([['c', 3]]), changes)
    expect(scores.get('c')).toBe(3 + SCORE_OUTLIER)
    expect(SCORE_OUTLIER).toBeLessThan(-SCORE_AGREED)
    expect(Object.fromEntries(scoreChanges({ kind: 'fail', reason: 'x' }, ['e']))).toEqual({
      e: SCORE_FAILED,
    })
  })

  it('a liar outvoted every time ends below every honest peer', () => {
    let scores = new Map<string, number>()
    for (let shard = 0; shard < 5; shard++) {
      scores = applyScores(
        scores,
        scoreChanges({
          kind: 'accept',
          logits: new Float32Array(0),
          agreeing: ['h1', 'h2'],
          outliers: ['liar'],
        }),
      )
    }
    expect(choosePeers(['liar', 'h1', 'h2'], { count: 2, scores })).not.toContain('liar')
  })
})

describe('argmaxRows', () => {
  it('picks the first largest logit per row', () => {
    expect(argmaxRows(Float32Array.from([0, 2, 1, 5, 5, 0]), 3)).toEqual([1, 0])
  })
})
