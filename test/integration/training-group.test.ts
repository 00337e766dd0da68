// Proves a training group of three real libp2p nodes (TCP loopback, durable Raft stores in temp
// dirs, the cpu backend) trains MNIST with gradient consensus: the loss drops and every member ends
// with the same params digest; when the leader is stopped abruptly mid-run a new leader continues
// and no step is lost or applied twice; a lying member is screened or outvoted and reported; members
// computing their gradients on different backends (cpu, webgpu) still hold identical params; with
// int8 compression the log carries int8 updates and the group trains as well; members that work
// ahead of the commit (followers precompute appended entries, everyone computes the next gradient
// early) end with exactly the params of members that wait for each commit; a member whose Raft store
// fails stops and reports it while the other two finish.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../kernels/backend.js'
import { loadMnist, type MnistSplit } from '../../kernels/data/mnist.js'
import { CpuBackend, createBackend } from '../../kernels/index.js'
import { mlpTrainingModel } from '../../kernels/models/mlp-kind.js'
import { MemoryStorage, type StorageUpdate } from '../../protocols/raft/storage.js'
import { GroupStorageError } from '../../protocols/training/group.js'
import { decodeEntry } from '../../protocols/training/state.js'
import {
  type ClusterMember,
  datasetShard,
  leaderOf,
  type MemberOptions,
  startTrainingCluster,
  stopTrainingCluster,
  waitFor,
} from './training-cluster.js'
import { lyingComputer } from './training-faults.js'

const directory = mkdtempSync(join(tmpdir(), 'shardnet-training-'))
let data: MnistSplit
let backend: Backend
const clusters: ClusterMember[][] = []

beforeAll(async () => {
  data = await loadMnist()
  backend = new CpuBackend()
})
afterAll(async () => {
  for (const cluster of clusters) await stopTrainingCluster(cluster)
  backend?.destroy()
  rmSync(directory, { recursive: true, force: true })
})

function options(groupId: string, overrides: Partial<MemberOptions> = {}): MemberOptions {
  return {
    groupId,
    model: mlpTrainingModel(
      { inputSize: 784, hiddenSizes: [64], outputSize: 10 },
      datasetShard(data.train, 1, 0, 7),
    ),
    seed: 7,
    batchSize: 32,
    learningRate: 2e-3,
    steps: 40,
    aggregate: 'mean',
    ...overrides,
  }
}

function meanLoss(losses: number[], from: number, to: number): number {
  const part = losses.slice(from, to)
  return part.reduce((total, loss) => total + loss, 0) / part.length
}

describe('a training group over libp2p', () => {
  /**
   * Trains 40 steps with every member in every step (even on a loaded machine), then checks the
   * loss dropped, all members hold the same params and applied every step once, in order.
   */
  async function trainToTheEnd(
    groupId: string,
    overrides: Partial<MemberOptions> = {},
    raftDelayMs = 0,
  ): Promise<ClusterMember[]> {
    const members = await startTrainingCluster({
      size: 3,
      directory,
      backend,
      options: options(groupId, { stragglerTimeoutMs: 30_000, ...overrides }),
      raftDelayMs,
    })
    clusters.push(members)
    const losses: number[] = []
    members[0].member.on('step', (event) => {
      losses[event.step] = event.loss
    })
    const results = await Promise.all(members.map((member) => member.member.finished()))
    expect(new Set(results.map((result) => result.digest)).size).toBe(1)
    for (const member of members) expect(member.appliedSteps).toEqual([...Array(40).keys()])
    expect(meanLoss(losses, 30, 40)).toBeLessThan(meanLoss(losses, 0, 10) * 0.6)
    return members
  }

  it('trains: the loss drops and all members end with identical params', async () => {
    const members = await trainToTheEnd('plain')
    const status = members[0].member.status()
    expect(status.reports.reduce((total, report) => total + report.accepted, 0)).toBe(120)
  }, 120_000)

  it('works ahead of the commit without changing a ' +
    'bit: the same params as members that wait for it', async () => {
    const ahead = await trainToTheEnd('ahead')
    const waiting = await trainToTheEnd('waiting', { speculate: false })
    expect(ahead[0].member.status().digest).toBe(waiting[0].member.status().digest)
    // every member applied (nearly) every step from a result worked out before the commit and
    // computed its next gradient before it: a follower as the entry reached its log, the leader as
    // it proposed
    for (const member of ahead) {
      const status = member.member.status()
      expect(status.stepsPrecomputed).toBeGreaterThan(30)
      expect(status.gradientsAhead).toBeGreaterThan(30)
      expect(status.speculationsWasted).toBe(0)
    }
    // without it only the leader uses its own proposal's result, and nothing is computed ahead
    const leader = leaderOf(waiting)!
    for (const member of waiting) {
      const status = member.member.status()
      expect(status.gradientsAhead).toBe(0)
      expect(status.gradientsReceivedAhead).toBe(0)
      if (member !== leader) expect(status.stepsPrecomputed).toBe(0)
    }
    // where the commit takes longer than a gradient (Raft frames 40 ms late, as over a network), the
    // followers' gradients reach the leader before the step they follow is applied; it keeps them
    const slow = await trainToTheEnd('ahead-slow-commit', {}, 40)
    expect(slow[0].member.status().digest).toBe(waiting[0].member.status().digest)
    expect(leaderOf(slow)!.member.status().gradientsReceivedAhead).toBeGreaterThan(40)
  }, 180_000)

  it('with int8 compression proposes int8 updates ' +
    '(a quarter of the log bytes) and trains as well', async () => {
    const members = await trainToTheEnd('int8', { compression: 'int8' })
    // the log's step entries carry int8 updates: one byte a value and a float32 scale per 256
    const count = 784 * 64 + 64 + 64 * 10 + 10
    const storage = members[0].storage
    const entries = storage
      .entries(storage.firstIndex(), storage.lastIndex() + 1)
      .filter((entry) => entry.type === 'normal' && entry.data.length > 0)
      .map((entry) => decodeEntry(entry.data))
    expect(entries.length).toBeGreaterThan(0)
    for (const entry of entries) {
      expect(entry?.updateEncoding).toBe('int8')
      expect(entry?.update.byteLength).toBe(count)
      expect(entry?.updateScales?.byteLength).toBe(Math.ceil(count / 256) * 4)
    }
  }, 120_000)

  it.each(['none', 'int8'] as const)(
    'survives the loss of its leader mid-run (compression %s): a new leader continues, ' +
      'no step lost or applied twice',
    async (compression) => {
      const steps = 50
      const members = await startTrainingCluster({
        size: 3,
        directory,
        backend,
        // crash tolerance in a group of three: decide a step on two gradients (the default, three,
        // trades it for lie tolerance: docs/threat-model.md)
        options: options(`leader-loss-${compression}`, {
          steps,
          stragglerTimeoutMs: 100,
          compression,
          minContributors: 2,
        }),
      })
      clusters.push(members)
      const first = await waitFor(() => leaderOf(members), 30_000, 'a first leader')
      await waitFor(() => first.appliedSteps.length >= 15, 60_000, 'fifteen steps')
      await first.kill()
      const survivors = members.filter((member) => member.alive)
      const results = await Promise.all(survivors.map((member) => member.member.finished()))
      const second = leaderOf(survivors)
      expect(second).toBeDefined()
      expect(second!.id).not.toBe(first.id)
      expect(new Set(results.map((result) => result.digest)).size).toBe(1)
      for (const member of survivors) expect(member.appliedSteps).toEqual([...Array(steps).keys()])
      // what the old leader applied is a prefix of what the others applied
      expect(first.appliedSteps).toEqual([...Array(first.appliedSteps.length).keys()])
      // steps after the loss were aggregated from the two survivors only
      const last = survivors[0].member.status()
      const deadReport = last.reports.find((report) => report.member === first.id)!
      expect(deadReport.accepted).toBeLessThan(steps)
    },
    120_000,
  )

  for (const [rule, fault] of [
    ['median', { kind: 'scale', factor: 100 }],
    ['trimmed-mean', { kind: 'random', factor: 1 }],
  ] as const) {
    it(`converges with ${rule} despite a member sending ${fault.kind} x${fault.factor} gradients, ` +
      `and reports it`, async () => {
      const steps = 40
      const members = await startTrainingCluster({
        size: 3,
        directory,
        backend,
        // every member in every step even on a loaded machine, so each step scores the liar
        options: options(`liar-${rule}`, { steps, aggregate: rule, stragglerTimeoutMs: 30_000 }),
        perMember: (index) => (index === 2 ? { wrapComputer: lyingComputer(fault, 7, `liar-${rule}`) } : {}),
      })
      clusters.push(members)
      const losses: number[] = []
      members[0].member.on('step', (event) => {
        losses[event.step] = event.loss
      })
      const results = await Promise.all(members.map((member) => member.member.finished()))
      expect(new Set(results.map((result) => result.digest)).size).toBe(1)
      expect(meanLoss(losses, 30, 40)).toBeLessThan(meanLoss(losses, 0, 10) * 0.7)
      const reports = members[0].member.status().reports
      const liar = reports.find((report) => report.member === members[2].id)!
      const honest = reports.filter((report) => report.member !== members[2].id)
      expect(liar.suspected).toBe(true)
      if (fault.kind === 'scale') {
        // screened out: norm far above the others
        expect(liar.rejected).toBeGreaterThanOrEqual(steps * 0.9)
      } else {
        // admitted (its norm is normal) but outvoted, and it agrees with nobody
        expect(liar.suspect).toBeGreaterThanOrEqual(steps * 0.9)
        expect(Math.abs(liar.meanAgreement)).toBeLessThan(0.01)
      }
      for (const report of honest) {
        expect(report.rejected).toBe(0)
        expect(report.suspected).toBe(false)
      }
    }, 120_000)
  }

  it('a member whose Raft store fails stops and says so; the other two finish the run', async () => {
    const steps = 20
    /** a store whose writes fail once the member has written `healthy` of them (a full disk) */
    class FailingStorage extends MemoryStorage {
      writes = 0
      override save(update: StorageUpdate): void {
        if (++this.writes > 25) throw new Error('ENOSPC: no space left on device')
        super.save(update)
      }
    }
    const failing = new FailingStorage()
    const members = await startTrainingCluster({
      size: 3,
      directory,
      backend,
      storage: 'memory',
      // the other two finish alone: two gradients decide a step (see the leader-loss case)
      options: options('storage-failure', { steps, minContributors: 2 }),
      perMember: (index) => (index === 2 ? { storage: failing } : {}),
    })
    clusters.push(members)
    const errors: Error[] = []
    members[2].member.on('error', (error) => errors.push(error))
    const results = await Promise.all([members[0].member.finished(), members[1].member.finished()])
    expect(results[0].digest).toBe(results[1].digest)
    expect(failing.writes).toBeGreaterThan(25)
    expect(errors.some((error) => error instanceof GroupStorageError)).toBe(true)
    expect(members[2].member.status().step).toBeLessThan(steps)
  }, 120_000)

  it('members on different backends (cpu and webgpu) still hold bitwise-identical params', async () => {
    const webgpu = await createBackend({ prefer: 'webgpu' })
    try {
      expect(webgpu.kind, webgpu.info.fallbackReason).toBe('webgpu')
      const members = await startTrainingCluster({
        size: 3,
        directory,
        backend,
        options: options('mixed-backends', { steps: 10, stragglerTimeoutMs: 30_000 }),
        perMember: (index) => (index === 1 ? { backend: webgpu } : {}),
      })
      clusters.push(members)
      const results = await Promise.all(members.map((member) => member.member.finished()))
      // the optimizer runs on the host in float32 (reference AdamW): only gradients come from the backend
      expect(new Set(results.map((result) => result.digest)).size).toBe(1)
      expect(members[0].member.status().reports.every((report) => report.accepted === 10)).toBe(true)
      await stopTrainingCluster(members)
    } finally {
      webgpu.destroy()
    }
  }, 120_000)
})
