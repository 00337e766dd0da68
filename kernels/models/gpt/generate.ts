// Sampling bytes from a GPT, with or without a KV cache.
//
// The window rule (both paths follow it, so they see the same bytes at the same positions): the
// model conditions on bytes [start, end) of the text so far. A prompt longer than the context C is
// cut from the left (onTruncate says how many bytes were dropped). When a new byte would make the
// window longer than C, the window restarts as the last max(1, C - 1) bytes: the cache is rebuilt
// from them (positions restart at 0), which is the simplest correct way to slide, at the cost of a
// full prefill every other byte once the context is full.
//
// With the cache, GptGenerator runs the window through once, keeping each block's keys and values in
// device tensors [C, D], then one byte at a time with attentionCached. A new key row is written
// into the cache by embeddingBackward (a scatter into a zero [C, D] tensor) added in place: the
// row was zero, so the sum is the key itself. Without the cache, every byte recomputes the whole
// window's forward. Sampling happens on the host from the last row's logits: softmax of
// logits / temperature over the topK largest (0 = all), drawn with SeededRandom; temperature 0 is
// greedy (the first largest logit). With topP < 1 (nucleus sampling) the draw is among the smallest
// set of those bytes, most likely first, whose probability reaches topP.
import type { Backend, Tensor } from '../../backend.js'
import { SeededRandom } from '../../data/random.js'
import type { Gpt } from './model.js'
import {
  type BlockCache,
  type CachedBlockWeights,
  cachedBlocksForward,
  clearCaches,
  GptEnds,
  positionIds,
  splitAttentionPart,
} from './span.js'

export interface GenerateOptions {
  /** bytes to generate */
  tokens: number
  /** 0 = greedy */
  temperature: number
  /** sample among the topK most likely bytes; 0 = all */
  topK: number
  /**
   * nucleus sampling: draw among the most likely bytes whose probability reaches topP (0 < topP <= 1)
   * @default 1
   */
  topP?: number
  seed: number
  /** @default true */
  cache?: boolean
  /** called once, before the first byte, when the prompt was longer than the context */
  onTruncate?: (droppedBytes: number) => void
}

export const GENERATE_CACHE_DEFAULT = true

/** Options of generation that cannot work (no prompt, a negative temperature, ...). */
export class GenerateOptionsError extends Error {
  static override name = 'GenerateOptionsError'
  constructor(message: string) {
    super(message)
    this.name = 'GenerateOptionsError'
  }
}

/** One byte drawn from logits [V]: see the module comment. */
export function sampleByte(
  logits: Float32Array,
  temperature: number,
  topK: number,
  random: SeededRandom,
  topP = 1,
): number {
  if (temperature === 0) {
    let best = 0
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i
    return best
  }
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b)
  let kept = topK > 0 ? order.slice(0, topK) : order
  const max = logits[kept[0]]
  let weights = kept.map((i) => Math.exp((logits[i] - max) / temperature))
  let total = weights.reduce((a, b) => a + b, 0)
  if (topP < 1) {
    // the smallest prefix (most likely first) whose probability reaches topP
    let count = 0
    let mass = 0
    while (count < kept.length && mass < topP * total) mass += weights[count++]
    kept = kept.slice(0, count)
    weights = weights.slice(0, count)
    total = mass
  }
  let draw = random.float() * total
  for (let j = 0; j < kept.length; j++) {
    draw -= weights[j]
    if (draw < 0) return kept[j]
  }
  return kept[kept.length - 1]
}

/**
 * What is wrong with sampling settings sampleByte cannot work with (one sentence), or undefined:
 * generation here and through a chain of span servers (node/serving/chain.ts) check them alike.
 */
export function samplingProblem(temperature: number, topK: number, topP: number): string | undefined {
  if (!(temperature >= 0 && Number.isFinite(temperature)))
    return `temperature must be finite and >= 0, got ${temperature}`
  if (!Number.isInteger(topK) || topK < 0) return `topK must be an integer >= 0, got ${topK}`
  if (!(topP > 0 && topP <= 1)) return `topP must be in (0, 1], got ${topP}`
  return undefined
}

/**
 * Incremental forward passes with a KV cache: the model's ends and every block run through span.ts's
 * cached forward, the code a chain of span servers runs. The q/k/v weights are copied from the model
 * when the generator is created: later changes to the model's parameters are not seen by it.
 */
export class GptGenerator {
  readonly gpt: Gpt
  readonly #blocks: CachedBlockWeights[]
  readonly #caches: BlockCache[]
  readonly #ends: GptEnds
  /** positions held in the cache */
  #length = 0

  private constructor(gpt: Gpt, blocks: CachedBlockWeights[]) {
    this.gpt = gpt
    this.#blocks = blocks
    this.#caches = blocks.map(() => ({ keys: undefined, values: undefined }))
    this.#ends = new GptEnds(gpt.backend, gpt.config, gpt)
  }

  static async create(gpt: Gpt): Promise<GptGenerator> {
    const backend = gpt.backend
    const d = gpt.config.width
    const blocks: CachedBlockWeights[] = []
    for (const block of gpt.blocks) {
      const [weight, bias] = await Promise.all([backend.read(block.attnWeight), backend.read(block.attnBias)])
      const [query, key, value] = [0, 1, 2].map((part) => {
        const split = splitAttentionPart(weight, bias, d, part)
        return { weight: backend.upload(split.weight, [d, d]), bias: backend.upload(split.bias, [d]) }
      })
      blocks.push({ ...block, query, key, value })
    }
    return new GptGenerator(gpt, blocks)
  }

  /** positions held in the cache */
  get length(): number {
    return this.#length
  }

  /** Clears the cache and runs `bytes` at positions 0.. ; returns the last byte's logits [1, V]. */
  prefill(bytes: ArrayLike<number>): Tensor {
    if (bytes.length < 1 || bytes.length > this.gpt.config.context)
      throw new RangeError(`prefill takes 1 to ${this.gpt.config.context} bytes, got ${bytes.length}`)
    clearCaches(this.#caches)
    this.#length = 0
    return this.#run(Float32Array.from(bytes))
  }

  /** Runs one more byte at the next position; returns its logits [1, V]. */
  append(byte: number): Tensor {
    if (this.#length === 0) throw new RangeError('append needs a prefill first')
    if (this.#length >= this.gpt.config.context)
      throw new RangeError(`the cache is full (${this.gpt.config.context} positions)`)
    return this.#run(Float32Array.of(byte))
  }

  /** the forward of `bytes` at positions length.. against the cache, which it extends */
  #run(bytes: Float32Array): Tensor {
    const gpt = this.gpt
    const backend: Backend = gpt.backend
    const offset = this.#length
    const ids = backend.upload(bytes, [bytes.length])
    const positions = positionIds(backend, offset, bytes.length)
    const x0 = this.#ends.embedTensor(ids, positions)
    ids.dispose()
    const x = cachedBlocksForward(
      backend,
      gpt.config,
      this.#blocks,
      this.#caches,
      x0,
      positions,
      offset,
      gpt.config.context,
    )
    positions.dispose()
    this.#length += bytes.length
    const logits = lastRowLogits(gpt, x)
    x.dispose()
    return logits
  }

  dispose(): void {
    for (const { query, key, value } of this.#blocks)
      for (const tensor of [query.weight, query.bias, key.weight, key.bias, value.weight, value.bias])
        tensor.dispose()
    clearCaches(this.#caches)
  }
}

/** logits [1, V] of the last row of hidden states x [M, D] */
function lastRowLogits(gpt: Gpt, x: Tensor): Tensor {
  const backend = gpt.backend
  const index = backend.upload(Float32Array.of(x.shape[0] - 1), [1])
  const last = backend.embedding(x, index)
  index.dispose()
  const logits = gpt.head(last)
  last.dispose()
  return logits
}

/**
 * Generates `options.tokens` bytes after `prompt` (see the module comment), yielding each as soon
 * as it is drawn. The same seed gives the same bytes.
 */
export async function* generateBytes(
  backend: Backend,
  gpt: Gpt,
  prompt: Uint8Array,
  options: GenerateOptions,
): AsyncGenerator<number> {
  if (backend !== gpt.backend) throw new GenerateOptionsError('the model lives on another backend')
  if (prompt.length === 0) throw new GenerateOptionsError('the prompt must hold at least one byte')
  if (!Number.isInteger(options.tokens) || options.tokens < 0)
    throw new GenerateOptionsError(`tokens must be an integer >= 0, got ${options.tokens}`)
  const topP = options.topP ?? 1
  const problem = samplingProblem(options.temperature, options.topK, topP)
  if (problem !== undefined) throw new GenerateOptionsError(problem)
  const random = SeededRandom.stream(options.seed, 'gpt:sample')
  const context = gpt.config.context
  const keep = Math.max(1, context - 1)
  const text = Array.from(prompt)
  let start = Math.max(0, text.length - context)
  if (start > 0) options.onTruncate?.(start)
  const useCache = options.cache ?? GENERATE_CACHE_DEFAULT
  const generator = useCache && options.tokens > 0 ? await GptGenerator.create(gpt) : undefined
  try {
    let rebuild = true
    for (let n = 0; n < options.tokens; n++) {
      let logits: Tensor
      if (generator === undefined) {
        const x = gpt.hidden(Float32Array.from(text.slice(start)), 1)
        logits = lastRowLogits(gpt, x)
        x.dispose()
      } else if (rebuild) logits = generator.prefill(text.slice(start))
      else logits = generator.append(text[text.length - 1])
      rebuild = false
      const values = await backend.read(logits)
      logits.dispose()
      const byte = sampleByte(values, options.temperature, options.topK, random, topP)
      text.push(byte)
      if (text.length - start > context) {
        start = text.length - keep
        rebuild = true
      }
      yield byte
    }
  } finally {
    generator?.dispose()
  }
}
