// The cost of gradient consensus: steps/s of a training group (--members, 3 by default: libp2p nodes
// on TCP loopback in this process, durable Raft stores in a temp dir) against the same training on
// one node without the network, measured in one run, and the gradient bytes members send per step
// with and without int8 compression, with the test accuracy each reaches.
//
//   npm run bench:consensus -- [--hidden 256] [--batch 64] [--steps 200] [--rounds 2] [--one-loop]
//                              [--heap daemon|default] [--speculate yes|no] [--latency-ms 0]
//                              [--members 3] [--verify yes|no|both] [--aggregate median|mean] [--json]
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
// --verify: followers recompute every entry from the signed gradients it names, which every member
// shares with every other (GroupMemberInit.verifyEntries, the default `yes`), or not (`no`); `both`
// runs each group configuration with and without, alternated within each round (the side that goes
// first alternates by round) so a change in machine load hits both, and reports the ratios. Gradient
// bytes per step are summed over members: sent to the leader plus shared with the other members.
// --aggregate: the rule of the group and of the one-node baseline alike (median, the group's default).

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
import type { AggregateRule, Compression, GroupMemberStatus } from '../protocols/training/types.js'
import {
  datasetShard,
  startTrainingCluster,
  stopTrainingCluster,
} from '../test/integration/training-cluster.js'
import type { MemberFinished, MemberStart } from './consensus-member.js'

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
    members: { type: 'string', default: '3' },
    verify: { type: 'string', default: 'yes' },
    aggregate: { type: 'string', default: 'median' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log(
    'usage: npm run bench:consensus -- [--hidden 256] [--batch 64] [--steps 200] [--rounds 2] ' +
      '[--one-loop] [--heap daemon|default] [--speculate yes|no] [--latency-ms 0] [--members 3] ' +
      '[--verify yes|no|both] [--aggregate median|mean] [--json]',
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
  ['--members', Number(flags.members)],
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
if (Number(flags.members) % 2 === 0) {
  console.error('--members takes an odd number (a Raft group of an even size tolerates no more faults)')
  process.exit(2)
}
if (flags.verify !== 'yes' && flags.verify !== 'no' && flags.verify !== 'both') {
  console.error(
    '--verify takes yes (followers check every entry, the default), no, or both (alternated runs)',
  )
  process.exit(2)
}
/** the verification settings to run, in the order of the first round */
const verifyModes = flags.verify === 'both' ? [true, false] : [flags.verify === 'yes']
if (flags.aggregate !== 'median' && flags.aggregate !== 'mean') {
  console.error('--aggregate takes median (the group default) or mean')
  process.exit(2)
}
const aggregate: AggregateRule = flags.aggregate
if (flags.heap === 'daemon') tuneHeapForTraining()
const MEMBERS = Number(flags.members)
/** a group run that applies no step for this long is reported as stalled and the bench stops */
const STALL_MS_MAX = 60_000
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
  /** gradient bytes the members sent to the leader per step */
  bytesPerStep: number
  /** gradient bytes the members shared with each other per step (verification's all-to-all) */
  sharedBytesPerStep: number
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
  /** all followers: entries recomputed and found right, found wrong; gradients fetched to check one */
  entriesChecked: number
  entriesRefused: number
  gradientsFetched: number
  badSignatures: number
  /** leaders some member distrusts at the end */
  distrusted: number
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
    const next = computeStep(state, aggregateGradients(gradients, aggregate), config)
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
  storage: 'durable' | 'memory',
  verifyEntries: boolean,
): Promise<GroupRun> {
  const groupId = `bench-${runCount++}`
  const members = await startTrainingCluster({
    size: MEMBERS,
    directory,
    backend,
    storage,
    options: {
      groupId,
      model: mlpTrainingModel(architecture, shard),
      seed: SEED,
      batchSize,
      learningRate,
      steps,
      aggregate,
      compression,
      speculate,
      verifyEntries,
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
  const results = await unlessStalled(
    Promise.all(members.map((member) => member.member.finished())),
    () => members.map((member) => member.member.status().step),
    groupId,
  )
  const seconds = ((performance.now() - firstStepAt) / 1000) * (steps / (steps - firstStep))
  const cpuMsPerStep = cpuMsSince(cpuAtFirstStep) / (steps - firstStep)
  const statuses = members.map((member) => member.member.status())
  const sum = (value: (index: number) => number) =>
    members.reduce((total, _, index) => total + value(index), 0)
  const raftBytes = sum((index) => members[index].node.services.raft.stats.bytesSent)
  await stopTrainingCluster(members)
  return {
    seconds,
    cpuMsPerStep,
    params: results[0].params,
    bytesPerStep: sum((index) => statuses[index].gradientBytesSent) / steps,
    sharedBytesPerStep: sum((index) => statuses[index].gradientBytesShared) / steps,
    raftBytesPerStep: raftBytes / steps,
    digests: new Set(results.map((result) => result.digest)).size,
    ...memberCounts(statuses.map(countsOf)),
  }
}

type MemberCount =
  | 'stepsPrecomputed'
  | 'gradientsAhead'
  | 'speculationsWasted'
  | 'gradientsReceivedAhead'
  | 'entriesChecked'
  | 'entriesRefused'
  | 'gradientsFetched'
  | 'badSignatures'

/** The members' counters of one run, summed. */
function memberCounts(
  members: Array<Record<MemberCount, number> & { distrusted: number }>,
): Pick<GroupRun, MemberCount | 'distrusted'> {
  const sum = (key: MemberCount | 'distrusted') => members.reduce((total, member) => total + member[key], 0)
  return {
    stepsPrecomputed: sum('stepsPrecomputed'),
    gradientsAhead: sum('gradientsAhead'),
    speculationsWasted: sum('speculationsWasted'),
    gradientsReceivedAhead: sum('gradientsReceivedAhead'),
    entriesChecked: sum('entriesChecked'),
    entriesRefused: sum('entriesRefused'),
    gradientsFetched: sum('gradientsFetched'),
    badSignatures: sum('badSignatures'),
    distrusted: sum('distrusted'),
  }
}

/** A run's members, as memberCounts reads them. */
function countsOf(status: GroupMemberStatus): Record<MemberCount, number> & { distrusted: number } {
  return { ...status, distrusted: status.distrusted.length }
}

/**
 * Resolves with `finished`, or rejects with the steps each member has reached when none of them
 * has applied a step for STALL_MS_MAX.
 */
async function unlessStalled<T>(finished: Promise<T>, steps: () => number[], label: string): Promise<T> {
  let last = ''
  let lastChange = performance.now()
  let timer: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const now = steps().join(',')
      if (now !== last) {
        last = now
        lastChange = performance.now()
      } else if (performance.now() - lastChange > STALL_MS_MAX) {
        reject(
          new Error(
            `${label}: no member applied a step for ${STALL_MS_MAX / 1000} s (steps applied by ` +
              `member: ${now})`,
          ),
        )
      }
    }, 1000)
  })
  try {
    return await Promise.race([finished, stalled])
  } finally {
    clearInterval(timer)
  }
}

/** The same group with each member in its own worker thread (own event loop, as on separate machines). */
async function trainInThreads(
  compression: Compression,
  storage: 'durable' | 'memory',
  verifyEntries: boolean,
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
            aggregate,
            verifyEntries,
          } satisfies MemberStart)
        }),
    ),
  )
  let firstStepAt = 0
  let firstStep = 0
  let cpuAtFirstStep = process.cpuUsage()
  const applied = workers.map(() => -1)
  const finished = Promise.all(
    workers.map(
      (worker, index) =>
        new Promise<MemberFinished>((resolve, reject) => {
          worker.on('error', reject)
          worker.on('message', (message: { type: string; step?: number; at?: number }) => {
            if (message.type === 'step') applied[index] = message.step!
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
  let results: MemberFinished[]
  try {
    results = await unlessStalled(finished, () => applied, groupId)
  } catch (error) {
    await Promise.all(workers.map((worker) => worker.terminate()))
    throw error
  }
  const seconds = ((performance.now() - firstStepAt) / 1000) * (steps / (steps - firstStep))
  const cpuMsPerStep = cpuMsSince(cpuAtFirstStep) / (steps - firstStep)
  for (const worker of workers) worker.postMessage('stop')
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('exit', resolve))))
  return {
    seconds,
    cpuMsPerStep,
    params: results[0].params,
    bytesPerStep: results.reduce((total, result) => total + result.gradientBytesSent, 0) / steps,
    sharedBytesPerStep: results.reduce((total, result) => total + result.gradientBytesShared, 0) / steps,
    raftBytesPerStep: results.reduce((total, result) => total + result.raftBytesSent, 0) / steps,
    digests: new Set(results.map((result) => result.digest)).size,
    leaderThreadCpuMs: results.find((result) => result.isLeader)?.threadCpuMsPerStep,
    followerThreadCpuMs: results
      .filter((result) => !result.isLeader)
      .map((result) => result.threadCpuMsPerStep),
    ...memberCounts(results),
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
    `${flags.speculate}${latencyMs > 0 ? `, modelled one-way latency ${latencyMs} ms` : ''}, ` +
    `aggregate: ${aggregate}, entries verified: ${flags.verify}`,
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
/** The runs of one verification setting, over every round. */
interface Side {
  verify: boolean
  float32Seconds: number[]
  float32Cpu: number[]
  int8Seconds: number[]
  memorySeconds: number[]
  /** the last round's runs */
  float32?: GroupRun
  int8?: GroupRun
}
const sides: Side[] = verifyModes.map((verify) => ({
  verify,
  float32Seconds: [],
  float32Cpu: [],
  int8Seconds: [],
  memorySeconds: [],
}))
const sideName = (side: Side) => (side.verify ? 'verified' : 'unverified')
const localSeconds: number[] = []
const localCpu: number[] = []
let localParams: Float32Array | undefined
const GROUP_CONFIGURATIONS = [
  { compression: 'none', storage: 'durable', label: 'float32 gradients' },
  { compression: 'int8', storage: 'durable', label: 'int8 gradients' },
  { compression: 'none', storage: 'memory', label: 'float32, in-memory raft log' },
] as const

/** The figures of one side, from the medians of its runs against the one-node baseline. */
async function summarize(side: Side) {
  const groupRun = side.float32!
  const int8Run = side.int8!
  const local = steps / median(localSeconds)
  const group = steps / median(side.float32Seconds)
  const groupInt8 = steps / median(side.int8Seconds)
  const groupMemory = steps / median(side.memorySeconds)
  const groupAccuracy = await accuracy(groupRun.params)
  const int8Accuracy = await accuracy(int8Run.params)
  return {
    verifyEntries: side.verify,
    groupStepsPerSecond: group,
    groupInt8StepsPerSecond: groupInt8,
    groupMemoryLogStepsPerSecond: groupMemory,
    /** extra time per step of the group over local, as a share of the group's step time */
    consensusOverheadPercent: (100 * (1 / group - 1 / local)) / (1 / group),
    consensusOverheadInt8Percent: (100 * (1 / groupInt8 - 1 / local)) / (1 / groupInt8),
    consensusOverheadMemoryLogPercent: (100 * (1 / groupMemory - 1 / local)) / (1 / groupMemory),
    /** CPU time per step of the whole process (every thread), and the cores that keeps busy */
    localCpuMsPerStep: median(localCpu),
    groupCpuMsPerStep: median(side.float32Cpu),
    localCoresBusy: (median(localCpu) * local) / 1000,
    groupCoresBusy: (median(side.float32Cpu) * group) / 1000,
    /**
     * in threads, last float32 run: each member's own thread
     * (the rest: GC helpers, libuv pool, this thread)
     */
    leaderThreadCpuMsPerStep: groupRun.leaderThreadCpuMs,
    followerThreadCpuMsPerStep: groupRun.followerThreadCpuMs,
    /**
     * last float32 run, all members: steps applied from work done before the commit, gradients computed
     * ahead and used, work thrown away
     */
    stepsPrecomputed: groupRun.stepsPrecomputed,
    gradientsAhead: groupRun.gradientsAhead,
    speculationsWasted: groupRun.speculationsWasted,
    gradientsReceivedAhead: groupRun.gradientsReceivedAhead,
    /** gradient bytes per step sent to the leader, summed over members (last run of each) */
    gradientBytesPerStepFloat32: groupRun.bytesPerStep,
    gradientBytesPerStepInt8: int8Run.bytesPerStep,
    compressionRatio: groupRun.bytesPerStep / int8Run.bytesPerStep,
    /** ... shared with the other members to check entries (0 unverified) */
    gradientBytesSharedPerStepFloat32: groupRun.sharedBytesPerStep,
    gradientBytesSharedPerStepInt8: int8Run.sharedBytesPerStep,
    /** sent + shared */
    gradientBytesTotalPerStepFloat32: groupRun.bytesPerStep + groupRun.sharedBytesPerStep,
    gradientBytesTotalPerStepInt8: int8Run.bytesPerStep + int8Run.sharedBytesPerStep,
    /** Raft frames per step (int8 groups propose int8 updates) */
    raftBytesPerStepFloat32: groupRun.raftBytesPerStep,
    raftBytesPerStepInt8: int8Run.raftBytesPerStep,
    /** last float32 and int8 runs, all followers */
    entriesChecked: groupRun.entriesChecked + int8Run.entriesChecked,
    entriesRefused: groupRun.entriesRefused + int8Run.entriesRefused,
    gradientsFetched: groupRun.gradientsFetched + int8Run.gradientsFetched,
    badSignatures: groupRun.badSignatures + int8Run.badSignatures,
    distrusted: groupRun.distrusted + int8Run.distrusted,
    groupAccuracy,
    groupInt8Accuracy: int8Accuracy,
    int8AccuracyLossPoints: 100 * (groupAccuracy - int8Accuracy),
    identicalDigests: groupRun.digests === 1 && int8Run.digests === 1,
  }
}
type Summary = Awaited<ReturnType<typeof summarize>>

/** The lines the bench has always printed, for one side. */
function printSide(result: Summary, local: number, localAccuracy: number): void {
  const group = result.groupStepsPerSecond
  console.log(`local (no network):        ${local.toFixed(1)} steps/s`)
  console.log(
    `group, float32 gradients: ${group.toFixed(1)} steps/s  overhead ` +
      `${result.consensusOverheadPercent.toFixed(1)}% of step time`,
  )
  console.log(
    `group, int8 compression:  ${result.groupInt8StepsPerSecond.toFixed(1)} steps/s  overhead ` +
      `${result.consensusOverheadInt8Percent.toFixed(1)}% of step time`,
  )
  console.log(
    `group, in-memory log:     ${result.groupMemoryLogStepsPerSecond.toFixed(1)} steps/s  overhead ` +
      `${result.consensusOverheadMemoryLogPercent.toFixed(1)}% of step time`,
  )
  console.log(
    `gradient bytes per step:  float32 ${Math.round(result.gradientBytesPerStepFloat32)}  int8 ` +
      `${Math.round(result.gradientBytesPerStepInt8)}  ratio ${result.compressionRatio.toFixed(2)}x ` +
      '(sent to the leader)',
  )
  console.log(
    `gradient bytes shared:    float32 ${Math.round(result.gradientBytesSharedPerStepFloat32)}  int8 ` +
      `${Math.round(result.gradientBytesSharedPerStepInt8)} per step (all-to-all, to check entries)`,
  )
  console.log(
    `raft bytes per step:      float32 ${Math.round(result.raftBytesPerStepFloat32)}  int8 ` +
      `${Math.round(result.raftBytesPerStepInt8)}  ratio ` +
      `${(result.raftBytesPerStepFloat32 / result.raftBytesPerStepInt8).toFixed(2)}x (log appends ` +
      `with the update, acknowledgements, heartbeats)`,
  )
  console.log(
    `test accuracy:            local ${(100 * localAccuracy).toFixed(2)}%  group ` +
      `${(100 * result.groupAccuracy).toFixed(2)}%  group int8 ` +
      `${(100 * result.groupInt8Accuracy).toFixed(2)}% ` +
      `(int8 costs ${result.int8AccuracyLossPoints.toFixed(2)} points)`,
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
  console.log(
    `entries checked:          ${result.entriesChecked} found right, ${result.entriesRefused} refused, ` +
      `${result.gradientsFetched} gradients fetched, ${result.badSignatures} bad signatures, ` +
      `${result.distrusted} leaders distrusted (float32 and int8, last runs, all followers)`,
  )
  console.log(`members ended with identical digests: ${result.identicalDigests}`)
}

try {
  for (let round = 0; round < rounds; round++) {
    const local = await trainLocally(shard)
    localSeconds.push(local.seconds)
    localCpu.push(local.cpuMsPerStep)
    localParams = local.params
    log(`  round ${round + 1}: local ${(steps / local.seconds).toFixed(1)} steps/s`)
    const group = inThreads ? trainInThreads : trainInGroup
    // the side that runs first alternates by round
    const order = round % 2 === 0 ? sides : [...sides].reverse()
    for (const configuration of GROUP_CONFIGURATIONS) {
      for (const side of order) {
        const run = await group(configuration.compression, configuration.storage, side.verify)
        if (configuration.storage === 'memory') side.memorySeconds.push(run.seconds)
        else if (configuration.compression === 'int8') {
          side.int8Seconds.push(run.seconds)
          side.int8 = run
        } else {
          side.float32Seconds.push(run.seconds)
          side.float32Cpu.push(run.cpuMsPerStep)
          side.float32 = run
        }
        log(
          `  round ${round + 1}: group ${(steps / run.seconds).toFixed(1)} steps/s ` +
            `(${configuration.label}${sides.length > 1 ? `, ${sideName(side)}` : ''})${cpuNote(run)}`,
        )
      }
    }
  }
  const localAccuracy = await accuracy(localParams!)
  const local = steps / median(localSeconds)
  const common = {
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
    aggregate,
    localStepsPerSecond: local,
    localAccuracy,
  }
  const summaries: Summary[] = []
  for (const side of sides) summaries.push(await summarize(side))
  if (summaries.length === 1) {
    if (flags.json) console.log(JSON.stringify({ ...common, ...summaries[0] }, null, 2))
    else printSide(summaries[0], local, localAccuracy)
  } else {
    const [verified, unverified] = summaries
    const ratio = (key: keyof Summary) => (verified[key] as number) / (unverified[key] as number)
    const ratios = {
      stepsPerSecondFloat32: ratio('groupStepsPerSecond'),
      stepsPerSecondInt8: ratio('groupInt8StepsPerSecond'),
      stepsPerSecondMemoryLog: ratio('groupMemoryLogStepsPerSecond'),
      gradientBytesPerStepFloat32: ratio('gradientBytesTotalPerStepFloat32'),
      gradientBytesPerStepInt8: ratio('gradientBytesTotalPerStepInt8'),
      raftBytesPerStepFloat32: ratio('raftBytesPerStepFloat32'),
      raftBytesPerStepInt8: ratio('raftBytesPerStepInt8'),
      cpuMsPerStep: ratio('groupCpuMsPerStep'),
    }
    if (flags.json) {
      console.log(
        JSON.stringify({ ...common, verified, unverified, verifiedOverUnverified: ratios }, null, 2),
      )
    } else {
      for (const summary of summaries) {
        console.log(`-- entries ${summary.verifyEntries ? 'verified' : 'not verified'} --`)
        printSide(summary, local, localAccuracy)
      }
      console.log(`-- the cost of verification (${MEMBERS} members, ${aggregate}): verified / unverified --`)
      const row = (label: string, a: number, b: number, ratioOf: number, digits = 1) =>
        console.log(
          `${label.padEnd(36)}${a.toFixed(digits)} / ${b.toFixed(digits)}  ratio ${ratioOf.toFixed(3)}`,
        )
      row(
        'steps/s, float32',
        verified.groupStepsPerSecond,
        unverified.groupStepsPerSecond,
        ratios.stepsPerSecondFloat32,
      )
      row(
        'steps/s, int8',
        verified.groupInt8StepsPerSecond,
        unverified.groupInt8StepsPerSecond,
        ratios.stepsPerSecondInt8,
      )
      row(
        'steps/s, float32, in-memory log',
        verified.groupMemoryLogStepsPerSecond,
        unverified.groupMemoryLogStepsPerSecond,
        ratios.stepsPerSecondMemoryLog,
      )
      row(
        'gradient bytes/step, float32',
        verified.gradientBytesTotalPerStepFloat32,
        unverified.gradientBytesTotalPerStepFloat32,
        ratios.gradientBytesPerStepFloat32,
        0,
      )
      row(
        'gradient bytes/step, int8',
        verified.gradientBytesTotalPerStepInt8,
        unverified.gradientBytesTotalPerStepInt8,
        ratios.gradientBytesPerStepInt8,
        0,
      )
      row(
        'raft bytes/step, float32',
        verified.raftBytesPerStepFloat32,
        unverified.raftBytesPerStepFloat32,
        ratios.raftBytesPerStepFloat32,
        0,
      )
      row(
        'raft bytes/step, int8',
        verified.raftBytesPerStepInt8,
        unverified.raftBytesPerStepInt8,
        ratios.raftBytesPerStepInt8,
        0,
      )
      row(
        'CPU ms/step, float32 (all threads)',
        verified.groupCpuMsPerStep,
        unverified.groupCpuMsPerStep,
        ratios.cpuMsPerStep,
      )
    }
  }
} finally {
  backend.destroy()
  rmSync(directory, { recursive: true, force: true })
}
