// The simulator's events and the loop that runs them. Every event kind has one typed argument list
// (EventArgs) and one handler, registered by the module that owns it (staffing.ts, groups.ts,
// members.ts, faults.ts, simulator.ts); `at` only accepts a kind's own arguments, so a handler never guesses
// what it was given. Underneath, an event is what queue.ts stores without allocating: a small-int
// kind, two integers and one optional value, so a kind's arguments are at most two integers and
// then one value of any type.
import { assert, type Message } from '../../protocols/raft/types.js'
import type { ContinueInput, SendOutcome } from '../../protocols/training/member.js'
import type { Gradient } from '../../protocols/wire/training.js'
import { EventQueue } from './queue.js'

export const EventKind = {
  groupTick: 0,
  raftMessage: 1,
  gradientComputed: 2,
  gradientArrives: 3,
  churn: 4,
  restart: 5,
  join: 6,
  announce: 7,
  claimArrives: 8,
  staffingDeadline: 9,
  assignmentArrives: 10,
  partitionStart: 11,
  partitionEnd: 12,
  outageStart: 13,
  outageEnd: 14,
  sample: 15,
  meshMaintenance: 16,
  gradientAnswered: 17,
  inferenceStart: 18,
  inferenceAnswer: 19,
  memberContinue: 20,
  memberWake: 21,
  stateRequestArrives: 22,
  stateAnswered: 23,
} as const
export type EventKind = (typeof EventKind)[keyof typeof EventKind]

/**
 * Events for one run of one group member's training core carry the member's incarnation: a member
 * that crashed and restarted is a new incarnation, and what was meant for the old one is dropped.
 */
export interface ForMember {
  incarnation: number
}

/** A gradient computation under way: the step and params digest the core asked it for. */
export interface GradientComputation extends ForMember {
  step: number
  digest: Uint8Array<ArrayBuffer>
}

/** A gradient on its way to the member its sender takes for leader. */
export interface GradientInFlight {
  /** The sender's incarnation (its answer goes back to that one). */
  incarnation: number
  /** The receiving member's position in its group. */
  to: number
  message: Gradient
  /** Bytes on the wire at the real model's size. */
  bytes: number
  sentAtMs: number
}

/** How a gradient send ended, on its way back to the sender's core. */
export interface GradientAnswer extends ForMember {
  outcome: SendOutcome
  reason: string
  bytes: number
}

/** A state request on its way to `to` (the member the requester takes for leader). */
export interface StateRequest extends ForMember {
  to: number
  sentAtMs: number
}

/** A state transfer on its way back (undefined: none came). */
export interface StateAnswer extends ForMember {
  from: string
  state: Uint8Array | undefined
}

export interface MemberContinue extends ForMember {
  input: ContinueInput
}

/** The member's timer for its core's deadline `deadlineMs`. */
export interface MemberWake extends ForMember {
  deadlineMs: number
}

/** Each event kind's arguments: up to two integers, then at most one value (the queue's layout). */
export interface EventArgs {
  [EventKind.groupTick]: [group: number]
  [EventKind.raftMessage]: [group: number, position: number, message: Message]
  [EventKind.gradientComputed]: [group: number, position: number, computation: GradientComputation]
  [EventKind.gradientArrives]: [group: number, from: number, gradient: GradientInFlight]
  [EventKind.gradientAnswered]: [group: number, position: number, answer: GradientAnswer]
  [EventKind.memberContinue]: [group: number, position: number, what: MemberContinue]
  /** The member's timer for its core's next deadline (nextWakeMs) fires. */
  [EventKind.memberWake]: [group: number, position: number, wake: MemberWake]
  /** `position` asks for the state of the member in `request.to`. */
  [EventKind.stateRequestArrives]: [group: number, position: number, request: StateRequest]
  [EventKind.stateAnswered]: [group: number, position: number, answer: StateAnswer]
  [EventKind.churn]: []
  [EventKind.restart]: [peer: number]
  /** A new peer joins (one of the flash crowd, or a leaver's replacement). */
  [EventKind.join]: []
  [EventKind.announce]: [task: number]
  /** `round`: which announcement of the task the claim answers. */
  [EventKind.claimArrives]: [task: number, peer: number, round: number]
  [EventKind.staffingDeadline]: [task: number, round: number]
  [EventKind.assignmentArrives]: [group: number, position: number]
  [EventKind.partitionStart]: [partition: number]
  [EventKind.partitionEnd]: [partition: number]
  [EventKind.outageStart]: []
  [EventKind.outageEnd]: []
  [EventKind.sample]: []
  [EventKind.meshMaintenance]: []
  [EventKind.inferenceStart]: []
  /** The replica on `peer` answers its run of the shard. */
  [EventKind.inferenceAnswer]: [task: number, shard: number, peer: number]
}

type QueueShaped = [] | [number] | [number, number] | [number, number, unknown]
/** Every kind's arguments fit the queue's layout (checked where the handlers' type reads them). */
type FitsTheQueue<T extends { [K in EventKind]: QueueShaped }> = T

export type EventHandlers = { [K in EventKind]: (...args: FitsTheQueue<EventArgs>[K]) => void }
type QueueHandler = (a: number, b: number, payload: unknown) => void

/** The simulated clock and the queue of what happens next. */
export class EventLoop {
  readonly queue = new EventQueue()
  /** Simulated time of the event being handled, in ms. */
  now = 0
  /** Events handled so far. */
  events = 0
  private readonly handlers: (QueueHandler | undefined)[] = []
  private readonly microtasks: (() => void)[] = []

  /** Schedules `kind` with its arguments at `timeMs` (events at the same time run in the order scheduled). */
  at<K extends EventKind>(timeMs: number, kind: K, ...args: EventArgs[K]): void
  at(timeMs: number, kind: EventKind, a?: number, b?: number, payload?: unknown): void {
    this.queue.push(timeMs, kind, a, b, payload)
  }

  /**
   * Runs `task` once the current event's handler has returned, before the next event (as Node runs
   * a microtask before the next macrotask); tasks it queues run in the same round.
   */
  queueMicrotask(task: () => void): void {
    this.microtasks.push(task)
  }

  /** Registers a module's handlers; each kind has exactly one. */
  handle(handlers: Partial<EventHandlers>): void {
    for (const [key, handler] of Object.entries(handlers)) {
      const kind = Number(key)
      assert(this.handlers[kind] === undefined, `event kind ${kind} has two handlers`)
      // sound: `at` only queues a kind with that kind's arguments, in the queue's layout
      this.handlers[kind] = handler as QueueHandler
    }
  }

  /** Handles events in order until none is left at or before `endMs`; `afterEach` runs after every one. */
  runUntil(endMs: number, afterEach?: () => void): void {
    const queue = this.queue
    const handlers = this.handlers
    while (queue.size > 0 && queue.peekTime() <= endMs) {
      queue.pop()
      this.now = queue.time
      this.events++
      const handler = handlers[queue.kind]
      // the message is built only on failure: this loop runs millions of times
      if (handler === undefined) assert(false, `no handler for event kind ${queue.kind}`)
      handler(queue.argA, queue.argB, queue.payload)
      if (this.microtasks.length > 0) this.runMicrotasks()
      afterEach?.()
    }
  }

  private runMicrotasks(): void {
    const microtasks = this.microtasks
    for (let i = 0; i < microtasks.length; i++) microtasks[i]()
    microtasks.length = 0
  }
}
