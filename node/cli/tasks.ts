// `shardnet tasks`, `task ID [--watch]`, `result ID --out DIR`, `cancel ID`: the tasks submitted from
// this node, as its daemon records them (durably: they survive a daemon restart).
import { copyFile, mkdir, readdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { loadAnyModel, MANIFEST_FILE, ModelFilesError, WEIGHTS_FILE } from '../executor/model-files.js'
import type { TaskView } from '../tasks/coordinator.js'
import { copyPredictions, InferenceInputError } from '../tasks/infer-files.js'
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
  const outDirectory = resolve(out)
  await mkdir(outDirectory, { recursive: true })
  try {
    // model.json last: a reader never takes a half-copied directory for a model
    const files = (await readdir(task.resultDir)).filter(
      (name) => name !== MANIFEST_FILE && !name.includes('.tmp-'),
    )
    for (const name of files) await copyFile(join(task.resultDir, name), join(outDirectory, name))
    await copyFile(join(task.resultDir, MANIFEST_FILE), join(outDirectory, MANIFEST_FILE))
    await loadAnyModel(outDirectory)
  } catch (error) {
    if (error instanceof ModelFilesError) throw new UserError(error.message)
    const code = (error as NodeJS.ErrnoException).code
    if (code !== undefined)
      throw new UserError(`cannot copy the model of task ${task.id} to ${outDirectory}: ${code}`)
    throw error
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
    .requiredOption('--out <dir>', 'the directory to write the model to (created if missing)')
    .addOption(dataDirOption())
    .option('--json', 'machine-readable output on stdout')
    .action(async (id: string, flags: { dataDir: string; out: string; json?: boolean }) => {
      const client = await connectToDaemon(flags.dataDir)
      const task = await fetchTask(client, id)
      if (task.kind === 'infer') {
        // an inference task's result is its predictions (node/tasks/infer-files.ts)
        const written = await copyPredictions(task, resolve(flags.out)).catch((error: unknown) => {
          throw error instanceof InferenceInputError ? new UserError(error.message) : error
        })
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
