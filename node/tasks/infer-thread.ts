// The cpu forward pass of inference shards, in a node:worker_threads worker (started by
// InferThread in node/tasks/infer-thread-pool.ts): the main thread keeps serving the control API,
// Raft heartbeats and every other protocol while a shard computes. One job at a time; the main thread
// aborts a job by terminating the thread.
import { parentPort } from 'node:worker_threads'
import type { CpuEngineName } from '../../kernels/cpu/engine.js'
import { type Backend, createBackend } from '../../kernels/index.js'
import { FORWARD_ROWS_THREAD, type ForwardModel, predictLogits } from './infer-forward.js'

export interface InferThreadJob {
  id: number
  model: ForwardModel
  inputs: Float32Array
  /** the cpu engine the daemon computes on (its probe's choice or its config's pin) */
  engine?: CpuEngineName
}

export type InferThreadAnswer =
  | { id: number; ok: true; logits: Float32Array; backendClass: string }
  | { id: number; ok: false; message: string }

const port = parentPort
if (port === null) throw new Error('infer-thread.ts runs only as a worker thread')
port.on('message', async (job: InferThreadJob) => {
  let backend: Backend
  try {
    backend = await createBackend({ prefer: 'cpu', cpuEngine: job.engine })
  } catch (error) {
    const answer: InferThreadAnswer = { id: job.id, ok: false, message: String((error as Error)?.message) }
    port.postMessage(answer)
    return
  }
  const backendClass = `${backend.kind}:${backend.info.adapterName}`
  predictLogits(backend, job.model, job.inputs, { sliceRows: FORWARD_ROWS_THREAD, yieldBetween: false })
    .then((logits) => {
      const answer: InferThreadAnswer = { id: job.id, ok: true, logits, backendClass }
      port.postMessage(answer, [logits.buffer as ArrayBuffer])
    })
    .catch((error: unknown) => {
      const answer: InferThreadAnswer = { id: job.id, ok: false, message: String((error as Error)?.message) }
      port.postMessage(answer)
    })
    .finally(() => backend.destroy())
})
