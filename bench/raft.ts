// Raft group benchmark: 3 and 5 members as real libp2p nodes (TCP on 127.0.0.1, noise, yamux) in
// one process, each with a DurableRaftStorage (fsync per Ready) in a temp dir, beside a 1-member
// group on the same store (no network: the ceiling). Prints committed entries/s for 100-byte
// entries, MiB/s for 1 MiB entries, commit latency p50/p99 at low load (one proposal at a time) and
// the time from killing the leader's node to a new leader committing. Figures, not pass/fail.
//
//   npm run bench:raft [-- --duration-ms 3000 --sizes 1,3,5]
import '../node/polyfill.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProposalDroppedError } from '../protocols/raft/types.js'
import {
  currentLeader,
  type RaftClusterMember,
  startRaftCluster,
  stopRaftCluster,
  waitFor,
} from '../test/integration/raft-cluster.js'

interface Figures {
  members: number
  smallEntriesPerSecond: number
  largeMiBPerSecond: number
  latencyP50Ms: number
  latencyP99Ms: number
  failoverMs: number | undefined
}

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`)
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1] : fallback
}

const durationMs = Number(argument('duration-ms', '3000'))
const sizes = argument('sizes', '1,3,5').split(',').map(Number)
const tickMs = 25
const electionTicks = 10

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

/** Keeps `window` proposals in flight on the leader for `durationMs`; returns committed entries/s. */
async function throughput(
  leader: RaftClusterMember,
  entryBytes: number,
  window: number,
  duration: number,
): Promise<number> {
  const payload = new Uint8Array(entryBytes).fill(42)
  let committed = 0
  let inFlight = 0
  const deadline = performance.now() + duration
  const started = performance.now()
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (inFlight < window && performance.now() < deadline && leader.runner.isLeader()) {
        inFlight++
        leader.runner.propose(payload).then(
          () => {
            committed++
            inFlight--
            if (performance.now() < deadline && leader.runner.isLeader()) pump()
            else if (inFlight === 0) resolve()
          },
          (error: Error) => {
            inFlight--
            // a leadership change ends the run early; its committed entries still count
            if (error.name !== 'ProposalLostError' && error.name !== 'ProposalDroppedError') reject(error)
            else if (inFlight === 0) resolve()
          },
        )
      }
    }
    pump()
  })
  return committed / ((performance.now() - started) / 1000)
}

async function latency(leader: RaftClusterMember, samples: number): Promise<number[]> {
  const payload = new Uint8Array(100).fill(7)
  const out: number[] = []
  for (let i = 0; i < samples; i++) {
    const started = performance.now()
    await leader.runner.propose(payload)
    out.push(performance.now() - started)
    await new Promise((resolve) => setTimeout(resolve, 2)) // low load: one at a time, a pause between
  }
  return out.sort((a, b) => a - b)
}

async function failover(members: RaftClusterMember[]): Promise<number> {
  const leader = currentLeader(members)!
  await leader.kill()
  const killedAt = performance.now()
  const payload = new TextEncoder().encode('after failover')
  for (;;) {
    const next = currentLeader(members)
    if (next) {
      try {
        await next.runner.propose(payload)
        return performance.now() - killedAt
      } catch (error) {
        if (!(error instanceof ProposalDroppedError) && (error as Error).name !== 'ProposalLostError')
          throw error
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 1))
    if (performance.now() - killedAt > 30_000) throw new Error('no new leader committed within 30 s')
  }
}

async function measure(size: number): Promise<Figures> {
  const directory = mkdtempSync(join(tmpdir(), `shardnet-bench-raft-${size}-`))
  const members = await startRaftCluster({
    size,
    directory,
    group: `bench-${size}`,
    runner: { tickMs, electionTicks, snapshotEntries: 50_000, compactionKeepEntries: 5_000 },
  })
  try {
    const leader = await waitFor(() => currentLeader(members), 30_000, 'a leader')
    await latency(leader, 20) // warm up streams and JIT
    const latencies = await latency(leader, 300)
    const smallEntriesPerSecond = await throughput(leader, 100, 4096, durationMs)
    const largeEntriesPerSecond = await throughput(leader, 1 << 20, 8, durationMs)
    const failoverMs = size > 1 ? await failover(members) : undefined
    return {
      members: size,
      smallEntriesPerSecond,
      largeMiBPerSecond: largeEntriesPerSecond,
      latencyP50Ms: percentile(latencies, 50),
      latencyP99Ms: percentile(latencies, 99),
      failoverMs,
    }
  } finally {
    await stopRaftCluster(members)
    rmSync(directory, { recursive: true, force: true })
  }
}

const results: Figures[] = []
for (const size of sizes) {
  process.stderr.write(`measuring a ${size}-member group...\n`)
  results.push(await measure(size))
}
const ceiling = results.find((figures) => figures.members === 1)
const ratio = (value: number, base: number | undefined) =>
  base ? ` (${((100 * value) / base).toFixed(0)}%)` : ''
console.log(
  `Raft over libp2p loopback, durable store, tick ${tickMs} ms, election timeout ` +
    `${electionTicks * tickMs}-${2 * electionTicks * tickMs} ms, ${durationMs} ms per throughput run`,
)
console.log('members | 100 B entries/s | 1 MiB entries MiB/s | p50 commit ms | p99 commit ms | failover ms')
for (const figures of results) {
  const label = figures.members === 1 ? '1 (ceiling: one node, same store)' : String(figures.members)
  const share = (value: number, base: number | undefined) => (figures.members > 1 ? ratio(value, base) : '')
  console.log(
    [
      label,
      figures.smallEntriesPerSecond.toFixed(0) +
        share(figures.smallEntriesPerSecond, ceiling?.smallEntriesPerSecond),
      figures.largeMiBPerSecond.toFixed(1) + share(figures.largeMiBPerSecond, ceiling?.largeMiBPerSecond),
      figures.latencyP50Ms.toFixed(2),
      figures.latencyP99Ms.toFixed(2),
      figures.failoverMs === undefined ? '-' : figures.failoverMs.toFixed(0),
    ].join(' | '),
  )
}
