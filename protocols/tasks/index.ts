/**
 * Task gossip: signed TaskAnnouncements on the gossipsub topic `shardnet/tasks/1`.
 *
 * API (a libp2p service; gossipsub must be registered under the service name `pubsub` with
 * `globalSignaturePolicy: StrictSign`):
 * ```ts
 * const node = await createLibp2p({
 *   services: {
 *     pubsub: gossipsub({ globalSignaturePolicy: StrictSign,
 *                         scoreParams: { topics: { [TASKS_TOPIC]: taskTopicScoreParams() } } }),
 *     tasks: taskGossip(),
 *   },
 * })
 * await node.services.tasks.announce({ taskCid, kind: 'train', groups: 2, groupSize: 3, ... })
 * node.services.tasks.addEventListener('announcement', (evt) => evt.detail)   // ReceivedAnnouncement
 * for await (const a of node.services.tasks.announcements({ signal })) { ... }
 * node.services.tasks.counters() // { accepted, published, rejected: { reason: n } }
 * ```
 * The topic validator refuses, and gossipsub then penalises the forwarding peer (P4, invalid message
 * deliveries, weight set by {@link taskTopicScoreParams}):
 * - oversized: encoded announcement over TASK_ANNOUNCEMENT_BYTES_MAX (4 KiB)
 * - malformed: not a TaskAnnouncement; bad-*: a field out of range
 * - expired / from-the-future: outside [created - 30 s, expires)
 * - wrong-submitter: the announcement names a submitter other than the message signer
 * - duplicate: the same (submitter, nonce) seen before within its lifetime (a replay), or a task CID
 *   already announced by another submitter, or announced again by its submitter sooner than
 *   REANNOUNCE_INTERVAL_MIN_MS after the copy accepted last. A submitter re-announces a task that is
 *   still looking for workers so that nodes which joined after the first announcement hear it too;
 *   the interval bounds how much gossip one task can cost.
 * - unsigned: only if gossipsub were misconfigured; with StrictSign, gossipsub itself refuses unsigned
 *   messages before our validator runs (gossipsub counts them as invalid and penalises the sender too).
 * The service needs the `pubsub` component by that name: libp2p 3 hands every service the other services
 * through `components[name]`, and `serviceDependencies` makes libp2p refuse a config without pubsub.
 */

import { type GossipSub, type Message, TopicValidatorResult } from '@libp2p/gossipsub'
import { createTopicScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import {
  type ComponentLogger,
  type Logger,
  type Metrics,
  type PeerId,
  type Startable,
  serviceCapabilities,
  serviceDependencies,
  TypedEventEmitter,
} from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { TaskAnnouncement } from '../wire/tasks.js'
import {
  ANNOUNCEMENT_REJECT_REASONS,
  cidFromBytes,
  decodeTaskAnnouncement,
  peerIdFromBytes,
  TASK_ANNOUNCEMENT_BYTES_MAX,
  validateTaskAnnouncement,
} from '../wire/validation/index.js'
import { type BackendRequirement, REQUIREMENTS_DEFAULT, type Requirements, type TaskKind } from './spec.js'

export const TASKS_TOPIC = 'shardnet/tasks/1'

/** The least time between two accepted announcements of one task CID (by `createdMs`). */
export const REANNOUNCE_INTERVAL_MIN_MS = 5_000
/** How often a submitter announces a task that is still looking for workers again. */
export const REANNOUNCE_MS_DEFAULT = 10_000
/** (submitter, nonce) pairs and task CIDs remembered for replay detection. */
export const SEEN_CAPACITY_DEFAULT = 10_000
/** Lifetime of an announcement whose caller gives none. */
export const ANNOUNCEMENT_TTL_MS_DEFAULT = 3_600_000
/** Received announcements an announcements() iterator buffers before dropping the oldest. */
export const ITERATOR_BUFFER_MAX_DEFAULT = 1_000
export { TASK_ANNOUNCEMENT_BYTES_MAX }

export const TASK_GOSSIP_REJECT_REASONS = [
  ...ANNOUNCEMENT_REJECT_REASONS,
  'unsigned',
  'wrong-submitter',
  'duplicate',
] as const
export type TaskGossipRejectReason = (typeof TASK_GOSSIP_REJECT_REASONS)[number]

export type { TaskKind }

/** An announcement in the shapes callers use (the wire form is TaskAnnouncement from protocols/wire). */
export interface Announcement {
  taskCid: CID
  kind: TaskKind
  requirements: Requirements
  groups: number
  groupSize: number
  submitter: PeerId
  createdMs: number
  expiresMs: number
  nonce: Uint8Array
}

export interface ReceivedAnnouncement {
  announcement: Announcement
  /** the peer that forwarded it to us (not necessarily the submitter) */
  from: PeerId
  receivedMs: number
}

export interface AnnounceInput {
  taskCid: CID
  kind: TaskKind
  requirements?: Partial<Announcement['requirements']>
  groups: number
  groupSize: number
  /** @default TaskGossipInit.defaultTtlMs */
  ttlMs?: number
}

export interface TaskGossipCounters {
  accepted: number
  published: number
  rejected: Record<TaskGossipRejectReason, number>
  /** replay-detection entries held now (at most seenCapacity) */
  seen: number
  /** entries dropped before their announcement expired because the map was full */
  seenEvicted: number
}

export interface TaskGossipInit {
  /**
   * The gossip topic.
   * @default 'shardnet/tasks/1'
   */
  topic?: string
  /**
   * How many (submitter, nonce) and task CIDs are remembered for replay detection; the oldest are
   * forgotten first, and entries are dropped once their announcement expired.
   * @default SEEN_CAPACITY_DEFAULT
   */
  seenCapacity?: number
  /**
   * Lifetime of announcements made with announce() when the caller gives none, in ms.
   * @default ANNOUNCEMENT_TTL_MS_DEFAULT
   */
  defaultTtlMs?: number
  /**
   * How many received announcements an announcements() iterator buffers before dropping the oldest.
   * @default ITERATOR_BUFFER_MAX_DEFAULT
   */
  iteratorBufferMax?: number
  /**
   * The clock, injectable for tests.
   * @default Date.now
   */
  now?: () => number
}

export interface TaskGossipComponents {
  peerId: PeerId
  pubsub: GossipSub
  logger: ComponentLogger
  metrics?: Metrics
}

export interface TaskGossipEvents {
  announcement: CustomEvent<ReceivedAnnouncement>
}

export interface TaskGossip extends Startable, TypedEventEmitter<TaskGossipEvents> {
  readonly topic: string
  /** Validates, signs (through gossipsub) and publishes an announcement; returns what was sent. */
  announce(input: AnnounceInput): Promise<Announcement>
  /** Valid announcements from other peers, as they arrive, until the signal aborts or stop(). */
  announcements(options?: { signal?: AbortSignal }): AsyncGenerator<ReceivedAnnouncement>
  counters(): TaskGossipCounters
}

/** announce() was given an announcement that other nodes would refuse. `reason` says why. */
export class InvalidAnnouncementError extends Error {
  static override name = 'InvalidAnnouncementError'
  override name = 'InvalidAnnouncementError'
  constructor(readonly reason: TaskGossipRejectReason) {
    super(`invalid task announcement: ${reason}`)
  }
}

/**
 * Topic score parameters for {@link TASKS_TOPIC}: every refused message costs its forwarder
 * (invalid deliveries)^2 * -10, decaying by 1% a second, so one bad message drops a peer below the
 * default gossip threshold (-10) and three below the graylist threshold (-80). Mesh delivery-rate
 * penalties are off: tasks are rare, so a quiet mesh peer is not a faulty one.
 */
export function taskTopicScoreParams(): TopicScoreParams {
  return createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: 1_000,
    timeInMeshCap: 100,
    firstMessageDeliveriesWeight: 1,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 10,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: -10,
    invalidMessageDeliveriesDecay: 0.99,
  })
}

const KIND_TO_WIRE: Record<TaskKind, TaskAnnouncement.Kind> = {
  train: TaskAnnouncement.Kind.TRAIN,
  infer: TaskAnnouncement.Kind.INFER,
}
const BACKEND_TO_WIRE: Record<BackendRequirement, TaskAnnouncement.Backend> = {
  any: TaskAnnouncement.Backend.ANY,
  webgpu: TaskAnnouncement.Backend.WEBGPU,
  cpu: TaskAnnouncement.Backend.CPU,
}

/** Converts a wire announcement that passed validateTaskAnnouncement. */
export function announcementFromWire(a: TaskAnnouncement): Announcement {
  const r = a.requirements
  const backend: BackendRequirement =
    r?.backend === TaskAnnouncement.Backend.WEBGPU
      ? 'webgpu'
      : r?.backend === TaskAnnouncement.Backend.CPU
        ? 'cpu'
        : 'any'
  return {
    taskCid: cidFromBytes(a.taskCid)!,
    kind: a.kind === TaskAnnouncement.Kind.INFER ? 'infer' : 'train',
    requirements: {
      backend,
      minMemoryBytes: r?.minMemoryBytes ?? REQUIREMENTS_DEFAULT.minMemoryBytes,
      minGflops: r?.minGflops ?? REQUIREMENTS_DEFAULT.minGflops,
    },
    groups: a.groups,
    groupSize: a.groupSize,
    submitter: peerIdFromBytes(a.submitter)!,
    createdMs: a.createdMs,
    expiresMs: a.expiresMs,
    nonce: a.nonce,
  }
}

export function announcementToWire(a: Announcement): TaskAnnouncement {
  return {
    taskCid: a.taskCid.bytes as Uint8Array<ArrayBuffer>,
    kind: KIND_TO_WIRE[a.kind],
    requirements: {
      backend: BACKEND_TO_WIRE[a.requirements.backend],
      minMemoryBytes: a.requirements.minMemoryBytes,
      minGflops: a.requirements.minGflops,
    },
    groups: a.groups,
    groupSize: a.groupSize,
    submitter: a.submitter.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    createdMs: a.createdMs,
    expiresMs: a.expiresMs,
    nonce: a.nonce as Uint8Array<ArrayBuffer>,
  }
}

/**
 * A map of at most `capacity` entries, each lapsing at its own expiry (a lapsed one reads as absent and
 * is dropped then); when it is full, the entry set longest ago goes first.
 */
class ExpiringMap<V> {
  private readonly entries = new Map<string, { value: V; expiresMs: number }>()
  /** entries dropped to stay within capacity (a flood of distinct announcements) */
  evicted = 0
  private sets = 0
  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size
  }

  get(key: string, nowMs: number): V | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresMs <= nowMs) {
      this.entries.delete(key)
      return undefined
    }
    return entry.value
  }

  set(key: string, value: V, expiresMs: number, nowMs: number): void {
    // lapsed entries are swept now and then, so the map holds live entries, not a flood's leftovers
    if (++this.sets % 1024 === 0) {
      for (const [k, entry] of this.entries) if (entry.expiresMs <= nowMs) this.entries.delete(k)
    }
    this.entries.delete(key)
    this.entries.set(key, { value, expiresMs })
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string
      this.entries.delete(oldest)
      this.evicted++
    }
  }
}

class DefaultTaskGossip extends TypedEventEmitter<TaskGossipEvents> implements TaskGossip {
  readonly [Symbol.toStringTag] = 'shardnet:tasks'
  readonly [serviceCapabilities] = ['shardnet:tasks']
  readonly [serviceDependencies] = ['@libp2p/pubsub']
  readonly topic: string

  private readonly components: TaskGossipComponents
  private readonly log: Logger
  /** (submitter, nonce) keys seen, and per task CID its submitter and the latest accepted createdMs */
  private readonly seen: ExpiringMap<{ submitter: string; createdMs: number }>
  private readonly defaultTtlMs: number
  private readonly iteratorBufferMax: number
  private readonly now: () => number
  private readonly stats: TaskGossipCounters
  private readonly shutdown = new AbortController()
  private started = false

  constructor(components: TaskGossipComponents, init: TaskGossipInit = {}) {
    super()
    this.components = components
    this.log = components.logger.forComponent('shardnet:tasks')
    this.topic = init.topic ?? TASKS_TOPIC
    this.seen = new ExpiringMap(init.seenCapacity ?? SEEN_CAPACITY_DEFAULT)
    this.defaultTtlMs = init.defaultTtlMs ?? ANNOUNCEMENT_TTL_MS_DEFAULT
    this.iteratorBufferMax = init.iteratorBufferMax ?? ITERATOR_BUFFER_MAX_DEFAULT
    this.now = init.now ?? Date.now
    const rejected = Object.fromEntries(
      TASK_GOSSIP_REJECT_REASONS.map((r) => [r, 0]),
    ) as TaskGossipCounters['rejected']
    this.stats = { accepted: 0, published: 0, rejected, seen: 0, seenEvicted: 0 }
    components.metrics?.registerCounterGroup('shardnet_task_announcements_rejected_total', {
      label: 'reason',
      help: 'Task announcements refused by the topic validator, by reason',
      calculate: () => ({ ...this.stats.rejected }),
    })
    components.metrics?.registerCounterGroup('shardnet_task_announcements_total', {
      label: 'outcome',
      help: 'Task announcements accepted from peers and published by this node',
      calculate: () => ({
        accepted: this.stats.accepted,
        published: this.stats.published,
        'seen-evicted': this.seen.evicted,
      }),
    })
    this.onMessage = this.onMessage.bind(this)
  }

  isStarted(): boolean {
    return this.started
  }

  async start(): Promise<void> {
    const pubsub = this.components.pubsub
    // Score params are read per message from the live params object, so adding the topic here works
    // even if the host config forgot it. The public GossipSub type does not expose `score`, hence the cast.
    const score = (
      pubsub as unknown as { score?: { params?: { topics?: Record<string, TopicScoreParams> } } }
    ).score
    const topics = score?.params?.topics
    if (topics !== undefined && topics[this.topic] === undefined) topics[this.topic] = taskTopicScoreParams()
    pubsub.topicValidators.set(this.topic, (from, msg) => this.validate(from, msg))
    pubsub.addEventListener('message', this.onMessage)
    this.started = true
  }

  /** Services start concurrently: subscribing has to wait until gossipsub itself has started. */
  afterStart(): void {
    this.components.pubsub.subscribe(this.topic)
  }

  async stop(): Promise<void> {
    const pubsub = this.components.pubsub
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.topicValidators.delete(this.topic)
    try {
      pubsub.unsubscribe(this.topic)
    } catch {
      // gossipsub may already be stopped
    }
    this.shutdown.abort()
    this.started = false
  }

  counters(): TaskGossipCounters {
    return {
      ...this.stats,
      rejected: { ...this.stats.rejected },
      seen: this.seen.size,
      seenEvicted: this.seen.evicted,
    }
  }

  private reject(reason: TaskGossipRejectReason, from: PeerId): TopicValidatorResult {
    this.stats.rejected[reason]++
    this.log('refused announcement via %p: %s', from, reason)
    return TopicValidatorResult.Reject
  }

  /** The topic validator. Never throws: every outcome is Accept or Reject, and a rejection is counted. */
  private validate(from: PeerId, msg: Message): TopicValidatorResult {
    try {
      if (msg.type !== 'signed') return this.reject('unsigned', from)
      const decoded = decodeTaskAnnouncement(msg.data)
      if (!decoded.ok) return this.reject(decoded.reason, from)
      const nowMs = this.now()
      const reason = validateTaskAnnouncement(decoded.value, nowMs)
      if (reason !== undefined) return this.reject(reason, from)
      const submitter = peerIdFromBytes(decoded.value.submitter)!
      if (!submitter.equals(msg.from)) return this.reject('wrong-submitter', from)
      const nonceKey = `n/${submitter.toString()}/${uint8ArrayToString(decoded.value.nonce, 'base64')}`
      const cidKey = `c/${uint8ArrayToString(decoded.value.taskCid, 'base64')}`
      const submitterId = submitter.toString()
      if (this.seen.get(nonceKey, nowMs) !== undefined) return this.reject('duplicate', from)
      if (!this.announcementAllowed(cidKey, submitterId, decoded.value.createdMs, nowMs))
        return this.reject('duplicate', from)
      const seen = { submitter: submitterId, createdMs: decoded.value.createdMs }
      this.seen.set(nonceKey, seen, decoded.value.expiresMs, nowMs)
      this.seen.set(cidKey, seen, decoded.value.expiresMs, nowMs)
      return TopicValidatorResult.Accept
    } catch (err) {
      // a bug in validation must not take the node down; refuse and count as malformed
      this.log.error('announcement validation threw - %e', err)
      return this.reject('malformed', from)
    }
  }

  /**
   * A task CID not seen (or whose announcement expired) may be announced; one seen may be announced
   * again only by the same submitter and only REANNOUNCE_INTERVAL_MIN_MS after the last accepted copy.
   */
  private announcementAllowed(cidKey: string, submitter: string, createdMs: number, nowMs: number): boolean {
    const last = this.seen.get(cidKey, nowMs)
    if (last === undefined) return true
    return last.submitter === submitter && createdMs >= last.createdMs + REANNOUNCE_INTERVAL_MIN_MS
  }

  private onMessage(evt: CustomEvent<Message>): void {
    const msg = evt.detail
    if (msg.topic !== this.topic || msg.type !== 'signed') return
    // validate() accepted it already, so decoding succeeds
    const decoded = decodeTaskAnnouncement(msg.data)
    if (!decoded.ok) return
    this.stats.accepted++
    this.safeDispatchEvent('announcement', {
      detail: { announcement: announcementFromWire(decoded.value), from: msg.from, receivedMs: this.now() },
    })
  }

  async announce(input: AnnounceInput): Promise<Announcement> {
    const createdMs = this.now()
    const announcement: Announcement = {
      taskCid: input.taskCid,
      kind: input.kind,
      requirements: {
        backend: input.requirements?.backend ?? REQUIREMENTS_DEFAULT.backend,
        minMemoryBytes: input.requirements?.minMemoryBytes ?? REQUIREMENTS_DEFAULT.minMemoryBytes,
        minGflops: input.requirements?.minGflops ?? REQUIREMENTS_DEFAULT.minGflops,
      },
      groups: input.groups,
      groupSize: input.groupSize,
      submitter: this.components.peerId,
      createdMs,
      expiresMs: createdMs + (input.ttlMs ?? this.defaultTtlMs),
      nonce: crypto.getRandomValues(new Uint8Array(16)),
    }
    if (KIND_TO_WIRE[announcement.kind] === undefined) throw new InvalidAnnouncementError('bad-kind')
    if (BACKEND_TO_WIRE[announcement.requirements.backend] === undefined) {
      throw new InvalidAnnouncementError('bad-requirements')
    }
    const wire = announcementToWire(announcement)
    const bytes = TaskAnnouncement.encode(wire)
    if (bytes.byteLength > TASK_ANNOUNCEMENT_BYTES_MAX) throw new InvalidAnnouncementError('oversized')
    const reason = validateTaskAnnouncement(wire, createdMs)
    if (reason !== undefined) throw new InvalidAnnouncementError(reason)
    const cidKey = `c/${uint8ArrayToString(wire.taskCid, 'base64')}`
    const self = this.components.peerId.toString()
    if (!this.announcementAllowed(cidKey, self, createdMs, createdMs))
      throw new InvalidAnnouncementError('duplicate')
    this.seen.set(cidKey, { submitter: self, createdMs }, announcement.expiresMs, createdMs)
    await this.components.pubsub.publish(this.topic, bytes)
    this.stats.published++
    return announcement
  }

  async *announcements(options: { signal?: AbortSignal } = {}): AsyncGenerator<ReceivedAnnouncement> {
    const signal = AbortSignal.any([this.shutdown.signal, ...(options.signal ? [options.signal] : [])])
    const buffer: ReceivedAnnouncement[] = []
    let wake: (() => void) | undefined
    const onAnnouncement = (evt: CustomEvent<ReceivedAnnouncement>) => {
      buffer.push(evt.detail)
      if (buffer.length > this.iteratorBufferMax) buffer.shift()
      wake?.()
    }
    const onAbort = () => wake?.()
    this.addEventListener('announcement', onAnnouncement)
    signal.addEventListener('abort', onAbort)
    try {
      while (!signal.aborted) {
        const next = buffer.shift()
        if (next !== undefined) {
          yield next
          continue
        }
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        wake = undefined
      }
    } finally {
      this.removeEventListener('announcement', onAnnouncement)
      signal.removeEventListener('abort', onAbort)
    }
  }
}

/** The task gossip service factory. */
export function taskGossip(init: TaskGossipInit = {}): (components: TaskGossipComponents) => TaskGossip {
  return (components) => new DefaultTaskGossip(components, init)
}
