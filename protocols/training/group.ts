// One member of a training group over the network: the driver of the pure core in member.ts. It
// carries out the core's effects (compute a gradient on the backend, send it over
// /shardnet/grad/1.0.0, propose an entry to the Raft runner, fetch the leader's state, run the outer
// step) and feeds their outcomes back, with the Raft runner's hooks and the clock (one timer, armed
// for the core's next deadline). What a step is, the work ahead of the commit, admission, the
// straggler timeout, re-sends and outer rounds are decided in member.ts.
//
// API (what the daemon calls; types in types.ts):
//
//   const storage = DurableRaftStorage.open(join(dataDir, 'raft', groupId))   // the caller opens/closes it
//   const member = startGroupMember({
//     components: { peerId: host.peerId, raft: host.services.raft, gradients: host.services.gradients },
//     groupId, members, model: mlpTrainingModel(architecture, shard), seed, batchSize, learningRate, steps,
//     aggregate: 'median', compression: 'int8', storage, backend,
//     outerEvery: 50, outerStep: (request) => coordinator.average(request),   // G > 1 only
//   })
//   member.on('step', ({ step, loss, contributors, rejected, suspects, leader }) => ...)
//   member.on('leader' | 'outer' | 'resync' | 'finished' | 'error', ...)
//   member.status()      // step, leader, digest, per-member accepted/rejected/suspect counts, bytes sent
//   const { params, digest } = await member.finished()   // the model's flat layout
//   member.stop()
//
// The host needs two services: `raft: raftTransport()` (protocols/raft/transport.ts) and
// `gradients: gradientExchange()` (exchange.ts, /shardnet/grad/1.0.0).
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { SCHEDULE_DEFAULT, WEIGHT_DECAY_DEFAULT } from '../../kernels/models/training.js'
import { ENTRY_BYTES_MAX_DEFAULT, RaftRunner } from '../raft/runner.js'
import { bootstrapUpdate } from '../raft/storage.js'
import type { Entry } from '../raft/types.js'
import { type Gradient, type GradientFetch, GradResponse } from '../wire/training.js'
import { SUSPECT_COSINE_MIN_DEFAULT } from './aggregate.js'
import {
  GradientSendError,
  gradientRequestBytesMax,
  REQUEST_OVERHEAD_BYTES,
  stateResponseBytesMax,
} from './exchange.js'
import type { GradientComputer } from './gradients.js'
import {
  type EntryVerdict,
  MEMBER_RULE_DEFAULTS,
  type MemberConfig,
  MemberCore,
  type MemberEffect,
  type MemberInput,
} from './member.js'
import { toHex } from './params.js'
import {
  createTrainingState,
  emptyReport,
  encodeState,
  outerRoundsRequired,
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
import { gradientDigest, MIN_CONTRIBUTORS_DEFAULT, minContributors, signaturePayload } from './verify.js'

export * from './types.js'

/** Largest inline update: the Raft runner's default entry limit less room for the entry's other fields. */
export const INLINE_UPDATE_BYTES_MAX = ENTRY_BYTES_MAX_DEFAULT - 65_536
/** The most parameters a group trains: a float32 update must fit one log entry. */
export const TRAINABLE_PARAMETERS_MAX = Math.floor(INLINE_UPDATE_BYTES_MAX / 4)

/** A group configuration that cannot run (bad sizes, missing outer step). */
export class GroupConfigError extends Error {
  static override name = 'GroupConfigError'
  constructor(message: string) {
    super(message)
    this.name = 'GroupConfigError'
  }
}

/** This member's Raft store failed; the member stopped (the error's cause says why). */
export class GroupStorageError extends Error {
  static override name = 'GroupStorageError'
  constructor(cause: Error) {
    super(`the member's Raft store failed, the member stopped: ${cause.message}`, { cause })
    this.name = 'GroupStorageError'
  }
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
  const count = init.model.parameterCount
  if (count > TRAINABLE_PARAMETERS_MAX) {
    fail(`${count} parameters do not fit an inline log entry (update by block CID is not implemented)`)
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
  private readonly core: MemberCore
  private readonly computer: GradientComputer
  private readonly runner: RaftRunner
  private readonly emitter = new Emitter()
  private wakeTimer: NodeJS.Timeout | undefined
  private wakeAtMs = Number.POSITIVE_INFINITY
  private stopped = false
  /** validate calls of the Raft runner waiting for the core's verdict, by id */
  private readonly verdicts = new Map<number, (verdict: EntryVerdict) => void>()
  private nextValidation = 0
  /** signatures of this member's own gradients (a message is sent, shared and served several times) */
  private readonly signatures = new WeakMap<Gradient, Promise<Uint8Array<ArrayBuffer>>>()
  private gradientBytesShared = 0
  private badSignatures = 0
  private readonly finishedPromise: Promise<FinishedEvent>
  private resolveFinished!: (event: FinishedEvent) => void

  constructor(init: GroupMemberInit) {
    this.init = init
    this.self = init.components.peerId.toString()
    validate(init, this.self)
    this.log = logger(`shardnet:training:${init.groupId}`)
    const config = resolveMemberConfig(init, this.self)
    const members = config.members
    const state = init.initialState
      ? adoptState(init.initialState, members)
      : createTrainingState(init.initialParams ?? init.model.initialParams(init.seed), members)
    this.core = new MemberCore(config, state)
    const standard = init.model.gradientComputer({
      backend: init.backend,
      seed: init.seed,
      batchSize: init.batchSize,
      memberCount: members.length,
      memberIndex: members.indexOf(this.self),
    })
    this.computer = init.wrapComputer ? init.wrapComputer(standard) : standard
    this.finishedPromise = new Promise((resolve) => {
      this.resolveFinished = resolve
    })
    if (init.storage.lastIndex() === 0) init.storage.save(bootstrapUpdate([...members]))
    this.runner = new RaftRunner({
      group: init.groupId,
      id: this.self,
      storage: init.storage,
      transport: init.components.raft,
      ...GROUP_RAFT_DEFAULTS,
      ...init.raft,
      apply: (entries) => this.input({ type: 'entries-committed', entries, nowMs: Date.now() }),
      appending: (entries) => this.input({ type: 'entries-appending', entries, nowMs: Date.now() }),
      appended: (entries) => this.input({ type: 'entries-appended', entries, nowMs: Date.now() }),
      restore: (data) => this.input({ type: 'snapshot', data, nowMs: Date.now() }),
      snapshotData: () => encodeState(this.core.current()),
      onFatal: (error) => this.storageFailed(error),
      ...(!checksEntries(init)
        ? {}
        : { validate: (entries: Entry[], leader: string) => this.validateEntries(entries, leader) }),
      onDistrust: (peer, reason) => this.log.error('distrusting %s: %s', peer, reason),
      onLeaderChange: (leader, role) =>
        this.input({
          type: 'leadership',
          leader,
          isLeader: role === 'leader',
          term: this.runner.node.term,
          nowMs: Date.now(),
        }),
    })
    const count = config.training.parameterCount
    init.components.gradients.join(init.groupId, {
      isMember: (peer) => members.includes(peer),
      requestBytesMax: gradientRequestBytesMax(count),
      responseBytesMax: stateResponseBytesMax(count, members.length),
      onGradient: (from, gradient) => this.receive(from, gradient),
      onStateRequest: () => this.stateResponse(),
      onFetch: (_from, fetch) => this.fetchResponse(fetch),
    })
    this.runner.start()
    queueMicrotask(() => this.input({ type: 'tick', nowMs: Date.now() }))
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
    const state = this.core.current()
    const config = this.core.config
    return {
      groupId: this.init.groupId,
      self: this.self,
      members: [...config.members],
      step: state.step,
      steps: config.training.steps,
      outerRounds: state.outerRounds,
      leader: raft.lead,
      isLeader: raft.state === 'leader',
      digest: toHex(state.digest),
      lastLoss: state.lastLoss,
      finished: this.core.finished(),
      reports: [...state.counts.values()].map((report) => verdict(report, config.suspectCosineMin)),
      raftTerm: raft.term,
      ...this.core.counters,
      gradientBytesShared: this.gradientBytesShared,
      badSignatures: this.badSignatures,
      distrusted: [...this.runner.distrusted()].map(([peer, reason]) => ({ peer, reason })),
    }
  }

  finished(): Promise<FinishedEvent> {
    return this.finishedPromise
  }

  params(): Float32Array {
    return this.core.current().params.slice()
  }

  encodedState(): Uint8Array {
    return encodeState(this.core.current())
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.wakeTimer)
    this.runner.stop()
    this.init.components.gradients.leave(this.init.groupId)
    this.computer.dispose()
    for (const resolve of this.verdicts.values())
      resolve({ ok: false, reason: 'member stopped', retry: true })
    this.verdicts.clear()
  }

  /**
   * The Raft store failed (a write, an fsync): the runner has stopped, since this member can no
   * longer promise what it acknowledges. The member stops too and says so; the group goes on with
   * its majority and the submitter replaces a member that stays silent.
   */
  private storageFailed(error: Error): void {
    this.fail(new GroupStorageError(error))
    this.stop()
  }

  // ---- driving the core ----

  /** Feeds the core one input and carries out its effects. Never throws. */
  private input(input: MemberInput): void {
    if (this.stopped) return
    try {
      this.perform(this.core.step(input))
    } catch (error) {
      this.fail(error)
    }
    this.rearm()
  }

  /**
   * The exchange's handler: checks the author's signature (a gradient every member can relay must be
   * its author's), then the core's reply, then its other effects.
   */
  private async receive(from: string, gradient: Gradient): Promise<GradResponse> {
    const response = (status: GradResponse.Status, reason = ''): GradResponse => ({
      status,
      reason,
      leader: this.runner.leader(),
      state: new Uint8Array(0),
      author: '',
      evidence: [],
      evidenceAuthors: [],
    })
    if (this.stopped) return response(GradResponse.Status.NOT_LEADER)
    const digest = await this.signedBy(from, gradient)
    if (!digest) {
      this.badSignatures++
      return response(GradResponse.Status.REJECTED, 'bad signature')
    }
    if (this.stopped) return response(GradResponse.Status.NOT_LEADER)
    let reply = response(GradResponse.Status.NOT_READY)
    try {
      const effects = this.core.step({ type: 'gradient-received', from, gradient, digest, nowMs: Date.now() })
      const first = effects[0]
      if (first?.type === 'reply') reply = response(first.status, first.reason)
      this.perform(effects)
    } catch (error) {
      this.fail(error)
    }
    this.rearm()
    return reply
  }

  private async stateResponse(): Promise<GradResponse> {
    const state = this.stopped ? undefined : this.core.stateForTransfer()
    const encoded = state ? (encodeState(state) as Uint8Array<ArrayBuffer>) : new Uint8Array(0)
    const evidence = state ? this.core.evidenceFor(state) : []
    return {
      status: state ? GradResponse.Status.STATE : GradResponse.Status.NOT_READY,
      reason: '',
      leader: this.runner.leader(),
      state: encoded,
      author: '',
      evidence: await Promise.all(
        evidence.map(({ author, message }) => (author === this.self ? this.signed(message) : message)),
      ),
      evidenceAuthors: evidence.map(({ author }) => author),
    }
  }

  /** A member asks for a gradient an entry names: this member's copy, signed by its author. */
  private async fetchResponse(fetch: GradientFetch): Promise<GradResponse> {
    const held = this.stopped ? undefined : this.core.gradientFor(fetch.digest)
    const answer: GradResponse = {
      status: held ? GradResponse.Status.GRADIENT : GradResponse.Status.NOT_READY,
      reason: held ? '' : 'no such gradient here',
      leader: this.runner.leader(),
      state: new Uint8Array(0),
      author: held?.author ?? '',
      evidence: [],
      evidenceAuthors: [],
    }
    if (held) answer.gradient = held.author === this.self ? await this.signed(held.message) : held.message
    return answer
  }

  /** `message` with this member's signature (made once per message). */
  private async signed(message: Gradient): Promise<Gradient> {
    if (message.signature.length > 0) return message
    let signature = this.signatures.get(message)
    if (!signature) {
      const payload = signaturePayload(this.init.groupId, gradientDigest(message))
      signature = this.init.components.gradients.sign(payload)
      this.signatures.set(message, signature)
    }
    return { ...message, signature: await signature }
  }

  /** The gradient's digest when `author` signed it for this group, else undefined. */
  private async signedBy(author: string, gradient: Gradient): Promise<Uint8Array | undefined> {
    try {
      const key = peerIdFromString(author).publicKey
      if (!key || gradient.signature.length === 0) return undefined
      const digest = gradientDigest(gradient)
      const ok = await key.verify(signaturePayload(this.init.groupId, digest), gradient.signature)
      return ok ? digest : undefined
    } catch {
      return undefined
    }
  }

  /**
   * The Raft runner's validate hook: the core checks the entries (verify.ts) and answers. A check that
   * waits longer than VALIDATE_WAIT_MS_MAX (a gradient that cannot be fetched) is given up with a
   * retry verdict, before the runner's own deadline, so the core's queue of checks never stalls.
   */
  private validateEntries(entries: Entry[], leader: string): Promise<EntryVerdict> {
    if (this.stopped) return Promise.resolve({ ok: false, reason: 'member stopped', retry: true })
    const id = ++this.nextValidation
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (!this.verdicts.delete(id)) return
        resolve({ ok: false, reason: 'the check waited too long for a gradient', retry: true })
        this.input({ type: 'validate-abandoned', id, nowMs: Date.now() })
      }, VALIDATE_WAIT_MS_MAX)
      timer.unref()
      this.verdicts.set(id, (verdict) => {
        clearTimeout(timer)
        resolve(verdict)
      })
      this.input({ type: 'validate', id, entries, leader, nowMs: Date.now() })
    })
  }

  /** Arms one timer for the core's next deadline (an earlier one replaces a later one). */
  private rearm(): void {
    if (this.stopped) return
    const wake = this.core.nextWakeMs()
    if (wake === undefined || wake >= this.wakeAtMs) return
    clearTimeout(this.wakeTimer)
    this.wakeAtMs = wake
    this.wakeTimer = setTimeout(
      () => {
        this.wakeAtMs = Number.POSITIVE_INFINITY
        this.input({ type: 'tick', nowMs: Date.now() })
      },
      Math.max(0, wake - Date.now()),
    )
  }

  private perform(effects: MemberEffect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case 'reply':
          break // answered by receive()
        case 'compute-gradient':
          this.computeGradient(effect.step, effect.digest, effect.params)
          break
        case 'send-gradient':
          void this.sendGradient(effect.to, effect.message)
          break
        case 'share-gradient':
          for (const peer of effect.to) void this.shareGradient(peer, effect.message)
          break
        case 'fetch-gradient':
          void this.fetchGradient(effect.from, effect.step, effect.digest)
          break
        case 'validated': {
          const resolve = this.verdicts.get(effect.id)
          this.verdicts.delete(effect.id)
          resolve?.(effect.verdict)
          break
        }
        case 'check-outer':
          this.checkOuter(effect.round, effect.step, effect.params)
          break
        case 'propose':
          this.propose(effect.step, effect.outer, effect.term, effect.data)
          break
        case 'request-state':
          void this.requestState(effect.from)
          break
        case 'outer-step':
          this.outerStep(effect.round, effect.step, effect.params)
          break
        case 'continue': {
          const feed = () => this.input({ ...effect.input, nowMs: Date.now() })
          if (effect.after === 'microtask') queueMicrotask(feed)
          else setImmediate(feed)
          break
        }
        case 'step-applied':
          this.emit('step', effect.event)
          break
        case 'outer-applied':
          this.emit('outer', { round: effect.round, step: effect.step })
          break
        case 'leader-changed':
          this.emit('leader', { leader: effect.leader, isLeader: effect.isLeader })
          break
        case 'resynced':
          this.emit('resync', { step: effect.step, reason: effect.reason })
          break
        case 'finished':
          this.emit('finished', effect.event)
          this.resolveFinished(effect.event)
          break
        case 'error':
          this.fail(effect.error)
          break
        case 'log':
          this.log('%s', effect.message)
          break
      }
    }
  }

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

  /** Starts the computation; the computer reads `params` before its first await (see GradientComputer). */
  private computeGradient(step: number, digest: Uint8Array<ArrayBuffer>, params: Float32Array): void {
    this.computer.compute(step, params).then(
      ({ gradient, loss }) => {
        this.log.trace('computed the gradient of step %d', step)
        this.input({ type: 'gradient-computed', step, digest, gradient, loss, nowMs: Date.now() })
      },
      (error: unknown) =>
        this.input({ type: 'gradient-failed', step, error: asError(error), nowMs: Date.now() }),
    )
  }

  private propose(step: number, outer: boolean, term: number, data: Uint8Array): void {
    this.log.trace('proposing step %d (%s)', step, outer ? 'outer' : 'inner')
    const proposed = this.init.wrapProposal ? this.init.wrapProposal(data, this.core.current()) : data
    this.runner.propose(proposed).then(
      () => {},
      (error: Error) =>
        this.input({ type: 'proposal-failed', step, term, reason: error.message, nowMs: Date.now() }),
    )
  }

  private async sendGradient(leader: string, message: Gradient): Promise<void> {
    this.log.trace('sending the gradient of step %d to %s', message.step, leader)
    try {
      const { response, bytes } = await this.init.components.gradients.sendGradient(
        leader,
        this.init.groupId,
        await this.signed(message),
      )
      this.input({
        type: 'gradient-sent',
        outcome: response.status,
        reason: response.reason,
        bytes,
        nowMs: Date.now(),
      })
    } catch (error) {
      if (!(error instanceof GradientSendError)) this.fail(error)
      this.input({
        type: 'gradient-sent',
        outcome: 'failed',
        reason: asError(error).message,
        bytes: 0,
        nowMs: Date.now(),
      })
    }
  }

  /** Gives a member this member's gradient (all-to-all); a failure only costs it a fetch later. */
  private async shareGradient(peer: string, message: Gradient): Promise<void> {
    try {
      const { bytes } = await this.init.components.gradients.sendGradient(
        peer,
        this.init.groupId,
        await this.signed(message),
        true,
      )
      this.gradientBytesShared += bytes
    } catch (error) {
      this.log(
        'sharing the gradient of step %d with %s failed: %s',
        message.step,
        peer,
        asError(error).message,
      )
    }
  }

  private async fetchGradient(from: string, step: number, digest: Uint8Array): Promise<void> {
    let gradient: Gradient | undefined
    let author = ''
    try {
      const response = await this.init.components.gradients.fetchGradient(
        from,
        this.init.groupId,
        { step, digest: digest as Uint8Array<ArrayBuffer> },
        gradientRequestBytesMax(this.core.config.training.parameterCount) + REQUEST_OVERHEAD_BYTES,
      )
      if (response.status === GradResponse.Status.GRADIENT && response.gradient) {
        author = response.author
        // a relayed gradient counts only with its author's signature on exactly these bytes
        const signed = await this.signedBy(author, response.gradient)
        if (signed) gradient = response.gradient
        else this.badSignatures++
      }
    } catch (error) {
      this.log('fetching gradient of step %d from %s failed: %s', step, from, asError(error).message)
    }
    this.input({ type: 'gradient-fetched', digest, author, gradient, nowMs: Date.now() })
  }

  /** Asks the coordinator for an outer round's params, to check the OUTER entry a leader sent. */
  private checkOuter(round: number, step: number, params: Float32Array): void {
    const outerStep = this.init.outerStep
    if (!outerStep) return
    outerStep({ groupId: this.init.groupId, round, step, params }).then(
      (result) => this.input({ type: 'outer-checked', round, params: result, nowMs: Date.now() }),
      (error: unknown) =>
        this.input({
          type: 'outer-checked',
          round,
          params: undefined,
          error: asError(error).message,
          nowMs: Date.now(),
        }),
    )
  }

  private async requestState(leader: string): Promise<void> {
    let state: Uint8Array | undefined
    try {
      const config = this.core.config
      const response = await this.init.components.gradients.requestState(
        leader,
        this.init.groupId,
        stateResponseBytesMax(config.training.parameterCount, config.members.length),
      )
      if (response.status === GradResponse.Status.STATE) {
        state = response.state
        // the gradients that vouch for it: each counts only with its author's signature
        const count = Math.min(response.evidence.length, config.members.length)
        for (let i = 0; i < count; i++) {
          const author = response.evidenceAuthors[i] ?? ''
          const gradient = response.evidence[i]
          const digest = config.members.includes(author) ? await this.signedBy(author, gradient) : undefined
          if (!digest) continue
          this.input({ type: 'gradient-received', from: author, gradient, digest, nowMs: Date.now() })
        }
      }
    } catch (error) {
      this.log('state request to %s failed: %s', leader, asError(error).message)
    }
    this.input({ type: 'state-received', from: leader, state, nowMs: Date.now() })
  }

  private outerStep(round: number, step: number, params: Float32Array): void {
    const outerStep = this.init.outerStep
    if (!outerStep) return // the core asks only when the config says outer steps can run
    outerStep({ groupId: this.init.groupId, round, step, params }).then(
      (result) => this.input({ type: 'outer-params', round, step, params: result, nowMs: Date.now() }),
      (error: unknown) =>
        this.input({ type: 'outer-failed', round, error: asError(error), nowMs: Date.now() }),
    )
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}

/**
 * Whether followers check entries: by default when a step is decided on three gradients or more. A
 * group that decides on fewer (a lone member, or --min-gradients 2 for crash tolerance) has traded
 * lie tolerance away already: one liar of two decides a step's median.
 */
function checksEntries(init: GroupMemberInit): boolean {
  const decidedOn = minContributors(init.members.length, init.minContributors ?? MIN_CONTRIBUTORS_DEFAULT)
  return init.verifyEntries ?? decidedOn >= MIN_CONTRIBUTORS_DEFAULT
}

/** A follower's check of an entry waits at most this long (the runner's own deadline is 10 s). */
export const VALIDATE_WAIT_MS_MAX = 8_000

/** Raft tuning of a training group (see GroupMemberInit.raft for why it differs from the runner's). */
export const GROUP_RAFT_DEFAULTS = {
  tickMs: 25,
  electionTicks: 20,
  heartbeatTicks: 1,
  snapshotEntries: 64,
  compactionKeepEntries: 16,
}

/** GroupMemberInit with every default filled in: the member core's configuration. */
function resolveMemberConfig(init: GroupMemberInit, self: string): MemberConfig {
  const rules = MEMBER_RULE_DEFAULTS
  return {
    self,
    members: [...init.members].sort(),
    training: {
      parameterCount: init.model.parameterCount,
      steps: init.steps,
      learningRate: init.learningRate,
      schedule: init.schedule ?? SCHEDULE_DEFAULT,
      weightDecay: init.weightDecay ?? WEIGHT_DECAY_DEFAULT,
      outerEvery: init.outerEvery ?? 0,
      ...init.model.optimizer,
    },
    aggregate: init.aggregate ?? rules.aggregate,
    trimCount: init.trimCount ?? rules.trimCount,
    compression: init.compression ?? rules.compression,
    compressionBlockSize: init.compressionBlockSize ?? rules.compressionBlockSize,
    stragglerTimeoutMs: init.stragglerTimeoutMs ?? rules.stragglerTimeoutMs,
    resendMs: init.resendMs ?? rules.resendMs,
    speculate: init.speculate ?? rules.speculate,
    normFactorMax: init.normFactorMax ?? rules.normFactorMax,
    suspectCosineMin: init.suspectCosineMin ?? rules.suspectCosineMin,
    minContributors: init.minContributors ?? rules.minContributors,
    shareGradients: checksEntries(init),
    outerSteps: init.outerStep !== undefined,
  }
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
  return outerRoundsRequired(steps, { steps, outerEvery })
}
