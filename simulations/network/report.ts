// Turns a finished simulation into report.json (every metric, no wall-clock figure, so the same seed
// gives the same bytes) and the SVG plots a person reads.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { K_BUCKET_SIZE } from './dht.js'
import type { Histogram } from './histogram.js'
import { REGIONS } from './links.js'
import { round3 } from './metrics.js'
import { describeParameters, SCENARIO_DESCRIPTIONS } from './parameters.js'
import { PeerState } from './peers.js'
import type { SimulationReportData } from './simulator.js'
import { barChart, lineChart, scatterChart } from './svg.js'

/** Points kept of the propagation CDF in the JSON (evenly thinned). */
const CDF_POINTS_MAX = 400

function quantiles(histogram: Histogram) {
  return {
    count: histogram.count,
    mean: round3(histogram.mean()),
    p50: histogram.quantile(0.5),
    p90: histogram.quantile(0.9),
    p99: histogram.quantile(0.99),
    max: round3(histogram.max),
  }
}

function sortedQuantiles(values: Float64Array) {
  if (values.length === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 }
  const sorted = Float64Array.from(values).sort()
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  let sum = 0
  for (const v of sorted) sum += v
  return {
    count: sorted.length,
    mean: round3(sum / sorted.length),
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted[sorted.length - 1],
  }
}

/** Counts of values in power-of-two bins [2^i, 2^(i+1)). */
function log2Bins(values: Float64Array): { label: string; value: number }[] {
  const counts = new Map<number, number>()
  let top = 0
  for (const v of values) {
    const bin = v < 1 ? -1 : Math.floor(Math.log2(v))
    counts.set(bin, (counts.get(bin) ?? 0) + 1)
    top = Math.max(top, bin)
  }
  const bins: { label: string; value: number }[] = []
  const label = (n: number) =>
    n >= 1e9 ? `${n / 1e9}G` : n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : `${n}`
  let first = top
  for (const key of counts.keys()) first = Math.min(first, key)
  for (let bin = first; bin <= top; bin++) {
    bins.push({ label: bin < 0 ? '0' : `≥${label(2 ** bin)}`, value: counts.get(bin) ?? 0 })
  }
  return bins
}

export interface NetworkReport {
  json: Record<string, unknown>
  svgs: Record<string, string>
  /** One-line human summary lines. */
  summary: string[]
}

export function buildReport(data: SimulationReportData): NetworkReport {
  const p = data.parameters
  const c = data.counters
  const inference = data.inference.counters
  const peers = data.peers
  const everJoined: number[] = []
  for (let peer = 0; peer < peers.count; peer++)
    if (peers.state[peer] !== PeerState.notJoined) everJoined.push(peer)
  const messages = Float64Array.from(
    everJoined,
    (peer) => peers.messagesSent[peer] + peers.messagesReceived[peer],
  )
  const bytes = Float64Array.from(everJoined, (peer) => peers.bytesSent[peer] + peers.bytesReceived[peer])
  const completions = data.tasks.filter((t) => t.completionS !== null)
  const completionValues = Float64Array.from(completions, (t) => t.completionS ?? 0)
  const cdf = data.propagation.cdf()
  const thin = Math.max(1, Math.ceil(cdf.length / CDF_POINTS_MAX))
  const cdfKept = cdf.filter((_, i) => i % thin === 0 || i === cdf.length - 1)
  const hops: Record<string, number> = {}
  for (let h = 0; h < data.lookupHops.bins; h++)
    if (data.lookupHops.counts[h] > 0) hops[h] = data.lookupHops.counts[h]
  const flashHops: Record<string, number> = {}
  for (let h = 0; h < data.flashLookupHops.bins; h++)
    if (data.flashLookupHops.counts[h] > 0) flashHops[h] = data.flashLookupHops.counts[h]
  const groupsByState: Record<string, number> = {}
  for (const group of data.groups) groupsByState[group.state] = (groupsByState[group.state] ?? 0) + 1
  const json = {
    seed: p.seed,
    scenario: { name: p.scenario, description: SCENARIO_DESCRIPTIONS[p.scenario] },
    parameters: p,
    replay: replayCommand(p),
    safety: data.violation
      ? { ok: false, checks: c.safetyChecks, violation: data.violation }
      : { ok: true, checks: c.safetyChecks },
    events: data.events,
    counters: c,
    gossip: {
      announcements: c.announcements,
      propagationMs: quantiles(data.propagation),
      propagationCdf: cdfKept,
      reachedShareMean: c.gossipUpSum === 0 ? 0 : round3(c.gossipReachedSum / c.gossipUpSum),
      reachedShareMin: round3(c.gossipReachedShareMin),
      duplicates: c.gossipDuplicates,
      lost: c.gossipLost,
      lazyDeliveries: c.gossipLazyDeliveries,
    },
    dht: {
      kBucketSize: K_BUCKET_SIZE,
      lookups: c.lookups,
      failed: c.lookupsFailed,
      hops,
      hopsMean: round3(data.lookupHops.mean()),
      hopsAfterFlashCrowd: p.flashCrowd
        ? { histogram: flashHops, mean: round3(data.flashLookupHops.mean()) }
        : undefined,
      latencyMs: quantiles(data.lookupLatency),
    },
    raft: {
      leaderElections: c.leaderElections,
      leaderChangesPerMinute: data.samples.map((s) => [s.atS, s.leaderChanges]),
      messagesSent: c.raftMessagesSent,
      messagesDropped: c.raftMessagesDropped,
    },
    training: {
      stepsCommitted: c.stepsCommitted,
      stepsPerMinute: data.samples.map((s) => [s.atS, s.stepsCommitted]),
      activeGroups: data.samples.map((s) => [s.atS, s.activeGroups]),
      stalledGroups: data.samples.map((s) => [s.atS, s.stalledGroups]),
      slotSteps: data.samples.map((s) => [s.atS, s.slotSteps]),
      gradientsRejected: c.gradientsRejected,
      byzantineGradientsAccepted: c.byzantineGradientsAccepted,
      byzantineGradientsAcceptedWithHonestMajority: c.byzantineGradientsAcceptedWithHonestMajority,
      byzantineGradientsRejected: c.byzantineGradientsRejected,
      groupsByState,
    },
    inference: {
      tasks: inference.tasks,
      completed: inference.tasksCompleted,
      failed: inference.tasksFailed,
      interrupted: inference.tasksInterrupted,
      completionMs: quantiles(data.inference.completionMs),
      shards: inference.shards,
      replicas: p.inferenceReplicas,
      runs: inference.runs,
      runsFailed: inference.runsFailed,
      reruns: inference.reruns,
      quorum: {
        votes: inference.votes,
        agreements: inference.shardsAccepted,
        unanimous: inference.shardsUnanimous,
        disagreements: inference.votesWithoutMajority,
        shardsFailed: inference.shardsFailed,
      },
      lying: {
        results: inference.lyingResults,
        caught: inference.lyingResultsCaught,
        accepted: inference.lyingResultsAccepted,
        honestOutliers: inference.honestOutliers,
        wrongShardsAccepted: inference.wrongAccepted,
        wrongShardsAcceptedWithHonestMajority: inference.wrongAcceptedWithHonestMajority,
      },
      meanScore: { honest: round3(data.inference.scores.honest), lying: round3(data.inference.scores.lying) },
    },
    tasks: {
      completed: c.tasksCompleted,
      abandoned: c.tasksAbandoned,
      completionS: sortedQuantiles(completionValues),
      list: data.tasks,
    },
    peers: {
      initial: p.peers,
      everJoined: everJoined.length,
      upOverTime: data.samples.map((s) => [s.atS, s.peersUp]),
      joins: c.joins,
      leaves: c.leaves,
      crashes: c.crashes,
      restarts: c.restarts,
    },
    traffic: {
      messagesPerPeer: sortedQuantiles(messages),
      bytesPerPeer: sortedQuantiles(bytes),
    },
    outage: p.regionalOutage ? { ...p.regionalOutage, groups: data.outageGroups } : undefined,
    groups: data.groups,
  }
  const minutes = (s: number) => round3(s / 60)
  const slots = data.samples.length > 0 ? data.samples[0].slotSteps.length : 0
  const svgs: Record<string, string> = {
    'gossip-propagation-cdf.svg': lineChart(
      {
        title: `Announcement propagation (${c.announcements} announcements, ${p.peers} peers)`,
        xLabel: 'time from publication to delivery (ms)',
        yLabel: 'share of deliveries',
        yMax: 1,
      },
      [{ name: '', points: cdf }],
      true,
    ),
    'dht-lookup-hops.svg': barChart(
      {
        title: `DHT lookup hops (${data.lookupHops.count} lookups, k=${K_BUCKET_SIZE})`,
        xLabel: 'hops',
        yLabel: 'lookups',
      },
      Array.from({ length: Math.max(1, Math.ceil(data.lookupHops.max) + 1) }, (_, h) => ({
        label: String(h),
        value: data.lookupHops.counts[h],
      })),
    ),
    'leader-changes.svg': lineChart(
      {
        title: 'Raft leader changes over time (all groups)',
        xLabel: 'simulated time (min)',
        yLabel: 'leader changes per minute',
      },
      [{ name: '', points: data.samples.map((s) => [minutes(s.atS), s.leaderChanges]) }],
    ),
    'training-progress.svg': lineChart(
      {
        title:
          `Training progress: steps committed per group slot ` +
          `(${Math.min(slots, p.groups)} of ${p.groups} slots)`,
        xLabel: 'simulated time (min)',
        yLabel: 'steps committed (cumulative)',
      },
      Array.from({ length: slots }, (_, slot) => ({
        name: `slot ${slot}`,
        points: [
          [0, 0] as [number, number],
          ...data.samples.map((s) => [minutes(s.atS), s.slotSteps[slot]] as [number, number]),
        ],
      })),
    ),
    'task-completion-vs-churn.svg': scatterChart(
      {
        title: `Task completion time vs churn (${completions.length} tasks, churn ${p.churnPerHour}/h)`,
        xLabel: 'churn events (crashes + leaves) among the task’s group members',
        yLabel: 'completion time (s)',
      },
      [
        {
          name: 'no reassignment',
          points: completions
            .filter((t) => t.reassignments === 0)
            .map((t) => [t.churnEventsInGroups, t.completionS ?? 0]),
        },
        {
          name: 'reassigned group',
          points: completions
            .filter((t) => t.reassignments > 0)
            .map((t) => [t.churnEventsInGroups, t.completionS ?? 0]),
        },
      ],
    ),
    'messages-per-peer.svg': barChart(
      {
        title: `Messages sent + received per peer (${everJoined.length} peers)`,
        xLabel: 'messages (power-of-two bins)',
        yLabel: 'peers',
      },
      log2Bins(messages),
    ),
    'bytes-per-peer.svg': barChart(
      {
        title: `Bytes sent + received per peer (${everJoined.length} peers)`,
        xLabel: 'bytes (power-of-two bins)',
        yLabel: 'peers',
      },
      log2Bins(bytes),
    ),
  }
  const summary = [
    `seed=${p.seed} scenario=${p.scenario}: ${data.events} events, safety ` +
      `${data.violation ? 'VIOLATED' : 'ok'} (${c.safetyChecks} checks)`,
    `gossip: ${c.announcements} announcements, delivery p50 ${json.gossip.propagationMs.p50} ms p99 ` +
      `${json.gossip.propagationMs.p99} ms, reached ${json.gossip.reachedShareMean} of live peers`,
    `dht: ${c.lookups} lookups, hops mean ${json.dht.hopsMean}, latency p50 ${json.dht.latencyMs.p50} ` +
      `ms, ${c.lookupsFailed} failed`,
    `raft: ${c.leaderElections} leader elections, ${c.stepsCommitted} steps committed, ` +
      `${c.groupsCompleted} groups completed, ${c.groupsReassigned} reassigned`,
    `tasks: ${c.tasksCompleted} completed (p50 ${json.tasks.completionS.p50} s), ${c.tasksAbandoned} ` +
      `abandoned; byzantine gradients accepted ${c.byzantineGradientsAccepted}, rejected ` +
      `${c.byzantineGradientsRejected}`,
    `inference: ${inference.tasksCompleted} of ${inference.tasks} tasks completed (p50 ` +
      `${json.inference.completionMs.p50} ms), ${inference.shardsAccepted} shards agreed ` +
      `(${inference.shardsUnanimous} unanimously), ${inference.votesWithoutMajority} votes without a ` +
      `majority, ${inference.reruns} re-runs; lying results ${inference.lyingResults}, caught ` +
      `${inference.lyingResultsCaught}, won ${inference.lyingResultsAccepted}`,
    `peers: ${c.joins} joins, ${c.leaves} leaves, ${c.crashes} crashes; messages per peer p50 ` +
      `${json.traffic.messagesPerPeer.p50}`,
  ]
  return { json, svgs, summary }
}

/** The CLI command that replays the run (the CLI trains a GPT at its default shape, the tiny preset). */
export function replayCommand(p: SimulationReportData['parameters']): string {
  const partitions = p.partitions
    .map((s) =>
      s.kind === 'region'
        ? `region:${REGIONS[s.region]}@${s.startMs}ms+${s.durationMs}ms`
        : `split:${s.share}@${s.startMs}ms+${s.durationMs}ms`,
    )
    .join(',')
  return (
    `shardnet sim --seed ${p.seed} --scenario ${p.scenario} --peers ${p.peers} --groups ${p.groups} ` +
    `--group-size ${p.groupSize} --churn ${p.churnPerHour} --loss ${p.lossProbability} ` +
    `--duration ${p.durationMs}ms --inference ${p.inferencePerHour} --model ${p.model.kind}` +
    (partitions ? ` --partition ${partitions}` : '')
  )
}

/** Serialises the report: stable key order (insertion order above), two-space indent, trailing newline. */
export function reportJsonText(report: NetworkReport): string {
  return `${JSON.stringify(report.json, null, 2)}\n`
}

export function writeReport(directory: string, report: NetworkReport): string[] {
  mkdirSync(directory, { recursive: true })
  const written: string[] = []
  const path = join(directory, 'report.json')
  writeFileSync(path, reportJsonText(report))
  written.push(path)
  for (const [name, svg] of Object.entries(report.svgs)) {
    const file = join(directory, name)
    writeFileSync(file, svg)
    written.push(file)
  }
  return written
}

export { describeParameters }
