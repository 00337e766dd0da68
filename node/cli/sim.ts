import { closeSync, openSync, writeSync } from 'node:fs'
import cliProgress from 'cli-progress'
import { type Command, InvalidArgumentError } from 'commander'
import pc from 'picocolors'
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

function nonNegativeInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value)
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed > 0xffffffff) {
      throw new InvalidArgumentError(`${name} must be an integer from 0 to 4294967295.`)
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
    `${summary.seeds} seeds, ${summary.members} members: ${summary.passed} passed, ${summary.failures.length} failed in ${(summary.durationMs / 1000).toFixed(1)} s\n` +
      `  ticks ${t.ticks}, leader elections ${t.leaderElections}, client commits ${t.commits}, applies ${t.applies}\n` +
      `  faults: crashes ${t.crashes} (${t.crashesDuringReady} mid-write), partitions ${t.partitions}, messages dropped ${t.messagesDropped} / duplicated ${t.messagesDuplicated} of ${t.messagesSent}\n` +
      `  snapshots installed ${t.snapshotsInstalled}, conf changes ${t.confChanges}, leader transfers ${t.transfers}\n`,
  )
  for (const failure of summary.failures) {
    process.stdout.write(
      `${pc.red(`seed=${failure.seed} FAILED`)} ${failure.checker} at tick ${failure.tick} (${failure.phase} phase): ${failure.message}\n` +
        `  parameters: ${JSON.stringify(failure.parameters)}\n` +
        `  last events:\n${failure.trace.map((line) => `    ${line}`).join('\n')}\n` +
        `  the implicated members just before the failure:\n${failure.focusedTrace.map((line) => `    ${line}`).join('\n')}\n` +
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
      `${summary.failures.length} of ${summary.seeds} seeds violated a Raft property; replay the first with: ${first.replay}`,
    )
  }
}

export function register(program: Command): void {
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
