// The correctness anchor of shardnet's GPT: the same model trained side by side by shardnet (cpu or
// webgpu backend) and by the tfjs GPT of bench/gpt-tfjs.ts (tfjs-backend-cpu or -wasm), from the
// same initial parameters (initializeGpt with --seed), on the same batches (BatchSampler over the
// corpus's training split, shard 0 of 1), with the same AdamW settings and learning-rate schedule.
//
//   npm run bench:gpt-anchor -- [--backend webgpu|cpu] [--tfjs wasm|cpu] [--steps 200]
//     [--batch 4] [--sequence 64] [--width 128 --layers 4 --heads 4 --context 256]
//     [--lr 1e-3] [--warmup 10] [--schedule cosine|constant] [--weight-decay 0.1] [--grad-clip 1]
//     [--seed 1] [--every 10] [--json]
//
// First the gradients of step 0's batch are compared tensor by tensor (the largest difference over
// the tensor's largest gradient), then both sides train --steps steps; the loss of every step is
// read on both, every --every-th is printed side by side, and the run ends with the largest relative
// loss difference over all steps against the goal of 1%. The process exits 0 either way: the
// verdict is in the output. The defaults take about 5 minutes on 2 cores (tfjs-wasm's side is most
// of it); shardnet's cpu backend is the float64-accumulating reference and far slower: shrink the
// model or the batch with --backend cpu.
import '../node/polyfill.js'
import { parseArgs } from 'node:util'
import * as tf from '@tensorflow/tfjs-core'
import { BatchSampler, ByteCorpus, buildCorpus, defaultCorpusCacheDir } from '../kernels/data/corpus.js'
import { createBackend } from '../kernels/index.js'
import {
  GPT_PRESETS,
  type GptConfig,
  gptParameterLayout,
  initializeGpt,
} from '../kernels/models/gpt/config.js'
import { Gpt } from '../kernels/models/gpt/model.js'
import { GptTrainer, type GptTrainerOptions, gptLearningRateAt } from '../kernels/models/gpt/training.js'
import type { LearningRateSchedule } from '../kernels/models/training.js'
import { flagReaders } from './flags.js'
import { TfjsGpt, TfjsGptTrainer } from './gpt-tfjs.js'

/** the goal: the loss curves agree within this relative difference */
const AGREEMENT_GOAL = 0.01
const EPSILON = 1e-8

const tiny = GPT_PRESETS.tiny
const { values: flags } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    tfjs: { type: 'string', default: 'wasm' },
    steps: { type: 'string', default: '200' },
    batch: { type: 'string', default: '4' },
    sequence: { type: 'string', default: '64' },
    width: { type: 'string', default: String(tiny.width) },
    layers: { type: 'string', default: String(tiny.layers) },
    heads: { type: 'string', default: String(tiny.heads) },
    context: { type: 'string', default: String(tiny.context) },
    lr: { type: 'string', default: '1e-3' },
    warmup: { type: 'string', default: '10' },
    schedule: { type: 'string', default: 'cosine' },
    'weight-decay': { type: 'string', default: '0.1' },
    'grad-clip': { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    every: { type: 'string', default: '10' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
const USAGE =
  'usage: npm run bench:gpt-anchor -- [--backend webgpu|cpu] [--tfjs wasm|cpu] [--steps 200] ' +
  '[--batch 4] [--sequence 64] [--width 128] [--layers 4] [--heads 4] [--context 256] [--lr 1e-3] ' +
  '[--warmup 10] [--schedule cosine|constant] [--weight-decay 0.1] [--grad-clip 1] [--seed 1] ' +
  '[--every 10] [--json]'
const { fail, integer, number } = flagReaders<keyof typeof flags>(flags, USAGE)
const positive = (name: keyof typeof flags, min = 0): number => number(name, min)
if (flags.backend !== 'cpu' && flags.backend !== 'webgpu') fail('--backend is cpu or webgpu')
if (flags.tfjs !== 'cpu' && flags.tfjs !== 'wasm') fail('--tfjs is wasm or cpu')
if (flags.schedule !== 'cosine' && flags.schedule !== 'constant') fail('--schedule is cosine or constant')

const config: GptConfig = {
  vocabSize: tiny.vocabSize,
  context: integer('context', 1),
  width: integer('width', 1),
  layers: integer('layers', 1),
  heads: integer('heads', 1),
  layerNormEpsilon: tiny.layerNormEpsilon,
}
const steps = integer('steps', 1)
const batch = integer('batch', 1)
const sequence = integer('sequence', 1)
if (sequence > config.context) fail('--sequence must not exceed --context')
const every = integer('every', 1)
const seed = integer('seed', 0)
const trainerOptions: GptTrainerOptions = {
  learningRate: positive('lr', Number.MIN_VALUE),
  weightDecay: positive('weight-decay'),
  beta1: 0.9,
  beta2: 0.95,
  epsilon: 1e-8,
  gradClip: positive('grad-clip', Number.MIN_VALUE),
  warmupSteps: integer('warmup', 0),
  totalSteps: steps,
  schedule: flags.schedule as LearningRateSchedule,
}
const progress = (message: string) => process.stderr.write(`${message}\n`)

// --- data and the two models ---------------------------------------------------------------------

const corpus = await buildCorpus({ cacheDir: defaultCorpusCacheDir() })
const training = ByteCorpus.open(corpus.training.path)
const sampler = new BatchSampler(training, { seed, batch, context: sequence, shard: 0, shards: 1 })
const initial = initializeGpt(config, seed)
const layout = gptParameterLayout(config)

const backend = await createBackend({ prefer: flags.backend as 'cpu' | 'webgpu' })
if (backend.kind !== flags.backend)
  fail(`asked for ${flags.backend}, got cpu: ${backend.info.fallbackReason}`)
const gpt = Gpt.create(backend, config, initial)
const trainer = new GptTrainer(gpt, trainerOptions)

if (flags.tfjs === 'wasm') await import('@tensorflow/tfjs-backend-wasm')
else await import('@tensorflow/tfjs-backend-cpu')
if (!(await tf.setBackend(flags.tfjs))) throw new Error(`tfjs backend ${flags.tfjs} did not initialise`)
await tf.ready()
const reference = TfjsGpt.create(config, initial)
const referenceTrainer = new TfjsGptTrainer(reference, {
  beta1: trainerOptions.beta1 as number,
  beta2: trainerOptions.beta2 as number,
  epsilon: trainerOptions.epsilon as number,
  weightDecay: trainerOptions.weightDecay as number,
  gradClip: trainerOptions.gradClip as number,
})

const shardnetLabel = `shardnet ${backend.kind} (${backend.info.adapterName})`
const tfjsLabel = `tfjs-backend-${flags.tfjs}`
const parameterCount = layout.reduce((sum, entry) => sum + entry.size, 0)
console.log(
  `GPT anchor: width ${config.width}, ${config.layers} layers, ${config.heads} heads, context ` +
    `${config.context} (${parameterCount} parameters); batch ${batch} x ${sequence} bytes, ${steps} ` +
    `steps, seed ${seed}`,
)
const { learningRate, warmupSteps, schedule, weightDecay, gradClip } = trainerOptions
console.log(
  `AdamW lr ${learningRate} (${warmupSteps} warmup, ${schedule}), betas 0.9/0.95, eps 1e-8, ` +
    `weight decay ${weightDecay} (2-D weights), clip ${gradClip}`,
)
console.log(`${shardnetLabel}  vs  ${tfjsLabel}`)

// --- 1. gradients of step 0, tensor by tensor ------------------------------------------------------

interface TensorComparison {
  name: string
  /** max |a - b| / max |b| */
  maxDifferenceOverScale: number
  /** ||a - b|| / ||b|| */
  normRelative: number
}

const first = sampler.batchAt(0)
const ours = gpt.lossAndGradients(first.inputs, first.targets, batch)
const oursLoss = (await backend.read(ours.loss))[0]
const oursGradients = await Promise.all(ours.gradients.map((g) => backend.read(g)))
ours.loss.dispose()
for (const g of ours.gradients) g.dispose()
const theirs = await reference.lossAndGradients(first.inputs, first.targets, batch)
const comparisons: TensorComparison[] = layout.map((entry, i) => {
  const a = oursGradients[i]
  const b = theirs.gradients[i]
  let maxDifference = 0
  let scale = 0
  let differenceSquares = 0
  let squares = 0
  for (let k = 0; k < a.length; k++) {
    const difference = Math.abs(a[k] - b[k])
    maxDifference = Math.max(maxDifference, difference)
    scale = Math.max(scale, Math.abs(b[k]))
    differenceSquares += difference * difference
    squares += b[k] * b[k]
  }
  return {
    name: entry.name,
    maxDifferenceOverScale: maxDifference / (scale + EPSILON * EPSILON),
    normRelative: Math.sqrt(differenceSquares) / (Math.sqrt(squares) + EPSILON * EPSILON),
  }
})
const gradientWorst = comparisons.reduce((worst, c) =>
  c.maxDifferenceOverScale > worst.maxDifferenceOverScale ? c : worst,
)
console.log(
  `\nstep 0 batch: loss ${oursLoss.toFixed(6)} (shardnet) vs ${theirs.loss.toFixed(6)} (tfjs), relative ` +
    `difference ${(Math.abs(oursLoss - theirs.loss) / theirs.loss).toExponential(2)}`,
)
console.log(`${'gradient tensor'.padEnd(24)} ${'max|d|/max|g|'.padStart(14)} ${'|d|/|g|'.padStart(10)}`)
for (const c of comparisons)
  console.log(
    `${c.name.padEnd(24)} ${c.maxDifferenceOverScale.toExponential(2).padStart(14)} ` +
      `${c.normRelative.toExponential(2).padStart(10)}`,
  )
console.log(`largest: ${gradientWorst.name} ${gradientWorst.maxDifferenceOverScale.toExponential(2)}`)

// --- 2. the two training runs, step by step --------------------------------------------------------

interface StepRecord {
  step: number
  learningRate: number
  shardnet: number
  tfjs: number
  relative: number
  shardnetNorm: number
  tfjsNorm: number
}
const records: StepRecord[] = []
let shardnetSeconds = 0
let tfjsSeconds = 0
console.log(
  `\n${'step'.padStart(5)} ${'lr'.padStart(9)} ${'shardnet'.padStart(9)} ${'tfjs'.padStart(9)} ` +
    `${'rel diff'.padStart(9)} ${'|g| ours'.padStart(9)} ${'|g| tfjs'.padStart(9)}`,
)
for (let step = 0; step < steps; step++) {
  const { inputs, targets } = sampler.batchAt(step)
  const learningRate = gptLearningRateAt(trainerOptions, step)
  let start = performance.now()
  const lossTensor = await trainer.step(inputs, targets, batch)
  const shardnet = (await backend.read(lossTensor))[0]
  lossTensor.dispose()
  shardnetSeconds += (performance.now() - start) / 1000
  start = performance.now()
  const theirLoss = referenceTrainer.step(inputs, targets, batch, learningRate)
  const tfjs = (await theirLoss.data())[0]
  theirLoss.dispose()
  const tfjsNorm = (await (referenceTrainer.lastGradientNorm as tf.Scalar).data())[0]
  tfjsSeconds += (performance.now() - start) / 1000
  const record = {
    step,
    learningRate,
    shardnet,
    tfjs,
    relative: Math.abs(shardnet - tfjs) / Math.abs(tfjs),
    shardnetNorm: trainer.lastGradientNorm,
    tfjsNorm,
  }
  records.push(record)
  if (step % every === 0 || step === steps - 1)
    console.log(
      `${String(step).padStart(5)} ${learningRate.toExponential(2).padStart(9)} ` +
        `${shardnet.toFixed(4).padStart(9)} ${tfjs.toFixed(4).padStart(9)} ` +
        `${record.relative.toExponential(2).padStart(9)} ${record.shardnetNorm.toFixed(4).padStart(9)} ` +
        `${tfjsNorm.toFixed(4).padStart(9)}`,
    )
  else if (step % 5 === 0) progress(`  step ${step}`)
}

const worst = records.reduce((a, b) => (b.relative > a.relative ? b : a))
const [oursFinal, theirsFinal] = [await gpt.getParameters(), await reference.flatParameters()]
let parameterDifference = 0
let parameterScale = 0
for (let k = 0; k < oursFinal.length; k++) {
  parameterDifference = Math.max(parameterDifference, Math.abs(oursFinal[k] - theirsFinal[k]))
  parameterScale = Math.max(parameterScale, Math.abs(theirsFinal[k]))
}
const agree = worst.relative < AGREEMENT_GOAL
console.log(
  `\nlargest relative loss difference over ${steps} steps: ${(worst.relative * 100).toFixed(4)}% ` +
    `at step ${worst.step} (goal < ${AGREEMENT_GOAL * 100}%): ${agree ? 'AGREE' : 'DISAGREE'}`,
)
console.log(
  `final parameters: max |difference| ${parameterDifference.toExponential(2)} (largest parameter ` +
    `${parameterScale.toFixed(3)})`,
)
console.log(
  `time: shardnet ${shardnetSeconds.toFixed(1)} s, tfjs ${tfjsSeconds.toFixed(1)} s for ${steps} steps`,
)
if (flags.json)
  console.log(
    JSON.stringify({
      config,
      batch,
      sequence,
      steps,
      seed,
      trainerOptions,
      shardnet: shardnetLabel,
      tfjs: tfjsLabel,
      gradients: comparisons,
      records,
      largestRelativeDifference: worst.relative,
      agree,
    }),
  )

training.close()
trainer.dispose()
gpt.dispose()
referenceTrainer.dispose()
reference.dispose()
backend.destroy()
process.exit(0)
