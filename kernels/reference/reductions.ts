// Reference reductions. Accumulate in float64 so the oracle is more accurate than any float32 kernel.

/** y[N] = sum over rows of x[M,N] */
export function sumRowsReference(x: Float32Array, m: number, n: number): Float32Array {
  const acc = new Float64Array(n)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) acc[j] += x[i * n + j] // x[i,j]
  }
  return Float32Array.from(acc)
}

/** y[N] = mean over rows of x[M,N] (0 rows gives NaN, as 0/0) */
export function meanRowsReference(x: Float32Array, m: number, n: number): Float32Array {
  const sums = sumRowsReference(x, m, n)
  for (let j = 0; j < n; j++) sums[j] = sums[j] / m
  return sums
}

/** y[1] = sum of all elements */
export function sumReference(x: Float32Array): Float32Array {
  let acc = 0
  for (let i = 0; i < x.length; i++) acc += x[i]
  return Float32Array.of(acc)
}

/** y[1] = mean of all elements */
export function meanReference(x: Float32Array): Float32Array {
  return Float32Array.of(sumReference(x)[0] / x.length)
}
