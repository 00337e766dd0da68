// The libp2p adapter of /shardnet/grad/1.0.0: a member keeps one stream open to each peer it sends
// to and, one exchange at a time, writes a length-prefixed GradRequest (a gradient for a step, or a
// request for the training state) and reads a length-prefixed GradResponse. Reusing the stream
// matters: yamux grows a stream's window as it carries data, so after the first steps a gradient of
// megabytes goes out without waiting for window updates (a fresh stream starts at 256 KiB and pays
// several round trips per gradient). Inbound requests are size-limited (the limit is derived
// from the group's parameter count), read under a deadline and accepted only from members of the
// group they name; everything refused is counted by reason and never thrown into the node.
// Written as a js-libp2p service: gradientExchange(init)(components).
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { UnexpectedEOFError } from '@libp2p/utils'
import { type BoundedLpStream, boundedLpStream, isOversizedFrameError } from '../wire/framing.js'
import { type Gradient, type GradientFetch, GradRequest, GradResponse } from '../wire/training.js'

const log = logger('shardnet:training:exchange')

export const GRADIENT_PROTOCOL = '/shardnet/grad/1.0.0'
/** Deadline of one request/response exchange, both sides. */
export const EXCHANGE_TIMEOUT_MS_DEFAULT = 10_000
/** An inbound stream with no request for this long is closed (the sender reopens). */
export const IDLE_TIMEOUT_MS_DEFAULT = 120_000
/** Largest request read while no group is joined. */
export const IDLE_REQUEST_BYTES_MAX_DEFAULT = 65_536
/** Inbound and outbound streams of the protocol per connection. */
export const STREAMS_MAX_DEFAULT = 64
/** Inbound streams one peer may hold open at once, across its connections. */
export const STREAMS_PER_PEER_MAX_DEFAULT = 8

/** Bytes of a GradRequest beyond the gradient values: group id, digest, scales headroom. */
export const REQUEST_OVERHEAD_BYTES = 4096

/** Largest request a group of `parameterCount` parameters accepts: one float32 gradient + overhead. */
export function gradientRequestBytesMax(parameterCount: number): number {
  return parameterCount * 4 + REQUEST_OVERHEAD_BYTES
}

/**
 * Largest state response: params and two AdamW moments, float32, plus member counts, plus one signed
 * float32 gradient per member as evidence.
 */
export function stateResponseBytesMax(parameterCount: number, memberCount: number): number {
  return (
    parameterCount * 12 +
    REQUEST_OVERHEAD_BYTES +
    memberCount * 128 +
    memberCount * gradientRequestBytesMax(parameterCount)
  )
}

export interface GradientExchangeInit {
  /** @default '/shardnet/grad/1.0.0' */
  protocol?: string
  /** Deadline of one request/response exchange, both sides. @default 10000 */
  timeoutMs?: number
  /** An inbound stream with no request for this long is closed (the sender reopens). @default 120000 */
  idleTimeoutMs?: number
  /** Largest request when no group is joined (state requests are tiny). @default 65536 */
  idleRequestBytesMax?: number
  /** @default 64 */
  maxInboundStreams?: number
  /** @default 64 */
  maxOutboundStreams?: number
  /** inbound streams one peer may hold open at once. @default 8 */
  streamsPerPeerMax?: number
}

export interface GradientExchangeComponents {
  peerId: PeerId
  /** the node's key: members sign their gradients with it (libp2p gives it to every service) */
  privateKey?: PrivateKey
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

/** Why an inbound request was refused before reaching its group. */
export type ExchangeRefusal =
  | 'malformed'
  | 'oversized'
  | 'unknown-group'
  | 'non-member'
  | 'stranger'
  | 'too-many-streams'
  | 'timeout'
  | 'empty'

export const EXCHANGE_REFUSALS: readonly ExchangeRefusal[] = [
  'malformed',
  'oversized',
  'unknown-group',
  'non-member',
  'stranger',
  'too-many-streams',
  'timeout',
  'empty',
]

export interface GradientExchangeStats {
  requestsSent: number
  /** bytes of gradient requests written (frames, without the length prefix) */
  gradientBytesSent: number
  requestsReceived: number
  gradientBytesReceived: number
  /** requests that failed on the sending side (dial, write, read or deadline) */
  sendFailures: number
  refused: Record<ExchangeRefusal, number>
}

export interface GradientGroupHandler {
  /** is `peer` a member of the group (checked for every inbound request) */
  isMember(peer: string): boolean
  /** largest request accepted for this group */
  requestBytesMax: number
  /** largest response this group's members accept */
  responseBytesMax: number
  /** a gradient sent for the leader (`share` false) or shared with every member (`share` true) */
  onGradient(from: string, gradient: Gradient, share: boolean): GradResponse | Promise<GradResponse>
  onStateRequest(from: string): GradResponse | Promise<GradResponse>
  /** a member asks for a gradient by digest: answer GRADIENT with it and its author, or NOT_READY */
  onFetch(from: string, fetch: GradientFetch): GradResponse | Promise<GradResponse>
}

/** The exchange is not started, or a peer could not be reached in time. */
export class GradientSendError extends Error {
  static override name = 'GradientSendError'
  constructor(message: string) {
    super(message)
    this.name = 'GradientSendError'
  }
}

export class GradientExchange {
  readonly protocol: string
  readonly stats: GradientExchangeStats = {
    requestsSent: 0,
    gradientBytesSent: 0,
    requestsReceived: 0,
    gradientBytesReceived: 0,
    sendFailures: 0,
    refused: Object.fromEntries(EXCHANGE_REFUSALS.map((reason) => [reason, 0])) as Record<
      ExchangeRefusal,
      number
    >,
  }
  private readonly components: GradientExchangeComponents
  private readonly timeoutMs: number
  private readonly idleTimeoutMs: number
  /** one reusable outbound stream per peer, and the exchange in progress on it */
  private readonly outbound = new Map<
    string,
    {
      stream: Stream
      framed: BoundedLpStream
      responseBytesMax: number
      busy: Promise<unknown>
    }
  >()
  private readonly idleRequestBytesMax: number
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly groups = new Map<string, GradientGroupHandler>()
  private readonly streams = new Set<Stream>()
  /** inbound streams open per remote peer */
  private readonly inboundPerPeer = new Map<string, number>()
  private readonly streamsPerPeerMax: number
  private started = false

  constructor(components: GradientExchangeComponents, init: GradientExchangeInit = {}) {
    this.components = components
    this.protocol = init.protocol ?? GRADIENT_PROTOCOL
    this.timeoutMs = init.timeoutMs ?? EXCHANGE_TIMEOUT_MS_DEFAULT
    this.idleTimeoutMs = init.idleTimeoutMs ?? IDLE_TIMEOUT_MS_DEFAULT
    this.idleRequestBytesMax = init.idleRequestBytesMax ?? IDLE_REQUEST_BYTES_MAX_DEFAULT
    this.maxInboundStreams = init.maxInboundStreams ?? STREAMS_MAX_DEFAULT
    this.maxOutboundStreams = init.maxOutboundStreams ?? STREAMS_MAX_DEFAULT
    this.streamsPerPeerMax = init.streamsPerPeerMax ?? STREAMS_PER_PEER_MAX_DEFAULT
  }

  async start(): Promise<void> {
    await this.components.registrar.handle(
      this.protocol,
      (stream, connection) => this.handleInbound(stream, connection),
      { maxInboundStreams: this.maxInboundStreams, maxOutboundStreams: this.maxOutboundStreams },
    )
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
    await this.components.registrar.unhandle(this.protocol)
    for (const stream of this.streams) stream.abort(new Error('gradient exchange stopped'))
    this.streams.clear()
    this.outbound.clear()
  }

  isStarted(): boolean {
    return this.started
  }

  join(group: string, handler: GradientGroupHandler): void {
    this.groups.set(group, handler)
  }

  leave(group: string): void {
    this.groups.delete(group)
  }

  /** The largest request a group of `peer`'s accepts: the read limit before the group is known. */
  private requestBytesMaxFor(peer: string): number {
    let max = this.idleRequestBytesMax
    for (const handler of this.groups.values())
      if (handler.isMember(peer)) max = Math.max(max, handler.requestBytesMax)
    return max
  }

  /** Signs `payload` with this node's key (see verify.ts signaturePayload). */
  async sign(payload: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    const key = this.components.privateKey
    if (!key) throw new GradientSendError('this node has no private key to sign gradients with')
    return (await key.sign(payload)) as Uint8Array<ArrayBuffer>
  }

  /**
   * Sends a gradient for `group` to `peer` (for its leader, or `share`d with every member); resolves
   * with its answer and the request's size in bytes, rejects with GradientSendError.
   */
  async sendGradient(
    peer: string,
    group: string,
    gradient: Gradient,
    share = false,
    responseBytesMax = 4096,
  ): Promise<{ response: GradResponse; bytes: number }> {
    const frame = GradRequest.encode({ group, gradient, stateRequest: false, share })
    const response = await this.request(peer, frame, responseBytesMax)
    this.stats.gradientBytesSent += frame.length
    return { response, bytes: frame.length }
  }

  /** Asks `peer` for a gradient of `group` by its digest (the answer carries it and its author). */
  async fetchGradient(
    peer: string,
    group: string,
    fetch: GradientFetch,
    responseBytesMax: number,
  ): Promise<GradResponse> {
    return this.request(
      peer,
      GradRequest.encode({ group, stateRequest: false, share: false, fetch }),
      responseBytesMax,
    )
  }

  /** Asks `peer` for its training state of `group`. */
  async requestState(peer: string, group: string, responseBytesMax: number): Promise<GradResponse> {
    return this.request(
      peer,
      GradRequest.encode({ group, stateRequest: true, share: false }),
      responseBytesMax,
    )
  }

  private async request(peer: string, frame: Uint8Array, responseBytesMax: number): Promise<GradResponse> {
    if (!this.started) throw new GradientSendError('the gradient exchange is not started')
    // one exchange at a time per peer: wait for the one in progress (it never rejects)
    for (let held = this.outbound.get(peer); held; held = this.outbound.get(peer)) {
      const busy = held.busy
      await busy
      if (this.outbound.get(peer)?.busy === busy) break
    }
    const exchange = this.exchange(peer, frame, responseBytesMax)
    const current = this.outbound.get(peer)
    if (current) current.busy = exchange.catch(() => {})
    return exchange
  }

  private async exchange(peer: string, frame: Uint8Array, responseBytesMax: number): Promise<GradResponse> {
    const signal = AbortSignal.timeout(this.timeoutMs)
    let held = this.outbound.get(peer)
    try {
      const reusable =
        held !== undefined &&
        held.stream.status === 'open' &&
        held.stream.writeStatus === 'writable' &&
        held.responseBytesMax >= responseBytesMax
      if (!reusable || !held) {
        if (held) {
          held.stream.abort(new Error('replaced'))
          this.streams.delete(held.stream)
          this.outbound.delete(peer)
        }
        const stream = await this.components.connectionManager.openStream(
          peerIdFromString(peer),
          this.protocol,
          {
            signal,
          },
        )
        this.streams.add(stream)
        held = {
          stream,
          framed: boundedLpStream(stream, responseBytesMax),
          responseBytesMax,
          busy: Promise.resolve(),
        }
        this.outbound.set(peer, held)
      }
      await held.framed.write(frame, { signal })
      const bytes = await held.framed.read({ signal })
      const response = GradResponse.decode(bytes)
      this.stats.requestsSent++
      return response
    } catch (error) {
      this.stats.sendFailures++
      if (held) {
        held.stream.abort(error as Error)
        this.streams.delete(held.stream)
        if (this.outbound.get(peer) === held) this.outbound.delete(peer)
      }
      throw new GradientSendError(`request to ${peer} failed: ${(error as Error).message}`)
    }
  }

  private refuse(reason: ExchangeRefusal, remote: string, detail: string): void {
    this.stats.refused[reason]++
    log('refused a %s request from %s: %s', reason, remote, detail)
  }

  /** Is `peer` a member of any group joined here: only members may open a stream at all. */
  private isKnown(peer: string): boolean {
    for (const handler of this.groups.values()) if (handler.isMember(peer)) return true
    return false
  }

  private async handleInbound(stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    // a stranger's stream is refused before a byte of it is read; a member holds a few streams at most
    if (!this.isKnown(remote)) {
      this.refuse('stranger', remote, 'not a member of any group here')
      stream.abort(new Error('not a member of any group here'))
      return
    }
    const open = this.inboundPerPeer.get(remote) ?? 0
    if (open >= this.streamsPerPeerMax) {
      this.refuse('too-many-streams', remote, `${open} streams open`)
      stream.abort(new Error('too many streams'))
      return
    }
    this.inboundPerPeer.set(remote, open + 1)
    this.streams.add(stream)
    try {
      // the read limit is the largest of the groups' this peer is a member of, at stream start; each
      // request is then checked against its own group's limit
      const requestBytesMax = this.requestBytesMaxFor(remote)
      const framed = boundedLpStream(stream, requestBytesMax)
      for (let first = true; this.started; first = false) {
        // the first request must come promptly; later ones may wait for the next step
        const readSignal = AbortSignal.timeout(first ? this.timeoutMs : this.idleTimeoutMs)
        let bytes: Awaited<ReturnType<typeof framed.read>>
        try {
          bytes = await framed.read({ signal: readSignal })
        } catch (error) {
          if (isOversizedFrameError(error)) {
            this.refuse('oversized', remote, `frame above ${requestBytesMax} bytes`)
          } else if (readSignal.aborted) {
            if (first) this.refuse('timeout', remote, 'no request before the deadline')
          } else if (error instanceof UnexpectedEOFError) {
            if (first) this.refuse('empty', remote, 'stream closed without a request')
          } else this.refuse('malformed', remote, (error as Error).message)
          stream.abort(error as Error)
          return
        }
        let request: GradRequest
        try {
          request = GradRequest.decode(bytes)
        } catch (error) {
          this.refuse('malformed', remote, (error as Error).message)
          stream.abort(error as Error)
          return
        }
        const handler = this.groups.get(request.group)
        if (!handler) {
          this.refuse('unknown-group', remote, request.group)
          stream.abort(new Error('unknown group'))
          return
        }
        if (!handler.isMember(remote)) {
          this.refuse('non-member', remote, request.group)
          stream.abort(new Error('not a member'))
          return
        }
        if (bytes.byteLength > handler.requestBytesMax) {
          this.refuse('oversized', remote, `${bytes.byteLength} bytes for group ${request.group}`)
          stream.abort(new Error('oversized'))
          return
        }
        this.stats.requestsReceived++
        let response: GradResponse
        if (request.gradient) {
          this.stats.gradientBytesReceived += bytes.byteLength
          response = await handler.onGradient(remote, request.gradient, request.share)
        } else if (request.fetch) {
          response = await handler.onFetch(remote, request.fetch)
        } else if (request.stateRequest) {
          response = await handler.onStateRequest(remote)
        } else {
          this.refuse('empty', remote, 'a request with neither gradient nor state request')
          stream.abort(new Error('empty request'))
          return
        }
        await framed.write(GradResponse.encode(response), { signal: AbortSignal.timeout(this.timeoutMs) })
      }
    } catch (error) {
      log('gradient stream from %s failed: %s', remote, (error as Error).message)
      stream.abort(error as Error)
    } finally {
      this.streams.delete(stream)
      const left = (this.inboundPerPeer.get(remote) ?? 1) - 1
      if (left > 0) this.inboundPerPeer.set(remote, left)
      else this.inboundPerPeer.delete(remote)
    }
  }
}

/** The js-libp2p service factory: `services: { gradients: gradientExchange() }`. */
export function gradientExchange(
  init: GradientExchangeInit = {},
): (components: GradientExchangeComponents) => GradientExchange {
  return (components) => new GradientExchange(components, init)
}
