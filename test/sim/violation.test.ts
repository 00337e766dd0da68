// Proves the failure path of a network simulation: when a checker throws mid-run, the run stops
// and the result carries the checker, the time, the offending group's last events and a replay
// command with the seed (the violation is injected by a checker that throws on the 40th applied
// entry of the run, since the real Raft core does not violate safety on its own).
import { describe, expect, it } from 'vitest'
import { buildReport } from '../../simulations/network/report.js'
import { simulateNetwork } from '../../simulations/network/simulator.js'
import { SafetyCheckers, SafetyViolation } from '../../simulations/raft/checkers.js'

describe('network simulator safety violation report', () => {
  it('stops with the seed, the checker, a trace of the group and a replay command', () => {
    let calls = 0
    class PlantedChecker extends SafetyCheckers {
      override applied(...args: Parameters<SafetyCheckers['applied']>): void {
        if (++calls === 40)
          throw new SafetyViolation('injected-checker', 'a contradiction planted by the test')
        super.applied(...args)
      }
    }
    const result = simulateNetwork(
      {
        seed: 77,
        peers: 200,
        groups: 4,
        groupSize: 3,
        churnPerHour: 0,
        lossProbability: 0,
        partitions: [],
        durationMs: 300_000,
        scenario: 'steady',
      },
      { createCheckers: () => new PlantedChecker() },
    )
    expect(result.violation?.checker).toBe('injected-checker')
    expect(result.violation?.atS).toBeLessThan(300)
    expect(result.violation?.trace.length).toBeGreaterThan(0)
    expect(result.violation?.trace.some((line) => line.includes('became leader'))).toBe(true)
    const report = buildReport(result)
    expect(report.json.safety).toMatchObject({ ok: false })
    expect(String(report.json.replay)).toContain('--seed 77')
    expect(report.summary[0]).toContain('VIOLATED')
  })
})
