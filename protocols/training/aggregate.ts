// The leader's pure rules for one step: which gradients to admit (screening), when enough have
// arrived (quorum), how to combine them (mean, coordinate-wise median, trimmed mean), and which
// admitted contributors pointed away from the result (suspects). No IO, no clock: time is an input.
import type { AggregateRule } from './types.js'

export type ScreeningReason = 'wrong-length' | 'non-finite' | 'norm-outlier'

export const SCREENING_REASONS: readonly ScreeningReason[] = ['wrong-length', 'non-finite', 'norm-outlier']

/** Default: a gradient whose norm exceeds 10x the median norm of the others is refused. */
export const NORM_FACTOR_MAX_DEFAULT = 10
/** Default: once a majority's gradients are in, the leader waits this long for the other members. */
export const STRAGGLER_TIMEOUT_MS_DEFAULT = 250
/**
 * Default agreement bar. Measured on MNIST micro-batches of 32: honest members score 0.03-0.4 on
 * most steps (mean about 0.12; single steps dip below 0, which is why a verdict uses the mean over
 * steps), a random gradient of the same norm scores within +-0.012.
 */
export const SUSPECT_COSINE_MIN_DEFAULT = 0.02

/** |sum of the others| / sum of their norms below which agreementScores sums element by element */
const GRAM_CANCELLATION_RATIO = 1e-3

export interface Contribution {
  member: string
  gradient: Float32Array
  loss: number
  /**
   * gradient . gradient in float64, when the caller has already computed it (squaredNorm): the
   * screening and the agreement scores then skip that pass over the gradient
   */
  squaredNorm?: number
}

export interface ScreeningResult {
  accepted: Contribution[]
  rejected: Array<{ member: string; reason: ScreeningReason }>
}

/** values . values in float64 (NaN or Infinity exactly when a value is; see screenGradients). */
export function squaredNorm(values: Float32Array): number {
  return dotProduct(values, values)
}

export function l2Norm(values: Float32Array): number {
  return Math.sqrt(squaredNorm(values))
}

function squaredNormOf(contribution: Contribution): number {
  return contribution.squaredNorm ?? squaredNorm(contribution.gradient)
}

function median(sorted: readonly number[]): number {
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/**
 * The norm rule compares a gradient with the median of at least this many others. Against one other
 * it cannot tell which of two is the outlier, and two honest gradients of a late, small-loss step
 * differ by 10x often enough: a group of two that refused one waited for a third gradient that no
 * member would send, and stalled (the e2e test that kills a group's leader for good).
 */
export const NORM_RULE_OTHERS_MIN = 2

/**
 * Refuses gradients of the wrong length, with a NaN/Inf value (or a non-finite loss), and those
 * whose L2 norm is above `normFactorMax` x the median norm of the OTHER finite gradients of the
 * right length (a leave-one-out median, so one huge gradient cannot raise its own bar). With fewer
 * than NORM_RULE_OTHERS_MIN others the norm rule does not apply.
 */
export function screenGradients(
  contributions: readonly Contribution[],
  expectedLength: number,
  normFactorMax = NORM_FACTOR_MAX_DEFAULT,
): ScreeningResult {
  const rejected: ScreeningResult['rejected'] = []
  const candidates: Array<{ contribution: Contribution; norm: number }> = []
  for (const contribution of contributions) {
    if (contribution.gradient.length !== expectedLength) {
      rejected.push({ member: contribution.member, reason: 'wrong-length' })
    } else {
      // one pass: the float64 sum of squares is NaN or Infinity exactly when a value is (a float32
      // squared is at most 1.2e77, so a sum of finite ones never overflows)
      const norm = Math.sqrt(squaredNormOf(contribution))
      if (!Number.isFinite(contribution.loss) || !Number.isFinite(norm))
        rejected.push({ member: contribution.member, reason: 'non-finite' })
      else candidates.push({ contribution, norm })
    }
  }
  const accepted: Contribution[] = []
  for (const candidate of candidates) {
    const others = candidates.filter((other) => other !== candidate).map((other) => other.norm)
    if (others.length >= NORM_RULE_OTHERS_MIN) {
      const bar = normFactorMax * median(others.sort((a, b) => a - b))
      if (candidate.norm > bar) {
        rejected.push({ member: candidate.contribution.member, reason: 'norm-outlier' })
        continue
      }
    }
    accepted.push(candidate.contribution)
  }
  return { accepted, rejected }
}

/**
 * Combines gradients of equal length coordinate by coordinate:
 * - mean: sum / n (summed in float64, in the order given)
 * - median: the middle value (mean of the two middle values for even n)
 * - trimmed-mean: drop the `trimCount` largest and smallest values, mean of the rest; when that
 *   would drop everything (n <= 2*trimCount) it falls back to the median.
 */
export function aggregateGradients(
  gradients: readonly Float32Array[],
  rule: AggregateRule,
  trimCount = 1,
): Float32Array {
  if (gradients.length === 0) throw new RangeError('nothing to aggregate')
  const length = gradients[0].length
  for (const gradient of gradients) {
    if (gradient.length !== length) throw new RangeError('gradients of different lengths')
  }
  const n = gradients.length
  const out = new Float32Array(length)
  if (rule === 'mean' || n === 1) return meanInto(out, gradients)
  if (!Number.isInteger(trimCount) || trimCount < 0) throw new RangeError(`bad trimCount ${trimCount}`)
  const useMedian = rule === 'median' || n <= 2 * trimCount
  const column = new Float64Array(n)
  for (let i = 0; i < length; i++) {
    for (let k = 0; k < n; k++) column[k] = gradients[k][i]
    if (n <= SMALL_SORT_MAX) sortSmall(column, n)
    else column.sort()
    if (useMedian) {
      const middle = n >> 1
      out[i] = n % 2 === 1 ? column[middle] : (column[middle - 1] + column[middle]) / 2
    } else {
      let sum = 0
      for (let k = trimCount; k < n - trimCount; k++) sum += column[k]
      out[i] = sum / (n - 2 * trimCount)
    }
  }
  return out
}

/** Columns up to this long are sorted by insertion (a group's size), longer ones by Float64Array sort. */
const SMALL_SORT_MAX = 16

/**
 * Sorts column[0, n) in place in Float64Array.prototype.sort's order (ascending, -0 before +0, NaN
 * last) by insertion: for the handful of values of one coordinate it is several times faster than
 * the built-in sort, which every coordinate of every step pays (measured: the median of 3 gradients
 * of 203,530 values, 50 ms with sort() against 13-18 ms on a checking follower, bench:consensus).
 */
export function sortSmall(column: Float64Array, n: number): void {
  for (let k = 1; k < n; k++) {
    const value = column[k]
    let j = k - 1
    while (j >= 0 && sortsAfter(column[j], value)) {
      column[j + 1] = column[j]
      j--
    }
    column[j + 1] = value
  }
}

/** a comes after b in Float64Array sort order */
function sortsAfter(a: number, b: number): boolean {
  if (a > b) return true
  if (a < b) return false
  if (a === b) return a === 0 && 1 / a > 0 && 1 / b < 0 // +0 after -0
  return Number.isNaN(a) && !Number.isNaN(b)
}

/**
 * out[i] = (0 + g0[i] + g1[i] + ...) / n, summed in float64 left to right. Groups of 2-4 (the usual
 * sizes) get loops with the gradients in locals, 2-3x faster than indexing the list per element and
 * the same operations in the same order, so bit for bit the same result.
 */
function meanInto(out: Float32Array, gradients: readonly Float32Array[]): Float32Array {
  const length = out.length
  const n = gradients.length
  if (n === 2) {
    const [a, b] = gradients
    for (let i = 0; i < length; i++) out[i] = (0 + a[i] + b[i]) / 2
  } else if (n === 3) {
    const [a, b, c] = gradients
    for (let i = 0; i < length; i++) out[i] = (0 + a[i] + b[i] + c[i]) / 3
  } else if (n === 4) {
    const [a, b, c, d] = gradients
    for (let i = 0; i < length; i++) out[i] = (0 + a[i] + b[i] + c[i] + d[i]) / 4
  } else {
    for (let i = 0; i < length; i++) {
      let sum = 0
      for (let k = 0; k < n; k++) sum += gradients[k][i]
      out[i] = sum / n
    }
  }
  return out
}

export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  let dot = 0
  let normA = 0
  let normB = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i]
    normA += a[i] * a[i]
    normB += b[i] * b[i]
  }
  if (normA === 0 || normB === 0) return 0
  return dot / Math.sqrt(normA * normB)
}

/**
 * Leave-one-out agreement of each admitted contributor: the cosine similarity between its gradient
 * and the mean of the OTHER admitted gradients. Honest micro-batch gradients share the true
 * gradient's direction and score above 0; a random or adversarial one scores about 0 or below.
 * (Cosine with the aggregate itself does not work: a coordinate-wise median often picks the small
 * values of a dense random vector, so it correlates with it.)
 */
export function agreementScores(accepted: readonly Contribution[]): Map<string, number> {
  const scores = new Map<string, number>()
  const n = accepted.length
  if (n < 2) return scores
  // Fast path: every score is a ratio of sums of the gradients' pairwise dot products (the Gram
  // matrix, float64), n(n-1)/2 passes over the gradients plus their squared norms where a contribution
  // does not carry it: own . others = sum_j g_k . g_j and
  // |others|^2 = sum_{i,j} g_i . g_j over the others. Those sums cancel when the others nearly cancel
  // each other (|others| much smaller than the sum of their norms: a liar sending the negation of an
  // honest gradient), and then lose every digit; such a score is computed element by element instead.
  const gram = Array.from({ length: n }, () => new Float64Array(n))
  for (let a = 0; a < n; a++) {
    gram[a][a] = squaredNormOf(accepted[a])
    for (let b = a + 1; b < n; b++) {
      const dot = dotProduct(accepted[a].gradient, accepted[b].gradient)
      gram[a][b] = dot
      gram[b][a] = dot
    }
  }
  for (let k = 0; k < n; k++) {
    let dot = 0
    let othersSquared = 0
    let normSum = 0
    for (let i = 0; i < n; i++) {
      if (i === k) continue
      dot += gram[k][i]
      normSum += Math.sqrt(gram[i][i])
      for (let j = 0; j < n; j++) if (j !== k) othersSquared += gram[i][j]
    }
    // the Gram sums' rounding is about n^2 * 2^-52 * normSum^2; below this bound it is no longer
    // negligible next to |others|^2
    if (othersSquared < GRAM_CANCELLATION_RATIO ** 2 * normSum * normSum) {
      ;({ dot, othersSquared } = leaveOneOutSums(accepted, k))
    }
    const denominator = Math.sqrt(gram[k][k] * Math.max(0, othersSquared))
    scores.set(accepted[k].member, denominator > 0 ? dot / denominator : 0)
  }
  return scores
}

/** own . others and |others|^2 for contributor k, the others summed per element in float64. */
function leaveOneOutSums(
  accepted: readonly Contribution[],
  k: number,
): { dot: number; othersSquared: number } {
  const own = accepted[k].gradient
  const others = accepted.filter((_, i) => i !== k).map((contribution) => contribution.gradient)
  let dot = 0
  let othersSquared = 0
  for (let e = 0; e < own.length; e++) {
    let sum = 0
    for (const other of others) sum += other[e]
    dot += own[e] * sum
    othersSquared += sum * sum
  }
  return { dot, othersSquared }
}

/** a . b in float64, four running sums (independent additions keep the CPU's pipeline full). */
function dotProduct(a: Float32Array, b: Float32Array): number {
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  const end = a.length - (a.length % 4)
  let i = 0
  for (; i < end; i += 4) {
    s0 += a[i] * b[i]
    s1 += a[i + 1] * b[i + 1]
    s2 += a[i + 2] * b[i + 2]
    s3 += a[i + 3] * b[i + 3]
  }
  for (; i < a.length; i++) s0 += a[i] * b[i]
  return s0 + s1 + (s2 + s3)
}

/**
 * Admitted contributors whose leave-one-out agreement is below `cosineMin`. Needs at least three
 * admitted gradients: with two, neither can be told from the other. Pass `scores` when the caller
 * already has agreementScores(accepted).
 */
export function findSuspects(
  accepted: readonly Contribution[],
  cosineMin = SUSPECT_COSINE_MIN_DEFAULT,
  scores: ReadonlyMap<string, number> = agreementScores(accepted),
): string[] {
  if (accepted.length < 3) return []
  return [...scores].filter(([, score]) => score < cosineMin).map(([member]) => member)
}

/** Members needed for a quorum: a strict majority of the group. */
export function quorumSize(memberCount: number): number {
  return Math.floor(memberCount / 2) + 1
}

export interface QuorumInput {
  memberCount: number
  /** members expected this step (live ones); the leader stops waiting once all of them are in */
  expected: readonly string[]
  /** members whose gradient for the step has arrived */
  received: readonly string[]
  /** when the quorum was first reached, undefined if not yet */
  quorumAtMs: number | undefined
  nowMs: number
  /** gradients that make a quorum. @default quorumSize(memberCount) */
  quorum?: number
  stragglerTimeoutMs: number
}

/**
 * 'aggregate' once a majority has arrived and either every expected member is in or
 * `stragglerTimeoutMs` has passed since the majority was reached; otherwise 'wait'.
 */
export function quorumDecision(input: QuorumInput): 'aggregate' | 'wait' {
  const received = new Set(input.received)
  if (received.size < (input.quorum ?? quorumSize(input.memberCount))) return 'wait'
  if (input.expected.every((member) => received.has(member))) return 'aggregate'
  if (input.quorumAtMs !== undefined && input.nowMs - input.quorumAtMs >= input.stragglerTimeoutMs) {
    return 'aggregate'
  }
  return 'wait'
}

/** What a leader has collected for its current step. */
export interface CollectedStep {
  /** admitted gradients by member */
  contributions: ReadonlyMap<string, Contribution>
  /** members whose gradient was refused on arrival, with why */
  rejected: ReadonlyMap<string, string>
  /** when the admitted gradients first reached a quorum */
  quorumAtMs: number | undefined
}

export interface StepReadinessInput {
  collected: CollectedStep
  members: readonly string[]
  lastSeenStep: ReadonlyMap<string, number>
  step: number
  /** the step at which this leader took over (expectedMembers) */
  leaderSinceStep: number
  nowMs: number
  stragglerTimeoutMs: number
  /** the gradient length every contribution must have */
  expectedLength: number
  normFactorMax: number
  /** gradients received (admitted or refused) that make a quorum. @default quorumSize(members.length) */
  quorum?: number
}

/**
 * The leader's decision for one step, as the daemon's training group and the simulator both take it:
 * undefined while it should wait (no quorum of admitted gradients yet, or expected members still
 * missing before the straggler timeout), else the admitted contributions in member order, screened.
 */
export function screenIfReady(input: StepReadinessInput): ScreeningResult | undefined {
  const { collected, members } = input
  const decision = quorumDecision({
    memberCount: members.length,
    expected: expectedMembers(members, input.lastSeenStep, input.step, input.leaderSinceStep),
    received: [...collected.contributions.keys(), ...collected.rejected.keys()],
    quorumAtMs: collected.quorumAtMs,
    nowMs: input.nowMs,
    stragglerTimeoutMs: input.stragglerTimeoutMs,
    quorum: input.quorum,
  })
  if (decision !== 'aggregate' || collected.contributions.size < quorumSize(members.length)) return undefined
  const contributions = [...collected.contributions.values()].sort((a, b) => (a.member < b.member ? -1 : 1))
  return screenGradients(contributions, input.expectedLength, input.normFactorMax)
}

/**
 * Members the leader waits for at `step`: every member in the first `graceSteps` steps of its
 * leadership (from `sinceStep`), then those that sent a gradient for one of the last `graceSteps`
 * steps. A member that has gone silent thus costs at most `graceSteps` straggler timeouts, not one
 * per step.
 */
export function expectedMembers(
  members: readonly string[],
  lastSeenStep: ReadonlyMap<string, number>,
  step: number,
  sinceStep = 0,
  graceSteps = 3,
): string[] {
  if (step < sinceStep + graceSteps) return [...members]
  return members.filter((member) => (lastSeenStep.get(member) ?? -1) >= step - graceSteps)
}
