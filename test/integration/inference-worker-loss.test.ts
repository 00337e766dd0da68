// Proves an inference task survives losing a worker mid-task, with real daemons over libp2p on
// loopback: slow workers (the test wraps their compute step in a delay) hold their shards, one of the
// asked workers stops before answering, its shards are re-run on another peer, the predictions come
// back complete, ordered and equal to a local forward pass, and the lost worker is listed as failed
// with a lower score.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackend } from '../../kernels/index.js'
import type { Daemon } from '../../node/daemon.js'
import {
  decodeModelBundle,
  type InferenceOutput,
  PREDICTIONS_FILE,
  readModelBundle,
} from '../../node/tasks/infer-files.js'
import { startTestDaemon } from './daemon-helpers.js'
import { shardedLocalLogits, slowPredictor, writeTestInputs, writeTestModel } from './inference-helpers.js'
import { stopAll, submitTask, TASK_DAEMON_TUNING, waitForTask, waitForTopicMesh } from './tasks-helpers.js'

const ROWS = 30

describe('inference when a worker is lost', () => {
  let daemons: Daemon[] = []
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-infer-loss-'))
    const submitter = await startTestDaemon(TASK_DAEMON_TUNING)
    const slow = {
      overrides: { bootstrap: [submitter.addresses()[0]] },
      taskService: { ...TASK_DAEMON_TUNING.taskService, inferPredict: slowPredictor(2000) },
    }
    const workers = await Promise.all([0, 1, 2].map(() => startTestDaemon(slow)))
    daemons = [submitter, ...workers]
    await waitForTopicMesh(daemons)
  }, 120_000)

  afterAll(async () => {
    await stopAll(daemons)
    await rm(folder, { recursive: true, force: true })
  })

  it('re-runs the lost worker’s shards elsewhere and completes', async () => {
    const modelDir = await writeTestModel(folder, [16], 9)
    const { inputs, inputFile } = await writeTestInputs(folder, ROWS, 5, 11, 83)
    const [submitter] = daemons
    const submitted = await submitTask(submitter, {
      kind: 'infer',
      model: modelDir,
      inputFile,
      replicas: 2,
      shards: 3,
      deadlineMs: 60_000,
    })
    // stop a worker that was asked for a shard, before it answers (answers take 2 s)
    const sent = await waitForTask(
      submitter,
      submitted.id,
      (t) => t.groups.some((g) => g.members.length > 0),
      'shards to be sent out',
      60_000,
    )
    const victimId = sent.groups.find((g) => g.members.length > 0)!.members[0]
    const victim = daemons.find((d) => d.peerId.toString() === victimId)!
    await victim.stop()
    daemons = daemons.filter((d) => d !== victim)

    const done = await waitForTask(submitter, submitted.id, (t) => t.state !== 'running', 'the task to end')
    expect(done.error).toBeUndefined()
    expect(done.state).toBe('completed')
    const output = JSON.parse(
      await readFile(join(done.resultDir!, PREDICTIONS_FILE), 'utf8'),
    ) as InferenceOutput
    const backend = await createBackend({ prefer: 'cpu' })
    const local = await shardedLocalLogits(
      backend,
      decodeModelBundle(await readModelBundle(modelDir)),
      inputs,
      3,
    )
    backend.destroy()
    expect(output.predictions.map((p) => p.index)).toEqual([...Array(ROWS).keys()])
    expect(output.predictions.flatMap((p) => p.logits)).toEqual(Array.from(local))
    // the workers are newcomers, so every shard ran on R + 1 = 3 replicas: a shard the victim failed
    // was still decided by two agreeing results of the other workers (its extra replica, or a re-run)
    const hit = output.shards.filter((s) => s.failed.includes(victimId))
    expect(hit.length).toBeGreaterThanOrEqual(1)
    for (const shard of output.shards) {
      expect(shard.replicas).toBe(3)
      expect(shard.agreeing).toHaveLength(2)
      expect(shard.agreeing).not.toContain(victimId)
    }
    expect(output.agreement.scores[victimId]).toBeLessThan(0)
    expect(submitter.tasks.inference.reputation!.counts(victimId)['timed-out']).toBe(hit.length)
  }, 240_000)
})
