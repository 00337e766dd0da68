// Proves the task commands through the real executable against background daemons: `submit train`
// returns a task id, `task ID --watch --json` follows it to completion, `tasks` lists it, `result ID
// --out DIR` writes a model that `eval` reads back with the same accuracy, `cancel` stops a running
// task and releases its workers, and bad flags or ids get one clear sentence and a non-zero exit.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { dataDirPaths } from '../../node/store/data-dir.js'
import { isShardnetProcessAlive, readPidFile } from '../../node/store/pid-file.js'
import type { TaskView } from '../../node/tasks/coordinator.js'
import { tempDataDir, waitUntil } from '../integration/daemon-helpers.js'

const execFileAsync = promisify(execFile)

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

async function shardnet(...args: string[]): Promise<CliResult> {
  const environment = { ...process.env }
  delete environment.SHARDNET_DATA_DIR
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/shardnet.js', ...args], {
      env: environment,
      timeout: 300_000,
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
  }
}

async function json<T>(...args: string[]): Promise<T> {
  const result = await shardnet(...args, '--json')
  if (result.code !== 0)
    throw new Error(`shardnet ${args.join(' ')} failed (${result.code}): ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

/** The daemon's API directly (waiting through the CLI would start a process per poll). */
async function api<T>(dataDir: string, path: string): Promise<T> {
  const paths = dataDirPaths(dataDir)
  const endpoint = JSON.parse(await readFile(paths.apiEndpoint, 'utf8')) as { url: string }
  const token = (await readFile(paths.apiToken, 'utf8')).trim()
  const response = await fetch(`${endpoint.url}${path}`, { headers: { authorization: `Bearer ${token}` } })
  return (await response.json()) as T
}

describe('shardnet submit, tasks, task, result, cancel', () => {
  const dataDirs: string[] = []
  afterAll(async () => {
    for (const dataDir of dataDirs) {
      const pid = await readPidFile(dataDirPaths(dataDir).pidFile)
      if (pid !== undefined && isShardnetProcessAlive(pid)) process.kill(pid, 'SIGKILL')
    }
  })

  it('runs a task from the command line and hands back its model', async () => {
    for (let i = 0; i < 4; i++) dataDirs.push(await tempDataDir())
    const [submitter, ...workers] = dataDirs
    const first = await json<{ addresses: string[] }>(
      'node',
      'start',
      '--data-dir',
      submitter,
      '--backend',
      'cpu',
    )
    await Promise.all(
      workers.map((dir) =>
        json('node', 'start', '--data-dir', dir, '--backend', 'cpu', '--bootstrap', first.addresses[0]),
      ),
    )
    await waitUntil(
      async () => (await api<{ peers: number }>(submitter, '/v1/task-topic')).peers >= 3,
      'the submitter to hear three workers on the task topic',
      60_000,
      250,
    )

    const bad = await shardnet('submit', 'train', 'mnist-mlp', '--data-dir', submitter, '--group-size', '2')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/groupSize must be an odd integer/)
    const badDeadline = await shardnet(
      'submit',
      'train',
      'mnist-mlp',
      '--data-dir',
      submitter,
      '--deadline',
      'soon',
    )
    expect(badDeadline.stderr).toMatch(/--deadline must be a duration/)

    const submitted = await json<TaskView>(
      'submit',
      'train',
      'mnist-mlp',
      '--data-dir',
      submitter,
      '--groups',
      '1',
      '--group-size',
      '3',
      '--steps',
      '40',
      '--batch',
      '32',
      '--hidden',
      '32',
      '--lr',
      '0.003',
    )
    expect(submitted.state).toBe('staffing')
    const prefix = submitted.id.slice(0, 12)
    const done = await json<TaskView>('task', prefix, '--watch', '--data-dir', submitter)
    expect(done.id).toBe(submitted.id)
    expect(done.state).toBe('completed')
    const listed = await json<TaskView[]>('tasks', '--data-dir', submitter)
    expect(listed.map((t) => t.id)).toContain(submitted.id)

    const out = join(await tempDataDir(), 'model')
    const copied = await json<{ outDirectory: string; accuracy: number }>(
      'result',
      submitted.id,
      '--out',
      out,
      '--data-dir',
      submitter,
    )
    expect(copied.outDirectory).toBe(out)
    const evaluated = await json<{ accuracy: number }>('eval', out, '--backend', 'cpu')
    expect(evaluated.accuracy).toBeCloseTo(done.accuracy!, 6)

    const again = await shardnet('cancel', submitted.id, '--data-dir', submitter)
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/already completed/)

    // a long task, cancelled while it runs: the workers are released and take the next task
    const long = await json<TaskView>(
      'submit',
      'train',
      'mnist-mlp',
      '--data-dir',
      submitter,
      '--group-size',
      '3',
      '--steps',
      '100000',
      '--hidden',
      '16',
    )
    await waitUntil(
      async () => (await api<TaskView>(submitter, `/v1/task?id=${long.id}`)).groups[0]?.step > 3,
      'the long task to train',
      120_000,
      250,
    )
    const cancelled = await json<TaskView>('cancel', long.id, '--data-dir', submitter)
    expect(cancelled.state).toBe('cancelled')
    const noResult = await shardnet('result', long.id, '--out', out, '--data-dir', submitter)
    expect(noResult.code).toBe(1)
    expect(noResult.stderr).toMatch(/cancelled and has no result/)
    const unknown = await shardnet('task', 'bafkreinosuchtask', '--data-dir', submitter)
    expect(unknown.stderr).toMatch(/no task bafkreinosuchtask was submitted from this node/)

    const next = await json<TaskView>(
      'submit',
      'train',
      'mnist-mlp',
      '--data-dir',
      submitter,
      '--group-size',
      '3',
      '--steps',
      '10',
      '--hidden',
      '16',
      '--watch',
    )
    expect(next.state).toBe('completed')
  }, 480_000)
})
