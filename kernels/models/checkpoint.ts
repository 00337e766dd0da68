// MLP checkpoints as safetensors bytes: tensors `layers.<i>.weight` [out,in] and `layers.<i>.bias`
// [out], float32, plus `__metadata__` naming the format and architecture. Decoding infers the
// architecture from the shapes, checks that consecutive layers chain, and refuses non-finite values.
import type { HostLayer, MlpArchitecture } from './mlp.js'
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.js'

export const CHECKPOINT_FORMAT = 'shardnet-mlp/1'

/** A checkpoint that decodes as safetensors but is not a valid MLP (or holds NaN/Inf). */
export class CheckpointError extends Error {
  static override name = 'CheckpointError'
  constructor(message: string) {
    super(message)
    this.name = 'CheckpointError'
  }
}

export function encodeMlpCheckpoint(
  architecture: MlpArchitecture,
  layers: readonly HostLayer[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const sizes = [architecture.inputSize, ...architecture.hiddenSizes, architecture.outputSize]
  const tensors: Array<[string, NamedTensor]> = []
  layers.forEach((layer, l) => {
    tensors.push([`layers.${l}.weight`, { shape: [sizes[l + 1], sizes[l]], data: layer.weight }])
    tensors.push([`layers.${l}.bias`, { shape: [sizes[l + 1]], data: layer.bias }])
  })
  return encodeSafetensors(tensors, {
    ...metadata,
    format: CHECKPOINT_FORMAT,
    architecture: JSON.stringify({
      inputSize: architecture.inputSize,
      hiddenSizes: architecture.hiddenSizes,
      outputSize: architecture.outputSize,
    }),
  })
}

export interface DecodedCheckpoint {
  architecture: MlpArchitecture
  layers: HostLayer[]
  metadata: Record<string, string>
}

/** Decodes and validates a checkpoint; throws SafetensorsError or CheckpointError. */
export function decodeMlpCheckpoint(bytes: Uint8Array): DecodedCheckpoint {
  const { tensors, metadata } = decodeSafetensors(bytes)
  const layers: HostLayer[] = []
  const sizes: number[] = []
  for (let l = 0; tensors.has(`layers.${l}.weight`); l++) {
    const weight = tensors.get(`layers.${l}.weight`)!
    const bias = tensors.get(`layers.${l}.bias`)
    if (weight.shape.length !== 2) throw new CheckpointError(`layers.${l}.weight is not a matrix`)
    const [outSize, inSize] = weight.shape
    if (bias === undefined) throw new CheckpointError(`layers.${l}.bias is missing`)
    if (bias.shape.length !== 1 || bias.shape[0] !== outSize) {
      throw new CheckpointError(`layers.${l}.bias has shape [${bias.shape}], expected [${outSize}]`)
    }
    if (l === 0) sizes.push(inSize)
    else if (sizes[l] !== inSize) {
      throw new CheckpointError(
        `layers.${l}.weight takes ${inSize} inputs but layer ${l - 1} gives ${sizes[l]}`,
      )
    }
    if (outSize < 1 || inSize < 1) throw new CheckpointError(`layers.${l}.weight has an empty dimension`)
    sizes.push(outSize)
    for (const [name, values] of [
      [`layers.${l}.weight`, weight.data],
      [`layers.${l}.bias`, bias.data],
    ] as const) {
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i]))
          throw new CheckpointError(`${name} holds a non-finite value (${values[i]})`)
      }
    }
    layers.push({ weight: weight.data, bias: bias.data })
  }
  if (layers.length === 0) throw new CheckpointError('the checkpoint has no tensor named layers.0.weight')
  const expectedNames = layers.length * 2
  if (tensors.size !== expectedNames) {
    const extra =
      [...tensors.keys()].find((name) => !/^layers\.\d+\.(weight|bias)$/.test(name)) ?? 'a layer gap'
    throw new CheckpointError(`the checkpoint holds an unexpected tensor (${extra})`)
  }
  return {
    architecture: {
      inputSize: sizes[0],
      hiddenSizes: sizes.slice(1, -1),
      outputSize: sizes[sizes.length - 1],
    },
    layers,
    metadata,
  }
}
