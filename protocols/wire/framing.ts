// One bounded length-prefixed framing for every shardnet stream protocol (raft, grad, claim, infer,
// blocks). lpStream's own maxDataLength check runs only once a varint prefix completes, so a peer that
// trickles 0xff bytes would make it buffer without end; the decoder here refuses a prefix longer than
// the varint of the protocol's largest frame as soon as that many bytes are seen.
import type { Stream } from '@libp2p/interface'
import { InvalidDataLengthError, InvalidDataLengthLengthError, lpStream } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'

/** A length prefix longer than the varint of the largest allowed frame. */
export class FrameLengthError extends Error {
  static override name = 'FrameLengthError'
  override name = 'FrameLengthError'
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

/** lpStream over `stream` whose frames (and their length prefixes) are bounded by `maxDataLength`. */
export function boundedLpStream<S extends Stream>(stream: S, maxDataLength: number) {
  return lpStream(stream, {
    maxDataLength,
    lengthDecoder: boundedLengthDecoder(varintBytes(maxDataLength)),
  })
}

/** One unsigned-varint length-prefixed frame. */
export function lengthPrefixed(bytes: Uint8Array): Uint8Array {
  const prefix: number[] = []
  let n = bytes.byteLength
  while (n >= 0x80) {
    prefix.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  prefix.push(n)
  const frame = new Uint8Array(prefix.length + bytes.byteLength)
  frame.set(prefix)
  frame.set(bytes, prefix.length)
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
