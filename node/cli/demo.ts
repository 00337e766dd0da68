// `shardnet demo`: a whole shardnet network on this machine. Starts N daemons on loopback with the
// real `node start` machinery (background child processes, temp data dirs, the first node as the
// others' bootstrap peer), submits an MNIST training task (2 groups of 3 by default) from the first
// one, shows its progress, copies the model out, runs the inference hook, and stops every daemon.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import pc from 'picocolors'
import type { TaskView } from '../tasks/coordinator.js'
import { DEMO_INFER_REPLICAS_DEFAULT, type DemoInference, runDemoInference } from '../tasks/infer-demo.js'
import { connectToDaemon } from './daemon-client.js'
import { UserError } from './errors.js'
import { type StartedDaemon, startInBackground, stopDaemon } from './node-lifecycle.js'
import { describeEnd, shortPeer, watchTask } from './task-watch.js'
import { copyResult } from './tasks.js'
import { parseNumberFlag } from './train.js'

export interface DemoOptions {
  nodes: number
  groups: number
  groupSize: number
  steps: number
  batchSize: number
  hiddenSizes: number[]
  learningRate: number
  outerEvery: number
  seed: number
  /** where the model is copied; default a new folder in the temp dir */
  out?: string
  /** keep the daemons' data dirs (logs, blocks, records) */
  keep: boolean
  quiet: boolean
}

export interface DemoResult {
  nodes: number
  taskId: string
  state: string
  accuracy: number
  modelDir: string
  steps: number
  groups: Array<{ group: number; members: string[]; leader: string }>
  outerRounds: number
  seconds: { network: number; training: number; total: number }
  inference: DemoInference
  dataDirs?: string[]
}

/** Polls until `condition` holds or `timeoutMs` passes (then a UserError naming `what`). */
async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await condition().catch(() => false)) return
    if (Date.now() > deadline)
      throw new UserError(`the demo network did not come up: ${what} after ${timeoutMs / 1000} s`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

export async function runDemo(options: DemoOptions, say: (line: string) => void): Promise<DemoResult> {
  const started = Date.now()
  const root = await mkdtemp(join(tmpdir(), 'shardnet-demo-'))
  const dataDirs = Array.from({ length: options.nodes }, (_, i) => join(root, `node-${i}`))
  const running: string[] = []
  let interrupted = false
  // Ctrl-C (or SIGTERM): stop every daemon the demo started, remove its data dirs, exit 130
  const onSignal = () => {
    if (interrupted) return
    interrupted = true
    say('interrupted: stopping the demo network')
    void Promise.all(running.map((dataDir) => stopDaemon(dataDir, 10_000, true).catch(() => {})))
      .then(() => (options.keep ? undefined : rm(root, { recursive: true, force: true })))
      .finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    say(`starting ${options.nodes} daemons on loopback (data dirs in ${root})`)
    const first: StartedDaemon = await startInBackground(
      { dataDir: dataDirs[0], overrides: { backend: 'cpu' } },
      60_000,
      () => {},
    )
    running.push(dataDirs[0])
    const others = await Promise.all(
      dataDirs.slice(1).map(async (dataDir) => {
        const daemon = await startInBackground(
          { dataDir, overrides: { backend: 'cpu', bootstrap: [first.addresses[0]] } },
          60_000,
          () => {},
        )
        running.push(dataDir)
        return daemon
      }),
    )
    say(`submitter ${first.peerId}; workers ${others.map((d) => shortPeer(d.peerId)).join(', ')}`)
    const client = await connectToDaemon(dataDirs[0])
    await waitFor(
      async () => (await client.get<{ peers: number }>('/v1/task-topic')).peers >= options.nodes - 1,
      `the submitter hears ${options.nodes - 1} workers on the task topic`,
      60_000,
    )
    const networkSeconds = (Date.now() - started) / 1000
    say(
      `network up in ${networkSeconds.toFixed(1)} s; submitting mnist-mlp: ` +
        `${options.groups} groups of ${options.groupSize}, ${options.steps} steps`,
    )
    if (interrupted) throw new UserError('the demo was interrupted')
    const trainingStarted = Date.now()
    const submitted = await client.post<TaskView>('/v1/tasks', {
      kind: 'train',
      model: 'mnist-mlp',
      hiddenSizes: options.hiddenSizes,
      groups: options.groups,
      groupSize: options.groupSize,
      steps: options.steps,
      batchSize: options.batchSize,
      learningRate: options.learningRate,
      outerEvery: options.outerEvery,
      seed: options.seed,
    })
    say(`task ${submitted.id}`)
    const final = await watchTask(client, submitted.id, { quiet: options.quiet, timeoutMs: 15 * 60_000 })
    const trainingSeconds = (Date.now() - trainingStarted) / 1000
    if (final.state !== 'completed') throw new UserError(describeEnd(final))
    const out = resolve(options.out ?? join(tmpdir(), `shardnet-demo-model-${Date.now()}`))
    const copied = await copyResult(final, out)
    say(
      `trained in ${trainingSeconds.toFixed(1)} s: test accuracy ` +
        `${(final.accuracy! * 100).toFixed(2)}%; model in ${copied.outDirectory}`,
    )
    // inference (node/tasks/infer-demo.ts): MNIST test images through the trained model, R replicas per shard
    let inference: DemoResult['inference']
    try {
      inference = await runDemoInference(
        client,
        {
          modelDir: copied.outDirectory,
          folder: root,
          copyTo: copied.outDirectory,
          replicas: Math.min(DEMO_INFER_REPLICAS_DEFAULT, options.nodes - 1),
        },
        say,
      )
      if (inference.state !== 'completed') say(`inference ${inference.state}: ${inference.reason}`)
    } catch (error) {
      inference = {
        available: false,
        reason: (error as Error).message.replace(/^the daemon refused POST \/v1\/tasks: /, ''),
      }
      say(`inference skipped: ${inference.reason}`)
    }
    return {
      nodes: options.nodes,
      taskId: final.id,
      state: final.state,
      accuracy: final.accuracy!,
      modelDir: copied.outDirectory,
      steps: final.steps,
      groups: final.groups.map((g) => ({ group: g.group, members: g.members, leader: g.leader })),
      outerRounds: final.outerRound,
      seconds: { network: networkSeconds, training: trainingSeconds, total: (Date.now() - started) / 1000 },
      inference,
      ...(options.keep ? { dataDirs } : {}),
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    say(`stopping ${running.length} daemons`)
    await Promise.all(running.map((dataDir) => stopDaemon(dataDir, 20_000, true).catch(() => {})))
    if (!options.keep) await rm(root, { recursive: true, force: true })
  }
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'start a local shardnet network, train MNIST across it in Raft groups, show the result, stop it',
    )
    .option('--nodes <n>', 'daemons to start (1 submitter + workers)', '7')
    .option('--groups <n>', 'training groups', '2')
    .option('--group-size <k>', 'members per group (odd)', '3')
    .option('--steps <n>', 'inner training steps', '300')
    .option('--batch <n>', 'micro-batch size of each member', '32')
    .option('--hidden <n>', 'hidden layer width', '128')
    .option('--lr <rate>', 'Adam learning rate', '0.002')
    .option('--outer-every <h>', 'average the groups every H steps', '100')
    .option('--seed <n>', 'task seed', '1')
    .option('--out <dir>', 'where to write the trained model (default: a new folder in the temp dir)')
    .option('--keep', 'keep the daemons’ data dirs (logs, blocks, task records) for inspection')
    .option('--json', 'print one JSON object with the results on stdout')
    .action(
      async (flags: {
        nodes: string
        groups: string
        groupSize: string
        steps: string
        batch: string
        hidden: string
        lr: string
        outerEvery: string
        seed: string
        out?: string
        keep?: boolean
        json?: boolean
      }) => {
        const options: DemoOptions = {
          nodes: parseNumberFlag('--nodes', flags.nodes),
          groups: parseNumberFlag('--groups', flags.groups),
          groupSize: parseNumberFlag('--group-size', flags.groupSize),
          steps: parseNumberFlag('--steps', flags.steps),
          batchSize: parseNumberFlag('--batch', flags.batch),
          hiddenSizes: [parseNumberFlag('--hidden', flags.hidden)],
          learningRate: parseNumberFlag('--lr', flags.lr),
          outerEvery: parseNumberFlag('--outer-every', flags.outerEvery),
          seed: parseNumberFlag('--seed', flags.seed),
          ...(flags.out !== undefined ? { out: flags.out } : {}),
          keep: flags.keep === true,
          quiet: false,
        }
        if (!Number.isInteger(options.nodes) || options.nodes < 2 || options.nodes > 32) {
          throw new UserError('--nodes must be an integer from 2 to 32')
        }
        if (options.groups * options.groupSize > options.nodes - 1) {
          throw new UserError(
            `${options.groups} groups of ${options.groupSize} need ` +
              `${options.groups * options.groupSize} workers, but --nodes ${options.nodes} gives ` +
              `${options.nodes - 1} (one node submits)`,
          )
        }
        const result = await runDemo(options, (line) => process.stderr.write(`${pc.dim('demo:')} ${line}\n`))
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
          return
        }
        process.stdout.write(
          `${pc.bold(`test accuracy ${(result.accuracy * 100).toFixed(2)}%`)} from ` +
            `${result.groups.length} groups of ${options.groupSize} on ${result.nodes} local daemons ` +
            `in ${result.seconds.total.toFixed(0)} s\n` +
            `model: ${result.modelDir} (try \`shardnet eval ${result.modelDir}\`)\n` +
            `inference: ${describeInference(result.inference)}\n`,
        )
      },
    )
}

function describeInference(i: DemoInference): string {
  if (!i.available) return `not run (${i.reason})`
  if (i.state !== 'completed') return `${i.state} (${i.reason})`
  return (
    `${i.count} test images, ${i.shards} shards x ${i.replicas} replicas: ` +
    `${i.agreeingResults}/${i.results} replica results agreed, ${i.reruns} re-runs, ` +
    `accuracy ${((i.accuracy ?? 0) * 100).toFixed(2)}%; predictions in ${i.predictionsPath}`
  )
}
