/**
 * Reads a responder's answer on `/shardnet/blocks/1.0.0` (a BlockResponse frame, then per chunk a
 * BlockChunk header frame and a raw data frame) straight off the stream's message events, with a small
 * state machine.
 *
 * Why not lpStream: it reads a frame's varint one byte at a time and, while a 1 MiB data frame arrives in
 * about sixteen yamux messages, wakes its reader for each of them (a promise, an abort listener added and
 * removed, a list append, a sublist and a consume); that machinery cost the receiving event loop a few
 * milliseconds per 16 MiB. Here each message is parsed where it lies and its data bytes are handed on
 * without a copy. (Reading the response header with lpStream and the rest here does not work either:
 * lpStream reads ahead, and pushing those bytes back into a stream whose remote has already finished
 * throws.)
 *
 * The limits are the ones the frames have, checked as soon as the bytes that break them arrive: a response
 * of at most BLOCK_RESPONSE_BYTES_MAX bytes, chunk headers of at most BLOCK_CHUNK_HEADER_BYTES_MAX, a data
 * frame of exactly the length its header announced, chunks in order, never past the block's size.
 */
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { varintBytes } from '../wire/framing.js'
import {
  BLOCK_CHUNK_BYTES_MAX,
  BLOCK_CHUNK_HEADER_BYTES_MAX,
  BLOCK_RESPONSE_BYTES_MAX,
  type BlockFrameRejectReason,
  decodeBlockChunk,
  validateBlockChunk,
} from '../wire/validation/index.js'

/** The peer broke the framing of its answer; `reason` says how. */
export class ResponseFrameError extends Error {
  static override name = 'ResponseFrameError'
  override name = 'ResponseFrameError'
  constructor(readonly reason: BlockFrameRejectReason | 'stream-error') {
    super(`block response frames: ${reason}`)
  }
}

/** What to do with the chunks that follow a response header. */
export interface ChunkPlan {
  /** bytes of block data to read, from `offset` on */
  size: number
  /** largest chunk the responder announced */
  chunkBytes: number
  /** byte offset of the first chunk (0, unless resuming) */
  offset?: number
  /** takes the data bytes in order; each view is only valid during the call */
  onData(bytes: Uint8Array): void
}

/**
 * Decides on the response frame (its raw bytes): returns how to read the chunks, or undefined when no
 * chunks follow (an error status). It may throw; the read then rejects with that error.
 */
export type OnResponse = (frame: Uint8Array) => ChunkPlan | undefined

/** How many bytes the unsigned varint of `value` takes: the longest length prefix a bound allows. */

const RESPONSE_LENGTH_BYTES_MAX = varintBytes(BLOCK_RESPONSE_BYTES_MAX)
const HEADER_LENGTH_BYTES_MAX = varintBytes(BLOCK_CHUNK_HEADER_BYTES_MAX)
const DATA_LENGTH_BYTES_MAX = varintBytes(BLOCK_CHUNK_BYTES_MAX)

type Phase = 'response-length' | 'response' | 'header-length' | 'header' | 'data-length' | 'data' | 'done'

/**
 * Starts reading the answer on `stream` at once (call it before sending the request, so no byte can pass
 * unseen). Resolves once the response frame was handled and, if it planned chunks, all of their data was
 * passed on; later bytes are left unread. Rejects with a ResponseFrameError when the peer breaks the framing
 * or ends the stream early, with what `onResponse` threw, or with the stream's own error when it is aborted
 * or reset (a deadline aborts it). The caller may stop waiting (its request failed to leave): a rejection
 * nobody awaits any more is then dropped, never an unhandled rejection.
 */
export function readBlockResponse(stream: Stream, onResponse: OnResponse): Promise<void> {
  // the response or the current chunk header, gathered across messages
  const frame = new Uint8Array(Math.max(BLOCK_RESPONSE_BYTES_MAX, BLOCK_CHUNK_HEADER_BYTES_MAX))
  let frameLength = 0
  let frameFilled = 0
  let phase: Phase = 'response-length'
  let plan: ChunkPlan | undefined
  let offset = 0
  let end = 0
  let index = 0
  // the varint being read
  let length = 0
  let lengthBytes = 0
  let scale = 1
  let dataLeft = 0

  const startVarint = (next: Phase): void => {
    phase = next
    length = 0
    lengthBytes = 0
    scale = 1
  }
  /** Feeds one byte to the varint being read; true once it is complete. */
  const varintByte = (byte: number, bytesMax: number): boolean => {
    if (lengthBytes >= bytesMax) throw new ResponseFrameError('oversized')
    length += (byte & 0x7f) * scale
    scale *= 128
    lengthBytes++
    return (byte & 0x80) === 0
  }
  const startFrame = (next: Phase, bytesMax: number): void => {
    if (length > bytesMax) throw new ResponseFrameError('oversized')
    frameLength = length
    frameFilled = 0
    phase = next
    if (frameLength === 0) frameComplete()
  }
  const frameComplete = (): void => {
    const bytes = frame.subarray(0, frameLength)
    if (phase === 'response') {
      plan = onResponse(bytes)
      if (plan === undefined || plan.size === 0) {
        phase = 'done'
        return
      }
      offset = plan.offset ?? 0
      end = offset + plan.size
      startVarint('header-length')
      return
    }
    const chunk = decodeBlockChunk(bytes)
    if (!chunk.ok) throw new ResponseFrameError(chunk.reason)
    const reason = validateBlockChunk(chunk.value, { index, offset, chunkBytes: plan!.chunkBytes, size: end })
    if (reason !== undefined) throw new ResponseFrameError(reason)
    dataLeft = chunk.value.length
    startVarint('data-length')
  }

  const parse = (buf: Uint8Array): void => {
    let p = 0
    while (p < buf.byteLength && phase !== 'done') {
      switch (phase) {
        case 'response-length':
          if (varintByte(buf[p++], RESPONSE_LENGTH_BYTES_MAX))
            startFrame('response', BLOCK_RESPONSE_BYTES_MAX)
          break
        case 'header-length':
          if (varintByte(buf[p++], HEADER_LENGTH_BYTES_MAX))
            startFrame('header', BLOCK_CHUNK_HEADER_BYTES_MAX)
          break
        case 'response':
        case 'header': {
          const take = Math.min(frameLength - frameFilled, buf.byteLength - p)
          frame.set(buf.subarray(p, p + take), frameFilled)
          frameFilled += take
          p += take
          if (frameFilled === frameLength) frameComplete()
          break
        }
        case 'data-length':
          if (varintByte(buf[p++], DATA_LENGTH_BYTES_MAX)) {
            if (length > BLOCK_CHUNK_BYTES_MAX) throw new ResponseFrameError('oversized')
            if (length !== dataLeft) throw new ResponseFrameError('bad-chunk')
            phase = 'data'
          }
          break
        case 'data': {
          const take = Math.min(dataLeft, buf.byteLength - p)
          plan!.onData(buf.subarray(p, p + take))
          p += take
          offset += take
          dataLeft -= take
          if (dataLeft === 0) {
            index++
            if (offset === end) phase = 'done'
            else startVarint('header-length')
          }
          break
        }
      }
    }
  }

  // the remote has closed its writable end and everything it sent was handed to us: nothing more will come
  const drained = () => stream.remoteWriteStatus === 'closed' && stream.readBufferLength === 0

  const reading = new Promise<void>((resolve, reject) => {
    const settle = (error?: Error): void => {
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('close', onClose)
      stream.removeEventListener('end', onEnd)
      if (error === undefined) resolve()
      else reject(error)
    }
    const onMessage = (event: StreamMessageEvent): void => {
      try {
        if (event.data instanceof Uint8Array) parse(event.data)
        else for (const buf of event.data) parse(buf)
      } catch (error) {
        settle(error as Error)
        return
      }
      if (phase === 'done') settle()
      else if (drained()) settle(new ResponseFrameError('stream-error'))
    }
    const onClose = (event: StreamCloseEvent): void => {
      if (phase === 'done') settle()
      else settle(event.error ?? new ResponseFrameError('stream-error'))
    }
    const onEnd = (): void => {
      if (phase === 'done') settle()
      else settle(new ResponseFrameError('stream-error'))
    }
    if (drained()) {
      reject(new ResponseFrameError('stream-error'))
      return
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', onClose)
    stream.addEventListener('end', onEnd)
  })
  reading.catch(() => {})
  return reading
}
