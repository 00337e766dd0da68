/**
 * The bytes of a dataset block: a group's training shard, the held-out test set, or inference inputs.
 * Layout (little-endian): magic "SNDS" | u32 version (1) | u32 count | u32 features | count*features
 * float32 pixels | count uint8 labels. A block is verified against its CID by the block exchange; this
 * decoder then checks that the sizes agree before the samples are used, and never throws.
 */
export const DATASET_MAGIC = 0x5344_4e53 // "SNDS" read as a little-endian u32
export const DATASET_VERSION = 1
const HEADER_BYTES = 16
/** A block larger than the block exchange's limit could not travel anyway. */
export const DATASET_SAMPLES_MAX = 1 << 22
export const DATASET_FEATURES_MAX = 1 << 16

export interface DatasetBlock {
  images: Float32Array
  labels: Uint8Array
  count: number
  features: number
}

export function encodeDatasetBlock(data: DatasetBlock): Uint8Array {
  if (data.images.length !== data.count * data.features || data.labels.length !== data.count) {
    throw new RangeError('dataset sizes disagree')
  }
  const bytes = new Uint8Array(HEADER_BYTES + data.images.byteLength + data.count)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, DATASET_MAGIC, true)
  view.setUint32(4, DATASET_VERSION, true)
  view.setUint32(8, data.count, true)
  view.setUint32(12, data.features, true)
  const pixels = new DataView(bytes.buffer, HEADER_BYTES, data.images.byteLength)
  for (let i = 0; i < data.images.length; i++) pixels.setFloat32(i * 4, data.images[i], true)
  bytes.set(data.labels, HEADER_BYTES + data.images.byteLength)
  return bytes
}

export type DecodedDataset = { ok: true; value: DatasetBlock } | { ok: false; reason: string }

export function decodeDatasetBlock(bytes: Uint8Array): DecodedDataset {
  if (bytes.byteLength < HEADER_BYTES) return { ok: false, reason: 'too short for a dataset header' }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== DATASET_MAGIC) return { ok: false, reason: 'not a dataset block' }
  if (view.getUint32(4, true) !== DATASET_VERSION) return { ok: false, reason: 'unsupported dataset version' }
  const count = view.getUint32(8, true)
  const features = view.getUint32(12, true)
  if (count < 1 || count > DATASET_SAMPLES_MAX || features < 1 || features > DATASET_FEATURES_MAX) {
    return { ok: false, reason: 'dataset sizes out of range' }
  }
  if (bytes.byteLength !== HEADER_BYTES + count * features * 4 + count) {
    return { ok: false, reason: 'dataset length does not match its header' }
  }
  const images = new Float32Array(count * features)
  for (let i = 0; i < images.length; i++) {
    const value = view.getFloat32(HEADER_BYTES + i * 4, true)
    if (!Number.isFinite(value))
      return { ok: false, reason: `sample ${Math.floor(i / features)} has a non-finite value` }
    images[i] = value
  }
  const labels = bytes.slice(HEADER_BYTES + count * features * 4)
  return { ok: true, value: { images, labels, count, features } }
}
