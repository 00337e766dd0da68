// Proves the network simulator's groups run the real training-member core for every member
// (simulations/network/members.ts over protocols/training/member.ts) on top of real Raft nodes: one
// group of three simulated peers trains, and its members end with the same params, moved by the
// real AdamW; a lying member's gradients are refused by the leader's core; a member that crashed
// long enough to need a snapshot restarts from its storage and catches up to the same params; a
// group completes at its last step. Gradients cross the links at the real model's size.
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { toHex } from '../../../protocols/training/params.js'
import { Gradient } from '../../../protocols/wire/training.js'
import { EventKind, EventLoop } from '../../../simulations/network/events.js'
import { type GroupState, Groups } from '../../../simulations/network/groups.js'
import {
  gradientWireBytes,
  probeGradient,
  SIMULATED_PARAMETER_COUNT,
} from '../../../simulations/network/members.js'
import { Metrics } from '../../../simulations/network/metrics.js'
import { MNIST_MLP_MODEL } from '../../../simulations/network/model.js'
import { Network } from '../../../simulations/network/network.js'
import { deriveParameters } from '../../../simulations/network/parameters.js'
import { PeerState } from '../../../simulations/network/peers.js'
import { SafetyCheckers } from '../../../simulations/raft/checkers.js'

const PEERS = 30

function world(seed: number, groupSize = 3) {
  const parameters = deriveParameters({
    seed,
    peers: PEERS,
    groups: 1,
    groupSize,
    churnPerHour: 0,
    lossProbability: 0,
    partitions: [],
    durationMs: 3_600_000,
    scenario: 'steady',
  })
  const loop = new EventLoop()
  const metrics = new Metrics(1)
  const network = new Network(parameters, new SeededRandom(seed), metrics, () => loop.now, PEERS)
  for (let i = 0; i < PEERS; i++) network.markUp(network.createPeer())
  for (let peer = 0; peer < PEERS; peer++) network.dht.buildTable(peer)
  const completed: GroupState[] = []
  const groups = new Groups(
    parameters,
    loop,
    network,
    metrics,
    {
      submitterOf: () => 0,
      groupCompleted: (group) => completed.push(group),
      groupDissolved: () => expect.fail('no group should be dissolved'),
    },
    () => new SafetyCheckers(),
  )
  /** Forms a group of peers 1..groupSize training `steps` steps; its members start at once. */
  const form = (steps: number) => {
    const members = Array.from({ length: groupSize }, (_, i) => i + 1)
    const group = groups.create({ id: 0, steps }, 0, 1, members)
    for (const [position, peer] of members.entries()) {
      network.peers.groupSlot[peer] = group.id
      loop.at(0, EventKind.assignmentArrives, group.id, position)
    }
    return group
  }
  return { loop, metrics, network, groups, completed, form }
}

/** Each member's applied steps and params digest. */
function states(group: GroupState) {
  return group.cores.map((core) => {
    const state = core?.current()
    return state ? { step: state.step, digest: toHex(state.digest), params: [...state.params] } : undefined
  })
}

describe('simulated group members run the real training core', () => {
  it('sizes gradients on the wire as the real model', () => {
    const parameterCount = MNIST_MLP_MODEL.parameterCount
    expect(parameterCount).toBe(784 * 256 + 256 + 256 * 10 + 10)
    const message: Gradient = {
      step: 0,
      baseDigest: new Uint8Array(32),
      loss: 1,
      encoding: Gradient.Encoding.FLOAT32,
      length: SIMULATED_PARAMETER_COUNT,
      values: new Uint8Array(SIMULATED_PARAMETER_COUNT * 4),
      scales: new Uint8Array(0),
      blockSize: 0,
      signature: new Uint8Array(0),
    }
    expect(gradientWireBytes(message, parameterCount)).toBeGreaterThanOrEqual(parameterCount * 4)
    expect(gradientWireBytes(message, parameterCount)).toBeLessThan(parameterCount * 4 + 1024)
    expect(Math.hypot(...probeGradient(3))).toBeCloseTo(3, 5)
  })

  it('trains: every member applies the same steps and holds the same params', () => {
    const { loop, metrics, form } = world(1)
    const group = form(10_000)
    loop.runUntil(60_000)
    expect(group.committedStep).toBeGreaterThan(20)
    expect(metrics.counters.stepsCommitted).toBe(group.committedStep)
    const members = states(group)
    const atHead = members.filter((member) => member?.step === group.committedStep)
    expect(atHead.length).toBeGreaterThanOrEqual(2)
    for (const member of members) expect(member?.step).toBeGreaterThanOrEqual(group.committedStep - 1)
    for (const member of atHead) expect(member?.digest).toBe(atHead[0]?.digest)
    // the real AdamW moved the params from their initial 0.1
    for (const value of atHead[0]?.params ?? []) expect(value).not.toBeCloseTo(0.1, 3)
    // the core's work ahead of the commit ran: steps applied from a result worked out before the commit
    const precomputed = group.cores.reduce((sum, core) => sum + (core?.counters.stepsPrecomputed ?? 0), 0)
    expect(precomputed).toBeGreaterThan(group.committedStep)
  })

  it("refuses a lying member's gradients in the leader's core and trains on", () => {
    const { loop, metrics, network, form } = world(2)
    network.peers.byzantine[3] = 1
    const group = form(10_000)
    loop.runUntil(60_000)
    expect(group.committedStep).toBeGreaterThan(20)
    expect(metrics.counters.byzantineGradientsRejected).toBeGreaterThan(10)
    expect(metrics.counters.byzantineGradientsAccepted).toBe(0)
  })

  it('restarts a crashed member from its storage: it catches up by a snapshot to the same params', () => {
    // five members: the four others go on deciding steps on three or more gradients while it is down
    const { loop, metrics, network, groups, form } = world(3, 5)
    const group = form(10_000)
    loop.runUntil(20_000)
    const follower = group.nodes.findIndex((node) => node !== undefined && node.state !== 'leader')
    const peer = group.members[follower]
    network.markDown(peer, PeerState.crashed)
    groups.stopMember(peer)
    const stepAtCrash = group.committedStep
    // long enough down that the others compact their logs past what it has (GROUP_RAFT_DEFAULTS:
    // a snapshot every 64 entries, 16 kept)
    loop.runUntil(200_000)
    expect(group.committedStep - stepAtCrash).toBeGreaterThan(2 * (64 + 16))
    network.markUp(peer)
    groups.restartMember(peer)
    loop.runUntil(230_000)
    expect(metrics.counters.snapshotsInstalled).toBeGreaterThan(0)
    const members = states(group)
    const restarted = members[follower]
    expect(restarted?.step).toBeGreaterThanOrEqual(group.committedStep - 1)
    const peerAtSameStep = members.find((member, i) => i !== follower && member?.step === restarted?.step)
    expect(restarted?.digest).toBe(peerAtSameStep?.digest)
  })

  it('completes at its last step', () => {
    const { loop, completed, form } = world(4)
    const group = form(30)
    loop.runUntil(120_000)
    expect(completed).toEqual([group])
    expect(group.done).toBe(true)
    expect(group.committedStep).toBe(30)
  })
})
