// The inference part of `shardnet demo`: writes rows of the MNIST test split (evenly spaced) as an input
// file, submits an inference task for the trained model to the demo's first daemon, waits for it, and
// returns its agreement figures (replica results agreeing, re-runs, outliers) and the accuracy of the
// network's predictions on those rows.
import { copyFile, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadMnist, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import type { TaskView } from './coordinator.js'
import { type InferenceOutput, PREDICTIONS_FILE } from './infer-files.js'

export interface DemoInference {
  available: boolean
  reason?: string
  taskId?: string
  state?: string
  /** input rows (MNIST test images) */
  count?: number
  shards?: number
  replicas?: number
  /** fraction of replica results that matched the accepted ones */
  agreement?: number
  agreeingResults?: number
  results?: number
  reruns?: number
  outliers?: string[]
  /** accuracy of the network's predictions on those rows */
  accuracy?: number
  seconds?: number
  predictionsPath?: string
}

/** MNIST test images the demo sends through the trained model. */
export const DEMO_INFER_ROWS_DEFAULT = 500
export const DEMO_INFER_REPLICAS_DEFAULT = 3
export const DEMO_INFER_SHARDS_DEFAULT = 4
/** How long the demo waits for its inference task. */
export const DEMO_INFER_TIMEOUT_MS_DEFAULT = 5 * 60_000

export interface DemoInferenceClient {
  get<T>(path: string): Promise<T>
  post<T>(path: string, body?: unknown): Promise<T>
}

export async function runDemoInference(
  client: DemoInferenceClient,
  options: {
    modelDir: string
    folder: string
    /** where predictions.json is copied (the daemons' data dirs may be deleted) */
    copyTo?: string
    /** @default DEMO_INFER_ROWS_DEFAULT */
    rows?: number
    /** @default DEMO_INFER_REPLICAS_DEFAULT */
    replicas?: number
    /** @default DEMO_INFER_SHARDS_DEFAULT */
    shards?: number
    /** @default DEMO_INFER_TIMEOUT_MS_DEFAULT */
    timeoutMs?: number
  },
  say: (line: string) => void,
): Promise<DemoInference> {
  const { test } = await loadMnist()
  const count = Math.min(options.rows ?? DEMO_INFER_ROWS_DEFAULT, test.count)
  // evenly spaced over the test split (it is ordered by class)
  const stride = Math.floor(test.count / count)
  const inputs = Array.from({ length: count }, (_, r) =>
    Array.from(test.images.subarray(r * stride * PIXEL_COUNT, (r * stride + 1) * PIXEL_COUNT)),
  )
  const inputFile = join(options.folder, 'demo-inputs.json')
  await writeFile(inputFile, JSON.stringify({ inputs }))
  const replicas = options.replicas ?? DEMO_INFER_REPLICAS_DEFAULT
  const shards = options.shards ?? DEMO_INFER_SHARDS_DEFAULT
  const started = Date.now()
  say(`submitting inference: ${count} MNIST test images in ${shards} shards, ${replicas} replicas each`)
  const submitted = await client.post<TaskView>('/v1/tasks', {
    kind: 'infer',
    model: options.modelDir,
    inputFile,
    replicas,
    shards,
  })
  const deadline = Date.now() + (options.timeoutMs ?? DEMO_INFER_TIMEOUT_MS_DEFAULT)
  let task = submitted
  while (task.state === 'running' || task.state === 'staffing') {
    if (Date.now() > deadline)
      return {
        available: true,
        taskId: task.id,
        state: task.state,
        reason: 'the inference did not finish in time',
      }
    await new Promise((resolve) => setTimeout(resolve, 250))
    task = await client.get<TaskView>(`/v1/task?id=${encodeURIComponent(submitted.id)}`)
  }
  const seconds = (Date.now() - started) / 1000
  if (task.state !== 'completed' || task.resultDir === undefined)
    return { available: true, taskId: task.id, state: task.state, reason: task.error ?? task.state, seconds }
  let predictionsPath = join(task.resultDir, PREDICTIONS_FILE)
  if (options.copyTo !== undefined) {
    await copyFile(predictionsPath, join(options.copyTo, PREDICTIONS_FILE))
    predictionsPath = join(options.copyTo, PREDICTIONS_FILE)
  }
  const output = JSON.parse(await readFile(predictionsPath, 'utf8')) as InferenceOutput
  const correct = output.predictions.filter((p) => p.class === test.labels[p.index * stride]).length
  const a = output.agreement
  const result: DemoInference = {
    available: true,
    taskId: task.id,
    state: task.state,
    count: output.count,
    shards: a.shards,
    replicas: a.replicas,
    agreement: a.agreement,
    agreeingResults: a.agreeingResults,
    results: a.results,
    reruns: a.reruns,
    outliers: a.outliers,
    accuracy: correct / output.count,
    seconds,
    predictionsPath,
  }
  say(
    `inference done in ${seconds.toFixed(1)} s: ${a.agreeingResults}/${a.results} replica results ` +
      `agreed, ${a.reruns} re-runs; accuracy ${((correct / output.count) * 100).toFixed(2)}% on ` +
      `${output.count} test images`,
  )
  return result
}
