import { Command, CommanderError } from 'commander'
import { findStorageFault } from '../store/storage-fault.js'
// One file per command group; each exports `register(program)`.
import { register as registerDemo } from './demo.js'
import { EXIT_STORAGE_FAULT, UserError } from './errors.js'
import { register as registerEval } from './eval.js'
import { register as registerGenerate } from './generate.js'
import { register as registerNode } from './node.js'
import { register as registerSim } from './sim.js'
import { register as registerSubmit } from './submit.js'
import { register as registerTasks } from './tasks.js'
import { register as registerTrain } from './train.js'
import { register as registerVersion } from './version.js'

const registrations: Array<(program: Command) => void> = [
  registerVersion,
  registerTrain,
  registerEval,
  registerGenerate,
  registerNode,
  registerSim,
  registerSubmit,
  registerTasks,
  registerDemo,
]

export function buildProgram(): Command {
  const program = new Command('shardnet')
    .description('shardnet: a peer-to-peer compute network (DHT discovery, gossip, WebGPU kernels, Raft)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
  for (const register of registrations) register(program)
  return program
}

/** Runs the CLI and returns the process exit code; never throws for expected failures. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
    return 0
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version exit with 0; usage errors were already printed by commander
      return error.exitCode
    }
    if (error instanceof UserError) {
      process.stderr.write(`error: ${error.message}\n`)
      return error.exitCode
    }
    // a full, read-only or forbidden disk is the user's to fix: one sentence, no stack
    const fault = findStorageFault(error)
    if (fault !== undefined) {
      process.stderr.write(`error: ${fault.message}\n`)
      return EXIT_STORAGE_FAULT
    }
    process.stderr.write(
      `shardnet hit a bug; please report it with this trace:\n${(error as Error)?.stack ?? error}\n`,
    )
    return 70
  }
}
