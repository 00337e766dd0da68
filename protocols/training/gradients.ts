// Where a member's gradients come from: a GradientComputer computes the gradient of the member's
// micro-batch of a step on given params. The MLP's computer runs the model's forward and backward
// pass on the member's backend; a driver may wrap it (instrumentation, or a test that makes a member
// lie) through GroupMemberInit.wrapComputer.
import type { Backend } from '../../kernels/backend.js'
import { Mlp, type MlpArchitecture } from '../../kernels/models/mlp.js'
import { readParams, writeParams } from './params.js'
import { MicroBatchPlan } from './state.js'
import type { TrainingShard } from './types.js'

export interface GradientComputer {
  /**
   * The gradient (device layout, see params.ts) and mean loss of this member's micro-batch of `step`
   * on `params`. It must read `params` before it returns its promise: the caller may reuse the
   * array once the call returns. One computation at a time.
   */
  compute(step: number, params: Float32Array): Promise<{ gradient: Float32Array; loss: number }>
  dispose(): void
}

export interface MlpGradientComputerInit {
  backend: Backend
  architecture: MlpArchitecture
  /** the task seed: the micro-batch plan derives from it */
  seed: number
  shard: TrainingShard
  /** micro-batch size of one member */
  batchSize: number
  memberCount: number
  /** this member's position among the sorted members */
  memberIndex: number
}

/** The MLP's gradients on a backend, from the group's shard in the order of its MicroBatchPlan. */
export function mlpGradientComputer(init: MlpGradientComputerInit): GradientComputer {
  const { backend, architecture, shard, batchSize } = init
  const model = Mlp.initialize(backend, architecture, init.seed)
  const plan = new MicroBatchPlan(shard.labels.length, init.seed, init.memberCount, batchSize)
  const inputSize = architecture.inputSize
  // the batch's inputs go to the backend by copy (upload): one pair of arrays serves every step
  const images = new Float32Array(batchSize * inputSize)
  const labels = new Float32Array(batchSize)
  return {
    async compute(step, params) {
      writeParams(backend, model.parameters(), params)
      const indices = plan.indices(step, init.memberIndex)
      for (let row = 0; row < batchSize; row++) {
        const sample = indices[row]
        images.set(shard.inputs.subarray(sample * inputSize, (sample + 1) * inputSize), row * inputSize)
        labels[row] = shard.labels[sample]
      }
      const x = backend.upload(images, [batchSize, inputSize])
      const y = backend.upload(labels, [batchSize])
      const result = model.lossAndGradients(x, y)
      const gradientTensors = result.layers.flatMap((layer) => [layer.weight, layer.bias])
      const lossSum = backend.sum(result.loss)
      try {
        const [gradient, lossValues] = await Promise.all([
          readParams(backend, gradientTensors),
          backend.read(lossSum),
        ])
        return { gradient, loss: lossValues[0] / batchSize }
      } finally {
        for (const tensor of [x, y, result.loss, result.logits, lossSum, ...gradientTensors]) tensor.dispose()
      }
    },
    dispose() {
      model.dispose()
    },
  }
}
