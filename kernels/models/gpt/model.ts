// The GPT model on the Backend contract: GPT-2's architecture over bytes (see config.ts), forward
// and backward of a batch of byte sequences.
//
// Shapes: B sequences of T <= C bytes, N = B*T rows, D = width, H = heads, V = 256.
//   x0 = wte[ids] + wpe[t]                                   [N, D]
//   per block: a = LN1(x); qkv = a Wattn + battn [N, 3D]; o = attention(qkv) [N, D]
//              x' = x + o Wproj + bproj; h = LN2(x'); f = h Wfc + bfc [N, 4D]
//              x'' = x' + gelu(f) Wmlp + bmlp
//   y = LNf(x_L); logits = y wte^T [N, V]; loss = mean cross-entropy over the N rows
// The head is tied to the token embedding, so wte's gradient is the sum of the embedding's scatter
// of dx0 and the head's dlogits^T y. Every intermediate tensor is disposed before a call returns
// (the webgpu backend pools buffers; a leak grows device memory every step).
import type { Backend, Tensor } from '../../backend.js'
import {
  checkGptConfig,
  type GptConfig,
  type GptParameterEntry,
  gptParameterCount,
  gptParameterLayout,
  initializeGpt,
} from './config.js'

/** Inputs or targets that are not a batch of byte sequences the model can take. */
export class GptInputError extends Error {
  static override name = 'GptInputError'
  constructor(message: string) {
    super(message)
    this.name = 'GptInputError'
  }
}

/** One block's parameter tensors (Hugging Face GPT-2 names; Conv1D weights [in, out]). */
export interface GptBlock {
  ln1Weight: Tensor
  ln1Bias: Tensor
  /** [D, 3D]: output columns q | k | v, heads contiguous within each */
  attnWeight: Tensor
  attnBias: Tensor
  /** [D, D] */
  attnProjWeight: Tensor
  attnProjBias: Tensor
  ln2Weight: Tensor
  ln2Bias: Tensor
  /** [D, 4D] */
  fcWeight: Tensor
  fcBias: Tensor
  /** [4D, D] */
  mlpProjWeight: Tensor
  mlpProjBias: Tensor
}

/** The order of a block's tensors in the flat layout (see config.ts's blockTensors). */
const BLOCK_FIELDS = [
  'ln1Weight',
  'ln1Bias',
  'attnWeight',
  'attnBias',
  'attnProjWeight',
  'attnProjBias',
  'ln2Weight',
  'ln2Bias',
  'fcWeight',
  'fcBias',
  'mlpProjWeight',
  'mlpProjBias',
] as const satisfies ReadonlyArray<keyof GptBlock>

/** What one block's forward keeps for its backward. */
interface BlockActivations {
  input: Tensor
  ln1: { y: Tensor; mean: Tensor; rstd: Tensor }
  qkv: Tensor
  attention: { output: Tensor; logSumExp: Tensor }
  residual: Tensor
  ln2: { y: Tensor; mean: Tensor; rstd: Tensor }
  fc: Tensor
  gelu: Tensor
}

/** Checks a batch of byte ids (float32) and returns T. */
export function checkByteBatch(config: GptConfig, ids: Float32Array, batch: number, what: string): number {
  if (!Number.isInteger(batch) || batch < 1) throw new GptInputError(`batch must be a positive integer`)
  if (ids.length === 0 || ids.length % batch !== 0)
    throw new GptInputError(`${what} has ${ids.length} values, not a positive multiple of batch ${batch}`)
  const t = ids.length / batch
  if (t > config.context)
    throw new GptInputError(`${what}: sequences of ${t} bytes exceed the context of ${config.context}`)
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize)
      throw new GptInputError(`${what}[${i}] = ${id} is not a byte value`)
  }
  return t
}

function disposeAll(tensors: Iterable<Tensor>): void {
  for (const tensor of tensors) tensor.dispose()
}

/** y = x W + b, disposing the product */
function linear(backend: Backend, x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  const product = backend.matmul(x, weight)
  const y = backend.biasAdd(product, bias)
  product.dispose()
  return y
}

export class Gpt {
  readonly backend: Backend
  readonly config: GptConfig
  readonly layout: readonly GptParameterEntry[]
  /** [V, D]: token embedding and LM head */
  readonly wte: Tensor
  /** [C, D] */
  readonly wpe: Tensor
  readonly blocks: readonly GptBlock[]
  readonly lnfWeight: Tensor
  readonly lnfBias: Tensor
  readonly #tensors: Tensor[]
  /** position ids 0..T-1 repeated B times, kept for the last (B, T) asked for */
  #positions: { batch: number; sequence: number; tensor: Tensor } | undefined

  private constructor(backend: Backend, config: GptConfig, tensors: Tensor[]) {
    this.backend = backend
    this.config = config
    this.layout = gptParameterLayout(config)
    this.#tensors = tensors
    this.wte = tensors[0]
    this.wpe = tensors[1]
    const blocks: GptBlock[] = []
    for (let l = 0; l < config.layers; l++) {
      const base = 2 + l * BLOCK_FIELDS.length
      const block = {} as GptBlock
      BLOCK_FIELDS.forEach((field, i) => {
        block[field] = tensors[base + i]
      })
      blocks.push(block)
    }
    this.blocks = blocks
    this.lnfWeight = tensors[tensors.length - 2]
    this.lnfBias = tensors[tensors.length - 1]
  }

  /**
   * A model on `backend`: one device tensor per layout entry, holding `initial` (a flat parameter
   * vector in layout order) or, for a number, initializeGpt(config, initial).
   */
  static create(backend: Backend, config: GptConfig, initial: Float32Array | number = 0): Gpt {
    checkGptConfig(config)
    const flat = typeof initial === 'number' ? initializeGpt(config, initial) : initial
    const count = gptParameterCount(config)
    if (flat.length !== count) throw new RangeError(`expected ${count} parameters, got ${flat.length}`)
    const tensors = gptParameterLayout(config).map((entry) =>
      backend.upload(flat.slice(entry.offset, entry.offset + entry.size), entry.shape),
    )
    return new Gpt(backend, config, tensors)
  }

  get parameterCount(): number {
    return gptParameterCount(this.config)
  }

  /** the parameter tensors in layout order */
  parameters(): Tensor[] {
    return [...this.#tensors]
  }

  /** Overwrites every parameter from a flat vector in layout order. */
  setParameters(flat: Float32Array): void {
    if (flat.length !== this.parameterCount)
      throw new RangeError(`expected ${this.parameterCount} parameters, got ${flat.length}`)
    this.layout.forEach((entry, i) => {
      this.backend.write(this.#tensors[i], flat.subarray(entry.offset, entry.offset + entry.size))
    })
  }

  /** The parameters as one flat vector in layout order. */
  getParameters(): Promise<Float32Array> {
    return this.readFlat(this.#tensors)
  }

  /** Reads tensors laid out like `parameters()` (e.g. gradients) into one flat vector. */
  async readFlat(tensors: readonly Tensor[]): Promise<Float32Array> {
    if (tensors.length !== this.layout.length)
      throw new RangeError(`expected ${this.layout.length} tensors, got ${tensors.length}`)
    const parts = await Promise.all(tensors.map((tensor) => this.backend.read(tensor)))
    const flat = new Float32Array(this.parameterCount)
    parts.forEach((part, i) => {
      const entry = this.layout[i]
      if (part.length !== entry.size)
        throw new RangeError(`${entry.name} has ${part.length} values, expected ${entry.size}`)
      flat.set(part, entry.offset)
    })
    return flat
  }

  #positionIds(batch: number, sequence: number): Tensor {
    const kept = this.#positions
    if (kept !== undefined && kept.batch === batch && kept.sequence === sequence) return kept.tensor
    kept?.tensor.dispose()
    const ids = new Float32Array(batch * sequence)
    for (let i = 0; i < ids.length; i++) ids[i] = i % sequence
    const tensor = this.backend.upload(ids, [ids.length])
    this.#positions = { batch, sequence, tensor }
    return tensor
  }

  /** x0 = wte[ids] + wpe[positions] [N, D] */
  #embed(ids: Tensor, positions: Tensor): Tensor {
    const tokens = this.backend.embedding(this.wte, ids)
    const places = this.backend.embedding(this.wpe, positions)
    const x = this.backend.add(tokens, places)
    tokens.dispose()
    places.dispose()
    return x
  }

  /** One block's forward up to the MLP's GELU; the activations are what its backward needs. */
  #block(block: GptBlock, x: Tensor, batch: number, sequence: number): BlockActivations {
    const backend = this.backend
    const epsilon = this.config.layerNormEpsilon
    const ln1 = backend.layerNorm(x, block.ln1Weight, block.ln1Bias, epsilon)
    const qkv = linear(backend, ln1.y, block.attnWeight, block.attnBias)
    const attention = backend.attention(qkv, { batch, sequence, heads: this.config.heads })
    const projected = linear(backend, attention.output, block.attnProjWeight, block.attnProjBias)
    const residual = backend.add(x, projected)
    projected.dispose()
    const ln2 = backend.layerNorm(residual, block.ln2Weight, block.ln2Bias, epsilon)
    const fc = linear(backend, ln2.y, block.fcWeight, block.fcBias)
    const gelu = backend.gelu(fc)
    return { input: x, ln1, qkv, attention, residual, ln2, fc, gelu }
  }

  /** the block's output x'' = x' + gelu(f) Wmlp + bmlp */
  #blockOutput(block: GptBlock, activations: BlockActivations): Tensor {
    const mlp = linear(this.backend, activations.gelu, block.mlpProjWeight, block.mlpProjBias)
    const out = this.backend.add(activations.residual, mlp)
    mlp.dispose()
    return out
  }

  #disposeActivations(activations: BlockActivations): void {
    const { ln1, ln2, attention } = activations
    disposeAll([ln1.y, ln1.mean, ln1.rstd, activations.qkv, attention.output, attention.logSumExp])
    disposeAll([activations.residual, ln2.y, ln2.mean, ln2.rstd, activations.fc, activations.gelu])
  }

  /** The last block's output x_L [N, D] of byte ids [N] (no activations kept). */
  hidden(inputs: Float32Array, batch: number): Tensor {
    const sequence = checkByteBatch(this.config, inputs, batch, 'inputs')
    const ids = this.backend.upload(inputs, [inputs.length])
    let x = this.#embed(ids, this.#positionIds(batch, sequence))
    ids.dispose()
    for (const block of this.blocks) {
      const activations = this.#block(block, x, batch, sequence)
      const next = this.#blockOutput(block, activations)
      this.#disposeActivations(activations)
      x.dispose()
      x = next
    }
    return x
  }

  /** logits = LNf(x) wte^T for hidden rows x [M, D]: [M, V] */
  head(x: Tensor): Tensor {
    const ln = this.backend.layerNorm(x, this.lnfWeight, this.lnfBias, this.config.layerNormEpsilon)
    const logits = this.backend.matmul(ln.y, this.wte, { transposeB: true })
    disposeAll([ln.y, ln.mean, ln.rstd])
    return logits
  }

  /** logits [B*T, V] of byte ids [B*T] (positions 0..T-1 in each sequence) */
  logits(inputs: Float32Array, batch: number): Tensor {
    const x = this.hidden(inputs, batch)
    const logits = this.head(x)
    x.dispose()
    return logits
  }

  /** cross-entropy in nats of each target byte: [B*T] (forward only, e.g. evaluation) */
  tokenLosses(inputs: Float32Array, targets: Float32Array, batch: number): Tensor {
    checkTargets(this.config, inputs, targets, batch)
    const logits = this.logits(inputs, batch)
    const labels = this.backend.upload(targets, [targets.length])
    const { loss, gradLogits } = this.backend.softmaxCrossEntropy(logits, labels)
    disposeAll([logits, labels, gradLogits])
    return loss
  }

  /**
   * Forward and backward of one batch: the mean cross-entropy in nats over the B*T target bytes
   * ([1]) and its gradient with respect to every parameter tensor, in layout order. The caller
   * disposes all of them.
   */
  lossAndGradients(
    inputs: Float32Array,
    targets: Float32Array,
    batch: number,
  ): { loss: Tensor; gradients: Tensor[] } {
    const backend = this.backend
    const sequence = checkTargets(this.config, inputs, targets, batch)
    const dims = { batch, sequence, heads: this.config.heads }
    const ids = backend.upload(inputs, [inputs.length])
    const positions = this.#positionIds(batch, sequence)
    const labels = backend.upload(targets, [targets.length])

    // forward, keeping every block's activations
    const x0 = this.#embed(ids, positions)
    const saved: BlockActivations[] = []
    let x = x0
    for (const block of this.blocks) {
      const activations = this.#block(block, x, batch, sequence)
      saved.push(activations)
      x = this.#blockOutput(block, activations)
    }
    const lnf = backend.layerNorm(x, this.lnfWeight, this.lnfBias, this.config.layerNormEpsilon)
    const logits = backend.matmul(lnf.y, this.wte, { transposeB: true })
    const crossEntropy = backend.softmaxCrossEntropy(logits, labels)
    logits.dispose()
    labels.dispose()
    const loss = backend.mean(crossEntropy.loss)
    crossEntropy.loss.dispose()

    // backward
    const gradLogits = crossEntropy.gradLogits
    const gradWteHead = backend.matmul(gradLogits, lnf.y, { transposeA: true })
    const gradY = backend.matmul(gradLogits, this.wte)
    gradLogits.dispose()
    const final = backend.layerNormBackward(gradY, x, this.lnfWeight, lnf.mean, lnf.rstd)
    disposeAll([gradY, lnf.y, lnf.mean, lnf.rstd, x])
    let gradX = final.gradInput
    const blockGradients: Tensor[][] = new Array(this.blocks.length)
    for (let l = this.blocks.length - 1; l >= 0; l--) {
      const block = this.blocks[l]
      const kept = saved[l]
      // x'' = x' + gelu(f) Wmlp + bmlp
      const gradMlpProjWeight = backend.matmul(kept.gelu, gradX, { transposeA: true })
      const gradMlpProjBias = backend.sumRows(gradX)
      const gradGelu = backend.matmul(gradX, block.mlpProjWeight, { transposeB: true })
      const gradFc = backend.geluBackward(gradGelu, kept.fc)
      gradGelu.dispose()
      const gradFcWeight = backend.matmul(kept.ln2.y, gradFc, { transposeA: true })
      const gradFcBias = backend.sumRows(gradFc)
      const gradH = backend.matmul(gradFc, block.fcWeight, { transposeB: true })
      gradFc.dispose()
      const ln2 = backend.layerNormBackward(
        gradH,
        kept.residual,
        block.ln2Weight,
        kept.ln2.mean,
        kept.ln2.rstd,
      )
      gradH.dispose()
      const gradResidual = backend.add(gradX, ln2.gradInput)
      disposeAll([gradX, ln2.gradInput])
      // x' = x + o Wproj + bproj
      const gradAttnProjWeight = backend.matmul(kept.attention.output, gradResidual, { transposeA: true })
      const gradAttnProjBias = backend.sumRows(gradResidual)
      const gradO = backend.matmul(gradResidual, block.attnProjWeight, { transposeB: true })
      const gradQkv = backend.attentionBackward(
        gradO,
        kept.qkv,
        kept.attention.output,
        kept.attention.logSumExp,
        dims,
      )
      gradO.dispose()
      const gradAttnWeight = backend.matmul(kept.ln1.y, gradQkv, { transposeA: true })
      const gradAttnBias = backend.sumRows(gradQkv)
      const gradA = backend.matmul(gradQkv, block.attnWeight, { transposeB: true })
      gradQkv.dispose()
      const ln1 = backend.layerNormBackward(gradA, kept.input, block.ln1Weight, kept.ln1.mean, kept.ln1.rstd)
      gradA.dispose()
      gradX = backend.add(gradResidual, ln1.gradInput)
      disposeAll([gradResidual, ln1.gradInput])
      blockGradients[l] = [
        ln1.gradGamma,
        ln1.gradBeta,
        gradAttnWeight,
        gradAttnBias,
        gradAttnProjWeight,
        gradAttnProjBias,
        ln2.gradGamma,
        ln2.gradBeta,
        gradFcWeight,
        gradFcBias,
        gradMlpProjWeight,
        gradMlpProjBias,
      ]
      this.#disposeActivations(kept)
      if (l > 0) kept.input.dispose() // the embedding sum x0 is disposed below
    }
    const gradWteEmbedding = backend.embeddingBackward(gradX, ids, this.config.vocabSize)
    const gradWte = backend.add(gradWteEmbedding, gradWteHead)
    const gradWpe = backend.embeddingBackward(gradX, positions, this.config.context)
    disposeAll([gradWteEmbedding, gradWteHead, gradX, x0, ids])
    const gradients = [gradWte, gradWpe, ...blockGradients.flat(), final.gradGamma, final.gradBeta]
    return { loss, gradients }
  }

  dispose(): void {
    disposeAll(this.#tensors)
    this.#positions?.tensor.dispose()
    this.#positions = undefined
  }
}

/** Checks inputs and targets of one batch; returns T. */
function checkTargets(config: GptConfig, inputs: Float32Array, targets: Float32Array, batch: number): number {
  const sequence = checkByteBatch(config, inputs, batch, 'inputs')
  if (targets.length !== inputs.length)
    throw new GptInputError(`targets has ${targets.length} values, inputs ${inputs.length}`)
  checkByteBatch(config, targets, batch, 'targets')
  return sequence
}

/**
 * One batch's loss and flat gradient on the host (what a training-group member sends every step):
 * the forward and backward are enqueued, then the loss and every gradient tensor are read together.
 */
export async function gptLossAndGradient(
  gpt: Gpt,
  inputs: Float32Array,
  targets: Float32Array,
  batch: number,
): Promise<{ loss: number; gradient: Float32Array }> {
  const { loss, gradients } = gpt.lossAndGradients(inputs, targets, batch)
  try {
    const [lossValue, gradient] = await Promise.all([gpt.backend.read(loss), gpt.readFlat(gradients)])
    return { loss: lossValue[0], gradient }
  } finally {
    loss.dispose()
    disposeAll(gradients)
  }
}
