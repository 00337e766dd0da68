// Local training and evaluation services: train a registered model on this machine's backend and
// write it out; evaluate a saved model on the test split. They take options objects and report
// progress through callbacks; they know nothing of flags or terminals (the CLI does that).
import { stat } from 'node:fs/promises'
import { logger } from '@libp2p/logger'
import type { Backend, BackendKind } from '../../kernels/backend.js'
import { CLASS_COUNT, loadMnist, type MnistSplit, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { assertSeed } from '../../kernels/data/random.js'
import { epochOrder } from '../../kernels/data/sharding.js'
import { createBackend } from '../../kernels/index.js'
import { Mlp, type MlpArchitecture } from '../../kernels/models/mlp.js'
import { AdamWOptimizer } from '../../kernels/models/optimizer.js'
import {
  type EvaluationResult,
  evaluate,
  type LearningRateSchedule,
  learningRateAt,
  SCHEDULE_DEFAULT,
  trainEpoch,
  WEIGHT_DECAY_DEFAULT,
} from '../../kernels/models/training.js'
import {
  BATCH_SIZE_MAX,
  HIDDEN_LAYERS_MAX,
  HIDDEN_SIZES_DEFAULT,
  LAYER_WIDTH_MAX,
  LEARNING_RATE_DEFAULT,
  LEARNING_RATE_MAX,
  SEED_DEFAULT,
  SEED_MAX,
} from '../../protocols/tasks/spec.js'
import { defaultDataDir } from '../store/data-dir.js'
import { openCapabilityBackend, probedCapability } from './backend-probe.js'
import {
  assertWritableModelDirectory,
  describeArchitecture,
  loadModel,
  type ModelManifest,
  saveModel,
} from './model-files.js'

const log = logger('shardnet:executor:local-training')

export type BackendChoice = BackendKind | 'auto'

/** The models `train --local` knows. */
export const MODELS = {
  'mnist-mlp': { dataset: 'mnist', inputSize: PIXEL_COUNT, outputSize: CLASS_COUNT },
} as const

export type ModelName = keyof typeof MODELS

/**
 * Defaults chosen by measurement (bench/RESULTS.md "Training"): 784-256-10 with Adam at 1e-3,
 * batch 64, 20 epochs, constant learning rate, reaches 94.3-95.1% test accuracy on the split over
 * seeds 1-10 (every epoch from 16 on at or above 94.04%); 10-15 epochs with a cosine decay stopped
 * short of 94%, and a rate of 2e-3 stalled near 91% for one seed.
 */
export const TRAINING_DEFAULTS = {
  model: 'mnist-mlp' as ModelName,
  hiddenSizes: HIDDEN_SIZES_DEFAULT,
  epochs: 20,
  batchSize: 64,
  learningRate: LEARNING_RATE_DEFAULT,
  schedule: SCHEDULE_DEFAULT,
  weightDecay: WEIGHT_DECAY_DEFAULT,
  seed: SEED_DEFAULT,
  backend: 'auto' as BackendChoice,
}

export const LIMITS = {
  epochsMax: 10_000,
  batchSizeMax: BATCH_SIZE_MAX,
  learningRateMax: LEARNING_RATE_MAX,
  hiddenLayersMax: HIDDEN_LAYERS_MAX,
  layerWidthMax: LAYER_WIDTH_MAX,
  seedMax: SEED_MAX,
}

/** Input the user can fix (flag out of range, unknown model, no WebGPU when asked for). */
export class TrainingOptionsError extends Error {
  static override name = 'TrainingOptionsError'
  constructor(message: string) {
    super(message)
    this.name = 'TrainingOptionsError'
  }
}

export interface LocalTrainingOptions {
  model: string
  hiddenSizes: readonly number[]
  epochs: number
  batchSize: number
  learningRate: number
  schedule: LearningRateSchedule
  weightDecay: number
  seed: number
  backend: BackendChoice
  outDirectory: string
  /** digits in the mnist package's file format; default: the installed package */
  digitsDirectory?: string
  /** aborting stops training before the next batch; nothing is written */
  signal?: AbortSignal
}

export type TrainingEvent =
  | { type: 'start'; backend: Backend['info']; trainCount: number; testCount: number; epochs: number }
  | {
      type: 'batch'
      epoch: number
      samples: number
      trainCount: number
      meanLoss: number
      samplesPerSecond: number
    }
  | {
      type: 'epoch'
      epoch: number
      trainLoss: number
      testAccuracy: number
      seconds: number
      samplesPerSecond: number
    }

export interface EpochRecord {
  epoch: number
  trainLoss: number
  testAccuracy: number
  testLoss: number
  seconds: number
  samplesPerSecond: number
}

export interface LocalTrainingResult {
  outDirectory: string
  weightsPath: string
  manifestPath: string
  manifest: ModelManifest
  architecture: MlpArchitecture
  testAccuracy: number
}

/** Refuses a flag value that is not a number above 0 and at most `max`. */
export function checkAboveZero(name: string, value: number, max: number): void {
  if (!(Number.isFinite(value) && value > 0 && value <= max))
    throw new TrainingOptionsError(`${name} must be a number above 0 and at most ${max}, got ${value}`)
}

export function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new TrainingOptionsError(`${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
}

/** Checks every option before any work starts; throws TrainingOptionsError. */
export function validateTrainingOptions(options: LocalTrainingOptions): void {
  if (!Object.hasOwn(MODELS, options.model)) {
    throw new TrainingOptionsError(
      `unknown model "${options.model}"; known models: ${Object.keys(MODELS).join(', ')}`,
    )
  }
  checkInteger('--epochs', options.epochs, 1, LIMITS.epochsMax)
  checkInteger('--batch', options.batchSize, 1, LIMITS.batchSizeMax)
  checkAboveZero('--lr', options.learningRate, LIMITS.learningRateMax)
  if (!(Number.isFinite(options.weightDecay) && options.weightDecay >= 0 && options.weightDecay < 1)) {
    throw new TrainingOptionsError(`--weight-decay must be a number in [0, 1), got ${options.weightDecay}`)
  }
  if (options.hiddenSizes.length > LIMITS.hiddenLayersMax) {
    throw new TrainingOptionsError(
      `--hidden takes at most ${LIMITS.hiddenLayersMax} layers, got ${options.hiddenSizes.length}`,
    )
  }
  for (const width of options.hiddenSizes)
    checkInteger('every --hidden width', width, 1, LIMITS.layerWidthMax)
  try {
    assertSeed(options.seed)
  } catch {
    throw new TrainingOptionsError(`--seed must be an integer from 0 to ${SEED_MAX}, got ${options.seed}`)
  }
  if (options.schedule !== 'constant' && options.schedule !== 'cosine') {
    throw new TrainingOptionsError(`--schedule must be constant or cosine, got ${options.schedule}`)
  }
  if (!['auto', 'webgpu', 'cpu'].includes(options.backend)) {
    throw new TrainingOptionsError(`--backend must be auto, webgpu or cpu, got ${options.backend}`)
  }
}

/** the folder when it exists, else undefined */
async function existingFolder(path: string): Promise<string | undefined> {
  try {
    return (await stat(path)).isDirectory() ? path : undefined
  } catch {
    return undefined
  }
}

/**
 * Opens the backend the user asked for. 'auto': the one the backend probe measures fastest here, as a
 * daemon does (node/executor/backend-probe.ts; the figures are cached in the default data dir when it
 * exists). 'cpu': the cpu backend on its fastest engine. 'webgpu': WebGPU, refusing the cpu fallback.
 */
export async function openBackend(choice: BackendChoice): Promise<Backend> {
  if (choice === 'auto') {
    const dataDir = await existingFolder(defaultDataDir())
    const capability = await probedCapability(dataDir === undefined ? {} : { dataDir }).measure()
    log(
      'computing on %s%s, the fastest measured (%d GFLOP/s)',
      capability.backend,
      capability.cpuEngine === undefined ? '' : `/${capability.cpuEngine}`,
      capability.matmulGflops,
    )
    return openCapabilityBackend(capability)
  }
  const backend = await createBackend({ prefer: choice })
  if (choice === 'webgpu' && backend.kind !== 'webgpu') {
    backend.destroy()
    throw new TrainingOptionsError(
      `${backend.info.fallbackReason ?? 'webgpu unavailable: no adapter'}; use --backend cpu or auto`,
    )
  }
  if (backend.info.fallbackReason !== undefined) log('using the cpu backend: %s', backend.info.fallbackReason)
  return backend
}

async function loadDataset(digitsDirectory: string | undefined): Promise<MnistSplit> {
  return loadMnist(digitsDirectory === undefined ? {} : { digitsDirectory })
}

/** Trains a model on this machine and writes DIR/model.safetensors and DIR/model.json. */
export async function trainLocal(
  options: LocalTrainingOptions,
  onEvent: (event: TrainingEvent) => void = () => {},
): Promise<LocalTrainingResult> {
  validateTrainingOptions(options)
  await assertWritableModelDirectory(options.outDirectory)
  const spec = MODELS[options.model as ModelName]
  const architecture: MlpArchitecture = {
    inputSize: spec.inputSize,
    hiddenSizes: [...options.hiddenSizes],
    outputSize: spec.outputSize,
  }
  const data = await loadDataset(options.digitsDirectory)
  const backend = await openBackend(options.backend)
  try {
    onEvent({
      type: 'start',
      backend: backend.info,
      trainCount: data.train.count,
      testCount: data.test.count,
      epochs: options.epochs,
    })
    const model = Mlp.initialize(backend, architecture, options.seed)
    const optimizer = new AdamWOptimizer(backend, model.parameters(), { weightDecay: options.weightDecay })
    const stepsPerEpoch = Math.ceil(data.train.count / options.batchSize)
    const totalSteps = stepsPerEpoch * options.epochs
    const history: EpochRecord[] = []
    let test: EvaluationResult | undefined
    let trainingSeconds = 0
    for (let epoch = 0; epoch < options.epochs; epoch++) {
      const started = performance.now()
      const order = epochOrder(data.train.count, options.seed, epoch)
      const result = await trainEpoch(model, optimizer, data.train, order, {
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        batchSize: options.batchSize,
        learningRate: (step) => learningRateAt(options.schedule, options.learningRate, step, totalSteps),
        onProgress: (progress) => {
          const seconds = (performance.now() - started) / 1000
          onEvent({
            type: 'batch',
            epoch: epoch + 1,
            samples: progress.samples,
            trainCount: data.train.count,
            meanLoss: progress.meanLoss,
            samplesPerSecond: progress.samples / Math.max(seconds, 1e-9),
          })
        },
      })
      const seconds = (performance.now() - started) / 1000
      trainingSeconds += seconds
      test = await evaluate(model, data.test)
      const record: EpochRecord = {
        epoch: epoch + 1,
        trainLoss: result.meanLoss,
        testAccuracy: test.accuracy,
        testLoss: test.meanLoss,
        seconds,
        samplesPerSecond: data.train.count / seconds,
      }
      history.push(record)
      log('epoch %d: %o', epoch + 1, record)
      onEvent({ type: 'epoch', ...record })
    }
    const train = await evaluate(model, data.train)
    const layers = await model.toHost()
    model.dispose()
    optimizer.dispose()
    const finalTest = test!
    const saved = await saveModel(options.outDirectory, architecture, layers, {
      model: options.model,
      ...describeArchitecture(architecture),
      dataset: { ...data.split },
      seed: options.seed,
      training: {
        epochs: options.epochs,
        batchSize: options.batchSize,
        learningRate: options.learningRate,
        schedule: options.schedule,
        optimizer: {
          name: 'adamw',
          beta1: 0.9,
          beta2: 0.999,
          epsilon: 1e-8,
          weightDecay: options.weightDecay,
        },
        initialization: 'he-normal weights (std sqrt(2/fanIn)), zero biases',
        shuffle: 'seeded Fisher-Yates per epoch (stream shuffle/epoch-N of the seed)',
        steps: totalSteps,
      },
      backend: {
        kind: backend.info.kind,
        adapterName: backend.info.adapterName,
        ...(backend.info.fallbackReason === undefined ? {} : { fallbackReason: backend.info.fallbackReason }),
      },
      metrics: {
        testAccuracy: finalTest.accuracy,
        testLoss: finalTest.meanLoss,
        trainAccuracy: train.accuracy,
        trainLoss: train.meanLoss,
        testPerClass: finalTest.perClass,
        trainingSeconds,
        samplesPerSecond: (data.train.count * options.epochs) / trainingSeconds,
      },
      history: history.map((record) => ({ ...record })),
      createdAt: new Date().toISOString(),
    })
    return {
      outDirectory: saved.directory,
      weightsPath: saved.weightsPath,
      manifestPath: saved.manifestPath,
      manifest: saved.manifest,
      architecture,
      testAccuracy: finalTest.accuracy,
    }
  } finally {
    backend.destroy()
  }
}

export interface LocalEvaluationOptions {
  modelDirectory: string
  backend: BackendChoice
  digitsDirectory?: string
}

export interface LocalEvaluationResult extends EvaluationResult {
  modelDirectory: string
  model: string
  architecture: MlpArchitecture
  backend: BackendKind
  /** accuracy recorded in model.json at training time */
  recordedTestAccuracy: number
}

/** Evaluates a saved model on the test split of its dataset. */
export async function evaluateLocal(options: LocalEvaluationOptions): Promise<LocalEvaluationResult> {
  if (!['auto', 'webgpu', 'cpu'].includes(options.backend)) {
    throw new TrainingOptionsError(`--backend must be auto, webgpu or cpu, got ${options.backend}`)
  }
  const saved = await loadModel(options.modelDirectory)
  if (!Object.hasOwn(MODELS, saved.manifest.model))
    throw new TrainingOptionsError(
      `the model in ${options.modelDirectory} is of unknown kind "${saved.manifest.model}"`,
    )
  const spec = MODELS[saved.manifest.model as ModelName]
  if (saved.architecture.inputSize !== spec.inputSize || saved.architecture.outputSize !== spec.outputSize) {
    throw new TrainingOptionsError(
      `the model in ${options.modelDirectory} takes ${saved.architecture.inputSize} inputs and gives ` +
        `${saved.architecture.outputSize} outputs, not the ${spec.inputSize} and ${spec.outputSize} of ` +
        `${saved.manifest.model}`,
    )
  }
  const data = await loadDataset(options.digitsDirectory)
  const backend = await openBackend(options.backend)
  try {
    const model = Mlp.fromHost(backend, saved.architecture, saved.layers)
    const result = await evaluate(model, data.test)
    model.dispose()
    return {
      ...result,
      modelDirectory: options.modelDirectory,
      model: saved.manifest.model,
      architecture: saved.architecture,
      backend: backend.kind,
      recordedTestAccuracy: saved.manifest.metrics.testAccuracy ?? Number.NaN,
    }
  } finally {
    backend.destroy()
  }
}
