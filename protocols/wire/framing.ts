// One bounded length-prefixed framing for every shardnet stream protocol (raft, grad, claim, infer,
// blocks), and the per-peer budgets of streams, bytes in flight and read time that go with it.
//
// Why not lpStream from @libp2p/utils: its maxDataLength check runs only once a varint prefix
// completes, so a peer that trickles 0xff bytes makes it buffer without end; and its byteStream reads
// eagerly (yamux grants window as soon as data is dispatched), buffering up to maxBufferSize per stream
// whatever the reader wants. The reader here refuses a prefix longer than the varint of the largest
// frame as soon as that many bytes are seen, pauses the stream (so yamux stops granting window) once
// one frame's worth is buffered, and charges every buffered byte to the peer's budget.
//
// API (all a protocol needs):
//
//   const budgets = new PeerBudgets({
//     known:    { streamsPerPeer: 8, bytesInFlightPerPeer: 64 << 20, readTimeoutMs: 60_000 },
//     stranger: { streamsPerPeer: 0, bytesInFlightPerPeer: 0, readTimeoutMs: 0 },   // refused outright
//     isKnown: (peer) => groups.some((g) => g.isMember(peer)),   // members, claim holders...
//   })
//   // in the protocol handler, BEFORE reading any byte:
//   const lease = budgets.acquire(connection.remotePeer)
//   if (lease === undefined) { stream.abort(new BudgetExceededError('...')); return }  // counted
//   try {
//     const lp = boundedLpStream(stream, FRAME_BYTES_MAX, { lease })
//     const frame = await lp.read()        // deadline lease.limits.readTimeoutMs, bytes charged
//     ...                                  // a bad frame: budgets.count('malformed')
//   } finally {
//     lease.release()                      // frees the stream slot and refunds every charged byte
//   }
//
// Refusals are counted in budgets.refused by reason: 'stranger' (a stranger refused a stream),
// 'streams' (a known peer over its stream budget), 'bytes' (a charge over the peer's or the total
// bytes budget: the stream is aborted), 'timeout' (a read past its deadline), 'oversized' (a frame or
// prefix over the protocol's limit) and 'malformed' (counted by the protocol with budgets.count).
// lease.charge/refund are for bytes a protocol keeps after a read (gradients held for aggregation).
import type { PeerId, Stream } from '@libp2p/interface'
import { InvalidDataLengthError, InvalidDataLengthLengthError, UnexpectedEOFError } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'

/** A length prefix longer than the varint of the largest allowed frame, or a frame over that size. */
export class FrameLengthError extends Error {
  static override name = 'FrameLengthError'
  override name = 'FrameLengthError'
}

/** A stream or byte charge over a peer's (or the node's total) budget. */
export class BudgetExceededError extends Error {
  static override name = 'BudgetExceededError'
  override name = 'BudgetExceededError'
}

/** A frame did not arrive (completely) within its read deadline. */
export class FrameTimeoutError extends Error {
  static override name = 'FrameTimeoutError'
  override name = 'FrameTimeoutError'
}

/** Why a peer was refused; the keys of PeerBudgets.refused. */
export type BudgetRefusal = 'stranger' | 'streams' | 'bytes' | 'timeout' | 'oversized' | 'malformed'

/** One class of peer's limits. */
export interface PeerLimits {
  /** Streams open at once per peer (0: every stream refused before any byte is read). */
  streamsPerPeer: number
  /** Bytes buffered, being decoded or held for a peer over all its streams. */
  bytesInFlightPerPeer: number
  /** Deadline of each frame read (prefix and payload together); 0 for none. */
  readTimeoutMs: number
}

export interface PeerBudgetsInit {
  /** Limits of peers for which isKnown is true (group members, claim holders, assigned workers). */
  known: PeerLimits
  /** Limits of every other peer: stricter. */
  stranger: PeerLimits
  /** Asked once per acquire; a stream keeps the class it started with. */
  isKnown: (peer: string) => boolean
  /** Streams open at once over all strangers together. @default Infinity */
  strangerStreamsMax?: number
  /** Bytes in flight over all peers together. @default Infinity */
  bytesInFlightMax?: number
}

interface PeerUsage {
  streams: number
  bytes: number
}

/** Per-peer budgets of streams, bytes in flight and read time, stricter for strangers. */
export class PeerBudgets {
  /** Refusals by reason since construction. */
  readonly refused: Record<BudgetRefusal, number> = {
    stranger: 0,
    streams: 0,
    bytes: 0,
    timeout: 0,
    oversized: 0,
    malformed: 0,
  }
  private readonly init: PeerBudgetsInit
  private readonly usage = new Map<string, PeerUsage>()
  private strangerStreams = 0
  private totalBytes = 0

  constructor(init: PeerBudgetsInit) {
    this.init = init
  }

  /** The limits that apply to `peer` now. */
  limitsFor(peer: PeerId | string): PeerLimits {
    return this.init.isKnown(peer.toString()) ? this.init.known : this.init.stranger
  }

  /** A stream slot for `peer`, or undefined (counted) when the peer is over its stream budget. */
  acquire(peer: PeerId | string): BudgetLease | undefined {
    const id = peer.toString()
    const known = this.init.isKnown(id)
    const limits = known ? this.init.known : this.init.stranger
    const usage = this.usage.get(id) ?? { streams: 0, bytes: 0 }
    const overTotal = !known && this.strangerStreams >= (this.init.strangerStreamsMax ?? Number.POSITIVE_INFINITY)
    if (usage.streams >= limits.streamsPerPeer || overTotal) {
      this.count(known ? 'streams' : 'stranger')
      return undefined
    }
    usage.streams++
    this.usage.set(id, usage)
    if (!known) this.strangerStreams++
    return new BudgetLease(this, id, known, limits)
  }

  /** Counts one refusal (protocols count their 'malformed' frames here). */
  count(reason: BudgetRefusal): void {
    this.refused[reason]++
  }

  /** Streams and bytes in flight of `peer` now. */
  peerUsage(peer: PeerId | string): Readonly<PeerUsage> {
    return { ...(this.usage.get(peer.toString()) ?? { streams: 0, bytes: 0 }) }
  }

  /** Bytes in flight over all peers. */
  get bytesInFlight(): number {
    return this.totalBytes
  }

  /** Streams open over all peers. */
  get streams(): number {
    let n = 0
    for (const usage of this.usage.values()) n += usage.streams
    return n
  }

  /** @internal */
  chargePeer(peer: string, limits: PeerLimits, bytes: number): boolean {
    const usage = this.usage.get(peer)
    if (
      usage === undefined ||
      usage.bytes + bytes > limits.bytesInFlightPerPeer ||
      this.totalBytes + bytes > (this.init.bytesInFlightMax ?? Number.POSITIVE_INFINITY)
    ) {
      this.count('bytes')
      return false
    }
    usage.bytes += bytes
    this.totalBytes += bytes
    return true
  }

  /** @internal */
  refundPeer(peer: string, bytes: number): void {
    const usage = this.usage.get(peer)
    if (usage === undefined) return
    usage.bytes -= bytes
    this.totalBytes -= bytes
  }

  /** @internal */
  releasePeer(peer: string, known: boolean): void {
    const usage = this.usage.get(peer)
    if (usage === undefined) return
    usage.streams--
    if (!known) this.strangerStreams--
    if (usage.streams <= 0 && usage.bytes <= 0) this.usage.delete(peer)
  }
}

/** One stream's slot in its peer's budget; release() exactly once when the stream is done. */
export class BudgetLease {
  readonly peer: string
  /** Whether the peer was known when the stream started. */
  readonly known: boolean
  readonly limits: PeerLimits
  private readonly budgets: PeerBudgets
  private charged = 0
  private released = false

  /** @internal use PeerBudgets.acquire */
  constructor(budgets: PeerBudgets, peer: string, known: boolean, limits: PeerLimits) {
    this.budgets = budgets
    this.peer = peer
    this.known = known
    this.limits = limits
  }

  /** Bytes charged to this lease and not refunded yet. */
  get bytes(): number {
    return this.charged
  }

  /** Charges `bytes` to the peer; false (counted 'bytes') when over its budget or after release. */
  charge(bytes: number): boolean {
    if (this.released) return false
    if (!this.budgets.chargePeer(this.peer, this.limits, bytes)) return false
    this.charged += bytes
    return true
  }

  /** Gives back up to `bytes` charged to this lease. */
  refund(bytes: number): void {
    const n = Math.min(bytes, this.charged)
    if (n <= 0) return
    this.charged -= n
    this.budgets.refundPeer(this.peer, n)
  }

  /** Counts one refusal of this peer's stream. */
  count(reason: BudgetRefusal): void {
    this.budgets.count(reason)
  }

  /** Refunds every charged byte and frees the stream slot; later calls do nothing. */
  release(): void {
    if (this.released) return
    this.refund(this.charged)
    this.released = true
    this.budgets.releasePeer(this.peer, this.known)
  }
}

/** Bytes of the unsigned varint of `value`. */
export function varintBytes(value: number): number {
  let bytes = 1
  for (let n = value; n >= 0x80; n = Math.floor(n / 128)) bytes++
  return bytes
}

/**
 * The varint length decoder for lpStream, refusing a prefix longer than `maxBytes` as soon as it is
 * seen. Throws RangeError while incomplete, as lpStream expects.
 */
export function boundedLengthDecoder(maxBytes: number) {
  const decode = (buf: Uint8ArrayList | Uint8Array): number => {
    let value = 0
    let scale = 1
    for (let i = 0; i < buf.byteLength; i++) {
      if (i >= maxBytes) throw new FrameLengthError(`frame length prefix over ${maxBytes} bytes`)
      const byte = buf instanceof Uint8Array ? buf[i] : buf.get(i)
      value += (byte & 0x7f) * scale
      if ((byte & 0x80) === 0) return value
      scale *= 128
    }
    if (buf.byteLength >= maxBytes) throw new FrameLengthError(`frame length prefix over ${maxBytes} bytes`)
    throw new RangeError('incomplete varint')
  }
  decode.bytes = 0
  return decode
}

export interface BoundedLpOptions {
  /** The stream's budget: every buffered byte and the last frame read are charged to it. */
  lease?: BudgetLease
  /** Deadline of each read in ms (0: none). @default lease.limits.readTimeoutMs, else 0 */
  readTimeoutMs?: number
  /**
   * Unread bytes at which the stream is paused (yamux then stops granting window, so the sender
   * waits). At least one largest frame. @default maxDataLength + its prefix
   */
  bufferBytesMax?: number
}

export interface ReadOptions {
  signal?: AbortSignal
}

/** A length-prefixed view of a stream; the lpStream interface from @libp2p/utils. */
export interface BoundedLpStream {
  /**
   * The next frame. Throws FrameLengthError (oversized), FrameTimeoutError, BudgetExceededError,
   * UnexpectedEOFError (the stream ended, also cleanly between frames) or the stream's error.
   */
  read(options?: ReadOptions): Promise<Uint8ArrayList>
  write(data: Uint8Array | Uint8ArrayList, options?: ReadOptions): Promise<void>
  writeV(data: Array<Uint8Array | Uint8ArrayList>, options?: ReadOptions): Promise<void>
  /** Stops reading (refunding what was charged) and returns the stream with unread bytes unshifted. */
  unwrap(): Stream
}

/** A bounded length-prefixed reader and writer over `stream`: frames up to `maxDataLength` bytes. */
export function boundedLpStream(
  stream: Stream,
  maxDataLength: number,
  options: BoundedLpOptions = {},
): BoundedLpStream {
  return new BoundedReader(stream, maxDataLength, options)
}

class BoundedReader implements BoundedLpStream {
  private readonly stream: Stream
  private readonly maxDataLength: number
  private readonly maxPrefixBytes: number
  private readonly lease: BudgetLease | undefined
  private readonly readTimeoutMs: number
  private readonly bufferBytesMax: number
  private readonly buffer = new Uint8ArrayList()
  /** Bytes of the last frame returned, still charged until the next read. */
  private frameCharge = 0
  private failure: Error | undefined
  private ended = false
  private unwrapped = false
  private detached = false
  private paused = false
  private wake: (() => void) | undefined

  constructor(stream: Stream, maxDataLength: number, options: BoundedLpOptions) {
    this.stream = stream
    this.maxDataLength = maxDataLength
    this.maxPrefixBytes = varintBytes(maxDataLength)
    this.lease = options.lease
    this.readTimeoutMs = options.readTimeoutMs ?? options.lease?.limits.readTimeoutMs ?? 0
    this.bufferBytesMax = Math.max(
      options.bufferBytesMax ?? 0,
      maxDataLength + this.maxPrefixBytes,
    )
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('close', this.onClose)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    if (stream.status !== 'open' || stream.remoteWriteStatus !== 'writable') this.ended = true
  }

  /** No more bytes will arrive (bytes the stream holds while paused or undispatched still will). */
  private atEnd(): boolean {
    return this.ended && this.stream.readBufferLength === 0
  }

  private readonly onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    if (this.failure !== undefined || this.unwrapped) return
    const n = evt.data.byteLength
    if (this.lease !== undefined && !this.lease.charge(n)) {
      this.fail(new BudgetExceededError(`${this.lease.peer} is over its budget of bytes in flight`))
      queueMicrotask(() => this.stream.abort(this.failure!))
      return
    }
    this.buffer.append(evt.data)
    if (this.buffer.byteLength >= this.bufferBytesMax && !this.paused) {
      try {
        this.stream.pause()
        this.paused = true
      } catch {
        // closing: nothing more arrives anyway
      }
    }
    this.notify()
  }

  private readonly onClose = (evt: Event): void => {
    const error = (evt as Event & { error?: Error }).error
    if (error != null) this.fail(error)
    this.ended = true
    this.detach()
    this.notify()
  }

  private readonly onRemoteCloseWrite = (): void => {
    this.ended = true
    this.notify()
  }

  private fail(error: Error): void {
    if (this.failure === undefined) this.failure = error
    this.notify()
  }

  private notify(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  /** Removes the listeners and refunds everything charged (buffered bytes and the last frame). */
  private detach(): void {
    if (this.detached) return
    this.detached = true
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onClose)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.lease?.refund(this.buffer.byteLength + this.frameCharge)
    this.frameCharge = 0
  }

  private resumeIfRoom(): void {
    if (!this.paused || this.buffer.byteLength >= this.bufferBytesMax) return
    this.paused = false
    try {
      this.stream.resume()
    } catch {
      // closing
    }
  }

  /** Waits until more bytes arrive, the stream ends or fails, or the read's deadline passes. */
  private async more(signal: AbortSignal | undefined): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    if (this.atEnd()) throw new UnexpectedEOFError('the stream ended inside a frame or before one')
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.wake = undefined
        reject(signal?.reason)
      }
      if (signal?.aborted) {
        onAbort()
        return
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.wake = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
    })
  }

  /** Decodes a complete prefix: [length, prefix bytes], or undefined while incomplete. */
  private prefix(): [number, number] | undefined {
    let value = 0
    let scale = 1
    const available = Math.min(this.buffer.byteLength, this.maxPrefixBytes)
    for (let i = 0; i < available; i++) {
      const byte = this.buffer.get(i)
      value += (byte & 0x7f) * scale
      if ((byte & 0x80) === 0) return [value, i + 1]
      scale *= 128
    }
    if (this.buffer.byteLength >= this.maxPrefixBytes) {
      throw new FrameLengthError(`frame length prefix over ${this.maxPrefixBytes} bytes`)
    }
    return undefined
  }

  async read(options: ReadOptions = {}): Promise<Uint8ArrayList> {
    if (this.unwrapped) throw new Error('the bounded stream was unwrapped')
    this.lease?.refund(this.frameCharge)
    this.frameCharge = 0
    const timeout = this.readTimeoutMs > 0 ? AbortSignal.timeout(this.readTimeoutMs) : undefined
    const signal =
      timeout !== undefined && options.signal !== undefined
        ? AbortSignal.any([timeout, options.signal])
        : (timeout ?? options.signal)
    try {
      let header = this.prefix()
      while (header === undefined) {
        await this.more(signal)
        header = this.prefix()
      }
      const [length, prefixBytes] = header
      if (length > this.maxDataLength) {
        throw new FrameLengthError(`frame of ${length} bytes over ${this.maxDataLength}`)
      }
      while (this.buffer.byteLength < prefixBytes + length) await this.more(signal)
      const frame = this.buffer.sublist(prefixBytes, prefixBytes + length)
      this.buffer.consume(prefixBytes + length)
      if (!this.detached) this.frameCharge = prefixBytes + length
      this.resumeIfRoom()
      return frame
    } catch (error) {
      if (error instanceof FrameLengthError) {
        this.lease?.count('oversized')
        throw error
      }
      if (timeout?.aborted && error === timeout.reason) {
        this.lease?.count('timeout')
        throw new FrameTimeoutError(`no complete frame within ${this.readTimeoutMs} ms`)
      }
      throw error
    }
  }

  async write(data: Uint8Array | Uint8ArrayList, options: ReadOptions = {}): Promise<void> {
    await this.send(new Uint8ArrayList(lengthPrefix(data.byteLength), data), options.signal)
  }

  async writeV(data: Array<Uint8Array | Uint8ArrayList>, options: ReadOptions = {}): Promise<void> {
    const list = new Uint8ArrayList()
    for (const item of data) list.append(lengthPrefix(item.byteLength), item)
    await this.send(list, options.signal)
  }

  private async send(list: Uint8ArrayList, signal: AbortSignal | undefined): Promise<void> {
    if (this.stream.send(list)) return
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        this.stream.removeEventListener('drain', onDrain)
        this.stream.removeEventListener('close', onClosed)
        signal?.removeEventListener('abort', onAbort)
      }
      const onDrain = () => {
        cleanup()
        resolve()
      }
      const onClosed = (evt: Event) => {
        cleanup()
        reject((evt as Event & { error?: Error }).error ?? new Error('the stream closed while writing'))
      }
      const onAbort = () => {
        cleanup()
        reject(signal?.reason)
      }
      if (signal?.aborted) {
        onAbort()
        return
      }
      this.stream.addEventListener('drain', onDrain)
      this.stream.addEventListener('close', onClosed)
      signal?.addEventListener('abort', onAbort)
    })
  }

  unwrap(): Stream {
    if (this.unwrapped) return this.stream
    this.unwrapped = true
    this.detach()
    if (this.buffer.byteLength > 0) this.stream.unshift(this.buffer)
    if (this.paused) {
      this.paused = false
      try {
        this.stream.resume()
      } catch {
        // closing
      }
    }
    return this.stream
  }
}

function lengthPrefix(n: number): Uint8Array {
  const prefix = new Uint8Array(varintBytes(n))
  let i = 0
  while (n >= 0x80) {
    prefix[i++] = (n & 0x7f) | 0x80
    n = Math.floor(n / 128)
  }
  prefix[i] = n
  return prefix
}

/** One unsigned-varint length-prefixed frame. */
export function lengthPrefixed(bytes: Uint8Array): Uint8Array {
  const frame = new Uint8Array(varintBytes(bytes.byteLength) + bytes.byteLength)
  frame.set(lengthPrefix(bytes.byteLength))
  frame.set(bytes, frame.byteLength - bytes.byteLength)
  return frame
}

/** The frame (or its prefix) was over the protocol's limit: count it as 'oversized' and drop the stream. */
export function isOversizedFrameError(err: unknown): boolean {
  return (
    err instanceof InvalidDataLengthError ||
    err instanceof InvalidDataLengthLengthError ||
    err instanceof FrameLengthError
  )
}
