// The public shapes of a training group member (behaviour: member.ts; the network driver: group.ts):
// what the daemon passes to startGroupMember, the events it hears and the status it can read.
import type { PeerId } from '@libp2p/interface'
import type { Backend } from '../../kernels/backend.js'
import type { LearningRateSchedule } from '../../kernels/models/training.js'
import type { RaftRunnerInit } from '../raft/runner.js'
import type { RaftStorage } from '../raft/storage.js'
import type { RaftTransport } from '../raft/transport.js'
import type { GradientExchange } from './exchange.js'
import type { GradientComputer, TrainingModel } from './gradients.js'
import type { TrainingState } from './state.js'

export type AggregateRule = 'mean' | 'median' | 'trimmed-mean'
export type Compression = 'none' | 'int8'

/** What a group's leader asks of the task's coordinator at an outer step (DiLoCo). */
export interface OuterStepRequest {
  groupId: string
  /** 1-based outer round */
  round: number
  /** inner steps applied when the round was reached */
  step: number
  /** the group's params at that point (device layout, see params.ts) */
  params: Float32Array
}

/** The libp2p services a member uses (the daemon's host.services.raft / .gradients and its peerId). */
export interface GroupMemberComponents {
  peerId: PeerId
  raft: RaftTransport
  gradients: GradientExchange
}

export interface GroupMemberInit {
  components: GroupMemberComponents
  /** the Raft group id, unique per task and group, e.g. `${taskId}/g0` */
  groupId: string
  /** peer ids (strings) of every member including this one; member index = position when sorted */
  members: readonly string[]
  /** the model kind bound to its config and this member's data: parameters and gradients */
  model: TrainingModel
  /** task seed: init, shuffles and micro-batches derive from it */
  seed: number
  /** micro-batch size of ONE member (the group's effective batch is members x batchSize) */
  batchSize: number
  learningRate: number
  /** @default 'constant' */
  schedule?: LearningRateSchedule
  /** AdamW decoupled weight decay. @default 0 */
  weightDecay?: number
  /** inner steps to train */
  steps: number
  /** @default 'median' */
  aggregate?: AggregateRule
  /** values dropped at each end per coordinate for trimmed-mean. @default 1 */
  trimCount?: number
  /** @default 'none' */
  compression?: Compression
  /** int8 block size. @default 256 */
  compressionBlockSize?: number
  /** durable Raft storage, opened (and closed) by the caller, bootstrapped by the member if empty */
  storage: RaftStorage
  backend: Backend
  /** starting params (the model's flat layout); @default the model's initialisation from `seed` */
  initialParams?: Float32Array
  /**
   * the TrainingState a re-formed group starts from (step, optimizer moments, outer rounds), the same
   * on every member; takes precedence over initialParams
   */
  initialState?: TrainingState
  /**
   * Wraps the member's gradient computation (the model's, on `backend`), e.g. to instrument it; tests use
   * it to make a member lie. @default none
   */
  wrapComputer?: (standard: GradientComputer) => GradientComputer
  /**
   * Rewrites each entry this member proposes as leader, given the state it applies to (tests use it
   * to make a leader lie: see test/integration/training-hostile.test.ts). @default none
   */
  wrapProposal?: (data: Uint8Array, state: Readonly<TrainingState>) => Uint8Array
  /** run an outer step every this many inner steps and after the last one; 0 = never. @default 0 */
  outerEvery?: number
  /**
   * Called on the leader at each outer round: returns the params the group continues from (e.g. the
   * average over groups). Must give the same answer when asked again for the same round (a new
   * leader asks again). Required when outerEvery > 0.
   */
  outerStep?: (request: OuterStepRequest) => Promise<Float32Array>
  /** After a quorum of gradients, wait this long for the rest. @default 250 */
  stragglerTimeoutMs?: number
  /** Re-send an unacknowledged gradient after this long. @default 1000 */
  resendMs?: number
  /**
   * Work ahead of the commit: a follower computes the AdamW result of an entry as it reaches its log
   * (after acknowledging it), and every member then computes the next step's gradient on that
   * result while the commit is on its way; it is sent only once that step is committed and applied
   * with that very digest. The same arithmetic either way. @default true
   */
  speculate?: boolean
  /** Reject a gradient whose L2 norm exceeds this factor times the median norm of the others. @default 10 */
  normFactorMax?: number
  /**
   * Fewest gradients a step aggregates in a group of at least this many members (a median of two is
   * a mean: one liar among two decides it). @default 3
   */
  minContributors?: number
  /**
   * Followers recompute each training entry from the signed gradients it names (and each outer entry
   * from the coordinator) before acknowledging it, and distrust a leader whose entry differs.
   * @default true when a step is decided on 3 or more gradients (minContributors)
   */
  verifyEntries?: boolean
  /**
   * A contributor's agreement score at a step is the cosine between its gradient and the mean of the
   * other admitted ones; a step with a score below this counts as suspect, and a member whose MEAN
   * score over 10+ steps is below it is reported as suspected. @default 0.02
   */
  suspectCosineMin?: number
  /**
   * Raft tuning. Defaults here differ from the runner's: tickMs 25, electionTicks 20 (elections after
   * 0.5-1 s: a gradient computation can hold the event loop for tens of ms), snapshotEntries 64 and
   * compactionKeepEntries 16 (each entry carries a whole update, so the log is compacted often).
   */
  raft?: Partial<
    Pick<
      RaftRunnerInit,
      'tickMs' | 'electionTicks' | 'heartbeatTicks' | 'snapshotEntries' | 'compactionKeepEntries' | 'seed'
    >
  >
}

/** Per-member counts kept in the replicated state (so every member reports the same). */
export interface MemberReport {
  member: string
  /** gradients aggregated */
  accepted: number
  /** gradients refused by screening (wrong length, NaN/Inf, norm outlier) */
  rejected: number
  /** steps whose agreement score was below suspectCosineMin */
  suspect: number
  /** sum of its leave-one-out agreement scores (cosine with the mean of the other gradients) */
  agreementSum: number
  /** steps that gave it a score (three or more admitted gradients) */
  scored: number
}

/** A member report with its verdict. */
export interface MemberVerdict extends MemberReport {
  /** agreementSum / scored, NaN before any score */
  meanAgreement: number
  /** scored >= 10 and meanAgreement < suspectCosineMin, or more rejected than accepted gradients */
  suspected: boolean
}

export interface StepEvent {
  step: number
  /** mean micro-batch loss of the contributors */
  loss: number
  contributors: string[]
  rejected: Array<{ member: string; reason: string }>
  suspects: string[]
  leader: string
}

export interface OuterEvent {
  round: number
  step: number
}

export interface FinishedEvent {
  step: number
  /** final params, device layout (paramsToHostLayers gives checkpoint layers) */
  params: Float32Array
  /** hex sha2-256 of the float32 params */
  digest: string
}

export interface GroupMemberEvents {
  step: StepEvent
  outer: OuterEvent
  leader: { leader: string; isLeader: boolean }
  /** this member's params digest differed from the log's, or it fell behind: it installs a state */
  resync: { step: number; reason: 'digest-mismatch' | 'behind' }
  finished: FinishedEvent
  /** an operating error the member could not handle (e.g. the backend failed); it keeps running */
  error: Error
}

export interface GroupMemberStatus {
  groupId: string
  self: string
  members: string[]
  /** inner steps applied */
  step: number
  steps: number
  outerRounds: number
  leader: string
  isLeader: boolean
  /** hex sha2-256 of the current params */
  digest: string
  lastLoss: number
  finished: boolean
  reports: MemberVerdict[]
  /** gradient bytes this member sent over the network (the leader's own is not sent) */
  gradientBytesSent: number
  gradientsSent: number
  raftTerm: number
  /**
   * steps applied from a result worked out before the commit (the leader's proposal, a follower's
   * speculation)
   */
  stepsPrecomputed: number
  /** gradients computed before the step they are for was committed, and used */
  gradientsAhead: number
  /**
   * work ahead of the commit thrown away: an entry that did not commit as it was, a gradient on
   * other params
   */
  speculationsWasted: number
  /** a leader: gradients that arrived before the step they follow was applied, and were used */
  gradientsReceivedAhead: number
  /** a follower: the leader's training entries it recomputed and found right */
  entriesChecked: number
  /** ... and found wrong (each one makes this member distrust that leader) */
  entriesRefused: number
  /** gradients it asked the leader for to check an entry */
  gradientsFetched: number
  /** gradient bytes shared with the other members (all-to-all: every member checks every entry) */
  gradientBytesShared: number
  /** gradients received whose signature did not verify (dropped) */
  badSignatures: number
  /** peers this member no longer trusts (a refused entry), with why */
  distrusted: Array<{ peer: string; reason: string }>
}

export interface GroupMember {
  on<K extends keyof GroupMemberEvents>(event: K, listener: (value: GroupMemberEvents[K]) => void): void
  off<K extends keyof GroupMemberEvents>(event: K, listener: (value: GroupMemberEvents[K]) => void): void
  status(): GroupMemberStatus
  /** resolves with the final params once every step (and the last outer round) is applied */
  finished(): Promise<FinishedEvent>
  /** current params (device layout), a copy */
  params(): Float32Array
  /** the member's TrainingState, encoded as in snapshots (what a re-formed group can start from) */
  encodedState(): Uint8Array
  /** stops the Raft member and leaves the gradient exchange; the storage stays open (the caller closes it) */
  stop(): void
}
