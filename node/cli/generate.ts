// `shardnet generate DIR --prompt TEXT`: samples bytes from a GPT written by `shardnet train --local
// --model gpt` and streams them to stdout as they are drawn. `shardnet generate --network MODEL
// --prompt TEXT` does the same through the network: the running daemon (its POST /v1/generate) finds
// a chain of servers covering every block of the model and streams the bytes back as they are drawn;
// MODEL is the model's content id (or a name the daemon knows), or a model directory whose id is
// computed here. The bytes are written raw: a byte model may produce invalid UTF-8, which is the
// model's output and not the CLI's to repair. Notices (a prompt cut to the context, the speed and
// the chain at the end) go to stderr.
import { stat } from 'node:fs/promises'
import { type Command, Option } from 'commander'
import { GENERATE_API_LIMITS, type GenerateStreamLine } from '../api/generate-routes.js'
import {
  GENERATE_DEFAULTS,
  GENERATE_LIMITS,
  type GptGenerateResult,
  generateGptLocal,
} from '../executor/local-gpt.js'
import type { BackendChoice } from '../executor/local-training.js'
import { ModelFilesError } from '../executor/model-files.js'
import type { NetworkGenerateResult } from '../serving/api.js'
import { modelIdOfDirectory } from '../serving/model-package.js'
import { connectToDaemon } from './daemon-client.js'
import { UserError } from './errors.js'
import { dataDirOption } from './submit.js'
import { asUserError, parseNumberFlag } from './train.js'

interface GenerateFlags {
  prompt?: string
  tokens: string
  temperature: string
  topK: string
  topP?: string
  seed: string
  stop?: string[]
  verify?: string
  network?: string
  dataDir: string
  cache: boolean
  backend: string
}

/** exit code of a process stopped by SIGINT, by shell convention (128 + 2) */
const INTERRUPTED_EXIT_CODE = 130

export function register(program: Command): void {
  program
    .command('generate')
    .description(
      'sample bytes from a GPT written by `shardnet train --local --model gpt`, here or (--network) ' +
        'through the servers of its blocks on the network',
    )
    .argument('[dir]', 'model directory (holding model.safetensors, config.json and model.json)')
    .option(
      '--network <model>',
      "generate through the network via the running daemon: the model's content id, or a model " +
        'directory whose id is computed',
    )
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
    .option(
      '--top-p <p>',
      'nucleus sampling: among the most likely bytes whose probability reaches p (above 0 to 1; ' +
        '1 = all; with --network)',
    )
    .option(
      '--stop <text...>',
      `stop before any of these texts would be written (at most ${GENERATE_API_LIMITS.stopMax}; ` +
        'with --network)',
    )
    .option(
      '--verify <r>',
      'the fraction (0 to 1) of steps of each span also run on a second server and compared (with --network)',
    )
    .addOption(dataDirOption())
    .option('--no-cache', 'recompute the whole window for every byte instead of using the KV cache')
    .addOption(
      new Option('--backend <kind>', 'compute backend; auto uses WebGPU when an adapter exists, else cpu')
        .choices(['auto', 'webgpu', 'cpu'])
        .default(GENERATE_DEFAULTS.backend),
    )
    .action(async (directory: string | undefined, flags: GenerateFlags) => {
      if (flags.prompt === undefined || flags.prompt === '')
        throw new UserError('--prompt <text> is required: the text for the model to continue')
      if (flags.network !== undefined) {
        if (directory !== undefined)
          throw new UserError(`give either a model directory or --network MODEL, not both (got ${directory})`)
        await generateThroughNetwork(flags.network, flags.prompt, flags)
        return
      }
      if (directory === undefined)
        throw new UserError('give a model directory, or --network MODEL to generate through the network')
      for (const [flag, value] of [
        ['--top-p', flags.topP],
        ['--stop', flags.stop],
        ['--verify', flags.verify],
      ] as const) {
        if (value !== undefined)
          throw new UserError(`${flag} needs --network (generation through the network)`)
      }
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

/** the flags' number in [min, max] (an integer when asked), or a UserError naming the flag */
function flagInRange(
  flag: string,
  text: string,
  range: { min: number; max: number; integer?: boolean; exclusiveMin?: boolean },
): number {
  const value = parseNumberFlag(flag, text)
  const low = range.exclusiveMin === true ? value <= range.min : value < range.min
  if (low || value > range.max || (range.integer === true && !Number.isInteger(value))) {
    const kind = range.integer === true ? 'an integer' : 'a number'
    const from = range.exclusiveMin === true ? `above ${range.min}` : `from ${range.min}`
    throw new UserError(`${flag} must be ${kind} ${from} to ${range.max}, got ${text}`)
  }
  return value
}

/** MODEL of --network: a model directory's id (computed here), else the id or name as given */
async function modelOf(model: string): Promise<string> {
  const isDirectory = await stat(model).then(
    (info) => info.isDirectory(),
    () => false,
  )
  if (!isDirectory) return model
  try {
    return await modelIdOfDirectory(model)
  } catch (error) {
    if (error instanceof ModelFilesError) throw new UserError(error.message)
    throw error
  }
}

/** the account of a network generation written to stderr at its end */
export function describeNetworkResult(result: NetworkGenerateResult): string {
  const speed = result.tokens / Math.max(result.seconds, 1e-9)
  const hops = result.chain.map(
    (hop) => `${hop.local ? 'this node' : hop.peerId} (blocks ${hop.start}-${hop.end - 1})`,
  )
  const lines = [
    `${result.tokens} bytes in ${result.seconds.toFixed(2)} s (${speed.toFixed(1)} tokens/s, ` +
      `first byte after ${Math.round(result.firstTokenMs)} ms` +
      `${result.finishReason === 'stop' ? ', stopped at a stop text' : ''})`,
    `through ${result.chain.length} server${result.chain.length === 1 ? '' : 's'}: ${hops.join(', ')}`,
  ]
  if (result.failovers > 0)
    lines.push(`${result.failovers} server${result.failovers === 1 ? '' : 's'} replaced mid-generation`)
  if (result.verifiedSteps > 0 || result.droppedServers.length > 0)
    lines.push(
      `${result.verifiedSteps} steps verified on a second server` +
        (result.droppedServers.length > 0
          ? `; dropped for disagreeing: ${result.droppedServers.join(', ')}`
          : '; every server agreed'),
    )
  return `${lines.join('\n')}\n`
}

/** Writes to stdout, waiting when the reader is slower than the generation. */
async function writeOut(bytes: Uint8Array): Promise<void> {
  if (process.stdout.write(bytes)) return
  await new Promise<void>((resolve) => process.stdout.once('drain', () => resolve()))
}

async function generateThroughNetwork(model: string, prompt: string, flags: GenerateFlags): Promise<void> {
  const limits = GENERATE_API_LIMITS
  const stop = flags.stop ?? []
  if (stop.length > limits.stopMax)
    throw new UserError(`--stop takes at most ${limits.stopMax} texts, got ${stop.length}`)
  if (stop.some((text) => text === '')) throw new UserError('--stop texts must not be empty')
  const body = {
    model: await modelOf(model),
    prompt,
    maxTokens: flagInRange('--tokens', flags.tokens, { min: 1, max: limits.tokensMax, integer: true }),
    temperature: flagInRange('--temperature', flags.temperature, { min: 0, max: limits.temperatureMax }),
    topK: flagInRange('--top-k', flags.topK, { min: 0, max: limits.topKMax, integer: true }),
    topP: flagInRange('--top-p', flags.topP ?? '1', { min: 0, max: 1, exclusiveMin: true }),
    seed: flagInRange('--seed', flags.seed, { min: 0, max: limits.seedMax, integer: true }),
    stop,
    verify: flagInRange('--verify', flags.verify ?? '0', { min: 0, max: limits.verifyMax }),
  }
  const client = await connectToDaemon(flags.dataDir)
  const interrupt = new AbortController()
  const onInterrupt = () => interrupt.abort()
  process.once('SIGINT', onInterrupt)
  process.once('SIGTERM', onInterrupt)
  let written = 0
  let result: NetworkGenerateResult | undefined
  try {
    const stream = await client.postStream('/v1/generate', body, interrupt.signal)
    const decoder = new TextDecoder()
    let buffered = ''
    const handle = async (line: string) => {
      if (line === '') return
      let parsed: GenerateStreamLine
      try {
        parsed = JSON.parse(line) as GenerateStreamLine
      } catch {
        throw new UserError(`the daemon sent a line that is not JSON: ${line.slice(0, 80)}`)
      }
      if ('bytes' in parsed) {
        const bytes = Buffer.from(parsed.bytes, 'base64')
        await writeOut(bytes)
        written += bytes.length
      } else if ('result' in parsed) result = parsed.result
      else throw new UserError(`the generation failed after ${written} bytes: ${parsed.error.message}`)
    }
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true })
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) await handle(line)
    }
    await handle(buffered + decoder.decode())
  } catch (error) {
    if (!interrupt.signal.aborted) throw error
  } finally {
    process.off('SIGINT', onInterrupt)
    process.off('SIGTERM', onInterrupt)
  }
  const separator = written > 0 && process.stdout.isTTY === true ? '\n' : ''
  if (interrupt.signal.aborted) {
    process.stderr.write(separator)
    throw new UserError(`generation was interrupted after ${written} bytes`, INTERRUPTED_EXIT_CODE)
  }
  if (result === undefined)
    throw new UserError(`the daemon's stream ended after ${written} bytes without a result`)
  if (result.truncatedBytes > 0)
    process.stderr.write(
      `${separator}the prompt is longer than the model's context: its first ${result.truncatedBytes} bytes ` +
        'were dropped\n',
    )
  process.stderr.write(`${result.truncatedBytes > 0 ? '' : separator}${describeNetworkResult(result)}`)
}
