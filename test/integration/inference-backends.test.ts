// Proves the cross-backend rule on real daemons over libp2p on loopback: one worker runs shards on the
// cpu backend and one on WebGPU (Dawn on lavapipe), their results differ in bits but agree within the
// stated tolerance (1e-3 + 1e-3·|x|), so a 2-replica task is accepted with both backend classes and no
// re-run, and its predictions match a local cpu forward pass within that tolerance.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackend } from '../../kernels/index.js'
import type { Daemon } from '../../node/daemon.js'
import { predictLogits } from '../../node/tasks/infer-executor.js'
import {
  decodeModelBundle,
  type InferenceOutput,
  PREDICTIONS_FILE,
  readModelBundle,
} from '../../node/tasks/infer-files.js'
import { LOGIT_TOLERANCE } from '../../protocols/inference/quorum.js'
import { startTestDaemon } from './daemon-helpers.js'
import { writeTestInputs, writeTestModel } from './inference-helpers.js'
import { stopAll, submitTask, TASK_DAEMON_TUNING, waitForTask, waitForTopicMesh } from './tasks-helpers.js'

const ROWS = 60

describe('inference across backend classes', () => {
  let daemons: Daemon[] = []
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-infer-backends-'))
    const submitter = await startTestDaemon(TASK_DAEMON_TUNING)
    const bootstrap = { overrides: { bootstrap: [submitter.addresses()[0]] } }
    const cpu = await startTestDaemon({ ...TASK_DAEMON_TUNING, ...bootstrap })
    const gpu = await startTestDaemon({
      ...bootstrap,
      taskService: {
        ...TASK_DAEMON_TUNING.taskService,
        openBackend: () => createBackend({ prefer: 'webgpu' }),
      },
    })
    daemons = [submitter, cpu, gpu]
    await waitForTopicMesh(daemons)
  }, 120_000)

  afterAll(async () => {
    await stopAll(daemons)
    await rm(folder, { recursive: true, force: true })
  })

  it('accepts cpu and webgpu results that agree within the tolerance', async () => {
    const modelDir = await writeTestModel(folder, [64], 11)
    const { inputs, inputFile } = await writeTestInputs(folder, ROWS, 13, 7, 97)
    const [submitter] = daemons
    const submitted = await submitTask(submitter, {
      kind: 'infer',
      model: modelDir,
      inputFile,
      replicas: 2,
      shards: 2,
      deadlineMs: 60_000,
    })
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
    expect(output.agreement.reruns).toBe(0)
    expect(output.agreement.outliers).toEqual([])
    for (const shard of output.shards) {
      expect(shard.agreeing).toHaveLength(2)
      expect(shard.backendClasses.map((c) => c.split(':')[0]).sort()).toEqual(['cpu', 'webgpu'])
    }
    const backend = await createBackend({ prefer: 'cpu' })
    const local = await predictLogits(
      backend,
      decodeModelBundle(await readModelBundle(modelDir)),
      Float32Array.from(inputs.flat()),
    )
    backend.destroy()
    const got = output.predictions.flatMap((p) => p.logits)
    expect(got).toHaveLength(local.length)
    got.forEach((value, i) => {
      const bound =
        LOGIT_TOLERANCE.absolute + LOGIT_TOLERANCE.relative * Math.max(Math.abs(value), Math.abs(local[i]))
      expect(Math.abs(value - local[i])).toBeLessThanOrEqual(bound)
    })
  }, 240_000)
})
