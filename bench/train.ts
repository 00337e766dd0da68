// Training throughput (samples/s) of the MNIST MLP on each backend, side by side, with the ratio
// webgpu / cpu measured in the same run (the cpu backend is the baseline).
//
//   npm run bench:train -- [--hidden 256] [--batches 64,256] [--epochs 3] [--json]
//
// One measurement = one full epoch over the 8,004 training digits (forward, backward, AdamW on the
// device, the running loss read back every 16 batches as `shardnet train` does), ending with a
// read that waits for the device. After one warm-up epoch per backend and batch size, the backends
// take turns epoch by epoch (so a change in machine load hits both) and we report the median.
// Inference throughput (forward + read of the logits, batches of 1,000) is printed beside it.
import { cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { epochOrder, loadMnist, PIXEL_COUNT } from '../kernels/data/index.js'
import { type Backend, createBackend } from '../kernels/index.js'
import { AdamWOptimizer, evaluate, Mlp, trainEpoch } from '../kernels/models/index.js'

const { values: flags } = parseArgs({
  options: {
    hidden: { type: 'string', default: '256' },
    batches: { type: 'string', default: '64,256' },
    epochs: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log('usage: npm run bench:train -- [--hidden 256] [--batches 64,256] [--epochs 3] [--json]')
  process.exit(0)
}
const hiddenSizes = flags.hidden.split(',').map(Number)
const batchSizes = flags.batches.split(',').map(Number)
const epochs = Number(flags.epochs)
if (
  !hiddenSizes.every((size) => Number.isInteger(size) && size > 0) ||
  !batchSizes.every((size) => Number.isInteger(size) && size > 0 && size <= 8192) ||
  !(Number.isInteger(epochs) && epochs > 0)
) {
  console.error(
    '--hidden and --batches take positive integers separated by commas, --epochs a positive integer',
  )
  process.exit(2)
}

const architecture = { inputSize: PIXEL_COUNT, hiddenSizes, outputSize: 10 }
const data = await loadMnist()
const backends: Backend[] = [
  await createBackend({ prefer: 'cpu' }),
  await createBackend({ prefer: 'webgpu' }),
]
if (backends[1].kind !== 'webgpu') {
  console.error(`no webgpu backend here (${backends[1].info.fallbackReason}); measuring cpu only`)
  backends.pop()
}

interface Row {
  backend: string
  batchSize: number
  trainSamplesPerSecond: number
  epochSeconds: number
  inferenceSamplesPerSecond: number
  ratioToCpu: number
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const rows: Row[] = []
for (const batchSize of batchSizes) {
  const runs = backends.map((backend) => {
    const model = Mlp.initialize(backend, architecture, 1)
    return {
      backend,
      model,
      optimizer: new AdamWOptimizer(backend, model.parameters()),
      seconds: [] as number[],
    }
  })
  for (let epoch = 0; epoch <= epochs; epoch++) {
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
  const cpuSeconds = median(runs[0].seconds)
  for (const run of runs) {
    await evaluate(run.model, data.test) // warm-up
    const inferenceStarted = performance.now()
    await evaluate(run.model, data.train)
    const inferenceSeconds = (performance.now() - inferenceStarted) / 1000
    const epochSeconds = median(run.seconds)
    rows.push({
      backend: run.backend.kind,
      batchSize,
      trainSamplesPerSecond: data.train.count / epochSeconds,
      epochSeconds,
      inferenceSamplesPerSecond: data.train.count / inferenceSeconds,
      ratioToCpu: cpuSeconds / epochSeconds,
    })
    run.model.dispose()
    run.optimizer.dispose()
  }
}

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  node: process.version,
  adapter: backends.map((backend) => `${backend.kind}: ${backend.info.adapterName}`).join('; '),
}
for (const backend of backends) backend.destroy()

if (flags.json) {
  console.log(JSON.stringify({ machine, architecture, epochsTimed: epochs, rows }, null, 2))
} else {
  console.log(
    `MLP ${[PIXEL_COUNT, ...hiddenSizes, 10].join('-')}, ${data.train.count} training digits, AdamW`,
  )
  console.log(`machine: ${machine.cpu} x${machine.cores}, Node ${machine.node}`)
  console.log(`adapters: ${machine.adapter}`)
  console.log(`median of ${epochs} timed epochs after 1 warm-up, backends interleaved\n`)
  console.log('backend  batch  train samples/s  epoch s  vs cpu  inference samples/s')
  for (const row of rows) {
    console.log(
      `${row.backend.padEnd(7)}  ${String(row.batchSize).padStart(5)}  ` +
        `${row.trainSamplesPerSecond.toFixed(0).padStart(15)}  ` +
        `${row.epochSeconds.toFixed(2).padStart(7)}  ` +
        `${`${row.ratioToCpu.toFixed(2)}x`.padStart(6)}  ` +
        row.inferenceSamplesPerSecond.toFixed(0).padStart(19),
    )
  }
}
