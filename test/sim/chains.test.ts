// The chain simulation (simulations/network/chains.ts): a run is a function of its seed; without
// churn every session completes; the share of sessions that complete falls as churn rises; a session
// fails only when some block it must route has no live server (checked against the live servers'
// spans at that moment, by a plain scan); and the placement and route rules on small tables.
import { describe, expect, it } from 'vitest'
import { thinnestWindow } from '../../node/serving/placement.js'
import {
  ChainOptionsError,
  type ChainSessionFailure,
  type ChainSimulationOptions,
  simulateChains,
} from '../../simulations/network/chains.js'
import { CHAIN_MODELS, serversForCoverage } from '../../simulations/network/chains-model.js'
import { planRoute, type RouteView, thinnestSpanStart } from '../../simulations/network/chains-route.js'

/** A small BLOOM swarm (each block held about 3 times over), 20 minutes of sessions. */
const small: ChainSimulationOptions = {
  seed: 7,
  model: 'bloom-176b',
  servers: serversForCoverage(CHAIN_MODELS['bloom-176b'], 3),
  sessionsPerHour: 300,
  promptTokens: 16,
  newTokens: 64,
  durationMs: 20 * 60_000,
}

describe('chain simulation', () => {
  it('gives the same result for the same seed and another for another seed', () => {
    const options = { ...small, churnPerHour: 4 }
    const first = JSON.stringify(simulateChains(options))
    expect(JSON.stringify(simulateChains(options))).toBe(first)
    expect(JSON.stringify(simulateChains({ ...options, seed: 8 }))).not.toBe(first)
    const parsed = JSON.parse(first)
    expect(parsed.sessions.started).toBeGreaterThan(50)
    expect(parsed.servers.crashes + parsed.servers.leaves).toBeGreaterThan(0)
  })

  it('completes every session without churn, small swarm and 1,000 servers alike', () => {
    for (const options of [
      { ...small, churnPerHour: 0 },
      { ...small, churnPerHour: 0, servers: 1000, sessionsPerHour: 600 },
      { ...small, churnPerHour: 0, model: 'llama-2-70b' as const, servers: 12 },
    ]) {
      const result = simulateChains(options)
      expect(result.sessions.started).toBeGreaterThan(50)
      expect(result.sessions.completed).toBe(result.sessions.started)
      expect(result.completedShare).toBe(1)
      expect(result.failoversPerSession.max).toBe(0)
      expect(result.tokensPerSecond.count).toBe(result.sessions.completed)
      expect(result.tokensPerSecond.p10).toBeGreaterThan(0)
      expect(result.timeToFirstTokenMs.p50).toBeGreaterThan(0)
    }
  })

  it('completes a smaller share of sessions as churn rises (three seeds pooled)', () => {
    const pooled = (churnPerHour: number) => {
      let completed = 0
      let ended = 0
      let failovers = 0
      for (const seed of [1, 2, 3]) {
        const r = simulateChains({ ...small, seed, churnPerHour })
        completed += r.sessions.completed
        ended += r.sessions.completed + r.sessions.failedAtStart + r.sessions.failedMidway
        failovers += r.failoversPerSession.mean * r.failoversPerSession.count
      }
      return { share: completed / ended, failovers }
    }
    const none = pooled(0)
    const some = pooled(4)
    const much = pooled(32)
    expect(none.share).toBe(1)
    expect(some.share).toBeLessThan(none.share)
    expect(much.share).toBeLessThan(some.share)
    expect(none.failovers).toBe(0)
    expect(some.failovers).toBeGreaterThan(0)
  })

  it('fails a session only when a block it must route has no live server', () => {
    const failures: ChainSessionFailure[] = []
    const result = simulateChains(
      { ...small, churnPerHour: 16 },
      { onSessionFailed: (f) => failures.push(f) },
    )
    expect(failures.length).toBe(result.sessions.failedAtStart + result.sessions.failedMidway)
    expect(failures.length).toBeGreaterThan(0)
    // the sessions that failed over and went on were re-routed: failovers outnumber midway failures
    expect(result.failoversPerSession.mean * result.failoversPerSession.count).toBeGreaterThan(
      result.sessions.failedMidway,
    )
    for (const failure of failures) {
      const uncovered: number[] = []
      for (let block = failure.from; block < failure.to; block++) {
        if (!failure.liveSpans.some(([start, end]) => start <= block && block < end)) uncovered.push(block)
      }
      expect(uncovered.length, `session ${failure.session} at ${failure.atMs} ms`).toBeGreaterThan(0)
    }
  })

  it('fails over at 1,000 servers without losing a session, the replay growing with the tokens', () => {
    const result = simulateChains({ ...small, servers: 1000, churnPerHour: 4, sessionsPerHour: 600 })
    expect(result.sessionsWithFailover).toBeGreaterThan(0)
    expect(result.completedShare).toBe(1)
    // a failover replays every row the hop held: at most the prompt plus the tokens fed
    expect(result.replayedRowsPerFailover.max).toBeLessThanOrEqual(
      (small.promptTokens! + small.newTokens! - 1) * result.chainHops.max,
    )
    expect(result.replayedRowsPerFailover.max).toBeGreaterThan(small.promptTokens!)
  })

  it('refuses options out of range with a ChainOptionsError', () => {
    expect(() => simulateChains({ seed: 1, promptTokens: 0 })).toThrow(ChainOptionsError)
    expect(() => simulateChains({ seed: 1, promptTokens: 2000, newTokens: 100 })).toThrow(/at most 2048/)
    expect(() => simulateChains({ seed: 1, model: 'gpt-9' as never })).toThrow(/unknown model gpt-9/)
    expect(() => simulateChains({ seed: 1, churnPerHour: -1 })).toThrow(ChainOptionsError)
    expect(() => simulateChains({ seed: 1, servers: 0 })).toThrow(ChainOptionsError)
  })
})

describe('placement and route rules', () => {
  it('places a span where coverage is thinnest, by the daemon’s rule (node/serving/placement.ts)', () => {
    const tables: [number[], number, number][] = [
      [[3, 1, 1, 2, 0, 5], 2, 3],
      [[1, 1, 1, 1], 2, 0],
      [[2, 1, 1, 1, 3], 3, 1],
      // sorted windows [0, 1, 1] and [0, 0, 5]: the second holds two starved blocks, so it wins
      [[0, 1, 1, 9, 0, 0, 5], 3, 4],
      [[4, 4, 4], 3, 0],
    ]
    for (const [coverage, length, start] of tables) {
      expect(thinnestSpanStart(coverage, length), JSON.stringify(coverage)).toBe(start)
      expect(thinnestWindow(coverage, length).start, JSON.stringify(coverage)).toBe(start)
    }
    expect(thinnestSpanStart([0, 0, 0], 5)).toBe(0)
  })

  /** Servers as [start, end, cost per block]; the route's hops must tile [from, to) on their spans. */
  function view(servers: [number, number, number][]): RouteView {
    return {
      serversAt: (block) =>
        servers.map((_, i) => i).filter((i) => servers[i][0] <= block && block < servers[i][1]),
      spanEnd: (server) => servers[server][1],
      hopCostMs: (server, blocks) => 10 + servers[server][2] * blocks,
    }
  }

  it('routes the cheapest chain over the blocks, or none when a block has no server', () => {
    const servers: [number, number, number][] = [
      [0, 4, 1],
      [4, 8, 1],
      [0, 8, 5],
      [2, 6, 0.1],
    ]
    // two cheap hops (10 + 4, 10 + 4) beat the one slow hop (10 + 40)
    expect(planRoute(view(servers), 0, 8)).toEqual([
      { server: 0, start: 0, end: 4 },
      { server: 1, start: 4, end: 8 },
    ])
    // from block 2: server 3 to its end (10 + 0.4), then server 1 (10 + 2)
    expect(planRoute(view(servers), 2, 8)).toEqual([
      { server: 3, start: 2, end: 6 },
      { server: 1, start: 6, end: 8 },
    ])
    expect(planRoute(view(servers), 5, 6)).toEqual([{ server: 3, start: 5, end: 6 }])
    expect(
      planRoute(
        view([
          [0, 3, 1],
          [4, 8, 1],
        ]),
        0,
        8,
      ),
    ).toBeUndefined()
    expect(
      planRoute(
        view([
          [0, 3, 1],
          [4, 8, 1],
        ]),
        4,
        8,
      ),
    ).toEqual([{ server: 1, start: 4, end: 8 }])
  })
})
