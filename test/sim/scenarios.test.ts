// Proves each named scenario shows its expected qualitative outcome, on small seeded networks that
// run the real Raft core in every group with the safety checkers on, the real staffing, gradient
// screening and inference quorum code: steady work (training and inference) completes, a regional
// outage stalls exactly the groups with a majority in the region, lying peers never get a gradient
// accepted by an honest-majority group and are outvoted on inference wherever honest replicas hold
// the majority, and a flash crowd is absorbed.
import { describe, expect, it } from 'vitest'
import type { NetworkSimulationOptions, ScenarioName } from '../../simulations/network/parameters.js'
import { simulateNetwork } from '../../simulations/network/simulator.js'

function run(scenario: ScenarioName, overrides: Partial<NetworkSimulationOptions> = {}) {
  return simulateNetwork({
    seed: 11,
    peers: 400,
    groups: 10,
    groupSize: 3,
    churnPerHour: 0.05,
    lossProbability: 0.001,
    partitions: [],
    durationMs: 900_000,
    scenario,
    ...overrides,
  })
}

describe('network simulator scenarios', () => {
  it('steady: training and inference complete, announcements reach every live peer, safety holds', () => {
    const result = run('steady')
    expect(result.violation).toBeUndefined()
    expect(result.counters.tasksCompleted).toBeGreaterThan(5)
    expect(result.counters.tasksAbandoned).toBe(0)
    expect(result.counters.gossipReachedSum / result.counters.gossipUpSum).toBeGreaterThan(0.99)
    expect(result.lookupHops.count).toBeGreaterThan(0)
    expect(result.counters.lookupsFailed).toBe(0)
    // inference: every task's shards agreed unanimously (no liar, and no crash among 400 peers at
    // 5%/h is likely to hit one)
    const inference = result.inference.counters
    expect(inference.tasks).toBeGreaterThan(10)
    // every task completed but those the end of the run cut short (begun in its last 10 s)
    expect(inference.tasksFailed).toBe(0)
    const open = result.inference.openStartsS
    expect(inference.tasksCompleted).toBe(inference.tasks - inference.tasksInterrupted - open.length)
    for (const startS of open) expect(startS).toBeGreaterThan(result.parameters.durationMs / 1000 - 10)
    expect(inference.shardsAccepted).toBe(inference.shardsUnanimous)
    expect(inference.wrongAccepted).toBe(0)
    expect(inference.lyingResults).toBe(0)
  })

  it('regional-outage: only groups with a majority in the region stall', () => {
    // seed 13 puts groups on both sides of the line: six with a majority in us-east, six without
    const result = run('regional-outage', { seed: 13, groups: 12, durationMs: 1_200_000 })
    expect(result.violation).toBeUndefined()
    const majority = result.outageGroups.filter((g) => g.majorityInRegion)
    const minority = result.outageGroups.filter((g) => !g.majorityInRegion)
    expect(majority.length).toBeGreaterThan(0)
    expect(minority.length).toBeGreaterThan(0)
    for (const group of majority) expect(group.stepsDuringOutage, `group ${group.group}`).toBe(0)
    for (const group of minority) expect(group.stepsDuringOutage, `group ${group.group}`).toBeGreaterThan(0)
  })

  it('byzantine-10pct: no lying gradient is accepted by an honest-majority group, training goes on', () => {
    const result = run('byzantine-10pct')
    expect(result.violation).toBeUndefined()
    expect(result.parameters.byzantineShare).toBe(0.1)
    expect(result.counters.byzantineGradientsRejected).toBeGreaterThan(0)
    expect(result.counters.byzantineGradientsAcceptedWithHonestMajority).toBe(0)
    expect(result.counters.stepsCommitted).toBeGreaterThan(1000)
  })

  it('byzantine-10pct: lying inference replicas are outvoted, the accepted result is the honest one', () => {
    // colluding liars (every liar sends the same wrong logits): only a shard whose replicas were
    // mostly liars can accept a lie; the test runs more inference than the default to see enough votes
    const result = run('byzantine-10pct', { inferencePerHour: 600 })
    expect(result.violation).toBeUndefined()
    const inference = result.inference.counters
    expect(inference.tasks).toBeGreaterThan(100)
    expect(inference.lyingResults).toBeGreaterThan(50)
    // liars were caught as outliers in votes an honest majority won
    expect(inference.lyingResultsCaught).toBeGreaterThan(inference.lyingResults / 2)
    // never did a lie win where honest replicas were the majority of the answers
    expect(inference.wrongAcceptedWithHonestMajority).toBe(0)
    // a lie wins only where liars were the majority of the replicas asked: rare at 10% liars
    expect(inference.wrongAccepted).toBeLessThan(inference.shardsAccepted * 0.1)
    // and at least two liars agreed on each lie that won (majority of R = 3)
    expect(inference.lyingResultsAccepted).toBeGreaterThanOrEqual(2 * inference.wrongAccepted)
    expect(inference.tasksCompleted).toBeGreaterThan(inference.tasks * 0.9)
    // the submitters learn: liars end with a lower score than honest peers
    expect(result.inference.scores.lying).toBeLessThan(0)
    expect(result.inference.scores.honest).toBeGreaterThan(0)
  })

  it('flash-crowd: the network doubles, lookups stay within one extra hop, training continues', () => {
    const result = run('flash-crowd', { durationMs: 600_000 })
    expect(result.violation).toBeUndefined()
    expect(result.counters.joins).toBeGreaterThanOrEqual(400)
    expect(result.flashLookupHops.count).toBeGreaterThan(300)
    expect(result.flashLookupHops.mean()).toBeLessThanOrEqual(result.lookupHops.mean() + 1)
    const crowdAtS = (result.parameters.flashCrowd?.atMs ?? 0) / 1000
    const after = result.samples.filter((s) => s.atS > crowdAtS + 120)
    expect(after.length).toBeGreaterThan(0)
    for (const sample of after) expect(sample.stepsCommitted).toBeGreaterThan(0)
    expect(result.counters.gossipReachedSum / result.counters.gossipUpSum).toBeGreaterThan(0.99)
  })

  it('partitions: a cut that heals leaves safety intact and work going on', () => {
    const result = run('steady', {
      partitions: [{ kind: 'region', region: 2, share: 0, startMs: 180_000, durationMs: 240_000 }],
      lossProbability: 0.02,
    })
    expect(result.violation).toBeUndefined()
    expect(result.counters.raftMessagesDropped).toBeGreaterThan(0)
    expect(result.samples.at(-1)?.stepsCommitted).toBeGreaterThan(0)
  })
})
