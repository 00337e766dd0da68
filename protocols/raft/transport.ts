// The libp2p adapter that carries Raft messages between group members on /shardnet/raft/1.0.0.
// Each direction of each peer pair uses one long-lived stream of length-prefixed RaftFrame
// protobufs (boundedLpStream from ../wire/framing.ts). A stream from a peer that is a member of none
// of this node's joined groups is aborted before any byte of it is read; a member has a budget of
// streams and bytes in flight (every buffered byte is charged) and must send its first frame soon
// and later ones within the idle timeout. Frames are size-limited and every write has a deadline; a
// message that is malformed, oversized, spoofed (its `from` is not the connection's peer) or for a
// group its sender is not a member of is dropped and counted, never thrown into the node. Written as
// a js-libp2p service: raftTransport(init)(components).
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import {
  type BoundedLpStream,
  BudgetExceededError,
  boundedLpStream,
  FrameTimeoutError,
  isOversizedFrameError,
  PeerBudgets,
} from '../wire/framing.js'
import { RaftFrame, RaftMessage } from '../wire/raft.js'
import { isLocalMessage, MESSAGE_TYPES, type Message, type MessageType, message } from './types.js'

const log = logger('shardnet:raft:transport')

export const RAFT_PROTOCOL = '/shardnet/raft/1.0.0'

export interface RaftTransportInit {
  /** @default '/shardnet/raft/1.0.0' */
  protocol?: string
  /** Largest frame accepted or sent; larger inbound frames abort the stream. @default 16777216 */
  frameBytesMax?: number
  /** Messages per frame accepted. @default 4096 */
  messagesPerFrameMax?: number
  /** Entries per message accepted. @default 65536 */
  entriesPerMessageMax?: number
  /** Voters named in a snapshot chunk accepted. @default 1024 */
  votersMax?: number
  /** Deadline for opening a stream and for each write. @default 5000 */
  sendTimeoutMs?: number
  /** An inbound stream idle this long is closed (the sender reopens on demand). @default 120000 */
  idleTimeoutMs?: number
  /**
   * An inbound stream whose first frame is not complete this soon is closed: a member opening
   * streams and sending nothing holds them for this long at most. @default 10000
   */
  firstFrameTimeoutMs?: number
  /** Inbound streams open at once from one member (it needs one; more while one is reopened). @default 4 */
  streamsPerPeerMax?: number
  /**
   * Bytes buffered and being decoded from one member over its streams; a stream whose bytes pass it
   * is aborted (Raft retransmits). @default 3 * frameBytesMax + 16 MiB (one yamux window in flight)
   */
  bytesInFlightPerPeerMax?: number
  /** Bytes buffered and being decoded from all members together. @default 4 * bytesInFlightPerPeerMax */
  bytesInFlightMax?: number
  /** Bytes queued for one peer beyond which new frames are dropped (Raft retransmits). @default 67108864 */
  queueBytesMax?: number
  /** After a failed dial, frames for that peer are dropped for this long. @default 250 */
  dialBackoffMs?: number
  /** @default 32 */
  maxInboundStreams?: number
  /** @default 32 */
  maxOutboundStreams?: number
}

/** The libp2p internals the transport uses (a subset of libp2p's Components). */
export interface RaftTransportComponents {
  peerId: PeerId
  registrar: {
    handle(
      protocol: string,
      handler: (stream: Stream, connection: Connection) => void | Promise<void>,
      options?: { maxInboundStreams?: number; maxOutboundStreams?: number },
    ): Promise<void>
    unhandle(protocol: string): Promise<void>
  }
  connectionManager: {
    openStream(peer: PeerId, protocol: string, options?: { signal?: AbortSignal }): Promise<Stream>
  }
}

/** What the transport counts (exposed for metrics and tests). */
export interface RaftTransportStats {
  framesSent: number
  framesReceived: number
  messagesSent: number
  messagesReceived: number
  /** Messages from peers that are not members of the group (or for an unknown group). */
  refusedNonMember: number
  /** Messages whose `from`/`to` do not match the connection, or with invalid fields. */
  refusedInvalid: number
  /** Frames that failed to decode or exceeded a limit. */
  refusedMalformed: number
  /** Inbound streams aborted before any byte was read: the peer is a member of no joined group. */
  refusedStranger: number
  /** Inbound streams refused or aborted over the member's budget of streams or bytes in flight. */
  refusedOverBudget: number
  /** Inbound streams closed because no complete frame came in time. */
  refusedIdle: number
  /** Frames dropped on the sending side: queue full, dial backoff, write failure. */
  sendDropped: number
  /** Bytes of the frames queued for sending (before their length prefix). */
  bytesSent: number
}

export interface RaftGroupHandler {
  /** Current members of the group (peer id strings); checked for every inbound message. */
  isMember(peer: string): boolean
  /** Valid messages for this group from one frame. */
  onMessages(messages: Message[]): void
}

const TYPE_TO_WIRE: Partial<Record<MessageType, RaftMessage.Type>> = {
  MsgApp: RaftMessage.Type.APP,
  MsgAppResp: RaftMessage.Type.APP_RESP,
  MsgVote: RaftMessage.Type.VOTE,
  MsgVoteResp: RaftMessage.Type.VOTE_RESP,
  MsgPreVote: RaftMessage.Type.PRE_VOTE,
  MsgPreVoteResp: RaftMessage.Type.PRE_VOTE_RESP,
  MsgSnap: RaftMessage.Type.SNAP,
  MsgSnapResp: RaftMessage.Type.SNAP_RESP,
  MsgHeartbeat: RaftMessage.Type.HEARTBEAT,
  MsgHeartbeatResp: RaftMessage.Type.HEARTBEAT_RESP,
  MsgTimeoutNow: RaftMessage.Type.TIMEOUT_NOW,
}
const WIRE_TO_TYPE = new Map<RaftMessage.Type, MessageType>()
for (const type of MESSAGE_TYPES) {
  const wire = TYPE_TO_WIRE[type]
  if (wire !== undefined) WIRE_TO_TYPE.set(wire, type)
}

export function toWire(m: Message): RaftMessage {
  const type = TYPE_TO_WIRE[m.type]
  if (type === undefined) throw new Error(`local message ${m.type} cannot be sent`)
  return {
    type,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map((entry) => ({
      term: entry.term,
      index: entry.index,
      conf: entry.type === 'conf',
      data: entry.data as Uint8Array<ArrayBuffer>,
    })),
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    transfer: m.transfer,
    snapshot: m.snapshot
      ? {
          index: m.snapshot.metadata.index,
          term: m.snapshot.metadata.term,
          voters: m.snapshot.metadata.confState.voters,
          offset: m.snapshot.offset,
          totalBytes: m.snapshot.totalBytes,
          data: m.snapshot.data as Uint8Array<ArrayBuffer>,
        }
      : undefined,
  }
}

function isIndex(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0
}

/** Converts and validates a decoded message; undefined if any field is out of range. */
export function fromWire(wire: RaftMessage): Message | undefined {
  const type = WIRE_TO_TYPE.get(wire.type)
  if (type === undefined || isLocalMessage(type)) return undefined
  if (!isIndex(wire.term) || wire.term === 0) return undefined
  if (!isIndex(wire.logTerm) || !isIndex(wire.index) || !isIndex(wire.commit) || !isIndex(wire.rejectHint))
    return undefined
  const entries = []
  let expected = wire.index + 1
  for (const entry of wire.entries) {
    // entries of an append are consecutive from index + 1; anything else is refused here rather
    // than tripping an assertion in the core
    if (!isIndex(entry.term) || entry.index !== expected || entry.term > wire.term) return undefined
    expected++
    entries.push({
      term: entry.term,
      index: entry.index,
      type: entry.conf ? ('conf' as const) : ('normal' as const),
      data: entry.data,
    })
  }
  if (entries.length > 0 && type !== 'MsgApp') return undefined
  let snapshot: Message['snapshot']
  if (wire.snapshot) {
    const chunk = wire.snapshot
    if (
      !isIndex(chunk.index) ||
      chunk.index === 0 ||
      !isIndex(chunk.term) ||
      !isIndex(chunk.offset) ||
      !isIndex(chunk.totalBytes)
    ) {
      return undefined
    }
    if (chunk.offset + chunk.data.length > chunk.totalBytes) return undefined
    snapshot = {
      metadata: { index: chunk.index, term: chunk.term, confState: { voters: chunk.voters } },
      offset: chunk.offset,
      totalBytes: chunk.totalBytes,
      data: chunk.data,
    }
  }
  if (type === 'MsgSnap' && !snapshot) return undefined
  return message({
    type,
    from: wire.from,
    to: wire.to,
    term: wire.term,
    logTerm: wire.logTerm,
    index: wire.index,
    entries,
    commit: wire.commit,
    reject: wire.reject,
    rejectHint: wire.rejectHint,
    transfer: wire.transfer,
    snapshot,
  })
}

interface Outbound {
  queue: Uint8Array[]
  queuedBytes: number
  writing: boolean
  stream: Stream | undefined
  writer: BoundedLpStream | undefined
  backoffUntil: number
}

export class RaftTransport {
  readonly protocol: string
  readonly stats: RaftTransportStats = {
    framesSent: 0,
    framesReceived: 0,
    messagesSent: 0,
    messagesReceived: 0,
    refusedNonMember: 0,
    refusedInvalid: 0,
    refusedMalformed: 0,
    refusedStranger: 0,
    refusedOverBudget: 0,
    refusedIdle: 0,
    sendDropped: 0,
    bytesSent: 0,
  }
  private readonly components: RaftTransportComponents
  private readonly frameBytesMax: number
  private readonly messagesPerFrameMax: number
  private readonly entriesPerMessageMax: number
  private readonly votersMax: number
  private readonly sendTimeoutMs: number
  private readonly idleTimeoutMs: number
  private readonly firstFrameTimeoutMs: number
  /** Inbound budgets: members of a joined group are known, every other peer is refused. */
  readonly budgets: PeerBudgets
  private readonly queueBytesMax: number
  private readonly dialBackoffMs: number
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly groups = new Map<string, RaftGroupHandler>()
  private readonly outbound = new Map<string, Outbound>()
  private readonly inbound = new Set<Stream>()
  private started = false

  constructor(components: RaftTransportComponents, init: RaftTransportInit = {}) {
    this.components = components
    this.protocol = init.protocol ?? RAFT_PROTOCOL
    this.frameBytesMax = init.frameBytesMax ?? 16 << 20
    this.messagesPerFrameMax = init.messagesPerFrameMax ?? 4096
    this.entriesPerMessageMax = init.entriesPerMessageMax ?? 65536
    this.votersMax = init.votersMax ?? 1024
    this.sendTimeoutMs = init.sendTimeoutMs ?? 5000
    this.idleTimeoutMs = init.idleTimeoutMs ?? 120_000
    this.firstFrameTimeoutMs = init.firstFrameTimeoutMs ?? 10_000
    const bytesPerPeer = init.bytesInFlightPerPeerMax ?? 3 * this.frameBytesMax + (16 << 20)
    this.budgets = new PeerBudgets({
      known: {
        streamsPerPeer: init.streamsPerPeerMax ?? 4,
        bytesInFlightPerPeer: bytesPerPeer,
        readTimeoutMs: this.idleTimeoutMs,
      },
      stranger: { streamsPerPeer: 0, bytesInFlightPerPeer: 0, readTimeoutMs: 0 },
      isKnown: (peer) => this.isKnown(peer),
      bytesInFlightMax: init.bytesInFlightMax ?? 4 * bytesPerPeer,
    })
    this.queueBytesMax = init.queueBytesMax ?? 64 << 20
    this.dialBackoffMs = init.dialBackoffMs ?? 250
    this.maxInboundStreams = init.maxInboundStreams ?? 32
    this.maxOutboundStreams = init.maxOutboundStreams ?? 32
  }

  get localPeer(): string {
    return this.components.peerId.toString()
  }

  async start(): Promise<void> {
    await this.components.registrar.handle(
      this.protocol,
      (stream, connection) => this.handleInbound(stream, connection),
      {
        maxInboundStreams: this.maxInboundStreams,
        maxOutboundStreams: this.maxOutboundStreams,
      },
    )
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
    await this.components.registrar.unhandle(this.protocol)
    for (const outbound of this.outbound.values()) outbound.stream?.abort(new Error('raft transport stopped'))
    for (const stream of this.inbound) stream.abort(new Error('raft transport stopped'))
    this.outbound.clear()
    this.inbound.clear()
  }

  isStarted(): boolean {
    return this.started
  }

  /** Whether `peer` is a member of any group this node has joined. */
  isKnown(peer: string): boolean {
    for (const handler of this.groups.values()) if (handler.isMember(peer)) return true
    return false
  }

  /** Routes inbound messages of `group` to `handler`. */
  join(group: string, handler: RaftGroupHandler): void {
    this.groups.set(group, handler)
  }

  leave(group: string): void {
    this.groups.delete(group)
  }

  /** Queues messages (one Ready's worth) for their recipients; never throws for network trouble. */
  send(group: string, messages: Message[]): void {
    if (!this.started) return
    const byPeer = new Map<string, RaftMessage[]>()
    for (const m of messages) {
      let list = byPeer.get(m.to)
      if (!list) {
        list = []
        byPeer.set(m.to, list)
      }
      list.push(toWire(m))
    }
    for (const [peer, wire] of byPeer) {
      for (let i = 0; i < wire.length; i += this.messagesPerFrameMax) {
        const frame = RaftFrame.encode({ group, messages: wire.slice(i, i + this.messagesPerFrameMax) })
        this.enqueue(peer, frame, Math.min(wire.length - i, this.messagesPerFrameMax))
      }
    }
  }

  private enqueue(peer: string, frame: Uint8Array, messageCount: number): void {
    let outbound = this.outbound.get(peer)
    if (!outbound) {
      outbound = {
        queue: [],
        queuedBytes: 0,
        writing: false,
        stream: undefined,
        writer: undefined,
        backoffUntil: 0,
      }
      this.outbound.set(peer, outbound)
    }
    if (
      frame.length > this.frameBytesMax ||
      outbound.queuedBytes + frame.length > this.queueBytesMax ||
      Date.now() < outbound.backoffUntil
    ) {
      this.stats.sendDropped++
      return
    }
    outbound.queue.push(frame)
    outbound.queuedBytes += frame.length
    this.stats.messagesSent += messageCount
    this.stats.bytesSent += frame.length
    if (!outbound.writing) void this.drain(peer, outbound)
  }

  private async drain(peer: string, outbound: Outbound): Promise<void> {
    outbound.writing = true
    try {
      while (outbound.queue.length > 0 && this.started) {
        if (!outbound.stream || !outbound.writer || outbound.stream.status !== 'open') {
          outbound.stream = await this.components.connectionManager.openStream(
            peerIdFromString(peer),
            this.protocol,
            {
              signal: AbortSignal.timeout(this.sendTimeoutMs),
            },
          )
          // nothing is read from an outbound stream: what the peer writes on it is discarded
          await outbound.stream.closeRead()
          outbound.writer = boundedLpStream(outbound.stream, this.frameBytesMax)
        }
        const frames = outbound.queue.splice(0)
        outbound.queuedBytes = 0
        // one vectored write per batch of frames: fewer syscalls and muxer frames
        await outbound.writer.writeV(frames, { signal: AbortSignal.timeout(this.sendTimeoutMs) })
        this.stats.framesSent += frames.length
      }
    } catch (error) {
      this.stats.sendDropped += outbound.queue.length + 1
      log('sending to %s failed: %s', peer, (error as Error).message)
      outbound.stream?.abort(error as Error)
      outbound.stream = undefined
      outbound.writer = undefined
      outbound.queue = []
      outbound.queuedBytes = 0
      outbound.backoffUntil = Date.now() + this.dialBackoffMs
    } finally {
      outbound.writing = false
    }
  }

  private async handleInbound(stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    const local = this.localPeer
    // membership and the stream budget are checked before a byte of the stream is read
    const lease = this.budgets.acquire(remote)
    if (lease === undefined) {
      if (this.isKnown(remote)) {
        this.stats.refusedOverBudget++
        log('refused a raft stream from %s: over its stream budget', remote)
      } else {
        this.stats.refusedStranger++
        log('refused a raft stream from %s: a member of no joined group', remote)
      }
      stream.abort(new BudgetExceededError('raft streams are for members of a joined group'))
      return
    }
    this.inbound.add(stream)
    // a burst of large appends is paced by yamux (the reader pauses the stream once a frame's worth
    // is buffered) instead of being buffered whole
    const reader = boundedLpStream(stream, this.frameBytesMax, { lease, readTimeoutMs: 0 })
    let timeoutMs = this.firstFrameTimeoutMs
    try {
      while (this.started) {
        const bytes = await reader.read({ signal: AbortSignal.timeout(timeoutMs) }).catch((error) => {
          // the read's own deadline: name it, so the catch below counts it
          if (error instanceof DOMException && error.name === 'TimeoutError') {
            throw new FrameTimeoutError(`no complete raft frame within ${timeoutMs} ms`)
          }
          throw error
        })
        timeoutMs = this.idleTimeoutMs
        let frame: RaftFrame
        try {
          frame = RaftFrame.decode(bytes, {
            limits: {
              messages: this.messagesPerFrameMax,
              messages$: { entries: this.entriesPerMessageMax, snapshot: { voters: this.votersMax } },
            },
          })
        } catch (error) {
          this.stats.refusedMalformed++
          this.budgets.count('malformed')
          log('malformed raft frame from %s: %s', remote, (error as Error).message)
          continue
        }
        this.stats.framesReceived++
        const handler = this.groups.get(frame.group)
        if (!handler?.isMember(remote)) {
          this.stats.refusedNonMember += frame.messages.length
          log(
            'refused %d raft messages for group %s from non-member %s',
            frame.messages.length,
            frame.group,
            remote,
          )
          continue
        }
        const valid: Message[] = []
        for (const wire of frame.messages) {
          const m = wire.from === remote && wire.to === local ? fromWire(wire) : undefined
          if (!m) {
            this.stats.refusedInvalid++
            continue
          }
          valid.push(m)
        }
        this.stats.messagesReceived += valid.length
        if (valid.length > 0) handler.onMessages(valid)
      }
    } catch (error) {
      if (isOversizedFrameError(error)) {
        this.stats.refusedMalformed++
      } else if (error instanceof BudgetExceededError) {
        this.stats.refusedOverBudget++
      } else if (error instanceof FrameTimeoutError) {
        this.stats.refusedIdle++
        this.budgets.count('timeout')
      }
      log('raft stream from %s ended: %s', remote, (error as Error).message)
      stream.abort(error as Error)
    } finally {
      lease.release()
      this.inbound.delete(stream)
    }
  }
}

/** The js-libp2p service factory: `services: { raft: raftTransport() }`. */
export function raftTransport(
  init: RaftTransportInit = {},
): (components: RaftTransportComponents) => RaftTransport {
  return (components) => new RaftTransport(components, init)
}
