// Inference benchmark: (1) rows/s of a local forward pass on cpu and on webgpu, and how far the two
// backends' logits are apart compared with the quorum's cross-backend tolerance; (2) rows/s of a
// sharded inference task through real in-process daemons on loopback (1 submitter + 3 cpu workers)
// with R = 1, 2, 3 replicas, as a ratio to the local cpu forward pass measured in the same run.
// Prints figures, never passes or fails. Run: npx tsx bench/inference.ts [--rows N]
import '../node/polyfill.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadMnist, PIXEL_COUNT } from '../kernels/data/mnist.js'
import { createBackend } from '../kernels/index.js'
import { initialHostLayers, type MlpArchitecture, parameterCount } from '../kernels/models/mlp.js'
import { resolveNodeConfig } from '../node/config.js'
import { Daemon } from '../node/daemon.js'
import { saveModel } from '../node/executor/model-files.js'
import { predictLogits } from '../node/tasks/infer-executor.js'
import { decodeModelBundle, readModelBundle } from '../node/tasks/infer-files.js'
import { LOGIT_TOLERANCE } from '../protocols/inference/quorum.js'
import { parseTaskRequest } from '../protocols/tasks/spec.js'

const rowsFlag = process.argv.indexOf('--rows')
const ROWS = rowsFlag > 0 ? Number(process.argv[rowsFlag + 1]) : 1996

async function main(): Promise<void> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp/shardnet-xdg'
  const folder = await mkdtemp(join(tmpdir(), 'shardnet-bench-infer-'))
  const architecture: MlpArchitecture = { inputSize: PIXEL_COUNT, hiddenSizes: [256], outputSize: 10 }
  const modelDir = join(folder, 'model')
  await saveModel(modelDir, architecture, initialHostLayers(architecture, 1), {
    model: 'mnist-mlp',
    architecture: { type: 'mlp', activation: 'relu', ...architecture, hiddenSizes: [256] },
    parameterCount: parameterCount(architecture),
    dataset: { name: 'bench' },
    seed: 1,
    training: {},
    backend: {},
    metrics: { testAccuracy: 0, testLoss: 0 },
    history: [],
    createdAt: new Date().toISOString(),
  })
  const model = decodeModelBundle(await readModelBundle(modelDir))
  const { test } = await loadMnist()
  const rows = Math.min(ROWS, test.count)
  const inputs = test.images.slice(0, rows * PIXEL_COUNT)
  console.log(`model 784-256-10, ${rows} MNIST test rows`)

  // 1. local forward passes
  const timed = async (prefer: 'cpu' | 'webgpu') => {
    const backend = await createBackend({ prefer })
    await predictLogits(backend, model, inputs.subarray(0, 10 * PIXEL_COUNT)) // warm-up
    const start = performance.now()
    const logits = await predictLogits(backend, model, inputs)
    const seconds = (performance.now() - start) / 1000
    const kind = backend.kind
    backend.destroy()
    return { logits, seconds, kind }
  }
  const cpu = await timed('cpu')
  const gpu = await timed('webgpu')
  console.log(`local cpu     ${(rows / cpu.seconds).toFixed(0)} rows/s`)
  console.log(
    `local ${gpu.kind.padEnd(7)} ${(rows / gpu.seconds).toFixed(0)} rows/s ` +
      `(${(cpu.seconds / gpu.seconds).toFixed(2)}x cpu)`,
  )
  let maxDelta = 0
  let maxRatio = 0
  let bitwiseEqual = 0
  for (let i = 0; i < cpu.logits.length; i++) {
    const a = cpu.logits[i]
    const b = gpu.logits[i]
    const delta = Math.abs(a - b)
    if (delta === 0) bitwiseEqual++
    maxDelta = Math.max(maxDelta, delta)
    maxRatio = Math.max(
      maxRatio,
      delta / (LOGIT_TOLERANCE.absolute + LOGIT_TOLERANCE.relative * Math.max(Math.abs(a), Math.abs(b))),
    )
  }
  console.log(
    `cpu vs ${gpu.kind}: max |Δlogit| ${maxDelta.toExponential(2)}, ` +
      `${(maxRatio * 100).toFixed(2)}% of the tolerance bound at worst; ` +
      `${((bitwiseEqual / cpu.logits.length) * 100).toFixed(1)}% of logits bitwise equal`,
  )

  // 2. sharded inference through daemons
  const start = (bootstrap: string[]) =>
    mkdtemp(join(tmpdir(), 'shardnet-bench-node-')).then((dataDir) =>
      Daemon.start({
        config: resolveNodeConfig(dataDir, {}, { bootstrap }),
        ipColocationPenalty: false,
        dhtInitialQuerySelfIntervalMs: 100,
        advertiseRetryMs: 500,
        bootstrapRedialIntervalMs: 500,
        libp2pMetrics: false,
      }),
    )
  const submitter = await start([])
  const workers = await Promise.all([0, 1, 2].map(() => start([submitter.addresses()[0]])))
  const daemons = [submitter, ...workers]
  try {
    const deadline = Date.now() + 60_000
    while (submitter.host.getPeers().length < 3) {
      if (Date.now() > deadline) throw new Error('the workers did not connect')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const inputFile = join(folder, 'inputs.json')
    const rowsJson = Array.from({ length: rows }, (_, r) =>
      Array.from(inputs.subarray(r * PIXEL_COUNT, (r + 1) * PIXEL_COUNT)),
    )
    await writeFile(inputFile, JSON.stringify({ inputs: rowsJson }))
    for (const [run, replicas] of [1, 1, 2, 3].entries()) {
      const started = performance.now()
      const task = await submitter.tasks.coordinator.submit(
        parseTaskRequest({ kind: 'infer', model: modelDir, inputFile, replicas, shards: 6 }),
      )
      let view = task
      while (view.state === 'running') {
        await new Promise((resolve) => setTimeout(resolve, 20))
        view = submitter.tasks.coordinator.get(task.id)
      }
      const seconds = (performance.now() - started) / 1000
      if (view.state !== 'completed') throw new Error(`the task ${view.state}: ${view.error}`)
      const figures = view.summary.inference as { agreeingResults: number; results: number; reruns: number }
      console.log(
        `network R=${replicas}${run === 0 ? ' (cold: workers fetch the model)' : ''} 6 shards on ` +
          `3 cpu workers: ${(rows / seconds).toFixed(0)} rows/s end to end (submit, blocks, ` +
          `runs, vote, write) = ${(cpu.seconds / seconds).toFixed(2)}x local cpu; ` +
          `${figures.agreeingResults}/${figures.results} agreed, ${figures.reruns} re-runs`,
      )
    }
  } finally {
    await Promise.all(daemons.map((d) => d.stop()))
    await rm(folder, { recursive: true, force: true })
  }
}

await main()
