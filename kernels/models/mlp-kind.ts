// The MLP as a training model kind: its flat parameter layout (the flat order order in DEVICE layout:
// weights [in,out] row-major, biases [out], so gradients read from the backend need no transpose),
// conversions to and from checkpoint layers ([out,in] weights), and a member's gradients on its
// group's shard in the order of a MicroBatchPlan.
import { MicroBatchPlan } from '../data/sharding.js'
import {
  type GradientComputer,
  type MemberPlacement,
  readParams,
  type TrainingModel,
  writeParams,
} from './kind.js'
import {
  type HostLayer,
  initialHostLayers,
  layerSizes,
  Mlp,
  type MlpArchitecture,
  parameterCount,
  transpose,
} from './mlp.js'

/** The training data of a group (every member of a group holds the same shard). */
export interface TrainingShard {
  /** [count, inputSize] row-major */
  inputs: Float32Array
  /** [count] class indices as float32 (the form the backend's cross-entropy takes) */
  labels: Float32Array
}

/** Checkpoint layers ([out,in] weights) -> flat device layout. */
export function hostLayersToParams(
  architecture: MlpArchitecture,
  layers: readonly HostLayer[],
): Float32Array {
  const sizes = layerSizes(architecture)
  const flat = new Float32Array(parameterCount(architecture))
  let offset = 0
  layers.forEach((layer, l) => {
    flat.set(transpose(layer.weight, sizes[l + 1], sizes[l]), offset)
    offset += layer.weight.length
    flat.set(layer.bias, offset)
    offset += layer.bias.length
  })
  return flat
}

/** Flat device layout -> checkpoint layers ([out,in] weights), e.g. for encodeMlpCheckpoint. */
export function paramsToHostLayers(architecture: MlpArchitecture, params: Float32Array): HostLayer[] {
  const sizes = layerSizes(architecture)
  if (params.length !== parameterCount(architecture)) {
    throw new RangeError(`expected ${parameterCount(architecture)} params, got ${params.length}`)
  }
  const layers: HostLayer[] = []
  let offset = 0
  for (let l = 0; l + 1 < sizes.length; l++) {
    const weightCount = sizes[l] * sizes[l + 1]
    layers.push({
      weight: transpose(params.subarray(offset, offset + weightCount), sizes[l], sizes[l + 1]),
      bias: params.slice(offset + weightCount, offset + weightCount + sizes[l + 1]),
    })
    offset += weightCount + sizes[l + 1]
  }
  return layers
}

/** The He-initialized params of `seed` (the same as Mlp.initialize), flat. */
export function initialParams(architecture: MlpArchitecture, seed: number): Float32Array {
  return hostLayersToParams(architecture, initialHostLayers(architecture, seed))
}

export interface MlpGradientComputerInit extends MemberPlacement {
  architecture: MlpArchitecture
  shard: TrainingShard
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

/** The MLP of `architecture` trained on `shard`, as a training member sees it. */
export function mlpTrainingModel(architecture: MlpArchitecture, shard: TrainingShard): TrainingModel {
  const inputSize = architecture.inputSize
  if (shard.inputs.length !== shard.labels.length * inputSize || shard.labels.length === 0) {
    throw new RangeError(`the shard must hold labels.length x ${inputSize} inputs and at least one sample`)
  }
  return {
    kind: 'mnist-mlp',
    parameterCount: parameterCount(architecture),
    initialParams: (seed) => initialParams(architecture, seed),
    gradientComputer: (placement) => mlpGradientComputer({ ...placement, architecture, shard }),
  }
}
