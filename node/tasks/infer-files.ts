// Files and blocks of an inference task.
//
// Input file (`shardnet submit infer MODEL --input FILE`): JSON, one of
//   { "inputs": [[784 numbers], ...] }   (preferred)
//   { "images": [[784 numbers], ...] }   (the name `submit infer --help` shows)
//   [[784 numbers], ...]                 (a bare array of rows)
// Each row is one 28x28 image, row-major, pixel values as the model was trained on (MNIST: 0..1).
// Every value must be a finite number; at most INFER_ROWS_MAX rows.
//
// Blocks (content-addressed, so a worker verifies what it fetched by CID):
// - the model bundle: "SNMB" | u32 LE manifest length | model.json bytes | model.safetensors bytes.
//   `shardnet submit infer CID` takes the CID of such a block.
// - an input shard: the rows as float32 little-endian, rows x 784; the row count is in the request.
// Output (`shardnet result ID --out DIR` writes DIR/predictions.json): see InferenceOutput.
import { copyFile, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CLASS_COUNT, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { decodeMlpCheckpoint } from '../../kernels/models/checkpoint.js'
import type { HostLayer, MlpArchitecture } from '../../kernels/models/mlp.js'
import { loadModel, MANIFEST_FILE, WEIGHTS_FILE } from '../executor/model-files.js'

export const INFER_ROWS_MAX = 100_000
export const INPUT_FILE_BYTES_MAX = 512 * 1024 * 1024
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
