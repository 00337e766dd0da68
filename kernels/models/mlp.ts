// A multi-layer perceptron built from backend ops: Linear -> ReLU -> ... -> Linear, trained with
// softmax cross-entropy. Parameters live on the backend as one tensor per weight and bias.
//
// Weight layout on the device is [in, out] ("x W" needs no transpose), while checkpoints use the
// PyTorch/safetensors convention [out, in]; toHost/fromHost transpose. Why: the forward matmul
// then streams rows of W and the weight gradient x^T dy streams rows of x, which lets the CPU
// backend skip the zero pixels of MNIST (about 80% of them) in both of the two large matmuls.
//
// Shapes: B = batch rows, sizes = [input, ...hidden, output].
//   forward:  h0 = x [B,in]; z_l = h_l W_l + b_l [B,out_l]; h_{l+1} = relu(z_l); logits = z_last
//   backward: dz_last = (softmax - onehot)/B; dW_l = h_l^T dz_l [in,out]; db_l = sum_rows dz_l;
//             dh_l = dz_l W_l^T [B,in_l]; dz_{l-1} = dh_l where z_{l-1} > 0
import type { Backend, Tensor } from '../backend.js'
import { SeededRandom } from '../data/random.js'

export interface MlpArchitecture {
  inputSize: number
  /** widths of the hidden layers, in order; may be empty (softmax regression) */
  hiddenSizes: readonly number[]
  outputSize: number
}

/** One linear layer on the device. */
export interface MlpLayer {
  /** [in, out] */
  weight: Tensor
  /** [out] */
  bias: Tensor
}

/** One linear layer on the host in checkpoint layout. */
export interface HostLayer {
  /** [out, in] row-major */
  weight: Float32Array
  /** [out] */
  bias: Float32Array
}

/** Loss and gradients of one batch, all on the device; the caller disposes them. */
export interface MlpGradients {
  /** [B] cross-entropy of each row */
  loss: Tensor
  /** [B, outputSize] */
  logits: Tensor
  /** per layer: dLoss/dW [in,out] and dLoss/db [out] of the MEAN loss over the batch */
  layers: MlpLayer[]
}

/** One parameter tensor's place in the flat parameter vector. */
export interface FlatParameterEntry {
  /** checkpoint name, e.g. layers.0.weight */
  name: string
  /** device layout: weights [in,out], biases [out] */
  shape: readonly number[]
  offset: number
  size: number
}

export const MAX_LAYER_WIDTH = 65_536

export function layerSizes(architecture: MlpArchitecture): number[] {
  return [architecture.inputSize, ...architecture.hiddenSizes, architecture.outputSize]
}

export function assertArchitecture(architecture: MlpArchitecture): void {
  for (const size of layerSizes(architecture)) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_LAYER_WIDTH) {
      throw new RangeError(`every layer width must be an integer in [1, ${MAX_LAYER_WIDTH}], got ${size}`)
    }
  }
}

/** Number of trainable parameters (weights and biases). */
export function parameterCount(architecture: MlpArchitecture): number {
  const sizes = layerSizes(architecture)
  let count = 0
  for (let l = 0; l + 1 < sizes.length; l++) count += sizes[l] * sizes[l + 1] + sizes[l + 1]
  return count
}

/** [rows, cols] row-major -> [cols, rows] row-major */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]
  return out
}

/**
 * He (Kaiming) normal initialization for ReLU networks: W ~ N(0, 2/fanIn), b = 0, drawn from the
 * seed's "init" stream, layer by layer, weights in [out,in] order.
 */
export function initialHostLayers(architecture: MlpArchitecture, seed: number): HostLayer[] {
  assertArchitecture(architecture)
  const random = SeededRandom.stream(seed, 'init')
  const sizes = layerSizes(architecture)
  const layers: HostLayer[] = []
  for (let l = 0; l + 1 < sizes.length; l++) {
    const fanIn = sizes[l]
    const fanOut = sizes[l + 1]
    const std = Math.sqrt(2 / fanIn)
    const weight = new Float32Array(fanOut * fanIn)
    for (let i = 0; i < weight.length; i++) weight[i] = random.normal() * std
    layers.push({ weight, bias: new Float32Array(fanOut) })
  }
  return layers
}

export class Mlp {
  readonly backend: Backend
  readonly architecture: MlpArchitecture
  readonly layers: MlpLayer[]

  private constructor(backend: Backend, architecture: MlpArchitecture, layers: MlpLayer[]) {
    this.backend = backend
    this.architecture = architecture
    this.layers = layers
  }

  /** A freshly initialized model (He normal weights, zero biases) for `seed`. */
  static initialize(backend: Backend, architecture: MlpArchitecture, seed: number): Mlp {
    return Mlp.fromHost(backend, architecture, initialHostLayers(architecture, seed))
  }

  /** Uploads host layers (checkpoint layout [out,in]); checks their sizes and that every value is finite. */
  static fromHost(backend: Backend, architecture: MlpArchitecture, hostLayers: readonly HostLayer[]): Mlp {
    assertArchitecture(architecture)
    const sizes = layerSizes(architecture)
    if (hostLayers.length !== sizes.length - 1) {
      throw new RangeError(`expected ${sizes.length - 1} layers, got ${hostLayers.length}`)
    }
    hostLayers.forEach((layer, l) => {
      if (layer.weight.length !== sizes[l] * sizes[l + 1] || layer.bias.length !== sizes[l + 1]) {
        throw new RangeError(
          `layer ${l} does not have ${sizes[l + 1]}x${sizes[l]} weights and ${sizes[l + 1]} biases`,
        )
      }
      for (const values of [layer.weight, layer.bias]) {
        for (let i = 0; i < values.length; i++) {
          if (!Number.isFinite(values[i]))
            throw new RangeError(`layer ${l} holds a non-finite value (${values[i]})`)
        }
      }
    })
    const layers = hostLayers.map((layer, l) => ({
      weight: backend.upload(transpose(layer.weight, sizes[l + 1], sizes[l]), [sizes[l], sizes[l + 1]]),
      bias: backend.upload(layer.bias, [sizes[l + 1]]),
    }))
    return new Mlp(backend, architecture, layers)
  }

  /** Parameters in a fixed order: weight 0, bias 0, weight 1, ... (optimizer state follows it). */
  parameters(): Tensor[] {
    return this.layers.flatMap((layer) => [layer.weight, layer.bias])
  }

  /**
   * Where each parameter sits in the flat vector of all parameters (the form gradients and
   * parameters take on the wire): `parameters()` order, device layout (weights [in,out]).
   */
  parameterLayout(): FlatParameterEntry[] {
    let offset = 0
    return this.layers.flatMap((layer, l) =>
      (['weight', 'bias'] as const).map((kind) => {
        const tensor = layer[kind]
        const entry = { name: `layers.${l}.${kind}`, shape: tensor.shape, offset, size: tensor.size }
        offset += tensor.size
        return entry
      }),
    )
  }

  /**
   * Reads tensors laid out like `parameters()` (the parameters themselves by default) into one flat
   * vector.
   */
  async readFlat(tensors: readonly Tensor[] = this.parameters()): Promise<Float32Array> {
    const layout = this.parameterLayout()
    if (tensors.length !== layout.length)
      throw new RangeError(`expected ${layout.length} tensors, got ${tensors.length}`)
    const flat = new Float32Array(parameterCount(this.architecture))
    const parts = await Promise.all(tensors.map((tensor) => this.backend.read(tensor)))
    parts.forEach((part, i) => {
      if (part.length !== layout[i].size)
        throw new RangeError(`${layout[i].name} has ${part.length} values, expected ${layout[i].size}`)
      flat.set(part, layout[i].offset)
    })
    return flat
  }

  /** Overwrites every parameter from a flat vector in `parameterLayout()` order. */
  writeFlat(flat: Float32Array): void {
    if (flat.length !== parameterCount(this.architecture)) {
      throw new RangeError(`expected ${parameterCount(this.architecture)} values, got ${flat.length}`)
    }
    const tensors = this.parameters()
    for (const [i, entry] of this.parameterLayout().entries()) {
      this.backend.write(tensors[i], flat.subarray(entry.offset, entry.offset + entry.size))
    }
  }

  /** logits [B, outputSize] of x [B, inputSize] */
  logits(x: Tensor): Tensor {
    let activation = x
    for (let l = 0; l < this.layers.length; l++) {
      const product = this.backend.matmul(activation, this.layers[l].weight)
      const preActivation = this.backend.biasAdd(product, this.layers[l].bias)
      product.dispose()
      if (activation !== x) activation.dispose()
      if (l === this.layers.length - 1) return preActivation
      activation = this.backend.relu(preActivation)
      preActivation.dispose()
    }
    throw new Error('unreachable: an MLP has at least one layer')
  }

  /** Forward and backward pass of one batch: per-row loss, logits and the gradients of the mean loss. */
  lossAndGradients(x: Tensor, labels: Tensor): MlpGradients {
    const backend = this.backend
    const layerCount = this.layers.length
    // inputs[l] is the input of layer l; preActivations[l] its output before ReLU
    const inputs: Tensor[] = [x]
    const preActivations: Tensor[] = []
    for (let l = 0; l < layerCount; l++) {
      const product = backend.matmul(inputs[l], this.layers[l].weight)
      preActivations.push(backend.biasAdd(product, this.layers[l].bias))
      product.dispose()
      if (l < layerCount - 1) inputs.push(backend.relu(preActivations[l]))
    }
    const logits = preActivations[layerCount - 1]
    const { loss, gradLogits } = backend.softmaxCrossEntropy(logits, labels)
    const gradients: MlpLayer[] = new Array(layerCount)
    let gradOutput = gradLogits // dLoss/dz_l
    for (let l = layerCount - 1; l >= 0; l--) {
      gradients[l] = {
        weight: backend.matmul(inputs[l], gradOutput, { transposeA: true }),
        bias: backend.sumRows(gradOutput),
      }
      if (l > 0) {
        const gradInput = backend.matmul(gradOutput, this.layers[l].weight, { transposeB: true })
        const gradPreActivation = backend.reluBackward(gradInput, preActivations[l - 1])
        gradInput.dispose()
        gradOutput.dispose()
        gradOutput = gradPreActivation
      } else {
        gradOutput.dispose()
      }
    }
    for (let l = 1; l < inputs.length; l++) inputs[l].dispose()
    for (let l = 0; l < layerCount - 1; l++) preActivations[l].dispose()
    return { loss, logits, layers: gradients }
  }

  /** Copies the parameters to the host in checkpoint layout ([out,in] weights). */
  async toHost(): Promise<HostLayer[]> {
    const sizes = layerSizes(this.architecture)
    return Promise.all(
      this.layers.map(async (layer, l) => ({
        weight: transpose(await this.backend.read(layer.weight), sizes[l], sizes[l + 1]),
        bias: await this.backend.read(layer.bias),
      })),
    )
  }

  dispose(): void {
    for (const tensor of this.parameters()) tensor.dispose()
  }
}
