// One member of a training group as a pure state machine: `step(input)` takes what happened (a
// gradient computed or received, log entries appending / appended / committed, a leadership change,
// an outer round's params, the clock) and returns the effects its driver must carry out (compute a
// gradient on these params, send it, propose an entry, ask the leader for its state, run the outer
// step, report). No IO, no clock, no timers, no randomness: time comes in every input (`nowMs`) and
// `nextWakeMs()` says when the core next needs a `tick`. group.ts drives it over libp2p and the Raft
// runner; the network simulator drives it over simulated links; transcripts test it alone
// (test/unit/training/testdata/*.txt).
//
// Each step s:
//   every member            compute-gradient(s, params after s-1) -> gradient-computed
//   a follower              send-gradient(leader) -> gradient-sent(ACCEPTED | REJECTED | NOT_READY | ...)
//   the leader              gradient-received -> reply; admits gradients for its step and digest only,
//                           waits for a majority and then at most stragglerTimeoutMs for the other
//                           expected members, screens, aggregates, works out the AdamW result and
//                           emits propose(entry {step, contributors, ..., update, digest after})
//   every member            entries-committed -> the entry is applied in log order (state.ts applyEntry)
//
// Work ahead of the commit (speculate): the leader's proposal has its result worked out already; a
// follower works it out while the entry is being written to its log (entries-appending -> continue
// 'turn' -> work-out). Once that entry is durable here (entries-appended) and this member's gradient
// for s is delivered, it computes the gradient of s+1 on that result. A follower sends it at once;
// the leader keeps such gradients (collectingNext) until step s is applied. Work on an entry that
// did not commit as it was is dropped: its digest matches no state.
//
// A member whose digest differs from a committed entry's, or that finds itself behind, asks the
// leader for its state (request-state, at most every STATE_REQUEST_INTERVAL_MS) and installs it.
// With outerEvery = H the leader asks for the params of each outer round (outer-step) and proposes
// them as an OUTER entry.
//
// Inputs that arrive from inside the Raft runner (leadership, committed, appending, appended) change
// the state at once but move the member on only in a `continue` effect: the driver feeds a `tick`
// back after the current microtask ('microtask') or turn of the event loop ('turn'), so the runner's
// write and acknowledgement are not held up by a gradient computation.
import type { Entry } from '../raft/types.js'
import { type Gradient, GradResponse } from '../wire/training.js'
import {
  type Contribution,
  NORM_FACTOR_MAX_DEFAULT,
  quorumSize,
  STRAGGLER_TIMEOUT_MS_DEFAULT,
  SUSPECT_COSINE_MIN_DEFAULT,
  screenGradients,
  screenIfReady,
  squaredNorm,
} from './aggregate.js'
import { COMPRESSION_BLOCK_SIZE_DEFAULT, decodeGradient, GradientCompressor } from './compression.js'
import { bytesEqual, floatsToBytes, paramsDigest, toHex } from './params.js'
import {
  applyEntry,
  type DecodedEntry,
  decodeEntry,
  decodeState,
  encodeEntry,
  isFinished,
  needsOuterStep,
  outerRoundsRequired,
  type Precomputed,
  precomputeEntry,
  readyForStep,
  type StepArrays,
  type TrainingConfig,
  type TrainingState,
} from './state.js'
import type { AggregateRule, Compression, FinishedEvent, StepEvent } from './types.js'
import {
  type Candidate,
  decideStep,
  gradientDigest,
  MIN_CONTRIBUTORS_DEFAULT,
  minContributors,
  namedDigests,
  type StepRules,
} from './verify.js'

/** Default: an unacknowledged gradient is sent again after this long. */
export const RESEND_MS_DEFAULT = 1000
/** A gradient the leader was not ready for is offered again after this long. */
export const NOT_READY_RETRY_MS = 50
/** A member that needs the leader's state asks at most this often. */
export const STATE_REQUEST_INTERVAL_MS = 500
/** The leader asks for an outer round's params again this long after a failure. */
export const OUTER_RETRY_MS = 1000
/** Default: members work ahead of the commit. */
export const SPECULATE_DEFAULT = true
/** Default: values dropped at each end per coordinate for trimmed-mean. */
export const TRIM_COUNT_DEFAULT = 1

/** Everything a member core needs, resolved (group.ts resolves GroupMemberInit into this). */
export interface MemberConfig {
  self: string
  /** every member, this one included, sorted (member index = position) */
  members: readonly string[]
  training: TrainingConfig
  aggregate: AggregateRule
  trimCount: number
  compression: Compression
  compressionBlockSize: number
  stragglerTimeoutMs: number
  resendMs: number
  speculate: boolean
  normFactorMax: number
  suspectCosineMin: number
  /** fewest gradients a step aggregates, for groups of at least this many members */
  minContributors: number
  /** every member gets every gradient (share-gradient effects), to check the entries that name them */
  shareGradients: boolean
  /** the driver can run outer steps (required when training.outerEvery > 0) */
  outerSteps: boolean
}

/** The rule options of a member with their defaults, for drivers that take them optionally. */
export const MEMBER_RULE_DEFAULTS = {
  aggregate: 'median' as AggregateRule,
  trimCount: TRIM_COUNT_DEFAULT,
  compression: 'none' as Compression,
  compressionBlockSize: COMPRESSION_BLOCK_SIZE_DEFAULT,
  stragglerTimeoutMs: STRAGGLER_TIMEOUT_MS_DEFAULT,
  resendMs: RESEND_MS_DEFAULT,
  speculate: SPECULATE_DEFAULT,
  normFactorMax: NORM_FACTOR_MAX_DEFAULT,
  suspectCosineMin: SUSPECT_COSINE_MIN_DEFAULT,
  minContributors: MIN_CONTRIBUTORS_DEFAULT,
  shareGradients: true,
}

/** How a gradient send ended: the leader's answer, or 'failed' when it could not be delivered. */
export type SendOutcome = GradResponse.Status | 'failed'

export type MemberInput =
  | { type: 'tick'; nowMs: number }
  | { type: 'leadership'; leader: string; isLeader: boolean; term: number; nowMs: number }
  | {
      type: 'gradient-computed'
      step: number
      digest: Uint8Array<ArrayBuffer>
      gradient: Float32Array
      loss: number
      nowMs: number
    }
  | { type: 'gradient-failed'; step: number; error: Error; nowMs: number }
  | { type: 'gradient-sent'; outcome: SendOutcome; reason: string; bytes: number; nowMs: number }
  /** a member's gradient (sent to the leader, or shared with every member); `digest`: gradientDigest */
  | { type: 'gradient-received'; from: string; gradient: Gradient; digest?: Uint8Array; nowMs: number }
  /**
   * Check entries a leader sent before they enter this member's log (the Raft runner's validate
   * hook): answered by a `validated` effect with the same id, in the order asked
   */
  | { type: 'validate'; id: number; entries: readonly Entry[]; leader: string; nowMs: number }
  /** the driver gave up waiting for the verdict on that validate input: forget it (no effect) */
  | { type: 'validate-abandoned'; id: number; nowMs: number }
  /**
   * The answer to fetch-gradient: `gradient` undefined when the peer has none or could not be asked
   * (either way the author is asked next); its signature is already checked
   */
  | {
      type: 'gradient-fetched'
      digest: Uint8Array
      author: string
      gradient: Gradient | undefined
      nowMs: number
    }
  /** the answer to check-outer: the round's params from the task's coordinator, or why not */
  | { type: 'outer-checked'; round: number; params: Float32Array | undefined; error?: string; nowMs: number }
  | { type: 'entries-appending'; entries: readonly Entry[]; nowMs: number }
  | { type: 'work-out'; index: number; term: number; nowMs: number }
  | { type: 'entries-appended'; entries: readonly Entry[]; nowMs: number }
  | { type: 'entries-committed'; entries: readonly Entry[]; nowMs: number }
  | { type: 'proposal-failed'; step: number; term: number; reason: string; nowMs: number }
  | { type: 'outer-params'; round: number; step: number; params: Float32Array; nowMs: number }
  | { type: 'outer-failed'; round: number; error: Error; nowMs: number }
  | { type: 'state-received'; from: string; state: Uint8Array | undefined; nowMs: number }
  | { type: 'snapshot'; data: Uint8Array; nowMs: number }

export type ResyncReason = 'digest-mismatch' | 'behind'

/**
 * A follower's verdict on entries its leader sent: ok; a lie (the entries are not what the gradients
 * they name give: distrust the leader); or `retry` (this member cannot check them yet: drop them
 * without a verdict on the leader, which sends them again)
 */
export type EntryVerdict = { ok: true } | { ok: false; reason: string; retry?: boolean }

export type MemberEffect =
  /** the answer to a gradient-received input (always the first effect of that input) */
  | { type: 'reply'; status: GradResponse.Status; reason: string }
  /** compute the gradient of this member's micro-batch of `step` on `params` (read them before returning) */
  | { type: 'compute-gradient'; step: number; digest: Uint8Array<ArrayBuffer>; params: Float32Array }
  /** send to the leader; answer with gradient-sent */
  | { type: 'send-gradient'; to: string; step: number; message: Gradient }
  /** give the gradient to these members too (no answer needed: they check entries with it) */
  | { type: 'share-gradient'; to: readonly string[]; step: number; message: Gradient }
  /** ask `from` for the gradient `digest` names; answer gradient-fetched */
  | { type: 'fetch-gradient'; from: string; step: number; digest: Uint8Array }
  /** the verdict on a validate input */
  | { type: 'validated'; id: number; verdict: EntryVerdict }
  /** ask the task's coordinator for an outer round's params, to check an OUTER entry; answer outer-checked */
  | { type: 'check-outer'; round: number; step: number; params: Float32Array }
  /** propose a log entry; answer proposal-failed if Raft refuses or loses it */
  | { type: 'propose'; step: number; outer: boolean; term: number; data: Uint8Array }
  /** ask `from` (the leader) for its TrainingState; answer state-received */
  | { type: 'request-state'; from: string }
  /** ask the task's coordinator for the params of an outer round; answer outer-params or outer-failed */
  | { type: 'outer-step'; round: number; step: number; params: Float32Array }
  /** feed a tick back after the current microtask, or after this turn of the event loop */
  | { type: 'continue'; after: 'microtask' | 'turn'; input: ContinueInput }
  | { type: 'step-applied'; event: StepEvent }
  | { type: 'outer-applied'; round: number; step: number }
  | { type: 'leader-changed'; leader: string; isLeader: boolean }
  | { type: 'resynced'; step: number; reason: ResyncReason }
  | { type: 'finished'; event: FinishedEvent }
  /** an operating error the member could not handle; it keeps running */
  | { type: 'error'; error: Error }
  /** something worth a log line */
  | { type: 'log'; message: string }

/** What a continue effect feeds back (its nowMs is the time it is fed). */
export type ContinueInput = { type: 'tick' } | { type: 'work-out'; index: number; term: number }

/** Counters of the work ahead of the commit and of the gradients sent, for status(). */
export interface MemberCounters {
  gradientBytesSent: number
  gradientsSent: number
  /** steps applied from a result worked out before the commit */
  stepsPrecomputed: number
  /** gradients computed before the step they are for was committed, and used */
  gradientsAhead: number
  /** work ahead thrown away: an entry that did not commit as it was, a gradient on other params */
  speculationsWasted: number
  /** a leader: gradients that arrived before the step they follow was applied, and were used */
  gradientsReceivedAhead: number
  /** a follower: the leader's training entries it recomputed and found right */
  entriesChecked: number
  /** ... and found wrong (each a reason to distrust that leader) */
  entriesRefused: number
  /** gradients it had to ask the leader for to check an entry */
  gradientsFetched: number
}

interface PendingGradient {
  step: number
  digest: Uint8Array
  message: Gradient
  /** gradientDigest(message): the name entries give it */
  name: Uint8Array
  decoded: Float32Array
  loss: number
  /** the leader that acknowledged it; a new leader must get it again */
  ackedBy: string | undefined
  sentTo: string
  sentAtMs: number
}

interface Collecting {
  step: number
  digest: Uint8Array
  contributions: Map<string, Contribution>
  rejected: Map<string, string>
  /** every gradient admitted or refused, by member: what the entry names */
  messages: Map<string, { name: Uint8Array; message: Gradient }>
  quorumAtMs: number | undefined
  /** the contributions counted when screening left too few to aggregate: wait for another */
  tooFewAt: number | undefined
}

/** A gradient this member holds for the steps it may still have to check (see the pool). */
interface Pooled {
  member: string
  step: number
  message: Gradient
}

/** A validate input being worked through, entry by entry. */
interface Validation {
  id: number
  entries: Entry[]
  leader: string
  /** entries before this one are checked */
  at: number
  /** an OUTER entry's round asked of the coordinator, and its answer once it came */
  outer?: { round: number; params?: Float32Array; error?: string }
}

/**
 * The state a checked entry leaves: the base for checking the next one before the first is applied
 * (the leader pipelines entries).
 */
interface ValidatedTip {
  state: TrainingState
}

/** Steps of each member's signed gradient bases kept to vouch for a state (see vouched()). */
const BASES_KEPT = 16
/** Gradients kept per member and step beyond the first one it sent (fetched ones named by an entry). */
const POOL_PER_MEMBER_STEP_MAX = 4
/**
 * Applied steps whose gradients a member keeps: a follower a few steps behind the leader still finds
 * the gradients of the entries it checks (the leader applies a step once a majority acknowledged it).
 */
export const POOL_STEPS_KEPT = 4
/**
 * A leader whose entries this member could not check for this long, because neither it nor the
 * gradients' authors could show a gradient the entries name, is distrusted.
 */
export const UNVERIFIABLE_MS_MAX = 30_000

/** A follower's entry being worked out ahead of its commit, known by its log position. */
interface Speculation {
  entry: Entry
  worked: boolean
  durable: boolean
}

export class MemberCore {
  readonly config: MemberConfig
  private state: TrainingState
  private effects: MemberEffect[] = []
  private leader = ''
  private isLeader = false
  private term = 0
  // member side
  private computing: { step: number } | undefined
  private pending: PendingGradient | undefined
  private ahead: PendingGradient | undefined
  /** the gradient whose send is in flight (one at a time) */
  private sending: PendingGradient | undefined
  private needState: ResyncReason | undefined
  private stateRequestAtMs = Number.NEGATIVE_INFINITY
  private readonly compressor: GradientCompressor
  // leader side
  private collecting: Collecting | undefined
  /** the collection for the step after this leader's proposal in flight (gradients computed ahead) */
  private collectingNext: Collecting | undefined
  private readonly lastSeenStep = new Map<string, number>()
  /** the step at which this member last became leader: it waits for everyone for a few steps after */
  private leaderSinceStep = 0
  private proposal: { step: number; term: number; outer: boolean } | undefined
  private outerInFlight: number | undefined
  private outerRetryAtMs = Number.NEGATIVE_INFINITY
  // work ahead of the commit
  private precomputed: Precomputed | undefined
  /** `precomputed` is durable in this member's log: the next step's gradient may be computed on it */
  private aheadReady = false
  private speculation: Speculation | undefined
  /**
   * The arrays of the state before the last applied precomputed step: nothing holds them (every
   * reader of the state copies, a compute-gradient effect reads its params before returning), so the
   * next step's AdamW result is computed into them instead of three new arrays of the model's size
   */
  private spareArrays: StepArrays | undefined
  private finishedEmitted = false
  // checking the leader's entries
  /** gradients of this step and the next, by hex digest: checked entries name them, fetches read them */
  private readonly pool = new Map<string, Pooled>()
  private readonly validations: Validation[] = []
  private readonly fetching = new Set<string>()
  /** digests neither the leader nor the author could show, with when this member first asked */
  private readonly unavailable = new Map<string, number>()
  /** digests the leader could not show, asked of their author next */
  private readonly askAuthor = new Set<string>()
  private nowMs = 0
  private tip: ValidatedTip | undefined
  /**
   * Each member's recent signed gradients: the params digest each was computed on, by step (the
   * newest BASES_KEPT). A state a member installs from another while it checks entries must be
   * vouched for this way by other members (vouched()): a lying leader cannot hand it a state of its
   * own making.
   */
  private readonly bases = new Map<string, Map<number, Uint8Array>>()
  /** the results of checked STEP entries by step: applying or working one out reuses them */
  private readonly checked = new Map<number, Precomputed>()
  readonly counters: MemberCounters = {
    gradientBytesSent: 0,
    gradientsSent: 0,
    stepsPrecomputed: 0,
    gradientsAhead: 0,
    speculationsWasted: 0,
    gradientsReceivedAhead: 0,
    entriesChecked: 0,
    entriesRefused: 0,
    gradientsFetched: 0,
  }

  private readonly rules: StepRules

  constructor(config: MemberConfig, state: TrainingState) {
    if (!config.members.includes(config.self)) throw new RangeError(`${config.self} is not a member`)
    this.config = { ...config, members: [...config.members].sort() }
    this.state = state
    this.compressor = new GradientCompressor(config.compression, config.compressionBlockSize)
    this.rules = {
      training: config.training,
      aggregate: config.aggregate,
      trimCount: config.trimCount,
      normFactorMax: config.normFactorMax,
      suspectCosineMin: config.suspectCosineMin,
      compression: config.compression,
      compressionBlockSize: config.compressionBlockSize,
      minContributors: minContributors(config.members.length, config.minContributors),
    }
  }

  /** The replicated state this member holds (read-only for callers: copy what you keep). */
  current(): Readonly<TrainingState> {
    return this.state
  }

  finished(): boolean {
    return isFinished(this.state, this.config.training)
  }

  /** Takes one input; returns the effects to carry out, in order. */
  step(input: MemberInput): MemberEffect[] {
    this.effects = []
    const now = input.nowMs
    this.nowMs = now
    switch (input.type) {
      case 'tick':
        this.advance(now)
        break
      case 'leadership':
        this.onLeadership(input.leader, input.isLeader, input.term)
        break
      case 'gradient-computed':
        this.onGradientComputed(input.step, input.digest, input.gradient, input.loss)
        this.advance(now)
        break
      case 'gradient-failed':
        this.computing = undefined
        this.emit({ type: 'error', error: input.error })
        this.advance(now)
        break
      case 'gradient-sent':
        this.onGradientSent(input.outcome, input.reason, input.bytes, now)
        this.advance(now)
        break
      case 'gradient-received': {
        const reply = this.onGradientReceived(input.from, input.gradient, input.digest, now)
        this.effects.unshift({ type: 'reply', status: reply.status, reason: reply.reason })
        this.advance(now)
        break
      }
      case 'entries-appending':
        this.onAppending(input.entries)
        break
      case 'work-out':
        this.workOut(input.index, input.term)
        this.advance(now)
        break
      case 'entries-appended':
        this.onAppended(input.entries)
        break
      case 'entries-committed':
        this.onCommitted(input.entries, now)
        break
      case 'proposal-failed':
        this.emit({ type: 'log', message: `proposal of step ${input.step} failed: ${input.reason}` })
        if (this.proposal?.step === input.step && this.proposal.term === input.term) this.proposal = undefined
        this.advance(now)
        break
      case 'outer-params':
        this.onOuterParams(input.round, input.step, input.params, now)
        break
      case 'outer-failed':
        this.outerInFlight = undefined
        this.outerRetryAtMs = now + OUTER_RETRY_MS
        this.emit({ type: 'error', error: input.error })
        break
      case 'state-received':
        this.onStateReceived(input.from, input.state)
        this.advance(now)
        break
      case 'snapshot':
        this.onSnapshot(input.data)
        this.advance(now)
        break
      case 'validate':
        this.validations.push({ id: input.id, entries: [...input.entries], leader: input.leader, at: 0 })
        break
      case 'validate-abandoned': {
        const index = this.validations.findIndex((validation) => validation.id === input.id)
        if (index >= 0) this.validations.splice(index, 1)
        break
      }
      case 'gradient-fetched':
        this.onGradientFetched(input.digest, input.author, input.gradient)
        break
      case 'outer-checked': {
        const outer = this.validations[0]?.outer
        if (outer && outer.round === input.round && !outer.params && !outer.error) {
          outer.params = input.params
          outer.error = input.params ? undefined : (input.error ?? 'no answer')
        }
        break
      }
    }
    this.checkEntries()
    return this.effects
  }

  /**
   * When the member next needs a tick: the straggler timeout of the leader's collection, the re-send
   * of an unacknowledged gradient, the next state request, the outer step's retry. Undefined: only
   * inputs move it on.
   */
  nextWakeMs(): number | undefined {
    let wake = Number.POSITIVE_INFINITY
    const state = this.state
    if (this.needState && !this.isLeader && this.leader)
      wake = earlier(wake, this.stateRequestAtMs + STATE_REQUEST_INTERVAL_MS + 1)
    if (readyForStep(state, this.config.training) && !this.isLeader && this.leader && !this.sending) {
      for (const gradient of [this.pending, this.ahead]) {
        if (gradient && gradient.ackedBy !== this.leader && gradient.sentTo === this.leader)
          wake = earlier(wake, gradient.sentAtMs + this.config.resendMs + 1)
      }
    }
    if (this.isLeader) {
      const collecting = this.collecting
      if (
        collecting?.quorumAtMs !== undefined &&
        collecting.tooFewAt !== received(collecting) &&
        this.isCurrent(collecting) &&
        !this.proposalPending(false)
      )
        wake = earlier(wake, collecting.quorumAtMs + this.config.stragglerTimeoutMs)
      if (needsOuterStep(state, this.config.training) && this.outerInFlight === undefined)
        wake = earlier(wake, this.outerRetryAtMs)
    }
    return Number.isFinite(wake) ? wake : undefined
  }

  /** The params a state request is answered with, or undefined while this copy is wrong. */
  stateForTransfer(): TrainingState | undefined {
    return this.state.diverged ? undefined : this.state
  }

  /**
   * The gradients this member holds computed on exactly `state` (its step and params digest), one per
   * author: sent with the state, so the requester can see who vouches for it (vouched()).
   */
  evidenceFor(state: TrainingState): Array<{ author: string; message: Gradient }> {
    const evidence = new Map<string, Gradient>()
    for (const pooled of this.pool.values()) {
      if (pooled.step !== state.step || evidence.has(pooled.member)) continue
      if (bytesEqual(pooled.message.baseDigest, state.digest)) evidence.set(pooled.member, pooled.message)
    }
    return [...evidence].map(([author, message]) => ({ author, message }))
  }

  // ---- moving on ----

  private emit(effect: MemberEffect): void {
    this.effects.push(effect)
  }

  private continueAfter(after: 'microtask' | 'turn', input: ContinueInput = { type: 'tick' }): void {
    this.emit({ type: 'continue', after, input })
  }

  /** Everything that moves the member on from where it stands. */
  private advance(now: number): void {
    const state = this.state
    const training = this.config.training
    if (isFinished(state, training) && !this.finishedEmitted) {
      this.finishedEmitted = true
      this.emit({
        type: 'finished',
        event: { step: state.step, params: state.params.slice(), digest: toHex(state.digest) },
      })
    }
    const leader = this.leader
    const isLeader = this.isLeader
    if (this.needState && !isLeader && leader && now - this.stateRequestAtMs > STATE_REQUEST_INTERVAL_MS) {
      this.stateRequestAtMs = now
      this.emit({ type: 'request-state', from: leader })
    }
    if (readyForStep(state, training)) {
      this.adoptAhead(state)
      const pending = this.pending
      if (!this.isCurrent(pending) && !this.computing) {
        this.pending = undefined
        this.compute(state.step, state.digest, state.params)
      } else if (pending && this.isCurrent(pending) && pending.ackedBy !== leader && leader) {
        if (isLeader) {
          pending.ackedBy = leader
          this.admit(
            this.config.self,
            pending.step,
            pending.digest,
            pending.decoded,
            pending.loss,
            now,
            pending,
          )
        } else if (
          !this.sending &&
          (pending.sentTo !== leader || now - pending.sentAtMs > this.config.resendMs)
        ) {
          this.send(pending, leader, now)
        }
      }
      this.maybeComputeAhead(state)
      this.maybeSendAhead(leader, isLeader, now)
    }
    if (!isLeader) return
    if (needsOuterStep(state, training)) {
      this.maybeOuterStep(now)
      return
    }
    if (readyForStep(state, training)) this.maybeAggregate(now)
  }

  /** A gradient for this very state (step and params digest). */
  private isCurrent(gradient: { step: number; digest: Uint8Array } | undefined): boolean {
    return (
      gradient !== undefined &&
      gradient.step === this.state.step &&
      bytesEqual(gradient.digest, this.state.digest)
    )
  }

  private compute(step: number, digest: Uint8Array<ArrayBuffer>, params: Float32Array): void {
    this.computing = { step }
    this.emit({ type: 'compute-gradient', step, digest, params })
  }

  private send(gradient: PendingGradient, leader: string, now: number): void {
    this.sending = gradient
    gradient.sentTo = leader
    gradient.sentAtMs = now
    this.emit({ type: 'send-gradient', to: leader, step: gradient.step, message: gradient.message })
  }

  private onGradientComputed(
    step: number,
    digest: Uint8Array<ArrayBuffer>,
    gradient: Float32Array,
    loss: number,
  ): void {
    this.computing = undefined
    const encoded = this.compressor.encode(gradient, step, digest, loss)
    const name = gradientDigest(encoded.message)
    this.addToPool(this.config.self, encoded.message, name, true)
    const computed: PendingGradient = {
      step,
      digest,
      message: encoded.message,
      name,
      decoded: encoded.decoded,
      loss,
      ackedBy: undefined,
      sentTo: '',
      sentAtMs: 0,
    }
    if (step > this.state.step) this.ahead = computed
    else this.pending = computed
    // every member gets every gradient, to check the entries that name them; a follower's own goes to
    // its leader by send-gradient (acknowledged), to the others here
    const to = this.config.members.filter(
      (member) => member !== this.config.self && (this.isLeader || member !== this.leader),
    )
    if (this.config.shareGradients && to.length > 0)
      this.emit({ type: 'share-gradient', to, step, message: encoded.message })
  }

  private onGradientSent(outcome: SendOutcome, reason: string, bytes: number, now: number): void {
    const gradient = this.sending
    this.sending = undefined
    if (!gradient) return
    if (outcome === 'failed') {
      this.emit({ type: 'log', message: `sending the gradient of step ${gradient.step} failed: ${reason}` })
      return
    }
    this.counters.gradientsSent++
    this.counters.gradientBytesSent += bytes
    if (outcome === GradResponse.Status.ACCEPTED || outcome === GradResponse.Status.REJECTED) {
      gradient.ackedBy = gradient.sentTo
      if (outcome === GradResponse.Status.REJECTED) {
        this.emit({
          type: 'log',
          message: `leader ${gradient.sentTo} refused our gradient for step ${gradient.step}: ${reason}`,
        })
      }
    } else if (outcome === GradResponse.Status.NOT_READY) {
      gradient.sentAtMs = now - this.config.resendMs + NOT_READY_RETRY_MS // offer it again soon
    }
  }

  /** A gradient computed ahead becomes the pending one once the state is what it was computed on. */
  private adoptAhead(state: TrainingState): void {
    const ahead = this.ahead
    if (!ahead || ahead.step > state.step) return
    this.ahead = undefined
    if (this.isCurrent(ahead)) {
      this.pending = ahead
      this.counters.gradientsAhead++
    } else this.counters.speculationsWasted++
  }

  /**
   * With this step's gradient delivered and its proposed result worked out and durable here, computes
   * the next step's gradient on that result while the commit is on its way.
   */
  private maybeComputeAhead(state: TrainingState): void {
    const next = this.nextAhead()
    const pending = this.pending
    if (this.computing || !this.aheadReady || !next) return
    if (!pending || !this.isCurrent(pending) || pending.ackedBy === undefined) return
    const step = state.step + 1
    const ahead = this.ahead
    if (ahead && ahead.step === step && bytesEqual(ahead.digest, next.result.digest)) return
    if (ahead) this.counters.speculationsWasted++
    this.ahead = undefined
    this.compute(step, next.result.digest, next.result.params)
  }

  /** A follower sends its gradient computed ahead at once: the leader keeps it until its step begins. */
  private maybeSendAhead(leader: string, isLeader: boolean, now: number): void {
    const ahead = this.ahead
    if (!ahead || isLeader || !leader || this.sending || ahead.ackedBy === leader) return
    if (ahead.sentTo === leader && now - ahead.sentAtMs <= this.config.resendMs) return
    this.send(ahead, leader, now)
  }

  /**
   * The current step's precomputed result, when the step after it may be worked on ahead: work ahead
   * is on, the result was computed on this very state, and the next step is an ordinary one (not
   * past the end, no outer round before it).
   */
  private nextAhead(): Precomputed | undefined {
    const state = this.state
    const next = this.precomputed
    if (!this.config.speculate || !next) return undefined
    if (next.step !== state.step || !bytesEqual(next.baseDigest, state.digest)) return undefined
    const step = state.step + 1
    if (
      step >= this.config.training.steps ||
      outerRoundsRequired(step, this.config.training) > state.outerRounds
    )
      return undefined
    return next
  }

  // ---- leader side ----

  private onGradientReceived(
    from: string,
    gradient: Gradient,
    digest: Uint8Array | undefined,
    now: number,
  ): { status: GradResponse.Status; reason: string } {
    const answer = (status: GradResponse.Status, reason = '') => ({ status, reason })
    if (!this.config.members.includes(from)) return answer(GradResponse.Status.REJECTED, 'not a member')
    const name = digest ?? gradientDigest(gradient)
    this.addToPool(from, gradient, name, true)
    if (!this.isLeader) return answer(GradResponse.Status.NOT_LEADER)
    const state = this.state
    // a member that sends anything is alive, even when its gradient comes too late to count
    if (gradient.step <= state.step)
      this.lastSeenStep.set(from, Math.max(this.lastSeenStep.get(from) ?? -1, gradient.step))
    if (gradient.step < state.step) return answer(GradResponse.Status.STALE, 'step already applied')
    // one computed ahead on the result of the proposal in flight is kept for when that is applied
    const ahead = gradient.step === state.step + 1 && this.acceptsAhead(gradient.baseDigest)
    if (!ahead && (!readyForStep(state, this.config.training) || gradient.step > state.step))
      return answer(GradResponse.Status.NOT_READY)
    if (!ahead && !bytesEqual(gradient.baseDigest, state.digest))
      return answer(GradResponse.Status.STALE, 'computed on other params')
    const named = { name, message: gradient }
    const decoded = decodeGradient(gradient, this.config.training.parameterCount)
    if (!decoded.ok) {
      this.recordRejection(from, gradient.step, gradient.baseDigest, decoded.reason, named)
      return answer(GradResponse.Status.REJECTED, decoded.reason)
    }
    const reason = this.admit(
      from,
      gradient.step,
      gradient.baseDigest,
      decoded.gradient,
      gradient.loss,
      now,
      named,
    )
    return reason ? answer(GradResponse.Status.REJECTED, reason) : answer(GradResponse.Status.ACCEPTED)
  }

  /** Whether a gradient for the next step computed on params `digest` is taken now (see nextAhead). */
  private acceptsAhead(digest: Uint8Array): boolean {
    const next = this.nextAhead()
    return next !== undefined && this.proposalPending(false) && bytesEqual(digest, next.result.digest)
  }

  /** The collection for `step` (the current one, or the next), made anew for another digest. */
  private collectingFor(step: number, digest: Uint8Array): Collecting {
    const next = step > this.state.step
    const current = next ? this.collectingNext : this.collecting
    if (current && current.step === step && bytesEqual(current.digest, digest)) return current
    const fresh: Collecting = {
      step,
      digest,
      contributions: new Map(),
      rejected: new Map(),
      messages: new Map(),
      quorumAtMs: undefined,
      tooFewAt: undefined,
    }
    if (next) this.collectingNext = fresh
    else this.collecting = fresh
    return fresh
  }

  /** Once a step is applied, the gradients collected ahead for the new one are the current ones. */
  private takeCollectedAhead(now: number): void {
    const next = this.collectingNext
    this.collectingNext = undefined
    if (!next || !this.isCurrent(next)) return
    if (received(next) >= this.quorum()) next.quorumAtMs = now
    this.counters.gradientsReceivedAhead += next.contributions.size
    this.collecting = next
  }

  private recordRejection(
    from: string,
    step: number,
    digest: Uint8Array,
    reason: string,
    named: { name: Uint8Array; message: Gradient },
  ): void {
    const collecting = this.collectingFor(step, digest)
    if (!collecting.contributions.has(from)) {
      collecting.rejected.set(from, reason)
      collecting.messages.set(from, named)
      this.keepNamed(from, named)
    }
    this.lastSeenStep.set(from, step)
  }

  /** Gradients (admitted or refused) a step waits for: a majority, never fewer than minContributors. */
  private quorum(): number {
    const count = this.config.members.length
    return Math.max(quorumSize(count), minContributors(count, this.config.minContributors))
  }

  /** Takes a decoded gradient for the current (or next) step; returns a rejection reason or undefined. */
  private admit(
    from: string,
    step: number,
    digest: Uint8Array,
    gradient: Float32Array,
    loss: number,
    now: number,
    named: { name: Uint8Array; message: Gradient },
  ): string | undefined {
    // NaN/Inf are refused on arrival; the norm rule needs the others and runs at aggregation. The
    // squared norm is computed once here and kept for the screening and the agreement scores.
    const contribution: Contribution = { member: from, gradient, loss, squaredNorm: squaredNorm(gradient) }
    const screened = screenGradients([contribution], this.config.training.parameterCount)
    if (screened.rejected.length > 0) {
      this.recordRejection(from, step, digest, screened.rejected[0].reason, named)
      return screened.rejected[0].reason
    }
    const collecting = this.collectingFor(step, digest)
    this.lastSeenStep.set(from, step)
    if (!collecting.contributions.has(from)) {
      collecting.rejected.delete(from)
      collecting.contributions.set(from, contribution)
      collecting.messages.set(from, named)
      this.keepNamed(from, named)
    }
    if (
      step === this.state.step &&
      collecting.quorumAtMs === undefined &&
      received(collecting) >= this.quorum()
    ) {
      collecting.quorumAtMs = now
    }
    return undefined
  }

  private proposalPending(outer: boolean): boolean {
    const proposal = this.proposal
    if (!proposal || proposal.outer !== outer) return false
    return proposal.term === this.term && proposal.step === this.state.step
  }

  private maybeAggregate(now: number): void {
    const state = this.state
    const config = this.config
    const collecting = this.collecting
    if (!collecting || !this.isCurrent(collecting)) return
    if (this.proposalPending(false)) return
    if (collecting.tooFewAt === received(collecting)) return
    const screened = screenIfReady({
      collected: collecting,
      members: config.members,
      lastSeenStep: this.lastSeenStep,
      step: state.step,
      leaderSinceStep: this.leaderSinceStep,
      nowMs: now,
      stragglerTimeoutMs: config.stragglerTimeoutMs,
      expectedLength: config.training.parameterCount,
      normFactorMax: config.normFactorMax,
      quorum: this.quorum(),
    })
    if (screened === undefined) return
    // the entry names every gradient of the step the leader holds, admitted or refused, and is what
    // any member computes from those gradients (verify.ts): followers check it before acknowledging
    const candidates: Candidate[] = []
    for (const [member, named] of collecting.messages) {
      const contribution = collecting.contributions.get(member)
      candidates.push({
        member,
        digest: named.name,
        message: named.message,
        decoded: contribution ? { ok: true, gradient: contribution.gradient } : undefined,
        squaredNorm: contribution?.squaredNorm,
      })
    }
    const decision = decideStep(state, candidates, this.rules, this.spareArrays)
    if (decision.kind === 'too-few') {
      collecting.tooFewAt = received(collecting)
      this.emit({
        type: 'log',
        message:
          `step ${state.step}: ${decision.accepted} of ${decision.gradients} gradients passed ` +
          'screening, waiting for more',
      })
      return
    }
    this.spareArrays = undefined
    this.precomputed = decision.precomputed
    this.aheadReady = false
    this.propose(decision.entry, false)
  }

  private propose(entry: DecodedEntry, outer: boolean): void {
    this.proposal = { step: entry.step, term: this.term, outer }
    this.emit({ type: 'propose', step: entry.step, outer, term: this.term, data: encodeEntry(entry) })
  }

  private maybeOuterStep(now: number): void {
    const state = this.state
    const round = state.outerRounds + 1
    if (this.outerInFlight === round || this.proposalPending(true) || now < this.outerRetryAtMs) return
    if (!this.config.outerSteps) return
    this.outerInFlight = round
    this.emit({ type: 'outer-step', round, step: state.step, params: state.params.slice() })
  }

  private onOuterParams(round: number, step: number, params: Float32Array, now: number): void {
    this.outerInFlight = undefined
    const state = this.state
    if (!this.isLeader || state.step !== step || state.outerRounds !== round - 1) {
      this.advance(now)
      return
    }
    if (params.length !== this.config.training.parameterCount) {
      this.emit({ type: 'error', error: new RangeError(`the outer step returned ${params.length} params`) })
      this.outerRetryAtMs = now + OUTER_RETRY_MS
      return
    }
    this.propose(
      {
        kind: 'outer',
        step,
        contributors: [],
        rejected: [],
        suspects: [],
        agreement: [],
        loss: state.lastLoss,
        update: floatsToBytes(params),
        updateCid: '',
        digestAfter: paramsDigest(params),
        outerRound: round,
      },
      true,
    )
  }

  // ---- inputs from the Raft runner ----

  private onLeadership(leader: string, isLeader: boolean, term: number): void {
    this.leader = leader
    this.isLeader = isLeader
    this.term = term
    this.emit({ type: 'leader-changed', leader, isLeader })
    if (!isLeader) {
      this.collecting = undefined
      this.collectingNext = undefined
    } else {
      this.leaderSinceStep = this.state.step
    }
    this.continueAfter('microtask')
  }

  private onCommitted(entries: readonly Entry[], now: number): void {
    for (const raw of entries) {
      if (raw.type !== 'normal' || raw.data.length === 0) continue
      const entry = decodeEntry(raw.data)
      if (!entry) {
        this.emit({
          type: 'log',
          message: `skipping a log entry at index ${raw.index} that is not a training entry`,
        })
        continue
      }
      const before = this.state
      const { params, firstMoment, secondMoment } = before
      const outcome = applyEntry(before, entry, this.config.training, this.precomputed)
      switch (outcome.kind) {
        case 'applied':
          // the state took the precomputed arrays: its previous ones are free
          if (before.params !== params) {
            this.spareArrays = { params, firstMoment, secondMoment }
            this.counters.stepsPrecomputed++
          }
          this.precomputed = undefined
          this.aheadReady = false
          this.takeCollectedAhead(now)
          this.emit({
            type: 'step-applied',
            event: {
              step: outcome.step,
              loss: entry.loss,
              contributors: entry.contributors,
              rejected: entry.rejected,
              suspects: entry.suspects,
              leader: this.leader,
            },
          })
          break
        case 'outer':
          this.emit({ type: 'outer-applied', round: outcome.round, step: this.state.step })
          break
        case 'duplicate':
          this.emit({
            type: 'log',
            message: `entry for step ${entry.step} (round ${entry.outerRound}) already applied`,
          })
          break
        case 'behind':
          this.needState ??= 'behind'
          break
        case 'mismatch':
          this.emit({ type: 'log', message: `params digest after step ${entry.step} differs from the log` })
          this.needState = 'digest-mismatch'
          break
        case 'ignored':
          this.emit({ type: 'log', message: `entry for step ${entry.step} ignored: ${outcome.reason}` })
          break
      }
    }
    this.prune()
    this.continueAfter('microtask')
  }

  /**
   * Entries whose write has just started (not durable, not committed). A follower works out the
   * newest training entry for its step while the write is in flight (a turn later, so that the
   * runner's write is under way first); its gradient ahead waits until the entry is durable.
   */
  private onAppending(entries: readonly Entry[]): void {
    if (!this.config.speculate || this.isLeader) return
    const last = lastTrainingEntry(entries)
    if (!last) return
    this.speculation = { entry: last, worked: false, durable: false }
    this.continueAfter('turn', { type: 'work-out', index: last.index, term: last.term })
  }

  private workOut(index: number, term: number): void {
    const speculation = this.speculation
    if (!speculation || speculation.entry.index !== index || speculation.entry.term !== term) return
    const state = this.state
    const entry = decodeEntry(speculation.entry.data)
    if (entry?.kind !== 'step' || entry.step !== state.step) return
    const checked = this.checked.get(entry.step)
    const precomputed =
      checked &&
      bytesEqual(checked.baseDigest, state.digest) &&
      bytesEqual(checked.result.digest, entry.digestAfter)
        ? checked
        : precomputeEntry(state, entry, this.config.training, this.spareArrays)
    if (!precomputed) {
      this.counters.speculationsWasted++
      return
    }
    if (precomputed !== checked) this.spareArrays = undefined
    this.precomputed = precomputed
    speculation.worked = true
    this.aheadReady = speculation.durable
  }

  /**
   * Entries just appended to this member's log, durable, not yet committed. The leader's own
   * proposal (known by its term, step and kind): its result is worked out already, the next gradient
   * may start. A follower's entry being worked out: the gradient after it may start once it is.
   */
  private onAppended(entries: readonly Entry[]): void {
    if (!this.config.speculate) return
    if (this.isLeader) {
      const proposal = this.proposal
      if (!proposal || proposal.outer) return
      const own = entries.some((raw) => {
        if (raw.term !== proposal.term || raw.type !== 'normal' || raw.data.length === 0) return false
        const entry = decodeEntry(raw.data)
        return entry?.kind === 'step' && entry.step === proposal.step
      })
      if (!own) return
      this.aheadReady = this.precomputed !== undefined && this.precomputed.step === proposal.step
      this.continueAfter('turn')
      return
    }
    const speculation = this.speculation
    if (!speculation) return
    const { index, term } = speculation.entry
    if (!entries.some((raw) => raw.index === index && raw.term === term)) return
    speculation.durable = true
    if (speculation.worked) {
      this.aheadReady = true
      this.continueAfter('turn')
    }
  }

  private onSnapshot(data: Uint8Array): void {
    const decoded = decodeState(data, this.config.training.parameterCount)
    if (!decoded) {
      this.emit({
        type: 'log',
        message: 'a raft snapshot did not decode as a training state; asking the leader',
      })
      this.needState = 'behind'
      return
    }
    if (decoded.step < this.state.step && !this.state.diverged) return
    if (this.config.shareGradients && !this.vouched(decoded)) {
      // a leader's snapshot gets the check a requested state gets: a lying leader cannot push a
      // state of its own making. Asked for again (with the gradients that vouch for it) until it is.
      this.emit({
        type: 'log',
        message: `a raft snapshot at step ${decoded.step} is not vouched for by a majority; not installed`,
      })
      this.needState ??= 'behind'
      return
    }
    this.install(decoded)
    this.needState = undefined
  }

  private onStateReceived(from: string, bytes: Uint8Array | undefined): void {
    if (bytes === undefined) return
    const decoded = decodeState(bytes, this.config.training.parameterCount)
    if (!decoded) {
      this.emit({ type: 'log', message: `${from} sent an unreadable state` })
      return
    }
    const state = this.state
    if (
      state.diverged ||
      decoded.step > state.step ||
      (decoded.step === state.step && decoded.outerRounds > state.outerRounds)
    ) {
      if (this.config.shareGradients && !this.vouched(decoded)) {
        // asked again at the next state request: the others' gradients for it may not be in yet
        this.emit({
          type: 'log',
          message: `${from}'s state at step ${decoded.step} is not vouched for by a majority; not installed`,
        })
        return
      }
      const reason = this.needState ?? 'behind'
      this.install(decoded)
      this.emit({ type: 'resynced', step: decoded.step, reason })
    }
    this.needState = undefined
  }

  // ---- the gradient pool and the checking of the leader's entries ----

  /**
   * Whether as many other members as a step needs besides this one (minContributors - 1, at least
   * one) signed gradients computed on exactly this state (its step and params digest): with at most
   * that many less one liars among them, an honest member holds it, whoever sent it. More would leave
   * a member that lags with a dead peer unable to catch up while the group waits for its gradient.
   */
  private vouched(state: TrainingState): boolean {
    let vouching = 0
    for (const [member, bases] of this.bases) {
      const digest = bases.get(state.step)
      if (member !== this.config.self && digest && bytesEqual(digest, state.digest)) vouching++
    }
    return vouching >= Math.max(1, this.rules.minContributors - 1)
  }

  /**
   * Keeps a member's gradient for the current or the next step: entries name them, fetches read
   * them. `first`: a gradient as its author sent it, kept only if the author has none for that step
   * yet (a member that sends many cannot fill the pool); fetched ones were named by an entry.
   */
  private addToPool(member: string, message: Gradient, name: Uint8Array, first: boolean): void {
    const step = message.step
    if (first && this.config.members.includes(member)) {
      const bases = this.bases.get(member) ?? new Map<number, Uint8Array>()
      this.bases.set(member, bases)
      if (!bases.has(step)) {
        bases.set(step, message.baseDigest)
        // the oldest step goes once more are held (a member sends one gradient a step)
        if (bases.size > BASES_KEPT) bases.delete(Math.min(...bases.keys()))
      }
    }
    if (step < this.state.step - POOL_STEPS_KEPT || step > this.state.step + 1) return
    const key = toHex(name)
    if (this.pool.has(key)) return
    let held = 0
    for (const pooled of this.pool.values()) if (pooled.member === member && pooled.step === step) held++
    if (first ? held > 0 : held >= POOL_PER_MEMBER_STEP_MAX) return
    this.pool.set(key, { member, step, message })
  }

  /**
   * A gradient this leader collected, and so may name: kept whatever the pool's per-member rule says
   * (its author may have sent another for the step first), so that it can show every one it names.
   */
  private keepNamed(member: string, named: { name: Uint8Array; message: Gradient }): void {
    const key = toHex(named.name)
    if (!this.pool.has(key)) this.pool.set(key, { member, step: named.message.step, message: named.message })
  }

  /** The gradient `digest` names, as this member holds it: for a member checking an entry. */
  gradientFor(digest: Uint8Array): { author: string; message: Gradient } | undefined {
    const pooled = this.pool.get(toHex(digest))
    return pooled ? { author: pooled.member, message: pooled.message } : undefined
  }

  /** Drops what the applied state no longer needs: gradients and checked results of past steps. */
  private prune(): void {
    const step = this.state.step
    for (const [key, pooled] of this.pool) if (pooled.step < step - POOL_STEPS_KEPT) this.pool.delete(key)
    if (this.tip && this.tip.state.step < step) this.tip = undefined
    for (const checkedStep of this.checked.keys()) if (checkedStep < step) this.checked.delete(checkedStep)
  }

  private onGradientFetched(digest: Uint8Array, author: string, gradient: Gradient | undefined): void {
    const key = toHex(digest)
    this.fetching.delete(key)
    if (gradient && bytesEqual(gradientDigest(gradient), digest) && this.config.members.includes(author)) {
      this.counters.gradientsFetched++
      this.unavailable.delete(key)
      this.askAuthor.delete(key)
      this.addToPool(author, gradient, digest, false)
      return
    }
    // the leader has none (or could not be asked): its author is asked next; if it has none either,
    // the entry waits
    if (!this.askAuthor.has(key)) this.askAuthor.add(key)
    else if (!this.unavailable.has(key)) this.unavailable.set(key, this.nowMs)
  }

  /** Works through the validate inputs in order, answering each once its entries are checked. */
  private checkEntries(): void {
    while (this.validations.length > 0) {
      const validation = this.validations[0]
      const verdict = this.checkValidation(validation)
      if (verdict === undefined) return // waiting for a gradient or the coordinator
      this.validations.shift()
      if (verdict.ok) this.counters.entriesChecked += validation.entries.length
      else if (!verdict.retry) this.counters.entriesRefused++
      this.emit({ type: 'validated', id: validation.id, verdict })
    }
  }

  /** The verdict on one validate input, or undefined while it waits for something it asked for. */
  private checkValidation(validation: Validation): EntryVerdict | undefined {
    for (; validation.at < validation.entries.length; validation.at++) {
      const raw = validation.entries[validation.at]
      if (raw.type !== 'normal' || raw.data.length === 0) continue
      const entry = decodeEntry(raw.data)
      if (!entry) return { ok: false, reason: `the entry at index ${raw.index} is not a training entry` }
      const verdict =
        entry.kind === 'outer'
          ? this.checkOuter(validation, entry)
          : this.checkStep(validation.leader, raw.data, entry)
      if (verdict === undefined || !verdict.ok) return verdict
    }
    return { ok: true }
  }

  /** The state an entry of `step` (and, for an OUTER entry, of `outerRounds` before it) applies to. */
  private baseFor(step: number, outerRounds?: number): TrainingState | undefined {
    const tip = this.tip?.state
    const fits = (state: TrainingState) =>
      !state.diverged &&
      state.step === step &&
      (outerRounds === undefined
        ? !needsOuterStep(state, this.config.training)
        : state.outerRounds === outerRounds)
    if (tip && fits(tip)) return tip
    return fits(this.state) ? this.state : undefined
  }

  private checkStep(leader: string, data: Uint8Array, entry: DecodedEntry): EntryVerdict | undefined {
    const retry = (reason: string): EntryVerdict => ({ ok: false, reason, retry: true })
    if (entry.step < this.state.step) return { ok: true } // applied already: it will be skipped
    const base = this.baseFor(entry.step)
    if (!base) {
      // more than the pipelined step ahead: this member is behind, and catches up by a state
      if (entry.step > this.state.step + 1) this.needState ??= 'behind'
      return retry(`cannot check step ${entry.step} yet: this member is at step ${this.state.step}`)
    }
    const members = this.config.members
    const named = namedDigests(entry)
    if (named.length !== entry.contributors.length + entry.rejected.length)
      return { ok: false, reason: `step ${entry.step}: the entry does not name every gradient it uses` }
    const seen = new Set<string>()
    const candidates: Candidate[] = []
    let waiting = false
    for (const { member, digest } of named) {
      if (!members.includes(member) || seen.has(member))
        return { ok: false, reason: `step ${entry.step}: ${member} is not a member or is named twice` }
      seen.add(member)
      const key = toHex(digest)
      const pooled = this.pool.get(key)
      if (!pooled) {
        const since = this.unavailable.get(key)
        if (since !== undefined) {
          // a lagging member may ask after every holder dropped it: it retries, and only a leader
          // whose entries stay unverifiable that long is distrusted
          const reason = `step ${entry.step}: no one could show ${member}'s gradient ${key.slice(0, 16)}`
          if (this.nowMs - since >= UNVERIFIABLE_MS_MAX) return { ok: false, reason }
          // a member that lags asks after every holder dropped the gradient: it catches up by a state
          // the group vouches for (a lying leader's names for gradients no one sent gain it nothing)
          this.needState ??= 'behind'
          this.unavailable.delete(key)
          this.askAuthor.delete(key)
          this.unavailable.set(key, since) // asked again on the next retry, the clock kept
          return { ok: false, reason, retry: true }
        }
        if (!this.fetching.has(key)) {
          this.fetching.add(key)
          const from = this.askAuthor.has(key) ? member : leader
          this.emit({ type: 'fetch-gradient', from, step: entry.step, digest })
        }
        waiting = true
        continue
      }
      if (pooled.member !== member)
        return {
          ok: false,
          reason: `step ${entry.step}: ${pooled.member}'s gradient is named as ${member}'s`,
        }
      if (pooled.message.step !== entry.step || !bytesEqual(pooled.message.baseDigest, base.digest))
        return { ok: false, reason: `step ${entry.step}: ${member}'s named gradient is for other params` }
      candidates.push({ member, digest, message: pooled.message })
    }
    if (waiting) return undefined
    const decision = decideStep(base, candidates, this.rules)
    if (decision.kind === 'too-few')
      return {
        ok: false,
        reason:
          `step ${entry.step}: ${decision.accepted} of ${decision.gradients} named gradients ` +
          'pass screening',
      }
    if (!bytesEqual(encodeEntry(decision.entry), data)) {
      // before blaming the leader, this member checks itself: params changed under their digest
      // (memory corruption, a bad backend) give another result too, and are this member's fault
      if (!bytesEqual(paramsDigest(base.params), base.digest)) {
        this.state.diverged = true
        this.needState = 'digest-mismatch'
        this.tip = undefined
        return { ok: false, reason: `step ${entry.step}: this member's params are damaged`, retry: true }
      }
      return { ok: false, reason: `step ${entry.step}: ${entryDifference(decision.entry, entry)}` }
    }
    const { result } = decision.precomputed
    this.tip = {
      state: {
        ...base,
        step: base.step + 1,
        params: result.params,
        firstMoment: result.firstMoment,
        secondMoment: result.secondMoment,
        digest: result.digest,
        lastLoss: entry.loss,
        diverged: false,
      },
    }
    this.checked.set(entry.step, decision.precomputed)
    return { ok: true }
  }

  private checkOuter(validation: Validation, entry: DecodedEntry): EntryVerdict | undefined {
    if (entry.outerRound <= this.state.outerRounds) return { ok: true } // applied already
    const base = this.baseFor(entry.step, entry.outerRound - 1)
    if (!base) return { ok: false, reason: `cannot check outer round ${entry.outerRound} yet`, retry: true }
    if (!this.config.outerSteps) return { ok: false, reason: 'no coordinator to check outer rounds with' }
    const outer = validation.outer
    if (!outer || outer.round !== entry.outerRound) {
      validation.outer = { round: entry.outerRound }
      this.emit({
        type: 'check-outer',
        round: entry.outerRound,
        step: entry.step,
        params: base.params.slice(),
      })
      return undefined
    }
    if (!outer.params && !outer.error) return undefined
    validation.outer = undefined
    if (!outer.params)
      return {
        ok: false,
        reason: `the coordinator did not answer for round ${entry.outerRound}: ${outer.error}`,
        retry: true,
      }
    const digest = paramsDigest(outer.params)
    if (!bytesEqual(digest, entry.digestAfter) || !bytesEqual(floatsToBytes(outer.params), entry.update))
      return { ok: false, reason: `outer round ${entry.outerRound}: not the coordinator's params` }
    this.tip = {
      state: { ...base, params: outer.params, digest, outerRounds: base.outerRounds + 1, diverged: false },
    }
    return { ok: true }
  }

  private install(state: TrainingState): void {
    this.state = state
    this.tip = undefined
    this.checked.clear()
    this.prune()
    this.pending = undefined
    this.collecting = undefined
    this.collectingNext = undefined
    this.precomputed = undefined
    this.aheadReady = false
  }
}

/** The newest entry of a batch that may be a training entry (normal, not empty). */
function lastTrainingEntry(entries: readonly Entry[]): Entry | undefined {
  let last: Entry | undefined
  for (const entry of entries) if (entry.type === 'normal' && entry.data.length > 0) last = entry
  return last
}

function earlier(wake: number, ms: number): number {
  return Number.isFinite(ms) && ms < wake ? ms : wake
}

/** What in a leader's STEP entry differs from the entry its named gradients give: a distrust reason. */
function entryDifference(expected: DecodedEntry, got: DecodedEntry): string {
  const list = (values: readonly string[]) => `[${values.join(', ')}]`
  if (list(expected.contributors) !== list(got.contributors))
    return `it aggregates ${list(got.contributors)}, the screening admits ${list(expected.contributors)}`
  const refusals = (entry: DecodedEntry) => list(entry.rejected.map((r) => `${r.member}:${r.reason}`))
  if (refusals(expected) !== refusals(got))
    return `it refuses ${refusals(got)}, the screening refuses ${refusals(expected)}`
  if (
    !bytesEqual(expected.update, got.update) ||
    !bytesEqual(expected.updateScales ?? new Uint8Array(0), got.updateScales ?? new Uint8Array(0))
  )
    return 'its update is not the aggregate of the gradients it names'
  if (!bytesEqual(expected.digestAfter, got.digestAfter)) return 'its params digest after the step is wrong'
  if (list(expected.suspects) !== list(got.suspects)) return 'its suspects are not the ones the scores give'
  return 'it differs from the entry its gradients give (loss, scores or encoding)'
}

/** Gradients of a step a leader holds, admitted or refused on arrival. */
function received(collecting: Collecting): number {
  return collecting.contributions.size + collecting.rejected.size
}
