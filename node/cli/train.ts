// `shardnet train --local`: parses and checks flags, shows progress on stderr, and calls the local
// training service (node/executor/local-training.ts), which knows nothing of flags.
import cliProgress from 'cli-progress'
import { type Command, Option } from 'commander'
import pc from 'picocolors'
import { DatasetError } from '../../kernels/data/mnist.js'
import { TrainingDivergedError } from '../../kernels/models/training.js'
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
    error instanceof DatasetError
  ) {
    return new UserError(error.message)
  }
  return error
}

interface TrainFlags {
  local?: boolean
  model: string
  epochs: string
  seed: string
  out?: string
  hidden: string
  batch: string
  lr: string
  schedule: string
  weightDecay: string
  backend: string
  datasetDir?: string
  json?: boolean
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

export function register(program: Command): void {
  program
    .command('train')
    .description('train a model; --local trains on this machine, with no network')
    .option(
      '--local',
      'train on this machine (the only mode so far; network training is `shardnet submit train`)',
    )
    .option('--model <name>', `model to train (${Object.keys(MODELS).join(', ')})`, TRAINING_DEFAULTS.model)
    .option('--out <dir>', 'directory to write model.safetensors and model.json to (created if missing)')
    .option('--epochs <n>', 'passes over the training digits', String(TRAINING_DEFAULTS.epochs))
    .option(
      '--seed <n>',
      'seed for initialization and shuffling (0 to 4294967295)',
      String(TRAINING_DEFAULTS.seed),
    )
    .option(
      '--hidden <sizes>',
      'hidden layer widths, comma separated (e.g. 256,128)',
      TRAINING_DEFAULTS.hiddenSizes.join(','),
    )
    .option('--batch <n>', 'samples per update', String(TRAINING_DEFAULTS.batchSize))
    .option('--lr <rate>', 'Adam learning rate', String(TRAINING_DEFAULTS.learningRate))
    .addOption(
      new Option('--schedule <name>', 'learning-rate schedule')
        .choices(['constant', 'cosine'])
        .default(TRAINING_DEFAULTS.schedule),
    )
    .option('--weight-decay <rate>', 'decoupled (AdamW) weight decay', String(TRAINING_DEFAULTS.weightDecay))
    .addOption(
      new Option('--backend <kind>', 'compute backend; auto uses WebGPU when an adapter exists, else cpu')
        .choices(['auto', 'webgpu', 'cpu'])
        .default(TRAINING_DEFAULTS.backend),
    )
    .option(
      '--dataset-dir <dir>',
      "directory of digit files in the mnist package's format (default: the installed package)",
    )
    .option('--json', 'print the result as JSON on stdout')
    .action(async (flags: TrainFlags) => {
      if (flags.local !== true) {
        throw new UserError(
          'only local training exists so far: add --local (network training will be `shardnet submit train`)',
        )
      }
      if (flags.out === undefined || flags.out.trim() === '') {
        throw new UserError('--out <dir> is required: the directory to write the trained model to')
      }
      const options: LocalTrainingOptions = {
        model: flags.model,
        hiddenSizes: parseHiddenSizes(flags.hidden),
        epochs: parseNumberFlag('--epochs', flags.epochs),
        batchSize: parseNumberFlag('--batch', flags.batch),
        learningRate: parseNumberFlag('--lr', flags.lr),
        schedule: flags.schedule as LocalTrainingOptions['schedule'],
        weightDecay: parseNumberFlag('--weight-decay', flags.weightDecay),
        seed: parseNumberFlag('--seed', flags.seed),
        backend: flags.backend as BackendChoice,
        outDirectory: flags.out,
        ...(flags.datasetDir === undefined ? {} : { digitsDirectory: flags.datasetDir }),
      }
      const progress = progressReporter(options.epochs)
      // Ctrl-C stops training before the next batch; the model is only written at the end, so
      // nothing is left behind
      const interrupt = new AbortController()
      const onInterrupt = () => interrupt.abort(new TrainingInterruptedError())
      process.once('SIGINT', onInterrupt)
      process.once('SIGTERM', onInterrupt)
      let result: Awaited<ReturnType<typeof trainLocal>>
      try {
        result = await trainLocal({ ...options, signal: interrupt.signal }, progress.onEvent)
      } catch (error) {
        throw asUserError(error)
      } finally {
        process.off('SIGINT', onInterrupt)
        process.off('SIGTERM', onInterrupt)
        progress.stop()
      }
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
    })
}
