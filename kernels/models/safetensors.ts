// The safetensors format (https://github.com/huggingface/safetensors), float32 tensors only:
//   [8 bytes: N, unsigned little-endian 64-bit] [N bytes: JSON header, UTF-8, space padded]
//   [data: the tensors' bytes, little-endian, back to back]
// The header maps each tensor name to { dtype: "F32", shape, data_offsets: [begin, end] } (offsets
// relative to the start of the data) and may hold "__metadata__": { string: string }.
// Decoding checks everything a corrupt or hostile file could get wrong (header length, JSON,
// dtypes, shapes against offsets, holes, overlaps, trailing bytes) and throws SafetensorsError.

/** A file that is not valid float32 safetensors; the message says what is wrong. */
export class SafetensorsError extends Error {
  static override name = 'SafetensorsError'
  constructor(message: string) {
    super(message)
    this.name = 'SafetensorsError'
  }
}

export interface NamedTensor {
  shape: number[]
  data: Float32Array
}

export interface SafetensorsContents {
  /** tensors in file order */
  tensors: Map<string, NamedTensor>
  metadata: Record<string, string>
}

/** the reference implementation refuses headers above 100 MB; ours are a few hundred bytes */
export const HEADER_BYTES_MAX = 100_000_000
const LENGTH_PREFIX_BYTES = 8
const HEADER_ALIGNMENT = 8

function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dimension) => product * dimension, 1)
}

/** Encodes tensors (in the order given) and string metadata as safetensors bytes. */
export function encodeSafetensors(
  tensors: ReadonlyArray<[string, NamedTensor]>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {}
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata
  let offset = 0
  for (const [name, tensor] of tensors) {
    if (name === '__metadata__' || name in header)
      throw new SafetensorsError(`duplicate or reserved tensor name "${name}"`)
    if (elementCount(tensor.shape) !== tensor.data.length) {
      throw new SafetensorsError(
        `tensor "${name}" has shape [${tensor.shape}] but ${tensor.data.length} values`,
      )
    }
    const bytes = tensor.data.length * 4
    header[name] = { dtype: 'F32', shape: [...tensor.shape], data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let headerText = JSON.stringify(header)
  const headerBytesUnpadded = Buffer.byteLength(headerText, 'utf8')
  const padding =
    (HEADER_ALIGNMENT - ((LENGTH_PREFIX_BYTES + headerBytesUnpadded) % HEADER_ALIGNMENT)) % HEADER_ALIGNMENT
  headerText += ' '.repeat(padding)
  const headerBytes = Buffer.from(headerText, 'utf8')
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + headerBytes.length + offset)
  const view = new DataView(out.buffer)
  view.setBigUint64(0, BigInt(headerBytes.length), true)
  out.set(headerBytes, LENGTH_PREFIX_BYTES)
  let at = LENGTH_PREFIX_BYTES + headerBytes.length
  for (const [, tensor] of tensors) {
    for (let i = 0; i < tensor.data.length; i++) view.setFloat32(at + i * 4, tensor.data[i], true)
    at += tensor.data.length * 4
  }
  return out
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

/** One tensor the header describes: its shape and its bytes [begin, end) of the data section. */
export interface SafetensorsEntry {
  name: string
  shape: number[]
  begin: number
  end: number
}

/**
 * Parses and checks a safetensors header: `json` is the header's JSON bytes (after the 8-byte
 * length), `dataBytes` the size of the data section after it. Every tensor must be F32 with a
 * shape matching its byte range, and the ranges must tile the data section exactly. Throws
 * SafetensorsError on any defect. decodeSafetensors and readers that read only some tensors of a
 * file (node/executor/gpt-tensors.ts) share it.
 */
export function parseSafetensorsHeader(
  json: Uint8Array,
  dataBytes: number,
): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  const headerText = new TextDecoder('utf-8', { fatal: false }).decode(json)
  if (!headerText.startsWith('{')) throw new SafetensorsError('the header is not a JSON object')
  let header: unknown
  try {
    header = JSON.parse(headerText)
  } catch {
    throw new SafetensorsError('the header is not valid JSON')
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError('the header is not a JSON object')
  }
  const metadata: Record<string, string> = {}
  const entries: SafetensorsEntry[] = []
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        throw new SafetensorsError('__metadata__ is not an object of strings')
      }
      for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof value !== 'string')
          throw new SafetensorsError(`__metadata__ value "${key}" is not a string`)
        metadata[key] = value
      }
      continue
    }
    const described = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null
    if (described === null || typeof described !== 'object') {
      throw new SafetensorsError(`tensor "${name}" has no description`)
    }
    if (described.dtype !== 'F32') {
      throw new SafetensorsError(
        `tensor "${name}" has dtype ${JSON.stringify(described.dtype)}; only F32 is supported`,
      )
    }
    const shape = described.shape
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new SafetensorsError(`tensor "${name}" has an invalid shape`)
    }
    const offsets = described.data_offsets
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !isNonNegativeInteger(offsets[0]) ||
      !isNonNegativeInteger(offsets[1]) ||
      offsets[0] > offsets[1]
    ) {
      throw new SafetensorsError(`tensor "${name}" has invalid data_offsets`)
    }
    const [begin, end] = offsets as [number, number]
    if (end - begin !== elementCount(shape as number[]) * 4) {
      throw new SafetensorsError(
        `tensor "${name}" has shape [${shape}] but data_offsets cover ${end - begin} bytes ` +
          `instead of ${elementCount(shape as number[]) * 4}`,
      )
    }
    if (end > dataBytes) {
      throw new SafetensorsError(
        `tensor "${name}" ends at byte ${end} but the data section has ${dataBytes} bytes (truncated?)`,
      )
    }
    entries.push({ name, shape: shape as number[], begin, end })
  }
  // the tensors must tile the data section exactly: no holes, no overlaps, nothing after
  const byOffset = [...entries].sort((left, right) => left.begin - right.begin)
  let expectedBegin = 0
  for (const entry of byOffset) {
    if (entry.begin !== expectedBegin) {
      throw new SafetensorsError(
        `tensor "${entry.name}" starts at byte ${entry.begin}, expected ${expectedBegin}`,
      )
    }
    expectedBegin = entry.end
  }
  if (expectedBegin !== dataBytes) {
    throw new SafetensorsError(
      `the data section has ${dataBytes} bytes but the tensors cover ${expectedBegin}`,
    )
  }
  return { entries, metadata }
}

/** Decodes safetensors bytes holding float32 tensors; throws SafetensorsError on any defect. */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsContents {
  if (bytes.length < LENGTH_PREFIX_BYTES) {
    throw new SafetensorsError(`the file is ${bytes.length} bytes long, too short for a safetensors header`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const headerLength = view.getBigUint64(0, true)
  if (headerLength > BigInt(HEADER_BYTES_MAX)) {
    throw new SafetensorsError(
      `the header length ${headerLength} exceeds the limit of ${HEADER_BYTES_MAX} bytes`,
    )
  }
  const headerBytes = Number(headerLength)
  if (LENGTH_PREFIX_BYTES + headerBytes > bytes.length) {
    throw new SafetensorsError(
      `the header claims ${headerBytes} bytes but the file has only ` +
        `${bytes.length - LENGTH_PREFIX_BYTES} after the length (truncated?)`,
    )
  }
  const dataStart = LENGTH_PREFIX_BYTES + headerBytes
  const { entries, metadata } = parseSafetensorsHeader(
    bytes.subarray(LENGTH_PREFIX_BYTES, dataStart),
    bytes.length - dataStart,
  )
  const tensors = new Map<string, NamedTensor>()
  for (const entry of entries) {
    const data = new Float32Array((entry.end - entry.begin) / 4)
    const at = dataStart + entry.begin
    for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(at + i * 4, true)
    tensors.set(entry.name, { shape: entry.shape, data })
  }
  return { tensors, metadata }
}
