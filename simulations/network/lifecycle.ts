// The task-lifecycle decisions the simulator needs, behind small interfaces: which claimers form
// which groups (assignment) and what a group leader does with the gradients of one step
// (aggregation). The defaults here are the simulator's own stand-ins; the real state machines of
// protocols/tasks (assignment) and protocols/training (the step rule) implement the same shapes and
// can be passed in through NetworkSimulationOptions without touching the engine.
import type { SeededRandom } from '../../protocols/raft/random.js'

export interface Claim {
  /** Peer row of the claimer. */
  peer: number
  /** Index into BACKEND_CLASSES. */
  backend: number
  region: number
  arrivedAtMs: number
}

export interface TaskAssignmentPolicy {
  /**
   * Forms `groups` groups of `groupSize` from the claims (in arrival order), or returns undefined
   * when there are too few. A claimer appears in at most one group.
   */
  assign(
    claims: readonly Claim[],
    groups: number,
    groupSize: number,
    random: SeededRandom,
  ): number[][] | undefined
}

export interface GradientContribution {
  /** Member position in the group. */
  member: number
  /** L2 norm of the gradient the member sent (NaN/Infinity possible from a broken or lying peer). */
  norm: number
}

export interface TrainingStepRule {
  /**
   * The contributions the leader keeps for one step (DESIGN 5.3: reject NaN/Inf and outliers).
   * Returns member positions accepted.
   */
  accept(contributions: readonly GradientContribution[]): number[]
}

/**
 * Groups are filled in claim arrival order, fastest backend class first within the first arrivals,
 * so a group's step time is not set by one slow cpu member when faster claimers exist.
 */
export class ArrivalOrderAssignment implements TaskAssignmentPolicy {
  assign(claims: readonly Claim[], groups: number, groupSize: number): number[][] | undefined {
    const needed = groups * groupSize
    if (claims.length < needed) return undefined
    const first = claims.slice(0, Math.min(claims.length, needed * 2))
    const ordered = [...first].sort((a, b) => a.backend - b.backend || a.arrivedAtMs - b.arrivedAtMs)
    const result: number[][] = []
    for (let g = 0; g < groups; g++)
      result.push(ordered.slice(g * groupSize, (g + 1) * groupSize).map((c) => c.peer))
    return result
  }
}

/** Outlier factor: a gradient norm above this multiple of the median norm is rejected. */
export const GRADIENT_NORM_OUTLIER_FACTOR = 5

/** Rejects non-finite norms and norms above GRADIENT_NORM_OUTLIER_FACTOR x the median. */
export class MedianNormRule implements TrainingStepRule {
  accept(contributions: readonly GradientContribution[]): number[] {
    const finite = contributions.filter((c) => Number.isFinite(c.norm))
    if (finite.length === 0) return []
    const norms = finite.map((c) => c.norm).sort((a, b) => a - b)
    const median = norms[(norms.length - 1) >> 1]
    return finite.filter((c) => c.norm <= median * GRADIENT_NORM_OUTLIER_FACTOR).map((c) => c.member)
  }
}
