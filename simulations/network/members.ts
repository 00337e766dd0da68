// The training side of every group member: the real member core (protocols/training/member.ts
// MemberCore), driven as protocols/training/group.ts drives it over libp2p, with the simulated
// clock and links in place of timers and streams. The core decides everything about a step (what to
// compute on which params, whom to send to, admission and screening at the leader, the straggler
// timeout, re-sends, work ahead of the commit, what to propose); this file carries out its effects:
//
//   compute-gradient  the member's kernel time (the model's stepComputeMsByBackend x slowness) later, a
//                     gradient of SIMULATED_PARAMETER_COUNT values whose L2 norm the seed chose (about
//                     1 when honest; NaN with a NaN loss, or 1e6, from a liar)
//   send-gradient     over the sender's uplink at the trained model's size, then the link's latency; the
//                     leader's core answers (reply) and the answer travels back as gradient-sent
//   propose           the member's RaftNode proposes the entry (a dropped proposal is proposal-failed)
//   request-state     the state of the member asked, back over its uplink at the trained model's size
//   continue          fed back once the current event is handled ('microtask'), or after the events
//                     already due at this time ('turn', Node's setImmediate)
//
// The arithmetic runs on SIMULATED_PARAMETER_COUNT params (the real AdamW, digests and entries, only
// small), so thousands of groups fit in one process; link timing and byte counts use the
// trained model's figures (DerivedParameters.model: model.ts).
// groups.ts feeds the Raft side: leadership, entries appending, appended and committed, snapshots.
//
// Events handled here: gradientComputed, gradientArrives, gradientAnswered, memberContinue,
// memberWake, stateRequestArrives, stateAnswered.

import { SCHEDULE_DEFAULT, WEIGHT_DECAY_DEFAULT } from '../../kernels/models/training.js'
import { assert, ProposalDroppedError } from '../../protocols/raft/types.js'
import { LEARNING_RATE_DEFAULT } from '../../protocols/tasks/spec.js'
import { EXCHANGE_TIMEOUT_MS_DEFAULT } from '../../protocols/training/exchange.js'
import {
  MEMBER_RULE_DEFAULTS,
  type MemberConfig,
  MemberCore,
  type MemberEffect,
  type MemberInput,
} from '../../protocols/training/member.js'
import {
  createTrainingState,
  decodeEntry,
  encodeState,
  type TrainingState,
} from '../../protocols/training/state.js'
import type { Gradient } from '../../protocols/wire/training.js'
import {
  EventKind,
  type EventLoop,
  type ForMember,
  type GradientAnswer,
  type GradientComputation,
  type GradientInFlight,
  type MemberContinue,
  type MemberWake,
  type StateAnswer,
  type StateRequest,
} from './events.js'
import type { GroupState } from './groups.js'
import type { Metrics } from './metrics.js'
import type { SimulatedModel } from './model.js'
import type { Network } from './network.js'
import { GROUP_SIZE_MAX } from './parameters.js'

/** Params each simulated member trains: enough for the real arithmetic, few enough for 10,000s of members. */
export const SIMULATED_PARAMETER_COUNT = 4
/** A gradient or state send to a member that is down or cut off fails this long after it started. */
export const EXCHANGE_TIMEOUT_MS = EXCHANGE_TIMEOUT_MS_DEFAULT
/** Bytes of a state request and of the framing around a gradient's answer. */
export const EXCHANGE_CONTROL_BYTES = 100
/** The loss an honest member reports with its gradient (the screening rule only checks it is finite). */
export const PROBE_LOSS = 2.3

// member names are one digit each (see memberName)
assert(GROUP_SIZE_MAX <= 9, 'a group size over 9 would give two-digit member names')

/**
 * A member's name in its core and its Raft node: its position + 1. The core sorts members by name, so
 * names must sort as positions do: one digit each, which GROUP_SIZE_MAX keeps them.
 */
export function memberName(position: number): string {
  return String(position + 1)
}

function memberPosition(name: string): number {
  return Number(name) - 1
}

/** A gradient of SIMULATED_PARAMETER_COUNT equal values whose L2 norm is `norm` (NaN or Infinity stay so). */
export function probeGradient(norm: number): Float32Array {
  return new Float32Array(SIMULATED_PARAMETER_COUNT).fill(norm / Math.sqrt(SIMULATED_PARAMETER_COUNT))
}

/**
 * Bytes of a gradient message at the size of a model of `parameterCount` params: its bytes per value
 * times the parameter count, plus one float32 scale per block of the model's params when the
 * message has blocks (int8).
 */
export function gradientWireBytes(message: Gradient, parameterCount: number): number {
  const valueBytes = Math.round((message.values.byteLength * parameterCount) / message.length)
  const scaleBytes = message.blockSize > 0 ? Math.ceil(parameterCount / message.blockSize) * 4 : 0
  return valueBytes + scaleBytes + EXCHANGE_CONTROL_BYTES
}

/**
 * Bytes of an encoded TrainingState at the size of a model of `parameterCount` params (params and
 * two moments, float32).
 */
export function stateWireBytes(encoded: Uint8Array, parameterCount: number): number {
  return encoded.byteLength + (parameterCount - SIMULATED_PARAMETER_COUNT) * 12
}

/** Node runs a timer no sooner than this after it is set (setTimeout clamps shorter delays to 1 ms). */
export const TIMER_DELAY_MS_MIN = 1

/** What the member driver asks of groups.ts. */
export interface MemberHost {
  /** Runs the member's Raft node's Ready loop (after a proposal). */
  processReady(group: GroupState, position: number): void
  /** The member applied step `step` (1-based: its state has `step` steps applied). */
  stepApplied(group: GroupState, position: number, step: number): void
  trace(group: GroupState, text: string): void
}

export class Members {
  private readonly initialParams = new Float32Array(SIMULATED_PARAMETER_COUNT).fill(0.1)

  constructor(
    private readonly loop: EventLoop,
    private readonly network: Network,
    private readonly metrics: Metrics,
    private readonly host: MemberHost,
    /** The model trained: gradients and states cross the links at its size, steps take its kernel time. */
    private readonly model: SimulatedModel,
  ) {
    const at = <T extends ForMember>(
      handler: (group: GroupState, position: number, value: T) => void,
    ): ((group: number, position: number, value: T) => void) => {
      return (groupId, position, value) => {
        const group = this.groups[groupId]
        if (group.done || group.failed || group.incarnation[position] !== value.incarnation) return
        handler(group, position, value)
      }
    }
    loop.handle({
      [EventKind.gradientComputed]: at((group, position, computation: GradientComputation) =>
        this.gradientComputed(group, position, computation),
      ),
      [EventKind.gradientArrives]: (group, from, gradient) =>
        this.gradientArrives(this.groups[group], from, gradient),
      [EventKind.gradientAnswered]: at((group, position, answer: GradientAnswer) =>
        this.input(group, position, {
          type: 'gradient-sent',
          outcome: answer.outcome,
          reason: answer.reason,
          bytes: answer.bytes,
          nowMs: this.now,
        }),
      ),
      [EventKind.memberContinue]: at((group, position, what: MemberContinue) =>
        this.input(group, position, { ...what.input, nowMs: this.now }),
      ),
      [EventKind.memberWake]: at((group, position, wake: MemberWake) => {
        if (group.wakeAtMs[position] !== wake.deadlineMs) return // an earlier deadline replaced this one
        group.wakeAtMs[position] = Number.POSITIVE_INFINITY
        this.input(group, position, { type: 'tick', nowMs: this.now })
      }),
      [EventKind.stateRequestArrives]: (group, position, request) =>
        this.stateRequestArrives(this.groups[group], position, request),
      [EventKind.stateAnswered]: at((group, position, answer: StateAnswer) =>
        this.input(group, position, {
          type: 'state-received',
          from: answer.from,
          state: answer.state,
          nowMs: this.now,
        }),
      ),
    })
  }

  /** The groups, by id (groups.ts sets it). */
  groups: readonly GroupState[] = []

  private get now(): number {
    return this.loop.now
  }

  /**
   * Starts the member's core for a group training steps firstStep..lastStep, from `snapshot` (the
   * TrainingState its Raft storage holds) when there is one, as group.ts starts a member.
   */
  start(group: GroupState, position: number, snapshot: Uint8Array | undefined): void {
    const names = group.members.map((_, i) => memberName(i))
    const config: MemberConfig = {
      ...MEMBER_RULE_DEFAULTS,
      self: memberName(position),
      members: names,
      training: {
        parameterCount: SIMULATED_PARAMETER_COUNT,
        steps: group.lastStep,
        learningRate: LEARNING_RATE_DEFAULT,
        schedule: SCHEDULE_DEFAULT,
        weightDecay: WEIGHT_DECAY_DEFAULT,
        outerEvery: 0,
      },
      outerSteps: false,
      // the simulator carries no shared gradients (their bytes are not modelled), so its members hold
      // none to check entries or vouch for a state with: they install states and snapshots unchecked
      shareGradients: false,
    }
    const state: TrainingState = createTrainingState(this.initialParams, names)
    // a group staffed again for the rest of a task starts where the dissolved one had committed
    state.step = group.firstStep - 1
    group.incarnation[position]++
    group.wakeAtMs[position] = Number.POSITIVE_INFINITY
    // a tick or rearm still queued for an earlier run does not stand for this one's
    group.tickQueued[position] = false
    group.rearming[position] = false
    group.cores[position] = new MemberCore(config, state)
    if (snapshot) this.input(group, position, { type: 'snapshot', data: snapshot, nowMs: this.now })
    this.continueAfter(group, position, { type: 'tick' }, 'microtask')
  }

  /** The member's process is gone: its core with it, and whatever was under way for it. */
  stop(group: GroupState, position: number): void {
    group.cores[position] = undefined
    group.incarnation[position]++
    group.wakeAtMs[position] = Number.POSITIVE_INFINITY
  }

  /** The member's state, encoded, for its Raft snapshot. */
  snapshotData(group: GroupState, position: number): Uint8Array {
    const core = group.cores[position]
    assert(core, `member ${position + 1} of group ${group.id} has no core to snapshot`)
    return encodeState(core.current())
  }

  /** The member's core has applied this many steps. */
  stepsApplied(group: GroupState, position: number): number {
    return group.cores[position]?.current().step ?? group.firstStep - 1
  }

  /** Feeds the member's core one input and carries out its effects (nothing when the member is down). */
  input(group: GroupState, position: number, input: MemberInput): void {
    const core = group.cores[position]
    if (!core) return
    this.perform(group, position, core.step(input))
    this.rearmSoon(group, position)
  }

  /**
   * Once the current event is handled, schedules the core's next deadline (group.ts rearms its timer
   * after every input; no time passes within one event, so once per event is the same).
   */
  private rearmSoon(group: GroupState, position: number): void {
    if (group.rearming[position]) return
    group.rearming[position] = true
    this.loop.queueMicrotask(() => {
      group.rearming[position] = false
      this.rearm(group, position)
    })
  }

  /**
   * Arms the member's timer for the core's next deadline as group.ts arms it: an earlier deadline
   * replaces a later one, and the timer fires at the deadline but no sooner than TIMER_DELAY_MS_MIN
   * from now (so a deadline that has come without anything to do is retried a moment later).
   */
  private rearm(group: GroupState, position: number): void {
    const core = group.cores[position]
    if (!core || group.done || group.failed) return
    const deadlineMs = core.nextWakeMs()
    if (deadlineMs === undefined || deadlineMs >= group.wakeAtMs[position]) return
    group.wakeAtMs[position] = deadlineMs
    const now = this.now
    this.loop.at(
      now + Math.max(TIMER_DELAY_MS_MIN, deadlineMs - now),
      EventKind.memberWake,
      group.id,
      position,
      {
        incarnation: group.incarnation[position],
        deadlineMs,
      },
    )
  }

  /** Feeds `input` back after the current event ('microtask') or after what is already due now ('turn'). */
  private continueAfter(
    group: GroupState,
    position: number,
    input: MemberContinue['input'],
    after: 'microtask' | 'turn',
  ): void {
    const incarnation = group.incarnation[position]
    if (after === 'turn') {
      this.loop.at(this.now, EventKind.memberContinue, group.id, position, { incarnation, input })
      return
    }
    // ticks asked for within one event are one tick (a tick with no input between changes nothing)
    if (input.type === 'tick') {
      if (group.tickQueued[position]) return
      group.tickQueued[position] = true
    }
    this.loop.queueMicrotask(() => {
      if (input.type === 'tick') group.tickQueued[position] = false
      if (group.done || group.failed || group.incarnation[position] !== incarnation) return
      this.input(group, position, { ...input, nowMs: this.now })
    })
  }

  private perform(group: GroupState, position: number, effects: MemberEffect[]): void {
    let proposed = false
    for (const effect of effects) {
      switch (effect.type) {
        case 'reply':
          break // carried back by gradientArrives
        case 'compute-gradient':
          this.compute(group, position, effect.step, effect.digest)
          break
        case 'send-gradient':
          this.sendGradient(group, position, memberPosition(effect.to), effect.message)
          break
        case 'propose':
          proposed = this.propose(group, position, effect) || proposed
          break
        case 'request-state':
          this.requestState(group, position, memberPosition(effect.from))
          break
        case 'outer-step':
          assert(false, 'outer rounds are not simulated (outerEvery is 0)')
          break
        case 'continue':
          this.continueAfter(group, position, effect.input, effect.after)
          break
        case 'step-applied':
          this.host.stepApplied(group, position, effect.event.step + 1)
          break
        case 'resynced':
          this.host.trace(group, `member ${position + 1} resynced to step ${effect.step} (${effect.reason})`)
          break
        case 'log':
          this.host.trace(group, `member ${position + 1}: ${effect.message}`)
          break
        case 'error':
          // the simulated member has no backend or outer step to fail: an error is a bug
          throw effect.error
        case 'outer-applied':
        case 'leader-changed':
        case 'finished':
          break
      }
      if (group.done) return
    }
    // as the runner does, the Ready loop runs once the member's effects are carried out
    if (proposed) this.host.processReady(group, position)
  }

  private compute(group: GroupState, position: number, step: number, digest: Uint8Array<ArrayBuffer>): void {
    const peers = this.network.peers
    const peer = group.members[position]
    const ms =
      this.model.stepComputeMsByBackend[peers.backend[peer]] *
      peers.slowFactor[peer] *
      (0.9 + 0.2 * this.network.random.float())
    this.loop.at(this.now + ms, EventKind.gradientComputed, group.id, position, {
      incarnation: group.incarnation[position],
      step,
      digest,
    })
  }

  private gradientComputed(group: GroupState, position: number, computation: GradientComputation): void {
    const random = this.network.random
    const norm = this.network.peers.byzantine[group.members[position]]
      ? random.chance(0.5)
        ? Number.NaN
        : 1e6
      : 1 + 0.05 * random.float()
    this.input(group, position, {
      type: 'gradient-computed',
      step: computation.step,
      digest: computation.digest,
      gradient: probeGradient(norm),
      // a lying member's NaN gradient comes with a NaN loss; the screening rule checks both
      loss: Number.isNaN(norm) ? Number.NaN : PROBE_LOSS,
      nowMs: this.now,
    })
  }

  /**
   * A message of `bytes` from `from` to `to` over a stream: it queues on the sender's uplink, then
   * takes the link's latency; a loss costs a retransmission. Returns when it arrives, or undefined
   * when `to` cannot be reached.
   */
  private streamArrivalMs(from: number, to: number, bytes: number): number | undefined {
    const network = this.network
    const peers = network.peers
    peers.countSent(from, bytes)
    if (!network.reachable(from, to)) return undefined
    const start = Math.max(this.now, peers.uplinkFreeAtMs[from])
    const sent = start + bytes / peers.uploadBytesPerMs[from]
    peers.uplinkFreeAtMs[from] = sent
    return sent + network.streamLatencyMs(from, to)
  }

  private sendGradient(group: GroupState, position: number, to: number, message: Gradient): void {
    this.metrics.counters.gradientsSent++
    const bytes = gradientWireBytes(message, this.model.parameterCount)
    const incarnation = group.incarnation[position]
    const arrival = this.streamArrivalMs(group.members[position], group.members[to], bytes)
    if (arrival === undefined) {
      this.answerGradient(group, position, this.now + EXCHANGE_TIMEOUT_MS, {
        incarnation,
        outcome: 'failed',
        reason: 'unreachable',
        bytes: 0,
      })
      return
    }
    this.loop.at(arrival, EventKind.gradientArrives, group.id, position, {
      incarnation,
      to,
      message,
      bytes,
      sentAtMs: this.now,
    })
  }

  private answerGradient(group: GroupState, position: number, atMs: number, answer: GradientAnswer): void {
    this.loop.at(atMs, EventKind.gradientAnswered, group.id, position, answer)
  }

  /** A gradient reaches the member its sender took for leader; that member's core answers it. */
  private gradientArrives(group: GroupState, from: number, gradient: GradientInFlight): void {
    if (group.done || group.failed) return
    const core = group.cores[gradient.to]
    const sender = group.members[from]
    const receiver = group.members[gradient.to]
    const failedAtMs = Math.max(this.now, gradient.sentAtMs + EXCHANGE_TIMEOUT_MS)
    const failed = { incarnation: gradient.incarnation, outcome: 'failed' as const, bytes: 0 }
    if (!core) {
      this.answerGradient(group, from, failedAtMs, { ...failed, reason: 'no answer' })
      return
    }
    this.network.peers.countReceived(receiver, gradient.bytes)
    const effects = core.step({
      type: 'gradient-received',
      from: memberName(from),
      gradient: gradient.message,
      nowMs: this.now,
    })
    const reply = effects[0]
    assert(reply?.type === 'reply', 'a gradient-received input answers with a reply first')
    this.perform(group, gradient.to, effects)
    this.rearmSoon(group, gradient.to)
    const back = this.streamArrivalMs(receiver, sender, EXCHANGE_CONTROL_BYTES)
    if (back === undefined) {
      this.answerGradient(group, from, failedAtMs, { ...failed, reason: 'no answer' })
      return
    }
    this.network.peers.countReceived(sender, EXCHANGE_CONTROL_BYTES)
    this.answerGradient(group, from, back, {
      incarnation: gradient.incarnation,
      outcome: reply.status,
      reason: reply.reason,
      bytes: gradient.bytes,
    })
  }

  /** Proposes the core's entry on the member's Raft node; false when Raft dropped it. */
  private propose(group: GroupState, position: number, effect: MemberEffect & { type: 'propose' }): boolean {
    const node = group.nodes[position]
    assert(node, `member ${position + 1} of group ${group.id} proposes without a Raft node`)
    const counters = this.metrics.counters
    try {
      node.propose(effect.data)
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error
      counters.proposalsDropped++
      this.input(group, position, {
        type: 'proposal-failed',
        step: effect.step,
        term: effect.term,
        reason: error.message,
        nowMs: this.now,
      })
      return false
    }
    // which lying gradients the entry takes and which it refuses (named by member)
    const entry = decodeEntry(effect.data)
    assert(entry, 'the core proposed an entry that does not decode')
    const byzantine = this.network.peers.byzantine
    const lying = (name: string) => byzantine[group.members[memberPosition(name)]] === 1
    let liars = 0
    for (const peer of group.members) liars += byzantine[peer]
    const honestMajority = (group.members.length - liars) * 2 > group.members.length
    for (const member of entry.contributors) {
      if (!lying(member)) continue
      counters.byzantineGradientsAccepted++
      if (honestMajority) counters.byzantineGradientsAcceptedWithHonestMajority++
    }
    for (const { member } of entry.rejected) {
      counters.gradientsRejected++
      if (lying(member)) counters.byzantineGradientsRejected++
    }
    return true
  }

  private requestState(group: GroupState, position: number, to: number): void {
    const incarnation = group.incarnation[position]
    const arrival = this.streamArrivalMs(group.members[position], group.members[to], EXCHANGE_CONTROL_BYTES)
    const from = memberName(to)
    if (arrival === undefined) {
      this.loop.at(this.now + EXCHANGE_TIMEOUT_MS, EventKind.stateAnswered, group.id, position, {
        incarnation,
        from,
        state: undefined,
      })
      return
    }
    this.loop.at(arrival, EventKind.stateRequestArrives, group.id, position, {
      incarnation,
      to,
      sentAtMs: this.now,
    })
  }

  /** A state request reaches the member asked: it answers with its state (at the trained model's size). */
  private stateRequestArrives(group: GroupState, position: number, request: StateRequest): void {
    if (group.done || group.failed) return
    const core = group.cores[request.to]
    const state = core?.stateForTransfer()
    const encoded = state ? encodeState(state) : undefined
    const responder = group.members[request.to]
    this.network.peers.countReceived(responder, EXCHANGE_CONTROL_BYTES)
    const back = core
      ? this.streamArrivalMs(
          responder,
          group.members[position],
          encoded ? stateWireBytes(encoded, this.model.parameterCount) : EXCHANGE_CONTROL_BYTES,
        )
      : undefined
    this.loop.at(
      back ?? Math.max(this.now, request.sentAtMs + EXCHANGE_TIMEOUT_MS),
      EventKind.stateAnswered,
      group.id,
      position,
      {
        incarnation: request.incarnation,
        from: memberName(request.to),
        state: back === undefined ? undefined : encoded,
      },
    )
  }
}
