// GPT checkpoints the field can load: model.safetensors with Hugging Face GPT-2 tensor names and
// layouts (the flat parameter layout of config.ts, tensor by tensor, so no transposes), metadata
// `format: pt` (transformers refuses safetensors files without it), and config.json with
// GPT2Config's keys. `transformers.GPT2LMHeadModel.from_pretrained(DIR)` loads the pair as it is;
// lm_head is tied to wte and so not stored.
//
// Decoding refuses, with one sentence naming the tensor or key: a missing or extra tensor, a wrong
// shape, a non-finite value, a config.json that does not match the tensors.
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from '../safetensors.js'
import {
  checkGptConfig,
  GPT_VOCAB_SIZE,
  type GptConfig,
  GptConfigError,
  gptParameterCount,
  gptParameterLayout,
} from './config.js'

/** A GPT checkpoint that is not usable; the message is one sentence for the user. */
export class GptCheckpointError extends Error {
  static override name = 'GptCheckpointError'
  constructor(message: string) {
    super(message)
    this.name = 'GptCheckpointError'
  }
}

/** config.json in Hugging Face's GPT2Config form. */
export function gptHuggingFaceConfig(config: GptConfig): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.context,
    n_ctx: config.context,
    n_embd: config.width,
    n_layer: config.layers,
    n_head: config.heads,
    n_inner: null,
    layer_norm_epsilon: config.layerNormEpsilon,
    activation_function: 'gelu_new',
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    tie_word_embeddings: true,
    // a byte vocabulary has no special tokens: 0x00 separates the corpus files
    bos_token_id: 0,
    eos_token_id: 0,
  }
}

/** The GptConfig of a config.json; throws GptCheckpointError naming the key. */
export function gptConfigFromHuggingFace(json: unknown): GptConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new GptCheckpointError('config.json is not a JSON object')
  const value = json as Record<string, unknown>
  if (value.model_type !== 'gpt2') throw new GptCheckpointError('config.json: model_type must be "gpt2"')
  if (value.activation_function !== undefined && value.activation_function !== 'gelu_new')
    throw new GptCheckpointError('config.json: activation_function must be "gelu_new"')
  if (value.n_inner !== undefined && value.n_inner !== null && value.n_inner !== 4 * Number(value.n_embd))
    throw new GptCheckpointError('config.json: n_inner must be null (4 x n_embd)')
  const number = (key: string): number => {
    const field = value[key]
    if (typeof field !== 'number') throw new GptCheckpointError(`config.json: ${key} must be a number`)
    return field
  }
  const config: GptConfig = {
    vocabSize: number('vocab_size'),
    context: number('n_positions'),
    width: number('n_embd'),
    layers: number('n_layer'),
    heads: number('n_head'),
    layerNormEpsilon: number('layer_norm_epsilon'),
  }
  try {
    return checkGptConfig(config)
  } catch (error) {
    if (error instanceof GptConfigError) throw new GptCheckpointError(`config.json: ${error.message}`)
    throw error
  }
}

/** model.safetensors bytes of flat parameters (the layout of config.ts). */
export function encodeGptCheckpoint(
  config: GptConfig,
  params: Float32Array,
  metadata: Record<string, string> = {},
): Uint8Array {
  if (params.length !== gptParameterCount(config))
    throw new RangeError(`expected ${gptParameterCount(config)} parameters, got ${params.length}`)
  const tensors: Array<[string, NamedTensor]> = gptParameterLayout(config).map((entry) => [
    entry.name,
    { shape: [...entry.shape], data: params.subarray(entry.offset, entry.offset + entry.size) },
  ])
  return encodeSafetensors(tensors, { ...metadata, format: 'pt' })
}

/** Hugging Face may prefix names with `transformer.`; both forms load. */
const PREFIX = 'transformer.'

/**
 * The flat parameters of a checkpoint against `config` (from config.json); throws GptCheckpointError
 * (or SafetensorsError for a file that is not safetensors at all).
 */
export function decodeGptCheckpoint(bytes: Uint8Array, config: GptConfig): Float32Array {
  const { tensors } = decodeSafetensors(bytes)
  const byName = new Map<string, NamedTensor>()
  for (const [name, tensor] of tensors) {
    const plain = name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name
    // a tied head stored explicitly must equal wte: checked below, not stored twice
    if (byName.has(plain)) throw new GptCheckpointError(`the checkpoint holds ${plain} twice`)
    byName.set(plain, tensor)
  }
  const params = new Float32Array(gptParameterCount(config))
  for (const entry of gptParameterLayout(config)) {
    const tensor = byName.get(entry.name)
    if (tensor === undefined) {
      throw new GptCheckpointError(
        `the checkpoint has no tensor ${entry.name} ` +
          `(config.json describes ${config.layers} layers of width ` +
          `${config.width})`,
      )
    }
    if (tensor.shape.length !== entry.shape.length || tensor.shape.some((d, i) => d !== entry.shape[i])) {
      throw new GptCheckpointError(
        `${entry.name} has shape [${tensor.shape.join(', ')}], ` +
          `config.json implies [${entry.shape.join(', ')}]`,
      )
    }
    for (let i = 0; i < tensor.data.length; i++) {
      if (!Number.isFinite(tensor.data[i]))
        throw new GptCheckpointError(`${entry.name} holds a non-finite value (${tensor.data[i]}) at ${i}`)
    }
    params.set(tensor.data, entry.offset)
    byName.delete(entry.name)
  }
  const head = byName.get('lm_head.weight')
  if (head !== undefined) {
    const wte = params.subarray(0, GPT_VOCAB_SIZE * config.width)
    const tied = head.data.length === wte.length && head.data.every((v, i) => v === wte[i])
    if (!tied) throw new GptCheckpointError('lm_head.weight differs from wte.weight (the head must be tied)')
    byName.delete('lm_head.weight')
  }
  // buffers some exporters keep (attention masks) are not parameters
  for (const name of [...byName.keys()]) if (/^h\.\d+\.attn\.(masked_)?bias$/.test(name)) byName.delete(name)
  const extra = [...byName.keys()]
  if (extra.length > 0)
    throw new GptCheckpointError(`the checkpoint holds a tensor config.json does not describe: ${extra[0]}`)
  return params
}
