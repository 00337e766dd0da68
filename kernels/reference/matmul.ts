// Reference matmul: the oracle for every WGSL matmul version and the CPU backend's kernel.
// Accumulates in float64 (JS numbers) and rounds once to float32 per output.

/**
 * C[M,N] = op(A)[M,K] op(B)[K,N].
 * a is stored [M,K], or [K,M] when transposeA; b is stored [K,N], or [N,K] when transposeB.
 */
export function matmulReference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transposeA = false,
  transposeB = false,
): Float32Array {
  const c = new Float32Array(m * n) // [M,N]
  // element strides of op(A)[i,p] and op(B)[p,j] in storage
  const aRow = transposeA ? 1 : k
  const aCol = transposeA ? m : 1
  const bRow = transposeB ? 1 : n
  const bCol = transposeB ? k : 1
  // Loop order i-p-j (row of A times rows of B) when B is not transposed: streams B rows.
  const acc = new Float64Array(n)
  for (let i = 0; i < m; i++) {
    acc.fill(0)
    for (let p = 0; p < k; p++) {
      const aip = a[i * aRow + p * aCol] // op(A)[i,p]
      if (aip === 0) continue
      const bBase = p * bRow
      for (let j = 0; j < n; j++) acc[j] += aip * b[bBase + j * bCol] // op(B)[p,j]
    }
    for (let j = 0; j < n; j++) c[i * n + j] = acc[j]
  }
  return c
}

/**
 * Same as matmulReference but accumulating in float32 with the i-k-j loop and no float64: the
 * "plain TypeScript loop" baseline of the benchmark (fast, no transposes).
 */
export function matmulLoopFloat32(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
): Float32Array {
  const c = new Float32Array(m * n) // [M,N]
  for (let i = 0; i < m; i++) {
    const cBase = i * n
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p] // A[i,p]
      const bBase = p * n
      for (let j = 0; j < n; j++) c[cBase + j] += aip * b[bBase + j] // B[p,j]
    }
  }
  return c
}
