// Inference tasks in the network simulator, decided by the real quorum code the daemon's inference
// coordinator runs (protocols/inference/quorum.ts, called as node/tasks/infer-coordinator.ts calls
// it): `planShards` splits the input, `choosePeers` picks R distinct replicas per shard among the
// submitter's connected peers (best score first), every replica's answer is gathered, `vote` accepts
// a majority, asks for re-runs elsewhere or fails the shard, and `scoreChanges`/`applyScores` keep
// the submitter's peer scores (agreeing +1, outlier -5, failed -1) across its tasks.
//
// The model served is DerivedParameters.inferenceModel: the MNIST MLP, in a gpt simulation too (the
// network serves no GPT, so its GPT tasks are training tasks only). The model is not run (kernel
// work is modelled by time): an honest replica answers the shard's true logits, bit-identical within
// its backend class and shifted by a few 1e-5 across classes (as float32 reassociation on another
// backend does, well inside LOGIT_TOLERANCE); a lying peer answers the same wrong logits as every
// other liar (each row's top class moved, the colluding worst case: liars agree with each other). A
// replica whose peer crashed, left or was cut off before it answered counts as failed. A submitter's
// connected peers are its DHT routing-table entries that are up and reachable (libp2p keeps
// connections to its routing table).
import {
  agree,
  applyScores,
  choosePeers,
  LOGIT_TOLERANCE,
  planShards,
  type ReplicaResult,
  type ShardRange,
  scoreChanges,
  vote,
} from '../../protocols/inference/quorum.js'
import { SeededRandom } from '../../protocols/raft/random.js'
import { assert } from '../../protocols/raft/types.js'
import type { DhtModel } from './dht.js'
import { Histogram } from './histogram.js'
import { peerName, peerRow } from './lifecycle.js'
import { STREAM_RETRANSMIT_MS } from './links.js'
import { modelBytes } from './model.js'
import type { DerivedParameters } from './parameters.js'
import { BACKEND_CLASSES, type PeerTable } from './peers.js'

/** Most inference tasks one run may create (each keeps a few numbers for the report). */
export const INFERENCE_TASKS_MAX = 1_000_000
/** Request framing, and one logit. */
export const INFER_REQUEST_BYTES = 300
export const INFER_LOGIT_BYTES = 4
/** How much a liar raises the logit of the class after each row's true top class. */
export const LIE_SHIFT = 10
/** Cross-backend deviation of honest logits by backend class (relative; LOGIT_TOLERANCE is 1e-3). */
export const BACKEND_CLASS_DEVIATION = [0, 2e-5, -3e-5] as const

export interface InferenceHost {
  readonly peers: PeerTable
  readonly dht: DhtModel
  readonly random: SeededRandom
  readonly parameters: DerivedParameters
  nowMs(): number
  reachable(from: number, to: number): boolean
  latencyMs(from: number, to: number): number
  /** A live peer chosen at random, or -1 when none is up. */
  randomUpPeer(): number
  /** Schedules `answer(task, shard, peer)` at `atMs`. */
  scheduleAnswer(atMs: number, task: number, shard: number, peer: number): void
}

interface ShardState {
  range: ShardRange
  truth: Float32Array
  asked: Set<string>
  results: ReplicaResult[]
  failed: string[]
  outstanding: number
  decided: boolean
}

interface InferenceTaskState {
  id: number
  submitter: number
  startedAtMs: number
  shards: ShardState[] | undefined
  open: number
}

export class InferenceWorkload {
  readonly counters = {
    tasks: 0,
    tasksCompleted: 0,
    tasksFailed: 0,
    /** The submitter crashed or left before its task finished. */
    tasksInterrupted: 0,
    shards: 0,
    shardsAccepted: 0,
    /** Accepted with every result agreeing. */
    shardsUnanimous: 0,
    shardsFailed: 0,
    runs: 0,
    runsFailed: 0,
    /** Runs beyond the R first replicas of a shard. */
    reruns: 0,
    votes: 0,
    /** Votes that found answers but no majority (and asked for more replicas). */
    votesWithoutMajority: 0,
    lyingResults: 0,
    /** Lying results the accepted vote named as outliers. */
    lyingResultsCaught: 0,
    /** Lying results in the agreeing set of an accepted vote (the lie won). */
    lyingResultsAccepted: 0,
    honestOutliers: 0,
    /** Shards whose accepted logits are not the true ones. */
    wrongAccepted: 0,
    /** ... although honest results were more than half of those gathered: must stay 0. */
    wrongAcceptedWithHonestMajority: 0,
  }
  readonly completionMs = new Histogram(50, 2400)
  private readonly tasks: InferenceTaskState[] = []
  /** Each submitter's peer scores, shared by its tasks (as one daemon's InferCoordinator keeps them). */
  private readonly scores = new Map<number, Map<string, number>>()
  private readonly host: InferenceHost

  constructor(host: InferenceHost) {
    this.host = host
  }

  /** Peers the submitter is connected to: its routing-table entries that are up and reachable. */
  private candidates(submitter: number): string[] {
    const table = this.host.dht.tables[submitter]
    if (!table) return []
    const out: string[] = []
    for (const peer of table)
      if (peer !== submitter && this.host.reachable(submitter, peer)) out.push(peerName(peer))
    return out
  }

  /** Starts one inference task from a random live peer. */
  start(): void {
    const host = this.host
    const p = host.parameters
    const submitter = host.randomUpPeer()
    if (submitter < 0) return
    const id = this.tasks.length
    assert(id < INFERENCE_TASKS_MAX, `more than ${INFERENCE_TASKS_MAX} inference tasks in one run`)
    const shardCount = p.inferenceShardsMin + host.random.int(p.inferenceShardsMax - p.inferenceShardsMin + 1)
    const truthSeed = host.random.next32()
    const ranges = planShards(p.inferenceRows, shardCount)
    const task: InferenceTaskState = {
      id,
      submitter,
      startedAtMs: host.nowMs(),
      shards: ranges.map((range) => ({
        range,
        truth: truthLogits(truthSeed, range, p.inferenceClasses),
        asked: new Set<string>(),
        results: [],
        failed: [],
        outstanding: 0,
        decided: false,
      })),
      open: ranges.length,
    }
    this.tasks.push(task)
    this.counters.tasks++
    this.counters.shards += ranges.length
    for (const shard of task.shards ?? []) {
      if (!this.dispatch(task, shard, p.inferenceReplicas)) return
    }
  }

  /** Runs `count` more replicas of a shard; false when the task failed for want of peers. */
  private dispatch(task: InferenceTaskState, shard: ShardState, count: number): boolean {
    const host = this.host
    const p = host.parameters
    const submitter = task.submitter
    const peers = choosePeers(this.candidates(submitter), {
      count,
      exclude: shard.asked,
      scores: this.scores.get(submitter),
      shard: shard.range.index,
    })
    if (peers.length === 0) {
      // the daemon throws 'no peer is available' here; a vote said 'run' only with peers available
      this.finishTask(task, 'failed')
      return false
    }
    if (shard.asked.size >= p.inferenceReplicas) this.counters.reruns += peers.length
    const rows = shard.range.end - shard.range.start
    const served = p.inferenceModel
    const now = host.nowMs()
    const peersTable = host.peers
    for (const name of peers) {
      const peer = peerRow(name)
      shard.asked.add(name)
      shard.outstanding++
      this.counters.runs++
      // request, then the model and the input rows from the submitter's uplink, then the kernel,
      // then the answer
      const inputBytes = INFER_REQUEST_BYTES + modelBytes(served) + rows * served.inputRowBytes
      peersTable.countSent(submitter, inputBytes)
      peersTable.countReceived(peer, inputBytes)
      const start = Math.max(now, peersTable.uplinkFreeAtMs[submitter])
      const sent = start + inputBytes / peersTable.uploadBytesPerMs[submitter]
      peersTable.uplinkFreeAtMs[submitter] = sent
      let at = sent + host.latencyMs(submitter, peer) + this.retransmitMs()
      at += rows * served.inference.rowMsByBackend[peersTable.backend[peer]] * peersTable.slowFactor[peer]
      const answerBytes = INFER_REQUEST_BYTES + rows * p.inferenceClasses * INFER_LOGIT_BYTES
      peersTable.countSent(peer, answerBytes)
      peersTable.countReceived(submitter, answerBytes)
      at +=
        answerBytes / peersTable.uploadBytesPerMs[peer] +
        host.latencyMs(peer, submitter) +
        this.retransmitMs()
      host.scheduleAnswer(at, task.id, shard.range.index, peer)
    }
    return true
  }

  private retransmitMs(): number {
    let delay = 0
    while (this.host.random.chance(this.host.parameters.lossProbability)) delay += STREAM_RETRANSMIT_MS
    return delay
  }

  /** A replica's answer (or its failure) reaches the submitter. */
  answer(taskId: number, shardIndex: number, peer: number): void {
    const host = this.host
    const p = host.parameters
    const task = this.tasks[taskId]
    if (!task.shards) return
    const shard = task.shards[shardIndex]
    if (!host.peers.isUp(task.submitter)) {
      this.finishTask(task, 'interrupted')
      return
    }
    shard.outstanding--
    const name = peerName(peer)
    if (host.reachable(peer, task.submitter)) {
      const byzantine = host.peers.byzantine[peer] === 1
      if (byzantine) this.counters.lyingResults++
      const backend = host.peers.backend[peer]
      shard.results.push({
        peer: name,
        backendClass: BACKEND_CLASSES[backend],
        logits: byzantine ? lieLogits(shard.truth, p.inferenceClasses) : honestLogits(shard.truth, backend),
      })
    } else {
      this.counters.runsFailed++
      shard.failed.push(name)
    }
    if (shard.outstanding > 0) return
    const expectedLength = (shard.range.end - shard.range.start) * p.inferenceClasses
    const available = this.candidates(task.submitter).filter(
      (candidate) => !shard.asked.has(candidate),
    ).length
    const decision = vote({
      replicas: p.inferenceReplicas,
      expectedLength,
      results: shard.results,
      runs: shard.results.length + shard.failed.length,
      available,
    })
    this.counters.votes++
    if (decision.kind === 'run') {
      if (shard.results.length > 0) this.counters.votesWithoutMajority++
      this.dispatch(task, shard, decision.count)
      return
    }
    const scores = this.scores.get(task.submitter) ?? new Map<string, number>()
    this.scores.set(task.submitter, applyScores(scores, scoreChanges(decision, shard.failed)))
    shard.decided = true
    if (decision.kind === 'fail') {
      this.counters.shardsFailed++
      this.finishTask(task, 'failed')
      return
    }
    this.counters.shardsAccepted++
    if (decision.outliers.length === 0) this.counters.shardsUnanimous++
    const liar = (peerId: string) => host.peers.byzantine[peerRow(peerId)] === 1
    for (const peerId of decision.outliers) {
      if (liar(peerId)) this.counters.lyingResultsCaught++
      else this.counters.honestOutliers++
    }
    for (const peerId of decision.agreeing) if (liar(peerId)) this.counters.lyingResultsAccepted++
    const truth: ReplicaResult = { peer: '', backendClass: 'truth', logits: shard.truth }
    const accepted: ReplicaResult = { peer: '', backendClass: 'accepted', logits: decision.logits }
    if (!agree(truth, accepted, LOGIT_TOLERANCE)) {
      this.counters.wrongAccepted++
      const honest = shard.results.filter((r) => !liar(r.peer)).length
      if (honest * 2 > shard.results.length) this.counters.wrongAcceptedWithHonestMajority++
    }
    if (--task.open === 0) this.finishTask(task, 'completed')
  }

  private finishTask(task: InferenceTaskState, outcome: 'completed' | 'failed' | 'interrupted'): void {
    if (!task.shards) return
    task.shards = undefined
    if (outcome === 'completed') {
      this.counters.tasksCompleted++
      this.completionMs.add(this.host.nowMs() - task.startedAtMs)
    } else if (outcome === 'failed') this.counters.tasksFailed++
    else this.counters.tasksInterrupted++
  }

  /** When each task still under way began, in ms (at the end of a run: those the run cut short). */
  openTaskStartsMs(): number[] {
    return this.tasks.filter((task) => task.shards !== undefined).map((task) => task.startedAtMs)
  }

  /** Mean score the submitters hold of honest and of lying peers (over every score entry). */
  scoreMeans(): { honest: number; lying: number } {
    let honestSum = 0
    let honestCount = 0
    let lyingSum = 0
    let lyingCount = 0
    for (const table of this.scores.values()) {
      for (const [name, score] of table) {
        if (this.host.peers.byzantine[peerRow(name)] === 1) {
          lyingSum += score
          lyingCount++
        } else {
          honestSum += score
          honestCount++
        }
      }
    }
    return {
      honest: honestCount === 0 ? 0 : honestSum / honestCount,
      lying: lyingCount === 0 ? 0 : lyingSum / lyingCount,
    }
  }
}

/** The shard's true logits: rows x classes values in [-5, 5) from the task's seed. */
export function truthLogits(seed: number, range: ShardRange, classes: number): Float32Array {
  const random = new SeededRandom(seed ^ Math.imul(range.index + 1, 0x9e3779b1))
  const logits = new Float32Array((range.end - range.start) * classes)
  for (let i = 0; i < logits.length; i++) logits[i] = random.float() * 10 - 5
  return logits
}

/** What an honest replica of `backend` class answers: the truth, deviated as that class computes it. */
export function honestLogits(truth: Float32Array, backend: number): Float32Array {
  const deviation = BACKEND_CLASS_DEVIATION[backend]
  if (deviation === 0) return truth
  const out = new Float32Array(truth.length)
  for (let i = 0; i < truth.length; i++) out[i] = truth[i] + deviation * (1 + Math.abs(truth[i]))
  return out
}

/** What every liar answers: each row's next class after the true top one raised by LIE_SHIFT. */
export function lieLogits(truth: Float32Array, classes: number): Float32Array {
  const out = Float32Array.from(truth)
  for (let row = 0; row < truth.length / classes; row++) {
    let best = 0
    for (let c = 1; c < classes; c++) if (truth[row * classes + c] > truth[row * classes + best]) best = c
    out[row * classes + ((best + 1) % classes)] += LIE_SHIFT
  }
  return out
}
