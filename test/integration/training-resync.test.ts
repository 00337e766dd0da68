// Proves that a member catches up with its group: one started late, after the others compacted
// their Raft logs, installs the training state from a Raft snapshot and then trains along; one whose
// params digest differs from the log's (here: a member misconfigured with another learning rate)
// asks the leader for its state over /shardnet/grad/1.0.0 and installs it. Real libp2p nodes on
// loopback, cpu backend; every member ends with the group's digest.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../kernels/backend.js'
import { loadMnist, type MnistSplit } from '../../kernels/data/mnist.js'
import { CpuBackend } from '../../kernels/index.js'
import { mlpTrainingModel } from '../../kernels/models/mlp-kind.js'
import { MemoryStorage } from '../../protocols/raft/storage.js'
import { type GroupMember, type GroupMemberInit, startGroupMember } from '../../protocols/training/group.js'
import { createTrainingNode, datasetShard, type TrainingNode, waitFor } from './training-cluster.js'

let data: MnistSplit
let backend: Backend
const nodes: TrainingNode[] = []
const members: GroupMember[] = []
beforeAll(async () => {
  data = await loadMnist()
  backend = new CpuBackend()
})
afterAll(async () => {
  for (const member of members) member.stop()
  await Promise.all(nodes.map((node) => node.stop()))
  backend?.destroy()
})

async function meshOf(count: number): Promise<TrainingNode[]> {
  const created: TrainingNode[] = []
  for (let i = 0; i < count; i++) created.push(await createTrainingNode())
  for (const a of created)
    for (const b of created)
      if (a !== b && a.getConnections(b.peerId).length === 0) await a.dial(b.getMultiaddrs())
  nodes.push(...created)
  return created
}

function start(
  node: TrainingNode,
  ids: string[],
  groupId: string,
  overrides: Partial<GroupMemberInit> = {},
): GroupMember {
  const member = startGroupMember({
    components: { peerId: node.peerId, raft: node.services.raft, gradients: node.services.gradients },
    groupId,
    members: ids,
    model: mlpTrainingModel(
      { inputSize: 784, hiddenSizes: [32], outputSize: 10 },
      datasetShard(data.train, 2, 1, 5),
    ),
    seed: 5,
    batchSize: 16,
    learningRate: 2e-3,
    steps: 40,
    storage: new MemoryStorage(),
    backend,
    stragglerTimeoutMs: 100,
    // these groups of three train on while one member is away: two gradients decide a step; the
    // entries are checked all the same
    minContributors: 2,
    verifyEntries: true,
    raft: { snapshotEntries: 8, compactionKeepEntries: 2 },
    ...overrides,
  })
  members.push(member)
  return member
}

describe('members that fall behind or diverge catch up', () => {
  it('a late member installs a Raft snapshot of the training state and trains along', async () => {
    const mesh = await meshOf(3)
    const ids = mesh.map((node) => node.peerId.toString())
    // long enough that the late member, once caught up, still has steps to contribute to
    const steps = 120
    const early = [start(mesh[0], ids, 'late', { steps }), start(mesh[1], ids, 'late', { steps })]
    await waitFor(() => early[0].status().step >= 15, 60_000, 'fifteen steps without the third member')
    const lateStorage = new MemoryStorage()
    const late = start(mesh[2], ids, 'late', { storage: lateStorage, steps })
    const results = await Promise.all([...early, late].map((member) => member.finished()))
    expect(new Set(results.map((result) => result.digest)).size).toBe(1)
    // the leader had compacted its log: the late member's log starts from an installed snapshot
    expect(lateStorage.firstIndex()).toBeGreaterThan(4)
    // it contributed once it had caught up
    const report = early[0].status().reports.find((entry) => entry.member === ids[2])!
    expect(report.accepted).toBeGreaterThan(0)
    expect(report.accepted).toBeLessThan(steps - 15)
  }, 120_000)

  it('a member whose arithmetic differs refuses entries it cannot reproduce; the others finish', async () => {
    const mesh = await meshOf(3)
    const ids = mesh.map((node) => node.peerId.toString())
    const honest = [start(mesh[0], ids, 'diverge'), start(mesh[1], ids, 'diverge')]
    await waitFor(() => honest.some((member) => member.status().isLeader), 30_000, 'an honest leader')
    // another learning rate: every entry's params digest differs from what this member computes, and
    // from where it stands that is a leader that lies (it cannot tell which side is wrong)
    const misconfigured = start(mesh[2], ids, 'diverge', { learningRate: 5e-3 })
    const results = await Promise.all(honest.map((member) => member.finished()))
    expect(new Set(results.map((result) => result.digest)).size).toBe(1)
    const status = misconfigured.status()
    expect(status.entriesRefused).toBeGreaterThan(0)
    expect(status.distrusted.map((d) => d.reason).join()).toMatch(/params digest after the step is wrong/)
    // it applied nothing it could not reproduce
    expect(status.step).toBe(0)
    expect(status.digest).not.toBe(results[0].digest)
  }, 120_000)
})
