// What a network simulation measures: counters every module adds to, the histograms of gossip
// delivery and DHT lookups, the one-minute samples the plots draw, and the per-task and per-outage
// records. report.ts turns these into report.json; the field order here is the report's.
import { Histogram } from './histogram.js'

/** Every minute the run records a sample. */
export const SAMPLE_INTERVAL_MS = 60_000
/** Group slots whose step curves are kept for the plot. */
export const PLOT_SLOTS_MAX = 12
/** A group without a commit this long counts as stalled in a sample. */
export const SAMPLE_STALLED_MS = 30_000

export function newCounters() {
  return {
    announcements: 0,
    announcementsRetried: 0,
    gossipReachedShareMin: 1,
    gossipReachedSum: 0,
    gossipUpSum: 0,
    gossipDuplicates: 0,
    gossipLost: 0,
    gossipLazyDeliveries: 0,
    claimsSent: 0,
    claimsLost: 0,
    groupsFormed: 0,
    groupsCompleted: 0,
    groupsReassigned: 0,
    tasksCompleted: 0,
    tasksAbandoned: 0,
    stepsCommitted: 0,
    duplicateStepEntries: 0,
    leaderElections: 0,
    raftMessagesSent: 0,
    raftMessagesDropped: 0,
    raftMessagesToStoppedMembers: 0,
    gradientsSent: 0,
    gradientsRejected: 0,
    byzantineGradientsAccepted: 0,
    /** Lying gradients accepted by a group whose members are mostly honest: must stay 0. */
    byzantineGradientsAcceptedWithHonestMajority: 0,
    byzantineGradientsRejected: 0,
    proposalsDropped: 0,
    lookups: 0,
    lookupsFailed: 0,
    joins: 0,
    leaves: 0,
    crashes: 0,
    restarts: 0,
    snapshotsInstalled: 0,
    safetyChecks: 0,
  }
}
export type Counters = ReturnType<typeof newCounters>

export interface Sample {
  atS: number
  peersUp: number
  activeGroups: number
  /** Steps committed, and leader changes, since the previous sample. */
  stepsCommitted: number
  leaderChanges: number
  stalledGroups: number
  /** Steps committed so far in each of the first PLOT_SLOTS_MAX group slots. */
  slotSteps: number[]
}

export interface TaskRecord {
  id: number
  groups: number
  steps: number
  announcedAtS: number
  completedAtS: number | null
  completionS: number | null
  reassignments: number
  churnEventsInGroups: number
}

/** A group live when the regional outage began: whether the region held its majority, and its pace. */
export interface OutageGroupRecord {
  group: number
  majorityInRegion: boolean
  stepsDuringOutage: number
  baseline: number
  finished: boolean
}

export function round3(value: number): number {
  return Math.round(value * 1000) / 1000
}

export class Metrics {
  readonly counters = newCounters()
  readonly propagation = new Histogram(5, 4000)
  readonly lookupHops = new Histogram(1, 32)
  readonly lookupLatency = new Histogram(10, 2000)
  readonly flashLookupHops = new Histogram(1, 32)
  readonly samples: Sample[] = []
  readonly taskRecords: TaskRecord[] = []
  readonly outageGroups: OutageGroupRecord[] = []
  /** Steps committed in each group slot over the run. */
  readonly slotSteps: Float64Array
  private minuteSteps = 0
  private minuteLeaderChanges = 0

  constructor(groupSlots: number) {
    this.slotSteps = new Float64Array(groupSlots)
  }

  stepCommitted(slot: number): void {
    this.counters.stepsCommitted++
    this.minuteSteps++
    this.slotSteps[slot]++
  }

  leaderElected(): void {
    this.counters.leaderElections++
    this.minuteLeaderChanges++
  }

  /** Records the sample at `nowMs` and starts counting the next minute. */
  sample(nowMs: number, peersUp: number, groups: { active: number; stalled: number }): void {
    this.samples.push({
      atS: round3(nowMs / 1000),
      peersUp,
      activeGroups: groups.active,
      stepsCommitted: this.minuteSteps,
      leaderChanges: this.minuteLeaderChanges,
      stalledGroups: groups.stalled,
      slotSteps: Array.from(this.slotSteps.subarray(0, Math.min(PLOT_SLOTS_MAX, this.slotSteps.length))),
    })
    this.minuteSteps = 0
    this.minuteLeaderChanges = 0
  }
}
