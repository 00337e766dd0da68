// Proves a training task end to end through real daemons on loopback: the submitter's API takes the
// TaskSpec, workers hear the announcement, claim it over /shardnet/claim/1.0.0, fetch and verify their
// shard, train in Raft groups, and the submitter averages the groups and writes a model it scores on
// the test set; loadModel reads the result back. A user's --data file trains the same way.
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadMnist } from '../../kernels/data/mnist.js'
import type { Daemon } from '../../node/daemon.js'
import { loadModel } from '../../node/executor/model-files.js'
import { tempDataDir, waitUntil } from './daemon-helpers.js'
import { startTaskNetwork, stopAll, submitTask, waitForTask } from './tasks-helpers.js'

describe('training tasks across daemons', () => {
  let daemons: Daemon[] = []
  afterAll(async () => stopAll(daemons))

  it('trains with one group of three and writes the model', async () => {
    daemons = await startTaskNetwork(7)
    const [submitter] = daemons
    const task = await submitTask(submitter, {
      kind: 'train',
      model: 'mnist-mlp',
      hiddenSizes: [32],
      groups: 1,
      groupSize: 3,
      steps: 60,
      batchSize: 32,
      learningRate: 0.003,
      seed: 7,
      deadlineMs: 30_000,
    })
    expect(task.state).toBe('staffing')
    expect(task.needed).toBe(3)
    const done = await waitForTask(
      submitter,
      task.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'completion',
    )
    expect(done.error).toBeUndefined()
    expect(done.state).toBe('completed')
    const workers = new Set(daemons.slice(1).map((w) => w.peerId.toString()))
    expect(done.groups[0].members.every((m) => workers.has(m))).toBe(true)
    expect(new Set(done.groups[0].members).size).toBe(3)
    expect(done.groups[0].step).toBe(60)
    expect(done.accuracy).toBeGreaterThan(0.6)
    const model = await loadModel(done.resultDir!)
    expect(model.architecture.hiddenSizes).toEqual([32])
    expect(model.manifest.metrics.testAccuracy).toBe(done.accuracy)
    // released at the end, each member drops its Raft log and records its final step
    const members = daemons.filter((d) => done.groups[0].members.includes(d.peerId.toString()))
    await waitUntil(
      () => members.every((d) => !existsSync(join(d.paths.root, 'tasks', 'raft', `${done.id}-g0`))),
      'the members to remove their Raft logs',
    )
    for (const member of members) {
      const assignments = await member.tasks.worker.assignments()
      expect(assignments.find((a) => a.taskId === done.id)).toMatchObject({
        state: 'done',
        outcome: { step: 60 },
      })
    }
  }, 300_000)

  it('trains two groups of three with outer rounds into one model', async () => {
    const [submitter] = daemons
    const task = await submitTask(submitter, {
      kind: 'train',
      model: 'mnist-mlp',
      hiddenSizes: [32],
      groups: 2,
      groupSize: 3,
      steps: 40,
      batchSize: 32,
      learningRate: 0.003,
      seed: 3,
      outerEvery: 20,
      deadlineMs: 30_000,
    })
    const done = await waitForTask(
      submitter,
      task.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'completion',
    )
    expect(done.error).toBeUndefined()
    expect(done.state).toBe('completed')
    expect(done.groups.map((g) => g.members.length)).toEqual([3, 3])
    expect(new Set(done.groups.flatMap((g) => g.members)).size).toBe(6)
    // rounds at steps 20 and 40 (the last one is the final average)
    expect(done.outerRound).toBe(2)
    expect(done.groups.every((g) => g.step === 40 && g.status === 'done')).toBe(true)
    expect(done.accuracy).toBeGreaterThan(0.6)
  }, 300_000)

  it('trains on a --data file of the documented format', async () => {
    const [submitter] = daemons
    const { train } = await loadMnist()
    const count = 400
    const images = Array.from({ length: count }, (_, i) =>
      Array.from(train.images.subarray(i * 784, (i + 1) * 784)),
    )
    const labels = Array.from(train.labels.subarray(0, count))
    // the split is ordered by class: shuffle so the held-out last 20% holds every digit
    const order = Array.from({ length: count }, (_, i) => (i * 7919) % count)
    const dataFile = join(await tempDataDir(), 'digits.json')
    await writeFile(
      dataFile,
      JSON.stringify({ images: order.map((i) => images[i]), labels: order.map((i) => labels[i]) }),
    )
    const task = await submitTask(submitter, {
      kind: 'train',
      model: 'mnist-mlp',
      hiddenSizes: [16],
      groups: 1,
      groupSize: 1,
      steps: 30,
      batchSize: 32,
      learningRate: 0.005,
      dataFile,
      deadlineMs: 30_000,
    })
    expect(task.summary).toMatchObject({ dataset: 'custom', trainCount: 320, testCount: 80 })
    const done = await waitForTask(
      submitter,
      task.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'completion',
    )
    expect(done.state).toBe('completed')
    expect(done.accuracy).toBeGreaterThan(0.3)
  }, 300_000)
})
