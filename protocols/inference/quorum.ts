/**
 * Sharded inference with replicated results and a quorum vote: pure logic, no IO, no clock.
 *
 * - {@link planShards} splits `count` input rows into contiguous, ordered, balanced shards.
 * - {@link choosePeers} places a shard's replicas on distinct peers, best score first, skipping peers
 *   that already ran (or failed) that shard, so a re-run always goes elsewhere.
 * - {@link vote} groups the replica results of one shard into clusters of agreeing results and decides:
 *   accept (a majority agree), run more replicas elsewhere, or fail (no peers left / too many runs).
 * - {@link scoreChanges} turns a decision into score changes: agreeing peers gain, outliers lose more.
 *
 * Agreement of two results (same shape, every value finite):
 * - same backend class (backend kind and adapter, e.g. `cpu:cpu (reference ops)`): bitwise equal;
 * - different backend classes: every logit within the stated tolerance
 *   `|a - b| <= LOGIT_TOLERANCE.absolute + LOGIT_TOLERANCE.relative * max(|a|, |b|)`
 *   (1e-3 + 1e-3·|x|: float32 matmul reassociation on a GPU moves MNIST MLP logits by ~1e-5).
 *
 * The accepted logits are the element-wise median of the agreeing cluster (the mean of the two middle
 * values when it has an even size), not any one member's: a liar whose values stay within the
 * tolerance, and who answers first, can then move no logit in a cluster of 3 or more with an honest
 * majority (the median is an honest value), and by at most half its offset in a cluster of 2. It is
 * deterministic: it depends only on the multiset of agreeing results, not on their order. Results of
 * one backend class that agree are bitwise equal, so an honest cluster gives exactly their values.
 *
 * A shard is accepted when its largest cluster holds at least a majority of the R replicas asked for
 * (floor(R/2) + 1) and more than half of all the results gathered so far. Otherwise
 * `max(1, majority - largest)` more replicas run on peers that have not run the shard yet. With R = 1
 * a single result is accepted unchecked (no redundancy was asked for).
 */

export interface Tolerance {
  absolute: number
  relative: number
}
export const LOGIT_TOLERANCE: Readonly<Tolerance> = { absolute: 1e-3, relative: 1e-3 }
/** Runs of one shard (first replicas and re-runs together) after which the shard fails. */
export function runsMax(replicas: number): number {
  return 2 * replicas + 1
}
/** Score change of a peer whose result agreed with the accepted one. */
export const SCORE_AGREED = 1
/** Score change of a peer whose result disagreed with the accepted one (the outlier). */
export const SCORE_OUTLIER = -5
/** Score change of a peer that failed to answer (error, timeout, malformed result). */
export const SCORE_FAILED = -1

export interface ShardRange {
  index: number
  /** first row, inclusive */
  start: number
  /** last row, exclusive */
  end: number
}

/** Contiguous shards covering 0..count in order; at most `count` of them, sizes differing by at most 1. */
export function planShards(count: number, shards: number): ShardRange[] {
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`count must be a positive integer, got ${count}`)
  if (!Number.isInteger(shards) || shards < 1)
    throw new RangeError(`shards must be a positive integer, got ${shards}`)
  const n = Math.min(shards, count)
  const base = Math.floor(count / n)
  const extra = count % n
  const ranges: ShardRange[] = []
  let start = 0
  for (let index = 0; index < n; index++) {
    const size = base + (index < extra ? 1 : 0)
    ranges.push({ index, start, end: start + size })
    start += size
  }
  return ranges
}

export function majority(replicas: number): number {
  return Math.floor(replicas / 2) + 1
}

/** 32-bit FNV-1a of a string: a deterministic tie-breaker that spreads shards over peers. */
function hash(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/**
 * Up to `count` distinct peers from `candidates` that are not in `exclude`: highest score first
 * (unknown peers score 0), ties broken by a per-shard hash so different shards land on different peers.
 */
export function choosePeers(
  candidates: readonly string[],
  options: {
    count: number
    exclude?: Iterable<string>
    scores?: ReadonlyMap<string, number>
    shard?: number
  },
): string[] {
  const exclude = new Set(options.exclude ?? [])
  const scores = options.scores ?? new Map<string, number>()
  const unique = [...new Set(candidates)].filter((peer) => !exclude.has(peer))
  const key = (peer: string) => hash(`${options.shard ?? 0}/${peer}`)
  unique.sort((a, b) => (scores.get(b) ?? 0) - (scores.get(a) ?? 0) || key(a) - key(b) || (a < b ? -1 : 1))
  return unique.slice(0, Math.max(0, options.count))
}

/** One replica's answer for a shard. */
export interface ReplicaResult {
  peer: string
  /** backend kind and adapter; results of one class must agree bitwise */
  backendClass: string
  /** rows x classes logits, row-major */
  logits: Float32Array
}

function finite(values: Float32Array): boolean {
  for (const v of values) if (!Number.isFinite(v)) return false
  return true
}

/** Whether two results agree (see the module comment). Non-finite values never agree. */
export function agree(a: ReplicaResult, b: ReplicaResult, tolerance: Tolerance = LOGIT_TOLERANCE): boolean {
  if (a.logits.length !== b.logits.length) return false
  if (!finite(a.logits) || !finite(b.logits)) return false
  if (a.backendClass === b.backendClass) {
    const x = new Uint8Array(a.logits.buffer, a.logits.byteOffset, a.logits.byteLength)
    const y = new Uint8Array(b.logits.buffer, b.logits.byteOffset, b.logits.byteLength)
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false
    return true
  }
  for (let i = 0; i < a.logits.length; i++) {
    const p = a.logits[i]
    const q = b.logits[i]
    if (Math.abs(p - q) > tolerance.absolute + tolerance.relative * Math.max(Math.abs(p), Math.abs(q)))
      return false
  }
  return true
}

/**
 * Clusters of agreeing results: each result joins the first cluster whose first member it agrees with,
 * in the order given (deterministic; agreement within a tolerance is not transitive, so the first
 * member stands for its cluster). Results of the wrong length or with NaN/Inf form no cluster.
 */
export function clusters(
  results: readonly ReplicaResult[],
  expectedLength: number,
  tolerance: Tolerance = LOGIT_TOLERANCE,
): ReplicaResult[][] {
  const out: ReplicaResult[][] = []
  for (const result of results) {
    if (result.logits.length !== expectedLength || !finite(result.logits)) continue
    const home = out.find((cluster) => agree(cluster[0], result, tolerance))
    if (home !== undefined) home.push(result)
    else out.push([result])
  }
  return out
}

/**
 * Element-wise median of equally long vectors (the mean of the two middle values for an even count,
 * computed in float64 and rounded once to float32); independent of the order of `values`.
 */
export function elementwiseMedian(values: readonly Float32Array[]): Float32Array {
  if (values.length === 0) throw new RangeError('the median of no vectors')
  const length = values[0].length
  if (values.some((v) => v.length !== length)) throw new RangeError('vectors of different lengths')
  if (values.length === 1) return Float32Array.from(values[0])
  const out = new Float32Array(length)
  const column = new Float64Array(values.length)
  const middle = values.length >> 1
  for (let i = 0; i < length; i++) {
    for (let k = 0; k < values.length; k++) column[k] = values[k][i]
    column.sort()
    out[i] = values.length % 2 === 1 ? column[middle] : (column[middle - 1] + column[middle]) / 2
  }
  return out
}

export type VoteDecision =
  | {
      kind: 'accept'
      /** the accepted logits: the element-wise median of the agreeing results */
      logits: Float32Array
      agreeing: string[]
      outliers: string[]
    }
  | { kind: 'run'; count: number; reason: string }
  | { kind: 'fail'; reason: string }

export interface VoteInput {
  replicas: number
  /** rows x classes of this shard */
  expectedLength: number
  /** every result gathered for the shard so far, in arrival order */
  results: readonly ReplicaResult[]
  /** runs started so far (results plus failures) */
  runs: number
  /** peers that could still take a re-run (not yet asked for this shard) */
  available: number
  tolerance?: Tolerance
}

/** The decision for one shard once every run started for it has answered or failed. */
export function vote(input: VoteInput): VoteDecision {
  const need = majority(input.replicas)
  const groups = clusters(input.results, input.expectedLength, input.tolerance)
  const largest = groups.reduce<ReplicaResult[]>((best, c) => (c.length > best.length ? c : best), [])
  // more than half of all results: two clusters can never both pass
  if (largest.length >= need && largest.length * 2 > input.results.length) {
    const agreeing = new Set(largest.map((r) => r.peer))
    return {
      kind: 'accept',
      logits: elementwiseMedian(largest.map((r) => r.logits)),
      agreeing: [...agreeing],
      outliers: [...new Set(input.results.map((r) => r.peer).filter((p) => !agreeing.has(p)))],
    }
  }
  const missing = Math.max(1, need - largest.length, input.results.length + 1 - 2 * largest.length)
  const reason =
    input.results.length === 0
      ? 'no replica answered'
      : `no majority: the largest agreeing set has ${largest.length} of ${input.results.length} ` +
        `results, ${need} needed`
  if (input.runs >= runsMax(input.replicas))
    return { kind: 'fail', reason: `${reason} after ${input.runs} runs (the most a shard gets)` }
  if (input.available === 0) return { kind: 'fail', reason: `${reason} and no other peer is left to run it` }
  return {
    kind: 'run',
    count: Math.min(missing, input.available, runsMax(input.replicas) - input.runs),
    reason,
  }
}

/** Score changes after a shard's decision: agreeing peers +1, outliers -5, failed peers -1. */
export function scoreChanges(decision: VoteDecision, failed: readonly string[] = []): Map<string, number> {
  const changes = new Map<string, number>()
  const add = (peer: string, delta: number) => changes.set(peer, (changes.get(peer) ?? 0) + delta)
  if (decision.kind === 'accept') {
    for (const peer of decision.agreeing) add(peer, SCORE_AGREED)
    for (const peer of decision.outliers) add(peer, SCORE_OUTLIER)
  }
  for (const peer of failed) add(peer, SCORE_FAILED)
  return changes
}

/** Applies score changes to a score table (returns a new one). */
export function applyScores(
  scores: ReadonlyMap<string, number>,
  changes: ReadonlyMap<string, number>,
): Map<string, number> {
  const next = new Map(scores)
  for (const [peer, delta] of changes) next.set(peer, (next.get(peer) ?? 0) + delta)
  return next
}

/** Predicted class of each row: index of the largest logit (first on ties). */
export function argmaxRows(logits: Float32Array, classes: number): number[] {
  const rows = logits.length / classes
  const out: number[] = []
  for (let r = 0; r < rows; r++) {
    let best = 0
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c
    out.push(best)
  }
  return out
}
