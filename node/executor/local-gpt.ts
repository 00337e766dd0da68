// Local services of the GPT model kind: train a GPT on this machine over the linux-doc-6.1 byte
// corpus and write it out, evaluate a saved GPT in bits per byte over the whole validation split,
// and sample bytes from it. Like local-training.ts they take options objects and report through
// callbacks; they know nothing of flags or terminals (the CLI does that).
import { logger } from '@libp2p/logger'
import type { Backend, BackendKind } from '../../kernels/backend.js'
import {
  BatchSampler,
  ByteCorpus,
  buildCorpus,
  type CorpusFiles,
  defaultCorpusCacheDir,
} from '../../kernels/data/corpus.js'
import { assertSeed } from '../../kernels/data/random.js'
import {
  checkGptConfig,
  GPT_PRESETS,
  type GptConfig,
  GptConfigError,
  type GptPreset,
  initializeGpt,
} from '../../kernels/models/gpt/config.js'
import { type BitsPerByte, evaluateBitsPerByte } from '../../kernels/models/gpt/evaluate.js'
import { generateBytes } from '../../kernels/models/gpt/generate.js'
import { Gpt } from '../../kernels/models/gpt/model.js'
import {
  GPT_BETA1_DEFAULT,
  GPT_BETA2_DEFAULT,
  GPT_GRAD_CLIP_DEFAULT,
  GptTrainer,
  gptLearningRateAt,
} from '../../kernels/models/gpt/training.js'
import type { LearningRateSchedule } from '../../kernels/models/training.js'
import { BATCH_SIZE_MAX, LEARNING_RATE_MAX, SEED_DEFAULT, SEED_MAX } from '../../protocols/tasks/spec.js'
import {
  type BackendChoice,
  checkAboveZero,
  checkInteger,
  openBackend,
  TrainingOptionsError,
} from './local-training.js'
import {
  assertWritableModelDirectory,
  type LoadedGpt,
  loadGpt,
  type ModelManifest,
  saveGptModel,
} from './model-files.js'

const log = logger('shardnet:executor:local-gpt')

export const GPT_MODEL_NAME = 'gpt'

/**
 * Defaults of `shardnet train --local --model gpt`, from runs of the tiny preset on a 2-core machine
 * whose node computes on the cpu backend's native engine (auto picks it there: about 9,300-9,500
 * tokens/s at batch 8, against about 1,050 for lavapipe's webgpu). 14,000 steps of 8 windows of 256
 * bytes are 28.7M tokens, about 51 minutes there; the final evaluation of the whole validation split
 * (3469 windows) takes about 35 s and the interval evaluations of 32 windows 0.3 s each, so the
 * default run fits in an hour and reached 1.904 bits/byte (seed 1), below byte 5-grams (2.11).
 * Batch 8 rather than 16: the small model gains more from twice the updates. AdamW at 3e-3 with 50
 * warmup steps trained without a spike at both batch sizes; cosine to 0 and weight decay 0.1 as in
 * nanoGPT.
 */
export const GPT_TRAINING_DEFAULTS = {
  preset: 'tiny' as GptPreset,
  steps: 14_000,
  batchSize: 8,
  learningRate: 3e-3,
  warmupSteps: 50,
  schedule: 'cosine' as LearningRateSchedule,
  weightDecay: 0.1,
  evalEvery: 200,
  /** windows of the validation split scored at each interval (the final evaluation takes all) */
  evalWindows: 32,
  seed: SEED_DEFAULT,
  backend: 'auto' as BackendChoice,
}

export const GPT_LIMITS = {
  stepsMax: 10_000_000,
  /** a week */
  minutesMax: 7 * 24 * 60,
  batchSizeMax: BATCH_SIZE_MAX,
  learningRateMax: LEARNING_RATE_MAX,
  seedMax: SEED_MAX,
  windowsMax: 10_000_000,
}

/** With --minutes, the step count is fixed from the speed of this many steps (after the first). */
export const CALIBRATION_STEPS = 10

/** Shape fields the user may set over the preset's. */
export type GptShapeOverrides = Partial<Pick<GptConfig, 'context' | 'width' | 'layers' | 'heads'>>

export interface GptTrainingOptions {
  preset: GptPreset
  overrides: GptShapeOverrides
  /** exactly one of steps and minutes */
  steps?: number
  minutes?: number
  batchSize: number
  learningRate: number
  warmupSteps: number
  schedule: LearningRateSchedule
  weightDecay: number
  /** validation on evalWindows windows every evalEvery steps; 0 = only at the end */
  evalEvery: number
  evalWindows: number
  /** windows scored at the end; default: the whole validation split */
  finalWindows?: number
  seed: number
  backend: BackendChoice
  outDirectory: string
  /** where the corpus splits are cached; default: defaultCorpusCacheDir() */
  corpusDirectory?: string
  /** aborting stops training before the next step; nothing is written */
  signal?: AbortSignal
}

export type GptTrainingEvent =
  | {
      type: 'start'
      backend: Backend['info']
      config: GptConfig
      parameterCount: number
      trainingBytes: number
      validationBytes: number
      /** undefined until fixed, with --minutes */
      totalSteps: number | undefined
    }
  | { type: 'calibrated'; totalSteps: number; secondsPerStep: number; minutes: number }
  | {
      type: 'step'
      step: number
      totalSteps: number | undefined
      loss: number
      learningRate: number
      tokensPerSecond: number
      elapsedSeconds: number
    }
  | {
      type: 'evaluation'
      step: number
      /** true for the whole split at the end */
      final: boolean
      result: BitsPerByte
      seconds: number
    }
  /** the final evaluation starts; `whole` when it scores the whole validation split */
  | { type: 'evaluating'; windows: number; whole: boolean }

export interface GptHistoryRecord {
  step: number
  loss: number
  validationBitsPerByte?: number
}

export interface GptTrainingResult {
  outDirectory: string
  weightsPath: string
  manifestPath: string
  manifest: ModelManifest
  config: GptConfig
  validation: BitsPerByte
}

function checkBackendChoice(backend: string): void {
  if (!['auto', 'webgpu', 'cpu'].includes(backend))
    throw new TrainingOptionsError(`--backend must be auto, webgpu or cpu, got ${backend}`)
}

/** The preset with the overrides applied and checked; throws TrainingOptionsError naming the flag. */
export function resolveGptConfig(preset: string, overrides: GptShapeOverrides): GptConfig {
  if (!Object.hasOwn(GPT_PRESETS, preset))
    throw new TrainingOptionsError(
      `unknown preset "${preset}"; presets: ${Object.keys(GPT_PRESETS).join(', ')}`,
    )
  const config: GptConfig = { ...GPT_PRESETS[preset as GptPreset] }
  for (const [field, value] of Object.entries(overrides) as Array<[keyof GptShapeOverrides, number]>) {
    if (value !== undefined) config[field] = value
  }
  try {
    return checkGptConfig(config)
  } catch (error) {
    if (error instanceof GptConfigError) throw new TrainingOptionsError(`--${error.message}`)
    throw error
  }
}

/** Checks every option before any work starts; throws TrainingOptionsError. */
export function validateGptTrainingOptions(options: GptTrainingOptions): GptConfig {
  const config = resolveGptConfig(options.preset, options.overrides)
  if ((options.steps === undefined) === (options.minutes === undefined))
    throw new TrainingOptionsError('give either --steps or --minutes, not both')
  if (options.steps !== undefined) checkInteger('--steps', options.steps, 1, GPT_LIMITS.stepsMax)
  if (options.minutes !== undefined) checkAboveZero('--minutes', options.minutes, GPT_LIMITS.minutesMax)
  checkInteger('--batch', options.batchSize, 1, GPT_LIMITS.batchSizeMax)
  checkAboveZero('--lr', options.learningRate, GPT_LIMITS.learningRateMax)
  checkInteger('--warmup', options.warmupSteps, 0, options.steps ?? GPT_LIMITS.stepsMax)
  if (options.schedule !== 'constant' && options.schedule !== 'cosine')
    throw new TrainingOptionsError(`--schedule must be constant or cosine, got ${options.schedule}`)
  if (!(Number.isFinite(options.weightDecay) && options.weightDecay >= 0 && options.weightDecay < 1))
    throw new TrainingOptionsError(`--weight-decay must be a number in [0, 1), got ${options.weightDecay}`)
  checkInteger('--eval-every', options.evalEvery, 0, GPT_LIMITS.stepsMax)
  checkInteger('--eval-windows', options.evalWindows, 1, GPT_LIMITS.windowsMax)
  if (options.finalWindows !== undefined)
    checkInteger('--final-windows', options.finalWindows, 1, GPT_LIMITS.windowsMax)
  try {
    assertSeed(options.seed)
  } catch {
    throw new TrainingOptionsError(`--seed must be an integer from 0 to ${SEED_MAX}, got ${options.seed}`)
  }
  checkBackendChoice(options.backend)
  return config
}

async function openCorpus(directory: string | undefined): Promise<CorpusFiles> {
  return buildCorpus({ cacheDir: directory ?? defaultCorpusCacheDir() })
}

/** Reads the whole validation split (0.9 MB). */
function readValidation(files: CorpusFiles): Uint8Array {
  const corpus = ByteCorpus.open(files.validation.path)
  try {
    return corpus.readAll()
  } finally {
    corpus.close()
  }
}

/**
 * Lets the event loop run: on the cpu backend every await of a step resolves as a microtask, so a
 * loop of steps would otherwise never let a signal handler (Ctrl-C) or a timer run.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** Trains a GPT on this machine and writes DIR/model.safetensors, DIR/config.json, DIR/model.json. */
export async function trainGptLocal(
  options: GptTrainingOptions,
  onEvent: (event: GptTrainingEvent) => void = () => {},
): Promise<GptTrainingResult> {
  const config = validateGptTrainingOptions(options)
  await assertWritableModelDirectory(options.outDirectory)
  const files = await openCorpus(options.corpusDirectory)
  const validation = readValidation(files)
  const training = ByteCorpus.open(files.training.path)
  const backend = await openBackend(options.backend)
  let gpt: Gpt | undefined
  let trainer: GptTrainer | undefined
  try {
    const sampler = new BatchSampler(training, {
      seed: options.seed,
      batch: options.batchSize,
      context: config.context,
      shard: 0,
      shards: 1,
    })
    gpt = Gpt.create(backend, config, initializeGpt(config, options.seed))
    onEvent({
      type: 'start',
      backend: backend.info,
      config,
      parameterCount: gpt.parameterCount,
      trainingBytes: training.length,
      validationBytes: validation.length,
      totalSteps: options.steps,
    })
    // with --minutes the schedule's length is set once the speed is known; the trainer reads its
    // options at every step, and until then only warmup and the schedule's first steps are used
    const trainerOptions = {
      learningRate: options.learningRate,
      weightDecay: options.weightDecay,
      warmupSteps: options.warmupSteps,
      totalSteps: options.steps ?? GPT_LIMITS.stepsMax,
      schedule: options.schedule,
    }
    trainer = new GptTrainer(gpt, trainerOptions)
    let totalSteps = options.steps
    const tokensPerStep = options.batchSize * config.context
    const history: GptHistoryRecord[] = []
    let trainingSeconds = 0
    let evaluationSeconds = 0
    let calibrationStart = 0
    const started = performance.now()
    const evaluate = async (step: number, final: boolean): Promise<BitsPerByte> => {
      const at = performance.now()
      const all = Math.ceil((validation.length - 1) / config.context)
      const windows = Math.min(all, final ? (options.finalWindows ?? all) : options.evalWindows)
      if (final) onEvent({ type: 'evaluating', windows, whole: windows === all })
      const result = await evaluateBitsPerByte(backend, gpt as Gpt, validation, { maxWindows: windows })
      const seconds = (performance.now() - at) / 1000
      if (!final) evaluationSeconds += seconds
      onEvent({ type: 'evaluation', step, final, result, seconds })
      return result
    }
    let lossSum = 0
    let lossCount = 0
    for (let step = 0; totalSteps === undefined || step < totalSteps; step++) {
      await yieldToEventLoop()
      if (options.signal?.aborted === true) throw options.signal.reason
      const learningRate = gptLearningRateAt(trainerOptions, step)
      const batch = sampler.batchAt(step)
      const lossTensor = await trainer.step(batch.inputs, batch.targets, options.batchSize)
      const [loss] = await backend.read(lossTensor)
      lossTensor.dispose()
      lossSum += loss
      lossCount++
      const elapsed = (performance.now() - started) / 1000 - evaluationSeconds
      trainingSeconds = elapsed
      if (options.minutes !== undefined && totalSteps === undefined) {
        // the first step compiles the device's pipelines: the speed is measured after it
        if (step === 0) calibrationStart = elapsed
        if (step === CALIBRATION_STEPS) {
          const secondsPerStep = (elapsed - calibrationStart) / CALIBRATION_STEPS
          const remaining = options.minutes * 60 - elapsed
          totalSteps = Math.max(step + 1, step + 1 + Math.floor(remaining / secondsPerStep))
          trainerOptions.totalSteps = totalSteps
          onEvent({ type: 'calibrated', totalSteps, secondsPerStep, minutes: options.minutes })
        }
      }
      onEvent({
        type: 'step',
        step: step + 1,
        totalSteps,
        loss,
        learningRate,
        tokensPerSecond: ((step + 1) * tokensPerStep) / Math.max(elapsed, 1e-9),
        elapsedSeconds: elapsed,
      })
      const last = totalSteps !== undefined && step + 1 === totalSteps
      if (options.evalEvery > 0 && (step + 1) % options.evalEvery === 0 && !last) {
        const result = await evaluate(step + 1, false)
        history.push({
          step: step + 1,
          loss: lossSum / lossCount,
          validationBitsPerByte: result.bitsPerByte,
        })
        lossSum = 0
        lossCount = 0
      }
    }
    const steps = totalSteps as number
    const final = await evaluate(steps, true)
    if (options.signal?.aborted === true) throw options.signal.reason
    history.push({
      step: steps,
      ...(lossCount > 0 ? { loss: lossSum / lossCount } : { loss: Number.NaN }),
      validationBitsPerByte: final.bitsPerByte,
    })
    const params = await gpt.getParameters()
    log('trained %d steps in %d s; validation %o', steps, trainingSeconds, final)
    const saved = await saveGptModel(options.outDirectory, config, params, {
      model: GPT_MODEL_NAME,
      dataset: {
        name: 'linux-doc-6.1',
        trainingBytes: files.training.bytes,
        trainingSha256: files.training.sha256,
        validationBytes: files.validation.bytes,
        validationSha256: files.validation.sha256,
      },
      seed: options.seed,
      training: {
        preset: options.preset,
        steps,
        ...(options.minutes === undefined ? {} : { minutes: options.minutes }),
        tokensSeen: steps * tokensPerStep,
        batchSize: options.batchSize,
        context: config.context,
        learningRate: options.learningRate,
        schedule: options.schedule,
        warmupSteps: options.warmupSteps,
        optimizer: {
          name: 'adamw',
          beta1: GPT_BETA1_DEFAULT,
          beta2: GPT_BETA2_DEFAULT,
          epsilon: 1e-8,
          weightDecay: options.weightDecay,
          weightDecayApplies: '2-D weights (matrices and embeddings)',
          gradClip: GPT_GRAD_CLIP_DEFAULT,
        },
        initialization: 'GPT-2: normal(0, 0.02), residual projections / sqrt(2 layers), wpe normal(0, 0.01)',
        sampling: 'seeded random windows of the training split per step (shard 0 of 1)',
        evalEvery: options.evalEvery,
        evalWindows: options.evalWindows,
        ...(Object.keys(options.overrides).length === 0 ? {} : { presetOverrides: { ...options.overrides } }),
      },
      backend: {
        kind: backend.info.kind,
        adapterName: backend.info.adapterName,
        ...(backend.info.fallbackReason === undefined ? {} : { fallbackReason: backend.info.fallbackReason }),
      },
      metrics: {
        validationBitsPerByte: final.bitsPerByte,
        validationBytes: final.bytes,
        validationWindows: final.windows,
        validationWholeSplit: final.bytes === validation.length - 1,
        trainingSeconds,
        evaluationSeconds,
        tokensPerSecond: (steps * tokensPerStep) / trainingSeconds,
      },
      history: history.map((record) => ({ ...record })),
      createdAt: new Date().toISOString(),
    })
    return {
      outDirectory: saved.directory,
      weightsPath: saved.weightsPath,
      manifestPath: saved.manifestPath,
      manifest: saved.manifest,
      config,
      validation: final,
    }
  } finally {
    trainer?.dispose()
    gpt?.dispose()
    training.close()
    backend.destroy()
  }
}

export interface GptEvaluationResult extends BitsPerByte {
  modelDirectory: string
  model: string
  config: GptConfig
  backend: BackendKind
  seconds: number
  /** every byte of the validation split but the first was scored */
  wholeSplit: boolean
  /** bits per byte recorded in model.json at training time */
  recordedBitsPerByte: number
}

/** Evaluates a loaded GPT on the whole validation split. */
export async function evaluateGptLocal(
  loaded: LoadedGpt,
  options: {
    modelDirectory: string
    backend: BackendChoice
    /** score only the first maxWindows windows; default: the whole split */
    maxWindows?: number
    corpusDirectory?: string
  },
): Promise<GptEvaluationResult> {
  checkBackendChoice(options.backend)
  if (options.maxWindows !== undefined)
    checkInteger('--windows', options.maxWindows, 1, GPT_LIMITS.windowsMax)
  const validation = readValidation(await openCorpus(options.corpusDirectory))
  const backend = await openBackend(options.backend)
  try {
    const gpt = Gpt.create(backend, loaded.config, loaded.params)
    try {
      const started = performance.now()
      const result = await evaluateBitsPerByte(backend, gpt, validation, {
        ...(options.maxWindows === undefined ? {} : { maxWindows: options.maxWindows }),
      })
      return {
        ...result,
        modelDirectory: options.modelDirectory,
        model: loaded.manifest.model,
        config: loaded.config,
        backend: backend.kind,
        seconds: (performance.now() - started) / 1000,
        wholeSplit: result.bytes === validation.length - 1,
        recordedBitsPerByte: loaded.manifest.metrics.validationBitsPerByte ?? Number.NaN,
      }
    } finally {
      gpt.dispose()
    }
  } finally {
    backend.destroy()
  }
}

export const GENERATE_LIMITS = {
  tokensMax: 100_000,
  temperatureMax: 10,
  topKMax: 256,
}

export const GENERATE_DEFAULTS = {
  tokens: 256,
  temperature: 0.8,
  topK: 0,
  seed: SEED_DEFAULT,
  backend: 'auto' as BackendChoice,
}

export interface GptGenerateOptions {
  modelDirectory: string
  prompt: Uint8Array
  tokens: number
  temperature: number
  topK: number
  seed: number
  cache: boolean
  backend: BackendChoice
  signal?: AbortSignal
}

export interface GptGenerateEvents {
  onStart?: (info: { backend: Backend['info']; config: GptConfig }) => void
  /** the prompt was longer than the context: this many bytes were dropped from its left */
  onTruncate?: (droppedBytes: number, context: number) => void
  onByte: (byte: number) => void
}

export interface GptGenerateResult {
  tokens: number
  seconds: number
  tokensPerSecond: number
  backend: BackendKind
}

/** Checks generation options before any work; throws TrainingOptionsError naming the flag and range. */
export function validateGenerateOptions(options: GptGenerateOptions): void {
  if (options.prompt.length === 0) throw new TrainingOptionsError('--prompt must hold at least one byte')
  checkInteger('--tokens', options.tokens, 1, GENERATE_LIMITS.tokensMax)
  if (
    !(
      Number.isFinite(options.temperature) &&
      options.temperature >= 0 &&
      options.temperature <= GENERATE_LIMITS.temperatureMax
    )
  )
    throw new TrainingOptionsError(
      `--temperature must be a number from 0 (greedy) to ${GENERATE_LIMITS.temperatureMax}, ` +
        `got ${options.temperature}`,
    )
  if (!Number.isInteger(options.topK) || options.topK < 0 || options.topK > GENERATE_LIMITS.topKMax)
    throw new TrainingOptionsError(
      `--top-k must be an integer from 0 (all bytes) to ${GENERATE_LIMITS.topKMax}, got ${options.topK}`,
    )
  try {
    assertSeed(options.seed)
  } catch {
    throw new TrainingOptionsError(`--seed must be an integer from 0 to ${SEED_MAX}, got ${options.seed}`)
  }
  checkBackendChoice(options.backend)
}

/** Samples bytes from a saved GPT, handing each to onByte as soon as it is drawn. */
export async function generateGptLocal(
  options: GptGenerateOptions,
  events: GptGenerateEvents,
): Promise<GptGenerateResult> {
  validateGenerateOptions(options)
  const loaded = await loadGpt(options.modelDirectory)
  const backend = await openBackend(options.backend)
  try {
    const gpt = Gpt.create(backend, loaded.config, loaded.params)
    try {
      events.onStart?.({ backend: backend.info, config: loaded.config })
      const started = performance.now()
      let count = 0
      for await (const byte of generateBytes(backend, gpt, options.prompt, {
        tokens: options.tokens,
        temperature: options.temperature,
        topK: options.topK,
        seed: options.seed,
        cache: options.cache,
        onTruncate: (dropped) => events.onTruncate?.(dropped, loaded.config.context),
      })) {
        events.onByte(byte)
        count++
        await yieldToEventLoop()
        if (options.signal?.aborted === true) break
      }
      const seconds = (performance.now() - started) / 1000
      return {
        tokens: count,
        seconds,
        tokensPerSecond: count / Math.max(seconds, 1e-9),
        backend: backend.kind,
      }
    } finally {
      gpt.dispose()
    }
  } finally {
    backend.destroy()
  }
}
