// What one network simulation runs with: the options a user gives, the named scenarios, and the
// parameters the seed derives from them. Every derived value is printed and written to the report,
// so a run is reproducible from `seed` plus the options (TigerBeetle VOPR's habit).
import { SeededRandom } from '../../protocols/raft/random.js'
import type { GptShape, ModelName } from '../../protocols/tasks/spec.js'
import { type PartitionSpec, REGION_WEIGHTS, REGIONS } from './links.js'
import { type ServedModel, type SimulatedModel, servedModel, simulatedModel } from './model.js'

export const SCENARIOS = ['steady', 'flash-crowd', 'regional-outage', 'byzantine-10pct'] as const
export type ScenarioName = (typeof SCENARIOS)[number]

/** What each scenario does and what it is expected to show (the tests in test/sim check these). */
export const SCENARIO_DESCRIPTIONS: Record<ScenarioName, string> = {
  steady:
    'the options as given (default 5%/h churn); expected: every task completes, no safety violation, ' +
    'gossip reaches all live peers',
  'flash-crowd':
    'as many new peers as there are join within 2 minutes at 10% of the run; expected: joiners get ' +
    'routing tables and mesh links, lookups stay within one extra hop, training continues',
  'regional-outage':
    'every peer of one region (us-east or europe) crashes at 25% of the run and restarts 10 minutes ' +
    '(at most a quarter of the run) later; expected: only groups with a majority in that region stall, ' +
    'the rest keep committing',
  'byzantine-10pct':
    '10% of peers lie about gradients (huge or NaN norms) and about inference results (the same wrong ' +
    'logits from every liar), and drop 30% of their Raft messages; expected: no lying gradient is ' +
    'accepted by a group with an honest majority, no lying inference result wins a vote in which ' +
    'honest replicas hold the majority, safety holds, groups with an honest majority progress',
}

export interface NetworkSimulationOptions {
  seed: number
  peers: number
  /** Training groups the network keeps busy at once. */
  groups: number
  groupSize: number
  /** Share of peers that churn (leave or crash) per hour. */
  churnPerHour: number
  lossProbability: number
  partitions: PartitionSpec[]
  durationMs: number
  scenario: ScenarioName
  /** Inference tasks submitted per hour (0: none). @default OPTION_DEFAULTS.inferencePerHour */
  inferencePerHour?: number
  /** The model kind the training tasks train. @default OPTION_DEFAULTS.model */
  model?: ModelName
  /** The GPT's shape (model gpt). @default GPT_SHAPE_DEFAULT (the tiny preset) */
  gpt?: GptShape
}

export const OPTION_DEFAULTS = {
  peers: 1000,
  groups: 100,
  groupSize: 3,
  churnPerHour: 0.05,
  lossProbability: 0.001,
  durationMs: 3_600_000,
  scenario: 'steady' as ScenarioName,
  inferencePerHour: 120,
  model: 'mnist-mlp' as ModelName,
}

/** Bounds on the options (every input has a named maximum). */
export const PEERS_MAX = 1_000_000
export const GROUPS_MAX = 10_000
export const GROUP_SIZE_MAX = 9
export const DURATION_MS_MAX = 7 * 24 * 3_600_000
export const INFERENCE_PER_HOUR_MAX = 100_000

/** Everything the seed and the options decide; printed and reported. */
export interface DerivedParameters {
  seed: number
  scenario: ScenarioName
  peers: number
  groups: number
  groupSize: number
  churnPerHour: number
  lossProbability: number
  durationMs: number
  partitions: PartitionSpec[]
  regionShares: number[]
  latencyScale: number
  slowPeerShare: number
  byzantineShare: number
  byzantineRaftDropProbability: number
  /** Groups per task, steps per task. */
  groupsPerTask: number
  stepsPerTask: number
  crashShareOfChurn: number
  restartDelayMsMin: number
  restartDelayMsMax: number
  uploadMbpsMin: number
  uploadMbpsMax: number
  raftTickMs: number
  electionTicks: number
  heartbeatTicks: number
  /**
   * The model the training tasks train: its sizes set gradient and state-transfer bytes, its compute
   * figures a step's kernel time (model.ts).
   */
  model: SimulatedModel
  /** The model the inference tasks run: `model` when the network serves its kind, else the MNIST MLP. */
  inferenceModel: ServedModel
  /**
   * Inference tasks per hour (Poisson arrivals), their input rows, logits per row, replicas per
   * shard and shard count range.
   */
  inferencePerHour: number
  inferenceRows: number
  inferenceClasses: number
  inferenceReplicas: number
  inferenceShardsMin: number
  inferenceShardsMax: number
  flashCrowd?: { atMs: number; peers: number; overMs: number }
  regionalOutage?: { region: string; atMs: number; durationMs: number }
}

export function deriveParameters(options: NetworkSimulationOptions): DerivedParameters {
  const model = simulatedModel(options.model ?? OPTION_DEFAULTS.model, options.gpt)
  const inferenceModel = servedModel(model)
  const random = new SeededRandom(options.seed ^ 0x6a09e667)
  const weights = REGION_WEIGHTS.map((w) => w * (0.8 + 0.4 * random.float()))
  const total = weights.reduce((a, b) => a + b, 0)
  const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits
  const parameters: DerivedParameters = {
    seed: options.seed,
    scenario: options.scenario,
    peers: options.peers,
    groups: options.groups,
    groupSize: options.groupSize,
    churnPerHour: options.churnPerHour,
    lossProbability: options.lossProbability,
    durationMs: options.durationMs,
    partitions: options.partitions,
    regionShares: weights.map((w) => round(w / total)),
    latencyScale: round(0.9 + 0.2 * random.float()),
    slowPeerShare: round(0.05 + 0.1 * random.float()),
    byzantineShare: options.scenario === 'byzantine-10pct' ? 0.1 : 0,
    byzantineRaftDropProbability: 0.3,
    groupsPerTask: Math.min(options.groups, 2 + random.int(3)),
    stepsPerTask: 150 + 50 * random.int(4),
    crashShareOfChurn: 0.5,
    restartDelayMsMin: 30_000,
    restartDelayMsMax: 600_000,
    uploadMbpsMin: 10,
    uploadMbpsMax: 100,
    raftTickMs: 200,
    electionTicks: 10,
    heartbeatTicks: 2,
    model,
    inferenceModel,
    inferencePerHour: options.inferencePerHour ?? OPTION_DEFAULTS.inferencePerHour,
    inferenceRows: 64,
    inferenceClasses: inferenceModel.inference.classes,
    inferenceReplicas: 3,
    inferenceShardsMin: 2,
    inferenceShardsMax: 6,
  }
  if (options.scenario === 'flash-crowd') {
    parameters.flashCrowd = {
      atMs: Math.round(options.durationMs * 0.1),
      peers: options.peers,
      overMs: 120_000,
    }
  }
  if (options.scenario === 'regional-outage') {
    const region = REGIONS[random.int(3) === 0 ? 0 : 2] // one of the two big regions: us-east or europe
    parameters.regionalOutage = {
      region,
      atMs: Math.round(options.durationMs * 0.25),
      durationMs: Math.min(600_000, Math.round(options.durationMs * 0.25)),
    }
  }
  return parameters
}

/** One line per parameter, `name=value`, for the console. */
export function describeParameters(parameters: DerivedParameters): string[] {
  return Object.entries(parameters).map(([name, value]) => `${name}=${JSON.stringify(value)}`)
}
