// Training throughput on each backend, side by side in one run: the MNIST MLP (samples/s) and the
// tiny GPT (tokens/s). Backends: the cpu backend on its native engine, the cpu backend on the
// reference engine (the cpu backend as it computed before the engines: the ratios' baseline), and
// webgpu where Dawn finds an adapter.
//
//   npm run bench:train -- [--models mlp,gpt] [--hidden 256] [--batches 64,256] [--epochs 3]
//     [--gpt-batch 8] [--gpt-sequence 256] [--gpt-warmup 1] [--gpt-steps 10]
//     [--gpt-reference-steps 3] [--json]
//
// MLP: one measurement = one full epoch over the 8,004 training digits (forward, backward, AdamW on
// the device, the running loss read back every 16 batches as `shardnet train` does), ending with a
// read that waits for the device. After one warm-up epoch per backend and batch size, the backends
// take turns epoch by epoch (so a change in machine load hits all of them) and we report the median.
// Inference throughput (forward + read of the logits, batches of 1,000) is printed beside it.
//
// GPT: the training step of bench/gpt-speed.ts (bench/gpt-training-steps.ts: tiny preset, AdamW
// with clipping, corpus batches, the loss read back), --gpt-warmup steps then timed steps; tokens/s
// = batch x sequence / seconds of the median step. The backends run one after the other, so tokens
// per CPU-second of this process is printed beside the wall-clock figure. The reference engine takes
// 10-14 s a step at batch 8 x 256 on a 2-core machine: it times --gpt-reference-steps steps (3: the
// fewest whose median one disturbed step cannot move, under a minute with the warm-up); the others
// take well under 2 s a step and time --gpt-steps.
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { epochOrder, loadMnist, PIXEL_COUNT } from '../kernels/data/index.js'
import { type Backend, createBackend } from '../kernels/index.js'
import { AdamWOptimizer, evaluate, Mlp, trainEpoch } from '../kernels/models/index.js'
import { flagReaders } from './flags.js'
import {
  GPT_BENCH_CONFIG,
  gptBenchBatches,
  gptBenchInitialParameters,
  gptBenchTrainerOptions,
  timeShardnetGptSteps,
} from './gpt-training-steps.js'

const MODELS = ['mlp', 'gpt'] as const
type ModelName = (typeof MODELS)[number]
const USAGE =
  'usage: npm run bench:train -- [--models mlp,gpt] [--hidden 256] [--batches 64,256] [--epochs 3] ' +
  '[--gpt-batch 8] [--gpt-sequence 256] [--gpt-warmup 1] [--gpt-steps 10] [--gpt-reference-steps 3] [--json]'

const { values: flags } = parseArgs({
  options: {
    models: { type: 'string', default: MODELS.join(',') },
    hidden: { type: 'string', default: '256' },
    batches: { type: 'string', default: '64,256' },
    epochs: { type: 'string', default: '3' },
    'gpt-batch': { type: 'string', default: '8' },
    'gpt-sequence': { type: 'string', default: '256' },
    'gpt-warmup': { type: 'string', default: '1' },
    'gpt-steps': { type: 'string', default: '10' },
    'gpt-reference-steps': { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
const { fail, integer } = flagReaders<keyof typeof flags>(flags, USAGE)
const models = flags.models.split(',').map((name) => name.trim())
if (models.some((name) => !MODELS.includes(name as ModelName))) fail(`--models: among ${MODELS.join(',')}`)
const hiddenSizes = flags.hidden.split(',').map(Number)
const batchSizes = flags.batches.split(',').map(Number)
if (
  !hiddenSizes.every((size) => Number.isInteger(size) && size > 0) ||
  !batchSizes.every((size) => Number.isInteger(size) && size > 0 && size <= 8192)
)
  fail('--hidden and --batches take positive integers separated by commas')
const epochs = integer('epochs', 1)
const gptBatch = integer('gpt-batch', 1)
const gptSequence = integer('gpt-sequence', 1)
if (gptSequence > GPT_BENCH_CONFIG.context) fail(`--gpt-sequence must not exceed ${GPT_BENCH_CONFIG.context}`)
const gptWarmup = integer('gpt-warmup', 0)
const gptSteps = integer('gpt-steps', 1)
const gptReferenceSteps = integer('gpt-reference-steps', 1)

const progress = (message: string) => process.stderr.write(`${message}\n`)
const loadAtStart = loadavg()

// --- backends -----------------------------------------------------------------------------------

/** the figures' names: cpu-native, cpu-reference (the ratios' baseline), webgpu */
type BackendLabel = 'cpu-native' | 'cpu-reference' | 'webgpu'
const BASELINE: BackendLabel = 'cpu-reference'
const backends: { label: BackendLabel; backend: Backend }[] = []
const unavailable: { label: BackendLabel; why: string }[] = []
try {
  backends.push({ label: 'cpu-native', backend: await createBackend({ prefer: 'cpu', cpuEngine: 'native' }) })
} catch (error) {
  unavailable.push({ label: 'cpu-native', why: error instanceof Error ? error.message : String(error) })
}
backends.push({
  label: 'cpu-reference',
  backend: await createBackend({ prefer: 'cpu', cpuEngine: 'reference' }),
})
const webgpu = await createBackend({ prefer: 'webgpu' })
if (webgpu.kind === 'webgpu') backends.push({ label: 'webgpu', backend: webgpu })
else {
  unavailable.push({ label: 'webgpu', why: webgpu.info.fallbackReason ?? 'no adapter' })
  webgpu.destroy()
}
for (const { label, why } of unavailable) progress(`${label}: unavailable: ${why}`)

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

// --- MLP ----------------------------------------------------------------------------------------

interface MlpRow {
  backend: BackendLabel
  batchSize: number
  trainSamplesPerSecond: number
  epochSeconds: number
  inferenceSamplesPerSecond: number
  /** samples/s over the reference engine's, same batch size */
  ratioToReference: number
}

const architecture = { inputSize: PIXEL_COUNT, hiddenSizes, outputSize: 10 }
const mlpRows: MlpRow[] = []
let mlpSamples = 0
if (models.includes('mlp')) {
  const data = await loadMnist()
  mlpSamples = data.train.count
  for (const batchSize of batchSizes) {
    const runs = backends.map(({ label, backend }) => {
      const model = Mlp.initialize(backend, architecture, 1)
      return {
        label,
        model,
        optimizer: new AdamWOptimizer(backend, model.parameters()),
        seconds: [] as number[],
      }
    })
    for (let epoch = 0; epoch <= epochs; epoch++) {
      progress(`mlp batch ${batchSize}: epoch ${epoch}${epoch === 0 ? ' (warm-up)' : ''}`)
      for (const run of runs) {
        const started = performance.now()
        await trainEpoch(run.model, run.optimizer, data.train, epochOrder(data.train.count, 1, epoch), {
          batchSize,
          learningRate: () => 1e-3,
          onProgress: () => {},
        })
        // epoch 0 is the warm-up (pipeline compilation, buffer pool, JIT)
        if (epoch > 0) run.seconds.push((performance.now() - started) / 1000)
      }
    }
    const baselineSeconds = median(runs.find((run) => run.label === BASELINE)!.seconds)
    for (const run of runs) {
      await evaluate(run.model, data.test) // warm-up
      const inferenceStarted = performance.now()
      await evaluate(run.model, data.train)
      const inferenceSeconds = (performance.now() - inferenceStarted) / 1000
      const epochSeconds = median(run.seconds)
      mlpRows.push({
        backend: run.label,
        batchSize,
        trainSamplesPerSecond: data.train.count / epochSeconds,
        epochSeconds,
        inferenceSamplesPerSecond: data.train.count / inferenceSeconds,
        ratioToReference: baselineSeconds / epochSeconds,
      })
      run.model.dispose()
      run.optimizer.dispose()
    }
  }
}

// --- GPT ----------------------------------------------------------------------------------------

interface GptRow {
  backend: BackendLabel
  steps: number
  tokensPerSecond: number
  /** tokens per CPU-second of this process (all threads) over the timed steps */
  tokensPerCpuSecond: number
  medianStepSeconds: number
  firstLoss: number
  lastLoss: number
  /** tokens/s over the reference engine's */
  ratioToReference: number
}

const gptTokensPerStep = gptBatch * gptSequence
const gptRows: GptRow[] = []
if (models.includes('gpt')) {
  const stepsOf = (label: BackendLabel) => (label === BASELINE ? gptReferenceSteps : gptSteps)
  const mostSteps = Math.max(...backends.map(({ label }) => stepsOf(label)))
  const batches = await gptBenchBatches(gptBatch, gptSequence, gptWarmup + mostSteps)
  const initial = gptBenchInitialParameters(GPT_BENCH_CONFIG)
  const measured: Omit<GptRow, 'ratioToReference'>[] = []
  for (const { label, backend } of backends) {
    const steps = stepsOf(label)
    progress(`gpt ${label}: ${gptWarmup} warm-up + ${steps} timed steps`)
    const timed = await timeShardnetGptSteps(backend, {
      config: GPT_BENCH_CONFIG,
      initial,
      batches,
      batch: gptBatch,
      warmup: gptWarmup,
      steps,
      trainerOptions: gptBenchTrainerOptions(gptWarmup + steps),
      progress,
    })
    const stepSeconds = median(timed.seconds)
    measured.push({
      backend: label,
      steps,
      tokensPerSecond: gptTokensPerStep / stepSeconds,
      tokensPerCpuSecond: (gptTokensPerStep * steps) / timed.cpuSeconds,
      medianStepSeconds: stepSeconds,
      firstLoss: timed.losses[0],
      lastLoss: timed.losses[timed.losses.length - 1],
    })
  }
  const baseline = measured.find((row) => row.backend === BASELINE)!.tokensPerSecond
  for (const row of measured) gptRows.push({ ...row, ratioToReference: row.tokensPerSecond / baseline })
}

// --- report -------------------------------------------------------------------------------------

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  node: process.version,
  adapters: backends.map(({ label, backend }) => `${label}: ${backend.info.adapterName}`),
}
for (const { backend } of backends) backend.destroy()
/** the issue's goal: the native engine 5x the reference engine or more */
const GOAL_RATIO = 5
const goals = [
  ...mlpRows
    .filter((row) => row.backend === 'cpu-native')
    .map((row) => ({ figure: `mlp batch ${row.batchSize}`, ratio: row.ratioToReference })),
  ...gptRows
    .filter((row) => row.backend === 'cpu-native')
    .map((row) => ({ figure: 'gpt tiny', ratio: row.ratioToReference })),
].map((goal) => ({ ...goal, goal: GOAL_RATIO, met: goal.ratio >= GOAL_RATIO }))

if (flags.json) {
  console.log(
    JSON.stringify(
      {
        machine,
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg(),
        unavailable,
        mlp: { architecture, epochsTimed: epochs, rows: mlpRows },
        gpt: {
          config: GPT_BENCH_CONFIG,
          batch: gptBatch,
          sequence: gptSequence,
          warmup: gptWarmup,
          rows: gptRows,
        },
        goals,
      },
      null,
      2,
    ),
  )
} else {
  const loadAverage = (values: number[]) => values.map((value) => value.toFixed(1)).join(' ')
  console.log(`machine: ${machine.cpu} x${machine.cores}, Node ${machine.node}`)
  for (const adapter of machine.adapters) console.log(`  ${adapter}`)
  for (const { label, why } of unavailable) console.log(`  ${label}: unavailable: ${why}`)
  console.log(
    `load average (1/5/15 min) at start: ${loadAverage(loadAtStart)}, at end: ${loadAverage(loadavg())}`,
  )
  if (mlpRows.length > 0) {
    console.log(
      `\nMLP ${[PIXEL_COUNT, ...hiddenSizes, 10].join('-')}, ${mlpSamples} training digits, AdamW; ` +
        `median of ${epochs} timed epochs after 1 warm-up, backends interleaved`,
    )
    console.log('backend        batch  train samples/s  epoch s  x reference  inference samples/s')
    for (const row of mlpRows) {
      console.log(
        `${row.backend.padEnd(13)}  ${String(row.batchSize).padStart(5)}  ` +
          `${row.trainSamplesPerSecond.toFixed(0).padStart(15)}  ` +
          `${row.epochSeconds.toFixed(2).padStart(7)}  ` +
          `${`${row.ratioToReference.toFixed(2)}x`.padStart(11)}  ` +
          row.inferenceSamplesPerSecond.toFixed(0).padStart(19),
      )
    }
  }
  if (gptRows.length > 0) {
    console.log(
      `\nGPT tiny (width ${GPT_BENCH_CONFIG.width}, ${GPT_BENCH_CONFIG.layers} layers), ` +
        `batch ${gptBatch} x ${gptSequence} = ${gptTokensPerStep} tokens/step, AdamW; ` +
        `${gptWarmup} warm-up step(s), ` +
        `backends one after the other`,
    )
    console.log(
      'backend        steps  tokens/s  tokens/cpu-s  median step  x reference  losses (first, last)',
    )
    for (const row of gptRows) {
      console.log(
        `${row.backend.padEnd(13)}  ${String(row.steps).padStart(5)}  ` +
          `${row.tokensPerSecond.toFixed(0).padStart(8)}  ` +
          `${row.tokensPerCpuSecond.toFixed(0).padStart(12)}  ` +
          `${`${row.medianStepSeconds.toFixed(3)} s`.padStart(11)}  ` +
          `${`${row.ratioToReference.toFixed(2)}x`.padStart(11)}  ` +
          `${row.firstLoss.toFixed(4)}, ${row.lastLoss.toFixed(4)}`,
      )
    }
  }
  if (goals.length > 0) console.log('')
  for (const goal of goals)
    console.log(
      `=> ${goal.figure}: native / reference ${goal.ratio.toFixed(2)}x ` +
        `(goal >= ${goal.goal}x: ${goal.met ? 'met' : 'NOT met'})`,
    )
}
process.exit(0)
