// Proves the GPT model kind on the network path, end to end through real daemons on loopback: a
// `gpt` training task names the linux-doc-6.1 corpus by the raw CIDs of its splits, every worker
// builds the corpus itself and checks it against them, groups of three train the GPT with Raft
// gradient consensus (float32, and int8 across two groups with DiLoCo outer rounds), and the
// submitter scores the average in validation bits per byte and writes a checkpoint in Hugging Face's
// layout that reads back.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildCorpus, CORPUS_PACKAGE, defaultCorpusCacheDir } from '../../kernels/data/corpus.js'
import { gptParameterLayout } from '../../kernels/models/gpt/config.js'
import { decodeSafetensors } from '../../kernels/models/safetensors.js'
import type { Daemon } from '../../node/daemon.js'
import { CONFIG_FILE, loadGpt, WEIGHTS_FILE } from '../../node/executor/model-files.js'
import { rawCidOfSha256 } from '../../node/tasks/task-models.js'
import { startTaskNetwork, stopAll, submitTask, waitForTask } from './tasks-helpers.js'

/** a GPT small enough for three cpu members on two cores to take a few steps a second */
const SHAPE = { context: 32, width: 32, layers: 2, heads: 2 }

describe('GPT training tasks across daemons', () => {
  let daemons: Daemon[] = []
  beforeAll(async () => {
    // the first build reads 3,183 files; the workers then reuse the cached splits
    await buildCorpus({ cacheDir: defaultCorpusCacheDir() })
  }, 120_000)
  afterAll(async () => stopAll(daemons))

  it('trains one group of three and writes a Hugging Face GPT-2 checkpoint', async () => {
    daemons = await startTaskNetwork(7)
    const [submitter] = daemons
    const task = await submitTask(submitter, {
      kind: 'train',
      model: 'gpt',
      gpt: SHAPE,
      groups: 1,
      groupSize: 3,
      steps: 40,
      batchSize: 4,
      learningRate: 0.003,
      seed: 11,
      deadlineMs: 30_000,
    })
    expect(task.state).toBe('staffing')
    const files = await buildCorpus({ cacheDir: defaultCorpusCacheDir() })
    expect(task.summary).toMatchObject({
      dataset: CORPUS_PACKAGE,
      trainCount: files.training.bytes,
      shardCids: [rawCidOfSha256(files.training.sha256).toString()],
    })
    const done = await waitForTask(
      submitter,
      task.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'completion',
    )
    expect(done.error).toBeUndefined()
    expect(done.state).toBe('completed')
    expect(done.groups[0].step).toBe(40)
    expect(done.accuracy).toBeUndefined()
    // an untrained byte model scores about 8 bits per byte; 40 steps learn the byte frequencies
    expect(done.bitsPerByte).toBeLessThan(6)
    const model = await loadGpt(done.resultDir!)
    expect(model.config).toMatchObject({ ...SHAPE, vocabSize: 256, layerNormEpsilon: 1e-5 })
    expect(model.manifest.metrics.validationBitsPerByte).toBe(done.bitsPerByte)
    const { tensors, metadata } = decodeSafetensors(await readFile(join(done.resultDir!, WEIGHTS_FILE)))
    expect(metadata.format).toBe('pt')
    expect([...tensors.keys()]).toEqual(gptParameterLayout(model.config).map((entry) => entry.name))
    expect(tensors.get('h.0.attn.c_attn.weight')?.shape).toEqual([32, 96])
    const hf = JSON.parse(await readFile(join(done.resultDir!, CONFIG_FILE), 'utf8'))
    expect(hf).toMatchObject({ model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 2, n_positions: 32 })
  }, 600_000)

  it('trains two groups of three with int8 compression and outer rounds', async () => {
    const [submitter] = daemons
    const task = await submitTask(submitter, {
      kind: 'train',
      model: 'gpt',
      gpt: SHAPE,
      groups: 2,
      groupSize: 3,
      steps: 30,
      batchSize: 4,
      learningRate: 0.003,
      seed: 12,
      outerEvery: 15,
      compress: 'int8',
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
    expect(done.outerRound).toBe(2)
    expect(done.groups.map((g) => g.step)).toEqual([30, 30])
    expect(done.bitsPerByte).toBeLessThan(6)
  }, 600_000)
})
