// One group member in its own worker thread for bench/consensus.ts (--threads): its own event loop,
// libp2p node, Raft store and cpu backend, as on a separate machine. The parent sends `start` with
// the run's options, gets `ready` with this node's id and addresses, sends `peers`, then hears
// `step` events and one `finished`.
import { mlpTrainingModel } from '../kernels/models/mlp-kind.js'
import '../node/polyfill.js'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parentPort } from 'node:worker_threads'
import { multiaddr } from '@multiformats/multiaddr'
import { loadMnist } from '../kernels/data/mnist.js'
import { CpuBackend } from '../kernels/index.js'
import { DurableRaftStorage } from '../node/store/raft-storage.js'
import { MemoryStorage, type RaftStorage } from '../protocols/raft/storage.js'
import { startGroupMember } from '../protocols/training/group.js'
import type { AggregateRule, Compression } from '../protocols/training/types.js'
import { createTrainingNode, datasetShard, delayRaftFrames } from '../test/integration/training-cluster.js'

export interface MemberStart {
  type: 'start'
  groupId: string
  hidden: number
  seed: number
  batchSize: number
  learningRate: number
  steps: number
  compression: Compression
  storage: 'durable' | 'memory'
  directory: string
  speculate: boolean
  /** one-way network latency to model, ms: see withLatency */
  latencyMs: number
  aggregate: AggregateRule
  /** GroupMemberInit.verifyEntries: check every entry, and share every gradient with every member */
  verifyEntries: boolean
}

/** What a member reports when it has applied every step. */
export interface MemberFinished {
  type: 'finished'
  digest: string
  params: Float32Array
  gradientBytesSent: number
  /** gradient bytes shared with the other members (to check entries) */
  gradientBytesShared: number
  raftBytesSent: number
  isLeader: boolean
  /** this member's own thread (its event loop), per step from its first applied step on */
  threadCpuMsPerStep: number
  stepsPrecomputed: number
  gradientsAhead: number
  speculationsWasted: number
  gradientsReceivedAhead: number
  entriesChecked: number
  entriesRefused: number
  gradientsFetched: number
  badSignatures: number
  /** peers this member distrusts at the end */
  distrusted: number
}

/** CPU time of this thread in ms (Linux: /proc/thread-self/stat, 10 ms ticks), or NaN elsewhere. */
function threadCpuMs(): number {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8')
    // fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return Number.NaN
  }
}

/**
 * Models a network of `ms` one-way latency on loopback (where netem is not available): every Raft
 * frame this member sends (delayRaftFrames), and each gradient it sends and the leader's answer, is
 * handed over `ms` later.
 */
function withLatency(node: Awaited<ReturnType<typeof createTrainingNode>>, ms: number): void {
  if (ms <= 0) return
  delayRaftFrames(node.services.raft, ms)
  const gradients = node.services.gradients
  const sendGradient = gradients.sendGradient.bind(gradients)
  const later = () => new Promise((resolve) => setTimeout(resolve, ms))
  gradients.sendGradient = async (...args) => {
    await later()
    const answer = await sendGradient(...args)
    await later()
    return answer
  }
}

const port = parentPort
if (!port) throw new Error('consensus-member.ts runs as a worker thread')

port.once('message', async (start: MemberStart) => {
  const data = await loadMnist()
  const node = await createTrainingNode()
  withLatency(node, start.latencyMs)
  port.postMessage({
    type: 'ready',
    id: node.peerId.toString(),
    addresses: node.getMultiaddrs().map((address) => address.toString()),
  })
  const peers: Array<{ id: string; addresses: string[] }> = await new Promise((resolve) =>
    port.once('message', (message: { peers: Array<{ id: string; addresses: string[] }> }) =>
      resolve(message.peers),
    ),
  )
  const self = node.peerId.toString()
  for (const peer of peers) {
    if (peer.id !== self && peer.id > self)
      await node.dial(peer.addresses.map((address) => multiaddr(address)))
  }
  let storage: RaftStorage
  let close = () => {}
  if (start.storage === 'memory') storage = new MemoryStorage()
  else {
    const directory = join(start.directory, self)
    mkdirSync(directory, { recursive: true })
    const durable = DurableRaftStorage.open(directory)
    storage = durable
    close = () => durable.close()
  }
  const backend = new CpuBackend()
  const member = startGroupMember({
    components: { peerId: node.peerId, raft: node.services.raft, gradients: node.services.gradients },
    groupId: start.groupId,
    members: peers.map((peer) => peer.id),
    model: mlpTrainingModel(
      { inputSize: 784, hiddenSizes: [start.hidden], outputSize: 10 },
      datasetShard(data.train, 1, 0, start.seed),
    ),
    seed: start.seed,
    batchSize: start.batchSize,
    learningRate: start.learningRate,
    steps: start.steps,
    compression: start.compression,
    speculate: start.speculate,
    aggregate: start.aggregate,
    verifyEntries: start.verifyEntries,
    storage,
    backend,
  })
  let cpuAtFirstStep = Number.NaN
  let firstStep = 0
  member.on('step', (event) => {
    if (Number.isNaN(cpuAtFirstStep)) {
      cpuAtFirstStep = threadCpuMs()
      firstStep = event.step + 1
    }
    port.postMessage({ type: 'step', step: event.step, at: performance.timeOrigin + performance.now() })
  })
  const finished = await member.finished()
  const status = member.status()
  // let the others finish applying before this member goes away
  const report: MemberFinished = {
    type: 'finished',
    digest: finished.digest,
    params: finished.params,
    gradientBytesSent: status.gradientBytesSent,
    gradientBytesShared: status.gradientBytesShared,
    raftBytesSent: node.services.raft.stats.bytesSent,
    isLeader: status.isLeader,
    threadCpuMsPerStep: (threadCpuMs() - cpuAtFirstStep) / (start.steps - firstStep),
    stepsPrecomputed: status.stepsPrecomputed,
    gradientsAhead: status.gradientsAhead,
    speculationsWasted: status.speculationsWasted,
    gradientsReceivedAhead: status.gradientsReceivedAhead,
    entriesChecked: status.entriesChecked,
    entriesRefused: status.entriesRefused,
    gradientsFetched: status.gradientsFetched,
    badSignatures: status.badSignatures,
    distrusted: status.distrusted.length,
  }
  port.postMessage(report)
  await new Promise((resolve) => port.once('message', resolve))
  member.stop()
  await node.stop()
  close()
  backend.destroy()
  port.close()
})
