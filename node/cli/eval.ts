// `shardnet eval DIR`: loads a trained model directory and prints how good it is: an MLP's accuracy
// on the test split, a GPT's bits per byte over the whole validation split of its corpus.
import { type Command, Option } from 'commander'
import pc from 'picocolors'
import { evaluateGptLocal, type GptEvaluationResult } from '../executor/local-gpt.js'
import { type BackendChoice, evaluateLocal } from '../executor/local-training.js'
import { type LoadedAnyModel, loadAnyModel } from '../executor/model-files.js'
import { UserError } from './errors.js'
import { asUserError, parseNumberFlag } from './train.js'

interface EvalFlags {
  backend: string
  windows?: string
  datasetDir?: string
  json?: boolean
}

async function evaluateMlp(directory: string, flags: EvalFlags): Promise<void> {
  let result: Awaited<ReturnType<typeof evaluateLocal>>
  try {
    result = await evaluateLocal({
      modelDirectory: directory,
      backend: flags.backend as BackendChoice,
      ...(flags.datasetDir === undefined ? {} : { digitsDirectory: flags.datasetDir }),
    })
  } catch (error) {
    throw asUserError(error)
  }
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    return
  }
  const correct = Math.round(result.accuracy * result.samples)
  const sizes = [
    result.architecture.inputSize,
    ...result.architecture.hiddenSizes,
    result.architecture.outputSize,
  ]
  process.stdout.write(
    `${pc.bold(`test accuracy ${(result.accuracy * 100).toFixed(2)}%`)} (${correct} of ` +
      `${result.samples} digits, mean loss ${result.meanLoss.toFixed(4)}) ` +
      `for ${result.model} ${sizes.join('-')} on ${result.backend}\n`,
  )
}

async function evaluateGpt(
  directory: string,
  loaded: Extract<LoadedAnyModel, { type: 'gpt' }>,
  flags: EvalFlags,
): Promise<void> {
  if (flags.datasetDir !== undefined)
    throw new UserError('--dataset-dir applies to mnist-mlp models; a GPT is scored on its byte corpus')
  process.stderr.write(
    `evaluating gpt ${loaded.config.layers}x${loaded.config.width} context ${loaded.config.context} ` +
      `on ${flags.windows === undefined ? 'the whole validation split' : `${flags.windows} windows`}\n`,
  )
  let result: GptEvaluationResult
  try {
    result = await evaluateGptLocal(loaded, {
      modelDirectory: directory,
      backend: flags.backend as BackendChoice,
      ...(flags.windows === undefined ? {} : { maxWindows: parseNumberFlag('--windows', flags.windows) }),
    })
  } catch (error) {
    throw asUserError(error)
  }
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    return
  }
  const { config } = result
  process.stdout.write(
    `${pc.bold(`validation ${result.bitsPerByte.toFixed(3)} bits/byte`)} ` +
      `(${result.wholeSplit ? 'the whole split: ' : ''}${result.bytes} bytes scored in ` +
      `${result.windows} windows, ${result.seconds.toFixed(1)} s) for ${result.model} ` +
      `${config.layers}x${config.width} context ${config.context} on ${result.backend}\n`,
  )
}

export function register(program: Command): void {
  program
    .command('eval')
    .description(
      "print how good a model written by `shardnet train --local` is: an MLP's test accuracy, " +
        "a GPT's validation bits per byte",
    )
    .argument('<dir>', 'model directory (holding model.safetensors and model.json)')
    .addOption(
      new Option('--backend <kind>', 'compute backend; auto uses WebGPU when an adapter exists, else cpu')
        .choices(['auto', 'webgpu', 'cpu'])
        .default('auto'),
    )
    .option(
      '--dataset-dir <dir>',
      "mnist-mlp: directory of digit files in the mnist package's format (default: the installed package)",
    )
    .option('--windows <n>', 'gpt: score only the first n windows of the validation split (default: all)')
    .option('--json', 'print the result as JSON on stdout')
    .action(async (directory: string, flags: EvalFlags) => {
      let loaded: LoadedAnyModel
      try {
        loaded = await loadAnyModel(directory)
      } catch (error) {
        throw asUserError(error)
      }
      if (loaded.type === 'gpt') await evaluateGpt(directory, loaded, flags)
      else {
        if (flags.windows !== undefined)
          throw new UserError('--windows applies to GPT models; an MLP is scored on its whole test split')
        await evaluateMlp(directory, flags)
      }
    })
}
