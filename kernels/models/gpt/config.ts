// The GPT model kind's configuration and parameter layout: GPT-2's architecture over a byte
// vocabulary. One flat float32 vector holds every parameter in the order of `gptParameterLayout`,
// each tensor in Hugging Face GPT-2's own layout (Conv1D weights are [in, out]: y = x W + b), so the
// flat vector, the device tensors and model.safetensors all agree without transposes.
import { SeededRandom } from '../../data/random.js'

export interface GptConfig {
  /** vocabulary (256: bytes) */
  vocabSize: number
  /** context length T (n_positions) */
  context: number
  /** model width D (n_embd) */
  width: number
  /** transformer blocks (n_layer) */
  layers: number
  /** attention heads H (n_head); D is a multiple of H */
  heads: number
  /** LayerNorm epsilon */
  layerNormEpsilon: number
}

export const GPT_VOCAB_SIZE = 256
export const LAYER_NORM_EPSILON = 1e-5

export const GPT_PRESETS = {
  /** about 0.9M parameters: trains on a 2-core machine */
  tiny: { vocabSize: 256, context: 256, width: 128, layers: 4, heads: 4, layerNormEpsilon: 1e-5 },
  /** GPT-2 small's shape over bytes, about 85M parameters: for real GPUs */
  small: { vocabSize: 256, context: 1024, width: 768, layers: 12, heads: 12, layerNormEpsilon: 1e-5 },
} as const satisfies Record<string, GptConfig>

export type GptPreset = keyof typeof GPT_PRESETS
export const GPT_PRESET_DEFAULT: GptPreset = 'tiny'

/** Limits of every field: a config outside them is refused (GptConfigError names the field). */
export const GPT_LIMITS = {
  contextMax: 8192,
  widthMax: 8192,
  layersMax: 96,
  headsMax: 128,
} as const

/** A GPT configuration that is out of range or inconsistent; the message names the field. */
export class GptConfigError extends Error {
  static override name = 'GptConfigError'
  constructor(message: string) {
    super(message)
    this.name = 'GptConfigError'
  }
}

/** Throws GptConfigError naming the first bad field; returns the config. */
export function checkGptConfig(config: GptConfig): GptConfig {
  const integer = (field: keyof GptConfig, min: number, max: number) => {
    const value = config[field]
    if (!Number.isInteger(value) || value < min || value > max)
      throw new GptConfigError(`${field} must be an integer from ${min} to ${max}, got ${value}`)
  }
  if (config.vocabSize !== GPT_VOCAB_SIZE)
    throw new GptConfigError(
      `vocabSize must be ${GPT_VOCAB_SIZE} (a byte vocabulary), got ${config.vocabSize}`,
    )
  integer('context', 1, GPT_LIMITS.contextMax)
  integer('width', 1, GPT_LIMITS.widthMax)
  integer('layers', 1, GPT_LIMITS.layersMax)
  integer('heads', 1, GPT_LIMITS.headsMax)
  if (config.width % config.heads !== 0)
    throw new GptConfigError(`width ${config.width} must be a multiple of heads ${config.heads}`)
  if (!(config.layerNormEpsilon > 0 && config.layerNormEpsilon < 1))
    throw new GptConfigError(`layerNormEpsilon must be in (0, 1), got ${config.layerNormEpsilon}`)
  return config
}

/** One parameter tensor's place in the flat parameter vector. */
export interface GptParameterEntry {
  /** Hugging Face GPT-2 name, e.g. h.0.attn.c_attn.weight */
  name: string
  shape: readonly number[]
  offset: number
  size: number
  /** how it is initialised */
  init: 'normal' | 'residual' | 'position' | 'ones' | 'zeros'
}

/** The parameters of a block, in flat order, with their shapes (D = width). */
function blockTensors(block: number, d: number): Array<[string, number[], GptParameterEntry['init']]> {
  const p = `h.${block}.`
  return [
    [`${p}ln_1.weight`, [d], 'ones'],
    [`${p}ln_1.bias`, [d], 'zeros'],
    [`${p}attn.c_attn.weight`, [d, 3 * d], 'normal'],
    [`${p}attn.c_attn.bias`, [3 * d], 'zeros'],
    [`${p}attn.c_proj.weight`, [d, d], 'residual'],
    [`${p}attn.c_proj.bias`, [d], 'zeros'],
    [`${p}ln_2.weight`, [d], 'ones'],
    [`${p}ln_2.bias`, [d], 'zeros'],
    [`${p}mlp.c_fc.weight`, [d, 4 * d], 'normal'],
    [`${p}mlp.c_fc.bias`, [4 * d], 'zeros'],
    [`${p}mlp.c_proj.weight`, [4 * d, d], 'residual'],
    [`${p}mlp.c_proj.bias`, [d], 'zeros'],
  ]
}

/** Every parameter tensor in flat order: wte, wpe, the blocks h.0 ... h.{L-1}, ln_f. */
export function gptParameterLayout(config: GptConfig): GptParameterEntry[] {
  const d = config.width
  const tensors: Array<[string, number[], GptParameterEntry['init']]> = [
    ['wte.weight', [config.vocabSize, d], 'normal'],
    ['wpe.weight', [config.context, d], 'position'],
  ]
  for (let block = 0; block < config.layers; block++) tensors.push(...blockTensors(block, d))
  tensors.push(['ln_f.weight', [d], 'ones'], ['ln_f.bias', [d], 'zeros'])
  let offset = 0
  return tensors.map(([name, shape, init]) => {
    const size = shape.reduce((a, b) => a * b, 1)
    const entry = { name, shape, offset, size, init }
    offset += size
    return entry
  })
}

export function gptParameterCount(config: GptConfig): number {
  const layout = gptParameterLayout(config)
  const last = layout[layout.length - 1]
  return last.offset + last.size
}

/** Standard deviation of weights at initialisation (GPT-2's 0.02). */
export const INIT_STD = 0.02
/** Position embeddings start smaller (GPT-2's code uses 0.01). */
export const POSITION_INIT_STD = 0.01

/**
 * The initial parameters from a seed: normal(0, 0.02) weights, the residual projections (c_proj)
 * scaled by 1/sqrt(2 L) as in GPT-2, position embeddings normal(0, 0.01), LayerNorm gains 1, biases
 * 0. Each tensor draws from its own named stream of the seed, so changing one tensor's size never
 * shifts another's values.
 */
export function initializeGpt(config: GptConfig, seed: number): Float32Array {
  checkGptConfig(config)
  const layout = gptParameterLayout(config)
  const params = new Float32Array(gptParameterCount(config))
  const residualStd = INIT_STD / Math.sqrt(2 * config.layers)
  for (const entry of layout) {
    const view = params.subarray(entry.offset, entry.offset + entry.size)
    if (entry.init === 'ones') view.fill(1)
    else if (entry.init === 'zeros') continue
    else {
      const std =
        entry.init === 'residual' ? residualStd : entry.init === 'position' ? POSITION_INIT_STD : INIT_STD
      const random = SeededRandom.stream(seed, `gpt:${entry.name}`)
      for (let i = 0; i < view.length; i++) view[i] = std * random.normal()
    }
  }
  return params
}
