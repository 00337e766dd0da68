// Test helper shared by the inference integration tests: a seeded, untrained MLP model directory in
// the format `train --local` writes, a deterministic input file in the format `submit infer` reads,
// and the workers that misbehave (a lying one, a slow one), made by wrapping the worker's compute step.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import type { Backend } from '../../kernels/index.js'
import { initialHostLayers, type MlpArchitecture } from '../../kernels/models/mlp.js'
import { describeArchitecture, saveModel } from '../../node/executor/model-files.js'
import { predictLogits, type ShardPredictor } from '../../node/tasks/infer-executor.js'
import { FORWARD_ROWS_THREAD, type ForwardModel } from '../../node/tasks/infer-forward.js'
import { planShards } from '../../protocols/inference/quorum.js'

/** A worker that lies: it answers the true logits plus `offset`. */
export function lyingPredictor(offset: number): ShardPredictor {
  return async (backend, model, inputs) =>
    (await predictLogits(backend, model, inputs)).map((value) => value + offset)
}

/** A slow worker: it computes the true logits, then holds them `delayMs` before answering. */
export function slowPredictor(delayMs: number): ShardPredictor {
  return async (backend, model, inputs) => {
    const logits = await predictLogits(backend, model, inputs)
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    return logits
  }
}

/** Writes `folder/model` holding a seeded MLP of `hiddenSizes`; returns the directory. */
export async function writeTestModel(folder: string, hiddenSizes: number[], seed: number): Promise<string> {
  const architecture: MlpArchitecture = { inputSize: PIXEL_COUNT, hiddenSizes, outputSize: CLASS_COUNT }
  const modelDir = join(folder, 'model')
  await saveModel(modelDir, architecture, initialHostLayers(architecture, seed), {
    model: 'mnist-mlp',
    ...describeArchitecture(architecture),
    dataset: { name: 'test' },
    seed,
    training: {},
    backend: { kind: 'test' },
    metrics: { testAccuracy: 0, testLoss: 0 },
    history: [],
    createdAt: new Date().toISOString(),
  })
  return modelDir
}

/**
 * Writes `folder/inputs.json` ({"inputs": rows}) with
 * pixel (r, i) = ((r*rowStep + i*pixelStep) % modulus) / (modulus - 1), deterministic values in 0..1;
 * returns the rows and the file.
 */
export async function writeTestInputs(
  folder: string,
  rows: number,
  rowStep: number,
  pixelStep: number,
  modulus: number,
): Promise<{ inputs: number[][]; inputFile: string }> {
  const inputs = Array.from({ length: rows }, (_, r) =>
    Array.from({ length: PIXEL_COUNT }, (_, i) => ((r * rowStep + i * pixelStep) % modulus) / (modulus - 1)),
  )
  const inputFile = join(folder, 'inputs.json')
  await writeFile(inputFile, JSON.stringify({ inputs }))
  return { inputs, inputFile }
}

/**
 * The logits of `inputs` computed here shard by shard, split as the network splits them into `shards`
 * (planShards), each shard in the worker thread's slices: what every honest worker returns, bit for
 * bit. The split matters: a BLAS matmul's bits for one row depend on how many rows it multiplies at
 * once.
 */
export async function shardedLocalLogits(
  backend: Backend,
  model: ForwardModel,
  inputs: number[][],
  shards: number,
): Promise<Float32Array> {
  const parts: Float32Array[] = []
  for (const range of planShards(inputs.length, shards)) {
    const rows = Float32Array.from(inputs.slice(range.start, range.end).flat())
    parts.push(await predictLogits(backend, model, rows, { sliceRows: FORWARD_ROWS_THREAD }))
  }
  const logits = new Float32Array(parts.reduce((total, part) => total + part.length, 0))
  let offset = 0
  for (const part of parts) {
    logits.set(part, offset)
    offset += part.length
  }
  return logits
}
