// Proves the simulator's adapters hand its decisions to the real state machines and read their
// answers back faithfully: a staffing round follows protocols/tasks stepTask (staffed at the
// needed-th claim, fastest claimants dealt snake-wise, a deadline fails it), and the simulated
// inference answers agree or disagree under protocols/inference/quorum.ts's own `agree`. (The
// training core's driver is proved in test/unit/sim/groups.test.ts.)
import { describe, expect, it } from 'vitest'
import { agree, planShards, vote } from '../../protocols/inference/quorum.js'
import { honestLogits, lieLogits, truthLogits } from '../../simulations/network/inference.js'
import { peerName, peerRow, StaffingRound } from '../../simulations/network/lifecycle.js'

describe('staffing round over the real task lifecycle', () => {
  it('staffs at the needed-th claim with the fastest claimants, snake-dealt across groups', () => {
    const round = new StaffingRound({
      id: 't',
      groups: 2,
      groupSize: 3,
      steps: 10,
      nowMs: 0,
      deadlineMs: 2000,
    })
    const gflops = [1, 500, 7, 450, 1.1, 8]
    let plan: number[][] | undefined
    for (const [i, g] of gflops.entries()) {
      expect(plan, `claim ${i}`).toBeUndefined()
      plan = round.claim(10 + i, { backend: g > 2 ? 'webgpu' : 'cpu', gflops: g, maxBufferBytes: 1 << 28 }, i)
    }
    // ranked 500 (11), 450 (13), 8 (15), 7 (12), 1.1 (14), 1 (10); dealt 0,1,1,0,0,1
    expect(plan).toEqual([
      [11, 12, 14],
      [13, 15, 10],
    ])
    expect(round.state).toBe('running')
    // later claims change nothing
    expect(round.claim(99, { backend: 'webgpu', gflops: 900, maxBufferBytes: 1 << 28 }, 7)).toBeUndefined()
  })

  it('fails at its deadline when too few claimed, and ignores a repeated claim', () => {
    const round = new StaffingRound({
      id: 't',
      groups: 1,
      groupSize: 3,
      steps: 10,
      nowMs: 0,
      deadlineMs: 2000,
    })
    round.claim(1, { backend: 'cpu', gflops: 1, maxBufferBytes: 0 }, 10)
    round.claim(1, { backend: 'cpu', gflops: 1, maxBufferBytes: 0 }, 20)
    expect(round.claimants).toBe(1)
    expect(round.expire(1999)).toBeUndefined()
    expect(round.expire(2000)).toMatch(/found 1 eligible worker, needed 3/)
    expect(round.state).toBe('failed')
  })

  it('names peers so that rows round-trip', () => {
    for (const row of [0, 7, 123_456]) expect(peerRow(peerName(row))).toBe(row)
    expect(() => peerRow('q1')).toThrow()
  })
})

describe('simulated inference answers under the real agreement rule', () => {
  const [range] = planShards(8, 1)
  const truth = truthLogits(42, range, 10)
  const result = (peer: string, backendClass: string, logits: Float32Array) => ({
    peer,
    backendClass,
    logits,
  })

  it('honest answers agree within and across backend classes; lies agree only with each other', () => {
    const honest = [0, 1, 2].map((backend) =>
      result(`h${backend}`, `class${backend}`, honestLogits(truth, backend)),
    )
    for (const a of honest) for (const b of honest) expect(agree(a, b)).toBe(true)
    // within one class an honest answer is bit-identical
    expect(agree(honest[1], result('x', 'class1', honestLogits(truth, 1)))).toBe(true)
    const lies = [0, 2].map((backend) => result(`l${backend}`, `class${backend}`, lieLogits(truth, 10)))
    expect(agree(lies[0], lies[1])).toBe(true)
    for (const lie of lies) for (const a of honest) expect(agree(lie, a)).toBe(false)
  })

  it('two honest replicas outvote a lie; two colluding liars outvote an honest one', () => {
    const honest = (peer: string) => result(peer, 'cpu', honestLogits(truth, 2))
    const lie = (peer: string) => result(peer, 'webgpu', lieLogits(truth, 10))
    const outvoted = vote({
      replicas: 3,
      expectedLength: truth.length,
      results: [honest('a'), lie('b'), honest('c')],
      runs: 3,
      available: 5,
    })
    expect(outvoted).toMatchObject({ kind: 'accept', agreeing: ['a', 'c'], outliers: ['b'] })
    const won = vote({
      replicas: 3,
      expectedLength: truth.length,
      results: [lie('a'), honest('b'), lie('c')],
      runs: 3,
      available: 5,
    })
    expect(won).toMatchObject({ kind: 'accept', agreeing: ['a', 'c'], outliers: ['b'] })
  })
})
