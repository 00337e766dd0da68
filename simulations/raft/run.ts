// Runs many seeds of the Raft simulator and summarises them: the service behind `shardnet sim raft`
// (it knows nothing of flags or terminals; the CLI passes an options object and callbacks).
import { type ApplyRecord, type SimulationResult, type SimulationStats, simulateRaft } from './simulator.js'

export interface RaftSimulationRunOptions {
  /** The seeds to run, in order. */
  seeds: number[]
  members: number
  /** Every apply of every member, in order (the --log JSONL stream). */
  onApply?: (record: ApplyRecord) => void
  /** Called after each seed. */
  onSeed?: (result: SimulationResult, done: number) => void
  /** Narration of a single replayed seed. */
  verbose?: (line: string) => void
}

export interface RaftSimulationFailure {
  seed: number
  checker: string
  message: string
  tick: number
  phase: 'safety' | 'liveness'
  replay: string
  parameters: SimulationResult['parameters']
  /** The last events before the failure, oldest first. */
  trace: string[]
  /**
   * A replay's narration of the last few election timeouts before the failure, kept to the lines
   * about the implicated members (all members for a liveness failure): the minimal story to read.
   */
  focusedTrace: string[]
}

const FOCUSED_TRACE_LINES_MAX = 80

/** Replays a failed seed verbosely and keeps what concerns the implicated members near the failure. */
export function focusedTrace(
  seed: number,
  members: number,
  tick: number,
  implicated: string[],
  electionTicks: number,
): string[] {
  const windowStart = tick - 3 * electionTicks
  const lines: string[] = []
  simulateRaft({
    seed,
    members,
    verbose: (line) => {
      const at = Number(/^t=(\d+)/.exec(line)?.[1] ?? -1)
      if (at < windowStart || at > tick) return
      const about = /^t=\d+ \[([^\]]+)\]/.exec(line)?.[1]
      if (about !== undefined && implicated.length > 0 && !implicated.includes(about)) return
      lines.push(line)
      if (lines.length > FOCUSED_TRACE_LINES_MAX) lines.shift()
    },
  })
  return lines
}

export interface RaftSimulationSummary {
  seeds: number
  members: number
  passed: number
  failures: RaftSimulationFailure[]
  durationMs: number
  totals: SimulationStats
}

/** The command that replays one seed, printed with every failure. */
export function replayCommand(seed: number, members: number): string {
  return `shardnet sim raft --seed ${seed} --members ${members} --verbose`
}

export function runRaftSimulations(options: RaftSimulationRunOptions): RaftSimulationSummary {
  const started = performance.now()
  const failures: RaftSimulationFailure[] = []
  let totals: SimulationStats | undefined
  let done = 0
  for (const seed of options.seeds) {
    const result = simulateRaft({
      seed,
      members: options.members,
      onApply: options.onApply,
      verbose: options.verbose,
    })
    done++
    if (!totals) totals = { ...result.stats }
    else
      for (const key of Object.keys(totals) as Array<keyof SimulationStats>) totals[key] += result.stats[key]
    if (result.failure) {
      failures.push({
        seed,
        checker: result.failure.checker,
        message: result.failure.message,
        tick: result.failure.tick,
        phase: result.failure.phase,
        replay: replayCommand(seed, options.members),
        parameters: result.parameters,
        trace: result.failure.trace.slice(-40),
        focusedTrace: focusedTrace(
          seed,
          options.members,
          result.failure.tick,
          result.failure.members,
          result.parameters.electionTicks,
        ),
      })
    }
    options.onSeed?.(result, done)
  }
  return {
    seeds: options.seeds.length,
    members: options.members,
    passed: options.seeds.length - failures.length,
    failures,
    durationMs: Math.round(performance.now() - started),
    totals: totals ?? ({} as SimulationStats),
  }
}
