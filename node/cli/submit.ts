// `shardnet submit train|infer`: turns flags into a task request, sends it to the local daemon (which
// checks every field, publishes the data and spec as blocks and announces the task) and prints the
// task id; `--watch` then follows it to the end.
import { resolve } from 'node:path'
import { type Command, Option } from 'commander'
import { GPT_PRESETS, type GptPreset } from '../../kernels/models/gpt/config.js'
import {
  AGGREGATE_DEFAULT,
  AGGREGATES,
  BACKENDS,
  BATCH_SIZE_DEFAULT,
  COMPRESSION_DEFAULT,
  COMPRESSIONS,
  GPT_BATCH_SIZE_DEFAULT,
  GPT_LEARNING_RATE_DEFAULT,
  type GptShape,
  HIDDEN_SIZES_DEFAULT,
  INFER_SHARDS_DEFAULT,
  LEARNING_RATE_DEFAULT,
  MIN_GRADIENTS_DEFAULT,
  MODELS,
  OUTER_EVERY_DEFAULT,
  REPLACE_AFTER_MS_DEFAULT,
  REPLICAS_DEFAULT,
  REQUIREMENTS_DEFAULT,
  SEED_DEFAULT,
  STAFFING_DEADLINE_MS_DEFAULT,
} from '../../protocols/tasks/spec.js'
import { defaultDataDir } from '../store/data-dir.js'
import type { TaskView } from '../tasks/coordinator.js'
import { connectToDaemon } from './daemon-client.js'
import { UserError } from './errors.js'
import { describeEnd, watchTask } from './task-watch.js'
import { parseHiddenSizes, parseNumberFlag } from './train.js'

/** "60s", "2m", "1h", "500ms" or a plain number of seconds, as milliseconds. */
export function parseDuration(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (match === null) throw new UserError(`${flag} must be a duration such as 90s, 5m or 1h, got "${text}"`)
  const value = Number(match[1])
  const unit = match[2] ?? 's'
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit] ?? 1000
  return Math.round(value * scale)
}

/** A duration in milliseconds as a flag default parseDuration reads back ("60s"). */
function seconds(ms: number): string {
  return `${ms / 1000}s`
}

export function dataDirOption(): Option {
  return new Option('--data-dir <dir>', 'the node data dir (env SHARDNET_DATA_DIR)').default(
    defaultDataDir(),
    '~/.shardnet',
  )
}

interface TrainFlags {
  dataDir: string
  groups: string
  groupSize: string
  steps: string
  batch?: string
  lr?: string
  seed: string
  hidden?: string
  preset?: string
  context?: string
  width?: string
  layers?: string
  heads?: string
  aggregate: string
  minGradients: string
  outerEvery: string
  compress: string
  data?: string
  deadline: string
  replaceAfter: string
  backend: string
  minMemory: string
  minGflops: string
  watch?: boolean
  json?: boolean
}

const GPT_SHAPE_FLAGS = ['preset', 'context', 'width', 'layers', 'heads'] as const

/** The model-specific fields of a training request, from the flags that apply to `model`. */
export function modelFields(model: string, flags: TrainFlags): Record<string, unknown> {
  if (model !== 'gpt') {
    const misplaced = GPT_SHAPE_FLAGS.find((flag) => flags[flag] !== undefined)
    if (misplaced !== undefined) throw new UserError(`--${misplaced} applies to a gpt, not to ${model}`)
    return { hiddenSizes: parseHiddenSizes(flags.hidden ?? HIDDEN_SIZES_DEFAULT.join(',')) }
  }
  if (flags.hidden !== undefined) throw new UserError('--hidden applies to mnist-mlp; a gpt takes --preset')
  if (flags.data !== undefined)
    throw new UserError('--data applies to mnist-mlp; a gpt trains on the linux-doc-6.1 corpus')
  const presetName = flags.preset ?? 'tiny'
  if (!Object.hasOwn(GPT_PRESETS, presetName))
    throw new UserError(`--preset must be one of ${Object.keys(GPT_PRESETS).join(', ')}, got "${presetName}"`)
  const preset = GPT_PRESETS[presetName as GptPreset]
  const field = (flag: 'context' | 'width' | 'layers' | 'heads'): number =>
    flags[flag] === undefined ? preset[flag] : parseNumberFlag(`--${flag}`, flags[flag])
  const gpt: GptShape = {
    context: field('context'),
    width: field('width'),
    layers: field('layers'),
    heads: field('heads'),
  }
  return { gpt }
}

/** Sends a request; prints the task (and with --watch follows it); returns the final view. */
async function submitAndShow(
  dataDir: string,
  body: Record<string, unknown>,
  flags: { watch?: boolean; json?: boolean },
): Promise<TaskView> {
  const client = await connectToDaemon(dataDir)
  const task = await client.post<TaskView>('/v1/tasks', body, AbortSignal.timeout(120_000))
  if (flags.watch !== true) {
    process.stdout.write(
      flags.json === true
        ? `${JSON.stringify(task, null, 2)}\n`
        : `submitted task ${task.id}\nfollow it with \`shardnet task ${task.id} --watch\`\n`,
    )
    return task
  }
  if (flags.json !== true) process.stderr.write(`submitted task ${task.id}\n`)
  const final = await watchTask(client, task.id)
  process.stdout.write(
    flags.json === true ? `${JSON.stringify(final, null, 2)}\n` : `${describeEnd(final)}\n`,
  )
  if (final.state !== 'completed')
    throw new UserError(`task ${final.id} ${final.state}: ${final.error ?? 'no reason given'}`)
  return final
}

export function register(program: Command): void {
  const submit = program
    .command('submit')
    .description('submit a task to the network through the local daemon')

  submit
    .command('train')
    .description('train a model across the network: groups of workers agree on every step through Raft')
    .argument('<model>', `the model to train (${MODELS.join(', ')})`)
    .addOption(dataDirOption())
    .option(
      '--groups <n>',
      'training groups (each trains on its own shard; averaged every --outer-every steps)',
      '1',
    )
    .option('--group-size <k>', 'members per group (odd: a Raft group needs a clear majority)', '3')
    .option('--steps <n>', 'inner training steps', '600')
    .option(
      '--batch <n>',
      `micro-batch of each member: samples (mnist-mlp, default ${BATCH_SIZE_DEFAULT}) or sequences of the ` +
        `context (gpt, default ${GPT_BATCH_SIZE_DEFAULT})`,
    )
    .option(
      '--lr <rate>',
      `AdamW learning rate (default ${LEARNING_RATE_DEFAULT} for mnist-mlp, ` +
        `${GPT_LEARNING_RATE_DEFAULT} for gpt)`,
    )
    .option('--seed <n>', 'seed for init, shards and micro-batches', String(SEED_DEFAULT))
    .option(
      '--hidden <sizes>',
      `mnist-mlp: hidden layer widths, comma separated (default ${HIDDEN_SIZES_DEFAULT.join(',')})`,
    )
    .option('--preset <name>', `gpt: ${Object.keys(GPT_PRESETS).join(' or ')} (default tiny)`)
    .option('--context <n>', "gpt: context length (overrides the preset's)")
    .option('--width <n>', "gpt: model width (overrides the preset's)")
    .option('--layers <n>', "gpt: transformer blocks (overrides the preset's)")
    .option('--heads <n>', "gpt: attention heads (overrides the preset's)")
    .addOption(
      new Option('--aggregate <rule>', 'how a group combines its members’ gradients')
        .choices(AGGREGATES)
        .default(AGGREGATE_DEFAULT),
    )
    .option(
      '--min-gradients <k>',
      'fewest gradients a step is decided on (capped at the group size; 2 lets a group of 3 ' +
        'train through a crash, at the cost of lie tolerance)',
      String(MIN_GRADIENTS_DEFAULT),
    )
    .option(
      '--outer-every <h>',
      'average the groups every H steps (0: only at the end)',
      String(OUTER_EVERY_DEFAULT),
    )
    .addOption(
      new Option(
        '--compress <kind>',
        'gradient and update compression (int8: block-wise int8 with error feedback, both ways)',
      )
        .choices(COMPRESSIONS)
        .default(COMPRESSION_DEFAULT),
    )
    .option(
      '--data <file>',
      'mnist-mlp: train on your own digits: JSON ' +
        '{"images": [[784 pixels in 0..1], ...], "labels": [0-9, ...]}; ' +
        'the last 20% are the test set (default: MNIST from the mnist package)',
    )
    .option(
      '--deadline <duration>',
      'how long to wait for enough workers (e.g. 60s, 5m)',
      seconds(STAFFING_DEADLINE_MS_DEFAULT),
    )
    .option(
      '--replace-after <duration>',
      'how long a group that lost its majority waits for its members before new workers replace them ' +
        '(0: never)',
      seconds(REPLACE_AFTER_MS_DEFAULT),
    )
    .addOption(
      new Option('--backend <kind>', 'the backend workers must have')
        .choices(BACKENDS)
        .default(REQUIREMENTS_DEFAULT.backend),
    )
    .option(
      '--min-memory <bytes>',
      'the device memory (bytes) a worker must have',
      String(REQUIREMENTS_DEFAULT.minMemoryBytes),
    )
    .option(
      '--min-gflops <n>',
      'the measured GFLOP/s a worker must reach',
      String(REQUIREMENTS_DEFAULT.minGflops),
    )
    .option('--watch', 'follow the task until it ends (progress on stderr)')
    .option('--json', 'machine-readable output on stdout')
    .action(async (model: string, flags: TrainFlags) => {
      const body = {
        kind: 'train',
        model,
        ...modelFields(model, flags),
        groups: parseNumberFlag('--groups', flags.groups),
        groupSize: parseNumberFlag('--group-size', flags.groupSize),
        steps: parseNumberFlag('--steps', flags.steps),
        ...(flags.batch !== undefined ? { batchSize: parseNumberFlag('--batch', flags.batch) } : {}),
        ...(flags.lr !== undefined ? { learningRate: parseNumberFlag('--lr', flags.lr) } : {}),
        seed: parseNumberFlag('--seed', flags.seed),
        aggregate: flags.aggregate,
        minGradients: parseNumberFlag('--min-gradients', flags.minGradients),
        outerEvery: parseNumberFlag('--outer-every', flags.outerEvery),
        compress: flags.compress,
        deadlineMs: parseDuration('--deadline', flags.deadline),
        replaceAfterMs: parseDuration('--replace-after', flags.replaceAfter),
        requirements: {
          backend: flags.backend,
          minMemoryBytes: parseNumberFlag('--min-memory', flags.minMemory),
          minGflops: parseNumberFlag('--min-gflops', flags.minGflops),
        },
        ...(flags.data !== undefined ? { dataFile: resolve(flags.data) } : {}),
      }
      await submitAndShow(flags.dataDir, body, flags)
    })

  submit
    .command('infer')
    .description('run a trained model on inputs across the network; R replicas of each shard must agree')
    .argument(
      '<model>',
      'a model directory (model.json + model.safetensors) or the CID of its model bundle block ' +
        '(shown as summary.modelCid by `task ID --json`)',
    )
    .addOption(dataDirOption())
    .requiredOption(
      '--input <file>',
      'inputs: JSON {"inputs": [[784 pixels in 0..1], ...]} ("images" or a bare array of rows also work)',
    )
    .option('--replicas <r>', 'peers that run each shard (a majority must agree)', String(REPLICAS_DEFAULT))
    .option('--shards <n>', 'pieces the input is split into', String(INFER_SHARDS_DEFAULT))
    .option(
      '--deadline <duration>',
      'how long to wait for enough workers',
      seconds(STAFFING_DEADLINE_MS_DEFAULT),
    )
    .option('--watch', 'follow the task until it ends')
    .option('--json', 'machine-readable output on stdout')
    .action(
      async (
        model: string,
        flags: {
          dataDir: string
          input: string
          replicas: string
          shards: string
          deadline: string
          watch?: boolean
          json?: boolean
        },
      ) => {
        const looksLikeCid = /^b[a-z2-7]{20,}$/.test(model)
        const body = {
          kind: 'infer',
          model: looksLikeCid ? model : resolve(model),
          inputFile: resolve(flags.input),
          replicas: parseNumberFlag('--replicas', flags.replicas),
          shards: parseNumberFlag('--shards', flags.shards),
          deadlineMs: parseDuration('--deadline', flags.deadline),
        }
        await submitAndShow(flags.dataDir, body, flags)
      },
    )
}
