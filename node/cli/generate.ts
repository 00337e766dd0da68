// `shardnet generate DIR --prompt TEXT`: samples bytes from a GPT written by `shardnet train --local
// --model gpt` and streams them to stdout as they are drawn. They are written as raw bytes: a byte
// model may produce invalid UTF-8, which is the model's output and not the CLI's to repair. Notices
// (a prompt cut to the context, the speed at the end) go to stderr.
import { type Command, Option } from 'commander'
import {
  GENERATE_DEFAULTS,
  GENERATE_LIMITS,
  type GptGenerateResult,
  generateGptLocal,
} from '../executor/local-gpt.js'
import type { BackendChoice } from '../executor/local-training.js'
import { UserError } from './errors.js'
import { asUserError, parseNumberFlag } from './train.js'

interface GenerateFlags {
  prompt?: string
  tokens: string
  temperature: string
  topK: string
  seed: string
  cache: boolean
  backend: string
}

/** exit code of a process stopped by SIGINT, by shell convention (128 + 2) */
const INTERRUPTED_EXIT_CODE = 130

export function register(program: Command): void {
  program
    .command('generate')
    .description('sample bytes from a GPT written by `shardnet train --local --model gpt`')
    .argument('<dir>', 'model directory (holding model.safetensors, config.json and model.json)')
    .option('--prompt <text>', 'the text to continue (UTF-8); cut from the left to the context if longer')
    .option(
      '--tokens <n>',
      `bytes to generate (1 to ${GENERATE_LIMITS.tokensMax})`,
      String(GENERATE_DEFAULTS.tokens),
    )
    .option(
      '--temperature <t>',
      `sampling temperature (0 to ${GENERATE_LIMITS.temperatureMax}; 0 = greedy)`,
      String(GENERATE_DEFAULTS.temperature),
    )
    .option(
      '--top-k <k>',
      `sample among the k most likely bytes (0 to ${GENERATE_LIMITS.topKMax}; 0 = all)`,
      String(GENERATE_DEFAULTS.topK),
    )
    .option('--seed <n>', 'seed of the sampling (0 to 4294967295)', String(GENERATE_DEFAULTS.seed))
    .option('--no-cache', 'recompute the whole window for every byte instead of using the KV cache')
    .addOption(
      new Option('--backend <kind>', 'compute backend; auto uses WebGPU when an adapter exists, else cpu')
        .choices(['auto', 'webgpu', 'cpu'])
        .default(GENERATE_DEFAULTS.backend),
    )
    .action(async (directory: string, flags: GenerateFlags) => {
      if (flags.prompt === undefined || flags.prompt === '')
        throw new UserError('--prompt <text> is required: the text for the model to continue')
      const interrupt = new AbortController()
      const onInterrupt = () => interrupt.abort()
      process.once('SIGINT', onInterrupt)
      process.once('SIGTERM', onInterrupt)
      let result: GptGenerateResult
      let wroteAny = false
      try {
        result = await generateGptLocal(
          {
            modelDirectory: directory,
            prompt: new Uint8Array(Buffer.from(flags.prompt, 'utf8')),
            tokens: parseNumberFlag('--tokens', flags.tokens),
            temperature: parseNumberFlag('--temperature', flags.temperature),
            topK: parseNumberFlag('--top-k', flags.topK),
            seed: parseNumberFlag('--seed', flags.seed),
            cache: flags.cache,
            backend: flags.backend as BackendChoice,
            signal: interrupt.signal,
          },
          {
            onTruncate: (dropped, context) =>
              process.stderr.write(
                `the prompt is longer than the model's context of ${context} bytes: its first ${dropped} ` +
                  'bytes were dropped\n',
              ),
            onByte: (byte) => {
              process.stdout.write(Uint8Array.of(byte))
              wroteAny = true
            },
          },
        )
      } catch (error) {
        throw asUserError(error)
      } finally {
        process.off('SIGINT', onInterrupt)
        process.off('SIGTERM', onInterrupt)
      }
      // the generated text rarely ends a line: the notice starts on its own
      const separator = wroteAny && process.stdout.isTTY === true ? '\n' : ''
      process.stderr.write(
        `${separator}${result.tokens} bytes in ${result.seconds.toFixed(2)} s ` +
          `(${result.tokensPerSecond.toFixed(1)} tokens/s on ${result.backend}` +
          `${flags.cache ? '' : ', no cache'})\n`,
      )
      if (interrupt.signal.aborted)
        throw new UserError(`generation was interrupted after ${result.tokens} bytes`, INTERRUPTED_EXIT_CODE)
    })
}
