// Training speed of shardnet's GPT against the same model in tfjs (bench/gpt-tfjs.ts), side by side
// in one run, plus shardnet's generation speed with and without the KV cache.
//
//   npm run bench:gpt-speed -- [--batch 8] [--sequence 256] [--warmup 1] [--steps 3]
//     [--only shardnet-webgpu,shardnet-cpu,tfjs-webgpu,tfjs-wasm] [--tokens 128] [--prompt 64]
//     [--no-generate] [--json]
//
// Training: the tiny preset (width 128, 4 layers, 4 heads) from initializeGpt(seed 1), one full
// AdamW step per measurement (forward, backward, global-norm clipping, update) on the corpus's
// training batches, ending with the loss read back (which waits for the device). --warmup steps
// first (pipeline compilation, buffer pools), then --steps timed ones; tokens/s = B*T / seconds of
// the median step. Each implementation runs alone in turn, so they share the machine's load
// unevenly: the load average is printed, and tokens per CPU-second of this process (all its
// threads, lavapipe's included) beside the wall-clock figure.
// - shardnet-webgpu: the WebGPU backend on Dawn (lavapipe here); shardnet-cpu: the CPU backend.
// - tfjs-webgpu: @tensorflow/tfjs-backend-webgpu on the same Dawn GPU object (navigator.gpu).
// - tfjs-wasm: @tensorflow/tfjs-backend-wasm (XNNPACK), 1 thread.
// tfjs-backend-cpu is not timed: it is the slowest of them and not what anyone deploys.
//
// Generation (shardnet only): greedy, --tokens new bytes after a --prompt-byte prompt from the
// validation split, with the KV cache and without (each byte re-runs the whole context); both must
// produce the same bytes.
import '../node/polyfill.js'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { ByteCorpus, buildCorpus, defaultCorpusCacheDir } from '../kernels/data/corpus.js'
import { type Backend, createBackend } from '../kernels/index.js'
import type { GptConfig } from '../kernels/models/gpt/config.js'
import { generateBytes } from '../kernels/models/gpt/generate.js'
import { Gpt } from '../kernels/models/gpt/model.js'
import { gptLearningRateAt } from '../kernels/models/gpt/training.js'
import { acquireDawnDevice } from '../kernels/runtime.js'
import { flagReaders } from './flags.js'
import {
  GPT_BENCH_CONFIG,
  GPT_BENCH_SEED,
  gptBenchBatches,
  gptBenchInitialParameters,
  gptBenchTrainerOptions,
  type TimedSteps,
  timeShardnetGptSteps,
  timeSteps,
} from './gpt-training-steps.js'

const IMPLEMENTATIONS = ['shardnet-webgpu', 'shardnet-cpu', 'tfjs-webgpu', 'tfjs-wasm'] as const
type ImplementationName = (typeof IMPLEMENTATIONS)[number]
const SEED = GPT_BENCH_SEED

const { values: flags } = parseArgs({
  options: {
    batch: { type: 'string', default: '8' },
    sequence: { type: 'string', default: '256' },
    warmup: { type: 'string', default: '1' },
    steps: { type: 'string', default: '3' },
    only: { type: 'string', default: IMPLEMENTATIONS.join(',') },
    tokens: { type: 'string', default: '128' },
    prompt: { type: 'string', default: '64' },
    'no-generate': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
const USAGE =
  'usage: npm run bench:gpt-speed -- [--batch 8] [--sequence 256] [--warmup 1] [--steps 3] ' +
  `[--only ${IMPLEMENTATIONS.join(',')}] [--tokens 128] [--prompt 64] [--no-generate] [--json]`
const { fail, integer } = flagReaders<keyof typeof flags>(flags, USAGE)
const config: GptConfig = GPT_BENCH_CONFIG
const batch = integer('batch', 1)
const sequence = integer('sequence', 1)
if (sequence > config.context) fail(`--sequence must not exceed the context ${config.context}`)
const warmup = integer('warmup', 0)
const steps = integer('steps', 1)
const newTokens = integer('tokens', 1)
const promptBytes = integer('prompt', 1)
if (promptBytes + newTokens > config.context)
  console.error(`note: prompt + tokens exceed the context ${config.context}: generation slides the window`)
const only = flags.only.split(',').map((name) => name.trim())
for (const name of only)
  if (!IMPLEMENTATIONS.includes(name as ImplementationName)) fail(`--only: unknown implementation ${name}`)
const selected = IMPLEMENTATIONS.filter((name) => only.includes(name))

const progress = (message: string) => process.stderr.write(`${message}\n`)
const trainerOptions = gptBenchTrainerOptions(warmup + steps)
const tokensPerStep = batch * sequence

const corpus = await buildCorpus({ cacheDir: defaultCorpusCacheDir() })
const batches = await gptBenchBatches(batch, sequence, warmup + steps)
const initial = gptBenchInitialParameters(config)

interface TrainingResult {
  implementation: ImplementationName
  device: string
  /** tokens per second of the median timed step */
  tokensPerSecond?: number
  /** tokens per CPU-second of this process over the timed steps */
  tokensPerCpuSecond?: number
  stepSeconds?: number[]
  /** losses of every step (warm-up included): the implementations train the same model */
  losses?: number[]
  /** why it did not run */
  skipped?: string
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

function summarize(implementation: ImplementationName, device: string, timed: TimedSteps): TrainingResult {
  return {
    implementation,
    device,
    tokensPerSecond: tokensPerStep / median(timed.seconds),
    tokensPerCpuSecond: (tokensPerStep * steps) / timed.cpuSeconds,
    stepSeconds: timed.seconds,
    losses: timed.losses,
  }
}

async function trainShardnet(backend: Backend, implementation: ImplementationName): Promise<TrainingResult> {
  const run = { config, initial, batches, batch, warmup, steps, trainerOptions, progress }
  return summarize(implementation, backend.info.adapterName, await timeShardnetGptSteps(backend, run))
}

// tfjs-backend-webgpu looks for navigator.gpu when it is imported: give it the Dawn GPU object the
// shardnet backend uses (a second adapter and device of the same instance) before any tfjs import.
let dawnGpu: GPU | undefined
let dawnFailure: string | undefined
if (selected.includes('tfjs-webgpu') || selected.includes('shardnet-webgpu')) {
  try {
    dawnGpu = (await acquireDawnDevice()).gpu
    ;(globalThis as { navigator?: unknown }).navigator = { gpu: dawnGpu }
  } catch (error) {
    dawnFailure = error instanceof Error ? error.message : String(error)
  }
}
const tf = await import('@tensorflow/tfjs-core')
const { TfjsGpt, TfjsGptTrainer } = await import('./gpt-tfjs.js')

async function trainTfjs(implementation: 'tfjs-webgpu' | 'tfjs-wasm'): Promise<TrainingResult> {
  const backendName = implementation === 'tfjs-webgpu' ? 'webgpu' : 'wasm'
  let device: string = backendName
  if (backendName === 'webgpu') {
    if (dawnGpu === undefined) return { implementation, device, skipped: `no Dawn device: ${dawnFailure}` }
    await import('@tensorflow/tfjs-backend-webgpu')
  } else {
    const wasm = await import('@tensorflow/tfjs-backend-wasm')
    wasm.setThreadsCount(1)
  }
  if (!(await tf.setBackend(backendName)))
    return { implementation, device, skipped: `tfjs backend ${backendName} did not initialise` }
  await tf.ready()
  if (backendName === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm')
    device = `wasm (XNNPACK, ${wasm.getThreadsCount()} thread)`
  } else device = 'webgpu (Dawn, same adapter)'
  const model = TfjsGpt.create(config, initial)
  const trainer = new TfjsGptTrainer(model, {
    beta1: 0.9,
    beta2: 0.95,
    epsilon: 1e-8,
    weightDecay: 0.1,
    gradClip: 1,
  })
  try {
    const timed = await timeSteps(
      async (index) => {
        const { inputs, targets } = batches[index]
        const loss = trainer.step(inputs, targets, batch, gptLearningRateAt(trainerOptions, index))
        const [value] = await loss.data()
        loss.dispose()
        return value
      },
      warmup,
      steps,
      progress,
    )
    return summarize(implementation, device, timed)
  } finally {
    trainer.dispose()
    model.dispose()
  }
}

const loadAtStart = loadavg()[0]
console.log(
  `GPT training speed: tiny preset (width ${config.width}, ${config.layers} layers, ` +
    `${config.heads} heads), batch ${batch} x ${sequence} bytes = ${tokensPerStep} tokens/step; ` +
    `${warmup} warm-up + ${steps} timed steps`,
)

const shardnetBackends = new Map<'webgpu' | 'cpu', Backend>()
const results: TrainingResult[] = []
for (const implementation of selected) {
  progress(`  ${implementation} ...`)
  try {
    if (implementation === 'shardnet-webgpu' || implementation === 'shardnet-cpu') {
      const kind = implementation === 'shardnet-webgpu' ? 'webgpu' : 'cpu'
      const backend = await createBackend({ prefer: kind })
      if (backend.kind !== kind) {
        results.push({ implementation, device: 'cpu', skipped: `fell back: ${backend.info.fallbackReason}` })
        backend.destroy()
        continue
      }
      shardnetBackends.set(kind, backend)
      results.push(await trainShardnet(backend, implementation))
    } else results.push(await trainTfjs(implementation))
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error)
    results.push({ implementation, device: '', skipped: `failed: ${reason}` })
  }
}

const speedOf = (name: ImplementationName) => results.find((r) => r.implementation === name)?.tokensPerSecond
console.log(
  `\n${'implementation'.padEnd(17)} ${'device'.padEnd(34)} ${'tokens/s'.padStart(9)} ` +
    `${'tokens/cpu-s'.padStart(12)} ${'median step'.padStart(11)}  losses (first, last)`,
)
for (const r of results) {
  if (r.skipped !== undefined) {
    console.log(`${r.implementation.padEnd(17)} skipped: ${r.skipped}`)
    continue
  }
  const losses = r.losses ?? []
  console.log(
    `${r.implementation.padEnd(17)} ${r.device.slice(0, 34).padEnd(34)} ` +
      `${(r.tokensPerSecond ?? 0).toFixed(0).padStart(9)} ` +
      `${(r.tokensPerCpuSecond ?? 0).toFixed(0).padStart(12)} ` +
      `${`${median(r.stepSeconds ?? []).toFixed(2)} s`.padStart(11)}  ` +
      `${losses[0]?.toFixed(4)}, ${losses[losses.length - 1]?.toFixed(4)}`,
  )
}
const ratios: Record<string, number> = {}
for (const ours of ['shardnet-webgpu', 'shardnet-cpu'] as const)
  for (const theirs of ['tfjs-webgpu', 'tfjs-wasm'] as const) {
    const [a, b] = [speedOf(ours), speedOf(theirs)]
    if (a !== undefined && b !== undefined) ratios[`${ours} / ${theirs}`] = a / b
  }
if (Object.keys(ratios).length > 0) {
  console.log('\nratios (tokens/s):')
  for (const [name, ratio] of Object.entries(ratios)) console.log(`  ${name.padEnd(32)} ${ratio.toFixed(2)}x`)
}
console.log(`load average (1 min): ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} now`)

// --- generation -----------------------------------------------------------------------------------

interface GenerationResult {
  backend: string
  cache: boolean
  tokensPerSecond: number
  bytes: number[]
}
const generation: GenerationResult[] = []
if (!flags['no-generate'] && shardnetBackends.size > 0) {
  const validation = ByteCorpus.open(corpus.validation.path)
  const prompt = validation.read(0, promptBytes, new Uint8Array(promptBytes))
  validation.close()
  const options = { tokens: newTokens, temperature: 0, topK: 0, seed: SEED }
  console.log(
    `\nGPT generation (shardnet, greedy): ${newTokens} new bytes after a ${promptBytes}-byte prompt, ` +
      'with and without the KV cache',
  )
  console.log(
    `${'backend'.padEnd(8)} ${'cache'.padEnd(6)} ${'tokens/s'.padStart(9)} ${'seconds'.padStart(8)}`,
  )
  for (const [kind, backend] of shardnetBackends) {
    const gpt = Gpt.create(backend, config, initial)
    for (const cache of [true, false]) {
      // a short warm-up: pipeline compilation and buffer pools
      for await (const _ of generateBytes(backend, gpt, prompt, { ...options, tokens: 2, cache })) {
      }
      const bytes: number[] = []
      const start = performance.now()
      for await (const byte of generateBytes(backend, gpt, prompt, { ...options, cache })) bytes.push(byte)
      const seconds = (performance.now() - start) / 1000
      generation.push({ backend: kind, cache, tokensPerSecond: newTokens / seconds, bytes })
      console.log(
        `${kind.padEnd(8)} ${String(cache).padEnd(6)} ${(newTokens / seconds).toFixed(1).padStart(9)} ` +
          `${seconds.toFixed(2).padStart(8)}`,
      )
    }
    gpt.dispose()
  }
  for (const kind of shardnetBackends.keys()) {
    const [cached, uncached] = [true, false].map(
      (cache) => generation.find((g) => g.backend === kind && g.cache === cache)?.bytes ?? [],
    )
    const same = cached.length === uncached.length && cached.every((byte, i) => byte === uncached[i])
    const speedup =
      (generation.find((g) => g.backend === kind && g.cache)?.tokensPerSecond ?? 0) /
      (generation.find((g) => g.backend === kind && !g.cache)?.tokensPerSecond ?? Number.NaN)
    console.log(
      `${kind}: KV cache speed-up ${speedup.toFixed(2)}x; cached and uncached bytes ` +
        `${same ? 'identical' : 'DIFFER'}`,
    )
  }
}

if (flags.json)
  console.log(
    JSON.stringify({
      config,
      batch,
      sequence,
      warmup,
      steps,
      training: results,
      ratios,
      generation: generation.map(({ bytes: _, ...rest }) => rest),
    }),
  )
for (const backend of shardnetBackends.values()) backend.destroy()
process.exit(0)
