// The replicated state machine of a training group: params, AdamW moments, the step counter and
// per-member counts, and the deterministic rule that applies one committed log entry to it.
//
// Determinism: the optimizer runs on the HOST, in float32 arrays, with the reference AdamW
// (kernels/reference/optimizers.ts), so every member that applies the same entries holds
// bitwise-identical params whatever its compute backend (the backend only computes gradients).
// Idempotence: an entry names the step it performs; it applies only when the state is at exactly
// that step, so a step proposed twice (by two leaders around an election) is applied once.
//
// Log entry: TrainingEntry { kind STEP|OUTER, step, contributors, rejected, suspects, loss,
// update (float32 inline, or int8 + scales in groups with int8 compression) | update_cid,
// digest_after = sha2-256 of float32 params after }.
import { type LearningRateSchedule, learningRateAt } from '../../kernels/models/training.js'
import { adamWReference } from '../../kernels/reference/optimizers.js'
import { Gradient, TrainingEntry, TrainingState as WireTrainingState } from '../wire/training.js'
import { decodeGradient } from './compression.js'
import { bytesEqual, bytesToFloats, floatsToBytes, paramsDigest } from './params.js'
import type { MemberReport } from './types.js'

export interface TrainingConfig {
  parameterCount: number
  steps: number
  learningRate: number
  schedule: LearningRateSchedule
  weightDecay: number
  /** 0 = no outer steps */
  outerEvery: number
  /** AdamW's second-moment decay; @default ADAM_BETA2_DEFAULT */
  beta2?: number
  /**
   * largest global norm of an update: a larger update is scaled down to it before AdamW (the
   * model kind's choice, e.g. 1 for the GPT); @default no clipping
   */
  gradClip?: number
}

/** Adam's own second-moment decay, the default of a model kind that names none. */
export const ADAM_BETA2_DEFAULT = 0.999

/**
 * min(1, clip / ||update||), the norm summed in float64 in index order: every member computes the
 * same scale from the same update bytes.
 */
export function clipScale(update: Float32Array, clip: number | undefined): number {
  if (clip === undefined || !Number.isFinite(clip)) return 1
  let sum = 0
  for (let i = 0; i < update.length; i++) sum += update[i] * update[i]
  const norm = Math.sqrt(sum)
  return norm > clip ? clip / norm : 1
}

export interface TrainingState {
  /** inner steps applied */
  step: number
  outerRounds: number
  params: Float32Array
  firstMoment: Float32Array
  secondMoment: Float32Array
  /** sha2-256 of params */
  digest: Uint8Array<ArrayBuffer>
  lastLoss: number
  counts: Map<string, MemberReport>
  /** set when an applied entry's digest differed: this copy is wrong until a state is installed */
  diverged: boolean
}

export function emptyReport(member: string): MemberReport {
  return { member, accepted: 0, rejected: 0, suspect: 0, agreementSum: 0, scored: 0 }
}

export function createTrainingState(params: Float32Array, members: readonly string[]): TrainingState {
  return {
    step: 0,
    outerRounds: 0,
    params: params.slice(),
    firstMoment: new Float32Array(params.length),
    secondMoment: new Float32Array(params.length),
    digest: paramsDigest(params),
    lastLoss: Number.NaN,
    counts: new Map([...members].sort().map((member) => [member, emptyReport(member)])),
    diverged: false,
  }
}

/** Outer rounds that must be applied before inner step `step` may run (or, at the end, to finish). */
export function outerRoundsRequired(
  step: number,
  config: Pick<TrainingConfig, 'steps' | 'outerEvery'>,
): number {
  if (config.outerEvery <= 0) return 0
  const rounds = Math.floor(step / config.outerEvery)
  return step === config.steps && step % config.outerEvery !== 0 ? rounds + 1 : rounds
}

/** The state is waiting for an outer round before it can go on (or finish). */
export function needsOuterStep(state: TrainingState, config: TrainingConfig): boolean {
  return state.outerRounds < outerRoundsRequired(state.step, config)
}

/** Gradients for step `state.step` may be computed and aggregated. */
export function readyForStep(state: TrainingState, config: TrainingConfig): boolean {
  return !state.diverged && state.step < config.steps && !needsOuterStep(state, config)
}

export function isFinished(state: TrainingState, config: TrainingConfig): boolean {
  return !state.diverged && state.step === config.steps && !needsOuterStep(state, config)
}

/** Result of one AdamW step on copies of the state's arrays. */
export interface StepResult {
  params: Float32Array
  firstMoment: Float32Array
  secondMoment: Float32Array
  digest: Uint8Array<ArrayBuffer>
}

/** Arrays of a state's size that nothing else holds, to compute the next step into. */
export interface StepArrays {
  params: Float32Array
  firstMoment: Float32Array
  secondMoment: Float32Array
}

/**
 * AdamW (reference, float32) of update `update` on copies of the state: what applying would give.
 * The copies go into `into` when given (arrays of the state's size that nothing else uses, e.g. the
 * arrays a previous state held), else into new arrays.
 */
export function computeStep(
  state: TrainingState,
  update: Float32Array,
  config: TrainingConfig,
  into?: StepArrays,
): StepResult {
  const result = {
    params: copy(state.params, into?.params),
    firstMoment: copy(state.firstMoment, into?.firstMoment),
    secondMoment: copy(state.secondMoment, into?.secondMoment),
    digest: state.digest,
  }
  return adamWStep(result, state.step, update, config)
}

function copy(source: Float32Array, target: Float32Array | undefined): Float32Array {
  if (!target || target.length !== source.length || target === source) return source.slice()
  target.set(source)
  return target
}

/** The AdamW step of `step` on `arrays` IN PLACE; returns them with the new digest. */
function adamWStep(
  arrays: StepResult,
  step: number,
  update: Float32Array,
  config: TrainingConfig,
): StepResult {
  adamWReference(arrays.params, update, arrays.firstMoment, arrays.secondMoment, {
    learningRate: learningRateAt(config.schedule, config.learningRate, step, config.steps),
    weightDecay: config.weightDecay,
    beta2: config.beta2 ?? ADAM_BETA2_DEFAULT,
    gradientScale: clipScale(update, config.gradClip),
    step: step + 1,
  })
  arrays.digest = paramsDigest(arrays.params)
  return arrays
}

export interface DecodedEntry {
  kind: 'step' | 'outer'
  step: number
  contributors: string[]
  /** STEP: the digest of each contributor's gradient (contributors order); empty in entries of old */
  gradientDigests?: Uint8Array[]
  /** refused gradients, each with its digest when the leader names it */
  rejected: Array<{ member: string; reason: string; digest?: Uint8Array }>
  suspects: string[]
  /** leave-one-out agreement per contributor (same order), empty with fewer than three */
  agreement: number[]
  loss: number
  /**
   * the raw bytes of the update, decoded lazily: float32 LE, or with `updateEncoding` 'int8' one int8
   * per value and `updateScales` (one float32 LE scale per `updateBlockSize` values)
   */
  update: Uint8Array
  /** 'float32' when absent; OUTER entries are always float32 */
  updateEncoding?: UpdateEncoding
  updateScales?: Uint8Array
  updateBlockSize?: number
  updateCid: string
  digestAfter: Uint8Array
  outerRound: number
}

export type UpdateEncoding = 'float32' | 'int8'

const NO_BYTES = new Uint8Array(0)

/**
 * A STEP entry's update as float32 values (int8 dequantized as every member does it), or undefined
 * when its sizes do not fit `parameterCount` values (decodeGradient's checks).
 */
export function entryUpdate(entry: DecodedEntry, parameterCount: number): Float32Array | undefined {
  const int8 = entry.updateEncoding === 'int8'
  const decoded = decodeGradient(
    {
      step: entry.step,
      baseDigest: NO_BYTES,
      loss: entry.loss,
      encoding: int8 ? Gradient.Encoding.INT8 : Gradient.Encoding.FLOAT32,
      length: parameterCount,
      values: entry.update as Uint8Array<ArrayBuffer>,
      scales: (entry.updateScales ?? NO_BYTES) as Uint8Array<ArrayBuffer>,
      blockSize: entry.updateBlockSize ?? 0,
      signature: NO_BYTES as Uint8Array<ArrayBuffer>,
    },
    parameterCount,
  )
  return decoded.ok ? decoded.gradient : undefined
}

/** The same update: bytes, encoding, scales and block size. */
function sameUpdate(a: Pick<DecodedEntry, UpdateField>, b: Pick<DecodedEntry, UpdateField>): boolean {
  return (
    (a.updateEncoding ?? 'float32') === (b.updateEncoding ?? 'float32') &&
    (a.updateBlockSize ?? 0) === (b.updateBlockSize ?? 0) &&
    bytesEqual(a.update, b.update) &&
    bytesEqual(a.updateScales ?? NO_BYTES, b.updateScales ?? NO_BYTES)
  )
}

type UpdateField = 'update' | 'updateEncoding' | 'updateScales' | 'updateBlockSize'

/**
 * A STEP entry computed before it was committed: the leader's own proposal, or an entry a follower
 * holds in its log (precomputeEntry): the update and the AdamW result on the state of `step` whose
 * params digest was `baseDigest`.
 */
export interface Precomputed {
  step: number
  baseDigest: Uint8Array
  update: Pick<DecodedEntry, UpdateField>
  result: StepResult
}

/**
 * Works out an entry ahead of its commit (a follower does this as the entry reaches its log): the
 * AdamW result of its update on `state`, when it is the STEP entry for `state.step` and the result's
 * digest is the entry's digest after. Otherwise undefined, and the entry is applied (or refused) at
 * commit as usual. `state` is not changed; the result goes into `into` when given (see computeStep).
 */
export function precomputeEntry(
  state: TrainingState,
  entry: DecodedEntry,
  config: TrainingConfig,
  into?: StepArrays,
): Precomputed | undefined {
  if (entry.kind !== 'step' || state.diverged || entry.step !== state.step || needsOuterStep(state, config))
    return undefined
  const update = entryUpdate(entry, config.parameterCount)
  if (!update) return undefined
  const result = computeStep(state, update, config, into)
  if (!bytesEqual(result.digest, entry.digestAfter)) return undefined
  const { updateEncoding, updateScales, updateBlockSize } = entry
  return {
    step: state.step,
    baseDigest: state.digest,
    update: { update: entry.update, updateEncoding, updateScales, updateBlockSize },
    result,
  }
}

export function encodeEntry(entry: DecodedEntry): Uint8Array {
  return TrainingEntry.encode({
    kind: entry.kind === 'outer' ? TrainingEntry.Kind.OUTER : TrainingEntry.Kind.STEP,
    step: entry.step,
    contributors: entry.contributors,
    gradientDigests: (entry.gradientDigests ?? []) as Uint8Array<ArrayBuffer>[],
    rejected: entry.rejected.map(({ member, reason, digest }) => ({
      member,
      reason,
      digest: (digest ?? NO_BYTES) as Uint8Array<ArrayBuffer>,
    })),
    suspects: entry.suspects,
    agreement: entry.agreement,
    loss: entry.loss,
    update: entry.update as Uint8Array<ArrayBuffer>,
    updateCid: entry.updateCid,
    digestAfter: entry.digestAfter as Uint8Array<ArrayBuffer>,
    outerRound: entry.outerRound,
    updateEncoding:
      entry.updateEncoding === 'int8' ? TrainingEntry.Encoding.INT8 : TrainingEntry.Encoding.FLOAT32,
    updateScales: (entry.updateScales ?? NO_BYTES) as Uint8Array<ArrayBuffer>,
    updateBlockSize: entry.updateBlockSize ?? 0,
  })
}

/** Most contributors, rejections and suspects a decoded entry may list. */
export const ENTRY_MEMBERS_MAX_DEFAULT = 1024

/**
 * Decoded entries by their bytes: a member decodes the same entry as it is appended, worked out and
 * committed (and the simulator's members share one entry's bytes). A cache of a pure function on
 * bytes that are never changed once proposed; it holds nothing alive (an entry goes with its bytes).
 */
const decodedEntries = new WeakMap<Uint8Array, DecodedEntry | undefined>()

/**
 * Decodes a log entry's payload; undefined when it is not a TrainingEntry (every member skips it
 * alike). The result is shared by every caller with the same bytes: read it, never change it.
 */
export function decodeEntry(
  data: Uint8Array,
  membersMax = ENTRY_MEMBERS_MAX_DEFAULT,
): DecodedEntry | undefined {
  if (membersMax !== ENTRY_MEMBERS_MAX_DEFAULT) return decodeEntryOnce(data, membersMax)
  if (decodedEntries.has(data)) return decodedEntries.get(data)
  const decoded = decodeEntryOnce(data, membersMax)
  decodedEntries.set(data, decoded)
  return decoded
}

function decodeEntryOnce(data: Uint8Array, membersMax: number): DecodedEntry | undefined {
  let wire: TrainingEntry
  try {
    wire = TrainingEntry.decode(data, {
      limits: {
        contributors: membersMax,
        rejected: membersMax,
        suspects: membersMax,
        agreement: membersMax,
        gradientDigests: membersMax,
      },
    })
  } catch {
    return undefined
  }
  if (!Number.isSafeInteger(wire.step) || wire.step < 0) return undefined
  if (wire.agreement.length !== 0 && wire.agreement.length !== wire.contributors.length) return undefined
  if (wire.gradientDigests.length !== 0 && wire.gradientDigests.length !== wire.contributors.length)
    return undefined
  const int8 = wire.updateEncoding === TrainingEntry.Encoding.INT8
  if (!int8 && wire.updateEncoding !== TrainingEntry.Encoding.FLOAT32) return undefined
  return {
    kind: wire.kind === TrainingEntry.Kind.OUTER ? 'outer' : 'step',
    step: wire.step,
    contributors: wire.contributors,
    gradientDigests: wire.gradientDigests,
    rejected: wire.rejected.map(({ member, reason, digest }) =>
      digest.length > 0 ? { member, reason, digest } : { member, reason },
    ),
    suspects: wire.suspects,
    agreement: wire.agreement,
    loss: wire.loss,
    update: wire.update,
    updateEncoding: int8 ? 'int8' : 'float32',
    updateScales: wire.updateScales,
    updateBlockSize: wire.updateBlockSize,
    updateCid: wire.updateCid,
    digestAfter: wire.digestAfter,
    outerRound: wire.outerRound,
  }
}

export type ApplyOutcome =
  | { kind: 'applied'; step: number }
  | { kind: 'outer'; round: number }
  /** the entry's step (or round) is already applied: a duplicate proposal, applied once */
  | { kind: 'duplicate' }
  /** the entry is ahead of this state: it missed entries and needs a state from the leader */
  | { kind: 'behind' }
  /** applying gave params whose digest differs from the entry's: the state is now marked diverged */
  | { kind: 'mismatch' }
  /** not applicable (malformed, wrong size, inline update missing, state diverged) */
  | { kind: 'ignored'; reason: string }

/**
 * Applies one committed entry to `state` in place. `precomputed` (this entry worked out before its
 * commit) skips the decoding and the AdamW work when it was computed on this very state (step and
 * digest) from the entry's update bytes.
 */
export function applyEntry(
  state: TrainingState,
  entry: DecodedEntry,
  config: TrainingConfig,
  precomputed?: Precomputed,
): ApplyOutcome {
  if (state.diverged) return { kind: 'ignored', reason: 'diverged' }
  const wrongLength = (): ApplyOutcome => ({
    kind: 'ignored',
    reason: entry.updateCid ? 'update-by-cid-unsupported' : 'wrong-length',
  })
  if (entry.kind === 'outer') {
    // the params themselves, always float32
    const float32 = (entry.updateEncoding ?? 'float32') === 'float32'
    if (!float32 || entry.update.byteLength !== config.parameterCount * 4) return wrongLength()
    if (entry.outerRound <= state.outerRounds) return { kind: 'duplicate' }
    if (entry.step !== state.step || entry.outerRound !== state.outerRounds + 1) return { kind: 'behind' }
    const params = bytesToFloats(entry.update)
    const digest = paramsDigest(params)
    if (!bytesEqual(digest, entry.digestAfter)) {
      state.diverged = true
      return { kind: 'mismatch' }
    }
    state.params = params
    state.digest = digest
    state.outerRounds++
    return { kind: 'outer', round: state.outerRounds }
  }
  // a computation of this very update on this very state needs no decoding and no AdamW step; any
  // other update is decoded (its sizes checked) whatever its step, as a malformed entry is ignored first
  const reused =
    precomputed &&
    precomputed.step === state.step &&
    bytesEqual(precomputed.baseDigest, state.digest) &&
    sameUpdate(precomputed.update, entry)
      ? precomputed.result
      : undefined
  const update = reused ? undefined : entryUpdate(entry, config.parameterCount)
  if (!reused && !update) return wrongLength()
  if (entry.step < state.step) return { kind: 'duplicate' }
  if (entry.step > state.step || needsOuterStep(state, config)) return { kind: 'behind' }
  // without a precomputation the step runs in place (no copies of params and moments):
  // if its digest then differs, the state is wrong either way and is marked diverged
  const result = reused ?? adamWStep(state, state.step, update as Float32Array, config)
  if (!bytesEqual(result.digest, entry.digestAfter)) {
    state.diverged = true
    return { kind: 'mismatch' }
  }
  state.params = result.params
  state.firstMoment = result.firstMoment
  state.secondMoment = result.secondMoment
  state.digest = result.digest
  state.step++
  state.lastLoss = entry.loss
  for (let i = 0; i < entry.contributors.length; i++) {
    const counts = reportOf(state, entry.contributors[i])
    counts.accepted++
    if (i < entry.agreement.length && Number.isFinite(entry.agreement[i])) {
      counts.agreementSum += entry.agreement[i]
      counts.scored++
    }
  }
  for (const { member } of entry.rejected) reportOf(state, member).rejected++
  for (const member of entry.suspects) reportOf(state, member).suspect++
  return { kind: 'applied', step: state.step - 1 }
}

function reportOf(state: TrainingState, member: string): MemberReport {
  let counts = state.counts.get(member)
  if (!counts) {
    counts = emptyReport(member)
    state.counts.set(member, counts)
  }
  return counts
}

export function encodeState(state: TrainingState): Uint8Array {
  return WireTrainingState.encode({
    step: state.step,
    outerRounds: state.outerRounds,
    params: floatsToBytes(state.params),
    firstMoment: floatsToBytes(state.firstMoment),
    secondMoment: floatsToBytes(state.secondMoment),
    lastLoss: state.lastLoss,
    counts: [...state.counts.values()],
  })
}

/** Decodes a snapshot / state transfer; undefined when malformed or of the wrong size. */
export function decodeState(
  bytes: Uint8Array,
  parameterCount: number,
  membersMax = 1024,
): TrainingState | undefined {
  let wire: WireTrainingState
  try {
    wire = WireTrainingState.decode(bytes, { limits: { counts: membersMax } })
  } catch {
    return undefined
  }
  const size = parameterCount * 4
  if (
    wire.params.byteLength !== size ||
    wire.firstMoment.byteLength !== size ||
    wire.secondMoment.byteLength !== size ||
    !Number.isSafeInteger(wire.step) ||
    !Number.isSafeInteger(wire.outerRounds)
  ) {
    return undefined
  }
  const params = bytesToFloats(wire.params)
  return {
    step: wire.step,
    outerRounds: wire.outerRounds,
    params,
    firstMoment: bytesToFloats(wire.firstMoment),
    secondMoment: bytesToFloats(wire.secondMoment),
    digest: paramsDigest(params),
    lastLoss: wire.lastLoss,
    counts: new Map(
      wire.counts.map((counts) => [
        counts.member,
        {
          member: counts.member,
          accepted: counts.accepted,
          rejected: counts.rejected,
          suspect: counts.suspect,
          agreementSum: counts.agreementSum,
          scored: counts.scored,
        },
      ]),
    ),
    diverged: false,
  }
}
