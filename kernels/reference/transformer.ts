// Reference versions of the transformer ops (see backend.ts): the cpu backend's kernels. Each op
// computes in float64 (sums accumulated in float64, in the order the contract names) and rounds the
// result to float32 once.

/** sqrt(2/pi), the GELU tanh approximation's scale */
const GELU_K = Math.sqrt(2 / Math.PI)
/** the cubic coefficient of the GELU tanh approximation */
const GELU_C = 0.044715
/**
 * beyond this |x| the second term of gelu'(x) is below e^-1900 (zero even in float64), and its
 * polynomial factor could overflow to infinity times a zero
 */
const GELU_SATURATION = 30

/** y = a + b */
export function addReference(a: Float32Array, b: Float32Array): Float32Array {
  const y = new Float32Array(a.length)
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i]
  return y
}

/** an id that selects a row of a table of `rows` rows, or -1 */
function rowOf(id: number, rows: number): number {
  return Number.isInteger(id) && id >= 0 && id < rows ? id : -1
}

/** out[n, :] = table[ids[n], :] for table [rows, width]; an invalid id gives a NaN row */
export function embeddingReference(
  table: Float32Array,
  ids: Float32Array,
  rows: number,
  width: number,
): Float32Array {
  const out = new Float32Array(ids.length * width) // [N, width]
  for (let n = 0; n < ids.length; n++) {
    const row = rowOf(ids[n], rows)
    if (row < 0) out.fill(Number.NaN, n * width, (n + 1) * width)
    else out.set(table.subarray(row * width, (row + 1) * width), n * width)
  }
  return out
}

/** dTable[rows, width]: row v sums gradOutput[n, :] over ids[n] = v in ascending n */
export function embeddingBackwardReference(
  gradOutput: Float32Array,
  ids: Float32Array,
  rows: number,
  width: number,
): Float32Array {
  const acc = new Float64Array(rows * width)
  for (let n = 0; n < ids.length; n++) {
    const row = rowOf(ids[n], rows)
    if (row < 0) continue
    for (let j = 0; j < width; j++) acc[row * width + j] += gradOutput[n * width + j]
  }
  return Float32Array.from(acc)
}

/** LayerNorm over rows of x [m, d] with the biased variance; returns y, mean [m], rstd [m] */
export function layerNormReference(
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  m: number,
  d: number,
  epsilon: number,
): { y: Float32Array; mean: Float32Array; rstd: Float32Array } {
  const y = new Float32Array(m * d)
  const means = new Float32Array(m)
  const rstds = new Float32Array(m)
  for (let i = 0; i < m; i++) {
    const base = i * d
    let sum = 0
    for (let j = 0; j < d; j++) sum += x[base + j]
    const mean = sum / d
    let squares = 0
    for (let j = 0; j < d; j++) squares += (x[base + j] - mean) ** 2
    const rstd = 1 / Math.sqrt(squares / d + epsilon)
    for (let j = 0; j < d; j++) y[base + j] = (x[base + j] - mean) * rstd * gamma[j] + beta[j]
    means[i] = mean
    rstds[i] = rstd
  }
  return { y, mean: means, rstd: rstds }
}

/**
 * With xhat = (x - mean) * rstd and g = dy * gamma:
 * dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat)); dGamma = sum_i dy * xhat; dBeta = sum_i dy
 */
export function layerNormBackwardReference(
  gradOutput: Float32Array,
  x: Float32Array,
  gamma: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  m: number,
  d: number,
): { gradInput: Float32Array; gradGamma: Float32Array; gradBeta: Float32Array } {
  const gradInput = new Float32Array(m * d)
  const gradGamma = new Float64Array(d)
  const gradBeta = new Float64Array(d)
  for (let i = 0; i < m; i++) {
    const base = i * d
    let sumG = 0
    let sumGXhat = 0
    for (let j = 0; j < d; j++) {
      const dy = gradOutput[base + j]
      const xhat = (x[base + j] - mean[i]) * rstd[i]
      const g = dy * gamma[j]
      sumG += g
      sumGXhat += g * xhat
      gradGamma[j] += dy * xhat
      gradBeta[j] += dy
    }
    const meanG = sumG / d
    const meanGXhat = sumGXhat / d
    for (let j = 0; j < d; j++) {
      const xhat = (x[base + j] - mean[i]) * rstd[i]
      gradInput[base + j] = rstd[i] * (gradOutput[base + j] * gamma[j] - meanG - xhat * meanGXhat)
    }
  }
  return { gradInput, gradGamma: Float32Array.from(gradGamma), gradBeta: Float32Array.from(gradBeta) }
}

/**
 * GELU, tanh approximation, written as x * sigmoid(2u) with u = k (x + c x^3): the same function
 * as 0.5 x (1 + tanh(u)) without the cancellation of 1 + tanh(u) for negative x
 */
export function geluReference(x: Float32Array): Float32Array {
  const y = new Float32Array(x.length)
  for (let i = 0; i < x.length; i++) {
    const v = x[i]
    y[i] = v / (1 + Math.exp(-2 * GELU_K * (v + GELU_C * v * v * v)))
  }
  return y
}

/** dx = dy * (s + 2 x k (1 + 3 c x^2) s (1 - s)) with s = sigmoid(2u) */
export function geluBackwardReference(gradOutput: Float32Array, x: Float32Array): Float32Array {
  const dx = new Float32Array(x.length)
  for (let i = 0; i < x.length; i++) {
    const v = x[i]
    const u = GELU_K * (v + GELU_C * v * v * v)
    const s = 1 / (1 + Math.exp(-2 * u))
    const oneMinusS = 1 / (1 + Math.exp(2 * u))
    const slope =
      Math.abs(v) > GELU_SATURATION ? 0 : 2 * v * GELU_K * (1 + 3 * GELU_C * v * v) * s * oneMinusS
    dx[i] = gradOutput[i] * (s + slope)
  }
  return dx
}

/** y[1] = sum of x[i]^2, accumulated in float64 */
export function sumSquaresReference(x: Float32Array): Float32Array {
  let sum = 0
  for (let i = 0; i < x.length; i++) sum += x[i] * x[i]
  return Float32Array.of(sum)
}
