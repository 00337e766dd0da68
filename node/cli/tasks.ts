// `shardnet tasks`, `task ID [--watch]`, `result ID --out DIR`, `cancel ID`: the tasks submitted from
// this node, as its daemon records them (durably: they survive a daemon restart).
import { lstat, readdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { loadAnyModel, MANIFEST_FILE, ModelFilesError, WEIGHTS_FILE } from '../executor/model-files.js'
import { copyFileAtomic, ensureDurableFolder, isSymbolicLink, isTemporaryName } from '../store/atomic-file.js'
import { isStorageFaultCode, storageFaultSentence } from '../store/storage-fault.js'
import type { TaskView } from '../tasks/coordinator.js'
import { type CopiedPredictions, type InferenceOutput, PREDICTIONS_FILE } from '../tasks/infer-files.js'
import { connectToDaemon } from './daemon-client.js'
import { UserError } from './errors.js'
import { dataDirOption } from './submit.js'
import { describeEnd, fetchTask, formatTask, formatTaskLine, watchTask } from './task-watch.js'

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`)
}

export interface CopiedResult {
  task: string
  outDirectory: string
  weightsPath: string
  manifestPath: string
  /** test accuracy (a classifier), else NaN */
  accuracy: number
  /** validation bits per byte (a GPT) */
  bitsPerByte?: number
}

/**
 * The folder a result is written to: refused if it is a symbolic link or not a folder, created
 * (durably) if missing. Returns its absolute path.
 */
export async function prepareOutputFolder(out: string): Promise<string> {
  const outDirectory = resolve(out)
  const info = await lstat(outDirectory).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw outputError(error, outDirectory, `cannot use ${outDirectory} as the output folder`)
  })
  if (info?.isSymbolicLink() === true) {
    throw new UserError(
      `the output folder ${outDirectory} is a symbolic link; shardnet never writes through one: ` +
        'give the folder it points to, or another folder',
    )
  }
  if (info !== undefined && !info.isDirectory())
    throw new UserError(`the output path ${outDirectory} exists and is not a folder`)
  if (info === undefined) {
    await ensureDurableFolder(outDirectory).catch((error: unknown) => {
      throw outputError(error, outDirectory, `cannot create the output folder ${outDirectory}`)
    })
  }
  return outDirectory
}

/**
 * Copies `source` to `folder/name` atomically (temp file in the folder, fsync, rename, fsync the
 * folder); refuses a target that is a symbolic link.
 */
async function copyIntoFolder(source: string, folder: string, name: string): Promise<string> {
  const target = join(folder, name)
  if (await isSymbolicLink(target)) {
    throw new UserError(
      `${target} is a symbolic link; shardnet never writes through one: remove it or choose another folder`,
    )
  }
  await copyFileAtomic(source, target)
  return target
}

/** A failed write to the output folder as one sentence (a full or read-only disk says what to do). */
function outputError(error: unknown, folder: string, what: string): Error {
  if (error instanceof UserError) return error
  if (isStorageFaultCode(error)) return new UserError(storageFaultSentence(error.code, folder, 'output'))
  const code = (error as NodeJS.ErrnoException).code
  return code !== undefined ? new UserError(`${what}: ${code}`) : (error as Error)
}

/** Copies a completed task's model to `out` and checks the copy reads back. */
export async function copyResult(task: TaskView, out: string): Promise<CopiedResult> {
  if (task.state !== 'completed' || task.resultDir === undefined) {
    const step = task.groups.length > 0 ? Math.min(...task.groups.map((g) => g.step)) : 0
    throw new UserError(
      task.state === 'failed' || task.state === 'cancelled'
        ? `task ${task.id} ${task.state} and has no ` +
            `result${task.error !== undefined ? ` (${task.error})` : ''}`
        : `task ${task.id} is ${task.state} (step ${step}/${task.steps}) and has no result yet; ` +
            `wait with \`shardnet task ${task.id} --watch\``,
    )
  }
  const resultDir = task.resultDir
  const outDirectory = await prepareOutputFolder(out)
  try {
    // model.json last: a reader never takes a half-copied directory for a model
    const files = (await readdir(resultDir)).filter(
      (name) => name !== MANIFEST_FILE && !isTemporaryName(name),
    )
    for (const name of files) await copyIntoFolder(join(resultDir, name), outDirectory, name)
    await copyIntoFolder(join(resultDir, MANIFEST_FILE), outDirectory, MANIFEST_FILE)
    await loadAnyModel(outDirectory)
  } catch (error) {
    if (error instanceof ModelFilesError) throw new UserError(error.message)
    throw outputError(error, outDirectory, `cannot copy the model of task ${task.id} to ${outDirectory}`)
  }
  return {
    task: task.id,
    outDirectory,
    weightsPath: join(outDirectory, WEIGHTS_FILE),
    manifestPath: join(outDirectory, MANIFEST_FILE),
    accuracy: task.accuracy ?? Number.NaN,
    ...(task.bitsPerByte !== undefined ? { bitsPerByte: task.bitsPerByte } : {}),
  }
}

/** Copies a completed inference task's predictions.json to `out` and checks the copy reads back. */
export async function copyPredictionsResult(task: TaskView, out: string): Promise<CopiedPredictions> {
  if (task.state !== 'completed' || task.resultDir === undefined) {
    throw new UserError(
      task.state === 'running'
        ? `task ${task.id} is still running and has no result yet; ` +
            `wait with \`shardnet task ${task.id} --watch\``
        : `task ${task.id} ${task.state} and has no ` +
            `result${task.error !== undefined ? ` (${task.error})` : ''}`,
    )
  }
  const resultDir = task.resultDir
  const outDirectory = await prepareOutputFolder(out)
  let predictionsPath: string
  let output: InferenceOutput
  try {
    predictionsPath = await copyIntoFolder(join(resultDir, PREDICTIONS_FILE), outDirectory, PREDICTIONS_FILE)
    output = JSON.parse(await readFile(predictionsPath, 'utf8')) as InferenceOutput
  } catch (error) {
    if (error instanceof SyntaxError)
      throw new UserError(`the predictions of task ${task.id} in ${resultDir} are not valid JSON`)
    throw outputError(
      error,
      outDirectory,
      `cannot copy the predictions of task ${task.id} to ${outDirectory}`,
    )
  }
  return { task: task.id, predictionsPath, count: output.count, agreement: output.agreement }
}

export function register(program: Command): void {
  program
    .command('tasks')
    .description('the tasks submitted from this node, newest first')
    .addOption(dataDirOption())
    .option('--json', 'machine-readable output on stdout')
    .action(async (flags: { dataDir: string; json?: boolean }) => {
      const client = await connectToDaemon(flags.dataDir)
      const { tasks } = await client.get<{ tasks: TaskView[] }>('/v1/tasks')
      print(
        flags.json === true,
        tasks,
        tasks.length === 0 ? 'no tasks submitted from this node' : tasks.map(formatTaskLine).join('\n'),
      )
    })

  program
    .command('task')
    .description('one task: state, groups, leaders, members, progress; --watch follows it live')
    .argument('<id>', 'the task id (or a unique part of its start or end, 6 characters or more)')
    .addOption(dataDirOption())
    .option('--watch', 'follow the task until it ends (progress bars on stderr)')
    .option('--json', 'machine-readable output on stdout')
    .action(async (id: string, flags: { dataDir: string; watch?: boolean; json?: boolean }) => {
      const client = await connectToDaemon(flags.dataDir)
      const task = flags.watch === true ? await watchTask(client, id) : await fetchTask(client, id)
      print(
        flags.json === true,
        task,
        flags.watch === true ? `${formatTask(task)}\n${describeEnd(task)}` : formatTask(task),
      )
    })

  program
    .command('result')
    .description(
      'write a completed task’s result to a directory: a training task’s model (model.safetensors + ' +
        'model.json), an inference task’s predictions.json',
    )
    .argument('<id>', 'the task id (or a unique part of it)')
    .requiredOption(
      '--out <dir>',
      'the directory to write the result to (created if missing; never a symbolic link); each file is ' +
        'written atomically',
    )
    .addOption(dataDirOption())
    .option('--json', 'machine-readable output on stdout')
    .action(async (id: string, flags: { dataDir: string; out: string; json?: boolean }) => {
      const client = await connectToDaemon(flags.dataDir)
      const task = await fetchTask(client, id)
      if (task.kind === 'infer') {
        // an inference task's result is its predictions (node/tasks/infer-files.ts)
        const written = await copyPredictionsResult(task, flags.out)
        const a = written.agreement
        print(
          flags.json === true,
          written,
          `wrote ${written.predictionsPath}: ${written.count} predictions; ` +
            `${a.agreeingResults}/${a.results} replica results agreed, ` +
            `${a.reruns} re-runs${a.outliers.length > 0 ? `, outliers ${a.outliers.join(', ')}` : ''}`,
        )
        return
      }
      const copied = await copyResult(task, flags.out)
      print(
        flags.json === true,
        copied,
        `wrote ${copied.weightsPath} and ${copied.manifestPath} (` +
          (copied.bitsPerByte !== undefined
            ? `validation ${copied.bitsPerByte.toFixed(3)} bits/byte)`
            : `test accuracy ${(copied.accuracy * 100).toFixed(2)}%)`),
      )
    })

  program
    .command('cancel')
    .description('cancel a task submitted from this node; its workers are released')
    .argument('<id>', 'the task id (or a unique part of it)')
    .addOption(dataDirOption())
    .option('--json', 'machine-readable output on stdout')
    .action(async (id: string, flags: { dataDir: string; json?: boolean }) => {
      const client = await connectToDaemon(flags.dataDir)
      const task = await client.post<TaskView>('/v1/task/cancel', { id })
      print(flags.json === true, task, `task ${task.id} cancelled`)
    })
}
