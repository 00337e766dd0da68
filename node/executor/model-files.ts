// A trained model on disk: DIR/model.safetensors (the weights) and DIR/model.json (what the model
// is and how it was made). Both are written to temporary files in DIR and renamed into place, the
// weights first; model.json records the weights' sha256, so a reader never accepts a pair that
// does not belong together (e.g. after a crash between the two renames).
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { CheckpointError, decodeMlpCheckpoint, encodeMlpCheckpoint } from '../../kernels/models/checkpoint.js'
import { type HostLayer, type MlpArchitecture, parameterCount } from '../../kernels/models/mlp.js'
import { SafetensorsError } from '../../kernels/models/safetensors.js'

export const WEIGHTS_FILE = 'model.safetensors'
export const MANIFEST_FILE = 'model.json'
export const MANIFEST_FORMAT = 'shardnet-model/1'
/** checkpoints above this size are refused before reading (784-256-10 is 0.8 MB) */
export const WEIGHTS_BYTES_MAX = 1 << 30

/** A model directory that cannot be read or written; the message is one sentence for the user. */
export class ModelFilesError extends Error {
  static override name = 'ModelFilesError'
  constructor(message: string) {
    super(message)
    this.name = 'ModelFilesError'
  }
}

const architectureSchema = z.object({
  type: z.literal('mlp'),
  activation: z.literal('relu'),
  inputSize: z.number().int().positive(),
  hiddenSizes: z.array(z.number().int().positive()),
  outputSize: z.number().int().positive(),
})

const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  model: z.string(),
  architecture: architectureSchema,
  parameterCount: z.number().int().positive(),
  weights: z.object({
    file: z.literal(WEIGHTS_FILE),
    bytes: z.number().int().positive(),
    sha256: z.string(),
  }),
  dataset: z.record(z.string(), z.unknown()),
  seed: z.number().int().nonnegative(),
  training: z.record(z.string(), z.unknown()),
  backend: z.record(z.string(), z.unknown()),
  metrics: z.object({ testAccuracy: z.number(), testLoss: z.number() }).catchall(z.unknown()),
  history: z.array(z.record(z.string(), z.unknown())),
  createdAt: z.string(),
})

export type ModelManifest = z.infer<typeof manifestSchema>

/** The manifest's description of an MLP: its architecture (ReLU between layers) and parameter count. */
export function describeArchitecture(
  architecture: MlpArchitecture,
): Pick<ModelManifest, 'architecture' | 'parameterCount'> {
  return {
    architecture: {
      type: 'mlp',
      activation: 'relu',
      ...architecture,
      hiddenSizes: [...architecture.hiddenSizes],
    },
    parameterCount: parameterCount(architecture),
  }
}

export interface SavedModel {
  directory: string
  weightsPath: string
  manifestPath: string
  manifest: ModelManifest
}

async function writeAtomically(path: string, contents: Uint8Array | string): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}-${Date.now()}`
  try {
    await writeFile(temporary, contents, { flag: 'wx' })
    await rename(temporary, path)
  } catch (error) {
    await rm(temporary, { force: true })
    throw error
  }
}

/** Refuses an output path that exists and is not a directory, before any work is done. */
export async function assertWritableModelDirectory(directory: string): Promise<void> {
  const existing = await stat(directory).catch(() => undefined)
  if (existing !== undefined && !existing.isDirectory()) {
    throw new ModelFilesError(`the output path ${directory} exists and is not a directory`)
  }
}

/** Writes weights and manifest (the manifest's weights entry is filled in here). */
export async function saveModel(
  directory: string,
  architecture: MlpArchitecture,
  layers: readonly HostLayer[],
  manifest: Omit<ModelManifest, 'weights' | 'format'>,
): Promise<SavedModel> {
  const weights = encodeMlpCheckpoint(architecture, layers, {
    model: manifest.model,
    seed: String(manifest.seed),
  })
  const complete: ModelManifest = {
    format: MANIFEST_FORMAT,
    ...manifest,
    weights: {
      file: WEIGHTS_FILE,
      bytes: weights.length,
      sha256: createHash('sha256').update(weights).digest('hex'),
    },
  }
  const weightsPath = join(directory, WEIGHTS_FILE)
  const manifestPath = join(directory, MANIFEST_FILE)
  try {
    await mkdir(directory, { recursive: true })
    await writeAtomically(weightsPath, weights)
    await writeAtomically(manifestPath, `${JSON.stringify(complete, null, 2)}\n`)
  } catch (error) {
    throw new ModelFilesError(
      `cannot write the model to ${directory}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    )
  }
  return { directory, weightsPath, manifestPath, manifest: complete }
}

export interface LoadedModel {
  manifest: ModelManifest
  architecture: MlpArchitecture
  layers: HostLayer[]
}

/** Reads and checks a model directory; throws ModelFilesError with one clear sentence. */
export async function loadModel(directory: string): Promise<LoadedModel> {
  const manifestPath = join(directory, MANIFEST_FILE)
  const weightsPath = join(directory, WEIGHTS_FILE)
  let manifestText: string
  try {
    manifestText = await readFile(manifestPath, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new ModelFilesError(
      code === 'ENOENT'
        ? `no model found in ${directory}: ${MANIFEST_FILE} is missing (train one with \`shardnet ` +
            `train --local --out ${directory}\`)`
        : `cannot read ${manifestPath}: ${code ?? error}`,
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(manifestText)
  } catch {
    throw new ModelFilesError(`${manifestPath} is not valid JSON`)
  }
  const checked = manifestSchema.safeParse(parsed)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    throw new ModelFilesError(
      `${manifestPath} is not a shardnet model manifest (${issue.path.join('.') || 'root'}: ` +
        `${issue.message})`,
    )
  }
  const manifest = checked.data
  const weightsStat = await stat(weightsPath).catch(() => undefined)
  if (weightsStat === undefined) throw new ModelFilesError(`the weights file ${weightsPath} is missing`)
  if (weightsStat.size > WEIGHTS_BYTES_MAX) {
    throw new ModelFilesError(
      `the weights file ${weightsPath} is ${weightsStat.size} bytes, above the ${WEIGHTS_BYTES_MAX} limit`,
    )
  }
  const weights = new Uint8Array(await readFile(weightsPath))
  let decoded: ReturnType<typeof decodeMlpCheckpoint>
  try {
    decoded = decodeMlpCheckpoint(weights)
  } catch (error) {
    if (error instanceof SafetensorsError || error instanceof CheckpointError) {
      throw new ModelFilesError(`the weights file ${weightsPath} is corrupt: ${error.message}`)
    }
    throw error
  }
  const sha256 = createHash('sha256').update(weights).digest('hex')
  if (sha256 !== manifest.weights.sha256 || weights.length !== manifest.weights.bytes) {
    throw new ModelFilesError(
      `the weights file ${weightsPath} does not match ${MANIFEST_FILE} (sha256 differs)`,
    )
  }
  const expected = manifest.architecture
  const actual = decoded.architecture
  if (
    expected.inputSize !== actual.inputSize ||
    expected.outputSize !== actual.outputSize ||
    expected.hiddenSizes.join(',') !== actual.hiddenSizes.join(',')
  ) {
    throw new ModelFilesError(
      `the weights in ${weightsPath} do not have the architecture ${MANIFEST_FILE} describes`,
    )
  }
  return { manifest, architecture: actual, layers: decoded.layers }
}
