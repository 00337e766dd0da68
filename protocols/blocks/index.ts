/**
 * Content-addressed block exchange over `/shardnet/blocks/1.0.0`.
 *
 * API (a libp2p service):
 * ```ts
 * const node = await createLibp2p({ services: { blocks: blockExchange({ store: myDurableStore }) } })
 * const cid = await node.services.blocks.put(bytes)               // CIDv1 raw sha2-256; provided in the DHT
 * const same = await node.services.blocks.get(cid, { signal })    // local, else from a provider, verified
 * await node.services.blocks.get(cid, { peers: [peerId] })        // ask these peers instead of the DHT
 * node.services.blocks.counters() // { served, fetched, bytesSent, bytesReceived, rejected: { reason: n } }
 * ```
 * Wire: the requester sends one length-prefixed BlockRequest {cid, offset}; the responder answers with a
 * BlockResponse {status, size, chunkBytes} then, when OK, for each chunk in order a BlockChunk frame
 * {index, offset, length} followed by a raw frame of `length` data bytes, and closes. The requester checks
 * every frame against what it expects next (response-reader.ts), assembles and hashes the block as it
 * arrives (hasher.ts: on a worker thread from 4 MiB up), and accepts it only if the sha2-256 matches the
 * CID; a peer that sent other bytes is counted (`rejected['hash-mismatch']`) and the next provider is tried.
 * get() into a store with a writer (the durable FileBlockStore) writes the block to disk while it arrives
 * and resolves once it is verified, fsynced and renamed into place.
 * Limits: blocks up to blockBytesMax (256 MiB by default), chunks up to 1 MiB, request frames 256 bytes,
 * response and chunk header frames 64 bytes, and a deadline on every stream (serveTimeoutMs /
 * fetchTimeoutMs).
 * The service reaches the DHT through `components.contentRouting` (provide / findProviders).
 */
import {
  type AbortOptions,
  type ComponentLogger,
  type Connection,
  type ContentRouting,
  type Logger,
  type Metrics,
  type PeerId,
  type Startable,
  type Stream,
  serviceCapabilities,
  setMaxListeners,
} from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { BlockChunk, BlockRequest, BlockResponse } from '../wire/blocks.js'
import { boundedLpStream, isOversizedFrameError, lengthPrefixed } from '../wire/framing.js'
import {
  BLOCK_BYTES_MAX,
  BLOCK_CHUNK_BYTES_MAX,
  BLOCK_FRAME_REJECT_REASONS,
  BLOCK_REQUEST_BYTES_MAX,
  cidFromBytes,
  decodeBlockRequest,
  decodeBlockResponse,
  validateBlockRequest,
  validateBlockResponse,
} from '../wire/validation/index.js'
import { type AssembledBlock, type BlockAssembly, HashWorker, InlineAssembly } from './hasher.js'
import { type ChunkPlan, ResponseFrameError, readBlockResponse } from './response-reader.js'
import { type BlockStore, BlockStoreWriteError, type BlockWriter, MemoryBlockStore } from './store.js'

export * from './store.js'

export const BLOCKS_PROTOCOL = '/shardnet/blocks/1.0.0'

export const BLOCK_REJECT_REASONS = [
  ...BLOCK_FRAME_REJECT_REASONS,
  'hash-mismatch',
  'not-found',
  'stream-error',
] as const
export type BlockRejectReason = (typeof BLOCK_REJECT_REASONS)[number]

/** Deadline for serving one request (reading it, sending the whole block). */
export const SERVE_TIMEOUT_MS_DEFAULT = 120_000
/** Deadline for fetching one block from one peer. */
export const FETCH_TIMEOUT_MS_DEFAULT = 120_000
/** Deadline for finding a block's providers in the DHT. */
export const FIND_PROVIDERS_TIMEOUT_MS_DEFAULT = 30_000
/** Providers tried per get() before giving up. */
export const PROVIDERS_MAX_DEFAULT = 8
/** Blocks at least this large are assembled and verified on a worker thread. */
export const HASH_IN_WORKER_BYTES_MIN_DEFAULT = 4 * 1024 * 1024
/** Concurrent block streams per connection, each way. */
export const BLOCK_STREAMS_MAX_DEFAULT = 8

export interface BlockExchangeInit {
  /**
   * Where blocks live.
   * @default new MemoryBlockStore()
   */
  store?: BlockStore
  /**
   * The protocol id.
   * @default '/shardnet/blocks/1.0.0'
   */
  protocol?: string
  /**
   * Bytes per chunk this node sends (at most 1 MiB).
   * @default 1_048_576
   */
  chunkBytes?: number
  /**
   * Largest block this node serves or fetches.
   * @default 268_435_456 (256 MiB)
   */
  blockBytesMax?: number
  /**
   * Deadline for serving one request (reading it, sending the whole block), in ms.
   * @default SERVE_TIMEOUT_MS_DEFAULT
   */
  serveTimeoutMs?: number
  /**
   * Deadline for fetching one block from one peer, in ms.
   * @default FETCH_TIMEOUT_MS_DEFAULT
   */
  fetchTimeoutMs?: number
  /**
   * Deadline for finding providers in the DHT, in ms.
   * @default FIND_PROVIDERS_TIMEOUT_MS_DEFAULT
   */
  findProvidersTimeoutMs?: number
  /**
   * Providers tried per get() before giving up.
   * @default PROVIDERS_MAX_DEFAULT
   */
  providersMax?: number
  /**
   * Whether put() provides the block in the DHT by default.
   * @default true
   */
  provideOnPut?: boolean
  /**
   * Blocks at least this large are assembled and verified on a worker thread, beside the network work (see
   * hasher.ts); smaller ones inline. `Infinity` keeps all of it on the event loop.
   * @default HASH_IN_WORKER_BYTES_MIN_DEFAULT
   */
  hashInWorkerBytesMin?: number
  /**
   * Concurrent inbound block streams per connection.
   * @default BLOCK_STREAMS_MAX_DEFAULT
   */
  maxInboundStreams?: number
  /**
   * Concurrent outbound block streams per connection.
   * @default BLOCK_STREAMS_MAX_DEFAULT
   */
  maxOutboundStreams?: number
}

export interface BlockExchangeComponents {
  peerId: PeerId
  registrar: Registrar
  connectionManager: ConnectionManager
  contentRouting: ContentRouting
  logger: ComponentLogger
  metrics?: Metrics
}

export interface PutOptions extends AbortOptions {
  /**
   * provide the block in the DHT (awaited; if that fails put() throws, and the block stays stored)
   * @default BlockExchangeInit.provideOnPut
   */
  provide?: boolean
}

export interface GetOptions extends AbortOptions {
  /** ask these peers, in order, instead of looking providers up in the DHT */
  peers?: PeerId[]
}

export interface BlockExchangeCounters {
  served: number
  fetched: number
  bytesSent: number
  bytesReceived: number
  rejected: Record<BlockRejectReason, number>
}

export interface BlockExchange extends Startable {
  readonly store: BlockStore
  /** Stores bytes as a raw block and returns its CIDv1 (sha2-256); provides it unless told not to. */
  put(bytes: Uint8Array, options?: PutOptions): Promise<CID>
  /** The block, from the store or else from a peer; always verified against the CID. */
  get(cid: CID, options?: GetOptions): Promise<Uint8Array>
  /** Fetches from one given peer (no store lookup, no DHT); verified. Throws a named error. */
  fetchFrom(peer: PeerId, cid: CID, options?: AbortOptions): Promise<Uint8Array>
  counters(): BlockExchangeCounters
}

/** No peer we could reach had the block (or every one that answered lied or failed). */
export class BlockNotFoundError extends Error {
  static override name = 'BlockNotFoundError'
  override name = 'BlockNotFoundError'
}

/** A peer sent bytes whose hash does not match the CID it was asked for. */
export class BlockHashMismatchError extends Error {
  static override name = 'BlockHashMismatchError'
  override name = 'BlockHashMismatchError'
}

/** A block is larger than blockBytesMax (this node's or the peer's). */
export class BlockTooLargeError extends Error {
  static override name = 'BlockTooLargeError'
  override name = 'BlockTooLargeError'
}

/** A peer broke the protocol (bad frame, out-of-order chunk, early end). */
export class BlockProtocolError extends Error {
  static override name = 'BlockProtocolError'
  override name = 'BlockProtocolError'
  constructor(readonly reason: BlockRejectReason) {
    super(`block protocol violation: ${reason}`)
  }
}

/** The CID is not a sha2-256 CIDv1, so we could never verify what we received. */
export class UnsupportedCidError extends Error {
  static override name = 'UnsupportedCidError'
  override name = 'UnsupportedCidError'
}

/** A frame's length prefix is longer than any allowed frame needs: the peer is sending garbage. */

/** One signal for several deadlines; libp2p hangs many listeners on it, hence no listener limit. */
function signalOf(...signals: Array<AbortSignal | undefined>): AbortSignal {
  const signal = AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined))
  setMaxListeners(Number.POSITIVE_INFINITY, signal)
  return signal
}

class DefaultBlockExchange implements BlockExchange {
  readonly [Symbol.toStringTag] = 'shardnet:blocks'
  readonly [serviceCapabilities] = ['shardnet:blocks']
  readonly store: BlockStore

  private readonly components: BlockExchangeComponents
  private readonly log: Logger
  private readonly protocol: string
  private readonly chunkBytes: number
  private readonly blockBytesMax: number
  private readonly serveTimeoutMs: number
  private readonly fetchTimeoutMs: number
  private readonly findProvidersTimeoutMs: number
  private readonly providersMax: number
  private readonly provideOnPut: boolean
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly hashInWorkerBytesMin: number
  private readonly hashWorker = new HashWorker()
  private readonly stats: BlockExchangeCounters
  private shutdown = new AbortController()
  private started = false

  constructor(components: BlockExchangeComponents, init: BlockExchangeInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shardnet:blocks')
    this.store = init.store ?? new MemoryBlockStore()
    this.protocol = init.protocol ?? BLOCKS_PROTOCOL
    this.chunkBytes = Math.min(init.chunkBytes ?? BLOCK_CHUNK_BYTES_MAX, BLOCK_CHUNK_BYTES_MAX)
    this.blockBytesMax = Math.min(init.blockBytesMax ?? BLOCK_BYTES_MAX, BLOCK_BYTES_MAX)
    this.serveTimeoutMs = init.serveTimeoutMs ?? SERVE_TIMEOUT_MS_DEFAULT
    this.fetchTimeoutMs = init.fetchTimeoutMs ?? FETCH_TIMEOUT_MS_DEFAULT
    this.findProvidersTimeoutMs = init.findProvidersTimeoutMs ?? FIND_PROVIDERS_TIMEOUT_MS_DEFAULT
    this.providersMax = init.providersMax ?? PROVIDERS_MAX_DEFAULT
    this.provideOnPut = init.provideOnPut ?? true
    this.maxInboundStreams = init.maxInboundStreams ?? BLOCK_STREAMS_MAX_DEFAULT
    this.maxOutboundStreams = init.maxOutboundStreams ?? BLOCK_STREAMS_MAX_DEFAULT
    this.hashInWorkerBytesMin = init.hashInWorkerBytesMin ?? HASH_IN_WORKER_BYTES_MIN_DEFAULT
    if (this.chunkBytes < 1) throw new RangeError('chunkBytes must be at least 1')
    const rejected = Object.fromEntries(
      BLOCK_REJECT_REASONS.map((r) => [r, 0]),
    ) as BlockExchangeCounters['rejected']
    this.stats = { served: 0, fetched: 0, bytesSent: 0, bytesReceived: 0, rejected }
    components.metrics?.registerCounterGroup('shardnet_blocks_rejected_total', {
      label: 'reason',
      help: 'Block requests and responses refused, by reason (hash-mismatch = a lying peer)',
      calculate: () => ({ ...this.stats.rejected }),
    })
    components.metrics?.registerCounterGroup('shardnet_blocks_bytes_total', {
      label: 'direction',
      help: 'Block bytes sent and received',
      calculate: () => ({ sent: this.stats.bytesSent, received: this.stats.bytesReceived }),
    })
    this.handle = this.handle.bind(this)
  }

  isStarted(): boolean {
    return this.started
  }

  async start(): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, this.handle, {
      maxInboundStreams: this.maxInboundStreams,
      maxOutboundStreams: this.maxOutboundStreams,
    })
    this.started = true
  }

  async stop(): Promise<void> {
    await this.components.registrar.unhandle(this.protocol)
    this.shutdown.abort()
    await this.hashWorker.close()
    this.started = false
  }

  counters(): BlockExchangeCounters {
    return { ...this.stats, rejected: { ...this.stats.rejected } }
  }

  private count(reason: BlockRejectReason): void {
    this.stats.rejected[reason]++
  }

  // ---------------------------------------------------------------------------------------------------
  // serving

  private async handle(stream: Stream, connection: Connection): Promise<void> {
    const signal = signalOf(AbortSignal.timeout(this.serveTimeoutMs), this.shutdown.signal)
    const onAbort = () => stream.abort(new Error('block request deadline passed'))
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await this.serve(stream, signal)
      await stream.close({ signal })
    } catch (err) {
      this.log('serving %p failed - %e', connection.remotePeer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  private async serve(stream: Stream, signal: AbortSignal): Promise<void> {
    const lp = boundedLpStream(stream, BLOCK_REQUEST_BYTES_MAX)
    let frame: Awaited<ReturnType<typeof lp.read>>
    try {
      frame = await lp.read({ signal })
    } catch (err) {
      if (isOversizedFrameError(err)) {
        this.count('oversized')
      } else {
        this.count('stream-error')
      }
      throw err
    }
    const decoded = decodeBlockRequest(frame)
    const reason = decoded.ok ? validateBlockRequest(decoded.value) : decoded.reason
    if (!decoded.ok || reason !== undefined) {
      this.count(reason ?? 'malformed')
      await lp.write(
        BlockResponse.encode({ status: BlockResponse.Status.BAD_REQUEST, size: 0, chunkBytes: 0 }),
        {
          signal,
        },
      )
      return
    }
    const cid = cidFromBytes(decoded.value.cid)!
    const block = await this.store.get(cid)
    if (block === undefined) {
      await lp.write(
        BlockResponse.encode({ status: BlockResponse.Status.NOT_FOUND, size: 0, chunkBytes: 0 }),
        {
          signal,
        },
      )
      return
    }
    if (block.byteLength > this.blockBytesMax) {
      await lp.write(
        BlockResponse.encode({
          status: BlockResponse.Status.TOO_LARGE,
          size: block.byteLength,
          chunkBytes: 0,
        }),
        { signal },
      )
      return
    }
    const start = Math.min(decoded.value.offset, block.byteLength)
    await lp.write(
      BlockResponse.encode({
        status: BlockResponse.Status.OK,
        size: block.byteLength,
        chunkBytes: this.chunkBytes,
      }),
      { signal },
    )
    let index = 0
    for (let offset = start; offset < block.byteLength; offset += this.chunkBytes) {
      const data = block.subarray(offset, Math.min(offset + this.chunkBytes, block.byteLength))
      // header and data leave in one write, and the data is never copied into a protobuf
      await lp.writeV([BlockChunk.encode({ index, offset, length: data.byteLength }), data], { signal })
      this.stats.bytesSent += data.byteLength
      index++
    }
    this.stats.served++
  }

  // ---------------------------------------------------------------------------------------------------
  // fetching

  async put(bytes: Uint8Array, options: PutOptions = {}): Promise<CID> {
    if (bytes.byteLength > this.blockBytesMax) {
      throw new BlockTooLargeError(`block of ${bytes.byteLength} bytes exceeds ${this.blockBytesMax}`)
    }
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    await this.store.put(cid, bytes)
    if (options.provide ?? this.provideOnPut) {
      await this.components.contentRouting.provide(cid, {
        signal: signalOf(
          AbortSignal.timeout(this.findProvidersTimeoutMs),
          this.shutdown.signal,
          options.signal,
        ),
      })
    }
    return cid
  }

  async get(cid: CID, options: GetOptions = {}): Promise<Uint8Array> {
    if (cidFromBytes(cid.bytes) === undefined) throw new UnsupportedCidError(`${cid} is not a sha2-256 CIDv1`)
    const local = await this.store.get(cid)
    if (local !== undefined) return local
    const signal = signalOf(this.shutdown.signal, options.signal)
    const tried = new Set<string>()
    const errors: unknown[] = []
    // a durable store writes the block while it arrives (each provider tried gets a fresh writer); the
    // writer of the fetch that delivered a verified block is committed at the end
    let delivered: BlockWriter | undefined
    const tryPeer = async (peer: PeerId): Promise<Uint8Array | undefined> => {
      if (tried.has(peer.toString())) return undefined
      tried.add(peer.toString())
      const writer = this.store.writer?.(cid)
      try {
        const block = await this.fetchOne(peer, cid, signal, writer)
        delivered = writer
        return block
      } catch (err) {
        await writer?.abort()
        // our own disk failed: another provider would not help
        if (err instanceof BlockStoreWriteError) throw err
        errors.push(err)
        if (signal.aborted) throw err
        this.log('fetching %c from %p failed - %e', cid, peer, err)
        return undefined
      }
    }
    let block: Uint8Array | undefined
    try {
      if (options.peers !== undefined) {
        for (const peer of options.peers.slice(0, this.providersMax)) {
          block = await tryPeer(peer)
          if (block !== undefined) break
        }
      } else {
        const lookup = new AbortController()
        try {
          const providers = this.components.contentRouting.findProviders(cid, {
            signal: signalOf(lookup.signal, signal, AbortSignal.timeout(this.findProvidersTimeoutMs)),
          })
          for await (const provider of providers) {
            if (tried.size >= this.providersMax) break
            if (provider.id.equals(this.components.peerId)) continue
            block = await tryPeer(provider.id)
            if (block !== undefined) break
          }
        } catch (err) {
          if (signal.aborted || err instanceof BlockStoreWriteError) throw err
          errors.push(err)
        } finally {
          lookup.abort()
        }
      }
    } catch (err) {
      await delivered?.abort()
      throw err
    }
    if (block === undefined) {
      throw new BlockNotFoundError(`no peer delivered ${cid} (${tried.size} tried, ${errors.length} errors)`)
    }
    // verified: store it
    if (delivered !== undefined) await delivered.commit()
    else await this.store.put(cid, block)
    return block
  }

  async fetchFrom(peer: PeerId, cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    if (cidFromBytes(cid.bytes) === undefined) throw new UnsupportedCidError(`${cid} is not a sha2-256 CIDv1`)
    return this.fetchOne(peer, cid, signalOf(this.shutdown.signal, options.signal))
  }

  /** One verified fetch from one peer, under its own deadline; each chunk also goes to `writer` if given. */
  private async fetchOne(
    peer: PeerId,
    cid: CID,
    callerSignal: AbortSignal,
    writer?: BlockWriter,
  ): Promise<Uint8Array> {
    const signal = signalOf(AbortSignal.timeout(this.fetchTimeoutMs), callerSignal)
    const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
    const onAbort = () => stream.abort(new Error('block fetch deadline passed'))
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      const block = await this.receive(stream, cid, signal, writer)
      await stream.close({ signal })
      this.stats.fetched++
      return block
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  private fail(reason: BlockRejectReason): never {
    this.count(reason)
    throw new BlockProtocolError(reason)
  }

  private async receive(
    stream: Stream,
    cid: CID,
    signal: AbortSignal,
    writer: BlockWriter | undefined,
  ): Promise<Uint8Array> {
    let assembly: BlockAssembly | undefined
    const onResponse = (frame: Uint8Array): ChunkPlan | undefined => {
      const header = decodeBlockResponse(frame)
      if (!header.ok) this.fail(header.reason)
      const headerReason = validateBlockResponse(header.value, this.blockBytesMax)
      if (headerReason === 'too-large') {
        this.count('too-large')
        throw new BlockTooLargeError(`${cid} is ${header.value.size} bytes, over ${this.blockBytesMax}`)
      }
      if (headerReason !== undefined) this.fail(headerReason)
      switch (header.value.status) {
        case BlockResponse.Status.OK:
          break
        case BlockResponse.Status.NOT_FOUND:
          this.count('not-found')
          throw new BlockNotFoundError(`peer does not have ${cid}`)
        case BlockResponse.Status.TOO_LARGE:
          throw new BlockTooLargeError(`peer refuses to send ${cid}: too large`)
        default:
          this.fail('bad-status')
      }
      const { size, chunkBytes } = header.value
      const receiving =
        size >= this.hashInWorkerBytesMin
          ? this.hashWorker.assemble(size, writer)
          : new InlineAssembly(size, writer)
      assembly = receiving
      return {
        size,
        chunkBytes,
        onData: (bytes) => {
          receiving.append(bytes)
          this.stats.bytesReceived += bytes.byteLength
        },
      }
    }
    let assembled: AssembledBlock
    try {
      // listening before the request leaves, so no byte of the answer can pass unseen (response-reader.ts)
      const answered = readBlockResponse(stream, onResponse)
      const request = BlockRequest.encode({ cid: cid.bytes as Uint8Array<ArrayBuffer>, offset: 0 })
      if (!stream.send(lengthPrefixed(request))) await stream.onDrain({ signal })
      await answered
      if (assembly === undefined) throw new Error('a response without chunks was not refused')
      assembled = await assembly.finish()
    } catch (err) {
      assembly?.abort()
      if (err instanceof ResponseFrameError) this.fail(err.reason)
      throw err
    }
    if (!uint8ArrayEquals(assembled.digest, cid.multihash.digest)) {
      this.count('hash-mismatch')
      throw new BlockHashMismatchError(`peer sent bytes that do not hash to ${cid}`)
    }
    if (assembled.fileError !== undefined) {
      throw new BlockStoreWriteError(`storing ${cid} failed: ${assembled.fileError.message}`)
    }
    return assembled.block
  }
}

/** The block exchange service factory. */
export function blockExchange(
  init: BlockExchangeInit = {},
): (components: BlockExchangeComponents) => BlockExchange {
  return (components) => new DefaultBlockExchange(components, init)
}
