// Some tensors of a GPT model directory without the rest: a span server reads only its blocks'
// tensors and a chain client only the ends (wte, wpe, ln_f), so host memory follows the part, not the
// model. The safetensors header (at the start of model.safetensors) is read and checked by
// kernels/models/safetensors.ts parseSafetensorsHeader, as decodeSafetensors checks a whole file (JSON,
// F32 only, shapes against offsets, the tensors tiling the data section with no holes, overlaps or
// trailing bytes) and against the GPT's config as decodeGptCheckpoint does (every tensor of the
// layout present with its shape, nothing it does not describe); then only the byte ranges of the
// tensors asked for are read, with positional reads, and refused if they hold NaN or Inf.
//
// The weights file is either whole (a model directory; a whole model in the model cache) or, in the
// model cache, partial: a sparse file of the model's full size holding only some of the pieces it was
// published in (node/serving/model-package.ts), with pieces.json saying which. Bytes of a piece not
// present are never read: a read that needs one fails with a sentence naming it.
import { createHash } from 'node:crypto'
import { type FileHandle, open, readFile } from 'node:fs/promises'
import { endianness } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { GptCheckpointError } from '../../kernels/models/gpt/checkpoint.js'
import { type GptConfig, gptParameterLayout } from '../../kernels/models/gpt/config.js'
import { parseSafetensorsHeader, SafetensorsError } from '../../kernels/models/safetensors.js'
import { ModelFilesError, type ModelManifest, readGptManifestAndConfig, WEIGHTS_FILE } from './model-files.js'

/** The weights' header (8 + N bytes) is refused above this (a 96-block GPT's is about 130 KB). */
export const WEIGHTS_HEADER_BYTES_MAX = 16 * 1024 * 1024
/** In a partial model directory: which pieces of the weights file are present. */
export const PRESENT_PIECES_FILE = 'pieces.json'
export const PRESENT_PIECES_FORMAT = 'shardnet-pieces/1'
/** Largest pieces.json accepted (512 piece numbers are about 2.5 KB). */
export const PRESENT_PIECES_BYTES_MAX = 64 * 1024
/** Bytes hashed at a time when a whole weights file is checked against model.json. */
const HASH_CHUNK_BYTES = 8 * 1024 * 1024
const LENGTH_PREFIX_BYTES = 8
/** safetensors is little-endian: on such a machine a tensor's bytes are its Float32Array as they are */
const LITTLE_ENDIAN = endianness() === 'LE'
/** Hugging Face may prefix names with `transformer.`; both forms load (as decodeGptCheckpoint). */
const PREFIX = 'transformer.'

/** Which parts of a GPT to read or fetch: blocks [start, end) and/or the ends. */
export interface GptParts {
  span?: { start: number; end: number }
  /** wte.weight, wpe.weight, ln_f.weight, ln_f.bias (and a stored tied head, to check it) */
  ends?: boolean
}

/** One tensor's place in the weights file: bytes [begin, end) of the whole file. */
export interface WeightsTensor {
  /** the name in the layout (gptParameterLayout) */
  name: string
  shape: number[]
  begin: number
  end: number
}

/** A weights file's header, checked against a GPT config. */
export interface GptWeightsHeader {
  /** 8 + N: where the data section starts */
  dataStart: number
  /** every tensor of the layout, by its layout name */
  tensors: Map<string, WeightsTensor>
  /** lm_head.weight when the file stores the tied head (it must equal wte) */
  tiedHead?: WeightsTensor
}

/** The layout names of `parts` of a GPT with `config`, in layout order. */
export function gptPartNames(config: GptConfig, parts: GptParts): string[] {
  const names: string[] = []
  const layout = gptParameterLayout(config)
  if (parts.ends === true) names.push(layout[0].name, layout[1].name)
  if (parts.span !== undefined) {
    const { start, end } = parts.span
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(end) ||
      start < 0 ||
      end > config.layers ||
      start >= end
    )
      throw new RangeError(`blocks [${start}, ${end}) are not a span of the model's ${config.layers} blocks`)
    for (const entry of layout) {
      const block = /^h\.(\d+)\./.exec(entry.name)
      if (block !== null && Number(block[1]) >= start && Number(block[1]) < end) names.push(entry.name)
    }
  }
  if (parts.ends === true) names.push(layout[layout.length - 2].name, layout[layout.length - 1].name)
  return names
}

/** The length of the header with its 8-byte prefix, from the file's first 8 bytes. */
export function weightsHeaderLength(prefix: Uint8Array): number {
  if (prefix.byteLength < LENGTH_PREFIX_BYTES)
    throw new SafetensorsError(
      `the file is ${prefix.byteLength} bytes long, too short for a safetensors header`,
    )
  const length = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX_BYTES).getBigUint64(0, true)
  if (length > BigInt(WEIGHTS_HEADER_BYTES_MAX - LENGTH_PREFIX_BYTES))
    throw new SafetensorsError(
      `the header length ${length} exceeds the limit of ` +
        `${WEIGHTS_HEADER_BYTES_MAX - LENGTH_PREFIX_BYTES} bytes`,
    )
  return LENGTH_PREFIX_BYTES + Number(length)
}

/**
 * Parses the header of a weights file of `fileBytes` bytes from its first bytes `prefix` (at least
 * weightsHeaderLength of them) and checks it against `config`. Throws SafetensorsError (not a valid
 * safetensors header for that size) or GptCheckpointError (not this GPT's tensors).
 */
export function parseGptWeightsHeader(
  prefix: Uint8Array,
  fileBytes: number,
  config: GptConfig,
): GptWeightsHeader {
  const dataStart = weightsHeaderLength(prefix)
  if (dataStart > fileBytes || dataStart > prefix.byteLength)
    throw new SafetensorsError(
      `the header claims ${dataStart - LENGTH_PREFIX_BYTES} bytes but the file has only ` +
        `${Math.max(0, Math.min(fileBytes, prefix.byteLength) - LENGTH_PREFIX_BYTES)} after the length ` +
        '(truncated?)',
    )
  // the checks decodeSafetensors makes, on the header alone; offsets made absolute in the file
  const { entries } = parseSafetensorsHeader(
    prefix.subarray(LENGTH_PREFIX_BYTES, dataStart),
    fileBytes - dataStart,
  )
  const stored: WeightsTensor[] = entries.map((entry) => ({
    name: entry.name,
    shape: entry.shape,
    begin: dataStart + entry.begin,
    end: dataStart + entry.end,
  }))
  const byName = new Map<string, WeightsTensor>()
  for (const tensor of stored) {
    const plain = tensor.name.startsWith(PREFIX) ? tensor.name.slice(PREFIX.length) : tensor.name
    if (byName.has(plain)) throw new GptCheckpointError(`the checkpoint holds ${plain} twice`)
    byName.set(plain, { ...tensor, name: plain })
  }
  const tensors = new Map<string, WeightsTensor>()
  for (const entry of gptParameterLayout(config)) {
    const tensor = byName.get(entry.name)
    if (tensor === undefined)
      throw new GptCheckpointError(
        `the checkpoint has no tensor ${entry.name} ` +
          `(config.json describes ${config.layers} layers of width ${config.width})`,
      )
    if (tensor.shape.length !== entry.shape.length || tensor.shape.some((d, i) => d !== entry.shape[i]))
      throw new GptCheckpointError(
        `${entry.name} has shape [${tensor.shape.join(', ')}], ` +
          `config.json implies [${entry.shape.join(', ')}]`,
      )
    tensors.set(entry.name, tensor)
    byName.delete(entry.name)
  }
  const tiedHead = byName.get('lm_head.weight')
  if (tiedHead !== undefined) {
    const wte = tensors.get('wte.weight') as WeightsTensor
    if (tiedHead.end - tiedHead.begin !== wte.end - wte.begin)
      throw new GptCheckpointError('lm_head.weight differs from wte.weight (the head must be tied)')
    byName.delete('lm_head.weight')
  }
  // buffers some exporters keep (attention masks) are not parameters
  for (const name of [...byName.keys()]) if (/^h\.\d+\.attn\.(masked_)?bias$/.test(name)) byName.delete(name)
  const extra = [...byName.keys()]
  if (extra.length > 0)
    throw new GptCheckpointError(`the checkpoint holds a tensor config.json does not describe: ${extra[0]}`)
  return { dataStart, tensors, ...(tiedHead === undefined ? {} : { tiedHead }) }
}

/** The byte ranges of the weights file that `parts` need (the header's excluded). */
export function gptPartRanges(header: GptWeightsHeader, config: GptConfig, parts: GptParts): WeightsTensor[] {
  const ranges = gptPartNames(config, parts).map((name) => header.tensors.get(name) as WeightsTensor)
  if (parts.ends === true && header.tiedHead !== undefined) ranges.push(header.tiedHead)
  return ranges
}

/** The pieces of `pieceBytes` bytes that bytes [begin, end) of a file fall in (none when empty). */
export function piecesOfRange(begin: number, end: number, pieceBytes: number): number[] {
  if (end <= begin) return []
  const pieces: number[] = []
  for (let piece = Math.floor(begin / pieceBytes); piece * pieceBytes < end; piece++) pieces.push(piece)
  return pieces
}

const presentPiecesSchema = z.strictObject({
  format: z.literal(PRESENT_PIECES_FORMAT),
  bytes: z.number().int().positive(),
  pieceBytes: z.number().int().positive(),
  present: z.array(z.number().int().nonnegative()),
})

/** pieces.json: the weights file's size, its piece size, and the pieces present in it. */
export type PresentPieces = z.infer<typeof presentPiecesSchema>

/**
 * pieces.json of a model directory, parsed and checked; undefined when there is none (the weights file
 * is whole). Throws ModelFilesError for one that is unreadable or malformed.
 */
export async function readPresentPieces(directory: string): Promise<PresentPieces | undefined> {
  const path = join(directory, PRESENT_PIECES_FILE)
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new ModelFilesError(`cannot read ${path}: ${code ?? error}`)
  }
  if (bytes.byteLength > PRESENT_PIECES_BYTES_MAX)
    throw new ModelFilesError(`${path} is above its ${PRESENT_PIECES_BYTES_MAX}-byte limit`)
  let value: unknown
  try {
    value = JSON.parse(bytes.toString('utf8'))
  } catch {
    throw new ModelFilesError(`${path} is not valid JSON`)
  }
  const checked = presentPiecesSchema.safeParse(value)
  const pieces = checked.success ? checked.data : undefined
  const count = pieces === undefined ? 0 : Math.ceil(pieces.bytes / pieces.pieceBytes)
  if (pieces === undefined || pieces.present.some((piece) => piece >= count))
    throw new ModelFilesError(`${path} is not a record of the weights pieces present`)
  return pieces
}

/** What readGptParts returns: the model's description and the tensors asked for, by layout name. */
export interface GptPartTensors {
  manifest: ModelManifest
  config: GptConfig
  tensors: Map<string, Float32Array>
}

export interface ReadGptPartsOptions {
  /**
   * hash a whole weights file (streamed, a few MiB at a time) against model.json's sha256 first, as
   * loadGpt does; a partial one cannot be (its pieces were verified one by one when fetched)
   * @default true
   */
  checkSha256?: boolean
}

/**
 * The tensors of `parts` of the GPT in `directory` (whole or partial weights), read alone. Throws
 * ModelFilesError with one sentence: a directory that holds no GPT, a weights file that is not this
 * GPT's (header, size, sha256), a tensor holding a non-finite value, bytes of a piece not present.
 */
export async function readGptParts(
  directory: string,
  parts: GptParts,
  options: ReadGptPartsOptions = {},
): Promise<GptPartTensors> {
  const { manifest, config } = await readGptManifestAndConfig(directory)
  const path = join(directory, WEIGHTS_FILE)
  const present = await readPresentPieces(directory)
  let names: string[]
  try {
    names = gptPartNames(config, parts)
  } catch (error) {
    throw new ModelFilesError(`${directory}: ${(error as Error).message}`)
  }
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new ModelFilesError(
      code === 'ENOENT' ? `the weights file ${path} is missing` : `cannot read ${path}: ${code ?? error}`,
    )
  }
  try {
    const size = (await handle.stat()).size
    if (size !== manifest.weights.bytes || (present !== undefined && present.bytes !== size))
      throw new ModelFilesError(
        `the weights file ${path} is ${size} bytes where model.json says ${manifest.weights.bytes}`,
      )
    const reader = new WeightsReader(handle, path, present)
    if (present === undefined && options.checkSha256 !== false)
      await reader.checkSha256(manifest.weights.sha256)
    const first = await reader.read(0, Math.min(size, LENGTH_PREFIX_BYTES), 'the header')
    let header: GptWeightsHeader
    try {
      const length = weightsHeaderLength(first)
      if (length > size)
        throw new SafetensorsError(
          `the header claims ${length - LENGTH_PREFIX_BYTES} bytes but the file has only ` +
            `${size - LENGTH_PREFIX_BYTES} after the length (truncated?)`,
        )
      header = parseGptWeightsHeader(await reader.read(0, length, 'the header'), size, config)
    } catch (error) {
      if (error instanceof SafetensorsError || error instanceof GptCheckpointError)
        throw new ModelFilesError(`the weights file ${path} does not fit config.json: ${error.message}`)
      throw error
    }
    const tensors = new Map<string, Float32Array>()
    for (const name of names)
      tensors.set(name, await reader.tensor(header.tensors.get(name) as WeightsTensor))
    if (parts.ends === true && header.tiedHead !== undefined) {
      const head = await reader.tensor(header.tiedHead)
      const wte = tensors.get('wte.weight') as Float32Array
      if (!head.every((value, i) => value === wte[i]))
        throw new ModelFilesError(
          `the weights file ${path} does not fit config.json: lm_head.weight differs from wte.weight ` +
            '(the head must be tied)',
        )
    }
    return { manifest, config, tensors }
  } finally {
    await handle.close()
  }
}

/** Positional reads of a weights file, refusing bytes of pieces not present. */
class WeightsReader {
  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly present: PresentPieces | undefined,
  ) {}

  /** bytes [position, position + length) into a fresh buffer (4-byte aligned) */
  async read(position: number, length: number, what: string): Promise<Uint8Array> {
    if (this.present !== undefined) {
      const have = new Set(this.present.present)
      const missing = piecesOfRange(position, position + length, this.present.pieceBytes).find(
        (p) => !have.has(p),
      )
      if (missing !== undefined)
        throw new ModelFilesError(
          `${what} of ${this.path} is in weights piece ${missing + 1}, which this cache has not fetched`,
        )
    }
    const bytes = new Uint8Array(new ArrayBuffer(length))
    let done = 0
    while (done < length) {
      const { bytesRead } = await this.handle.read(bytes, done, length - done, position + done)
      if (bytesRead === 0) throw new ModelFilesError(`the weights file ${this.path} ended early (truncated?)`)
      done += bytesRead
    }
    return bytes
  }

  /** a tensor's values, refused if any is not finite */
  async tensor(tensor: WeightsTensor): Promise<Float32Array> {
    const bytes = await this.read(tensor.begin, tensor.end - tensor.begin, tensor.name)
    let values: Float32Array
    if (LITTLE_ENDIAN) values = new Float32Array(bytes.buffer)
    else {
      const view = new DataView(bytes.buffer)
      values = new Float32Array(bytes.byteLength / 4)
      for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(i * 4, true)
    }
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i]))
        throw new ModelFilesError(
          `the weights file ${this.path} does not fit config.json: ${tensor.name} holds a non-finite ` +
            `value (${values[i]}) at ${i}`,
        )
    }
    return values
  }

  async checkSha256(expected: string): Promise<void> {
    const hash = createHash('sha256')
    const chunk = new Uint8Array(HASH_CHUNK_BYTES)
    for (let position = 0; ; ) {
      const { bytesRead } = await this.handle.read(chunk, 0, chunk.byteLength, position)
      if (bytesRead === 0) break
      hash.update(chunk.subarray(0, bytesRead))
      position += bytesRead
    }
    if (hash.digest('hex') !== expected)
      throw new ModelFilesError(`the weights file ${this.path} does not match model.json (sha256 differs)`)
  }
}
