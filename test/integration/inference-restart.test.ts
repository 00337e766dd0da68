// Proves an inference task survives a restart of the submitter's daemon, with real daemons over libp2p
// on loopback: slow workers (the test wraps their compute step in a delay) keep the task running, the
// submitter stops mid-task and starts again on the same data dir, runs the task again from its stored
// job and blocks, and the predictions come back complete, ordered and equal to a local forward pass.
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
import { startTestDaemon, tempDataDir } from './daemon-helpers.js'
import { shardedLocalLogits, slowPredictor, writeTestInputs, writeTestModel } from './inference-helpers.js'
import { stopAll, submitTask, TASK_DAEMON_TUNING, waitForTask, waitForTopicMesh } from './tasks-helpers.js'

const ROWS = 40

describe('inference across a submitter restart', () => {
  let daemons: Daemon[] = []
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-infer-restart-'))
  })

  afterAll(async () => {
    await stopAll(daemons)
    await rm(folder, { recursive: true, force: true })
  })

  it('runs the task again after the restart and completes it', async () => {
    const dataDir = await tempDataDir()
    const submitter = await startTestDaemon({ ...TASK_DAEMON_TUNING, dataDir })
    const slow = {
      overrides: { bootstrap: [submitter.addresses()[0]] },
      taskService: { ...TASK_DAEMON_TUNING.taskService, inferPredict: slowPredictor(1500) },
    }
    const workers = await Promise.all([0, 1].map(() => startTestDaemon(slow)))
    daemons = [submitter, ...workers]
    await waitForTopicMesh(daemons)

    const modelDir = await writeTestModel(folder, [16], 5)
    const { inputs, inputFile } = await writeTestInputs(folder, ROWS, 7, 3, 89)
    const submitted = await submitTask(submitter, {
      kind: 'infer',
      model: modelDir,
      inputFile,
      replicas: 2,
      shards: 4,
      deadlineMs: 60_000,
    })
    // mid-task: shards were sent out, none can have finished yet (each worker takes 1.5 s per shard)
    await waitForTask(
      submitter,
      submitted.id,
      (t) => t.groups.some((g) => g.members.length > 0),
      'shards to be sent out',
      60_000,
    )
    expect(submitter.tasks.inference.get(submitted.id)?.state).toBe('running')
    await submitter.stop()
    daemons = workers
    const restarted = await startTestDaemon({
      ...TASK_DAEMON_TUNING,
      dataDir,
      overrides: { bootstrap: [workers[0].addresses()[0], workers[1].addresses()[0]] },
    })
    daemons = [restarted, ...workers]
    const done = await waitForTask(restarted, submitted.id, (t) => t.state !== 'running', 'the task to end')
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
      4,
    )
    backend.destroy()
    expect(output.predictions.map((p) => p.index)).toEqual([...Array(ROWS).keys()])
    expect(output.predictions.flatMap((p) => p.logits)).toEqual(Array.from(local))
    expect(output.agreement.agreeingResults).toBe(8)
  }, 240_000)
})
