// The cost of gradient consensus: steps/s of a 3-member training group (three libp2p nodes on TCP
// loopback in this process, durable Raft stores in a temp dir) against the same training on one
// node without the network, measured in one run, and the gradient bytes members send per step with
// and without int8 compression, with the test accuracy each reaches.
//
//   npm run bench:consensus -- [--hidden 256] [--batch 64] [--steps 200] [--rounds 2] [--one-loop]
//                              [--heap daemon|default] [--speculate yes|no] [--latency-ms 0] [--json]
//
// Baseline ("local"): the same steps on one backend: per step the three members' micro-batches
// (MicroBatchPlan), three gradients, their mean, the host AdamW step and the params digest, i.e.
// everything the group does except the network and Raft. In the group all three members share this
// process's cores too, so both sides do the same compute and the difference is consensus overhead.
// Group runs use the durable Raft store (fsynced WAL) as the daemon does, and once more the in-memory
// reference store, to show what the disk costs. Local and group runs alternate (--rounds times) so a
// change in machine load hits both; medians.
// Each member runs in a worker thread of its own (its own event loop, as on a separate machine);
// --one-loop puts all three on this thread's event loop instead (--threads, the default, is accepted).
// --batch defaults to `submit`'s micro-batch per member (BATCH_SIZE_DEFAULT).
// --heap: the process runs with the daemon's garbage-collector setting (node/heap.ts, the default)
// or with V8's own (`default`), to measure what that setting is worth. --speculate no: the members do
// no work ahead of the commit (GroupMemberInit.speculate), to measure what that is worth.
// --latency-ms (not with --one-loop): every Raft frame and gradient message is handed over that much later,
// a model of members on separate machines (consensus-member.ts, withLatency); 0 is plain loopback.

import { readParams, writeParams } from '../kernels/models/kind.js'
import {
  initialParams,
  mlpTrainingModel,
  paramsToHostLayers,
  type TrainingShard,
} from '../kernels/models/mlp-kind.js'
import '../node/polyfill.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { loadMnist, PIXEL_COUNT } from '../kernels/data/mnist.js'
import { MicroBatchPlan } from '../kernels/data/sharding.js'
import { CpuBackend } from '../kernels/index.js'
import { evaluate, Mlp, type MlpArchitecture } from '../kernels/models/index.js'
import { tuneHeapForTraining } from '../node/heap.js'
import { BATCH_SIZE_DEFAULT } from '../protocols/tasks/spec.js'
import { aggregateGradients } from '../protocols/training/aggregate.js'
import { computeStep, createTrainingState, type TrainingConfig } from '../protocols/training/state.js'
import type { Compression } from '../protocols/training/types.js'
import {
  datasetShard,
  startTrainingCluster,
  stopTrainingCluster,
} from '../test/integration/training-cluster.js'
import type { MemberFinished } from './consensus-member.js'

const { values: flags } = parseArgs({
  options: {
    hidden: { type: 'string', default: '256' },
    batch: { type: 'string', default: String(BATCH_SIZE_DEFAULT) },
    steps: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '2' },
    lr: { type: 'string', default: '0.002' },
    threads: { type: 'boolean', default: true },
    'one-loop': { type: 'boolean', default: false },
    heap: { type: 'string', default: 'daemon' },
    speculate: { type: 'string', default: 'yes' },
    'latency-ms': { type: 'string', default: '0' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log(
    'usage: npm run bench:consensus -- [--hidden 256] [--batch 64] [--steps 200] [--rounds 2] ' +
      '[--one-loop] [--heap daemon|default] [--speculate yes|no] [--latency-ms 0] [--json]',
  )
  process.exit(0)
}
const hidden = Number(flags.hidden)
/** each member in a worker thread of its own (the default), or all on this thread's event loop */
const inThreads = !flags['one-loop']
const batchSize = Number(flags.batch)
const steps = Number(flags.steps)
const rounds = Number(flags.rounds)
const learningRate = Number(flags.lr)
for (const [name, value] of [
  ['--hidden', hidden],
  ['--batch', batchSize],
  ['--steps', steps],
  ['--rounds', rounds],
] as const) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name} takes a positive integer`)
    process.exit(2)
  }
}
if (flags.heap !== 'daemon' && flags.heap !== 'default') {
  console.error(
    '--heap takes daemon (the garbage-collector setting the daemon runs with) or default (V8 as is)',
  )
  process.exit(2)
}
if (flags.speculate !== 'yes' && flags.speculate !== 'no') {
  console.error('--speculate takes yes (members work ahead of the commit, the default) or no')
  process.exit(2)
}
const speculate = flags.speculate === 'yes'
const latencyMs = Number(flags['latency-ms'])
if (!(latencyMs >= 0 && Number.isFinite(latencyMs)) || (latencyMs > 0 && !inThreads)) {
  console.error('--latency-ms takes a number of ms >= 0, and does not go with --one-loop')
  process.exit(2)
}
if (flags.heap === 'daemon') tuneHeapForTraining()
const MEMBERS = 3
const SEED = 11
const architecture: MlpArchitecture = { inputSize: PIXEL_COUNT, hiddenSizes: [hidden], outputSize: 10 }
const data = await loadMnist()
const shard = datasetShard(data.train, 1, 0, SEED)
const backend = new CpuBackend()
const directory = mkdtempSync(join(tmpdir(), 'shardnet-bench-consensus-'))
const log = (line: string) => {
  if (!flags.json) console.error(line)
}

async function accuracy(params: Float32Array): Promise<number> {
  const model = Mlp.fromHost(backend, architecture, paramsToHostLayers(architecture, params))
  const result = await evaluate(model, data.test)
  model.dispose()
  return result.accuracy
}

/** CPU time of this process (every thread) in ms since `since`. */
function cpuMsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1000
}

interface GroupRun {
  seconds: number
  /** CPU time of the whole process (all members) per step, from the first step on */
  cpuMsPerStep: number
  params: Float32Array
  bytesPerStep: number
  /**
   * Raft frames the members sent per step
   * (the leader's appends with their updates, acknowledgements, heartbeats)
   */
  raftBytesPerStep: number
  digests: number
  /** in threads: CPU time per step of the leader's thread and of each follower's (Linux) */
  leaderThreadCpuMs?: number
  followerThreadCpuMs?: number[]
  /**
   * steps applied from work done before the commit, gradients computed ahead, work thrown away
   * (all members)
   */
  stepsPrecomputed: number
  gradientsAhead: number
  speculationsWasted: number
  /** gradients the leader got before the step they follow was applied */
  gradientsReceivedAhead: number
}

/** The group's work on one node, without network or Raft. */
async function trainLocally(
  trainingShard: TrainingShard,
): Promise<{ seconds: number; cpuMsPerStep: number; params: Float32Array }> {
  const config: TrainingConfig = {
    parameterCount: initialParams(architecture, SEED).length,
    steps,
    learningRate,
    schedule: 'constant',
    weightDecay: 0,
    outerEvery: 0,
  }
  const state = createTrainingState(initialParams(architecture, SEED), ['a'])
  const plan = new MicroBatchPlan(trainingShard.labels.length, SEED, MEMBERS, batchSize)
  const model = Mlp.initialize(backend, architecture, SEED)
  const images = new Float32Array(batchSize * PIXEL_COUNT)
  const labels = new Float32Array(batchSize)
  const started = performance.now()
  const cpuStarted = process.cpuUsage()
  for (let step = 0; step < steps; step++) {
    writeParams(backend, model.parameters(), state.params)
    const gradients: Float32Array[] = []
    for (let member = 0; member < MEMBERS; member++) {
      const indices = plan.indices(step, member)
      indices.forEach((sample, row) => {
        images.set(
          trainingShard.inputs.subarray(sample * PIXEL_COUNT, (sample + 1) * PIXEL_COUNT),
          row * PIXEL_COUNT,
        )
        labels[row] = trainingShard.labels[sample]
      })
      const x = backend.upload(images, [batchSize, PIXEL_COUNT])
      const y = backend.upload(labels, [batchSize])
      const result = model.lossAndGradients(x, y)
      const tensors = result.layers.flatMap((layer) => [layer.weight, layer.bias])
      gradients.push(await readParams(backend, tensors))
      for (const tensor of [x, y, result.loss, result.logits, ...tensors]) tensor.dispose()
    }
    const next = computeStep(state, aggregateGradients(gradients, 'mean'), config)
    state.params = next.params
    state.firstMoment = next.firstMoment
    state.secondMoment = next.secondMoment
    state.digest = next.digest
    state.step++
  }
  const seconds = (performance.now() - started) / 1000
  const cpuMsPerStep = cpuMsSince(cpuStarted) / steps
  model.dispose()
  return { seconds, cpuMsPerStep, params: state.params }
}

let runCount = 0
async function trainInGroup(
  compression: Compression,
  storage: 'durable' | 'memory' = 'durable',
): Promise<GroupRun> {
  const members = await startTrainingCluster({
    size: MEMBERS,
    directory,
    backend,
    storage,
    options: {
      groupId: `bench-${runCount++}`,
      model: mlpTrainingModel(architecture, shard),
      seed: SEED,
      batchSize,
      learningRate,
      steps,
      aggregate: 'mean',
      compression,
      speculate,
    },
  })
  // timed from the first applied step (after the election) to the last
  let firstStepAt = 0
  let firstStep = 0
  let cpuAtFirstStep = process.cpuUsage()
  members[0].member.on('step', (event) => {
    if (firstStepAt === 0) {
      firstStepAt = performance.now()
      cpuAtFirstStep = process.cpuUsage()
      firstStep = event.step + 1
    }
  })
  const results = await Promise.all(members.map((member) => member.member.finished()))
  const seconds = ((performance.now() - firstStepAt) / 1000) * (steps / (steps - firstStep))
  const cpuMsPerStep = cpuMsSince(cpuAtFirstStep) / (steps - firstStep)
  const bytes = members.reduce((total, member) => total + member.member.status().gradientBytesSent, 0)
  const raftBytes = members.reduce((total, member) => total + member.node.services.raft.stats.bytesSent, 0)
  const statuses = members.map((member) => member.member.status())
  await stopTrainingCluster(members)
  return {
    seconds,
    cpuMsPerStep,
    params: results[0].params,
    bytesPerStep: bytes / steps,
    raftBytesPerStep: raftBytes / steps,
    digests: new Set(results.map((result) => result.digest)).size,
    ...speculationCounts(statuses),
  }
}

type SpeculationCount =
  | 'stepsPrecomputed'
  | 'gradientsAhead'
  | 'speculationsWasted'
  | 'gradientsReceivedAhead'

function speculationCounts(
  members: Array<Record<SpeculationCount, number>>,
): Pick<GroupRun, SpeculationCount> {
  const sum = (key: SpeculationCount) => members.reduce((total, member) => total + member[key], 0)
  return {
    stepsPrecomputed: sum('stepsPrecomputed'),
    gradientsAhead: sum('gradientsAhead'),
    speculationsWasted: sum('speculationsWasted'),
    gradientsReceivedAhead: sum('gradientsReceivedAhead'),
  }
}

/** The same group with each member in its own worker thread (own event loop, as on separate machines). */
async function trainInThreads(
  compression: Compression,
  storage: 'durable' | 'memory' = 'durable',
): Promise<GroupRun> {
  const groupId = `bench-${runCount++}`
  // a worker does not inherit tsx's loader: register it, then load the member script
  const bootstrap = [
    `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))}`,
    'register()',
    `await import(${JSON.stringify(new URL('./consensus-member.ts', import.meta.url).href)})`,
  ].join('\n')
  const workers = Array.from(
    { length: MEMBERS },
    () => new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`)),
  )
  const ready = await Promise.all(
    workers.map(
      (worker) =>
        new Promise<{ id: string; addresses: string[] }>((resolve, reject) => {
          worker.once('error', reject)
          worker.once('message', resolve)
          worker.postMessage({
            type: 'start',
            groupId,
            hidden,
            seed: SEED,
            batchSize,
            learningRate,
            steps,
            compression,
            storage,
            directory: join(directory, groupId),
            speculate,
            latencyMs,
          })
        }),
    ),
  )
  let firstStepAt = 0
  let firstStep = 0
  let cpuAtFirstStep = process.cpuUsage()
  const results = await Promise.all(
    workers.map(
      (worker) =>
        new Promise<MemberFinished>((resolve, reject) => {
          worker.on('error', reject)
          worker.on('message', (message: { type: string; step?: number; at?: number }) => {
            if (message.type === 'step' && firstStepAt === 0) {
              firstStepAt = message.at! - performance.timeOrigin
              cpuAtFirstStep = process.cpuUsage()
              firstStep = message.step! + 1
            }
            if (message.type === 'finished') resolve(message as never)
          })
          worker.postMessage({ peers: ready })
        }),
    ),
  )
  const seconds = ((performance.now() - firstStepAt) / 1000) * (steps / (steps - firstStep))
  const cpuMsPerStep = cpuMsSince(cpuAtFirstStep) / (steps - firstStep)
  for (const worker of workers) worker.postMessage('stop')
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('exit', resolve))))
  return {
    seconds,
    cpuMsPerStep,
    params: results[0].params,
    bytesPerStep: results.reduce((total, result) => total + result.gradientBytesSent, 0) / steps,
    raftBytesPerStep: results.reduce((total, result) => total + result.raftBytesSent, 0) / steps,
    digests: new Set(results.map((result) => result.digest)).size,
    leaderThreadCpuMs: results.find((result) => result.isLeader)?.threadCpuMsPerStep,
    followerThreadCpuMs: results
      .filter((result) => !result.isLeader)
      .map((result) => result.threadCpuMsPerStep),
    ...speculationCounts(results),
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

log(
  `bench:consensus: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ` +
    `Node ${process.version}, backend ${backend.info.adapterName}`,
)
log(
  `MLP 784-${hidden}-10 (${initialParams(architecture, SEED).length} params), ` +
    `${MEMBERS} members x micro-batch ${batchSize}, ${steps} steps, Adam lr ${learningRate}, ` +
    `${rounds} rounds, heap: ${flags.heap}, work ahead of the commit: ` +
    `${flags.speculate}${latencyMs > 0 ? `, modelled one-way latency ${latencyMs} ms` : ''}`,
)
/** A group run's CPU per step for its round line: the whole process, and by thread where known. */
function cpuNote(run: GroupRun): string {
  const threads =
    run.leaderThreadCpuMs === undefined
      ? ''
      : ` (leader ${run.leaderThreadCpuMs.toFixed(1)}, followers ` +
        `${(run.followerThreadCpuMs ?? []).map((ms) => ms.toFixed(1)).join(' / ')})`
  return `, CPU ${run.cpuMsPerStep.toFixed(1)} ms a step${threads}`
}
const localSeconds: number[] = []
const groupSeconds: number[] = []
const localCpu: number[] = []
const groupCpu: number[] = []
const int8Seconds: number[] = []
const memorySeconds: number[] = []
let localParams: Float32Array | undefined
let groupRun: GroupRun | undefined
let int8Run: GroupRun | undefined
try {
  for (let round = 0; round < rounds; round++) {
    const local = await trainLocally(shard)
    localSeconds.push(local.seconds)
    localCpu.push(local.cpuMsPerStep)
    localParams = local.params
    log(`  round ${round + 1}: local ${(steps / local.seconds).toFixed(1)} steps/s`)
    const group = inThreads ? trainInThreads : trainInGroup
    groupRun = await group('none')
    groupSeconds.push(groupRun.seconds)
    groupCpu.push(groupRun.cpuMsPerStep)
    log(
      `  round ${round + 1}: group ${(steps / groupRun.seconds).toFixed(1)} steps/s (float32 ` +
        `gradients)${cpuNote(groupRun)}`,
    )
    int8Run = await group('int8')
    int8Seconds.push(int8Run.seconds)
    log(
      `  round ${round + 1}: group ${(steps / int8Run.seconds).toFixed(1)} steps/s (int8 ` +
        `gradients)${cpuNote(int8Run)}`,
    )
    const memoryRun = await group('none', 'memory')
    memorySeconds.push(memoryRun.seconds)
    log(
      `  round ${round + 1}: group ${(steps / memoryRun.seconds).toFixed(1)} steps/s (float32, ` +
        `in-memory raft log)${cpuNote(memoryRun)}`,
    )
  }
  const localAccuracy = await accuracy(localParams!)
  const groupAccuracy = await accuracy(groupRun!.params)
  const int8Accuracy = await accuracy(int8Run!.params)
  const local = steps / median(localSeconds)
  const group = steps / median(groupSeconds)
  const groupInt8 = steps / median(int8Seconds)
  const groupMemory = steps / median(memorySeconds)
  const result = {
    membersIn: inThreads ? 'one worker thread each' : 'one event loop (this thread)',
    speculate,
    latencyMs,
    heap: flags.heap === 'daemon' ? "the daemon's setting (node/heap.ts)" : 'V8 default',
    machine: `${cpus().length} cores, Node ${process.version}, ${backend.info.adapterName}`,
    architecture: `784-${hidden}-10`,
    members: MEMBERS,
    microBatch: batchSize,
    steps,
    rounds,
    localStepsPerSecond: local,
    groupStepsPerSecond: group,
    groupInt8StepsPerSecond: groupInt8,
    groupMemoryLogStepsPerSecond: groupMemory,
    /** extra time per step of the group over local, as a share of the group's step time */
    consensusOverheadPercent: (100 * (1 / group - 1 / local)) / (1 / group),
    consensusOverheadInt8Percent: (100 * (1 / groupInt8 - 1 / local)) / (1 / groupInt8),
    consensusOverheadMemoryLogPercent: (100 * (1 / groupMemory - 1 / local)) / (1 / groupMemory),
    /** CPU time per step of the whole process (every thread), and the cores that keeps busy */
    localCpuMsPerStep: median(localCpu),
    groupCpuMsPerStep: median(groupCpu),
    localCoresBusy: (median(localCpu) * local) / 1000,
    groupCoresBusy: (median(groupCpu) * group) / 1000,
    /**
     * in threads, last float32 run: each member's own thread
     * (the rest: GC helpers, libuv pool, this thread)
     */
    leaderThreadCpuMsPerStep: groupRun!.leaderThreadCpuMs,
    followerThreadCpuMsPerStep: groupRun!.followerThreadCpuMs,
    /**
     * last float32 run, all members: steps applied from work done before the commit, gradients computed
     * ahead and used, work thrown away
     */
    stepsPrecomputed: groupRun!.stepsPrecomputed,
    gradientsAhead: groupRun!.gradientsAhead,
    speculationsWasted: groupRun!.speculationsWasted,
    gradientsReceivedAhead: groupRun!.gradientsReceivedAhead,
    gradientBytesPerStepFloat32: groupRun!.bytesPerStep,
    gradientBytesPerStepInt8: int8Run!.bytesPerStep,
    compressionRatio: groupRun!.bytesPerStep / int8Run!.bytesPerStep,
    /** Raft frames per step (int8 groups propose int8 updates) */
    raftBytesPerStepFloat32: groupRun!.raftBytesPerStep,
    raftBytesPerStepInt8: int8Run!.raftBytesPerStep,
    localAccuracy,
    groupAccuracy,
    groupInt8Accuracy: int8Accuracy,
    int8AccuracyLossPoints: 100 * (groupAccuracy - int8Accuracy),
    identicalDigests: groupRun!.digests === 1 && int8Run!.digests === 1,
  }
  if (flags.json) console.log(JSON.stringify(result, null, 2))
  else {
    console.log(`local (no network):        ${local.toFixed(1)} steps/s`)
    console.log(
      `group, float32 gradients: ${group.toFixed(1)} steps/s  overhead ` +
        `${result.consensusOverheadPercent.toFixed(1)}% of step time`,
    )
    console.log(
      `group, int8 compression:  ${groupInt8.toFixed(1)} steps/s  overhead ` +
        `${result.consensusOverheadInt8Percent.toFixed(1)}% of step time`,
    )
    console.log(
      `group, in-memory log:     ${groupMemory.toFixed(1)} steps/s  overhead ` +
        `${result.consensusOverheadMemoryLogPercent.toFixed(1)}% of step time`,
    )
    console.log(
      `gradient bytes per step:  float32 ${Math.round(result.gradientBytesPerStepFloat32)}  int8 ` +
        `${Math.round(result.gradientBytesPerStepInt8)}  ratio ${result.compressionRatio.toFixed(2)}x`,
    )
    console.log(
      `raft bytes per step:      float32 ${Math.round(result.raftBytesPerStepFloat32)}  int8 ` +
        `${Math.round(result.raftBytesPerStepInt8)}  ratio ` +
        `${(result.raftBytesPerStepFloat32 / result.raftBytesPerStepInt8).toFixed(2)}x (log appends ` +
        `with the update, acknowledgements, heartbeats)`,
    )
    console.log(
      `test accuracy:            local ${(100 * localAccuracy).toFixed(2)}%  group ` +
        `${(100 * groupAccuracy).toFixed(2)}%  group int8 ${(100 * int8Accuracy).toFixed(2)}% (int8 ` +
        `costs ${result.int8AccuracyLossPoints.toFixed(2)} points)`,
    )
    console.log(
      `CPU per step:             local ${result.localCpuMsPerStep.toFixed(1)} ms ` +
        `(${result.localCoresBusy.toFixed(2)} cores busy)  group ` +
        `${result.groupCpuMsPerStep.toFixed(1)} ms (${result.groupCoresBusy.toFixed(2)} of ` +
        `${cpus().length} cores busy)`,
    )
    if (result.leaderThreadCpuMsPerStep !== undefined) {
      const followers = result.followerThreadCpuMsPerStep ?? []
      const others =
        result.groupCpuMsPerStep -
        result.leaderThreadCpuMsPerStep -
        followers.reduce((total, value) => total + value, 0)
      console.log(
        `CPU per step by thread:   leader ${result.leaderThreadCpuMsPerStep.toFixed(1)} ms  ` +
          `followers ${followers.map((value) => value.toFixed(1)).join(' / ')} ms  other threads ` +
          `${others.toFixed(1)} ms (float32, last run)`,
      )
    }
    console.log(
      `work ahead of the commit: ${speculate ? 'on' : 'off'}; steps applied precomputed ` +
        `${result.stepsPrecomputed} of ${MEMBERS * steps}, gradients computed ahead ` +
        `${result.gradientsAhead} (${result.gradientsReceivedAhead} at the leader before the step they ` +
        `follow was applied), thrown away ${result.speculationsWasted} (float32, last run)`,
    )
    console.log(`members ended with identical digests: ${result.identicalDigests}`)
  }
} finally {
  backend.destroy()
  rmSync(directory, { recursive: true, force: true })
}
