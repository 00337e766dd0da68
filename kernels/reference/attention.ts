// Reference causal multi-head attention (see backend.ts): the cpu backend's kernel. Sums are in
// float64 and results are rounded to float32 once. Each (sequence, head) pair is copied out of the
// packed [q | k | v] rows into contiguous float64 [T, hd] blocks first, so that the inner loops run
// over consecutive memory; only one row of scores (T values) exists at a time.
import type { AttentionSizes, CachedAttentionSizes } from '../ops/transformer-shapes.js'

/**
 * Copies columns column0 .. column0 + width of `count` rows (row stride `stride`, starting at
 * row `row0`) into a contiguous float64 block.
 */
function gather(
  source: Float32Array,
  row0: number,
  count: number,
  stride: number,
  column0: number,
  width: number,
  into: Float64Array,
): Float64Array {
  for (let r = 0; r < count; r++) {
    const from = (row0 + r) * stride + column0
    for (let c = 0; c < width; c++) into[r * width + c] = source[from + c]
  }
  return into
}

/**
 * Softmax attention of `count` queries against the keys and values of one head, query r seeing
 * keys 0 ..= offset + r. Writes the outputs into out[r * hd ..] and the log-sum-exp into lse[r].
 */
function attendHead(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  count: number,
  offset: number,
  hd: number,
  out: Float64Array,
  lse: Float64Array,
): void {
  const scale = 1 / Math.sqrt(hd)
  const scores = new Float64Array(offset + count)
  for (let r = 0; r < count; r++) {
    const visible = offset + r + 1
    const qBase = r * hd
    let max = Number.NEGATIVE_INFINITY
    for (let j = 0; j < visible; j++) {
      let dot = 0
      const kBase = j * hd
      for (let c = 0; c < hd; c++) dot += q[qBase + c] * k[kBase + c]
      const score = dot * scale
      scores[j] = score
      if (score > max) max = score
    }
    let sum = 0
    for (let j = 0; j < visible; j++) {
      const p = Math.exp(scores[j] - max)
      scores[j] = p
      sum += p
    }
    const o = out.subarray(qBase, qBase + hd)
    o.fill(0)
    for (let j = 0; j < visible; j++) {
      const p = scores[j] / sum
      const vBase = j * hd
      for (let c = 0; c < hd; c++) o[c] += p * v[vBase + c]
    }
    lse[r] = max + Math.log(sum)
  }
}

/** causal self-attention over qkv [B*T, 3D] -> output [B*T, D], logSumExp [B*H*T] */
export function attentionReference(
  qkv: Float32Array,
  sizes: AttentionSizes,
): { output: Float32Array; logSumExp: Float32Array } {
  const { batch, sequence: T, heads, width: D, headWidth: hd } = sizes
  const output = new Float32Array(batch * T * D)
  const logSumExp = new Float32Array(batch * heads * T)
  const q = new Float64Array(T * hd)
  const k = new Float64Array(T * hd)
  const v = new Float64Array(T * hd)
  const out = new Float64Array(T * hd)
  const lse = new Float64Array(T)
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      gather(qkv, b * T, T, 3 * D, h * hd, hd, q)
      gather(qkv, b * T, T, 3 * D, D + h * hd, hd, k)
      gather(qkv, b * T, T, 3 * D, 2 * D + h * hd, hd, v)
      attendHead(q, k, v, T, 0, hd, out, lse)
      for (let t = 0; t < T; t++) {
        const to = (b * T + t) * D + h * hd
        for (let c = 0; c < hd; c++) output[to + c] = out[t * hd + c]
        logSumExp[(b * heads + h) * T + t] = lse[t]
      }
    }
  }
  return { output, logSumExp }
}

/**
 * The gradient of attentionReference with respect to qkv, from the forward's output and
 * log-sum-exp: P = exp(S - lse), dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)),
 * dQ = dS K / sqrt(hd), dK = dS^T Q / sqrt(hd).
 */
export function attentionBackwardReference(
  gradOutput: Float32Array,
  qkv: Float32Array,
  output: Float32Array,
  logSumExp: Float32Array,
  sizes: AttentionSizes,
): Float32Array {
  const { batch, sequence: T, heads, width: D, headWidth: hd } = sizes
  const scale = 1 / Math.sqrt(hd)
  const gradQkv = new Float32Array(batch * T * 3 * D)
  const q = new Float64Array(T * hd)
  const k = new Float64Array(T * hd)
  const v = new Float64Array(T * hd)
  const dO = new Float64Array(T * hd)
  const o = new Float64Array(T * hd)
  const dq = new Float64Array(T * hd)
  const dk = new Float64Array(T * hd)
  const dv = new Float64Array(T * hd)
  const delta = new Float64Array(T)
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      gather(qkv, b * T, T, 3 * D, h * hd, hd, q)
      gather(qkv, b * T, T, 3 * D, D + h * hd, hd, k)
      gather(qkv, b * T, T, 3 * D, 2 * D + h * hd, hd, v)
      gather(gradOutput, b * T, T, D, h * hd, hd, dO)
      gather(output, b * T, T, D, h * hd, hd, o)
      dq.fill(0)
      dk.fill(0)
      dv.fill(0)
      for (let i = 0; i < T; i++) {
        let sum = 0
        for (let c = 0; c < hd; c++) sum += dO[i * hd + c] * o[i * hd + c]
        delta[i] = sum
      }
      for (let i = 0; i < T; i++) {
        const lse = logSumExp[(b * heads + h) * T + i]
        const qi = i * hd
        for (let j = 0; j <= i; j++) {
          const kj = j * hd
          let dot = 0
          let dp = 0
          for (let c = 0; c < hd; c++) {
            dot += q[qi + c] * k[kj + c]
            dp += dO[qi + c] * v[kj + c]
          }
          const p = Math.exp(dot * scale - lse)
          const ds = p * (dp - delta[i]) * scale
          for (let c = 0; c < hd; c++) {
            dv[kj + c] += p * dO[qi + c]
            dq[qi + c] += ds * k[kj + c]
            dk[kj + c] += ds * q[qi + c]
          }
        }
      }
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * 3 * D + h * hd
        for (let c = 0; c < hd; c++) {
          gradQkv[row + c] = dq[t * hd + c]
          gradQkv[row + D + c] = dk[t * hd + c]
          gradQkv[row + 2 * D + c] = dv[t * hd + c]
        }
      }
    }
  }
  return gradQkv
}

/** queries [N, D] at positions offset .. offset + N - 1 against keys, values [L, D] -> [N, D] */
export function attentionCachedReference(
  queries: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  sizes: CachedAttentionSizes,
): Float32Array {
  const { queries: N, width: D, heads, headWidth: hd, offset } = sizes
  const visible = offset + N
  const output = new Float32Array(N * D)
  const q = new Float64Array(N * hd)
  const k = new Float64Array(visible * hd)
  const v = new Float64Array(visible * hd)
  const out = new Float64Array(N * hd)
  const lse = new Float64Array(N)
  for (let h = 0; h < heads; h++) {
    gather(queries, 0, N, D, h * hd, hd, q)
    gather(keys, 0, visible, D, h * hd, hd, k)
    gather(values, 0, visible, D, h * hd, hd, v)
    attendHead(q, k, v, N, offset, hd, out, lse)
    for (let r = 0; r < N; r++) {
      for (let c = 0; c < hd; c++) output[r * D + h * hd + c] = out[r * hd + c]
    }
  }
  return output
}
