// Reference causal multi-head attention (see backend.ts): the oracle of the attention kernel tests
// and the cpu backend's kernel. Filled in by the kernels work of the GPT model kind.
import type { AttentionSizes, CachedAttentionSizes } from '../ops/transformer-shapes.js'

const pending = (op: string): never => {
  throw new Error(`${op}: not implemented yet`)
}

export function attentionReference(
  _qkv: Float32Array,
  _sizes: AttentionSizes,
): { output: Float32Array; logSumExp: Float32Array } {
  return pending('attention')
}
export function attentionBackwardReference(
  _gradOutput: Float32Array,
  _qkv: Float32Array,
  _output: Float32Array,
  _logSumExp: Float32Array,
  _sizes: AttentionSizes,
): Float32Array {
  return pending('attentionBackward')
}
export function attentionCachedReference(
  _queries: Float32Array,
  _keys: Float32Array,
  _values: Float32Array,
  _sizes: CachedAttentionSizes,
): Float32Array {
  return pending('attentionCached')
}
