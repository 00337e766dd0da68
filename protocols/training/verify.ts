// What makes a training entry checkable by every member: the leader's decision for a step is a pure
// function of the gradients it names (decideStep), so a follower that holds those gradients computes
// the same entry, byte for byte, and acknowledges the leader's only if it is that entry. Gradients are
// named by digest and signed by their authors, so a leader can neither invent a member's gradient nor
// change one; it can only choose which signed gradients of the step to name, and the screening and
// the aggregation rule then bound what one bad gradient can do.
//
// Pure: no IO, no clock. The signature check needs the author's public key and runs in the driver
// (group.ts); this file gives the bytes that are signed.
import { createHash } from 'node:crypto'
import { Gradient } from '../wire/training.js'
import {
  aggregateGradients,
  agreementScores,
  type Contribution,
  findSuspects,
  screenGradients,
  squaredNorm,
} from './aggregate.js'
import { type DecodeGradientResult, decodeGradient, GradientCompressor } from './compression.js'
import { floatBytesView } from './params.js'
import {
  computeStep,
  type DecodedEntry,
  type Precomputed,
  type StepArrays,
  type TrainingConfig,
  type TrainingState,
} from './state.js'
import type { AggregateRule, Compression, MemberReport } from './types.js'

/**
 * Default: a group of 3 or more members decides a step on at least this many gradients (screened
 * ones included), and a majority of them must pass the screening. With two, even a median is a mean
 * and one liar of the two decides the step.
 */
export const MIN_CONTRIBUTORS_DEFAULT = 3

/**
 * Default: a member whose gradients have pointed away from the others' on average (mean leave-one-out
 * agreement below EXCLUDE_AGREEMENT_BELOW) over at least this many scored steps is left out of every
 * later step. Deterministic: it reads the counts of the replicated state, the same on every member.
 */
export const EXCLUDE_AFTER_SCORED_DEFAULT = 20
/**
 * Honest members agree positively early in training (about +0.12 on MNIST micro-batches of 32) and
 * near 0 once the model has converged and their gradients are mostly noise: a bar of 0 excluded honest
 * members of long runs (the e2e tasks of 4,000-8,000 steps). A sign-flipped gradient scores the
 * opposite of an honest one and falls below this bar within its first steps.
 */
export const EXCLUDE_AGREEMENT_BELOW = -0.05

/** Whether a member's record in the replicated state leaves it out of aggregation. */
export function excluded(
  report: MemberReport | undefined,
  afterScored = EXCLUDE_AFTER_SCORED_DEFAULT,
): boolean {
  return (
    report !== undefined &&
    report.scored >= afterScored &&
    report.agreementSum < EXCLUDE_AGREEMENT_BELOW * report.scored
  )
}

/** Prefix of every signed gradient payload (a signature means nothing outside this protocol). */
const SIGNATURE_DOMAIN = new TextEncoder().encode('shardnet/grad/1\n')

/** sha2-256 of a gradient message encoded without its signature: the name entries give it. */
export function gradientDigest(message: Gradient): Uint8Array<ArrayBuffer> {
  const unsigned = Gradient.encode({ ...message, signature: new Uint8Array(0) })
  return new Uint8Array(createHash('sha256').update(unsigned).digest())
}

/** The bytes an author signs for a gradient of `group` with digest `digest`. */
export function signaturePayload(group: string, digest: Uint8Array): Uint8Array {
  const groupBytes = new TextEncoder().encode(group)
  const payload = new Uint8Array(SIGNATURE_DOMAIN.length + groupBytes.length + 1 + digest.length)
  payload.set(SIGNATURE_DOMAIN)
  payload.set(groupBytes, SIGNATURE_DOMAIN.length)
  payload[SIGNATURE_DOMAIN.length + groupBytes.length] = 0x0a
  payload.set(digest, SIGNATURE_DOMAIN.length + groupBytes.length + 1)
  return payload
}

/** The fewest gradients a group of `memberCount` aggregates: a lone member trusts itself. */
export function minContributors(memberCount: number, configured = MIN_CONTRIBUTORS_DEFAULT): number {
  return Math.max(1, Math.min(configured, memberCount))
}

/** A gradient a step may name: its author, digest and message (and its decoding, when known). */
export interface Candidate {
  member: string
  digest: Uint8Array
  message: Gradient
  /** the message decoded for `rules.parameterCount` values, when the caller has done it already */
  decoded?: DecodeGradientResult
  /** gradient . gradient in float64, when known */
  squaredNorm?: number
}

/** The rules of a group's steps, the same on every member. */
export interface StepRules {
  training: TrainingConfig
  aggregate: AggregateRule
  trimCount: number
  normFactorMax: number
  suspectCosineMin: number
  compression: Compression
  compressionBlockSize: number
  /** fewest gradients an entry may decide on, screened ones included (see minContributors) */
  minContributors: number
}

export type StepDecision =
  | { kind: 'entry'; entry: DecodedEntry; precomputed: Precomputed }
  /** fewer than rules.minContributors gradients, or no majority of them passed the screening */
  | { kind: 'too-few'; gradients: number; accepted: number }

/**
 * The STEP entry for `base.step` from the gradients `candidates` (each member at most once, all for
 * that step and base digest): refused ones (undecodable, wrong length, non-finite, norm outlier)
 * listed with their digests, as are the gradients of members excluded by their record (excluded()),
 * the others aggregated by the rule, scored and worked out with AdamW on
 * `base` (into `into` when given, see computeStep). Deterministic: the same candidates in any order
 * and the same base give the same entry bytes on every member.
 */
export function decideStep(
  base: TrainingState,
  candidates: readonly Candidate[],
  rules: StepRules,
  into?: StepArrays,
): StepDecision {
  const sorted = [...candidates].sort((a, b) => (a.member < b.member ? -1 : a.member > b.member ? 1 : 0))
  const length = rules.training.parameterCount
  const digests = new Map<string, Uint8Array>()
  const rejected: Array<{ member: string; reason: string; digest: Uint8Array }> = []
  const decodedOk: Contribution[] = []
  for (const candidate of sorted) {
    digests.set(candidate.member, candidate.digest)
    if (excluded(base.counts.get(candidate.member))) {
      rejected.push({ member: candidate.member, reason: 'excluded', digest: candidate.digest })
      continue
    }
    const decoded = candidate.decoded ?? decodeGradient(candidate.message, length)
    if (!decoded.ok) {
      rejected.push({ member: candidate.member, reason: decoded.reason, digest: candidate.digest })
      continue
    }
    decodedOk.push({
      member: candidate.member,
      gradient: decoded.gradient,
      // as it travels: a float32 (the author's own copy may hold the float64 it computed)
      loss: Math.fround(candidate.message.loss),
      squaredNorm: candidate.squaredNorm ?? squaredNorm(decoded.gradient),
    })
  }
  const screened = screenGradients(decodedOk, length, rules.normFactorMax)
  for (const refusal of screened.rejected) {
    rejected.push({ ...refusal, digest: digests.get(refusal.member) as Uint8Array })
  }
  const accepted = screened.accepted
  if (sorted.length < rules.minContributors || accepted.length * 2 <= sorted.length)
    return { kind: 'too-few', gradients: sorted.length, accepted: accepted.length }
  const aggregate = aggregateGradients(
    accepted.map((contribution) => contribution.gradient),
    rules.aggregate,
    rules.trimCount,
  )
  const scores = agreementScores(accepted)
  const suspects = findSuspects(accepted, rules.suspectCosineMin, scores)
  const loss = accepted.reduce((total, contribution) => total + contribution.loss, 0) / accepted.length
  // int8 groups apply the dequantized int8 update: quantized afresh each step (no error feedback on
  // the leader, whose residual no follower could check), so every member derives the same bytes
  let update: Precomputed['update']
  let applied = aggregate
  if (rules.compression === 'int8') {
    const encoded = new GradientCompressor('int8', rules.compressionBlockSize).encode(
      aggregate,
      base.step,
      base.digest,
      loss,
    )
    applied = encoded.decoded
    update = {
      update: encoded.message.values,
      updateEncoding: 'int8',
      updateScales: encoded.message.scales,
      updateBlockSize: encoded.message.blockSize,
    }
  } else {
    update = { update: floatBytesView(aggregate), updateEncoding: 'float32' } // not changed after this
  }
  const result = computeStep(base, applied, rules.training, into)
  rejected.sort((a, b) => (a.member < b.member ? -1 : a.member > b.member ? 1 : 0))
  const entry: DecodedEntry = {
    kind: 'step',
    step: base.step,
    contributors: accepted.map((contribution) => contribution.member),
    gradientDigests: accepted.map((contribution) => digests.get(contribution.member) as Uint8Array),
    rejected,
    suspects,
    agreement: accepted.length >= 3 ? accepted.map((c) => scores.get(c.member) ?? 0) : [],
    loss,
    ...update,
    updateCid: '',
    digestAfter: result.digest,
    outerRound: 0,
  }
  return { kind: 'entry', entry, precomputed: { step: base.step, baseDigest: base.digest, update, result } }
}

/** The digests a STEP entry names: its contributors' and its refused gradients', in that order. */
export function namedDigests(entry: DecodedEntry): Array<{ member: string; digest: Uint8Array }> {
  const named: Array<{ member: string; digest: Uint8Array }> = []
  for (let i = 0; i < entry.contributors.length; i++) {
    const digest = entry.gradientDigests?.[i]
    if (digest) named.push({ member: entry.contributors[i], digest })
  }
  for (const { member, digest } of entry.rejected) if (digest) named.push({ member, digest })
  return named
}
