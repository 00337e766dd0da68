// A GPT cut in pieces for serving across peers: a span of its transformer blocks [start, end) that a
// server holds, and the ends (embeddings, final LayerNorm, tied head) that the client holds.
//
// Hidden states cross between the pieces as host float32 rows [n, D]. The incremental forward with a
// KV cache is the one code path of cached generation: GptGenerator (generate.ts) runs the ends and
// one span of every block through the same functions, so a chain of spans 0..a, a..b, b..L gives
// bitwise the text of local generation on the same engine (the rows are copied, never recomputed).
//
// The cached forward of a block for rows at positions offset..offset+n-1:
//   a = LN1(x); q, k, v = a Wq + bq, a Wk + bk, a Wv + bv   (c_attn's columns split in three)
//   the cache's rows offset.. become k and v (they were zero: a scatter added in place)
//   o = attentionCached(q, keys, values) over positions 0..offset+n-1
//   x' = x + o Wproj + bproj; x'' = x' + gelu(LN2(x') Wfc + bfc) Wmlp + bmlp
// Each session owns its cache: [maxLength, D] keys and values per block.
import type { Backend, Tensor } from '../../backend.js'
import {
  checkGptConfig,
  type GptConfig,
  type GptParameterEntry,
  gptParameterCount,
  gptParameterLayout,
} from './config.js'

/** A span request or a step that does not fit the model or the session; the message says why. */
export class GptSpanError extends Error {
  static override name = 'GptSpanError'
  constructor(message: string) {
    super(message)
    this.name = 'GptSpanError'
  }
}

/** One block's tensors for the cached forward: c_attn split into q, k and v ([D, D] and [D] each). */
export interface CachedBlockWeights {
  ln1Weight: Tensor
  ln1Bias: Tensor
  query: { weight: Tensor; bias: Tensor }
  key: { weight: Tensor; bias: Tensor }
  value: { weight: Tensor; bias: Tensor }
  attnProjWeight: Tensor
  attnProjBias: Tensor
  ln2Weight: Tensor
  ln2Bias: Tensor
  fcWeight: Tensor
  fcBias: Tensor
  mlpProjWeight: Tensor
  mlpProjBias: Tensor
}

/** One block's keys and values [rows, D] for the positions held so far (undefined before the first). */
export interface BlockCache {
  keys: Tensor | undefined
  values: Tensor | undefined
}

/** The part (0 = q, 1 = k, 2 = v) of c_attn's weight [D, 3D] and bias [3D] as [D, D] and [D]. */
export function splitAttentionPart(
  weight: Float32Array,
  bias: Float32Array,
  width: number,
  part: number,
): { weight: Float32Array; bias: Float32Array } {
  const d = width
  const columns = new Float32Array(d * d)
  for (let row = 0; row < d; row++)
    columns.set(weight.subarray(row * 3 * d + part * d, row * 3 * d + (part + 1) * d), row * d)
  return { weight: columns, bias: bias.slice(part * d, (part + 1) * d) }
}

/** the fields of a block's tensors in layout order (config.ts blockTensors) */
const BLOCK_TENSOR_COUNT = 12

/** Uploads block `l`'s tensors from a flat parameter vector in layout order. */
export function uploadCachedBlock(
  backend: Backend,
  config: GptConfig,
  parameters: Float32Array,
  l: number,
): CachedBlockWeights {
  const entries = gptParameterLayout(config).slice(
    2 + l * BLOCK_TENSOR_COUNT,
    2 + (l + 1) * BLOCK_TENSOR_COUNT,
  )
  const byName = new Map(entries.map((entry) => [entry.name, entry]))
  return uploadCachedBlockFromTensors(backend, config, l, (name) => {
    const entry = byName.get(name) as GptParameterEntry
    return parameters.subarray(entry.offset, entry.offset + entry.size)
  })
}

/**
 * Uploads block `l`'s tensors, each given by `tensor(name)` (its layout name, e.g. h.3.ln_1.weight) with
 * the layout's size; throws GptSpanError for one of another size.
 */
export function uploadCachedBlockFromTensors(
  backend: Backend,
  config: GptConfig,
  l: number,
  tensor: (name: string) => Float32Array,
): CachedBlockWeights {
  const entries = gptParameterLayout(config).slice(
    2 + l * BLOCK_TENSOR_COUNT,
    2 + (l + 1) * BLOCK_TENSOR_COUNT,
  )
  const host = entries.map((entry) => sizedTensor(tensor, entry))
  const upload = (i: number) => backend.upload(host[i].slice(), entries[i].shape)
  const part = (p: number) => {
    const split = splitAttentionPart(host[2], host[3], config.width, p)
    return {
      weight: backend.upload(split.weight, [config.width, config.width]),
      bias: backend.upload(split.bias, [config.width]),
    }
  }
  return {
    ln1Weight: upload(0),
    ln1Bias: upload(1),
    query: part(0),
    key: part(1),
    value: part(2),
    attnProjWeight: upload(4),
    attnProjBias: upload(5),
    ln2Weight: upload(6),
    ln2Bias: upload(7),
    fcWeight: upload(8),
    fcBias: upload(9),
    mlpProjWeight: upload(10),
    mlpProjBias: upload(11),
  }
}

function blockTensors(block: CachedBlockWeights): Tensor[] {
  const { query, key, value, ...rest } = block
  return [...Object.values(rest), query.weight, query.bias, key.weight, key.bias, value.weight, value.bias]
}

/** y = x W + b, disposing the product */
function linear(backend: Backend, x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  const product = backend.matmul(x, weight)
  const y = backend.biasAdd(product, bias)
  product.dispose()
  return y
}

/**
 * The cached forward of `blocks` on hidden rows x [n, D] at positions offset.. (`positions` holds
 * them as float ids [n]); each block's cache (capacity `cacheRows` rows) gains the rows' keys and
 * values. Disposes x and returns the last block's output [n, D].
 */
export function cachedBlocksForward(
  backend: Backend,
  config: GptConfig,
  blocks: readonly CachedBlockWeights[],
  caches: BlockCache[],
  x: Tensor,
  positions: Tensor,
  offset: number,
  cacheRows: number,
): Tensor {
  const { heads, layerNormEpsilon: epsilon } = config
  /** the cache with rows offset.. set to `rows` (they were zero) */
  const extend = (cache: Tensor | undefined, rows: Tensor): Tensor => {
    const scattered = backend.embeddingBackward(rows, positions, cacheRows)
    if (cache === undefined) return scattered
    backend.axpyInPlace(1, scattered, cache)
    scattered.dispose()
    return cache
  }
  blocks.forEach((block, l) => {
    const cache = caches[l]
    const ln1 = backend.layerNorm(x, block.ln1Weight, block.ln1Bias, epsilon)
    const [q, k, v] = [block.query, block.key, block.value].map(({ weight, bias }) =>
      linear(backend, ln1.y, weight, bias),
    )
    for (const tensor of [ln1.y, ln1.mean, ln1.rstd]) tensor.dispose()
    cache.keys = extend(cache.keys, k)
    cache.values = extend(cache.values, v)
    k.dispose()
    v.dispose()
    const attended = backend.attentionCached(q, cache.keys, cache.values, { heads, offset })
    q.dispose()
    const projected = linear(backend, attended, block.attnProjWeight, block.attnProjBias)
    attended.dispose()
    const residual = backend.add(x, projected)
    projected.dispose()
    x.dispose()
    const ln2 = backend.layerNorm(residual, block.ln2Weight, block.ln2Bias, epsilon)
    const fc = linear(backend, ln2.y, block.fcWeight, block.fcBias)
    for (const tensor of [ln2.y, ln2.mean, ln2.rstd]) tensor.dispose()
    const activated = backend.gelu(fc)
    fc.dispose()
    const mlp = linear(backend, activated, block.mlpProjWeight, block.mlpProjBias)
    activated.dispose()
    x = backend.add(residual, mlp)
    residual.dispose()
    mlp.dispose()
  })
  return x
}

/** Frees every cache's tensors and empties them. */
export function clearCaches(caches: BlockCache[]): void {
  for (const cache of caches) {
    cache.keys?.dispose()
    cache.values?.dispose()
    cache.keys = undefined
    cache.values = undefined
  }
}

/** positions offset..offset+count-1 as float ids [count] */
export function positionIds(backend: Backend, offset: number, count: number): Tensor {
  return backend.upload(
    Float32Array.from({ length: count }, (_, i) => offset + i),
    [count],
  )
}

/** `tensor(entry.name)`, which must have the entry's size */
function sizedTensor(tensor: (name: string) => Float32Array, entry: GptParameterEntry): Float32Array {
  const values = tensor(entry.name)
  if (values.length !== entry.size)
    throw new GptSpanError(`${entry.name} has ${values.length} values, expected ${entry.size}`)
  return values
}

function checkParameters(config: GptConfig, parameters: Float32Array): void {
  checkGptConfig(config)
  const count = gptParameterCount(config)
  if (parameters.length !== count)
    throw new GptSpanError(`expected ${count} parameters, got ${parameters.length}`)
}

/** Blocks [start, end) of a GPT on a backend, with their own tensors. */
export class GptSpan {
  readonly backend: Backend
  readonly config: GptConfig
  readonly start: number
  readonly end: number
  readonly #blocks: CachedBlockWeights[]
  #disposed = false

  private constructor(backend: Backend, config: GptConfig, start: number, end: number) {
    this.backend = backend
    this.config = config
    this.start = start
    this.end = end
    this.#blocks = []
  }

  /** Checks that [start, end) is a non-empty span of a model with `layers` blocks. */
  static checkSpan(layers: number, start: number, end: number): void {
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > layers || start >= end)
      throw new GptSpanError(
        `blocks [${start}, ${end}) are not a span of the model's ${layers} blocks ` +
          `(0 <= start < end <= ${layers})`,
      )
  }

  /** The span's blocks uploaded from `parameters`, the model's flat vector in layout order. */
  static fromParameters(
    backend: Backend,
    config: GptConfig,
    parameters: Float32Array,
    start: number,
    end: number,
  ): GptSpan {
    checkParameters(config, parameters)
    GptSpan.checkSpan(config.layers, start, end)
    const span = new GptSpan(backend, config, start, end)
    for (let l = start; l < end; l++) span.#blocks.push(uploadCachedBlock(backend, config, parameters, l))
    return span
  }

  /**
   * The span's blocks uploaded from per-tensor arrays: `tensor(name)` gives each tensor of blocks
   * [start, end) by its layout name (h.l.ln_1.weight, ...; gptParameterLayout), with the layout's size.
   */
  static fromTensors(
    backend: Backend,
    config: GptConfig,
    start: number,
    end: number,
    tensor: (name: string) => Float32Array,
  ): GptSpan {
    checkGptConfig(config)
    GptSpan.checkSpan(config.layers, start, end)
    const span = new GptSpan(backend, config, start, end)
    try {
      for (let l = start; l < end; l++)
        span.#blocks.push(uploadCachedBlockFromTensors(backend, config, l, tensor))
    } catch (error) {
      span.dispose()
      throw error
    }
    return span
  }

  get blockCount(): number {
    return this.end - this.start
  }

  /** bytes of this span's weights (c_attn counted once, split in three) */
  get parameterBytes(): number {
    const d = this.config.width
    // per block: ln1 2D, c_attn 3D^2 + 3D, proj D^2 + D, ln2 2D, fc 4D^2 + 4D, mlp proj 4D^2 + D
    const perBlock = 12 * d * d + 13 * d
    return perBlock * this.blockCount * 4
  }

  /** KV cache bytes of one session holding `positions` positions */
  cacheBytes(positions: number): number {
    return 2 * positions * this.config.width * this.blockCount * 4
  }

  /** A new session with its own cache of up to `maxLength` positions (1 to the context). */
  session(maxLength: number): GptSpanSession {
    if (this.#disposed) throw new GptSpanError('the span was unloaded')
    if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > this.config.context)
      throw new GptSpanError(
        `a session holds 1 to ${this.config.context} positions (the context), got ${maxLength}`,
      )
    return new GptSpanSession(this, this.#blocks, maxLength)
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    for (const block of this.#blocks) for (const tensor of blockTensors(block)) tensor.dispose()
    this.#blocks.length = 0
  }
}

/** One inference session on a span: its KV cache and the positions it holds. */
export class GptSpanSession {
  readonly span: GptSpan
  readonly maxLength: number
  readonly #blocks: readonly CachedBlockWeights[]
  readonly #caches: BlockCache[]
  #length = 0
  #disposed = false

  constructor(span: GptSpan, blocks: readonly CachedBlockWeights[], maxLength: number) {
    this.span = span
    this.#blocks = blocks
    this.maxLength = maxLength
    this.#caches = blocks.map(() => ({ keys: undefined, values: undefined }))
  }

  /** positions held in the cache */
  get length(): number {
    return this.#length
  }

  /**
   * Runs rows `hidden` [rows, D] at positions offset..offset+rows-1 through the span and returns
   * its output rows [rows, D]. offset 0 clears the cache first (a prefill); any other offset must
   * be the session's length (an append). A refused step leaves the session as it was.
   */
  async forward(hidden: Float32Array, rows: number, offset: number): Promise<Float32Array> {
    if (this.#disposed) throw new GptSpanError('the session was closed')
    const { width } = this.span.config
    if (!Number.isInteger(rows) || rows < 1 || hidden.length !== rows * width)
      throw new GptSpanError(
        `a step takes rows x ${width} values (rows >= 1), got ${hidden.length} values for ${rows} rows`,
      )
    if (offset !== 0 && offset !== this.#length)
      throw new GptSpanError(
        `a step starts at position 0 or at the session's length ${this.#length}, not ${offset}`,
      )
    if (offset + rows > this.maxLength)
      throw new GptSpanError(
        `positions ${offset} to ${offset + rows - 1} pass the session's ${this.maxLength} positions`,
      )
    const backend = this.span.backend
    if (offset === 0) {
      clearCaches(this.#caches)
      this.#length = 0
    }
    const positions = positionIds(backend, offset, rows)
    const x = backend.upload(hidden, [rows, width])
    const y = cachedBlocksForward(
      backend,
      this.span.config,
      this.#blocks,
      this.#caches,
      x,
      positions,
      offset,
      this.maxLength,
    )
    positions.dispose()
    this.#length = offset + rows
    try {
      return await backend.read(y)
    } finally {
      y.dispose()
    }
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    clearCaches(this.#caches)
  }
}

/** The client's part of a GPT: token and position embeddings, final LayerNorm, tied head. */
export class GptEnds {
  readonly backend: Backend
  readonly config: GptConfig
  /** [V, D] */
  readonly wte: Tensor
  /** [C, D] */
  readonly wpe: Tensor
  readonly lnfWeight: Tensor
  readonly lnfBias: Tensor

  constructor(
    backend: Backend,
    config: GptConfig,
    tensors: { wte: Tensor; wpe: Tensor; lnfWeight: Tensor; lnfBias: Tensor },
  ) {
    this.backend = backend
    this.config = config
    this.wte = tensors.wte
    this.wpe = tensors.wpe
    this.lnfWeight = tensors.lnfWeight
    this.lnfBias = tensors.lnfBias
  }

  static fromParameters(backend: Backend, config: GptConfig, parameters: Float32Array): GptEnds {
    checkParameters(config, parameters)
    const layout = gptParameterLayout(config)
    const upload = (index: number) => {
      const entry = layout[index]
      return backend.upload(parameters.slice(entry.offset, entry.offset + entry.size), entry.shape)
    }
    return new GptEnds(backend, config, {
      wte: upload(0),
      wpe: upload(1),
      lnfWeight: upload(layout.length - 2),
      lnfBias: upload(layout.length - 1),
    })
  }

  /**
   * The ends uploaded from per-tensor arrays: `tensor(name)` gives wte.weight, wpe.weight, ln_f.weight
   * and ln_f.bias, each with the layout's size.
   */
  static fromTensors(backend: Backend, config: GptConfig, tensor: (name: string) => Float32Array): GptEnds {
    checkGptConfig(config)
    const layout = gptParameterLayout(config)
    const entries = [layout[0], layout[1], layout[layout.length - 2], layout[layout.length - 1]]
    const host = entries.map((entry) => sizedTensor(tensor, entry))
    const [wte, wpe, lnfWeight, lnfBias] = host.map((values, i) =>
      backend.upload(values.slice(), entries[i].shape),
    )
    return new GptEnds(backend, config, { wte, wpe, lnfWeight, lnfBias })
  }

  /** x0 = wte[ids] + wpe[positions] for device ids and positions [n]: [n, D] */
  embedTensor(ids: Tensor, positions: Tensor): Tensor {
    const tokens = this.backend.embedding(this.wte, ids)
    const places = this.backend.embedding(this.wpe, positions)
    const x = this.backend.add(tokens, places)
    tokens.dispose()
    places.dispose()
    return x
  }

  /** The embedded rows [n, D] of `bytes` at positions offset.. */
  async embed(bytes: ArrayLike<number>, offset: number): Promise<Float32Array> {
    const count = bytes.length
    const { context, vocabSize } = this.config
    if (count < 1 || !Number.isInteger(offset) || offset < 0 || offset + count > context)
      throw new GptSpanError(
        `positions ${offset} to ${offset + count - 1} are outside the context of ${context}`,
      )
    for (let i = 0; i < count; i++)
      if (!Number.isInteger(bytes[i]) || bytes[i] < 0 || bytes[i] >= vocabSize)
        throw new GptSpanError(`byte ${i} (${bytes[i]}) is not a token of the vocabulary`)
    const ids = this.backend.upload(Float32Array.from(bytes), [count])
    const positions = positionIds(this.backend, offset, count)
    const x = this.embedTensor(ids, positions)
    ids.dispose()
    positions.dispose()
    try {
      return await this.backend.read(x)
    } finally {
      x.dispose()
    }
  }

  /** logits = LNf(x) wte^T for hidden rows x [M, D]: [M, V] */
  headTensor(x: Tensor): Tensor {
    const ln = this.backend.layerNorm(x, this.lnfWeight, this.lnfBias, this.config.layerNormEpsilon)
    const logits = this.backend.matmul(ln.y, this.wte, { transposeB: true })
    for (const tensor of [ln.y, ln.mean, ln.rstd]) tensor.dispose()
    return logits
  }

  /** The logits [V] of one hidden row [D] (the last block's output at the last position). */
  async logits(lastRow: Float32Array): Promise<Float32Array> {
    const { width } = this.config
    if (lastRow.length !== width)
      throw new GptSpanError(`a hidden row has ${width} values, got ${lastRow.length}`)
    const x = this.backend.upload(lastRow, [1, width])
    const logits = this.headTensor(x)
    x.dispose()
    try {
      return await this.backend.read(logits)
    } finally {
      logits.dispose()
    }
  }

  /** Disposes the tensors (GptEnds made by fromParameters own them). */
  dispose(): void {
    for (const tensor of [this.wte, this.wpe, this.lnfWeight, this.lnfBias]) tensor.dispose()
  }
}
