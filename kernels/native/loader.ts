// Loads the native cpu engine (shardnet_cpu.c, built by scripts/setup.sh into build/Release) and
// wraps it in the CpuEngine contract. Loading happens once per process (and once per worker thread);
// a missing or broken build is an answer ({ error }), never a throw: the cpu backend then computes on
// another engine.
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import type { QuantizedInt8 } from '../backend.js'
import type { CpuEngine, CpuOps } from '../cpu/engine.js'
import { adamWConstants } from '../reference/optimizers.js'

/** the addon's functions (kernels/native/shardnet_cpu.c); each fills arrays the caller allocated */
interface NativeAddon {
  setThreads(threads: number): void
  describe(): { blas: string; blasConfig: string; threads: number; processors: number }
  matmul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    ta: boolean,
    tb: boolean,
  ): void
  biasAdd(x: Float32Array, bias: Float32Array, y: Float32Array): void
  relu(x: Float32Array, y: Float32Array): void
  reluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array): void
  add(a: Float32Array, b: Float32Array, y: Float32Array): void
  axpy(alpha: number, x: Float32Array, y: Float32Array): void
  scale(x: Float32Array, alpha: number, y: Float32Array): void
  gelu(x: Float32Array, y: Float32Array): void
  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array): void
  sumRows(x: Float32Array, y: Float32Array, m: number, n: number, mean: boolean): void
  sum(x: Float32Array, squares: boolean): number
  softmaxCrossEntropy(
    logits: Float32Array,
    labels: Float32Array,
    loss: Float32Array,
    grad: Float32Array,
    m: number,
    c: number,
  ): void
  sgdMomentum(
    p: Float32Array,
    g: Float32Array,
    v: Float32Array,
    lr: number,
    momentum: number,
    wd: number,
  ): void
  adamW(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    lr: number,
    beta1: number,
    beta2: number,
    epsilon: number,
    weightDecay: number,
    gradientScale: number,
    correction1: number,
    correction2: number,
  ): void
  quantizeInt8(x: Float32Array, values: Int8Array, scales: Float32Array, blockSize: number): void
  dequantizeInt8(values: Int8Array, scales: Float32Array, blockSize: number, x: Float32Array): void
  embedding(table: Float32Array, ids: Float32Array, out: Float32Array, rows: number, width: number): void
  embeddingBackward(
    dy: Float32Array,
    ids: Float32Array,
    table: Float32Array,
    rows: number,
    width: number,
  ): void
  layerNorm(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    m: number,
    d: number,
    epsilon: number,
  ): void
  layerNormBackward(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dGamma: Float32Array,
    dBeta: Float32Array,
    m: number,
    d: number,
  ): void
  attention(
    qkv: Float32Array,
    out: Float32Array,
    lse: Float32Array,
    b: number,
    t: number,
    h: number,
    d: number,
  ): void
  attentionBackward(
    dOut: Float32Array,
    qkv: Float32Array,
    out: Float32Array,
    lse: Float32Array,
    dQkv: Float32Array,
    b: number,
    t: number,
    h: number,
    d: number,
  ): void
  attentionCached(
    queries: Float32Array,
    keys: Float32Array,
    values: Float32Array,
    out: Float32Array,
    n: number,
    h: number,
    offset: number,
  ): void
}

/** where scripts/setup.sh builds the addon */
export const NATIVE_ADDON_PATH = new URL('./build/Release/shardnet_cpu.node', import.meta.url).pathname

/** the threads the engine computes on: SHARDNET_CPU_THREADS, else every core */
export function nativeThreads(): number {
  const configured = process.env.SHARDNET_CPU_THREADS
  if (configured !== undefined && configured !== '') {
    const threads = Number(configured)
    if (Number.isInteger(threads) && threads >= 1) return threads
  }
  return availableParallelism()
}

function nativeOps(addon: NativeAddon): Partial<CpuOps> {
  return {
    matmul(a, b, m, k, n, transposeA = false, transposeB = false) {
      const c = new Float32Array(m * n)
      addon.matmul(a, b, c, m, k, n, transposeA, transposeB)
      return c
    },
    biasAdd(x, bias) {
      const y = new Float32Array(x.length)
      if (x.length > 0) addon.biasAdd(x, bias, y)
      return y
    },
    relu(x) {
      const y = new Float32Array(x.length)
      addon.relu(x, y)
      return y
    },
    reluBackward(gradOutput, input) {
      const dx = new Float32Array(input.length)
      addon.reluBackward(gradOutput, input, dx)
      return dx
    },
    add(a, b) {
      const y = new Float32Array(a.length)
      addon.add(a, b, y)
      return y
    },
    axpy(alpha, x, y) {
      addon.axpy(alpha, x, y)
    },
    scale(x, alpha) {
      const y = new Float32Array(x.length)
      addon.scale(x, alpha, y)
      return y
    },
    gelu(x) {
      const y = new Float32Array(x.length)
      addon.gelu(x, y)
      return y
    },
    geluBackward(gradOutput, x) {
      const dx = new Float32Array(x.length)
      addon.geluBackward(gradOutput, x, dx)
      return dx
    },
    sumRows(x, m, n) {
      const y = new Float32Array(n)
      addon.sumRows(x, y, m, n, false)
      return y
    },
    meanRows(x, m, n) {
      const y = new Float32Array(n)
      addon.sumRows(x, y, m, n, true)
      return y
    },
    sum(x) {
      return Float32Array.of(addon.sum(x, false))
    },
    mean(x) {
      return Float32Array.of(Math.fround(addon.sum(x, false)) / x.length)
    },
    sumSquares(x) {
      return Float32Array.of(addon.sum(x, true))
    },
    softmaxCrossEntropy(logits, labels, m, c) {
      const loss = new Float32Array(m)
      const gradLogits = new Float32Array(m * c)
      addon.softmaxCrossEntropy(logits, labels, loss, gradLogits, m, c)
      return { loss, gradLogits }
    },
    sgdMomentum(param, grad, velocity, options) {
      addon.sgdMomentum(
        param,
        grad,
        velocity,
        options.learningRate,
        options.momentum ?? 0.9,
        options.weightDecay ?? 0,
      )
    },
    adamW(param, grad, m, v, options) {
      const c = adamWConstants(options)
      addon.adamW(
        param,
        grad,
        m,
        v,
        c.learningRate,
        c.beta1,
        c.beta2,
        c.epsilon,
        c.weightDecay,
        c.gradientScale,
        c.biasCorrection1,
        c.biasCorrection2,
      )
    },
    quantizeInt8(x, blockSize): QuantizedInt8 {
      const values = new Int8Array(x.length)
      const scales = new Float32Array(Math.ceil(x.length / blockSize))
      addon.quantizeInt8(x, values, scales, blockSize)
      return { values, scales, blockSize, length: x.length }
    },
    dequantizeInt8(quantized) {
      const x = new Float32Array(quantized.length)
      addon.dequantizeInt8(quantized.values, quantized.scales, quantized.blockSize, x)
      return x
    },
    embedding(table, ids, rows, width) {
      const out = new Float32Array(ids.length * width)
      addon.embedding(table, ids, out, rows, width)
      return out
    },
    embeddingBackward(gradOutput, ids, rows, width) {
      const table = new Float32Array(rows * width)
      addon.embeddingBackward(gradOutput, ids, table, rows, width)
      return table
    },
    layerNorm(x, gamma, beta, m, d, epsilon) {
      const y = new Float32Array(m * d)
      const mean = new Float32Array(m)
      const rstd = new Float32Array(m)
      addon.layerNorm(x, gamma, beta, y, mean, rstd, m, d, epsilon)
      return { y, mean, rstd }
    },
    layerNormBackward(gradOutput, x, gamma, mean, rstd, m, d) {
      const gradInput = new Float32Array(m * d)
      const gradGamma = new Float32Array(d)
      const gradBeta = new Float32Array(d)
      addon.layerNormBackward(gradOutput, x, gamma, mean, rstd, gradInput, gradGamma, gradBeta, m, d)
      return { gradInput, gradGamma, gradBeta }
    },
    attention(qkv, sizes) {
      const { batch, sequence, heads, width } = sizes
      const output = new Float32Array(batch * sequence * width)
      const logSumExp = new Float32Array(batch * heads * sequence)
      if (output.length > 0) addon.attention(qkv, output, logSumExp, batch, sequence, heads, width)
      return { output, logSumExp }
    },
    attentionBackward(gradOutput, qkv, output, logSumExp, sizes) {
      const { batch, sequence, heads, width } = sizes
      const gradQkv = new Float32Array(qkv.length)
      if (gradQkv.length > 0)
        addon.attentionBackward(gradOutput, qkv, output, logSumExp, gradQkv, batch, sequence, heads, width)
      return gradQkv
    },
    attentionCached(queries, keys, values, sizes) {
      const output = new Float32Array(queries.length)
      if (sizes.queries > 0)
        addon.attentionCached(queries, keys, values, output, sizes.queries, sizes.heads, sizes.offset)
      return output
    },
  }
}

export type NativeLoad = { engine: CpuEngine } | { error: string }

let loaded: NativeLoad | undefined

/** The native engine, or why it cannot load here. */
export function loadNativeEngine(): NativeLoad {
  if (loaded !== undefined) return loaded
  const require = createRequire(import.meta.url)
  // OpenMP's idle threads sleep at once instead of spinning for a while after every op: a daemon
  // shares its cores with libp2p, Raft and often other daemons, and every op here is long enough
  // (tens of microseconds and up) that the wake-up costs little. libgomp reads this when it loads.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE'
  try {
    const addon = require(NATIVE_ADDON_PATH) as NativeAddon
    const threads = nativeThreads()
    addon.setThreads(threads)
    const description = addon.describe()
    loaded = {
      engine: Object.freeze({
        name: 'native' as const,
        description: `${description.blas.trim()} + C kernels, ${threads} thread${threads === 1 ? '' : 's'}`,
        threads,
        ops: Object.freeze(nativeOps(addon)),
      }),
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error)
    loaded = {
      error: `${reason} (build it with scripts/build-native.sh: needs a C compiler and OpenBLAS)`,
    }
  }
  return loaded
}
