// The float64 oracle of the GPT tests: GPT-2's forward pass over bytes in plain loops, no backend and
// no code shared with kernels/models/gpt (only the parameter layout's names and offsets, which are the
// contract both sides read). Pre-LayerNorm blocks, learned position embeddings, GELU (tanh), causal
// multi-head attention scaled by 1/sqrt(D/H), final LayerNorm, logits = x wte^T.
import { type GptConfig, gptParameterLayout } from '../../../kernels/models/gpt/config.js'

type Parameters = ArrayLike<number>

/** name -> offset into the flat parameter vector */
function offsets(config: GptConfig): Map<string, number> {
  return new Map(gptParameterLayout(config).map((entry) => [entry.name, entry.offset]))
}

function layerNorm(
  x: Float64Array,
  rows: number,
  d: number,
  params: Parameters,
  gammaAt: number,
  betaAt: number,
  epsilon: number,
): Float64Array {
  const y = new Float64Array(rows * d)
  for (let r = 0; r < rows; r++) {
    let mean = 0
    for (let i = 0; i < d; i++) mean += x[r * d + i]
    mean /= d
    let variance = 0
    for (let i = 0; i < d; i++) variance += (x[r * d + i] - mean) ** 2
    variance /= d
    const rstd = 1 / Math.sqrt(variance + epsilon)
    for (let i = 0; i < d; i++)
      y[r * d + i] = (x[r * d + i] - mean) * rstd * params[gammaAt + i] + params[betaAt + i]
  }
  return y
}

/** y [rows, out] = x [rows, in] W [in, out] + b [out] (Conv1D layout) */
function linear(
  x: Float64Array,
  rows: number,
  inWidth: number,
  outWidth: number,
  params: Parameters,
  weightAt: number,
  biasAt: number,
): Float64Array {
  const y = new Float64Array(rows * outWidth)
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outWidth; o++) {
      let total = params[biasAt + o]
      for (let i = 0; i < inWidth; i++) total += x[r * inWidth + i] * params[weightAt + i * outWidth + o]
      y[r * outWidth + o] = total
    }
  }
  return y
}

function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
}

/** causal multi-head attention of one sequence's qkv rows [T, 3D] -> [T, D] */
function attention(qkv: Float64Array, t: number, d: number, heads: number): Float64Array {
  const hw = d / heads
  const out = new Float64Array(t * d)
  const scale = 1 / Math.sqrt(hw)
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < t; i++) {
      const scores = new Float64Array(i + 1)
      let max = Number.NEGATIVE_INFINITY
      for (let j = 0; j <= i; j++) {
        let dot = 0
        for (let c = 0; c < hw; c++) dot += qkv[i * 3 * d + h * hw + c] * qkv[j * 3 * d + d + h * hw + c]
        scores[j] = dot * scale
        max = Math.max(max, scores[j])
      }
      let total = 0
      for (let j = 0; j <= i; j++) {
        scores[j] = Math.exp(scores[j] - max)
        total += scores[j]
      }
      for (let c = 0; c < hw; c++) {
        let value = 0
        for (let j = 0; j <= i; j++) value += scores[j] * qkv[j * 3 * d + 2 * d + h * hw + c]
        out[i * d + h * hw + c] = value / total
      }
    }
  }
  return out
}

/** logits [T, V] of one sequence of byte ids at positions 0 .. T-1 */
export function referenceSequenceLogits(
  config: GptConfig,
  params: Parameters,
  ids: ArrayLike<number>,
): Float64Array {
  const at = offsets(config)
  const get = (name: string): number => {
    const offset = at.get(name)
    if (offset === undefined) throw new Error(`no parameter ${name}`)
    return offset
  }
  const t = ids.length
  const d = config.width
  if (t > config.context) throw new Error(`sequence of ${t} is longer than the context ${config.context}`)
  let x = new Float64Array(t * d)
  const wte = get('wte.weight')
  const wpe = get('wpe.weight')
  for (let i = 0; i < t; i++)
    for (let c = 0; c < d; c++) x[i * d + c] = params[wte + ids[i] * d + c] + params[wpe + i * d + c]
  const eps = config.layerNormEpsilon
  for (let l = 0; l < config.layers; l++) {
    const p = `h.${l}.`
    const a = layerNorm(x, t, d, params, get(`${p}ln_1.weight`), get(`${p}ln_1.bias`), eps)
    const qkv = linear(a, t, d, 3 * d, params, get(`${p}attn.c_attn.weight`), get(`${p}attn.c_attn.bias`))
    const heads = attention(qkv, t, d, config.heads)
    const proj = linear(heads, t, d, d, params, get(`${p}attn.c_proj.weight`), get(`${p}attn.c_proj.bias`))
    for (let i = 0; i < x.length; i++) x[i] += proj[i]
    const h = layerNorm(x, t, d, params, get(`${p}ln_2.weight`), get(`${p}ln_2.bias`), eps)
    const fc = linear(h, t, d, 4 * d, params, get(`${p}mlp.c_fc.weight`), get(`${p}mlp.c_fc.bias`))
    for (let i = 0; i < fc.length; i++) fc[i] = gelu(fc[i])
    const mlp = linear(fc, t, 4 * d, d, params, get(`${p}mlp.c_proj.weight`), get(`${p}mlp.c_proj.bias`))
    const next = new Float64Array(x.length)
    for (let i = 0; i < x.length; i++) next[i] = x[i] + mlp[i]
    x = next
  }
  const y = layerNorm(x, t, d, params, get('ln_f.weight'), get('ln_f.bias'), eps)
  const v = config.vocabSize
  const logits = new Float64Array(t * v)
  for (let i = 0; i < t; i++) {
    for (let k = 0; k < v; k++) {
      let dot = 0
      for (let c = 0; c < d; c++) dot += y[i * d + c] * params[wte + k * d + c]
      logits[i * v + k] = dot
    }
  }
  return logits
}

/** cross-entropy in nats of each row's label under rows of logits [rows, V] */
function crossEntropies(logits: Float64Array, labels: ArrayLike<number>, v: number): number[] {
  const losses: number[] = []
  for (let r = 0; r < labels.length; r++) {
    let max = Number.NEGATIVE_INFINITY
    for (let k = 0; k < v; k++) max = Math.max(max, logits[r * v + k])
    let total = 0
    for (let k = 0; k < v; k++) total += Math.exp(logits[r * v + k] - max)
    losses.push(Math.log(total) + max - logits[r * v + labels[r]])
  }
  return losses
}

/** mean cross-entropy in nats over batch x T tokens (inputs and targets of length batch*T) */
export function referenceLoss(
  config: GptConfig,
  params: Parameters,
  inputs: ArrayLike<number>,
  targets: ArrayLike<number>,
  batch: number,
): number {
  const t = inputs.length / batch
  let total = 0
  for (let b = 0; b < batch; b++) {
    const ids = Array.from({ length: t }, (_, i) => inputs[b * t + i])
    const labels = Array.from({ length: t }, (_, i) => targets[b * t + i])
    const logits = referenceSequenceLogits(config, params, ids)
    for (const loss of crossEntropies(logits, labels, config.vocabSize)) total += loss
  }
  return total / inputs.length
}

/**
 * Bits per byte over `validation`: non-overlapping windows of the context C, window w predicting
 * bytes wC+1 .. wC+C from bytes wC .. wC+C-1 with positions restarting at 0; the last window is as
 * short as the remaining bytes.
 */
export function referenceBitsPerByte(
  config: GptConfig,
  params: Parameters,
  validation: Uint8Array,
): { bitsPerByte: number; bytes: number; windows: number } {
  const c = config.context
  let total = 0
  let bytes = 0
  let windows = 0
  for (let start = 0; start + 1 < validation.length; start += c) {
    const length = Math.min(c, validation.length - 1 - start)
    const ids = validation.subarray(start, start + length)
    const labels = validation.subarray(start + 1, start + 1 + length)
    for (const loss of crossEntropies(referenceSequenceLogits(config, params, ids), labels, config.vocabSize))
      total += loss
    bytes += length
    windows++
  }
  return { bitsPerByte: total / bytes / Math.LN2, bytes, windows }
}

/**
 * Greedy decoding with the generator's window rule: the model sees bytes [start, end) of the text so
 * far, start = max(0, prompt length - C) at first; when a new byte would make the window longer than
 * C, the window restarts as the last max(1, C - 1) bytes.
 */
export function referenceGreedy(
  config: GptConfig,
  params: Parameters,
  prompt: Uint8Array,
  tokens: number,
): number[] {
  const c = config.context
  const text = Array.from(prompt)
  let start = Math.max(0, text.length - c)
  const out: number[] = []
  for (let n = 0; n < tokens; n++) {
    const window = text.slice(start)
    const logits = referenceSequenceLogits(config, params, window)
    const last = logits.subarray((window.length - 1) * config.vocabSize)
    let best = 0
    for (let k = 1; k < config.vocabSize; k++) if (last[k] > last[best]) best = k
    out.push(best)
    text.push(best)
    if (text.length - start > c) start = text.length - Math.max(1, c - 1)
  }
  return out
}
