// `shardnet train --local`: parses and checks flags, shows progress on stderr, and calls the local
// training service of the model (node/executor/local-training.ts for mnist-mlp, local-gpt.ts for
// gpt), which knows nothing of flags. Defaults differ per model, so commander holds none of them:
// they are filled in once --model is known, and a flag of the other model is refused.
import cliProgress from 'cli-progress'
import { type Command, Option } from 'commander'
import pc from 'picocolors'
import { CorpusError } from '../../kernels/data/corpus.js'
import { DatasetError } from '../../kernels/data/mnist.js'
import { GPT_PRESETS } from '../../kernels/models/gpt/config.js'
import { GenerateOptionsError } from '../../kernels/models/gpt/generate.js'
import { TrainingDivergedError } from '../../kernels/models/training.js'
import {
  GPT_MODEL_NAME,
  GPT_TRAINING_DEFAULTS,
  type GptTrainingEvent,
  type GptTrainingOptions,
  trainGptLocal,
} from '../executor/local-gpt.js'
import {
  type BackendChoice,
  type LocalTrainingOptions,
  MODELS,
  TRAINING_DEFAULTS,
  type TrainingEvent,
  TrainingOptionsError,
  trainLocal,
} from '../executor/local-training.js'
import { ModelFilesError } from '../executor/model-files.js'
import { UserError } from './errors.js'

/** A flag value as a number, refusing text that is not one (commander passes strings). */
export function parseNumberFlag(flag: string, text: string): number {
  const value = text.trim() === '' ? Number.NaN : Number(text)
  if (Number.isNaN(value)) throw new UserError(`${flag} must be a number, got "${text}"`)
  return value
}

export function parseHiddenSizes(text: string): number[] {
  if (text.trim() === '') return []
  return text.split(',').map((part) => {
    const value = parseNumberFlag('--hidden', part)
    if (!Number.isInteger(value) || value < 1) {
      throw new UserError(`--hidden takes positive integer layer widths separated by commas, got "${text}"`)
    }
    return value
  })
}

class TrainingInterruptedError extends Error {
  static override name = 'TrainingInterruptedError'
  constructor() {
    super('training was interrupted')
    this.name = 'TrainingInterruptedError'
  }
}

/** exit code of a process stopped by SIGINT, by shell convention (128 + 2) */
const INTERRUPTED_EXIT_CODE = 130

/** Maps the services' expected failures to one sentence for the user; anything else is a bug. */
export function asUserError(error: unknown): unknown {
  if (error instanceof TrainingInterruptedError) {
    return new UserError(
      'training was interrupted before it finished; nothing was written',
      INTERRUPTED_EXIT_CODE,
    )
  }
  if (error instanceof TrainingDivergedError) {
    return new UserError(`training diverged (${error.message}); try a lower --lr`)
  }
  if (
    error instanceof TrainingOptionsError ||
    error instanceof ModelFilesError ||
    error instanceof DatasetError ||
    error instanceof CorpusError ||
    error instanceof GenerateOptionsError
  ) {
    return new UserError(error.message)
  }
  return error
}

interface TrainFlags {
  local?: boolean
  model: string
  out?: string
  json?: boolean
  seed?: string
  batch?: string
  lr?: string
  schedule?: string
  weightDecay?: string
  backend?: string
  // mnist-mlp only
  epochs?: string
  hidden?: string
  datasetDir?: string
  // gpt only
  preset?: string
  steps?: string
  minutes?: string
  context?: string
  width?: string
  layers?: string
  heads?: string
  warmup?: string
  evalEvery?: string
  evalWindows?: string
  finalWindows?: string
}

/** The flags of one model only, as the user types them. */
const MLP_FLAGS = { epochs: '--epochs', hidden: '--hidden', datasetDir: '--dataset-dir' } as const
const GPT_FLAGS = {
  preset: '--preset',
  steps: '--steps',
  minutes: '--minutes',
  context: '--context',
  width: '--width',
  layers: '--layers',
  heads: '--heads',
  warmup: '--warmup',
  evalEvery: '--eval-every',
  evalWindows: '--eval-windows',
  finalWindows: '--final-windows',
} as const

/** The models `train --local` knows. */
const MODEL_NAMES = [...Object.keys(MODELS), GPT_MODEL_NAME]

/** Refuses the flags of the other model with one sentence. */
function refuseForeignFlags(flags: TrainFlags, foreign: Record<string, string>, model: string): void {
  const given = Object.entries(foreign)
    .filter(([key]) => flags[key as keyof TrainFlags] !== undefined)
    .map(([, flag]) => flag)
  if (given.length > 0)
    throw new UserError(
      `${given.join(', ')} ${given.length === 1 ? 'does' : 'do'} not apply to --model ${model}` +
        ` (see \`shardnet train --help\`)`,
    )
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(2)}%`
}

/** Progress on stderr: a live bar on a terminal, one line per epoch otherwise (logs, CI). */
function progressReporter(epochs: number): { onEvent: (event: TrainingEvent) => void; stop: () => void } {
  const interactive = process.stderr.isTTY === true
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        'epoch {epoch}/{epochs} {bar} {percentage}% | loss {loss} | test acc {accuracy} | {speed} samples/s',
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  )
  let started = false
  let lastAccuracy = '-'
  return {
    onEvent(event) {
      if (event.type === 'start') {
        const fallback =
          event.backend.fallbackReason === undefined ? '' : ` (${event.backend.fallbackReason})`
        process.stderr.write(
          `training on ${event.backend.kind}: ${event.backend.adapterName}${fallback}; ` +
            `${event.trainCount} training and ${event.testCount} test digits\n`,
        )
        return
      }
      if (event.type === 'batch') {
        if (!interactive) return
        const payload = {
          epoch: event.epoch,
          epochs,
          loss: event.meanLoss.toFixed(4),
          accuracy: lastAccuracy,
          speed: Math.round(event.samplesPerSecond),
        }
        if (!started) {
          bar.start(event.trainCount, event.samples, payload)
          started = true
        } else {
          bar.setTotal(event.trainCount)
          bar.update(event.samples, payload)
        }
        return
      }
      lastAccuracy = percent(event.testAccuracy)
      const line =
        `epoch ${event.epoch}/${epochs} loss ${event.trainLoss.toFixed(4)} test acc ${lastAccuracy} ` +
        `${Math.round(event.samplesPerSecond)} samples/s ${event.seconds.toFixed(1)} s`
      if (interactive) {
        bar.update({ accuracy: lastAccuracy, loss: event.trainLoss.toFixed(4) })
        bar.stop()
        started = false
      } else {
        process.stderr.write(`${line}\n`)
      }
    },
    stop() {
      if (started) bar.stop()
    },
  }
}

const MLP = TRAINING_DEFAULTS
const GPT = GPT_TRAINING_DEFAULTS

/** The default of a flag for each model, for --help. */
function perModel(mlp: string | number, gpt: string | number): string {
  return `(default: ${mlp} for mnist-mlp, ${gpt} for gpt)`
}

const numberOr = (flag: string, text: string | undefined, fallback: number): number =>
  text === undefined ? fallback : parseNumberFlag(flag, text)

async function trainMlp(flags: TrainFlags, out: string): Promise<void> {
  refuseForeignFlags(flags, GPT_FLAGS, flags.model)
  const options: LocalTrainingOptions = {
    model: flags.model,
    hiddenSizes:
      flags.hidden === undefined ? [...TRAINING_DEFAULTS.hiddenSizes] : parseHiddenSizes(flags.hidden),
    epochs: numberOr('--epochs', flags.epochs, TRAINING_DEFAULTS.epochs),
    batchSize: numberOr('--batch', flags.batch, TRAINING_DEFAULTS.batchSize),
    learningRate: numberOr('--lr', flags.lr, TRAINING_DEFAULTS.learningRate),
    schedule: (flags.schedule ?? TRAINING_DEFAULTS.schedule) as LocalTrainingOptions['schedule'],
    weightDecay: numberOr('--weight-decay', flags.weightDecay, TRAINING_DEFAULTS.weightDecay),
    seed: numberOr('--seed', flags.seed, TRAINING_DEFAULTS.seed),
    backend: (flags.backend ?? TRAINING_DEFAULTS.backend) as BackendChoice,
    outDirectory: out,
    ...(flags.datasetDir === undefined ? {} : { digitsDirectory: flags.datasetDir }),
  }
  const progress = progressReporter(options.epochs)
  const result = await withInterrupt(
    (signal) => trainLocal({ ...options, signal }, progress.onEvent),
    progress,
  )
  const { manifest } = result
  if (flags.json === true) {
    const { outDirectory, weightsPath, manifestPath } = result
    process.stdout.write(
      `${JSON.stringify({ outDirectory, weightsPath, manifestPath, ...manifest }, null, 2)}\n`,
    )
    return
  }
  const { architecture } = result
  const sizes = [architecture.inputSize, ...architecture.hiddenSizes, architecture.outputSize]
  process.stdout.write(
    `${pc.bold(`test accuracy ${percent(result.testAccuracy)}`)} for ${manifest.model} ` +
      `${sizes.join('-')} after ${options.epochs} epochs on ${String(manifest.backend.kind)}\n` +
      `wrote ${result.weightsPath} and ${result.manifestPath}\n`,
  )
}

/**
 * Runs a training with Ctrl-C (and SIGTERM) wired to its abort signal: training stops before the
 * next step and nothing is written, since the model is only written at the end.
 */
async function withInterrupt<T>(
  run: (signal: AbortSignal) => Promise<T>,
  progress: { stop: () => void },
): Promise<T> {
  const interrupt = new AbortController()
  const onInterrupt = () => interrupt.abort(new TrainingInterruptedError())
  process.once('SIGINT', onInterrupt)
  process.once('SIGTERM', onInterrupt)
  try {
    return await run(interrupt.signal)
  } catch (error) {
    throw asUserError(error)
  } finally {
    process.off('SIGINT', onInterrupt)
    process.off('SIGTERM', onInterrupt)
    progress.stop()
  }
}

/** Without a terminal, a progress line every this many steps (and at the last). */
export const GPT_PROGRESS_LINE_EVERY = 10

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-'
  const whole = Math.max(0, Math.round(seconds))
  const h = Math.floor(whole / 3600)
  const m = Math.floor((whole % 3600) / 60)
  const s = whole % 60
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(s).padStart(2, '0')}s`
      : `${s}s`
}

/** GPT progress on stderr: a live bar on a terminal, a line every few steps otherwise. */
function gptProgressReporter(): { onEvent: (event: GptTrainingEvent) => void; stop: () => void } {
  const interactive = process.stderr.isTTY === true
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        'step {value}/{total} {bar} | loss {loss} | val {bpb} bits/byte | {speed} tokens/s | ETA {remaining}',
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  )
  let started = false
  let lastBitsPerByte = '-'
  let whole = true
  let lossSum = 0
  let lossCount = 0
  const write = (line: string) => {
    if (started) {
      bar.stop()
      started = false
    }
    process.stderr.write(`${line}\n`)
  }
  return {
    onEvent(event) {
      switch (event.type) {
        case 'start': {
          const { config, backend } = event
          const fallback = backend.fallbackReason === undefined ? '' : ` (${backend.fallbackReason})`
          write(
            `training gpt ${config.layers} layers x ${config.width} wide, ${config.heads} heads, context ` +
              `${config.context} (${event.parameterCount} parameters) on ${backend.kind}: ` +
              `${backend.adapterName}${fallback}; ${event.trainingBytes} training and ` +
              `${event.validationBytes} validation bytes`,
          )
          return
        }
        case 'calibrated':
          write(
            `--minutes ${event.minutes}: ${event.totalSteps} steps at ${event.secondsPerStep.toFixed(2)} s ` +
              'per step (evaluations not counted)',
          )
          return
        case 'step': {
          lossSum += event.loss
          lossCount++
          const loss = (lossSum / lossCount).toFixed(4)
          const remaining =
            event.totalSteps === undefined
              ? Number.NaN
              : (event.elapsedSeconds / event.step) * (event.totalSteps - event.step)
          const speed = Math.round(event.tokensPerSecond)
          if (interactive) {
            if (event.totalSteps === undefined) return
            const payload = { loss, bpb: lastBitsPerByte, speed, remaining: duration(remaining) }
            if (!started) {
              bar.start(event.totalSteps, event.step, payload)
              started = true
            } else bar.update(event.step, payload)
            if (event.step % GPT_PROGRESS_LINE_EVERY === 0) {
              lossSum = 0
              lossCount = 0
            }
            return
          }
          if (event.step % GPT_PROGRESS_LINE_EVERY !== 0 && event.step !== event.totalSteps) return
          process.stderr.write(
            `step ${event.step}/${event.totalSteps ?? '?'} loss ${loss} ` +
              `lr ${event.learningRate.toExponential(2)} ` +
              `${speed} tokens/s ETA ${duration(remaining)}\n`,
          )
          lossSum = 0
          lossCount = 0
          return
        }
        case 'evaluating':
          whole = event.whole
          write(
            event.whole
              ? `evaluating on the whole validation split (${event.windows} windows)`
              : `evaluating on the first ${event.windows} windows of the validation split`,
          )
          return
        case 'evaluation': {
          const { result } = event
          lastBitsPerByte = result.bitsPerByte.toFixed(3)
          const line = event.final
            ? `validation ${lastBitsPerByte} bits/byte ` +
              `over ${whole ? 'the whole split' : 'part of the split'} ` +
              `(${result.bytes} bytes, ${result.windows} windows, ${event.seconds.toFixed(1)} s)`
            : `step ${event.step}: validation ${lastBitsPerByte} bits/byte on the first ${result.windows} ` +
              `windows (${result.bytes} bytes, ${event.seconds.toFixed(1)} s)`
          if (interactive && !event.final) {
            bar.update({ bpb: lastBitsPerByte })
            return
          }
          write(line)
          return
        }
      }
    },
    stop() {
      if (started) bar.stop()
      started = false
    },
  }
}

async function trainGpt(flags: TrainFlags, out: string): Promise<void> {
  refuseForeignFlags(flags, MLP_FLAGS, flags.model)
  const defaults = GPT_TRAINING_DEFAULTS
  if (flags.steps !== undefined && flags.minutes !== undefined)
    throw new UserError('give either --steps or --minutes, not both')
  const shape = (flag: string, text: string | undefined) =>
    text === undefined ? {} : { [flag.slice(2)]: parseNumberFlag(flag, text) }
  const options: GptTrainingOptions = {
    preset: (flags.preset ?? defaults.preset) as GptTrainingOptions['preset'],
    overrides: {
      ...shape('--context', flags.context),
      ...shape('--width', flags.width),
      ...shape('--layers', flags.layers),
      ...shape('--heads', flags.heads),
    },
    ...(flags.minutes === undefined
      ? { steps: numberOr('--steps', flags.steps, defaults.steps) }
      : { minutes: parseNumberFlag('--minutes', flags.minutes) }),
    batchSize: numberOr('--batch', flags.batch, defaults.batchSize),
    learningRate: numberOr('--lr', flags.lr, defaults.learningRate),
    warmupSteps: numberOr('--warmup', flags.warmup, defaults.warmupSteps),
    schedule: (flags.schedule ?? defaults.schedule) as GptTrainingOptions['schedule'],
    weightDecay: numberOr('--weight-decay', flags.weightDecay, defaults.weightDecay),
    evalEvery: numberOr('--eval-every', flags.evalEvery, defaults.evalEvery),
    evalWindows: numberOr('--eval-windows', flags.evalWindows, defaults.evalWindows),
    ...(flags.finalWindows === undefined
      ? {}
      : { finalWindows: parseNumberFlag('--final-windows', flags.finalWindows) }),
    seed: numberOr('--seed', flags.seed, defaults.seed),
    backend: (flags.backend ?? defaults.backend) as BackendChoice,
    outDirectory: out,
  }
  // a short run warms up over at most its first half
  if (flags.warmup === undefined && options.steps !== undefined)
    options.warmupSteps = Math.min(options.warmupSteps, Math.floor(options.steps / 2))
  const progress = gptProgressReporter()
  const result = await withInterrupt(
    (signal) => trainGptLocal({ ...options, signal }, progress.onEvent),
    progress,
  )
  const { manifest } = result
  if (flags.json === true) {
    const { outDirectory, weightsPath, manifestPath } = result
    process.stdout.write(
      `${JSON.stringify({ outDirectory, weightsPath, manifestPath, ...manifest }, null, 2)}\n`,
    )
    return
  }
  const { config } = result
  process.stdout.write(
    `${pc.bold(`validation ${result.validation.bitsPerByte.toFixed(3)} bits/byte`)} for gpt ` +
      `${config.layers}x${config.width} context ${config.context} after ${String(manifest.training.steps)} ` +
      `steps on ${String(manifest.backend.kind)}\n` +
      `wrote ${result.weightsPath}, config.json and ${result.manifestPath}\n`,
  )
}

export function register(program: Command): void {
  const tiny = GPT_PRESETS[GPT_TRAINING_DEFAULTS.preset]
  program
    .command('train')
    .description('train a model; --local trains on this machine, with no network')
    .option(
      '--local',
      'train on this machine (the only mode so far; network training is `shardnet submit train`)',
    )
    .option('--model <name>', `model to train (${MODEL_NAMES.join(', ')})`, TRAINING_DEFAULTS.model)
    .option(
      '--out <dir>',
      "directory to write model.safetensors and model.json (and a GPT's config.json) to (created if missing)",
    )
    .option(
      '--seed <n>',
      `seed for initialization and data order (0 to 4294967295) (default: ${TRAINING_DEFAULTS.seed})`,
    )
    .option('--batch <n>', `samples (gpt: windows) per update ${perModel(MLP.batchSize, GPT.batchSize)}`)
    .option('--lr <rate>', `peak AdamW learning rate ${perModel(MLP.learningRate, GPT.learningRate)}`)
    .addOption(
      new Option(
        '--schedule <name>',
        `learning-rate schedule ${perModel(MLP.schedule, GPT.schedule)}`,
      ).choices(['constant', 'cosine']),
    )
    .option(
      '--weight-decay <rate>',
      `decoupled (AdamW) weight decay ${perModel(MLP.weightDecay, GPT.weightDecay)}`,
    )
    .addOption(
      new Option(
        '--backend <kind>',
        'compute backend; auto uses WebGPU when an adapter exists, else cpu (default: auto)',
      ).choices(['auto', 'webgpu', 'cpu']),
    )
    .option(
      '--epochs <n>',
      `mnist-mlp: passes over the training digits (default: ${TRAINING_DEFAULTS.epochs})`,
    )
    .option(
      '--hidden <sizes>',
      `mnist-mlp: hidden layer widths, comma separated (default: ${TRAINING_DEFAULTS.hiddenSizes.join(',')})`,
    )
    .option(
      '--dataset-dir <dir>',
      "mnist-mlp: directory of digit files in the mnist package's format (default: the installed package)",
    )
    .addOption(
      new Option('--preset <name>', `gpt: shape preset (default: ${GPT_TRAINING_DEFAULTS.preset})`).choices(
        Object.keys(GPT_PRESETS),
      ),
    )
    .option('--steps <n>', `gpt: updates to make (default: ${GPT_TRAINING_DEFAULTS.steps})`)
    .option('--minutes <m>', 'gpt: train for about this long instead of --steps (evaluations not counted)')
    .option('--context <n>', `gpt: context length in bytes (default: the preset's, ${tiny.context} for tiny)`)
    .option('--width <n>', `gpt: model width (default: the preset's, ${tiny.width} for tiny)`)
    .option('--layers <n>', `gpt: transformer blocks (default: the preset's, ${tiny.layers} for tiny)`)
    .option('--heads <n>', `gpt: attention heads (default: the preset's, ${tiny.heads} for tiny)`)
    .option(
      '--warmup <n>',
      `gpt: linear warmup steps (default: ${GPT_TRAINING_DEFAULTS.warmupSteps}, at most half of --steps)`,
    )
    .option(
      '--eval-every <n>',
      `gpt: validation bits per byte on the first ${GPT_TRAINING_DEFAULTS.evalWindows} windows every n ` +
        `steps, 0 = only the whole split at the end (default: ${GPT_TRAINING_DEFAULTS.evalEvery})`,
    )
    .option(
      '--eval-windows <n>',
      `gpt: windows scored at each --eval-every (default: ${GPT_TRAINING_DEFAULTS.evalWindows})`,
    )
    .option(
      '--final-windows <n>',
      'gpt: score only the first n windows of the validation split at the end (default: the whole split)',
    )
    .option('--json', 'print the result as JSON on stdout')
    .action(async (flags: TrainFlags) => {
      if (flags.local !== true) {
        throw new UserError(
          'only local training exists so far: add --local (network training will be `shardnet submit train`)',
        )
      }
      if (!MODEL_NAMES.includes(flags.model))
        throw new UserError(`unknown model "${flags.model}"; known models: ${MODEL_NAMES.join(', ')}`)
      if (flags.out === undefined || flags.out.trim() === '') {
        throw new UserError('--out <dir> is required: the directory to write the trained model to')
      }
      if (flags.model === GPT_MODEL_NAME) await trainGpt(flags, flags.out)
      else await trainMlp(flags, flags.out)
    })
}
