// Proves an inference task runs end to end across real daemons on loopback (libp2p, blocks, the
// /shardnet/infer/1.0.0 protocol, cpu backend): with one worker that lies (the test wraps its compute
// step to add 0.5 to its logits) the predictions still come back complete, ordered and bitwise equal
// to a local forward pass, every shard runs on one more replica than asked (the workers are newcomers
// to the submitter's reputation book), the liar is outvoted and recorded as disagreeing, its score drops;
// the same model submitted again by its bundle CID with R = 3 is accepted by 2 of 3 without a re-run.
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
import { argmaxRows } from '../../protocols/inference/quorum.js'
import { startTestDaemon } from './daemon-helpers.js'
import { lyingPredictor, shardedLocalLogits, writeTestInputs, writeTestModel } from './inference-helpers.js'
import { stopAll, submitTask, TASK_DAEMON_TUNING, waitForTask, waitForTopicMesh } from './tasks-helpers.js'

const ROWS = 80
const SHARDS = 8

describe('inference across daemons with a lying replica', () => {
  let daemons: Daemon[] = []
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-infer-'))
    const submitter = await startTestDaemon(TASK_DAEMON_TUNING)
    const bootstrap = { overrides: { bootstrap: [submitter.addresses()[0]] } }
    const honest = await Promise.all(
      [0, 1].map(() => startTestDaemon({ ...TASK_DAEMON_TUNING, ...bootstrap })),
    )
    const liar = await startTestDaemon({
      ...bootstrap,
      taskService: {
        ...TASK_DAEMON_TUNING.taskService,
        inferPredict: lyingPredictor(0.5),
      },
    })
    daemons = [submitter, ...honest, liar]
    await waitForTopicMesh(daemons)
  }, 120_000)

  afterAll(async () => {
    await stopAll(daemons)
    await rm(folder, { recursive: true, force: true })
  })

  it('returns complete, ordered, correct predictions and lowers the liar’s score', async () => {
    const modelDir = await writeTestModel(folder, [32], 7)
    const { inputs, inputFile } = await writeTestInputs(folder, ROWS, 31, 17, 101)

    const [submitter, , , liar] = daemons
    const submitted = await submitTask(submitter, {
      kind: 'infer',
      model: modelDir,
      inputFile,
      replicas: 2,
      shards: SHARDS,
      deadlineMs: 60_000,
    })
    expect(submitted.kind).toBe('infer')
    const done = await waitForTask(
      submitter,
      submitted.id,
      (t) => t.state !== 'running',
      'the inference to end',
    )
    expect(done.error).toBeUndefined()
    expect(done.state).toBe('completed')
    const output = JSON.parse(
      await readFile(join(done.resultDir!, PREDICTIONS_FILE), 'utf8'),
    ) as InferenceOutput

    // the local forward pass on the same backend class, shard by shard as the workers ran it: bitwise equal
    const backend = await createBackend({ prefer: 'cpu' })
    const model = decodeModelBundle(await readModelBundle(modelDir))
    const local = await shardedLocalLogits(backend, model, inputs, SHARDS)
    const localTwoShards = await shardedLocalLogits(backend, model, inputs, 2)
    backend.destroy()
    expect(output.count).toBe(ROWS)
    expect(output.predictions.map((p) => p.index)).toEqual([...Array(ROWS).keys()])
    expect(output.predictions.flatMap((p) => p.logits)).toEqual(Array.from(local))
    expect(output.predictions.map((p) => p.class)).toEqual(argmaxRows(local, 10))

    // every worker is a newcomer to the submitter's reputation book, so each shard ran on R + 1 = 3
    // replicas (adaptive replication): the liar was outvoted on every shard it ran, without re-runs,
    // and it never counts as agreeing
    const liarId = liar.peerId.toString()
    expect(output.shards).toHaveLength(SHARDS)
    expect(output.agreement.outliers).toEqual([liarId])
    for (const shard of output.shards) {
      expect(shard.replicas).toBe(3)
      expect(shard.agreeing).toHaveLength(2)
      expect(shard.agreeing).not.toContain(liarId)
    }
    expect(output.agreement.reruns).toBe(0)
    // the book recorded each replica's outcome
    const book = submitter.tasks.inference.reputation!
    expect(book.counts(liarId).disagreed).toBe(SHARDS)
    expect(book.counts(daemons[1].peerId.toString()).agreed).toBe(SHARDS)
    expect(output.agreement.agreement).toBeLessThan(1)
    expect(output.agreement.scores[liarId]).toBeLessThan(0)
    for (const honest of daemons.slice(1, 3)) {
      expect(output.agreement.scores[honest.peerId.toString()]).toBeGreaterThan(0)
    }
    // the task view carries the figures too
    expect((done.summary.inference as { reruns: number }).reruns).toBe(output.agreement.reruns)

    // the same model again by its bundle CID, R = 3 on the 3 workers: 2 of 3 agree at once, no re-run
    const again = await submitTask(submitter, {
      kind: 'infer',
      model: done.summary.modelCid,
      inputFile,
      replicas: 3,
      shards: 2,
    })
    const second = await waitForTask(
      submitter,
      again.id,
      (t) => t.state !== 'running',
      'the second inference',
    )
    expect(second.state).toBe('completed')
    const secondOutput = JSON.parse(
      await readFile(join(second.resultDir!, PREDICTIONS_FILE), 'utf8'),
    ) as InferenceOutput
    expect(secondOutput.predictions.flatMap((p) => p.logits)).toEqual(Array.from(localTwoShards))
    expect(secondOutput.agreement.reruns).toBe(0)
    expect(secondOutput.agreement.outliers).toEqual([liarId])
    expect(secondOutput.agreement.scores[liarId]).toBeLessThan(output.agreement.scores[liarId])
  }, 240_000)
})
