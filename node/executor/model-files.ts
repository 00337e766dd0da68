// A trained model on disk: DIR/model.safetensors (the weights) and DIR/model.json (what the model
// is and how it was made); a GPT also has DIR/config.json (Hugging Face's GPT2Config, so that
// transformers loads the directory as it is). Every file is written to a temporary file in DIR,
// fsynced and renamed into place, model.json last, and DIR (and each folder created for it) is
// fsynced: the model is durable when saveModel resolves, before a task record may say completed.
// model.json records the weights' sha256, so a reader never accepts files that do not belong
// together (e.g. after a crash between two renames).
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { CheckpointError, decodeMlpCheckpoint, encodeMlpCheckpoint } from '../../kernels/models/checkpoint.js'
import {
  decodeGptCheckpoint,
  encodeGptCheckpoint,
  GptCheckpointError,
  gptConfigFromHuggingFace,
  gptHuggingFaceConfig,
} from '../../kernels/models/gpt/checkpoint.js'
import { type GptConfig, gptParameterCount } from '../../kernels/models/gpt/config.js'
import { type HostLayer, type MlpArchitecture, parameterCount } from '../../kernels/models/mlp.js'
import { SafetensorsError } from '../../kernels/models/safetensors.js'
import { ensureDurableFolder, writeFileAtomic } from '../store/atomic-file.js'
import { isStorageFaultCode, storageFaultSentence } from '../store/storage-fault.js'

export const WEIGHTS_FILE = 'model.safetensors'
export const MANIFEST_FILE = 'model.json'
/** Hugging Face's config of a GPT */
export const CONFIG_FILE = 'config.json'
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

const mlpArchitectureSchema = z.object({
  type: z.literal('mlp'),
  activation: z.literal('relu'),
  inputSize: z.number().int().positive(),
  hiddenSizes: z.array(z.number().int().positive()),
  outputSize: z.number().int().positive(),
})

const gptArchitectureSchema = z.object({
  type: z.literal('gpt'),
  vocabSize: z.number().int().positive(),
  context: z.number().int().positive(),
  width: z.number().int().positive(),
  layers: z.number().int().positive(),
  heads: z.number().int().positive(),
  layerNormEpsilon: z.number().positive(),
})

const architectureSchema = z.discriminatedUnion('type', [mlpArchitectureSchema, gptArchitectureSchema])

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
  /** mnist-mlp: testAccuracy and testLoss; gpt: validationBitsPerByte */
  metrics: z
    .object({
      testAccuracy: z.number().optional(),
      testLoss: z.number().optional(),
      validationBitsPerByte: z.number().optional(),
    })
    .catchall(z.unknown()),
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
  return writeModelFiles(directory, weights, [], manifest)
}

/** The manifest's description of a GPT: its shape and parameter count. */
export function describeGpt(config: GptConfig): Pick<ModelManifest, 'architecture' | 'parameterCount'> {
  return { architecture: { type: 'gpt', ...config }, parameterCount: gptParameterCount(config) }
}

/** Writes a GPT's model.safetensors (Hugging Face names), config.json and model.json. */
export async function saveGptModel(
  directory: string,
  config: GptConfig,
  params: Float32Array,
  manifest: Omit<ModelManifest, 'weights' | 'format' | 'architecture' | 'parameterCount'>,
): Promise<SavedModel> {
  const weights = encodeGptCheckpoint(config, params, { model: manifest.model, seed: String(manifest.seed) })
  const hfConfig = `${JSON.stringify(gptHuggingFaceConfig(config), null, 2)}\n`
  return writeModelFiles(directory, weights, [[CONFIG_FILE, hfConfig]], {
    ...manifest,
    ...describeGpt(config),
  })
}

async function writeModelFiles(
  directory: string,
  weights: Uint8Array,
  extraFiles: ReadonlyArray<[string, string]>,
  manifest: Omit<ModelManifest, 'weights' | 'format'>,
): Promise<SavedModel> {
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
    await ensureDurableFolder(directory)
    await writeFileAtomic(weightsPath, weights)
    for (const [name, contents] of extraFiles) await writeFileAtomic(join(directory, name), contents)
    await writeFileAtomic(manifestPath, `${JSON.stringify(complete, null, 2)}\n`)
  } catch (error) {
    if (isStorageFaultCode(error))
      throw new ModelFilesError(storageFaultSentence(error.code, directory, 'output'))
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

/** A GPT model directory, read and checked. */
export interface LoadedGpt {
  manifest: ModelManifest
  config: GptConfig
  /** flat parameters (kernels/models/gpt/config.ts layout) */
  params: Float32Array
}

/** An MLP or a GPT, by the manifest's architecture type. */
export type LoadedAnyModel = ({ type: 'mlp' } & LoadedModel) | ({ type: 'gpt' } & LoadedGpt)

/** Reads and checks a model directory of either kind; throws ModelFilesError with one clear sentence. */
export async function loadAnyModel(directory: string): Promise<LoadedAnyModel> {
  const { manifest, weights, weightsPath } = await readManifestAndWeights(directory)
  if (manifest.architecture.type === 'mlp') {
    return { type: 'mlp', ...checkMlp(manifest, weights, weightsPath) }
  }
  const config = await readGptConfig(directory, manifest)
  try {
    return { type: 'gpt', manifest, config, params: decodeGptCheckpoint(weights, config) }
  } catch (error) {
    if (error instanceof SafetensorsError || error instanceof GptCheckpointError) {
      throw new ModelFilesError(
        `the weights file ${weightsPath} does not fit ${CONFIG_FILE}: ${error.message}`,
      )
    }
    throw error
  }
}

/**
 * A GPT model directory's model.json and config.json, read and checked against each other, without
 * reading the weights (node/executor/gpt-tensors.ts reads the tensors it needs). Throws ModelFilesError.
 */
export async function readGptManifestAndConfig(
  directory: string,
): Promise<{ manifest: ModelManifest; config: GptConfig }> {
  const manifest = await readManifest(directory)
  if (manifest.architecture.type !== 'gpt') throw new ModelFilesError(`${directory} holds an MLP, not a GPT`)
  return { manifest, config: await readGptConfig(directory, manifest) }
}

/** config.json of a GPT whose model.json is `manifest`: parsed, and the same model as model.json. */
async function readGptConfig(directory: string, manifest: ModelManifest): Promise<GptConfig> {
  const configPath = join(directory, CONFIG_FILE)
  let config: GptConfig
  try {
    config = gptConfigFromHuggingFace(JSON.parse(await readFile(configPath, 'utf8')))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new ModelFilesError(`the GPT's ${configPath} is missing`)
    if (error instanceof SyntaxError) throw new ModelFilesError(`${configPath} is not valid JSON`)
    if (error instanceof GptCheckpointError) throw new ModelFilesError(`${configPath}: ${error.message}`)
    throw new ModelFilesError(`cannot read ${configPath}: ${code ?? error}`)
  }
  const architecture = manifest.architecture
  if (architecture.type !== 'gpt') throw new ModelFilesError(`${MANIFEST_FILE} does not describe a GPT`)
  const { type: _type, ...described } = architecture
  const mismatch = (Object.keys(described) as Array<keyof GptConfig>).find(
    (key) => described[key] !== config[key],
  )
  if (mismatch !== undefined) {
    throw new ModelFilesError(
      `${CONFIG_FILE} and ${MANIFEST_FILE} disagree about the model ` +
        `(${mismatch}: ${config[mismatch]} against ` +
        `${described[mismatch]})`,
    )
  }
  return config
}

/** Reads and checks a GPT model directory; an MLP directory is refused with a sentence. */
export async function loadGpt(directory: string): Promise<LoadedGpt> {
  const model = await loadAnyModel(directory)
  if (model.type !== 'gpt') throw new ModelFilesError(`${directory} holds an MLP, not a GPT`)
  return model
}

/** Reads and checks an MLP model directory; throws ModelFilesError with one clear sentence. */
export async function loadModel(directory: string): Promise<LoadedModel> {
  const model = await loadAnyModel(directory)
  if (model.type !== 'mlp') {
    throw new ModelFilesError(
      `${directory} holds a GPT: this command takes an MLP ` +
        '(use `shardnet generate` or `shardnet eval` for a GPT)',
    )
  }
  const { type: _type, ...loaded } = model
  return loaded
}

/** model.json of a model directory, parsed and checked (ModelFilesError otherwise). */
async function readManifest(directory: string): Promise<ModelManifest> {
  const manifestPath = join(directory, MANIFEST_FILE)
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
  return checked.data
}

async function readManifestAndWeights(
  directory: string,
): Promise<{ manifest: ModelManifest; weights: Uint8Array; weightsPath: string }> {
  const manifest = await readManifest(directory)
  const weightsPath = join(directory, WEIGHTS_FILE)
  const weightsStat = await stat(weightsPath).catch(() => undefined)
  if (weightsStat === undefined) throw new ModelFilesError(`the weights file ${weightsPath} is missing`)
  if (weightsStat.size > WEIGHTS_BYTES_MAX) {
    throw new ModelFilesError(
      `the weights file ${weightsPath} is ${weightsStat.size} bytes, above the ${WEIGHTS_BYTES_MAX} limit`,
    )
  }
  const weights = new Uint8Array(await readFile(weightsPath))
  const sha256 = createHash('sha256').update(weights).digest('hex')
  if (sha256 !== manifest.weights.sha256 || weights.length !== manifest.weights.bytes) {
    throw new ModelFilesError(
      `the weights file ${weightsPath} does not match ${MANIFEST_FILE} (sha256 differs)`,
    )
  }
  return { manifest, weights, weightsPath }
}

function checkMlp(manifest: ModelManifest, weights: Uint8Array, weightsPath: string): LoadedModel {
  let decoded: ReturnType<typeof decodeMlpCheckpoint>
  try {
    decoded = decodeMlpCheckpoint(weights)
  } catch (error) {
    if (error instanceof SafetensorsError || error instanceof CheckpointError) {
      throw new ModelFilesError(`the weights file ${weightsPath} is corrupt: ${error.message}`)
    }
    throw error
  }
  const expected = manifest.architecture
  if (expected.type !== 'mlp') throw new ModelFilesError(`${MANIFEST_FILE} does not describe an MLP`)
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
