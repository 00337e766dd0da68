// Files and blocks of an inference task.
//
// Input file (`shardnet submit infer MODEL --input FILE`): JSON, one of
//   { "inputs": [[784 numbers], ...] }   (preferred)
//   { "images": [[784 numbers], ...] }   (the name `submit infer --help` shows)
//   [[784 numbers], ...]                 (a bare array of rows)
// Each row is one 28x28 image, row-major, pixel values as the model was trained on (MNIST: 0..1).
// Every value must be a finite number; at most INFER_ROWS_MAX rows, at most INPUT_FILE_BYTES_MAX bytes.
// The daemon never parses an input file whole: streamInputFile reads it in chunks with a streaming
// parser of exactly these shapes and writes the rows as float32 to a rows file on disk, from which the
// shards are read one at a time (readRows), so its memory does not grow with the file.
//
// Blocks (content-addressed, so a worker verifies what it fetched by CID):
// - the model bundle: "SNMB" | u32 LE manifest length | model.json bytes | model.safetensors bytes.
//   `shardnet submit infer CID` takes the CID of such a block.
// - an input shard: the rows as float32 little-endian, rows x 784; the row count is in the request.
// Output (`shardnet result ID --out DIR` writes DIR/predictions.json): see InferenceOutput.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { decodeMlpCheckpoint } from '../../kernels/models/checkpoint.js'
import type { HostLayer, MlpArchitecture } from '../../kernels/models/mlp.js'
import { loadModel, MANIFEST_FILE, WEIGHTS_FILE } from '../executor/model-files.js'

export const INFER_ROWS_MAX = 100_000
export const INPUT_FILE_BYTES_MAX = 512 * 1024 * 1024
/** Rows of one shard: its block (rows x 3,136 bytes) and its logits stay well under the block limit. */
export const INFER_SHARD_ROWS_MAX = 25_000
/** Longest string the streaming parser keeps (keys; other strings in the file are skipped). */
const INPUT_STRING_CHARS_MAX = 64 * 1024
/** Rows written to the rows file per write. */
const ROWS_PER_WRITE = 64
export const PREDICTIONS_FILE = 'predictions.json'
const BUNDLE_MAGIC = [0x53, 0x4e, 0x4d, 0x42] // "SNMB"

/** An input file, model bundle or shard that cannot be used; one clear sentence. */
export class InferenceInputError extends Error {
  static override name = 'InferenceInputError'
  override name = 'InferenceInputError'
}

/** Reads and checks an input file: rows x PIXEL_COUNT float32. */
export async function readInputFile(path: string): Promise<{ rows: number; values: Float32Array }> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new InferenceInputError(`cannot read the input file ${path}: ${error.code ?? error.message}`)
  })
  if (!info.isFile()) throw new InferenceInputError(`the input ${path} is not a file`)
  if (info.size > INPUT_FILE_BYTES_MAX)
    throw new InferenceInputError(`the input file ${path} is larger than ${INPUT_FILE_BYTES_MAX} bytes`)
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    throw new InferenceInputError(
      `the input file ${path} is not valid JSON (expected {"inputs": [[${PIXEL_COUNT} numbers], ...]})`,
    )
  }
  return parseInputs(parsed, path)
}

export interface StreamedInput {
  rows: number
  /** the rows file: rows x PIXEL_COUNT float32 little-endian */
  rowsFile: string
  /** CID (raw, sha2-256) of the whole rows file, as one block of it would have */
  cid: CID
}

const NUMBER_PATTERN = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/

type Token =
  | { kind: '{' | '}' | '[' | ']' | ',' | ':' }
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'literal'; value: string }

/**
 * Reads an input file (the shapes in the module comment) in chunks and writes its rows to `rowsFile`
 * as float32; memory stays bounded whatever the file's size. Throws InferenceInputError with one
 * sentence naming the problem (the same sentences parseInputs gives).
 */
export async function streamInputFile(path: string, rowsFile: string): Promise<StreamedInput> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new InferenceInputError(`cannot read the input file ${path}: ${error.code ?? error.message}`)
  })
  if (!info.isFile()) throw new InferenceInputError(`the input ${path} is not a file`)
  if (info.size > INPUT_FILE_BYTES_MAX)
    throw new InferenceInputError(
      `the input file ${path} is ${info.size} bytes, larger than the ${INPUT_FILE_BYTES_MAX} bytes accepted`,
    )
  const name = path
  const notJson = () =>
    new InferenceInputError(
      `the input file ${path} is not valid JSON (expected {"inputs": [[${PIXEL_COUNT} numbers], ...]})`,
    )
  const out = await open(rowsFile, 'w')
  const hash = createHash('sha256')
  const batch = new Float32Array(ROWS_PER_WRITE * PIXEL_COUNT)
  let batchRows = 0
  let rows = 0
  const flushRows = async () => {
    if (batchRows === 0) return
    const bytes = new Uint8Array(batch.buffer, 0, batchRows * PIXEL_COUNT * 4)
    hash.update(bytes)
    await out.write(bytes)
    batchRows = 0
  }
  // structure: where the parser is
  type Frame = 'top' | 'object-key' | 'object-colon' | 'object-value' | 'object-next' | 'skip'
  let state: Frame = 'top'
  let skipDepth = 0
  let key = ''
  let found = false
  let done = false
  // inside the rows array: -1 not in it; 0 expecting a row or ']'; 1 after a row (',' or ']')
  let rowsState = -1
  let inObject = false
  // inside one row: -1 not in it; else the values read so far
  let column = -1
  let expectValue = true
  const rowValues = batch
  const onToken = async (t: Token): Promise<void> => {
    if (done) throw notJson()
    if (column >= 0) {
      // inside a row
      if (expectValue) {
        if (t.kind === 'number') {
          if (!Number.isFinite(t.value) || column >= PIXEL_COUNT) {
            if (column >= PIXEL_COUNT)
              throw new InferenceInputError(
                `row ${rows} of ${name} must be a list of ${PIXEL_COUNT} numbers, got more values`,
              )
            throw new InferenceInputError(
              `row ${rows} of ${name} has a value that is not a finite number at ${column}`,
            )
          }
          rowValues[batchRows * PIXEL_COUNT + column] = t.value
          column++
          expectValue = false
          return
        }
        if (t.kind === ']' && column === 0) return endRow()
        if (t.kind === ',' || t.kind === ']' || t.kind === '}' || t.kind === ':') throw notJson()
        throw new InferenceInputError(
          `row ${rows} of ${name} has a value that is not a finite number at ${column}`,
        )
      }
      if (t.kind === ',') {
        expectValue = true
        return
      }
      if (t.kind === ']') return endRow()
      throw notJson()
    }
    if (rowsState >= 0) {
      if (rowsState === 0) {
        if (t.kind === '[') {
          if (rows >= INFER_ROWS_MAX)
            throw new InferenceInputError(
              `${name} holds more than ${INFER_ROWS_MAX} rows, at most ${INFER_ROWS_MAX} are accepted`,
            )
          column = 0
          expectValue = true
          return
        }
        if (t.kind === ']' && rows === 0) throw new InferenceInputError(`${name} holds no input rows`)
        if (t.kind === ',' || t.kind === ']' || t.kind === '}' || t.kind === ':') throw notJson()
        const got = t.kind === 'literal' ? t.value : t.kind === '{' ? 'object' : t.kind
        throw new InferenceInputError(
          `row ${rows} of ${name} must be a list of ${PIXEL_COUNT} numbers, got ${got}`,
        )
      }
      if (t.kind === ',') {
        rowsState = 0
        return
      }
      if (t.kind === ']') {
        rowsState = -1
        found = true
        if (inObject) state = 'object-next'
        else done = true
        return
      }
      throw notJson()
    }
    switch (state) {
      case 'top':
        if (t.kind === '[') {
          rowsState = 0
          return
        }
        if (t.kind === '{') {
          inObject = true
          state = 'object-key'
          return
        }
        throw new InferenceInputError(`${name} must hold {"inputs": [[${PIXEL_COUNT} numbers], ...]}`)
      case 'object-key':
        if (t.kind === 'string') {
          key = t.value
          state = 'object-colon'
          return
        }
        if (t.kind === '}') return endObject()
        throw notJson()
      case 'object-colon':
        if (t.kind !== ':') throw notJson()
        state = 'object-value'
        return
      case 'object-value':
        if (!found && (key === 'inputs' || key === 'images')) {
          if (t.kind === '[') {
            rowsState = 0
            return
          }
          throw new InferenceInputError(`${name} must hold {"inputs": [[${PIXEL_COUNT} numbers], ...]}`)
        }
        if (t.kind === '[' || t.kind === '{') {
          skipDepth = 1
          state = 'skip'
          return
        }
        if (t.kind === 'string' || t.kind === 'number' || t.kind === 'literal') {
          state = 'object-next'
          return
        }
        throw notJson()
      case 'object-next':
        if (t.kind === ',') {
          state = 'object-key'
          return
        }
        if (t.kind === '}') return endObject()
        throw notJson()
      case 'skip':
        if (t.kind === '[' || t.kind === '{') skipDepth++
        else if (t.kind === ']' || t.kind === '}') {
          skipDepth--
          if (skipDepth === 0) state = 'object-next'
        }
        return
    }
  }
  const endRow = async () => {
    if (column !== PIXEL_COUNT)
      throw new InferenceInputError(
        `row ${rows} of ${name} must be a list of ${PIXEL_COUNT} numbers, got ${column} values`,
      )
    column = -1
    rows++
    batchRows++
    rowsState = 1
    if (batchRows === ROWS_PER_WRITE) await flushRows()
  }
  const endObject = () => {
    if (!found) throw new InferenceInputError(`${name} must hold {"inputs": [[${PIXEL_COUNT} numbers], ...]}`)
    done = true
  }
  // the tokenizer: a partial string, number or literal may span chunks
  let partial = ''
  let partialKind: 'string' | 'number' | 'literal' | undefined
  let escaped = false
  let stringChars = 0
  let stringKept = true
  try {
    const input = createReadStream(path, { highWaterMark: 1 << 20 })
    for await (const chunk of input as AsyncIterable<Buffer>) {
      const text = chunk.toString('latin1')
      let i = 0
      while (i < text.length) {
        if (partialKind === 'string') {
          // strings: read to the closing quote; kept only when short (keys), skipped otherwise
          let j = i
          for (; j < text.length; j++) {
            const c = text.charCodeAt(j)
            if (escaped) escaped = false
            else if (c === 0x5c) escaped = true
            else if (c === 0x22) break
          }
          stringChars += j - i
          if (stringKept && stringChars <= INPUT_STRING_CHARS_MAX) partial += text.slice(i, j)
          else {
            stringKept = false
            partial = ''
          }
          if (j === text.length) {
            i = j
            break
          }
          let value = ''
          if (stringKept) {
            try {
              value = JSON.parse(`"${Buffer.from(partial, 'latin1').toString('utf8')}"`) as string
            } catch {
              throw notJson()
            }
          }
          partialKind = undefined
          partial = ''
          i = j + 1
          await onToken({ kind: 'string', value })
          continue
        }
        if (partialKind !== undefined) {
          let j = i
          for (; j < text.length; j++) {
            const c = text.charCodeAt(j)
            const word =
              partialKind === 'number'
                ? (c >= 0x30 && c <= 0x39) ||
                  c === 0x2e ||
                  c === 0x2d ||
                  c === 0x2b ||
                  c === 0x65 ||
                  c === 0x45
                : c >= 0x61 && c <= 0x7a
            if (!word) break
          }
          partial += text.slice(i, j)
          if (partial.length > 64) throw notJson()
          if (j === text.length) {
            i = j
            break
          }
          const word = partial
          const kind = partialKind
          partialKind = undefined
          partial = ''
          i = j
          if (kind === 'number') {
            if (!NUMBER_PATTERN.test(word)) throw notJson()
            await onToken({ kind: 'number', value: Number(word) })
          } else {
            if (word !== 'true' && word !== 'false' && word !== 'null') throw notJson()
            await onToken({ kind: 'literal', value: word })
          }
          continue
        }
        const c = text.charCodeAt(i)
        if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
          i++
          continue
        }
        const ch = text[i]
        if (ch === '{' || ch === '}' || ch === '[' || ch === ']' || ch === ',' || ch === ':') {
          i++
          await onToken({ kind: ch })
          continue
        }
        if (ch === '"') {
          partialKind = 'string'
          partial = ''
          escaped = false
          stringChars = 0
          stringKept = true
          i++
          continue
        }
        if (ch === '-' || (c >= 0x30 && c <= 0x39)) partialKind = 'number'
        else if (c >= 0x61 && c <= 0x7a) partialKind = 'literal'
        else throw notJson()
        partial = ''
      }
    }
    // a number or literal at the very end of the file
    if (partialKind === 'string') throw notJson()
    if (partialKind !== undefined) {
      const word = partial
      if (partialKind === 'number' && NUMBER_PATTERN.test(word))
        await onToken({ kind: 'number', value: Number(word) })
      else throw notJson()
    }
    if (!done) {
      if (state === 'top' && rowsState < 0 && column < 0) throw notJson()
      throw notJson()
    }
    await flushRows()
    await out.sync()
  } catch (error) {
    await out.close()
    if (error instanceof InferenceInputError) throw error
    const code = (error as NodeJS.ErrnoException).code
    throw new InferenceInputError(`cannot read the input file ${path}: ${code ?? (error as Error).message}`)
  }
  await out.close()
  const cid = CID.create(1, raw.code, createDigest(sha256.code, hash.digest()))
  return { rows, rowsFile, cid }
}

/** Rows start..end (exclusive) of a rows file written by streamInputFile, as float32 bytes. */
export async function readRows(rowsFile: string, start: number, end: number): Promise<Uint8Array> {
  const rowBytes = PIXEL_COUNT * 4
  const bytes = new Uint8Array((end - start) * rowBytes)
  const handle = await open(rowsFile, 'r')
  try {
    const { bytesRead } = await handle.read(bytes, 0, bytes.byteLength, start * rowBytes)
    if (bytesRead !== bytes.byteLength)
      throw new InferenceInputError(`the rows file ${rowsFile} is truncated`)
  } finally {
    await handle.close()
  }
  return bytes
}

export function parseInputs(parsed: unknown, name = 'the input'): { rows: number; values: Float32Array } {
  const rows = Array.isArray(parsed)
    ? parsed
    : parsed !== null && typeof parsed === 'object'
      ? ((parsed as Record<string, unknown>).inputs ?? (parsed as Record<string, unknown>).images)
      : undefined
  if (!Array.isArray(rows))
    throw new InferenceInputError(`${name} must hold {"inputs": [[${PIXEL_COUNT} numbers], ...]}`)
  if (rows.length === 0) throw new InferenceInputError(`${name} holds no input rows`)
  if (rows.length > INFER_ROWS_MAX)
    throw new InferenceInputError(`${name} holds ${rows.length} rows, at most ${INFER_ROWS_MAX} are accepted`)
  const values = new Float32Array(rows.length * PIXEL_COUNT)
  rows.forEach((row: unknown, r) => {
    if (!Array.isArray(row) || row.length !== PIXEL_COUNT)
      throw new InferenceInputError(
        `row ${r} of ${name} must be a list of ${PIXEL_COUNT} numbers, ` +
          `got ${Array.isArray(row) ? `${row.length} values` : typeof row}`,
      )
    for (let i = 0; i < PIXEL_COUNT; i++) {
      const v = row[i]
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new InferenceInputError(`row ${r} of ${name} has a value that is not a finite number at ${i}`)
      values[r * PIXEL_COUNT + i] = v
    }
  })
  return { rows: rows.length, values }
}

export function floatsToBytes(values: Float32Array): Uint8Array {
  const copy = new Float32Array(values)
  return new Uint8Array(copy.buffer)
}

export function bytesToFloats(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new InferenceInputError('a float32 block has a length not a multiple of 4')
  const copy = new Uint8Array(bytes.byteLength)
  copy.set(bytes)
  return new Float32Array(copy.buffer)
}

/** The bundle block of a model directory (validated by loadModel first). */
export async function readModelBundle(directory: string): Promise<Uint8Array> {
  await loadModel(directory)
  const manifest = new Uint8Array(await readFile(join(directory, MANIFEST_FILE)))
  const weights = new Uint8Array(await readFile(join(directory, WEIGHTS_FILE)))
  const bundle = new Uint8Array(8 + manifest.byteLength + weights.byteLength)
  bundle.set(BUNDLE_MAGIC, 0)
  new DataView(bundle.buffer).setUint32(4, manifest.byteLength, true)
  bundle.set(manifest, 8)
  bundle.set(weights, 8 + manifest.byteLength)
  return bundle
}

export interface BundledModel {
  manifest: Record<string, unknown>
  architecture: MlpArchitecture
  layers: HostLayer[]
}

/** Decodes an untrusted model bundle block; throws InferenceInputError. */
export function decodeModelBundle(bytes: Uint8Array): BundledModel {
  if (bytes.byteLength < 8 || BUNDLE_MAGIC.some((b, i) => bytes[i] !== b))
    throw new InferenceInputError('the model block is not a shardnet model bundle')
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true)
  if (8 + length > bytes.byteLength) throw new InferenceInputError('the model bundle is truncated')
  let manifest: Record<string, unknown>
  try {
    manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)))
  } catch {
    throw new InferenceInputError('the model bundle manifest is not JSON')
  }
  let decoded: ReturnType<typeof decodeMlpCheckpoint>
  try {
    decoded = decodeMlpCheckpoint(bytes.slice(8 + length))
  } catch (error) {
    throw new InferenceInputError(`the model bundle weights are unusable: ${(error as Error).message}`)
  }
  if (decoded.architecture.inputSize !== PIXEL_COUNT || decoded.architecture.outputSize !== CLASS_COUNT)
    throw new InferenceInputError(
      `the model takes ${decoded.architecture.inputSize} inputs and gives ` +
        `${decoded.architecture.outputSize} classes; ${PIXEL_COUNT} and ${CLASS_COUNT} are supported`,
    )
  return { manifest, ...decoded }
}

/** One shard's accepted result and how it was reached. */
export interface ShardOutcome {
  shard: number
  start: number
  end: number
  replicas: number
  /** peers whose results matched the accepted one */
  agreeing: string[]
  /** peers whose results disagreed (their score dropped) */
  outliers: string[]
  /** peers that failed to answer */
  failed: string[]
  /** runs beyond the first R (re-runs after disagreement or failure) */
  reruns: number
  /** backend classes of the agreeing results */
  backendClasses: string[]
}

/** What `shardnet result ID --out DIR` writes as DIR/predictions.json. */
export interface InferenceOutput {
  format: 'shardnet-predictions/1'
  task: string
  model: string
  count: number
  classes: number
  /** in input order, one per row */
  predictions: Array<{ index: number; class: number; logits: number[] }>
  agreement: InferenceAgreement
  shards: ShardOutcome[]
  tolerance: { absolute: number; relative: number; rule: string }
}

export interface InferenceAgreement {
  shards: number
  replicas: number
  /** results that matched the accepted one, over all shards */
  agreeingResults: number
  /** all results received (agreeing + outliers) */
  results: number
  /** agreeingResults / results */
  agreement: number
  reruns: number
  outliers: string[]
  scores: Record<string, number>
}

export interface CopiedPredictions {
  task: string
  predictionsPath: string
  count: number
  agreement: InferenceAgreement
}

/**
 * Copies a completed inference task's predictions.json to `out` (a directory, created if missing)
 * and checks it reads back; throws InferenceInputError with one sentence otherwise.
 */
export async function copyPredictions(
  task: { id: string; state: string; resultDir?: string; error?: string },
  out: string,
): Promise<CopiedPredictions> {
  if (task.state !== 'completed' || task.resultDir === undefined) {
    throw new InferenceInputError(
      task.state === 'running'
        ? `task ${task.id} is still running and has no result yet; ` +
            `wait with \`shardnet task ${task.id} --watch\``
        : `task ${task.id} ${task.state} and has no ` +
            `result${task.error !== undefined ? ` (${task.error})` : ''}`,
    )
  }
  const source = join(task.resultDir, PREDICTIONS_FILE)
  const predictionsPath = join(out, PREDICTIONS_FILE)
  try {
    await mkdir(out, { recursive: true })
    await copyFile(source, predictionsPath)
  } catch (error) {
    throw new InferenceInputError(
      `cannot copy the predictions of task ${task.id} to ${out}: ` +
        `${(error as NodeJS.ErrnoException).code ?? error}`,
    )
  }
  const output = JSON.parse(await readFile(predictionsPath, 'utf8')) as InferenceOutput
  return { task: task.id, predictionsPath, count: output.count, agreement: output.agreement }
}
