// `shardnet demo`: a whole shardnet network on this machine. Starts N daemons on loopback with the
// real `node start` machinery (background child processes, temp data dirs, the first node as the
// others' bootstrap peer), submits a training task (2 groups of 3 by default) from the first one,
// shows its progress, copies the model out, and stops every daemon. With the MNIST MLP (the default)
// it then runs an inference task whose shards a quorum of replicas checks; with `--model gpt` it
// trains the tiny GPT briefly on the linux-doc-6.1 corpus, prints a sample generated on this machine,
// then has workers serve the model in spans of blocks (two per span where there are enough) and
// generates the same sample through that chain from the submitter (POST /v1/serve, /v1/generate):
// sampling happens at the client, so the text equals the local one with the same seed.
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type Command, Option } from 'commander'
import pc from 'picocolors'
import { GPT_SHAPE_DEFAULT } from '../../protocols/tasks/spec.js'
import type { GenerateStreamLine } from '../api/generate-routes.js'
import type { NodeStatus } from '../api/node-routes.js'
import type { ServeListing } from '../api/serving-routes.js'
import { BACKEND_PROBE_FILE } from '../executor/backend-probe.js'
import { generateGptLocal } from '../executor/local-gpt.js'
import type { BackendChoice } from '../executor/local-training.js'
import type { NetworkGenerateResult } from '../serving/api.js'
import type { ServeEntry } from '../serving/served-models.js'
import type { TaskView } from '../tasks/coordinator.js'
import { DEMO_INFER_REPLICAS_DEFAULT, type DemoInference, runDemoInference } from '../tasks/infer-demo.js'
import { connectToDaemon, type DaemonClient } from './daemon-client.js'
import { UserError } from './errors.js'
import { type StartedDaemon, startInBackground, stopDaemon } from './node-lifecycle.js'
import { describeEnd, shortPeer, watchTask } from './task-watch.js'
import { copyResult } from './tasks.js'
import { parseNumberFlag } from './train.js'

export type DemoModel = 'mnist-mlp' | 'gpt'

export interface DemoOptions {
  model: DemoModel
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
  model: DemoModel
  nodes: number
  taskId: string
  state: string
  /** test accuracy (mnist-mlp) */
  accuracy?: number
  /** validation bits per byte (gpt) */
  bitsPerByte?: number
  /** the GPT's continuation of DEMO_PROMPT, generated on this machine (gpt) */
  sample?: { prompt: string; text: string }
  /** the same continuation generated through a chain of the demo's daemons serving spans (gpt) */
  serving?: DemoServing
  modelDir: string
  steps: number
  groups: Array<{ group: number; members: string[]; leader: string }>
  outerRounds: number
  seconds: { network: number; training: number; serving?: number; total: number }
  inference?: DemoInference
  dataDirs?: string[]
}

/** What the demo's GPT is asked to continue, and how much it writes. */
export const DEMO_PROMPT = 'The kernel '
/** Bytes per training window of the demo's GPT: a quarter of the tiny preset's context, 4x the steps/s */
export const DEMO_GPT_CONTEXT = 64
export const DEMO_SAMPLE_BYTES = 160

/**
 * The demo's defaults per model: MNIST trains in a few minutes; the tiny GPT (its width, layers and
 * heads, on windows of DEMO_GPT_CONTEXT bytes) briefly, enough to learn the corpus's common bytes
 * and words.
 */
export const DEMO_DEFAULTS: Record<
  DemoModel,
  { steps: number; batch: number; lr: number; outerEvery: number }
> = {
  'mnist-mlp': { steps: 300, batch: 32, lr: 0.002, outerEvery: 100 },
  gpt: { steps: 120, batch: 2, lr: 0.003, outerEvery: 20 },
}

/** How the demo's GPT samples, on this machine and through the network alike. */
export const DEMO_SAMPLING = { temperature: 0.8, topK: 40 }

/**
 * The GPT's sample from `modelDir`: DEMO_SAMPLE_BYTES drawn after DEMO_PROMPT on this machine, on
 * `backend` (the daemons' backend, so that the network's text can be compared byte for byte).
 */
async function sampleGpt(
  modelDir: string,
  seed: number,
  backend: BackendChoice,
): Promise<{ prompt: string; text: string; bytes: Uint8Array }> {
  const bytes: number[] = []
  await generateGptLocal(
    {
      modelDirectory: modelDir,
      prompt: new TextEncoder().encode(DEMO_PROMPT),
      tokens: DEMO_SAMPLE_BYTES,
      ...DEMO_SAMPLING,
      seed,
      cache: true,
      backend,
    },
    { onByte: (byte) => bytes.push(byte) },
  )
  return { prompt: DEMO_PROMPT, text: Buffer.from(bytes).toString('utf8'), bytes: Uint8Array.from(bytes) }
}

/**
 * The demo's generation through the network: which workers served which span of the model's blocks,
 * the chain the submitter's generation went through, and whether its text is the local sample's.
 * `available` false: serving or generating failed, and `reason` says why.
 */
export interface DemoServing {
  available: boolean
  reason?: string
  /** the model's content id (its package's CID) */
  modelId?: string
  /** each serving worker, its span [start, end) and the tokens/s it measured at load */
  servers?: Array<{ peerId: string; start: number; end: number; tokensPerSecond?: number }>
  /** the servers the generation went through, in order, each with its blocks [start, end) */
  chain?: Array<{ peerId: string; start: number; end: number }>
  /** the generated text (DEMO_PROMPT's continuation) */
  text?: string
  tokens?: number
  tokensPerSecond?: number
  /** from the request to the first generated byte (the first request also fetches the model's ends) */
  firstByteMs?: number
  /** bytes identical to the local sample's with the same seed */
  sameAsLocal?: boolean
  /** sampling happens at the client: the servers only run blocks, the random stream never leaves it */
  sampledAt?: 'client'
}

/** How long the demo waits for its workers to serve their spans, and for a chain to be found. */
const DEMO_SERVE_TIMEOUT_MS = 60_000
const DEMO_CHAIN_TIMEOUT_MS = 30_000
const DEMO_POLL_MS = 250

/**
 * The spans the demo serves: the model's `blocks` cut in two halves (one span when there is one
 * worker or one block), each served by up to two workers, so that a chain has two hops and each hop
 * a spare. Answers the served blocks [start, end) of each serving worker, by its index in `workers`.
 */
export function demoSpans(workers: number, blocks: number): Array<{ start: number; end: number }> {
  const spans = workers >= 2 && blocks >= 2 ? 2 : 1
  const replicas = Math.min(2, Math.floor(workers / spans))
  const out: Array<{ start: number; end: number }> = []
  for (let span = 0; span < spans; span++) {
    const start = Math.round((span * blocks) / spans)
    const end = Math.round(((span + 1) * blocks) / spans)
    for (let replica = 0; replica < replicas; replica++) out.push({ start, end })
  }
  return out
}

/** Reads an NDJSON generation (POST /v1/generate): its bytes and its result, or throws its error. */
async function readGeneration(
  stream: ReadableStream<Uint8Array>,
): Promise<{ bytes: Uint8Array; result: NetworkGenerateResult & { model: string } }> {
  const pieces: Buffer[] = []
  let result: (NetworkGenerateResult & { model: string }) | undefined
  const decoder = new TextDecoder()
  let buffered = ''
  const handle = (line: string) => {
    if (line === '') return
    const parsed = JSON.parse(line) as GenerateStreamLine
    if ('bytes' in parsed) pieces.push(Buffer.from(parsed.bytes, 'base64'))
    else if ('result' in parsed) result = parsed.result
    else throw new UserError(`the generation failed: ${parsed.error.message}`)
  }
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true })
    const lines = buffered.split('\n')
    buffered = lines.pop() ?? ''
    for (const line of lines) handle(line)
  }
  handle(buffered + decoder.decode())
  if (result === undefined) throw new UserError('the generation ended without a result')
  return { bytes: new Uint8Array(Buffer.concat(pieces)), result }
}

/**
 * Serves the model in `modelDir` on the workers in spans (demoSpans), then generates the demo's
 * sample through them from `client` (which serves nothing, so every hop crosses the network) and
 * compares it with the local sample's bytes.
 */
async function runDemoServing(
  client: DaemonClient,
  workers: DaemonClient[],
  options: { modelDir: string; blocks: number; seed: number; local: Uint8Array },
  say: (line: string) => void,
): Promise<DemoServing> {
  const spans = demoSpans(workers.length, options.blocks)
  const servers = spans.map((span, index) => ({ ...span, daemon: workers[index] }))
  say(
    `serving the model in spans: ${servers
      .map((s) => `${shortPeer(s.daemon.peerId)} blocks ${s.start}-${s.end - 1}`)
      .join(', ')}`,
  )
  const entries = await Promise.all(
    servers.map(async ({ daemon, start, end }) => {
      const { entry } = await daemon.post<{ entry: ServeEntry }>('/v1/serve', {
        model: options.modelDir,
        blocks: `${start}-${end - 1}`,
      })
      let current = entry
      const deadline = Date.now() + DEMO_SERVE_TIMEOUT_MS
      while (current.state !== 'serving') {
        if (current.state === 'failed' || current.state === 'stopped')
          throw new UserError(
            `${shortPeer(daemon.peerId)} could not serve blocks ${start}-${end - 1}: ` +
              `${current.error ?? current.state}`,
          )
        if (Date.now() > deadline)
          throw new UserError(
            `${shortPeer(daemon.peerId)} was still ${current.state} blocks ${start}-${end - 1} after ` +
              `${DEMO_SERVE_TIMEOUT_MS / 1000} s`,
          )
        await new Promise((done) => setTimeout(done, DEMO_POLL_MS))
        const listing = await daemon.get<ServeListing>('/v1/serve')
        current = listing.entries.find((e) => e.model === options.modelDir) ?? current
      }
      return current
    }),
  )
  const modelId = entries[0].modelId
  if (modelId === undefined || entries.some((entry) => entry.modelId !== modelId))
    throw new UserError(`the workers computed different model ids: ${entries.map((e) => e.modelId)}`)
  // the servers' records may take a moment to reach the submitter's view of the DHT: a generation
  // that finds no chain yet is tried again until DEMO_CHAIN_TIMEOUT_MS
  const body = {
    model: modelId,
    prompt: DEMO_PROMPT,
    maxTokens: DEMO_SAMPLE_BYTES,
    ...DEMO_SAMPLING,
    topP: 1,
    seed: options.seed,
  }
  const deadline = Date.now() + DEMO_CHAIN_TIMEOUT_MS
  let generated: Awaited<ReturnType<typeof readGeneration>>
  for (;;) {
    try {
      const signal = AbortSignal.timeout(DEMO_SERVE_TIMEOUT_MS)
      generated = await readGeneration(await client.postStream('/v1/generate', body, signal))
      break
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((done) => setTimeout(done, 4 * DEMO_POLL_MS))
    }
  }
  const { bytes, result } = generated
  const same = Buffer.from(bytes).equals(Buffer.from(options.local))
  return {
    available: true,
    modelId,
    servers: servers.map(({ daemon, start, end }, index) => ({
      peerId: daemon.peerId,
      start,
      end,
      ...(entries[index].tokensPerSecond === undefined
        ? {}
        : { tokensPerSecond: entries[index].tokensPerSecond }),
    })),
    chain: result.chain.map((hop) => ({ peerId: hop.peerId, start: hop.start, end: hop.end })),
    text: Buffer.from(bytes).toString('utf8'),
    tokens: result.tokens,
    tokensPerSecond: result.tokens / Math.max(result.seconds, 1e-9),
    firstByteMs: result.firstTokenMs,
    sameAsLocal: same,
    sampledAt: 'client',
  }
}

/** One line on the network's generation: its chain, its speed and how its text compares. */
export function describeServing(serving: DemoServing): string {
  if (!serving.available) return `not run (${serving.reason})`
  const chain = serving.chain!.map((hop) => `${shortPeer(hop.peerId)} (blocks ${hop.start}-${hop.end - 1})`)
  return (
    `${serving.tokens} bytes through ${chain.join(' -> ')} at ${serving.tokensPerSecond!.toFixed(1)} ` +
    `tokens/s, first byte after ${Math.round(serving.firstByteMs!)} ms; ` +
    (serving.sameAsLocal === true
      ? 'the same text as the local sample (sampling happens at the client, with the same seed)'
      : 'NOT the text of the local sample, though sampling happens at the client with the same seed')
  )
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
    // every daemon computes on the backend its start-up probe measures fastest. The first measures;
    // the others, on the same machine, start from its cached figures: probes that ran side by side
    // would each measure with the others' load and could choose differently.
    say(`starting ${options.nodes} daemons on loopback (data dirs in ${root})`)
    const first: StartedDaemon = await startInBackground(
      { dataDir: dataDirs[0], overrides: {} },
      60_000,
      () => {},
    )
    running.push(dataDirs[0])
    await Promise.all(
      dataDirs.slice(1).map(async (dataDir) => {
        await mkdir(dataDir, { recursive: true, mode: 0o700 })
        // without the first node's cache (it could not write one) a node measures for itself
        await copyFile(join(dataDirs[0], BACKEND_PROBE_FILE), join(dataDir, BACKEND_PROBE_FILE)).catch(
          () => {},
        )
      }),
    )
    const others = await Promise.all(
      dataDirs.slice(1).map(async (dataDir) => {
        const daemon = await startInBackground(
          { dataDir, overrides: { bootstrap: [first.addresses[0]] } },
          60_000,
          () => {},
        )
        running.push(dataDir)
        return daemon
      }),
    )
    say(`submitter ${first.peerId}; workers ${others.map((d) => shortPeer(d.peerId)).join(', ')}`)
    const client = await connectToDaemon(dataDirs[0])
    const { capability } = await client.get<NodeStatus>('/v1/status')
    say(
      `computing on ${capability.backend}` +
        `${capability.cpuEngine === undefined ? '' : `/${capability.cpuEngine}`} ` +
        `(${capability.matmulGflops.toFixed(1)} GFLOP/s at matmul ${capability.matmulSize}, the fastest of ` +
        `${capability.backends.length} backends measured)`,
    )
    await waitFor(
      async () => (await client.get<{ peers: number }>('/v1/task-topic')).peers >= options.nodes - 1,
      `the submitter hears ${options.nodes - 1} workers on the task topic`,
      60_000,
    )
    const networkSeconds = (Date.now() - started) / 1000
    const gpt = options.model === 'gpt'
    say(
      `network up in ${networkSeconds.toFixed(1)} s; submitting ${gpt ? 'the tiny gpt' : 'mnist-mlp'}: ` +
        `${options.groups} groups of ${options.groupSize}, ${options.steps} steps`,
    )
    if (interrupted) throw new UserError('the demo was interrupted')
    const trainingStarted = Date.now()
    const submitted = await client.post<TaskView>('/v1/tasks', {
      kind: 'train',
      model: options.model,
      ...(gpt ? { gpt: { ...GPT_SHAPE_DEFAULT, context: DEMO_GPT_CONTEXT } } : {}),
      ...(gpt ? {} : { hiddenSizes: options.hiddenSizes }),
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
    const common = {
      model: options.model,
      nodes: options.nodes,
      taskId: final.id,
      state: final.state,
      modelDir: copied.outDirectory,
      steps: final.steps,
      groups: final.groups.map((g) => ({ group: g.group, members: g.members, leader: g.leader })),
      outerRounds: final.outerRound,
      ...(options.keep ? { dataDirs } : {}),
    }
    if (gpt) {
      say(
        `trained in ${trainingSeconds.toFixed(1)} s: validation ${final.bitsPerByte!.toFixed(3)} ` +
          `bits/byte; model in ${copied.outDirectory}`,
      )
      // on the daemons' backend: the cpu engines agree bitwise, WebGPU with them only within 1e-5
      const local = await sampleGpt(copied.outDirectory, options.seed, capability.backend)
      say(`local sample: ${JSON.stringify(local.text.slice(0, 60))}...`)
      const servingStarted = Date.now()
      let serving: DemoServing
      try {
        if (interrupted) throw new UserError('the demo was interrupted')
        const workers = await Promise.all(dataDirs.slice(1).map((dataDir) => connectToDaemon(dataDir)))
        serving = await runDemoServing(
          client,
          workers,
          {
            modelDir: copied.outDirectory,
            blocks: GPT_SHAPE_DEFAULT.layers,
            seed: options.seed,
            local: local.bytes,
          },
          say,
        )
        say(`network sample: ${describeServing(serving)}`)
      } catch (error) {
        serving = { available: false, reason: (error as Error).message }
        say(`serving failed: ${serving.reason}`)
      }
      const servingSeconds = (Date.now() - servingStarted) / 1000
      say(`serving and the network sample took ${servingSeconds.toFixed(1)} s`)
      return {
        ...common,
        bitsPerByte: final.bitsPerByte!,
        sample: { prompt: local.prompt, text: local.text },
        serving,
        seconds: {
          network: networkSeconds,
          training: trainingSeconds,
          serving: servingSeconds,
          total: (Date.now() - started) / 1000,
        },
      }
    }
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
      ...common,
      accuracy: final.accuracy!,
      seconds: { network: networkSeconds, training: trainingSeconds, total: (Date.now() - started) / 1000 },
      inference,
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
      'start a local shardnet network, train a model across it in Raft groups, show the result, stop it',
    )
    .addOption(
      new Option(
        '--model <name>',
        'mnist-mlp (then an inference task) or gpt (the tiny GPT, then a sample, local and served in spans)',
      )
        .choices(['mnist-mlp', 'gpt'])
        .default('mnist-mlp'),
    )
    .option('--nodes <n>', 'daemons to start (1 submitter + workers)', '7')
    .option('--groups <n>', 'training groups', '2')
    .option('--group-size <k>', 'members per group (odd)', '3')
    .option(
      '--steps <n>',
      `inner training steps (default ${DEMO_DEFAULTS['mnist-mlp'].steps}; gpt ${DEMO_DEFAULTS.gpt.steps})`,
    )
    .option(
      '--batch <n>',
      `micro-batch of each member (default ${DEMO_DEFAULTS['mnist-mlp'].batch}; ` +
        `gpt ${DEMO_DEFAULTS.gpt.batch})`,
    )
    .option('--hidden <n>', 'mnist-mlp: hidden layer width', '128')
    .option(
      '--lr <rate>',
      `AdamW learning rate (default ${DEMO_DEFAULTS['mnist-mlp'].lr}; gpt ${DEMO_DEFAULTS.gpt.lr})`,
    )
    .option(
      '--outer-every <h>',
      `average the groups every H steps (default ${DEMO_DEFAULTS['mnist-mlp'].outerEvery}; ` +
        `gpt ${DEMO_DEFAULTS.gpt.outerEvery})`,
    )
    .option('--seed <n>', 'task seed', '1')
    .option('--out <dir>', 'where to write the trained model (default: a new folder in the temp dir)')
    .option('--keep', 'keep the daemons’ data dirs (logs, blocks, task records) for inspection')
    .option('--json', 'print one JSON object with the results on stdout')
    .action(
      async (flags: {
        model: DemoModel
        nodes: string
        groups: string
        groupSize: string
        steps?: string
        batch?: string
        hidden: string
        lr?: string
        outerEvery?: string
        seed: string
        out?: string
        keep?: boolean
        json?: boolean
      }) => {
        const defaults = DEMO_DEFAULTS[flags.model]
        const options: DemoOptions = {
          model: flags.model,
          nodes: parseNumberFlag('--nodes', flags.nodes),
          groups: parseNumberFlag('--groups', flags.groups),
          groupSize: parseNumberFlag('--group-size', flags.groupSize),
          steps: parseNumberFlag('--steps', flags.steps ?? String(defaults.steps)),
          batchSize: parseNumberFlag('--batch', flags.batch ?? String(defaults.batch)),
          hiddenSizes: [parseNumberFlag('--hidden', flags.hidden)],
          learningRate: parseNumberFlag('--lr', flags.lr ?? String(defaults.lr)),
          outerEvery: parseNumberFlag('--outer-every', flags.outerEvery ?? String(defaults.outerEvery)),
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
        if (result.sample !== undefined) {
          process.stdout.write(
            `${pc.bold(`validation ${result.bitsPerByte!.toFixed(3)} bits/byte`)} from ` +
              `${result.groups.length} groups of ${options.groupSize} on ${result.nodes} local daemons ` +
              `in ${result.seconds.total.toFixed(0)} s\n` +
              `model: ${result.modelDir} (try \`shardnet generate ${result.modelDir} --prompt "..."\`)\n` +
              `sample: ${pc.dim(result.sample.prompt)}${result.sample.text}\n` +
              `network: ${describeServing(result.serving!)}\n`,
          )
          return
        }
        process.stdout.write(
          `${pc.bold(`test accuracy ${(result.accuracy! * 100).toFixed(2)}%`)} from ` +
            `${result.groups.length} groups of ${options.groupSize} on ${result.nodes} local daemons ` +
            `in ${result.seconds.total.toFixed(0)} s\n` +
            `model: ${result.modelDir} (try \`shardnet eval ${result.modelDir}\`)\n` +
            `inference: ${describeInference(result.inference!)}\n`,
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
