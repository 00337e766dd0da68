// The forward pass of an inference shard, shared by the main thread (webgpu, or a test's predictor)
// and the cpu worker thread (node/tasks/infer-thread.ts). It imports only kernels/, so the thread
// loads no libp2p code.
import type { Backend } from '../../kernels/backend.js'
import { PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { type HostLayer, Mlp, type MlpArchitecture } from '../../kernels/models/mlp.js'

/** Rows per forward pass when nothing else shares the thread (the cpu worker thread). */
export const FORWARD_ROWS_THREAD = 1000
/**
 * Rows per slice on the main thread: a slice of the reference cpu ops on a 784-1024-1024-10 MLP takes
 * about 40 ms on the shared test machine, and the event loop runs between slices.
 */
export const FORWARD_ROWS_MAIN_THREAD = 32

export interface ForwardModel {
  architecture: MlpArchitecture
  layers: HostLayer[]
}

export interface ForwardOptions {
  /** rows per forward pass. @default FORWARD_ROWS_MAIN_THREAD */
  sliceRows?: number
  /** yield to the event loop between slices. @default true */
  yieldBetween?: boolean
  signal?: AbortSignal
}

/** Logits [rows, classes] of `inputs` [rows, PIXEL_COUNT] through the model on `backend`. */
export async function predictLogits(
  backend: Backend,
  model: ForwardModel,
  inputs: Float32Array,
  options: ForwardOptions = {},
): Promise<Float32Array> {
  const rows = inputs.length / PIXEL_COUNT
  const classes = model.architecture.outputSize
  const sliceRows = options.sliceRows ?? FORWARD_ROWS_MAIN_THREAD
  const yieldBetween = options.yieldBetween ?? true
  const mlp = Mlp.fromHost(backend, model.architecture, model.layers)
  try {
    const out = new Float32Array(rows * classes)
    for (let start = 0; start < rows; start += sliceRows) {
      options.signal?.throwIfAborted()
      const end = Math.min(rows, start + sliceRows)
      const x = backend.upload(inputs.subarray(start * PIXEL_COUNT, end * PIXEL_COUNT), [
        end - start,
        PIXEL_COUNT,
      ])
      const logits = mlp.logits(x)
      out.set(await backend.read(logits), start * classes)
      x.dispose()
      logits.dispose()
      if (yieldBetween && end < rows) await new Promise((resolve) => setImmediate(resolve))
    }
    return out
  } finally {
    for (const tensor of mlp.parameters()) tensor.dispose()
  }
}
