/**
 * The capability challenge: a submitter measures a claimant's speed instead of believing its claim.
 *
 * The submitter sends a Challenge (a random seed and a shape) to a worker that claimed its task; the
 * worker generates A (rows x inner) and B (inner x cols) from the seed with {@link challengeMatrices},
 * computes C = A B in float32 on its backend and answers with C. The submitter times the exchange and
 * checks C in float64 with {@link checkChallengeAnswer}: Freivalds' test (C r against A (B r) for random
 * r in {-1, 1}^cols) and a few entries recomputed whole.
 *
 * Tolerance: an entry may be off by t_ij = tau u sum_l |a_il b_lj|, u = 2^-24, tau = max(32, sqrt(inner)/2)
 * (55 at the default shape). Measured at the default shape: lavapipe's webgpu matmul (float32
 * accumulation) is off by at most 4.6 u sum|ab|, the cpu backend by 0.04 (it accumulates in float64), so
 * the margin is 12x for the worse. Rounding errors of different entries are independent, so a row of
 * Freivalds' test may be off by 4 sqrt(sum_j t_ij^2) ~ 4 (sum_j t_ij) / sqrt(cols) (the t_ij of a row
 * are all about equal for these random matrices). At the default shape an entry is about 37 in size and
 * t_ij about 0.01: an answer with a single entry off by 1, or with 1/100 of the products skipped
 * (about 3.7 per entry), fails.
 *
 * The default shape (64 x 12288 x 64, 0.1 GFLOP) takes about 85 ms on the cpu backend of a shared
 * 2-core machine (1.2 GFLOP/s), and its answer (16 KiB) fits one claim frame.
 */
import type { Backend } from '../../kernels/backend.js'

export const CHALLENGE_SEED_BYTES = 16
export const CHALLENGE_ROWS_DEFAULT = 64
export const CHALLENGE_INNER_DEFAULT = 12_288
export const CHALLENGE_COLS_DEFAULT = 64
/** The largest answer (rows x cols floats): 48 KiB, inside the claim protocol's 64 KiB frame. */
export const CHALLENGE_RESULT_FLOATS_MAX = 12_288
/** The largest inputs a worker generates ((rows + cols) x inner floats): 16 MiB of float32. */
export const CHALLENGE_INPUT_FLOATS_MAX = 4 * 1024 * 1024
/** How long the answer may take before the worker counts as timed out. */
export const CHALLENGE_TIMEOUT_MS_DEFAULT = 10_000
/** Entries recomputed whole, besides Freivalds' test. */
export const CHALLENGE_ENTRIES_CHECKED = 16
/** Freivalds rounds (each catches a wrong row with probability >= 1/2; most errors far more surely). */
export const CHALLENGE_FREIVALDS_ROUNDS = 2

export interface ChallengeShape {
  rows: number
  inner: number
  cols: number
}

export const CHALLENGE_SHAPE_DEFAULT: ChallengeShape = {
  rows: CHALLENGE_ROWS_DEFAULT,
  inner: CHALLENGE_INNER_DEFAULT,
  cols: CHALLENGE_COLS_DEFAULT,
}

/** undefined when a worker may be asked to compute this shape, else what is wrong. */
export function challengeShapeProblem(shape: ChallengeShape): string | undefined {
  const { rows, inner, cols } = shape
  if (![rows, inner, cols].every((n) => Number.isSafeInteger(n) && n >= 1)) return 'shape'
  if (rows * cols > CHALLENGE_RESULT_FLOATS_MAX) return 'result size'
  if ((rows + cols) * inner > CHALLENGE_INPUT_FLOATS_MAX) return 'input size'
  return undefined
}

/** xoshiro128** seeded from the 16-byte seed (a zero seed is mapped to a fixed non-zero state). */
function generator(seed: Uint8Array): () => number {
  const view = new DataView(seed.buffer, seed.byteOffset, seed.byteLength)
  let s0 = view.getUint32(0, true)
  let s1 = view.getUint32(4, true)
  let s2 = view.getUint32(8, true)
  let s3 = view.getUint32(12, true)
  if ((s0 | s1 | s2 | s3) === 0) s0 = 0x9e3779b9
  return () => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
    const t = s1 << 9
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotl(s3, 11)
    return result
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}

/**
 * A (rows x inner) and B (inner x cols), row-major, every value a multiple of 2^-23 in [-1, 1) (exact in
 * float32), from `seed`. Both sides generate the same matrices.
 */
export function challengeMatrices(
  seed: Uint8Array,
  shape: ChallengeShape,
): { a: Float32Array; b: Float32Array } {
  if (seed.byteLength !== CHALLENGE_SEED_BYTES) throw new RangeError('a challenge seed is 16 bytes')
  const problem = challengeShapeProblem(shape)
  if (problem !== undefined) throw new RangeError(`challenge ${problem} out of range`)
  const next = generator(seed)
  const a = new Float32Array(shape.rows * shape.inner)
  const b = new Float32Array(shape.inner * shape.cols)
  for (let i = 0; i < a.length; i++) a[i] = (next() >>> 8) / 2 ** 23 - 1
  for (let i = 0; i < b.length; i++) b[i] = (next() >>> 8) / 2 ** 23 - 1
  return { a, b }
}

/** The worker's side: C = A B on `backend`, as little-endian float32 bytes. */
export async function computeChallenge(
  backend: Backend,
  seed: Uint8Array,
  shape: ChallengeShape,
): Promise<Uint8Array<ArrayBuffer>> {
  const { a, b } = challengeMatrices(seed, shape)
  const ta = backend.upload(a, [shape.rows, shape.inner])
  const tb = backend.upload(b, [shape.inner, shape.cols])
  const tc = backend.matmul(ta, tb)
  try {
    return floatsToLittleEndian(await backend.read(tc))
  } finally {
    ta.dispose()
    tb.dispose()
    tc.dispose()
  }
}

export function floatsToLittleEndian(values: Float32Array): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(values.length * 4)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true)
  return bytes
}

export function littleEndianToFloats(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const values = new Float32Array(Math.floor(bytes.byteLength / 4))
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(i * 4, true)
  return values
}

/** Why an answer was refused. */
export type ChallengeFault = 'length' | 'not-finite' | 'freivalds' | 'entry'

/** tau u of the tolerance (see the file comment). */
function toleranceFactor(inner: number): number {
  return Math.max(32, Math.sqrt(inner) / 2) * 2 ** -24
}

/**
 * The submitter's check of an answer, in float64; undefined when it is right. `random` picks the
 * Freivalds vectors and the entries (Math.random by default: the worker must not predict them).
 */
export function checkChallengeAnswer(
  seed: Uint8Array,
  shape: ChallengeShape,
  answer: Uint8Array,
  random: () => number = Math.random,
): ChallengeFault | undefined {
  const { rows, inner, cols } = shape
  if (answer.byteLength !== rows * cols * 4) return 'length'
  const c = littleEndianToFloats(answer)
  for (let i = 0; i < c.length; i++) if (!Number.isFinite(c[i])) return 'not-finite'
  const { a, b } = challengeMatrices(seed, shape)
  const g = toleranceFactor(inner)
  // row bounds of Freivalds: 4 (sum_j t_ij) / sqrt(cols), sum_j t_ij = g sum_l |a_il| sum_j |b_lj|
  const bAbsRowSums = new Float64Array(inner)
  for (let l = 0; l < inner; l++) {
    let sum = 0
    for (let j = 0; j < cols; j++) sum += Math.abs(b[l * cols + j])
    bAbsRowSums[l] = sum
  }
  const rowBound = new Float64Array(rows)
  for (let i = 0; i < rows; i++) {
    let sum = 0
    for (let l = 0; l < inner; l++) sum += Math.abs(a[i * inner + l]) * bAbsRowSums[l]
    rowBound[i] = (4 * g * sum) / Math.sqrt(cols)
  }
  for (let round = 0; round < CHALLENGE_FREIVALDS_ROUNDS; round++) {
    const r = new Float64Array(cols)
    for (let j = 0; j < cols; j++) r[j] = random() < 0.5 ? -1 : 1
    const br = new Float64Array(inner)
    for (let l = 0; l < inner; l++) {
      let sum = 0
      for (let j = 0; j < cols; j++) sum += b[l * cols + j] * r[j]
      br[l] = sum
    }
    for (let i = 0; i < rows; i++) {
      let expected = 0
      for (let l = 0; l < inner; l++) expected += a[i * inner + l] * br[l]
      let got = 0
      for (let j = 0; j < cols; j++) got += c[i * cols + j] * r[j]
      // float64 rounding of these sums is ~1e-16 relative: a 1e-9 margin covers it with room
      if (Math.abs(got - expected) > rowBound[i] * (1 + 1e-9) + 1e-9) return 'freivalds'
    }
  }
  for (let k = 0; k < CHALLENGE_ENTRIES_CHECKED; k++) {
    const i = Math.min(rows - 1, Math.floor(random() * rows))
    const j = Math.min(cols - 1, Math.floor(random() * cols))
    let expected = 0
    let magnitude = 0
    for (let l = 0; l < inner; l++) {
      const product = a[i * inner + l] * b[l * cols + j]
      expected += product
      magnitude += Math.abs(product)
    }
    if (Math.abs(c[i * cols + j] - expected) > g * magnitude * (1 + 1e-9) + 1e-12) return 'entry'
  }
  return undefined
}

/** GFLOP/s of a challenge of `shape` answered in `seconds` (2 rows inner cols operations). */
export function challengeGflops(shape: ChallengeShape, seconds: number): number {
  return (2 * shape.rows * shape.inner * shape.cols) / Math.max(seconds, 1e-6) / 1e9
}
