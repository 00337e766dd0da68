// `shardnet eval DIR`: loads a trained model directory and prints its accuracy on the test split.
import { type Command, Option } from 'commander'
import pc from 'picocolors'
import { type BackendChoice, evaluateLocal } from '../executor/local-training.js'
import { asUserError } from './train.js'

interface EvalFlags {
  backend: string
  datasetDir?: string
  json?: boolean
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('print the test accuracy of a model written by `shardnet train --local`')
    .argument('<dir>', 'model directory (holding model.safetensors and model.json)')
    .addOption(
      new Option('--backend <kind>', 'compute backend; auto uses WebGPU when an adapter exists, else cpu')
        .choices(['auto', 'webgpu', 'cpu'])
        .default('auto'),
    )
    .option(
      '--dataset-dir <dir>',
      "directory of digit files in the mnist package's format (default: the installed package)",
    )
    .option('--json', 'print the result as JSON on stdout')
    .action(async (directory: string, flags: EvalFlags) => {
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
    })
}
