// The plug-in point of a model kind for training: what a training group member (protocols/training)
// and the local trainer need of a model, whatever the model is. A model kind (mnist-mlp, gpt) binds
// its configuration and this member's training data into a TrainingModel; the group only sees a flat
// float32 parameter vector of `parameterCount` values and gradients of the same layout.
import type { Backend, Tensor } from '../backend.js'

/** Where a member sits in its group: what decides which samples its micro-batches take. */
export interface MemberPlacement {
  backend: Backend
  /** the task seed */
  seed: number
  /** micro-batch size of one member (samples for the MLP, sequences for the GPT) */
  batchSize: number
  memberCount: number
  /** this member's position among the sorted members */
  memberIndex: number
}

export interface GradientComputer {
  /**
   * The gradient (the model's flat layout) and mean loss of this member's micro-batch of `step` on
   * `params`. It must read `params` before it returns its promise: the caller may reuse the array
   * once the call returns. One computation at a time.
   */
  compute(step: number, params: Float32Array): Promise<{ gradient: Float32Array; loss: number }>
  dispose(): void
}

/** A model kind bound to its configuration and its training data, as a training member sees it. */
export interface TrainingModel {
  /** the model kind's registry name, e.g. `gpt` */
  readonly kind: string
  /** length of the flat parameter vector */
  readonly parameterCount: number
  /** the initial flat parameters of a task seed */
  initialParams(seed: number): Float32Array
  /** this member's gradients on its backend */
  gradientComputer(placement: MemberPlacement): GradientComputer
  /** the model kind's optimizer settings where they differ from Adam's defaults */
  readonly optimizer?: OptimizerSettings
}

export interface OptimizerSettings {
  /** AdamW's second-moment decay */
  beta2?: number
  /** largest global norm of an update (gradients are scaled down to it) */
  gradClip?: number
}

/** Overwrites tensors (in flat order) from a flat vector. */
export function writeParams(backend: Backend, tensors: readonly Tensor[], params: Float32Array): void {
  let offset = 0
  for (const tensor of tensors) {
    backend.write(tensor, params.subarray(offset, offset + tensor.size))
    offset += tensor.size
  }
  if (offset !== params.length) throw new RangeError(`tensors hold ${offset} values, params ${params.length}`)
}

/** Reads tensors (in flat order) into one flat vector. */
export async function readParams(backend: Backend, tensors: readonly Tensor[]): Promise<Float32Array> {
  const parts = await Promise.all(tensors.map((tensor) => backend.read(tensor)))
  const flat = new Float32Array(parts.reduce((total, part) => total + part.length, 0))
  let offset = 0
  for (const part of parts) {
    flat.set(part, offset)
    offset += part.length
  }
  return flat
}
