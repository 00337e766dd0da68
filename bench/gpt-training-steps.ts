// The GPT training step the speed benchmarks time (bench/gpt-speed.ts, bench/train.ts): the tiny
// preset from initializeGpt(seed 1), one full AdamW step per measurement (forward, backward,
// global-norm clipping, update) on the corpus's training batches, ending with the loss read back
// (which waits for the device). Warm-up steps first (pipeline compilation, buffer pools), then the
// timed ones.
import { BatchSampler, ByteCorpus, buildCorpus, defaultCorpusCacheDir } from '../kernels/data/corpus.js'
import type { Backend } from '../kernels/index.js'
import { GPT_PRESETS, type GptConfig, initializeGpt } from '../kernels/models/gpt/config.js'
import { Gpt } from '../kernels/models/gpt/model.js'
import { GptTrainer, type GptTrainerOptions } from '../kernels/models/gpt/training.js'

export const GPT_BENCH_SEED = 1
export const GPT_BENCH_CONFIG: GptConfig = GPT_PRESETS.tiny

/** the trainer settings of every timed step; the learning rate has no warm-up, so steps cost alike */
export function gptBenchTrainerOptions(totalSteps: number): GptTrainerOptions {
  return {
    learningRate: 1e-3,
    weightDecay: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    epsilon: 1e-8,
    gradClip: 1,
    warmupSteps: 0,
    totalSteps,
  }
}

export interface GptBenchBatch {
  inputs: Float32Array
  targets: Float32Array
}

/** `count` training batches of batch x sequence bytes from the corpus (built on first use) */
export async function gptBenchBatches(
  batch: number,
  sequence: number,
  count: number,
): Promise<GptBenchBatch[]> {
  const corpus = await buildCorpus({ cacheDir: defaultCorpusCacheDir() })
  const training = ByteCorpus.open(corpus.training.path)
  try {
    const sampler = new BatchSampler(training, {
      seed: GPT_BENCH_SEED,
      batch,
      context: sequence,
      shard: 0,
      shards: 1,
    })
    return Array.from({ length: count }, (_, step) => sampler.batchAt(step))
  } finally {
    training.close()
  }
}

/** the initial parameters every implementation starts from */
export function gptBenchInitialParameters(config: GptConfig = GPT_BENCH_CONFIG): Float32Array {
  return initializeGpt(config, GPT_BENCH_SEED)
}

export interface TimedSteps {
  /** wall-clock seconds of each timed step */
  seconds: number[]
  /** CPU seconds of this process (all threads) over the timed steps */
  cpuSeconds: number
  /** losses of every step, warm-up included */
  losses: number[]
}

/** Runs `warmup` then `steps` timed steps of `step` (which returns the batch's loss once done). */
export async function timeSteps(
  step: (index: number) => Promise<number>,
  warmup: number,
  steps: number,
  progress: (message: string) => void = () => {},
): Promise<TimedSteps> {
  const losses: number[] = []
  for (let i = 0; i < warmup; i++) losses.push(await step(i))
  const seconds: number[] = []
  const cpuStart = process.cpuUsage()
  for (let i = warmup; i < warmup + steps; i++) {
    const start = performance.now()
    losses.push(await step(i))
    seconds.push((performance.now() - start) / 1000)
    progress(`    step ${i - warmup + 1}/${steps}: ${seconds[seconds.length - 1].toFixed(2)} s`)
  }
  const cpu = process.cpuUsage(cpuStart)
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, losses }
}

export interface ShardnetGptRun {
  config: GptConfig
  initial: Float32Array
  /** one per step, warm-up first; at least warmup + steps */
  batches: readonly GptBenchBatch[]
  batch: number
  warmup: number
  steps: number
  trainerOptions: GptTrainerOptions
  progress?: (message: string) => void
}

/** Times shardnet's GptTrainer on `backend`: warm-up, then timed steps, each ending with the loss read. */
export async function timeShardnetGptSteps(backend: Backend, run: ShardnetGptRun): Promise<TimedSteps> {
  if (run.batches.length < run.warmup + run.steps)
    throw new RangeError(`${run.warmup + run.steps} steps need as many batches, got ${run.batches.length}`)
  const gpt = Gpt.create(backend, run.config, run.initial)
  const trainer = new GptTrainer(gpt, run.trainerOptions)
  try {
    return await timeSteps(
      async (index) => {
        const { inputs, targets } = run.batches[index]
        const loss = await trainer.step(inputs, targets, run.batch)
        const [value] = await backend.read(loss)
        loss.dispose()
        return value
      },
      run.warmup,
      run.steps,
      run.progress,
    )
  } finally {
    trainer.dispose()
    gpt.dispose()
  }
}
