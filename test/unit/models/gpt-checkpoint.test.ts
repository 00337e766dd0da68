// Proves the GPT checkpoint's Hugging Face form, decoded as transformers writes it too: tensors in
// the flat layout's order with GPT-2's names and shapes and `format: pt`; names with or without the
// `transformer.` prefix; an explicit lm_head that must equal wte; attention-mask buffers ignored; and
// one sentence for each defect (missing, extra or misshapen tensor, NaN, a config.json that does not
// describe the tensors).
import { describe, expect, it } from 'vitest'
import {
  decodeGptCheckpoint,
  encodeGptCheckpoint,
  GptCheckpointError,
  gptConfigFromHuggingFace,
  gptHuggingFaceConfig,
} from '../../../kernels/models/gpt/checkpoint.js'
import { type GptConfig, gptParameterLayout, initializeGpt } from '../../../kernels/models/gpt/config.js'
import {
  decodeSafetensors,
  encodeSafetensors,
  type NamedTensor,
} from '../../../kernels/models/safetensors.js'

const config: GptConfig = {
  vocabSize: 256,
  context: 8,
  width: 8,
  layers: 2,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const params = initializeGpt(config, 3)

/** The checkpoint's tensors as a list, to edit and encode again. */
function tensorsOf(bytes: Uint8Array): Array<[string, NamedTensor]> {
  return [...decodeSafetensors(bytes).tensors.entries()]
}

function refusalOf(tensors: Array<[string, NamedTensor]>, against = config): string {
  try {
    decodeGptCheckpoint(encodeSafetensors(tensors, { format: 'pt' }), against)
  } catch (error) {
    expect(error).toBeInstanceOf(GptCheckpointError)
    return (error as Error).message
  }
  throw new Error('accepted')
}

describe('GPT checkpoints', () => {
  it('writes GPT-2 names and shapes in flat order with format pt, and reads them back exactly', () => {
    const bytes = encodeGptCheckpoint(config, params)
    const { tensors, metadata } = decodeSafetensors(bytes)
    expect(metadata.format).toBe('pt')
    expect([...tensors.keys()].slice(0, 5)).toEqual([
      'wte.weight',
      'wpe.weight',
      'h.0.ln_1.weight',
      'h.0.ln_1.bias',
      'h.0.attn.c_attn.weight',
    ])
    expect(tensors.get('h.1.attn.c_attn.weight')?.shape).toEqual([8, 24])
    expect(tensors.get('h.1.mlp.c_fc.weight')?.shape).toEqual([8, 32])
    expect(tensors.get('h.1.mlp.c_proj.weight')?.shape).toEqual([32, 8])
    expect(tensors.get('wpe.weight')?.shape).toEqual([8, 8])
    expect(tensors.has('lm_head.weight')).toBe(false)
    expect(decodeGptCheckpoint(bytes, config)).toEqual(params)
  })

  it('reads the transformer. prefix, a tied lm_head and mask buffers as transformers saves them', () => {
    const tensors = tensorsOf(encodeGptCheckpoint(config, params)).map(
      ([name, tensor]): [string, NamedTensor] => [`transformer.${name}`, tensor],
    )
    const wte = tensors[0][1]
    tensors.push(['lm_head.weight', { shape: [...wte.shape], data: wte.data.slice() }])
    tensors.push(['transformer.h.0.attn.bias', { shape: [1, 1, 8, 8], data: new Float32Array(64).fill(1) }])
    expect(decodeGptCheckpoint(encodeSafetensors(tensors, { format: 'pt' }), config)).toEqual(params)
    const untied = tensors.map(([name, tensor]): [string, NamedTensor] =>
      name === 'lm_head.weight' ? [name, { ...tensor, data: tensor.data.map((v) => v + 1) }] : [name, tensor],
    )
    expect(refusalOf(untied)).toMatch(/lm_head.weight differs from wte.weight/)
  })

  it('refuses a missing, extra, misshapen or non-finite tensor with one sentence naming it', () => {
    const tensors = tensorsOf(encodeGptCheckpoint(config, params))
    expect(refusalOf(tensors.filter(([name]) => name !== 'h.1.ln_2.bias'))).toMatch(/no tensor h.1.ln_2.bias/)
    expect(refusalOf([...tensors, ['h.2.ln_1.weight', { shape: [8], data: new Float32Array(8) }]])).toMatch(
      /does not describe: h.2.ln_1.weight/,
    )
    const misshapen = tensors.map(([name, tensor]): [string, NamedTensor] =>
      name === 'h.0.attn.c_proj.weight' ? [name, { shape: [4, 16], data: tensor.data }] : [name, tensor],
    )
    expect(refusalOf(misshapen)).toMatch(
      /h.0.attn.c_proj.weight has shape \[4, 16\], config.json implies \[8, 8\]/,
    )
    const poisoned = tensors.map(([name, tensor]): [string, NamedTensor] => {
      if (name !== 'ln_f.weight') return [name, tensor]
      const data = tensor.data.slice()
      data[3] = Number.NaN
      return [name, { ...tensor, data }]
    })
    expect(refusalOf(poisoned)).toMatch(/ln_f.weight holds a non-finite value \(NaN\) at 3/)
    // tensors of a 2-layer model against a config.json that says 3 layers, or another width
    expect(refusalOf(tensors, { ...config, layers: 3 })).toMatch(/no tensor h.2.ln_1.weight/)
    expect(refusalOf(tensors, { ...config, width: 16, heads: 2 })).toMatch(/wte.weight has shape \[256, 8\]/)
  })

  it('writes config.json with GPT2Config keys, reads it back, refuses one not of a byte GPT-2', () => {
    const json = gptHuggingFaceConfig(config)
    expect(json).toMatchObject({
      model_type: 'gpt2',
      vocab_size: 256,
      n_positions: 8,
      n_embd: 8,
      n_layer: 2,
      n_head: 2,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      n_inner: null,
    })
    expect(gptConfigFromHuggingFace(JSON.parse(JSON.stringify(json)))).toEqual(config)
    expect(() => gptConfigFromHuggingFace({ ...json, model_type: 'llama' })).toThrow(
      /model_type must be "gpt2"/,
    )
    expect(() => gptConfigFromHuggingFace({ ...json, activation_function: 'relu' })).toThrow(/gelu_new/)
    expect(() => gptConfigFromHuggingFace({ ...json, vocab_size: 50257 })).toThrow(/vocabSize must be 256/)
    expect(() => gptConfigFromHuggingFace({ ...json, n_head: 3 })).toThrow(/multiple of heads 3/)
    expect(() => gptConfigFromHuggingFace({ ...json, n_embd: '8' })).toThrow(/n_embd must be a number/)
    expect(() => gptConfigFromHuggingFace([])).toThrow(/not a JSON object/)
    expect(gptParameterLayout(config).length).toBe(2 + 12 * 2 + 2)
  })
})
