/**
 * Assignment of claimants to training groups: a pure function of the claims (no clock, no IO).
 *
 * Rule: keep the eligible claimants, rank them by the backend speed the submitter measured (GFLOP/s,
 * descending, in classes of SPEED_CLASS_RATIO: figures that close count as equal capability), then by
 * reputation score (descending; a claimant without one counts as NEUTRAL_SCORE), then by the exact
 * speed, ties broken by peer id so every run gives the same answer; take the best groups x groupSize,
 * and deal them round-robin across the groups (fastest to group 0, next to group 1, ...), so each
 * group gets a similar mix of fast and slow members: a group trains at its slowest quorum member's
 * pace, and the outer step waits for the slowest group.
 */
export interface Claimant {
  peerId: string
  backend: 'webgpu' | 'cpu'
  /** the speed the submitter measured with its challenge (never the claim's own figure) */
  gflops: number
  maxBufferBytes: number
  /** the submitter's reputation score of the claimant, 0..1 */
  score?: number
}

/** Speeds within this ratio of each other share a class (equal capability for ranking). */
export const SPEED_CLASS_RATIO = 1.25
/** The score of a claimant the submitter has no history of. */
export const NEUTRAL_SCORE = 0.5

function speedClass(gflops: number): number {
  return gflops > 0 ? Math.floor(Math.log(gflops) / Math.log(SPEED_CLASS_RATIO)) : Number.NEGATIVE_INFINITY
}

export interface GroupAssignment {
  group: number
  members: string[]
}

export type AssignmentResult =
  | { ok: true; groups: GroupAssignment[]; spare: Claimant[] }
  | { ok: false; found: number; needed: number }

export function rankClaimants(claimants: readonly Claimant[]): Claimant[] {
  return [...claimants].sort(
    (a, b) =>
      speedClass(b.gflops) - speedClass(a.gflops) ||
      (b.score ?? NEUTRAL_SCORE) - (a.score ?? NEUTRAL_SCORE) ||
      b.gflops - a.gflops ||
      (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0),
  )
}

export function assignGroups(
  claimants: readonly Claimant[],
  groups: number,
  groupSize: number,
): AssignmentResult {
  if (!Number.isInteger(groups) || groups < 1 || !Number.isInteger(groupSize) || groupSize < 1) {
    throw new RangeError(`groups and groupSize must be positive integers, got ${groups} and ${groupSize}`)
  }
  const unique = new Map<string, Claimant>()
  for (const claimant of claimants) if (!unique.has(claimant.peerId)) unique.set(claimant.peerId, claimant)
  const ranked = rankClaimants([...unique.values()])
  const needed = groups * groupSize
  if (ranked.length < needed) return { ok: false, found: ranked.length, needed }
  const result: GroupAssignment[] = Array.from({ length: groups }, (_, group) => ({ group, members: [] }))
  for (let i = 0; i < needed; i++) {
    const round = Math.floor(i / groups)
    // snake order (0,1,2,2,1,0,...) balances the sum of speeds across groups better than plain round-robin
    const position = i % groups
    const group = round % 2 === 0 ? position : groups - 1 - position
    result[group].members.push(ranked[i].peerId)
  }
  return { ok: true, groups: result, spare: ranked.slice(needed) }
}
