// The simulator's events and the loop that runs them. Every event kind has one typed argument list
// (EventArgs) and one handler, registered by the module that owns it (staffing.ts, groups.ts,
// faults.ts, simulator.ts); `at` only accepts a kind's own arguments, so a handler never guesses
// what it was given. Underneath, an event is what queue.ts stores without allocating: a small-int
// kind, two integers and one optional value, so a kind's arguments are at most two integers and
// then one value of any type.
import { assert, type Message } from '../../protocols/raft/types.js'
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
  stepGrace: 17,
  inferenceStart: 18,
  inferenceAnswer: 19,
} as const
export type EventKind = (typeof EventKind)[keyof typeof EventKind]

/** A gradient on its way from a member to the member it took for leader. */
export interface GradientInFlight {
  /** The receiving member's position in its group. */
  to: number
  step: number
  /** The L2 norm the sender's gradient has (NaN or huge from a lying peer). */
  norm: number
}

/** Each event kind's arguments: up to two integers, then at most one value (the queue's layout). */
export interface EventArgs {
  [EventKind.groupTick]: [group: number]
  [EventKind.raftMessage]: [group: number, position: number, message: Message]
  [EventKind.gradientComputed]: [group: number, position: number, step: number]
  [EventKind.gradientArrives]: [group: number, from: number, gradient: GradientInFlight]
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
  /** The straggler timer of `step` ran out. */
  [EventKind.stepGrace]: [group: number, step: number]
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

  /** Schedules `kind` with its arguments at `timeMs` (events at the same time run in the order scheduled). */
  at<K extends EventKind>(timeMs: number, kind: K, ...args: EventArgs[K]): void
  at(timeMs: number, kind: EventKind, a?: number, b?: number, payload?: unknown): void {
    this.queue.push(timeMs, kind, a, b, payload)
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
      afterEach?.()
    }
  }
}
