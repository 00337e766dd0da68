import { closeSync, openSync, writeSync } from 'node:fs'
import cliProgress from 'cli-progress'
import { type Command, InvalidArgumentError } from 'commander'
import pc from 'picocolors'
import { MODELS, type ModelName } from '../../protocols/tasks/spec.js'
import {
  CHAIN_CHURN_PER_HOUR_MAX,
  CHAIN_OPTION_DEFAULTS,
  CHAIN_SERVERS_MAX,
  CHAIN_SESSION_TOKENS_MAX,
  CHAIN_SESSIONS_PER_HOUR_MAX,
  ChainOptionsError,
} from '../../simulations/network/chains.js'
import { CHAIN_MODEL_NAMES, type ChainModelName } from '../../simulations/network/chains-model.js'
import { parseDurationMs, parsePartitionSpec } from '../../simulations/network/links.js'
import {
  DURATION_MS_MAX,
  GROUP_SIZE_MAX,
  GROUPS_MAX,
  INFERENCE_PER_HOUR_MAX,
  OPTION_DEFAULTS,
  PEERS_MAX,
  SCENARIO_DESCRIPTIONS,
  SCENARIOS,
  type ScenarioName,
} from '../../simulations/network/parameters.js'
import { runChainSimulation, runNetworkSimulation } from '../../simulations/network/run.js'
import { type RaftSimulationSummary, runRaftSimulations } from '../../simulations/raft/run.js'
import type { ApplyRecord } from '../../simulations/raft/simulator.js'
import { UserError } from './errors.js'

/** The `sim` command group: simulators that drive the real protocol code. Others add subcommands. */
export function simGroup(program: Command): Command {
  const existing = program.commands.find((command) => command.name() === 'sim')
  if (existing) return existing
  return program.command('sim').description('run deterministic simulators over the real protocol code')
}

function positiveInteger(name: string, max: number) {
  return (value: string): number => {
    const parsed = Number(value)
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < 1 || parsed > max) {
      throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max}.`)
    }
    return parsed
  }
}

function nonNegativeInteger(name: string, max = 0xffffffff) {
  return (value: string): number => {
    const parsed = Number(value)
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed > max) {
      throw new InvalidArgumentError(`${name} must be an integer from 0 to ${max}.`)
    }
    return parsed
  }
}

interface SimRaftFlags {
  seeds: number
  firstSeed: number
  seed?: number
  members: number
  json?: boolean
  log?: string
  verbose?: boolean
}

function printSummary(summary: RaftSimulationSummary): void {
  const t = summary.totals
  process.stdout.write(
    `${summary.seeds} seeds, ${summary.members} members: ${summary.passed} passed, ` +
      `${summary.failures.length} failed in ${(summary.durationMs / 1000).toFixed(1)} s\n` +
      `  ticks ${t.ticks}, leader elections ${t.leaderElections}, client commits ${t.commits}, ` +
      `applies ${t.applies}\n` +
      `  faults: crashes ${t.crashes} (${t.crashesDuringReady} mid-write), ` +
      `partitions ${t.partitions}, messages dropped ${t.messagesDropped} / duplicated ` +
      `${t.messagesDuplicated} of ${t.messagesSent}\n` +
      `  snapshots installed ${t.snapshotsInstalled}, conf changes ${t.confChanges}, ` +
      `leader transfers ${t.transfers}\n`,
  )
  for (const failure of summary.failures) {
    process.stdout.write(
      `${pc.red(`seed=${failure.seed} FAILED`)} ${failure.checker} at tick ${failure.tick} ` +
        `(${failure.phase} phase): ${failure.message}\n` +
        `  parameters: ${JSON.stringify(failure.parameters)}\n` +
        `  last events:\n${failure.trace.map((line) => `    ${line}`).join('\n')}\n` +
        `  the implicated members just before the ` +
        `failure:\n${failure.focusedTrace.map((line) => `    ${line}`).join('\n')}\n` +
        `  replay: ${failure.replay}\n`,
    )
  }
}

async function simRaft(flags: SimRaftFlags): Promise<void> {
  const seeds =
    flags.seed !== undefined
      ? [flags.seed]
      : Array.from({ length: flags.seeds }, (_, i) => flags.firstSeed + i)
  let logFd: number | undefined
  let logLines: string[] = []
  if (flags.log) {
    try {
      logFd = openSync(flags.log, 'w')
    } catch (error) {
      throw new UserError(`cannot write the apply log ${flags.log}: ${(error as Error).message}.`)
    }
  }
  const onApply =
    logFd === undefined ? undefined : (record: ApplyRecord) => logLines.push(JSON.stringify(record))
  const showProgress = seeds.length > 1 && process.stderr.isTTY !== false && !flags.verbose
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'sim raft [{bar}] {value}/{total} seeds | {failures} failed | {eta_formatted} left',
    },
    cliProgress.Presets.shades_classic,
  )
  if (showProgress) bar.start(seeds.length, 0, { failures: 0 })
  let failed = 0
  const summary = runRaftSimulations({
    seeds,
    members: flags.members,
    onApply,
    verbose: flags.verbose ? (line) => process.stderr.write(`${line}\n`) : undefined,
    onSeed: (result, done) => {
      if (!result.ok) failed++
      if (logFd !== undefined && logLines.length > 0) {
        writeSync(logFd, `${logLines.join('\n')}\n`)
        logLines = []
      }
      if (showProgress) bar.update(done, { failures: failed })
    },
  })
  if (showProgress) bar.stop()
  if (logFd !== undefined) closeSync(logFd)
  if (flags.json) process.stdout.write(`${JSON.stringify(summary)}\n`)
  else printSummary(summary)
  if (summary.failures.length > 0) {
    const first = summary.failures[0]
    throw new UserError(
      `${summary.failures.length} of ${summary.seeds} seeds violated a Raft property; ` +
        `replay the first with: ${first.replay}`,
    )
  }
}

function share(name: string) {
  return (value: string): number => {
    const parsed = Number(value)
    if (value.trim() === '' || !Number.isFinite(parsed) || parsed < 0 || parsed > 1) {
      throw new InvalidArgumentError(`${name} must be a number from 0 to 1.`)
    }
    return parsed
  }
}

function churnRate(value: string): number {
  const parsed = Number(value)
  if (value.trim() === '' || !Number.isFinite(parsed) || parsed < 0 || parsed > 10) {
    throw new InvalidArgumentError('--churn must be a share of peers per hour from 0 to 10 (0.05 = 5%/h).')
  }
  return parsed
}

function duration(value: string): number {
  const ms = parseDurationMs(value)
  if (!Number.isFinite(ms) || ms < 1000 || ms > DURATION_MS_MAX) {
    throw new InvalidArgumentError('--duration must be a time from 1s to 7 days, e.g. 90s, 15m, 1h.')
  }
  return ms
}

function scenario(value: string): ScenarioName {
  if (!(SCENARIOS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`--scenario must be one of ${SCENARIOS.join(', ')}.`)
  }
  return value as ScenarioName
}

function model(value: string): ModelName {
  if (!(MODELS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`--model must be one of ${MODELS.join(', ')}.`)
  }
  return value as ModelName
}

interface SimNetworkFlags {
  peers: number
  groups: number
  groupSize: number
  churn: number
  loss: number
  partition?: string
  duration: number
  seed?: number
  report?: string
  json?: boolean
  scenario: ScenarioName
  inference: number
  model: ModelName
  real?: number
}

async function simNetwork(flags: SimNetworkFlags): Promise<void> {
  let partitions: ReturnType<typeof parsePartitionSpec> = []
  if (flags.partition) {
    try {
      partitions = parsePartitionSpec(flags.partition)
    } catch (error) {
      throw new UserError(`--partition: ${(error as Error).message}.`)
    }
  }
  if (flags.groupSize % 2 === 0)
    throw new UserError('--group-size must be odd (a Raft group needs a clear majority).')
  if (flags.groups * flags.groupSize * 2 > flags.peers) {
    throw new UserError(
      `--groups ${flags.groups} x --group-size ${flags.groupSize} needs at least ` +
        `${flags.groups * flags.groupSize * 2} peers (twice the seats); ` +
        `raise --peers or lower --groups.`,
    )
  }
  // the one place a default seed comes from the clock: it is printed, and replays pass it back
  const seed = flags.seed ?? Date.now() % 0x1_0000_0000
  const showProgress = process.stderr.isTTY !== false
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'sim [{bar}] {percentage}% of simulated time | {eta_formatted} left' },
    cliProgress.Presets.shades_classic,
  )
  const log = (line: string) => process.stderr.write(`${line}\n`)
  const outcome = await runNetworkSimulation(
    {
      seed,
      peers: flags.peers,
      groups: flags.groups,
      groupSize: flags.groupSize,
      churnPerHour: flags.churn,
      lossProbability: flags.loss,
      partitions,
      durationMs: flags.duration,
      scenario: flags.scenario,
      inferencePerHour: flags.inference,
      model: flags.model,
    },
    {
      reportDirectory: flags.report,
      realNodes: flags.real,
      log: flags.json ? log : (line) => process.stdout.write(`${line}\n`),
      onStart: () => {
        if (showProgress) bar.start(100, 0)
      },
      onProgress: (done) => {
        if (showProgress) bar.update(Math.round(done * 100))
      },
      onSimulated: () => {
        if (showProgress) bar.stop()
      },
    },
  )
  if (flags.json) process.stdout.write(`${JSON.stringify(outcome.json)}\n`)
  if (outcome.violation) {
    throw new UserError(
      `seed=${seed} violated ${outcome.violation.checker}: ${outcome.violation.message}; ` +
        `replay with: ${outcome.replay}`,
    )
  }
  if (outcome.crossCheckFailed) {
    throw new UserError(
      `the model disagrees with ${flags.real} real libp2p nodes beyond the stated margin (see above).`,
    )
  }
}

interface SimChainsFlags {
  seed?: number
  model: ChainModelName
  servers: number
  churn: number
  sessions: number
  prompt: number
  tokens: number
  duration: number
  stallTimeout: number
  loss: number
  valueBytes: 2 | 4
  report?: string
  json?: boolean
}

function chainModel(value: string): ChainModelName {
  if (!(CHAIN_MODEL_NAMES as string[]).includes(value)) {
    throw new InvalidArgumentError(`--model must be one of ${CHAIN_MODEL_NAMES.join(', ')}.`)
  }
  return value as ChainModelName
}

function chainChurn(value: string): number {
  const parsed = Number(value)
  if (value.trim() === '' || !Number.isFinite(parsed) || parsed < 0 || parsed > CHAIN_CHURN_PER_HOUR_MAX) {
    throw new InvalidArgumentError(
      `--churn must be a share of servers per hour from 0 to ${CHAIN_CHURN_PER_HOUR_MAX} (0.5 = 50%/h).`,
    )
  }
  return parsed
}

function stallTimeout(value: string): number {
  const ms = parseDurationMs(value)
  if (!Number.isFinite(ms) || ms < 1 || ms > 600_000) {
    throw new InvalidArgumentError('--stall-timeout must be a time from 1ms to 10m, e.g. 5s.')
  }
  return ms
}

function valueBytes(value: string): 2 | 4 {
  if (value !== '2' && value !== '4')
    throw new InvalidArgumentError('--value-bytes must be 4 (float32) or 2.')
  return Number(value) as 2 | 4
}

function simChains(flags: SimChainsFlags): void {
  const seed = flags.seed ?? Date.now() % 0x1_0000_0000
  const log = flags.json
    ? (line: string) => process.stderr.write(`${line}\n`)
    : (line: string) => {
        process.stdout.write(`${line}\n`)
      }
  try {
    const outcome = runChainSimulation(
      {
        seed,
        model: flags.model,
        servers: flags.servers,
        churnPerHour: flags.churn,
        sessionsPerHour: flags.sessions,
        promptTokens: flags.prompt,
        newTokens: flags.tokens,
        durationMs: flags.duration,
        stallTimeoutMs: flags.stallTimeout,
        lossProbability: flags.loss,
        hiddenValueBytes: flags.valueBytes,
      },
      { reportDirectory: flags.report, log },
    )
    if (flags.json) process.stdout.write(`${JSON.stringify(outcome.json)}\n`)
  } catch (error) {
    if (error instanceof ChainOptionsError) throw new UserError(`${error.message}.`)
    throw error
  }
}

export function register(program: Command): void {
  simGroup(program)
    .command('network', { isDefault: true })
    .description(
      'simulate a whole network (the default): virtual peers, gossip and DHT models, ' +
        'real Raft groups training; writes report.json and SVG plots',
    )
    .option(
      '--peers <count>',
      'peers at the start',
      positiveInteger('--peers', PEERS_MAX),
      OPTION_DEFAULTS.peers,
    )
    .option(
      '--groups <count>',
      'training groups kept busy at once',
      positiveInteger('--groups', GROUPS_MAX),
      OPTION_DEFAULTS.groups,
    )
    .option(
      '--group-size <k>',
      'members per group (odd)',
      positiveInteger('--group-size', GROUP_SIZE_MAX),
      OPTION_DEFAULTS.groupSize,
    )
    .option(
      '--churn <rate>',
      'share of peers that leave or crash per hour',
      churnRate,
      OPTION_DEFAULTS.churnPerHour,
    )
    .option(
      '--loss <p>',
      'probability that a message is lost',
      share('--loss'),
      OPTION_DEFAULTS.lossProbability,
    )
    .option(
      '--partition <spec>',
      'partitions: region:NAME@START+DURATION or split:SHARE@START+DURATION, comma-separated',
    )
    .option('--duration <time>', 'simulated time, e.g. 90s, 15m, 1h', duration, OPTION_DEFAULTS.durationMs)
    .option(
      '--seed <seed>',
      'the seed that decides everything (default: from the clock, printed)',
      nonNegativeInteger('--seed'),
    )
    .option(
      '--scenario <name>',
      `one of ${SCENARIOS.map((name) => `${name} (${SCENARIO_DESCRIPTIONS[name]})`).join('; ')}`,
      scenario,
      OPTION_DEFAULTS.scenario,
    )
    .option(
      '--inference <rate>',
      'inference tasks submitted per hour (each shard voted on by replicas; 0: none)',
      nonNegativeInteger('--inference', INFERENCE_PER_HOUR_MAX),
      OPTION_DEFAULTS.inferencePerHour,
    )
    .option(
      '--model <kind>',
      `the model the training tasks train: ${MODELS.join(' or ')} (the GPT at its tiny preset; ` +
        'inference tasks run the MNIST MLP either way)',
      model,
      OPTION_DEFAULTS.model,
    )
    .option('--report <dir>', 'write report.json and the SVG plots here')
    .option(
      '--real <nodes>',
      'also run this many real libp2p nodes (memory transport) and compare them with the model',
      positiveInteger('--real', 1000),
    )
    .option('--json', 'print report.json on stdout (progress and summary go to stderr)')
    .action(async (flags: SimNetworkFlags) => simNetwork(flags))

  simGroup(program)
    .command('chains')
    .description(
      'simulate inference chains: servers holding spans of a large model, clients generating through ' +
        'chains of them, churn and failover; prints completion share, tokens/s, time to first token',
    )
    .option(
      '--model <name>',
      `the model served: ${CHAIN_MODEL_NAMES.join(', ')}`,
      chainModel,
      CHAIN_OPTION_DEFAULTS.model,
    )
    .option(
      '--servers <count>',
      'servers at the start',
      positiveInteger('--servers', CHAIN_SERVERS_MAX),
      CHAIN_OPTION_DEFAULTS.servers,
    )
    .option(
      '--churn <rate>',
      'share of servers that leave or crash per hour',
      chainChurn,
      CHAIN_OPTION_DEFAULTS.churnPerHour,
    )
    .option(
      '--sessions <rate>',
      'generation sessions opened per hour',
      nonNegativeInteger('--sessions', CHAIN_SESSIONS_PER_HOUR_MAX),
      CHAIN_OPTION_DEFAULTS.sessionsPerHour,
    )
    .option(
      '--prompt <tokens>',
      'prompt tokens of each session',
      positiveInteger('--prompt', CHAIN_SESSION_TOKENS_MAX),
      CHAIN_OPTION_DEFAULTS.promptTokens,
    )
    .option(
      '--tokens <count>',
      'tokens each session generates',
      positiveInteger('--tokens', CHAIN_SESSION_TOKENS_MAX),
      CHAIN_OPTION_DEFAULTS.newTokens,
    )
    .option(
      '--duration <time>',
      'sessions arrive over this long, e.g. 15m, 1h',
      duration,
      CHAIN_OPTION_DEFAULTS.durationMs,
    )
    .option(
      '--stall-timeout <time>',
      'a request unanswered this long means its server is gone',
      stallTimeout,
      CHAIN_OPTION_DEFAULTS.stallTimeoutMs,
    )
    .option(
      '--loss <p>',
      'probability that a message is lost',
      share('--loss'),
      CHAIN_OPTION_DEFAULTS.lossProbability,
    )
    .option('--value-bytes <n>', 'bytes of a hidden-state value on the wire: 4 (float32) or 2', valueBytes, 4)
    .option(
      '--seed <seed>',
      'the seed that decides everything (default: from the clock, printed)',
      nonNegativeInteger('--seed'),
    )
    .option('--report <dir>', 'write chains.json here')
    .option('--json', 'print chains.json on stdout (parameters and summary go to stderr)')
    .action((flags: SimChainsFlags) => simChains(flags))

  simGroup(program)
    .command('raft')
    .description(
      'chaos-test the Raft core: seeded runs with loss, partitions, crashes, skew and membership changes',
    )
    .option('--seeds <count>', 'how many seeds to run', positiveInteger('--seeds', 10_000_000), 100)
    .option('--first-seed <seed>', 'the first seed of the range', nonNegativeInteger('--first-seed'), 1)
    .option('--seed <seed>', 'replay exactly this seed', nonNegativeInteger('--seed'))
    .option('--members <count>', 'initial voters per group', positiveInteger('--members', 9), 5)
    .option('--json', 'print the summary as JSON on stdout')
    .option('--log <file>', 'write every apply as a JSONL record {seed, member, index, term, digest}')
    .option('--verbose', 'narrate every event and core transition on stderr (use with --seed)')
    .action(async (flags: SimRaftFlags) => simRaft(flags))
}
