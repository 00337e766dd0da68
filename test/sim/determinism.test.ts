// Proves a network simulation is a function of its seed: two runs with the same options give a
// byte-identical report.json and SVG plots, and another seed gives a different report.
import { describe, expect, it } from 'vitest'
import type { NetworkSimulationOptions } from '../../simulations/network/parameters.js'
import { buildReport, reportJsonText } from '../../simulations/network/report.js'
import { simulateNetwork } from '../../simulations/network/simulator.js'

const options: NetworkSimulationOptions = {
  seed: 4242,
  peers: 400,
  groups: 8,
  groupSize: 3,
  churnPerHour: 0.5,
  lossProbability: 0.01,
  partitions: [{ kind: 'split', region: -1, share: 0.3, startMs: 120_000, durationMs: 60_000 }],
  durationMs: 360_000,
  scenario: 'steady',
}

function render(seed: number) {
  const report = buildReport(simulateNetwork({ ...options, seed }))
  return { json: reportJsonText(report), svgs: report.svgs }
}

describe('network simulator determinism', () => {
  it('gives the same report byte for byte for the same seed, and a different one for another seed', () => {
    const first = render(4242)
    const second = render(4242)
    expect(second.json).toBe(first.json)
    expect(Object.keys(second.svgs)).toEqual(Object.keys(first.svgs))
    for (const [name, svg] of Object.entries(first.svgs)) expect(second.svgs[name], name).toBe(svg)
    const parsed = JSON.parse(first.json)
    expect(parsed.seed).toBe(4242)
    expect(parsed.safety.ok).toBe(true)
    expect(parsed.training.stepsCommitted).toBeGreaterThan(0)
    expect(parsed.counters.crashes + parsed.counters.leaves).toBeGreaterThan(0)
    const other = render(4243)
    expect(other.json).not.toBe(first.json)
  })
})
