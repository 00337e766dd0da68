// Reference elementwise ops: bias add, ReLU forward/backward, axpy, scale. Float32 in, float32 out.

/** y[M,N] = x[M,N] + bias[N], bias broadcast over rows (x may have any rank; N = its last dim) */
export function biasAddReference(x: Float32Array, bias: Float32Array): Float32Array {
  const n = bias.length
  const y = new Float32Array(x.length)
  for (let i = 0; i < x.length; i += n) {
    for (let j = 0; j < n; j++) y[i + j] = x[i + j] + bias[j]
  }
  return y
}

/** y = max(x, 0) */
export function reluReference(x: Float32Array): Float32Array {
  const y = new Float32Array(x.length)
  // Math.max would propagate NaN; the WGSL select(0, x, x > 0) maps NaN to 0, and so does this
  // biome-ignore lint/complexity/useMathMinMax: NaN maps to 0 here, as in the WGSL kernel
  for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? x[i] : 0
  return y
}

/** dx = dy where x > 0, else 0 */
export function reluBackwardReference(gradOutput: Float32Array, input: Float32Array): Float32Array {
  const dx = new Float32Array(input.length)
  for (let i = 0; i < input.length; i++) dx[i] = input[i] > 0 ? gradOutput[i] : 0
  return dx
}

/** y += alpha * x, in place (float32 rounding of alpha, as on the device) */
export function axpyReference(alpha: number, x: Float32Array, y: Float32Array): void {
  const a = Math.fround(alpha)
  for (let i = 0; i < x.length; i++) y[i] += a * x[i]
}

/** y = alpha * x */
export function scaleReference(x: Float32Array, alpha: number): Float32Array {
  const a = Math.fround(alpha)
  const y = new Float32Array(x.length)
  for (let i = 0; i < x.length; i++) y[i] = a * x[i]
  return y
}
