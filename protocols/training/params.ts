// Parameters as one flat float32 vector (the form they take in log entries, snapshots and on the
// wire), their sha2-256 digest, and conversions to and from checkpoint layers.
//
// Flat layout: the MLP's parameters() order (weight 0, bias 0, weight 1, ...) in DEVICE layout
// (weights [in,out] row-major, biases [out]), so gradients read from the backend need no transpose.
import { createHash } from 'node:crypto'
import type { Backend, Tensor } from '../../kernels/backend.js'
import {
  type HostLayer,
  initialHostLayers,
  layerSizes,
  type MlpArchitecture,
  parameterCount,
  transpose,
} from '../../kernels/models/mlp.js'

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

/** Checkpoint layers ([out,in] weights) -> flat device layout. */
export function hostLayersToParams(
  architecture: MlpArchitecture,
  layers: readonly HostLayer[],
): Float32Array {
  const sizes = layerSizes(architecture)
  const flat = new Float32Array(parameterCount(architecture))
  let offset = 0
  layers.forEach((layer, l) => {
    flat.set(transpose(layer.weight, sizes[l + 1], sizes[l]), offset)
    offset += layer.weight.length
    flat.set(layer.bias, offset)
    offset += layer.bias.length
  })
  return flat
}

/** Flat device layout -> checkpoint layers ([out,in] weights), e.g. for encodeMlpCheckpoint. */
export function paramsToHostLayers(architecture: MlpArchitecture, params: Float32Array): HostLayer[] {
  const sizes = layerSizes(architecture)
  if (params.length !== parameterCount(architecture)) {
    throw new RangeError(`expected ${parameterCount(architecture)} params, got ${params.length}`)
  }
  const layers: HostLayer[] = []
  let offset = 0
  for (let l = 0; l + 1 < sizes.length; l++) {
    const weightCount = sizes[l] * sizes[l + 1]
    layers.push({
      weight: transpose(params.subarray(offset, offset + weightCount), sizes[l], sizes[l + 1]),
      bias: params.slice(offset + weightCount, offset + weightCount + sizes[l + 1]),
    })
    offset += weightCount + sizes[l + 1]
  }
  return layers
}

/** The He-initialized params of `seed` (the same as Mlp.initialize), flat. */
export function initialParams(architecture: MlpArchitecture, seed: number): Float32Array {
  return hostLayersToParams(architecture, initialHostLayers(architecture, seed))
}

/** Overwrites tensors laid out like Mlp.parameters() from a flat vector. */
export function writeParams(backend: Backend, tensors: readonly Tensor[], params: Float32Array): void {
  let offset = 0
  for (const tensor of tensors) {
    backend.write(tensor, params.subarray(offset, offset + tensor.size))
    offset += tensor.size
  }
  if (offset !== params.length) throw new RangeError(`tensors hold ${offset} values, params ${params.length}`)
}

/** Reads tensors laid out like Mlp.parameters() into one flat vector. */
export async function readParams(backend: Backend, tensors: readonly Tensor[]): Promise<Float32Array> {
  const parts = await Promise.all(tensors.map((tensor) => backend.read(tensor)))
  const flat = new Float32Array(parts.reduce((total, part) => total + part.length, 0))
  let offset = 0
  for (const part of parts) {
    flat.set(part, offset)
    offset += part.length
  }
  return flat
}
