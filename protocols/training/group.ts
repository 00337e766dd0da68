// One member of a training group: data-parallel training whose every step is agreed through Raft.
//
// API (what the daemon calls; types in types.ts):
//
//   const storage = DurableRaftStorage.open(join(dataDir, 'raft', groupId))   // the caller opens/closes it
//   const member = startGroupMember({
//     components: { peerId: host.peerId, raft: host.services.raft, gradients: host.services.gradients },
//     groupId, members, architecture, seed, shard: { inputs, labels }, batchSize, learningRate, steps,
//     aggregate: 'median', compression: 'int8', storage, backend,
//     outerEvery: 50, outerStep: (request) => coordinator.average(request),   // G > 1 only
//   })
//   member.on('step', ({ step, loss, contributors, rejected, suspects, leader }) => ...)
//   member.on('leader' | 'outer' | 'resync' | 'finished' | 'error', ...)
//   member.status()      // step, leader, digest, per-member accepted/rejected/suspect counts, bytes sent
//   const { params, digest } = await member.finished()   // paramsToHostLayers(architecture, params)
//   member.stop()
//
// The host needs two services: `raft: raftTransport()` (protocols/raft/transport.ts) and
// `gradients: gradientExchange()` (exchange.ts, /shardnet/grad/1.0.0).
//
// Each step s: every member computes the gradient of its micro-batch (MicroBatchPlan: task seed,
// step, member index) on its backend from the params after step s-1, compresses it (int8 with error
// feedback, optional) and sends it to the leader. The leader admits gradients for its current step
// and params digest only, waits for a majority and then at most stragglerTimeoutMs for the other
// live members (aggregate.ts), screens (wrong length, NaN/Inf, norm > normFactorMax x median of the
// others), aggregates (mean | median | trimmed-mean), computes the AdamW result and proposes the
// entry {step, contributors, rejected, suspects, loss, update, digest after} (state.ts); with int8
// compression the update is int8 too (the leader's own error feedback), and the AdamW result is that
// of its dequantized values, which every member applies alike. Every member
// applies committed entries in log order; an entry for a step already applied is skipped, so a step
// is never applied twice across leader changes. A member whose digest differs from the entry's, or
// that finds itself behind, asks the leader for its TrainingState over /shardnet/grad/1.0.0 and
// installs it; Raft snapshots carry the same state for members that fell behind the log.
// Work ahead of the commit (speculate, on by default): the entry reaches each follower's log before
// it commits; while it is being written there (the runner's `appending` hook) the follower works out
// its AdamW result (precomputeEntry), and every member computes its gradient for step s+1 on that
// result: a follower once the entry is durable and acknowledged (`appended`), the leader once its
// proposal is out and durable. Applying the committed entry then only takes the result. A follower
// sends that gradient at once; the leader keeps gradients computed on the result of its proposal in
// flight (collectingNext) until that step is applied, and refuses other early ones as before. Work on an entry that did not commit as it was
// is thrown away (its gradient's digest then matches no state).
// With outerEvery = H, after every H steps (and after the last) the leader asks `outerStep` for the
// params to continue from and proposes them as an OUTER entry (DiLoCo-style averaging of groups).
import { logger } from '@libp2p/logger'
import type { Backend } from '../../kernels/backend.js'
import { SeededRandom } from '../../kernels/data/random.js'
import { Mlp, parameterCount } from '../../kernels/models/mlp.js'
import { RaftRunner } from '../raft/runner.js'
import { bootstrapUpdate } from '../raft/storage.js'
import type { Entry } from '../raft/types.js'
import { type Gradient, GradResponse } from '../wire/training.js'
import {
  aggregateGradients,
  agreementScores,
  type Contribution,
  findSuspects,
  NORM_FACTOR_MAX_DEFAULT,
  quorumSize,
  STRAGGLER_TIMEOUT_MS_DEFAULT,
  SUSPECT_COSINE_MIN_DEFAULT,
  screenGradients,
  screenIfReady,
  squaredNorm,
} from './aggregate.js'
import { COMPRESSION_BLOCK_SIZE_DEFAULT, decodeGradient, GradientCompressor } from './compression.js'
import { GradientSendError, gradientRequestBytesMax, stateResponseBytesMax } from './exchange.js'
import {
  bytesEqual,
  floatBytesView,
  floatsToBytes,
  initialParams,
  paramsDigest,
  readParams,
  toHex,
  writeParams,
} from './params.js'
import {
  applyEntry,
  computeStep,
  createTrainingState,
  type DecodedEntry,
  decodeEntry,
  decodeState,
  emptyReport,
  encodeEntry,
  encodeState,
  isFinished,
  MicroBatchPlan,
  needsOuterStep,
  outerRoundsRequired,
  type Precomputed,
  precomputeEntry,
  readyForStep,
  type StepArrays,
  type TrainingConfig,
  type TrainingState,
} from './state.js'
import type {
  FinishedEvent,
  GroupMember,
  GroupMemberEvents,
  GroupMemberInit,
  GroupMemberStatus,
  MemberReport,
  MemberVerdict,
} from './types.js'

export * from './types.js'

/** Largest inline update: the Raft runner's default entry limit less room for the entry's other fields. */
export const INLINE_UPDATE_BYTES_MAX = (8 << 20) - 65_536

/** A group configuration that cannot run (bad sizes, missing outer step). */
export class GroupConfigError extends Error {
  static override name = 'GroupConfigError'
  constructor(message: string) {
    super(message)
    this.name = 'GroupConfigError'
  }
}

/** What a gradient is computed on: the state, or the state a proposed step will give. */
interface GradientBase {
  step: number
  digest: Uint8Array<ArrayBuffer>
  params: Float32Array
}

interface PendingGradient {
  step: number
  digest: Uint8Array
  message: Gradient
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
  quorumAtMs: number | undefined
}

function validate(init: GroupMemberInit, self: string): void {
  const fail = (message: string) => {
    throw new GroupConfigError(message)
  }
  if (!init.members.includes(self)) fail(`this peer (${self}) is not one of the group's members`)
  if (new Set(init.members).size !== init.members.length) fail('the member list has duplicates')
  if (!Number.isInteger(init.steps) || init.steps < 1)
    fail(`steps must be a positive integer, got ${init.steps}`)
  if (!Number.isInteger(init.batchSize) || init.batchSize < 1) fail(`batchSize must be a positive integer`)
  if (!(init.learningRate > 0 && Number.isFinite(init.learningRate))) fail('learningRate must be positive')
  const outerEvery = init.outerEvery ?? 0
  if (!Number.isInteger(outerEvery) || outerEvery < 0) fail('outerEvery must be a non-negative integer')
  if (outerEvery > 0 && !init.outerStep) fail('outerEvery > 0 needs an outerStep function')
  const count = parameterCount(init.architecture)
  if (count * 4 > INLINE_UPDATE_BYTES_MAX) {
    fail(`${count} parameters do not fit an inline log entry (update by block CID is not implemented)`)
  }
  const inputSize = init.architecture.inputSize
  if (init.shard.inputs.length !== init.shard.labels.length * inputSize || init.shard.labels.length === 0) {
    fail(`the shard must hold labels.length x ${inputSize} inputs and at least one sample`)
  }
  if (init.initialParams && init.initialParams.length !== count) {
    fail(`initialParams has ${init.initialParams.length} values, the model ${count}`)
  }
  const state = init.initialState
  if (
    state &&
    (state.params.length !== count ||
      state.firstMoment.length !== count ||
      state.secondMoment.length !== count)
  ) {
    fail(`initialState has ${state.params.length} params, the model ${count}`)
  }
  if (state && (state.diverged || state.step > init.steps))
    fail('initialState is diverged or past the last step')
}

class Emitter {
  private readonly listeners = new Map<string, Set<(value: never) => void>>()
  on(event: string, listener: (value: never) => void): void {
    let set = this.listeners.get(event)
    if (!set) {
      set = new Set()
      this.listeners.set(event, set)
    }
    set.add(listener)
  }
  off(event: string, listener: (value: never) => void): void {
    this.listeners.get(event)?.delete(listener)
  }
  emit(event: string, value: unknown): void {
    for (const listener of this.listeners.get(event) ?? []) (listener as (value: unknown) => void)(value)
  }
}

class GroupMemberRuntime implements GroupMember {
  private readonly init: GroupMemberInit
  private readonly log: ReturnType<typeof logger>
  readonly self: string
  private readonly members: string[]
  private readonly memberIndex: number
  private readonly config: TrainingConfig
  private readonly backend: Backend
  private readonly model: Mlp
  private readonly plan: MicroBatchPlan
  private readonly compressor: GradientCompressor
  private readonly runner: RaftRunner
  private readonly emitter = new Emitter()
  private readonly timer: NodeJS.Timeout
  private state: TrainingState
  private stopped = false
  // member side
  private computing = false
  private pending: PendingGradient | undefined
  private sending = false
  private needState: 'digest-mismatch' | 'behind' | undefined
  private stateRequestAtMs = 0
  // leader side
  private collecting: Collecting | undefined
  /**
   * The leader's collection for the step after its proposal in flight: gradients members computed
   * ahead on that proposal's result (see acceptsAhead), taken over when the proposal is applied
   */
  private collectingNext: Collecting | undefined
  private readonly lastSeenStep = new Map<string, number>()
  /** the step at which this member last became leader: it waits for everyone for a few steps after */
  private leaderSinceStep = 0
  private proposal: { step: number; term: number; outer: boolean } | undefined
  private precomputed: Precomputed | undefined
  /**
   * Work ahead of the commit (init.speculate): `precomputed` is durable in this member's log (the
   * leader's proposal has gone out; a follower has acknowledged the entry it worked out), so the
   * gradient of the step after it may be computed on its params (`ahead`) while the commit is on its
   * way. The gradient is used only if the state then reaches that step with that digest.
   */
  private aheadReady = false
  private ahead: PendingGradient | undefined
  /** the bytes of this leader's last proposal, to know it in the runner's appended entries */
  private proposedData: Uint8Array | undefined
  /**
   * A follower's entry being worked out (precomputeEntry) and whether it is durable here yet: its
   * gradient ahead waits for both, so the acknowledgement leaves before that computation starts
   */
  private speculation: { data: Uint8Array; worked: boolean; durable: boolean } | undefined
  private stepsPrecomputed = 0
  private gradientsAhead = 0
  private speculationsWasted = 0
  private gradientsReceivedAhead = 0
  /**
   * int8 groups: this leader's quantizer of the aggregated updates it proposes (error feedback across
   * its steps; a new leader starts with no residual)
   */
  private updateCompressor: GradientCompressor | undefined
  /**
   * The arrays of the state before this leader's last applied proposal, which it replaced by the
   * proposal's precomputed result: nothing holds them (every reader of the state copies), so the
   * next proposal computes into them instead of three new arrays of the model's size
   */
  private spareArrays: StepArrays | undefined
  private batchInputs: { images: Float32Array; labels: Float32Array } | undefined
  private outerInFlight: number | undefined
  private outerRetryAtMs = 0
  // reporting
  private finishedEmitted = false
  private readonly finishedPromise: Promise<FinishedEvent>
  private resolveFinished!: (event: FinishedEvent) => void
  private gradientBytesSent = 0
  private gradientsSent = 0

  constructor(init: GroupMemberInit) {
    this.init = init
    this.self = init.components.peerId.toString()
    validate(init, this.self)
    this.log = logger(`shardnet:training:${init.groupId}`)
    this.members = [...init.members].sort()
    this.memberIndex = this.members.indexOf(this.self)
    const count = parameterCount(init.architecture)
    this.config = {
      parameterCount: count,
      steps: init.steps,
      learningRate: init.learningRate,
      schedule: init.schedule ?? 'constant',
      weightDecay: init.weightDecay ?? 0,
      outerEvery: init.outerEvery ?? 0,
    }
    this.backend = init.backend
    this.state = init.initialState
      ? adoptState(init.initialState, this.members)
      : createTrainingState(init.initialParams ?? initialParams(init.architecture, init.seed), this.members)
    this.model = Mlp.initialize(this.backend, init.architecture, init.seed)
    this.plan = new MicroBatchPlan(init.shard.labels.length, init.seed, this.members.length, init.batchSize)
    this.compressor = new GradientCompressor(
      init.compression ?? 'none',
      init.compressionBlockSize ?? COMPRESSION_BLOCK_SIZE_DEFAULT,
    )
    this.finishedPromise = new Promise((resolve) => {
      this.resolveFinished = resolve
    })
    if (init.storage.lastIndex() === 0) init.storage.save(bootstrapUpdate(this.members))
    this.runner = new RaftRunner({
      group: init.groupId,
      id: this.self,
      storage: init.storage,
      transport: init.components.raft,
      tickMs: init.raft?.tickMs ?? 25,
      electionTicks: init.raft?.electionTicks ?? 20,
      heartbeatTicks: init.raft?.heartbeatTicks ?? 1,
      snapshotEntries: init.raft?.snapshotEntries ?? 64,
      compactionKeepEntries: init.raft?.compactionKeepEntries ?? 16,
      seed: init.raft?.seed,
      apply: (entries) => this.apply(entries),
      appending: (entries) => this.appending(entries),
      appended: (entries) => this.appended(entries),
      restore: (data) => this.restore(data),
      snapshotData: () => encodeState(this.state),
      onLeaderChange: (lead, role) => this.leaderChanged(lead, role),
    })
    init.components.gradients.join(init.groupId, {
      isMember: (peer) => this.members.includes(peer),
      requestBytesMax: gradientRequestBytesMax(count),
      responseBytesMax: stateResponseBytesMax(count, this.members.length),
      onGradient: (from, gradient) => this.onGradient(from, gradient),
      onStateRequest: () => this.onStateRequest(),
    })
    this.runner.start()
    this.timer = setInterval(() => this.pump(), 20)
    queueMicrotask(() => this.pump())
  }

  // ---- public API ----

  on<K extends keyof GroupMemberEvents>(event: K, listener: (value: GroupMemberEvents[K]) => void): void {
    this.emitter.on(event, listener as (value: never) => void)
  }

  off<K extends keyof GroupMemberEvents>(event: K, listener: (value: GroupMemberEvents[K]) => void): void {
    this.emitter.off(event, listener as (value: never) => void)
  }

  status(): GroupMemberStatus {
    const raft = this.runner.status()
    return {
      groupId: this.init.groupId,
      self: this.self,
      members: [...this.members],
      step: this.state.step,
      steps: this.config.steps,
      outerRounds: this.state.outerRounds,
      leader: raft.lead,
      isLeader: raft.state === 'leader',
      digest: toHex(this.state.digest),
      lastLoss: this.state.lastLoss,
      finished: isFinished(this.state, this.config),
      reports: [...this.state.counts.values()].map((report) => verdict(report, this.suspectCosineMin())),
      gradientBytesSent: this.gradientBytesSent,
      gradientsSent: this.gradientsSent,
      raftTerm: raft.term,
      stepsPrecomputed: this.stepsPrecomputed,
      gradientsAhead: this.gradientsAhead,
      speculationsWasted: this.speculationsWasted,
      gradientsReceivedAhead: this.gradientsReceivedAhead,
    }
  }

  finished(): Promise<FinishedEvent> {
    return this.finishedPromise
  }

  params(): Float32Array {
    return this.state.params.slice()
  }

  encodedState(): Uint8Array {
    return encodeState(this.state)
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.timer)
    this.runner.stop()
    this.init.components.gradients.leave(this.init.groupId)
    this.model.dispose()
  }

  private suspectCosineMin(): number {
    return this.init.suspectCosineMin ?? SUSPECT_COSINE_MIN_DEFAULT
  }

  // ---- the loop ----

  private emit<K extends keyof GroupMemberEvents>(event: K, value: GroupMemberEvents[K]): void {
    try {
      this.emitter.emit(event, value)
    } catch (error) {
      this.log.error('a %s listener threw: %s', event, (error as Error).message)
    }
  }

  private fail(error: unknown): void {
    const wrapped = error instanceof Error ? error : new Error(String(error))
    this.log.error('%s', wrapped.message)
    this.emit('error', wrapped)
  }

  /** Everything that moves the member on; called on a timer and after every event. Never throws. */
  private pump(): void {
    if (this.stopped) return
    try {
      this.pumpOnce()
    } catch (error) {
      this.fail(error)
    }
  }

  private pumpOnce(): void {
    const now = Date.now()
    const state = this.state
    if (isFinished(state, this.config) && !this.finishedEmitted) {
      this.finishedEmitted = true
      const event = { step: state.step, params: state.params.slice(), digest: toHex(state.digest) }
      this.emit('finished', event)
      this.resolveFinished(event)
    }
    const leader = this.runner.leader()
    const isLeader = this.runner.isLeader()
    if (this.needState && !isLeader && leader && now - this.stateRequestAtMs > 500) {
      this.stateRequestAtMs = now
      void this.requestState(leader)
    }
    if (readyForStep(state, this.config)) {
      this.adoptAhead(state)
      const pending = this.pending
      if (
        (!pending || pending.step !== state.step || !bytesEqual(pending.digest, state.digest)) &&
        !this.computing
      ) {
        this.pending = undefined
        void this.computeGradient()
      } else if (pending && pending.step === state.step && pending.ackedBy !== leader && leader) {
        if (isLeader) {
          pending.ackedBy = leader
          this.admit(this.self, pending.step, pending.digest, pending.decoded, pending.loss)
        } else if (
          !this.sending &&
          (pending.sentTo !== leader || now - pending.sentAtMs > (this.init.resendMs ?? 1000))
        ) {
          void this.sendGradient(pending, leader)
        }
      }
      this.maybeComputeAhead(state)
      this.maybeSendAhead(leader, isLeader, now)
    }
    if (!isLeader) return
    if (needsOuterStep(state, this.config)) {
      this.maybeOuterStep(now)
      return
    }
    if (readyForStep(state, this.config)) this.maybeAggregate(now)
  }

  /** A gradient computed ahead becomes the pending one once the state is what it was computed on. */
  private adoptAhead(state: TrainingState): void {
    const ahead = this.ahead
    if (!ahead || ahead.step > state.step) return
    this.ahead = undefined
    if (ahead.step === state.step && bytesEqual(ahead.digest, state.digest)) {
      this.pending = ahead
      this.gradientsAhead++
    } else this.speculationsWasted++
  }

  /**
   * With this step's gradient delivered and its proposed result worked out and durable here, computes
   * the next step's gradient on that result while the commit is on its way (see aheadReady).
   */
  private maybeComputeAhead(state: TrainingState): void {
    const next = this.nextAhead()
    const pending = this.pending
    if (this.computing || !this.aheadReady || !next) return
    if (!pending || pending.step !== state.step || !bytesEqual(pending.digest, state.digest)) return
    if (pending.ackedBy === undefined) return
    const step = state.step + 1
    const ahead = this.ahead
    if (ahead && ahead.step === step && bytesEqual(ahead.digest, next.result.digest)) return
    if (ahead) this.speculationsWasted++
    this.ahead = undefined
    void this.computeGradient({ step, digest: next.result.digest, params: next.result.params })
  }

  /**
   * A follower sends its gradient computed ahead at once: the leader keeps it until the step it
   * follows is applied (acceptsAhead), so the commit's notice and this gradient cross on the wire.
   */
  private maybeSendAhead(leader: string, isLeader: boolean, now: number): void {
    const ahead = this.ahead
    if (!ahead || isLeader || !leader || this.sending || ahead.ackedBy === leader) return
    if (ahead.sentTo === leader && now - ahead.sentAtMs <= (this.init.resendMs ?? 1000)) return
    void this.sendGradient(ahead, leader)
  }

  private async computeGradient(base: GradientBase = this.state): Promise<void> {
    this.computing = true
    const { step, digest } = base
    const backend = this.backend
    try {
      writeParams(backend, this.model.parameters(), base.params)
      const inputSize = this.init.architecture.inputSize
      const batch = this.init.batchSize
      const indices = this.plan.indices(step, this.memberIndex)
      // the batch's inputs go to the backend by copy (upload): one pair of arrays serves every step
      this.batchInputs ??= { images: new Float32Array(batch * inputSize), labels: new Float32Array(batch) }
      const { images, labels } = this.batchInputs
      for (let row = 0; row < batch; row++) {
        const sample = indices[row]
        images.set(
          this.init.shard.inputs.subarray(sample * inputSize, (sample + 1) * inputSize),
          row * inputSize,
        )
        labels[row] = this.init.shard.labels[sample]
      }
      const x = backend.upload(images, [batch, inputSize])
      const y = backend.upload(labels, [batch])
      const result = this.model.lossAndGradients(x, y)
      const gradientTensors = result.layers.flatMap((layer) => [layer.weight, layer.bias])
      const lossSum = backend.sum(result.loss)
      const [gradient, lossValues] = await Promise.all([
        readParams(backend, gradientTensors),
        backend.read(lossSum),
      ])
      for (const tensor of [x, y, result.loss, result.logits, lossSum, ...gradientTensors]) tensor.dispose()
      if (this.stopped) return
      const loss = lossValues[0] / batch
      this.injectFault(gradient, step)
      const encoded = this.compressor.encode(gradient, step, digest, loss)
      this.log.trace('computed the gradient of step %d', step)
      const computed: PendingGradient = {
        step,
        digest,
        message: encoded.message,
        decoded: encoded.decoded,
        loss,
        ackedBy: undefined,
        sentTo: '',
        sentAtMs: 0,
      }
      if (step > this.state.step) this.ahead = computed
      else this.pending = computed
    } catch (error) {
      this.fail(error)
    } finally {
      this.computing = false
    }
    this.pump()
  }

  /** Test-only lies: scale the gradient, or replace it by a random direction of `factor` x its norm. */
  private injectFault(gradient: Float32Array, step: number): void {
    const fault = this.init.fault
    if (!fault) return
    if (fault.kind === 'scale') {
      for (let i = 0; i < gradient.length; i++) gradient[i] *= fault.factor
      return
    }
    let norm = 0
    for (const value of gradient) norm += value * value
    norm = Math.sqrt(norm)
    const random = SeededRandom.stream(this.init.seed, `fault/${this.self}/${step}`)
    let randomNorm = 0
    for (let i = 0; i < gradient.length; i++) {
      gradient[i] = random.normal()
      randomNorm += gradient[i] * gradient[i]
    }
    const scale = (fault.factor * norm) / Math.sqrt(randomNorm)
    for (let i = 0; i < gradient.length; i++) gradient[i] *= scale
  }

  private async sendGradient(pending: PendingGradient, leader: string): Promise<void> {
    this.sending = true
    this.log.trace('sending the gradient of step %d to %s', pending.step, leader)
    pending.sentTo = leader
    pending.sentAtMs = Date.now()
    try {
      const { response, bytes } = await this.init.components.gradients.sendGradient(
        leader,
        this.init.groupId,
        pending.message,
      )
      this.gradientsSent++
      this.gradientBytesSent += bytes
      if (
        response.status === GradResponse.Status.ACCEPTED ||
        response.status === GradResponse.Status.REJECTED
      ) {
        pending.ackedBy = leader
        if (response.status === GradResponse.Status.REJECTED) {
          this.log('leader %s refused our gradient for step %d: %s', leader, pending.step, response.reason)
        }
      } else if (response.status === GradResponse.Status.NOT_READY) {
        pending.sentAtMs = Date.now() - (this.init.resendMs ?? 1000) + 50 // retry soon
      }
    } catch (error) {
      if (!(error instanceof GradientSendError)) this.fail(error)
      else this.log('sending the gradient of step %d to %s failed: %s', pending.step, leader, error.message)
    } finally {
      this.sending = false
    }
    this.pump()
  }

  private async requestState(leader: string): Promise<void> {
    try {
      const response = await this.init.components.gradients.requestState(
        leader,
        this.init.groupId,
        stateResponseBytesMax(this.config.parameterCount, this.members.length),
      )
      if (response.status !== GradResponse.Status.STATE) return
      const decoded = decodeState(response.state, this.config.parameterCount)
      if (!decoded) {
        this.log('leader %s sent an unreadable state', leader)
        return
      }
      const state = this.state
      if (
        state.diverged ||
        decoded.step > state.step ||
        (decoded.step === state.step && decoded.outerRounds > state.outerRounds)
      ) {
        const reason = this.needState ?? 'behind'
        this.install(decoded)
        this.emit('resync', { step: decoded.step, reason })
      }
      this.needState = undefined
    } catch (error) {
      this.log('state request to %s failed: %s', leader, (error as Error).message)
    }
    this.pump()
  }

  private install(state: TrainingState): void {
    this.state = state
    this.pending = undefined
    this.collecting = undefined
    this.collectingNext = undefined
    this.precomputed = undefined
    this.aheadReady = false
  }

  // ---- leader side ----

  private onGradient(from: string, gradient: Gradient): GradResponse {
    const response = (status: GradResponse.Status, reason = ''): GradResponse => ({
      status,
      reason,
      leader: this.runner.leader(),
      state: new Uint8Array(0),
    })
    if (this.stopped || !this.runner.isLeader()) return response(GradResponse.Status.NOT_LEADER)
    const state = this.state
    // a member that sends anything is alive, even when its gradient comes too late to count
    if (gradient.step <= state.step)
      this.lastSeenStep.set(from, Math.max(this.lastSeenStep.get(from) ?? -1, gradient.step))
    if (gradient.step < state.step) return response(GradResponse.Status.STALE, 'step already applied')
    // one computed ahead on the result of the proposal in flight is kept for when that is applied
    const ahead = gradient.step === state.step + 1 && this.acceptsAhead(gradient.baseDigest)
    if (!ahead && (!readyForStep(state, this.config) || gradient.step > state.step)) {
      return response(GradResponse.Status.NOT_READY)
    }
    if (!ahead && !bytesEqual(gradient.baseDigest, state.digest)) {
      return response(GradResponse.Status.STALE, 'computed on other params')
    }
    const decoded = decodeGradient(gradient, this.config.parameterCount)
    if (!decoded.ok) {
      this.recordRejection(from, gradient.step, gradient.baseDigest, decoded.reason)
      return response(GradResponse.Status.REJECTED, decoded.reason)
    }
    const reason = this.admit(from, gradient.step, gradient.baseDigest, decoded.gradient, gradient.loss)
    return reason ? response(GradResponse.Status.REJECTED, reason) : response(GradResponse.Status.ACCEPTED)
  }

  /** The collection for `step` (the current one, or the next: see collectingNext), made anew for another digest. */
  private collectingFor(step: number, digest: Uint8Array): Collecting {
    const next = step > this.state.step
    const current = next ? this.collectingNext : this.collecting
    if (current && current.step === step && bytesEqual(current.digest, digest)) return current
    const fresh: Collecting = {
      step,
      digest,
      contributions: new Map(),
      rejected: new Map(),
      quorumAtMs: undefined,
    }
    if (next) this.collectingNext = fresh
    else this.collecting = fresh
    return fresh
  }

  /**
   * The current step's precomputed result, when the step after it may be worked on ahead: work ahead
   * is on, the result was computed on this very state, and the next step is an ordinary one (not
   * past the end, no outer round before it).
   */
  private nextAhead(): Precomputed | undefined {
    const state = this.state
    const next = this.precomputed
    if (this.init.speculate === false || !next) return undefined
    if (next.step !== state.step || !bytesEqual(next.baseDigest, state.digest)) return undefined
    const step = state.step + 1
    if (step >= this.config.steps || outerRoundsRequired(step, this.config) > state.outerRounds)
      return undefined
    return next
  }

  /**
   * Whether a gradient for the next step computed on params `digest` is taken now: this leader has a
   * proposal in flight for the current step whose result has that digest (see nextAhead).
   */
  private acceptsAhead(digest: Uint8Array): boolean {
    const next = this.nextAhead()
    return next !== undefined && this.proposalPending(false) && bytesEqual(digest, next.result.digest)
  }

  /** Once a step is applied, the gradients collected ahead for the new one are the current ones. */
  private takeCollectedAhead(): void {
    const next = this.collectingNext
    this.collectingNext = undefined
    const state = this.state
    if (!next || next.step !== state.step || !bytesEqual(next.digest, state.digest)) return
    if (next.contributions.size >= quorumSize(this.members.length)) next.quorumAtMs = Date.now()
    this.gradientsReceivedAhead += next.contributions.size
    this.collecting = next
  }

  private recordRejection(from: string, step: number, digest: Uint8Array, reason: string): void {
    const collecting = this.collectingFor(step, digest)
    if (!collecting.contributions.has(from)) collecting.rejected.set(from, reason)
    this.lastSeenStep.set(from, step)
  }

  /** Takes a decoded gradient for the current step; returns a rejection reason or undefined. */
  private admit(
    from: string,
    step: number,
    digest: Uint8Array,
    gradient: Float32Array,
    loss: number,
  ): string | undefined {
    // NaN/Inf are refused on arrival; the norm rule needs the others and runs at aggregation. The
    // squared norm is computed once here and kept for the screening and the agreement scores.
    const contribution: Contribution = { member: from, gradient, loss, squaredNorm: squaredNorm(gradient) }
    const screened = screenGradients([contribution], this.config.parameterCount)
    if (screened.rejected.length > 0) {
      this.recordRejection(from, step, digest, screened.rejected[0].reason)
      return screened.rejected[0].reason
    }
    const collecting = this.collectingFor(step, digest)
    this.log.trace('admitted the gradient of %s for step %d', from, step)
    this.lastSeenStep.set(from, step)
    if (!collecting.contributions.has(from)) {
      collecting.rejected.delete(from)
      collecting.contributions.set(from, contribution)
    }
    if (
      step === this.state.step &&
      collecting.quorumAtMs === undefined &&
      collecting.contributions.size >= quorumSize(this.members.length)
    ) {
      collecting.quorumAtMs = Date.now()
    }
    queueMicrotask(() => this.pump())
    return undefined
  }

  private proposalPending(outer: boolean): boolean {
    const proposal = this.proposal
    if (!proposal || proposal.outer !== outer) return false
    const term = this.runner.status().term
    return proposal.term === term && proposal.step === this.state.step
  }

  private maybeAggregate(now: number): void {
    const state = this.state
    const collecting = this.collecting
    if (!collecting || collecting.step !== state.step || !bytesEqual(collecting.digest, state.digest)) return
    if (this.proposalPending(false)) return
    const screened = screenIfReady({
      collected: collecting,
      members: this.members,
      lastSeenStep: this.lastSeenStep,
      step: state.step,
      leaderSinceStep: this.leaderSinceStep,
      nowMs: now,
      stragglerTimeoutMs: this.init.stragglerTimeoutMs ?? STRAGGLER_TIMEOUT_MS_DEFAULT,
      expectedLength: this.config.parameterCount,
      normFactorMax: this.init.normFactorMax ?? NORM_FACTOR_MAX_DEFAULT,
    })
    if (screened === undefined) return
    const aggregate = aggregateGradients(
      screened.accepted.map((contribution) => contribution.gradient),
      this.init.aggregate ?? 'mean',
      this.init.trimCount ?? 1,
    )
    const scores = agreementScores(screened.accepted)
    const suspects = findSuspects(
      screened.accepted,
      this.init.suspectCosineMin ?? SUSPECT_COSINE_MIN_DEFAULT,
      scores,
    )
    const loss =
      screened.accepted.reduce((total, contribution) => total + contribution.loss, 0) /
      screened.accepted.length
    // int8 groups propose an int8 update (with error feedback), a quarter of the bytes of float32 to
    // every follower and into every log; every member applies its dequantized values
    let update: Precomputed['update']
    let applied = aggregate
    if (this.compressor.compression === 'int8') {
      this.updateCompressor ??= new GradientCompressor('int8', this.compressor.blockSize)
      const encoded = this.updateCompressor.encode(aggregate, state.step, state.digest, loss)
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
    // the arrays the state held before the last applied proposal are free: compute into them
    const result = computeStep(state, applied, this.config, this.spareArrays)
    this.spareArrays = undefined
    const rejected = [
      ...[...collecting.rejected.entries()].map(([member, reason]) => ({ member, reason })),
      ...screened.rejected,
    ].sort((a, b) => (a.member < b.member ? -1 : 1))
    const entry: DecodedEntry = {
      kind: 'step',
      step: state.step,
      contributors: screened.accepted.map((contribution) => contribution.member),
      rejected,
      suspects,
      agreement: screened.accepted.length >= 3 ? screened.accepted.map((c) => scores.get(c.member) ?? 0) : [],
      loss,
      ...update,
      updateCid: '',
      digestAfter: result.digest,
      outerRound: 0,
    }
    this.precomputed = { step: state.step, baseDigest: state.digest, update, result }
    this.aheadReady = false
    this.propose(entry, false)
  }

  private propose(entry: DecodedEntry, outer: boolean): void {
    const term = this.runner.status().term
    this.log.trace('proposing step %d (%s)', entry.step, outer ? 'outer' : 'inner')
    this.proposal = { step: entry.step, term, outer }
    const data = encodeEntry(entry)
    this.proposedData = data
    this.runner.propose(data).then(
      () => this.pump(),
      (error: Error) => {
        this.log('proposal of step %d failed: %s', entry.step, error.message)
        if (this.proposal?.step === entry.step && this.proposal.term === term) this.proposal = undefined
        this.pump()
      },
    )
  }

  private maybeOuterStep(now: number): void {
    const state = this.state
    const round = state.outerRounds + 1
    if (this.outerInFlight === round || this.proposalPending(true) || now < this.outerRetryAtMs) return
    const outerStep = this.init.outerStep
    if (!outerStep) return
    this.outerInFlight = round
    const step = state.step
    outerStep({ groupId: this.init.groupId, round, step, params: state.params.slice() }).then(
      (params) => {
        this.outerInFlight = undefined
        const current = this.state
        if (
          this.stopped ||
          !this.runner.isLeader() ||
          current.step !== step ||
          current.outerRounds !== round - 1
        ) {
          return this.pump()
        }
        if (params.length !== this.config.parameterCount) {
          this.fail(new GroupConfigError(`the outer step returned ${params.length} params`))
          this.outerRetryAtMs = Date.now() + 1000
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
            loss: current.lastLoss,
            update: floatsToBytes(params),
            updateCid: '',
            digestAfter: paramsDigest(params),
            outerRound: round,
          },
          true,
        )
      },
      (error: unknown) => {
        this.outerInFlight = undefined
        this.outerRetryAtMs = Date.now() + 1000
        this.fail(error)
      },
    )
  }

  private onStateRequest(): GradResponse {
    const ok = !this.stopped && !this.state.diverged
    return {
      status: ok ? GradResponse.Status.STATE : GradResponse.Status.NOT_READY,
      reason: '',
      leader: this.runner.leader(),
      state: ok ? (encodeState(this.state) as Uint8Array<ArrayBuffer>) : new Uint8Array(0),
    }
  }

  // ---- raft hooks ----

  private apply(entries: Entry[]): void {
    for (const raw of entries) {
      if (raw.type !== 'normal' || raw.data.length === 0) continue
      const entry = decodeEntry(raw.data)
      if (!entry) {
        this.log('skipping a log entry at index %d that is not a training entry', raw.index)
        continue
      }
      const before = this.state
      const { params, firstMoment, secondMoment } = before
      const outcome = applyEntry(before, entry, this.config, this.precomputed)
      switch (outcome.kind) {
        case 'applied':
          this.log.trace('applied step %d', outcome.step)
          // the state took the precomputed arrays: its previous ones are free
          if (before.params !== params) {
            this.spareArrays = { params, firstMoment, secondMoment }
            this.stepsPrecomputed++
          }
          this.precomputed = undefined
          this.aheadReady = false
          this.takeCollectedAhead()
          this.emit('step', {
            step: outcome.step,
            loss: entry.loss,
            contributors: entry.contributors,
            rejected: entry.rejected,
            suspects: entry.suspects,
            leader: this.runner.leader(),
          })
          break
        case 'outer':
          this.emit('outer', { round: outcome.round, step: this.state.step })
          break
        case 'duplicate':
          this.log('entry for step %d (round %d) already applied: skipped', entry.step, entry.outerRound)
          break
        case 'behind':
          this.needState ??= 'behind'
          break
        case 'mismatch':
          this.log.error('params digest after step %d differs from the log: requesting the state', entry.step)
          this.needState = 'digest-mismatch'
          break
        case 'ignored':
          this.log('entry for step %d ignored: %s', entry.step, outcome.reason)
          break
      }
    }
    queueMicrotask(() => this.pump())
  }

  /**
   * Entries whose write has just started (the runner's hook; not durable, not committed). A follower
   * works out the newest training entry for its step (precomputeEntry) while the write is in flight,
   * so that at commit it only takes the result; the gradient after it waits until the entry is
   * durable and acknowledged (appended).
   */
  private appending(entries: Entry[]): void {
    if (this.stopped || this.init.speculate === false || this.runner.isLeader()) return
    const last = lastTrainingEntry(entries)
    if (!last) return
    const speculation = { data: last.data, worked: false, durable: false }
    this.speculation = speculation
    setImmediate(() => this.speculate(last, speculation))
  }

  /**
   * Entries just appended to this member's log, durable, not yet committed (the runner's hook). The
   * leader's own proposal: its result is precomputed already, the next gradient may start. A
   * follower's entry: its acknowledgement has gone, so the gradient after it may start once it is
   * worked out (appending).
   */
  private appended(entries: Entry[]): void {
    if (this.stopped || this.init.speculate === false) return
    if (this.runner.isLeader()) {
      if (this.proposedData && entries.some((entry) => entry.data === this.proposedData)) {
        this.proposedData = undefined
        this.aheadReady = this.precomputed !== undefined
        setImmediate(() => this.pump())
      }
      return
    }
    const speculation = this.speculation
    if (!speculation || !entries.some((entry) => entry.data === speculation.data)) return
    speculation.durable = true
    if (speculation.worked) {
      this.aheadReady = true
      setImmediate(() => this.pump())
    }
  }

  private speculate(raw: Entry, speculation: { worked: boolean; durable: boolean }): void {
    if (this.stopped || this.speculation !== speculation) return
    try {
      const state = this.state
      const entry = decodeEntry(raw.data)
      if (entry?.kind !== 'step' || entry.step !== state.step) return
      const precomputed = precomputeEntry(state, entry, this.config, this.spareArrays)
      if (!precomputed) {
        this.speculationsWasted++
        return
      }
      this.spareArrays = undefined
      this.precomputed = precomputed
      speculation.worked = true
      this.aheadReady = speculation.durable
    } catch (error) {
      this.fail(error)
    }
    this.pump()
  }

  private restore(data: Uint8Array): void {
    const decoded = decodeState(data, this.config.parameterCount)
    if (!decoded) {
      this.log.error('a raft snapshot did not decode as a training state; asking the leader')
      this.needState = 'behind'
      return
    }
    if (this.state && decoded.step < this.state.step && !this.state.diverged) return
    this.install(decoded)
  }

  private leaderChanged(lead: string, role: string): void {
    this.emit('leader', { leader: lead, isLeader: role === 'leader' })
    if (role !== 'leader') {
      this.collecting = undefined
      this.collectingNext = undefined
    } else {
      this.leaderSinceStep = this.state.step
      this.updateCompressor = undefined
    }
    queueMicrotask(() => this.pump())
  }
}

/** The newest entry of a batch that may be a training entry (normal, not empty). */
function lastTrainingEntry(entries: Entry[]): Entry | undefined {
  let last: Entry | undefined
  for (const entry of entries) if (entry.type === 'normal' && entry.data.length > 0) last = entry
  return last
}

/**
 * A copy of `state` for a group of `members` (a re-formed group): the counts of members who left are
 * dropped (they would grow every state transfer), newcomers start with empty ones.
 */
function adoptState(state: TrainingState, members: readonly string[]): TrainingState {
  return {
    ...state,
    params: state.params.slice(),
    firstMoment: state.firstMoment.slice(),
    secondMoment: state.secondMoment.slice(),
    counts: new Map(members.map((member) => [member, state.counts.get(member) ?? emptyReport(member)])),
  }
}

/** A member's report with its verdict (see MemberVerdict). */
export function verdict(report: MemberReport, suspectCosineMin = SUSPECT_COSINE_MIN_DEFAULT): MemberVerdict {
  const meanAgreement = report.scored > 0 ? report.agreementSum / report.scored : Number.NaN
  return {
    ...report,
    meanAgreement,
    suspected:
      (report.scored >= 10 && meanAgreement < suspectCosineMin) ||
      (report.rejected > 0 && report.rejected > report.accepted),
  }
}

/** Starts a member of a training group (see the header for the protocol). Throws GroupConfigError. */
export function startGroupMember(init: GroupMemberInit): GroupMember {
  return new GroupMemberRuntime(init)
}

/** The outer rounds a run of `steps` with outer steps every `outerEvery` performs. */
export function outerRoundsOf(steps: number, outerEvery: number): number {
  return outerRoundsRequired(steps, {
    parameterCount: 0,
    steps,
    learningRate: 1,
    schedule: 'constant',
    weightDecay: 0,
    outerEvery,
  })
}
