// Parameters as one flat float32 vector (the form they take in log entries, snapshots and on the
// wire) and their sha2-256 digest. The order and layout of the flat vector is the model kind's
// (kernels/models/kind.ts): the group never looks inside it.
import { createHash } from 'node:crypto'

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** float32 values as little-endian bytes (a copy). */
export function floatsToBytes(values: Float32Array): Uint8Array<ArrayBuffer> {
  if (!littleEndian) throw new Error('shardnet needs a little-endian machine')
  const copy = new Uint8Array(values.byteLength)
  copy.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
  return copy
}

/**
 * float32 values as their little-endian bytes without a copy (the same memory): for bytes that are only
 * read and values that are not changed while the bytes are in use (a message being encoded).
 */
export function floatBytesView(values: Float32Array): Uint8Array<ArrayBuffer> {
  if (!littleEndian) throw new Error('shardnet needs a little-endian machine')
  return new Uint8Array(values.buffer as ArrayBuffer, values.byteOffset, values.byteLength)
}

/**
 * little-endian float32 bytes as values (a copy, so any byte offset works); RangeError if not a
 * multiple of 4.
 */
export function bytesToFloats(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of float32`)
  if (!littleEndian) throw new Error('shardnet needs a little-endian machine')
  const copy = new Uint8Array(bytes.byteLength)
  copy.set(bytes)
  return new Float32Array(copy.buffer)
}

/** sha2-256 over the float32 little-endian bytes of `params`. */
export function paramsDigest(params: Float32Array): Uint8Array<ArrayBuffer> {
  const hash = createHash('sha256')
  hash.update(floatBytesView(params))
  return new Uint8Array(hash.digest())
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0
}
