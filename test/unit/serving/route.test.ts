// Proves the chain router picks the cheapest chain of servers over block boundaries (checked against
// hand-worked tables and a brute-force enumeration of every chain), avoids excluded and disreputable
// peers, replaces one hop (re-planning the rest when it must) and finds a second server for a span.
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../kernels/data/random.js'
import {
  chainCostMs,
  findVerifier,
  LATENCY_MS_DEFAULT,
  planChain,
  REPUTATION_PENALTY_DEFAULT,
  type RouteCandidate,
  RouteError,
  type RouteHop,
  replanFrom,
} from '../../../node/serving/route.js'

/** a candidate with perfect reputation and zero latency unless given */
function server(
  peerId: string,
  start: number,
  end: number,
  tokensPerSecond: number,
  extra = {},
): RouteCandidate {
  return { peerId, start, end, tokensPerSecond, latencyMs: 0, reputation: 1, ...extra }
}

const spans = (hops: readonly RouteHop[]) => hops.map((h) => `${h.peerId}:${h.start}-${h.end}`)

/** every chain from 0 to L (each hop: any boundary to any later one on any server holding it), cheapest */
function bruteForce(blocks: number, candidates: RouteCandidate[], penalty: number): number {
  const cost = (c: RouteCandidate, i: number, j: number) =>
    ((c.latencyMs ?? LATENCY_MS_DEFAULT) + ((j - i) * 1000) / (c.tokensPerSecond * (c.end - c.start))) *
    (1 + penalty * (1 - (c.reputation ?? 0.5)))
  const best = new Array<number>(blocks + 1).fill(Number.POSITIVE_INFINITY)
  best[0] = 0
  // every integer boundary, not only span ends: the router's restriction to span ends must lose nothing
  for (let i = 0; i < blocks; i++)
    for (const c of candidates)
      for (let j = i + 1; j <= blocks; j++)
        if (c.start <= i && j <= c.end) best[j] = Math.min(best[j], best[i] + cost(c, i, j))
  return best[blocks]
}

describe('planChain', () => {
  it('takes one server holding every block when it is the fastest way', () => {
    const chain = planChain(8, [server('a', 0, 8, 10), server('b', 0, 4, 10), server('c', 4, 8, 10)])
    // a: 8 blocks at 10 tok/s over 8 blocks = 100 ms; b + c: 4 * (1000 / 40) * 2 = 200 ms
    expect(spans(chain)).toEqual(['a:0-8'])
    expect(chainCostMs(chain)).toBeCloseTo(100, 9)
  })

  it('splits across servers, entering one in the middle of its span, when that is faster', () => {
    // a is slow over [0, 8); b is fast over [4, 8): a runs [0, 4) and b the rest
    const chain = planChain(8, [server('a', 0, 8, 1), server('b', 4, 8, 100, { latencyMs: 5 })])
    expect(spans(chain)).toEqual(['a:0-4', 'b:4-8'])
    // a: 4 blocks * 1000 / (1 * 8) = 500 ms; b: 5 + 4 * 1000 / (100 * 4) = 15 ms
    expect(chainCostMs(chain)).toBeCloseTo(515, 9)
  })

  it('weighs latency per hop: a slower single server beats two fast far ones', () => {
    const chain = planChain(4, [
      server('near', 0, 4, 20, { latencyMs: 1 }),
      server('far1', 0, 2, 1000, { latencyMs: 40 }),
      server('far2', 2, 4, 1000, { latencyMs: 40 }),
    ])
    // near: 1 + 4 * 1000 / 80 = 51 ms; far: 2 * (40 + 2 * 1000 / 2000) = 82 ms
    expect(spans(chain)).toEqual(['near:0-4'])
  })

  it('prefers reputable servers and leaves out disreputable and excluded ones', () => {
    const candidates = [
      server('new', 0, 4, 10, { reputation: 0.5 }),
      server('old', 0, 4, 8, { reputation: 1 }),
    ]
    // new: 100 ms * (1 + 2 * 0.5) = 200 ms against old: 125 ms
    expect(spans(planChain(4, candidates))).toEqual(['old:0-4'])
    expect(spans(planChain(4, candidates, { reputationPenalty: 0 }))).toEqual(['new:0-4'])
    expect(spans(planChain(4, candidates, { exclude: new Set(['old']) }))).toEqual(['new:0-4'])
    const liar = [server('liar', 0, 4, 1000, { reputation: 0.14 }), server('slow', 0, 4, 1)]
    expect(spans(planChain(4, liar))).toEqual(['slow:0-4'])
  })

  it('names the blocks nobody covers', () => {
    const candidates = [server('a', 0, 3, 10), server('b', 5, 8, 10)]
    expect(() => planChain(8, candidates)).toThrow(RouteError)
    expect(() => planChain(8, candidates)).toThrow('no server covers blocks 3-4 of 8')
    expect(() => planChain(8, [server('a', 0, 7, 1)])).toThrow('no server covers block 7 of 8')
    expect(() => planChain(8, [server('a', 0, 8, 1)], { exclude: new Set(['a']) })).toThrow(
      'no server covers blocks 0-7 of 8',
    )
    expect(() => planChain(0, [])).toThrow(RouteError)
  })

  it('skips malformed candidates (outside the model, empty, no throughput) instead of failing', () => {
    const chain = planChain(4, [
      server('outside', 0, 9, 1000),
      server('empty', 2, 2, 1000),
      server('zero', 0, 4, 0),
      server('nan', 0, 4, Number.NaN),
      server('ok', 0, 4, 1),
    ])
    expect(spans(chain)).toEqual(['ok:0-4'])
  })

  it('breaks ties by fewer hops, then by peer id', () => {
    expect(spans(planChain(4, [server('b', 0, 4, 10), server('a', 0, 4, 10)]))).toEqual(['a:0-4'])
    // one hop over 4 blocks at 5 tok/s (200 ms) against two hops of 2 blocks at 5 tok/s (2 * 100 ms)
    const chain = planChain(4, [server('x', 0, 2, 5), server('y', 2, 4, 5), server('z', 0, 4, 5)])
    expect(spans(chain)).toEqual(['z:0-4'])
  })

  it('matches a brute-force search over every chain on random networks', () => {
    const random = new SeededRandom(18)
    for (let trial = 0; trial < 200; trial++) {
      const blocks = random.int(1, 12)
      const candidates: RouteCandidate[] = []
      for (let s = random.int(1, 10); s > 0; s--) {
        const start = random.int(0, blocks - 1)
        candidates.push({
          peerId: `p${s}`,
          start,
          end: random.int(start + 1, blocks),
          tokensPerSecond: 1 + random.float() * 100,
          latencyMs: random.float() < 0.2 ? undefined : random.float() * 50,
          reputation: random.float() < 0.2 ? undefined : 0.3 + random.float() * 0.7,
        })
      }
      const expected = bruteForce(blocks, candidates, REPUTATION_PENALTY_DEFAULT)
      if (!Number.isFinite(expected)) {
        expect(() => planChain(blocks, candidates)).toThrow(RouteError)
        continue
      }
      const chain = planChain(blocks, candidates)
      expect(chainCostMs(chain)).toBeCloseTo(expected, 6)
      // the chain covers [0, L) hop after hop, each on a server holding its blocks
      let at = 0
      for (const hop of chain) {
        expect(hop.start).toBe(at)
        const owner = candidates.find((c) => c.peerId === hop.peerId)
        expect(owner !== undefined && owner.start <= hop.start && hop.end <= owner.end).toBe(true)
        at = hop.end
      }
      expect(at).toBe(blocks)
    }
  })
})

describe('replanFrom', () => {
  const candidates = [
    server('a', 0, 4, 10),
    server('b', 4, 8, 10),
    server('c', 8, 12, 10),
    server('b2', 4, 8, 5),
    server('bc', 4, 12, 2),
  ]

  it('replaces one dead hop by another server of the same span and keeps the rest', () => {
    const chain = planChain(12, candidates)
    expect(spans(chain)).toEqual(['a:0-4', 'b:4-8', 'c:8-12'])
    const { chain: next, replaced } = replanFrom(12, chain, 4, candidates, { exclude: new Set(['b']) })
    expect(spans(next)).toEqual(['a:0-4', 'b2:4-8', 'c:8-12'])
    expect(replaced).toEqual({ from: 1, to: 2 })
  })

  it('keeps the later hops when that is cheaper, and re-plans them when it is not', () => {
    const chain = planChain(12, candidates)
    const exclude = new Set(['b', 'b2'])
    // only bc holds [4, 8) now; it is slow (62.5 ms a block), so c keeps [8, 12)
    const kept = replanFrom(12, chain, 4, candidates, { exclude })
    expect(spans(kept.chain)).toEqual(['a:0-4', 'bc:4-8', 'c:8-12'])
    expect(kept.replaced).toEqual({ from: 1, to: 2 })
    // a fast server of [4, 12) appeared: it takes c's hop as well (10 ms against 100 ms for c alone)
    const fast = [...candidates, server('fast', 4, 12, 100)]
    const replanned = replanFrom(12, chain, 4, fast, { exclude })
    expect(spans(replanned.chain)).toEqual(['a:0-4', 'fast:4-12'])
    expect(replanned.replaced).toEqual({ from: 1, to: 2 })
  })

  it('keeps going past a hop whose peer is also excluded', () => {
    const chain = planChain(12, candidates)
    const { chain: next } = replanFrom(12, chain, 4, [...candidates, server('c2', 8, 12, 1)], {
      exclude: new Set(['b', 'c']),
    })
    // c is excluded too: the kept part cannot hold it, so [8, 12) is re-planned (bc or b2 + c2)
    expect(next.every((hop) => hop.peerId !== 'b' && hop.peerId !== 'c')).toBe(true)
    expect(next[0].peerId).toBe('a')
    expect(next.at(-1)?.end).toBe(12)
  })

  it('says which blocks have no other server', () => {
    const chain = planChain(12, candidates)
    expect(() => replanFrom(12, chain, 0, candidates, { exclude: new Set(['a']) })).toThrow(
      'no other server covers blocks 0-3 of 12',
    )
    expect(() => replanFrom(12, chain, 5, candidates)).toThrow('no hop of the chain starts at block 5')
  })
})

describe('findVerifier', () => {
  const candidates = [server('a', 0, 8, 10), server('b', 0, 4, 40), server('c', 2, 6, 100)]

  it('finds the cheapest other server holding the whole span', () => {
    expect(findVerifier(8, 0, 4, candidates, { exclude: new Set(['b']) })?.peerId).toBe('a')
    expect(findVerifier(8, 2, 4, candidates, { exclude: new Set(['a']) })?.peerId).toBe('c')
    expect(findVerifier(8, 0, 4, candidates, { exclude: new Set(['a', 'b']) })).toBeUndefined()
    // c holds [2, 6) but not block 1
    expect(findVerifier(8, 1, 4, candidates, { exclude: new Set(['a', 'b']) })).toBeUndefined()
    expect(() => findVerifier(8, 4, 4, candidates)).toThrow(RouteError)
  })
})
