// shardnet's GPT written a second time with TensorFlow.js ops, for the correctness anchor and the
// speed comparison: the same architecture (GPT-2 over bytes: token + position embeddings, pre-norm
// blocks of causal attention and a tanh-GELU MLP, a final LayerNorm, logits tied to the token
// embedding, mean cross-entropy) built from the same flat parameter vector in the order and
// layouts of gptParameterLayout, with tfjs's autodiff for the gradients. tfjs has Adam but neither
// decoupled weight decay nor gradient clipping, so TfjsGptTrainer writes shardnet's AdamW update out
// in tf ops: global-norm clipping as a gradient scale min(1, clip / norm), bias-corrected moments,
// epsilon added to sqrt(v hat), decay lr * weightDecay * p on the weights that qualify.
// Which tfjs backend runs it is the caller's choice (tf.setBackend before create).
//
// tfjs-core's Node build (dist/tf-core.node.js) registers no gradients: the @tensorflow/tfjs union
// package does that from ESM files that Node cannot load (extensionless imports). So this file
// registers the gradients of the kernels the model's tape records, written here from the ops'
// definitions (registerGptGradients, run on import).
import * as tf from '@tensorflow/tfjs-core'
import { type GptConfig, gptParameterLayout } from '../kernels/models/gpt/config.js'

/** sqrt(2 / pi), the tanh GELU's constant */
const GELU_SCALE = Math.sqrt(2 / Math.PI)
const GELU_CUBIC = 0.044715
/** added to masked (future) attention scores: exp of it underflows to exactly 0 in float32 */
const MASKED_SCORE = -1e9

/** Names of tensors in the flat layout, with their shape; what the tfjs side keeps per parameter. */
interface TfjsParameter {
  name: string
  shape: readonly number[]
  variable: tf.Variable
}

let instances = 0

/** The tanh approximation of GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
function gelu(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), GELU_CUBIC)), GELU_SCALE)
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1))
}

/** LayerNorm over the last axis with the biased variance, as shardnet's layerNorm. */
function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true)
  const normalized = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon)))
  return tf.add(tf.mul(normalized, gamma), beta)
}

// --- gradients of the recorded kernels -------------------------------------------------------------

/** `dy` summed over the axes that broadcasting added to or stretched in `shape`, reshaped to it. */
function unbroadcast(dy: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const extra = dy.rank - shape.length
  const axes: number[] = []
  for (let axis = 0; axis < dy.rank; axis++)
    if (axis < extra || (shape[axis - extra] === 1 && dy.shape[axis] !== 1)) axes.push(axis)
  return tf.reshape(axes.length === 0 ? dy : tf.sum(dy, axes), [...shape])
}

/** The reduced axes of a Mean or Sum kernel's `axis` attribute, non-negative. */
function reducedAxes(axis: unknown, rank: number): number[] {
  const axes = Array.isArray(axis) ? (axis as number[]) : axis == null ? [] : [axis as number]
  const all = axes.length === 0 ? [...Array(rank).keys()] : axes
  return all.map((a) => (a < 0 ? a + rank : a))
}

/** dy of a reduction over `axes`, broadcast back to the input's shape. */
function expandReduced(dy: tf.Tensor, shape: readonly number[], axes: number[]): tf.Tensor {
  const kept = shape.map((size, axis) => (axes.includes(axis) ? 1 : size))
  return tf.mul(tf.reshape(dy, kept), tf.ones([...shape]))
}

function reductionSize(shape: readonly number[], axes: number[]): number {
  return axes.reduce((product, axis) => product * shape[axis], 1)
}

type Saved = tf.Tensor[]
type Attrs = Record<string, unknown>

const GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: 'Add',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]: Saved) => ({
      a: () => unbroadcast(dy as tf.Tensor, a.shape),
      b: () => unbroadcast(dy as tf.Tensor, b.shape),
    }),
  },
  {
    kernelName: 'Sub',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]: Saved) => ({
      a: () => unbroadcast(dy as tf.Tensor, a.shape),
      b: () => tf.neg(unbroadcast(dy as tf.Tensor, b.shape)),
    }),
  },
  {
    kernelName: 'Multiply',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]: Saved) => ({
      a: () => unbroadcast(tf.mul(dy as tf.Tensor, tf.cast(b, 'float32')), a.shape),
      b: () => unbroadcast(tf.mul(dy as tf.Tensor, tf.cast(a, 'float32')), b.shape),
    }),
  },
  { kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(dy as tf.Tensor) }) },
  { kernelName: 'Cast', gradFunc: (dy) => ({ x: () => tf.clone(dy as tf.Tensor) }) },
  {
    kernelName: 'Square',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]: Saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(x, 2)) }),
  },
  {
    kernelName: 'Rsqrt',
    inputsToSave: ['x'],
    // d/dx x^-1/2 = -1/2 x^-3/2
    gradFunc: (dy, [x]: Saved) => ({
      x: () => tf.mul(dy as tf.Tensor, tf.div(tf.mul(tf.rsqrt(x), -0.5), x)),
    }),
  },
  {
    kernelName: 'Tanh',
    outputsToSave: [true],
    gradFunc: (dy, [y]: Saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.sub(1, tf.square(y))) }),
  },
  {
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy, [y]: Saved, attrs: Attrs) => {
      const dim = attrs.dim as number
      return {
        logits: () => tf.mul(y, tf.sub(dy as tf.Tensor, tf.sum(tf.mul(dy as tf.Tensor, y), dim, true))),
      }
    },
  },
  {
    kernelName: 'Reshape',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]: Saved) => ({ x: () => tf.reshape(dy as tf.Tensor, x.shape) }),
  },
  {
    kernelName: 'Transpose',
    gradFunc: (dy, _saved, attrs: Attrs) => {
      const perm = attrs.perm as number[]
      const inverse = perm.map((_, i) => perm.indexOf(i))
      return { x: () => tf.transpose(dy as tf.Tensor, inverse) }
    },
  },
  {
    kernelName: 'Slice',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]: Saved, attrs: Attrs) => {
      const begin = attrs.begin as number[]
      const size = (dy as tf.Tensor).shape
      const padding = x.shape.map((extent, axis) => [begin[axis], extent - begin[axis] - size[axis]])
      return { x: () => tf.pad(dy as tf.Tensor, padding as Array<[number, number]>) }
    },
  },
  {
    // rows of a table (axis 0) gathered by 1-D indices: the table's gradient sums dy's rows per
    // index, written as onehot(indices)^T dy (a matmul every backend has, and no atomics)
    kernelName: 'GatherV2',
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, [x, indices]: Saved, attrs: Attrs) => {
      if (attrs.axis !== 0 || indices.rank !== 1 || x.rank !== 2)
        throw new Error('the GatherV2 gradient here covers rows of a matrix by 1-D indices only')
      const onehot = tf.cast(tf.oneHot(tf.cast(indices, 'int32'), x.shape[0]), 'float32')
      return {
        x: () => tf.matMul(onehot, dy as tf.Tensor, true, false),
        indices: () => tf.zerosLike(indices),
      }
    },
  },
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]: Saved, attrs: Attrs) => ({
      x: () => expandReduced(dy as tf.Tensor, x.shape, reducedAxes(attrs.axis, x.rank)),
    }),
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]: Saved, attrs: Attrs) => {
      const axes = reducedAxes(attrs.axis, x.rank)
      return { x: () => tf.div(expandReduced(dy as tf.Tensor, x.shape, axes), reductionSize(x.shape, axes)) }
    },
  },
  {
    // C = op(A) op(B) over equal leading (batch) dimensions
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]: Saved, attrs: Attrs) => {
      const g = dy as tf.Tensor
      const transposeA = attrs.transposeA === true
      const transposeB = attrs.transposeB === true
      if (a.rank !== b.rank) throw new Error('the BatchMatMul gradient here needs operands of one rank')
      return {
        a: () => (transposeA ? tf.matMul(b, g, transposeB, true) : tf.matMul(g, b, false, !transposeB)),
        b: () => (transposeB ? tf.matMul(g, a, true, transposeA) : tf.matMul(a, g, !transposeA, false)),
      }
    },
  },
]

/** Registers the gradients above for every kernel that has none yet. */
export function registerGptGradients(): void {
  for (const config of GRADIENTS)
    if (tf.getGradient(config.kernelName) === undefined) tf.registerGradient(config)
}
registerGptGradients()

export class TfjsGpt {
  readonly config: GptConfig
  readonly parameters: readonly TfjsParameter[]
  private readonly byName: Map<string, tf.Variable>
  /** [T, T]: 0 on and below the diagonal, MASKED_SCORE above, per sequence length */
  private readonly masks = new Map<number, tf.Tensor2D>()

  private constructor(config: GptConfig, parameters: TfjsParameter[]) {
    this.config = config
    this.parameters = parameters
    this.byName = new Map(parameters.map((p) => [p.name, p.variable]))
  }

  /** The model on tfjs's current backend, holding a copy of `flat` (gptParameterLayout order). */
  static create(config: GptConfig, flat: Float32Array): TfjsGpt {
    const layout = gptParameterLayout(config)
    const total = layout.reduce((sum, entry) => sum + entry.size, 0)
    if (flat.length !== total) throw new RangeError(`expected ${total} parameters, got ${flat.length}`)
    const instance = instances++
    const parameters = layout.map((entry) => ({
      name: entry.name,
      shape: entry.shape,
      variable: tf.variable(
        tf.tensor(flat.slice(entry.offset, entry.offset + entry.size), [...entry.shape], 'float32'),
        true,
        `tfjs-gpt-${instance}/${entry.name}`,
      ),
    }))
    return new TfjsGpt(config, parameters)
  }

  private p(name: string): tf.Variable {
    const variable = this.byName.get(name)
    if (variable === undefined) throw new Error(`no parameter ${name}`)
    return variable
  }

  private mask(sequence: number): tf.Tensor2D {
    let mask = this.masks.get(sequence)
    if (mask === undefined) {
      const values = new Float32Array(sequence * sequence)
      for (let i = 0; i < sequence; i++)
        for (let j = i + 1; j < sequence; j++) values[i * sequence + j] = MASKED_SCORE
      mask = tf.keep(tf.tensor2d(values, [sequence, sequence]))
      this.masks.set(sequence, mask)
    }
    return mask
  }

  /** Logits [B*T, V] of token ids [B, T] (int32). */
  logits(ids: tf.Tensor2D): tf.Tensor2D {
    const { width: d, heads, layers, layerNormEpsilon: eps } = this.config
    const [batch, sequence] = ids.shape
    const rows = batch * sequence
    const headWidth = d / heads
    const positions = tf.slice(this.p('wpe.weight'), [0, 0], [sequence, d])
    const tokens = tf.reshape(tf.gather(this.p('wte.weight'), tf.reshape(ids, [rows])), [batch, sequence, d])
    let x: tf.Tensor = tf.reshape(tf.add(tokens, positions), [rows, d])
    const mask = this.mask(sequence)
    const splitHeads = (qkv: tf.Tensor, part: number) =>
      tf.transpose(
        tf.reshape(tf.slice(qkv, [0, part * d], [rows, d]), [batch, sequence, heads, headWidth]),
        [0, 2, 1, 3],
      )
    for (let layer = 0; layer < layers; layer++) {
      const b = `h.${layer}.`
      const h1 = layerNorm(x, this.p(`${b}ln_1.weight`), this.p(`${b}ln_1.bias`), eps)
      const qkv = tf.add(tf.matMul(h1, this.p(`${b}attn.c_attn.weight`)), this.p(`${b}attn.c_attn.bias`))
      const [q, k, v] = [splitHeads(qkv, 0), splitHeads(qkv, 1), splitHeads(qkv, 2)]
      const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(headWidth)), mask)
      const attended = tf.matMul(tf.softmax(scores), v) // [B, H, T, hw]
      const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [rows, d])
      const projected = tf.add(
        tf.matMul(merged, this.p(`${b}attn.c_proj.weight`)),
        this.p(`${b}attn.c_proj.bias`),
      )
      x = tf.add(x, projected)
      const h2 = layerNorm(x, this.p(`${b}ln_2.weight`), this.p(`${b}ln_2.bias`), eps)
      const hidden = gelu(tf.add(tf.matMul(h2, this.p(`${b}mlp.c_fc.weight`)), this.p(`${b}mlp.c_fc.bias`)))
      x = tf.add(x, tf.add(tf.matMul(hidden, this.p(`${b}mlp.c_proj.weight`)), this.p(`${b}mlp.c_proj.bias`)))
    }
    const final = layerNorm(x, this.p('ln_f.weight'), this.p('ln_f.bias'), eps)
    return tf.matMul(final, this.p('wte.weight'), false, true) as tf.Tensor2D
  }

  /** Mean cross-entropy over all B*T positions, as a scalar tensor (within the caller's tidy). */
  lossTensor(inputs: Float32Array, targets: Float32Array, batch: number): tf.Scalar {
    const sequence = inputs.length / batch
    if (!Number.isInteger(sequence) || targets.length !== inputs.length)
      throw new RangeError(`inputs ${inputs.length} and targets ${targets.length} for batch ${batch}`)
    const ids = tf.tensor2d(Int32Array.from(inputs), [batch, sequence], 'int32')
    const labels = tf.oneHot(tf.tensor1d(Int32Array.from(targets), 'int32'), this.config.vocabSize)
    const logProbabilities = tf.logSoftmax(this.logits(ids))
    return tf.neg(tf.mean(tf.sum(tf.mul(labels, logProbabilities), -1)))
  }

  /** The loss, read back. */
  async loss(inputs: Float32Array, targets: Float32Array, batch: number): Promise<number> {
    const loss = tf.tidy(() => this.lossTensor(inputs, targets, batch))
    const value = (await loss.data())[0]
    loss.dispose()
    return value
  }

  /** Loss and gradients as tensors, gradients in layout order (the caller disposes them). */
  lossAndGradientTensors(
    inputs: Float32Array,
    targets: Float32Array,
    batch: number,
  ): { loss: tf.Scalar; gradients: tf.Tensor[] } {
    const variables = this.parameters.map((p) => p.variable)
    const { value, grads } = tf.variableGrads(() => this.lossTensor(inputs, targets, batch), variables)
    return { loss: value, gradients: variables.map((variable) => grads[variable.name]) }
  }

  /** Loss and gradients read back, gradients in layout order. */
  async lossAndGradients(
    inputs: Float32Array,
    targets: Float32Array,
    batch: number,
  ): Promise<{ loss: number; gradients: Float32Array[] }> {
    const { loss, gradients } = this.lossAndGradientTensors(inputs, targets, batch)
    const values = await Promise.all(gradients.map(async (g) => (await g.data()) as Float32Array))
    const lossValue = (await loss.data())[0]
    for (const tensor of [loss, ...gradients]) tensor.dispose()
    return { loss: lossValue, gradients: values }
  }

  /** The parameters read back as one flat vector in layout order. */
  async flatParameters(): Promise<Float32Array> {
    const parts = await Promise.all(
      this.parameters.map(async (p) => (await p.variable.data()) as Float32Array),
    )
    const flat = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0))
    let offset = 0
    for (const part of parts) {
      flat.set(part, offset)
      offset += part.length
    }
    return flat
  }

  dispose(): void {
    for (const p of this.parameters) p.variable.dispose()
    for (const mask of this.masks.values()) mask.dispose()
    this.masks.clear()
  }
}

export interface TfjsAdamWSettings {
  beta1: number
  beta2: number
  epsilon: number
  weightDecay: number
  /** global gradient-norm clip; 0 or less: no clipping */
  gradClip: number
  /** which parameters take weight decay; @default two-dimensional tensors */
  decays?: (name: string, shape: readonly number[]) => boolean
  /**
   * the factor gradients are multiplied by before the moments, given their global L2 norm;
   * @default min(1, gradClip / norm) (1 when gradClip <= 0)
   */
  clipScale?: (norm: tf.Scalar, gradClip: number) => tf.Scalar | number
}

/** clip scale min(1, clip / norm): a zero norm gives clip / 0 = Infinity and so 1 */
function defaultClipScale(norm: tf.Scalar, gradClip: number): tf.Scalar {
  return tf.minimum(1, tf.div(gradClip, norm))
}

/** AdamW over a TfjsGpt's variables, written out in tf ops (see the file's header). */
export class TfjsGptTrainer {
  readonly model: TfjsGpt
  readonly settings: TfjsAdamWSettings
  private readonly firstMoments: tf.Variable[]
  private readonly secondMoments: tf.Variable[]
  private readonly decays: boolean[]
  /** updates applied so far; the next uses stepCount + 1 for bias correction */
  stepCount = 0
  /** the last step's gradient norm before clipping (a scalar tensor, kept until the next step) */
  lastGradientNorm: tf.Scalar | undefined

  constructor(model: TfjsGpt, settings: TfjsAdamWSettings) {
    this.model = model
    this.settings = settings
    this.firstMoments = model.parameters.map((p) => tf.variable(tf.zeros([...p.shape]), false))
    this.secondMoments = model.parameters.map((p) => tf.variable(tf.zeros([...p.shape]), false))
    const decays = settings.decays ?? ((_name: string, shape: readonly number[]) => shape.length === 2)
    this.decays = model.parameters.map((p) => decays(p.name, p.shape))
  }

  /**
   * One update at `learningRate`: gradients of the batch, clipping, AdamW. Returns the batch's loss
   * before the update as a scalar tensor (the caller reads and disposes it).
   */
  step(inputs: Float32Array, targets: Float32Array, batch: number, learningRate: number): tf.Scalar {
    const { beta1, beta2, epsilon, weightDecay, gradClip } = this.settings
    this.stepCount++
    const biasCorrection1 = 1 / (1 - beta1 ** this.stepCount)
    const biasCorrection2 = 1 / (1 - beta2 ** this.stepCount)
    const { loss, gradients } = this.model.lossAndGradientTensors(inputs, targets, batch)
    this.lastGradientNorm?.dispose()
    // summed pairwise, not with addN: tfjs-webgpu binds every addN input as a storage buffer, and
    // the GPT's 50-odd tensors exceed the per-stage limit (8 on lavapipe)
    this.lastGradientNorm = tf.tidy(() => {
      const squares = gradients.map((g) => tf.sum(tf.square(g)) as tf.Tensor)
      return tf.sqrt(squares.reduce((total, next) => tf.add(total, next))) as tf.Scalar
    })
    tf.tidy(() => {
      const norm = this.lastGradientNorm as tf.Scalar
      const scale =
        gradClip > 0 ? (this.settings.clipScale ?? defaultClipScale)(norm, gradClip) : tf.scalar(1)
      this.model.parameters.forEach((parameter, i) => {
        const g = tf.mul(gradients[i], scale)
        const m = tf.add(tf.mul(this.firstMoments[i], beta1), tf.mul(g, 1 - beta1))
        const v = tf.add(tf.mul(this.secondMoments[i], beta2), tf.mul(tf.square(g), 1 - beta2))
        this.firstMoments[i].assign(m)
        this.secondMoments[i].assign(v)
        const p = parameter.variable
        let update = tf.div(tf.mul(m, biasCorrection1), tf.add(tf.sqrt(tf.mul(v, biasCorrection2)), epsilon))
        if (this.decays[i] && weightDecay !== 0) update = tf.add(update, tf.mul(p, weightDecay))
        p.assign(tf.sub(p, tf.mul(update, learningRate)))
      })
    })
    for (const g of gradients) g.dispose()
    return loss
  }

  dispose(): void {
    for (const tensor of [...this.firstMoments, ...this.secondMoments]) tensor.dispose()
    this.lastGradientNorm?.dispose()
  }
}
