// Proves the cross-backend rule on real daemons over libp2p on loopback: one worker runs shards on the
// cpu backend and one on WebGPU (Dawn on lavapipe), their results differ in bits but agree within the
// stated tolerance (1e-3 + 1e-3·|x|), so a 2-replica task is accepted with both backend classes and no
// re-run, and its predictions match a local cpu forward pass within that tolerance.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { createBackend } from '../../kernels/index.js'
import { initialHostLayers, type MlpArchitecture, parameterCount } from '../../kernels/models/mlp.js'
import type { Daemon } from '../../node/daemon.js'
import { saveModel } from '../../node/executor/model-files.js'
import { predictLogits } from '../../node/tasks/infer-executor.js'
import {
  decodeModelBundle,
  type InferenceOutput,
  PREDICTIONS_FILE,
  readModelBundle,
} from '../../node/tasks/infer-files.js'
import { LOGIT_TOLERANCE } from '../../protocols/inference/quorum.js'
import { startTestDaemon } from './daemon-helpers.js'
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
    const architecture: MlpArchitecture = { inputSize: PIXEL_COUNT, hiddenSizes: [64], outputSize: 10 }
    const modelDir = join(folder, 'model')
    await saveModel(modelDir, architecture, initialHostLayers(architecture, 11), {
      model: 'mnist-mlp',
      architecture: { type: 'mlp', activation: 'relu', ...architecture, hiddenSizes: [64] },
      parameterCount: parameterCount(architecture),
      dataset: { name: 'test' },
      seed: 11,
      training: {},
      backend: { kind: 'test' },
      metrics: { testAccuracy: 0, testLoss: 0 },
      history: [],
      createdAt: new Date().toISOString(),
    })
    const inputs = Array.from({ length: ROWS }, (_, r) =>
      Array.from({ length: PIXEL_COUNT }, (_, i) => ((r * 13 + i * 7) % 97) / 96),
    )
    const inputFile = join(folder, 'inputs.json')
    await writeFile(inputFile, JSON.stringify({ inputs }))
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
