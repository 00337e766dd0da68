// Real training groups for integration tests and bench/consensus.ts: each member is its own libp2p
// node (TCP on 127.0.0.1, noise, yamux) with the raft transport and the gradient exchange, a
// DurableRaftStorage in a temp directory and a group member on a shared backend. No daemon.

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Backend } from '../../kernels/backend.js'
import type { Dataset } from '../../kernels/data/mnist.js'
import { shardIndices } from '../../kernels/data/sharding.js'
import type { TrainingShard } from '../../kernels/models/mlp-kind.js'
import { DurableRaftStorage } from '../../node/store/raft-storage.js'
import { shardnetTcp } from '../../node/tcp.js'
import { MemoryStorage, type RaftStorage } from '../../protocols/raft/storage.js'
import { type RaftTransport, raftTransport } from '../../protocols/raft/transport.js'
import { type GradientExchange, gradientExchange } from '../../protocols/training/exchange.js'
import { type GroupMember, type GroupMemberInit, startGroupMember } from '../../protocols/training/group.js'

export type TrainingNode = Libp2p<{ raft: RaftTransport; gradients: GradientExchange }>

export interface ClusterMember {
  id: string
  index: number
  node: TrainingNode
  storage: RaftStorage
  member: GroupMember
  alive: boolean
  /** steps in the order this member applied them */
  appliedSteps: number[]
  /** stops member, node and store abruptly (as a crash would, minus the process) */
  kill(): Promise<void>
}

export async function createTrainingNode(): Promise<TrainingNode> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    services: { raft: raftTransport(), gradients: gradientExchange() },
  })
}

/** The samples of shard `index` of `count` of a dataset, as the float32 arrays a group takes. */
export function datasetShard(dataset: Dataset, count: number, index: number, seed: number): TrainingShard {
  const indices = shardIndices(dataset.count, count, index, seed)
  const size = dataset.images.length / dataset.count
  const inputs = new Float32Array(indices.length * size)
  const labels = new Float32Array(indices.length)
  indices.forEach((sample, row) => {
    inputs.set(dataset.images.subarray(sample * size, (sample + 1) * size), row * size)
    labels[row] = dataset.labels[sample]
  })
  return { inputs, labels }
}

export type MemberOptions = Omit<GroupMemberInit, 'components' | 'members' | 'storage' | 'backend'>

export interface TrainingClusterInit {
  size: number
  directory: string
  backend: Backend
  options: MemberOptions
  /**
   * 'durable': DurableRaftStorage (fsynced WAL) in `directory`, as the daemon runs; 'memory': the
   * reference in-memory Raft storage, for tests about results rather than durability.
   * @default 'durable'
   */
  storage?: 'durable' | 'memory'
  /** per member index: extra options (e.g. a fault) */
  perMember?: (index: number) => Partial<GroupMemberInit>
  /** every member's Raft frames reach the network this many ms late (delayRaftFrames) @default 0 */
  raftDelayMs?: number
}

/**
 * Models network latency on loopback (netem is not available here): every Raft frame `raft` sends is
 * handed over `ms` later. Timers of one delay fire in order, so the frames keep their order.
 */
export function delayRaftFrames(raft: RaftTransport, ms: number): void {
  if (ms <= 0) return
  const send = raft.send.bind(raft)
  raft.send = (group, messages) => {
    setTimeout(() => send(group, messages), ms)
  }
}

export async function startTrainingCluster(init: TrainingClusterInit): Promise<ClusterMember[]> {
  const nodes = await Promise.all(Array.from({ length: init.size }, () => createTrainingNode()))
  for (const a of nodes) {
    for (const b of nodes) {
      if (a !== b && a.getConnections(b.peerId).length === 0) await a.dial(b.getMultiaddrs())
    }
  }
  const ids = nodes.map((node) => node.peerId.toString())
  for (const node of nodes) delayRaftFrames(node.services.raft, init.raftDelayMs ?? 0)
  return nodes.map((node, index) => {
    const id = ids[index]
    let storage: RaftStorage
    let close = () => {}
    if (init.storage === 'memory') storage = new MemoryStorage()
    else {
      const directory = join(init.directory, init.options.groupId.replaceAll('/', '_'), id)
      mkdirSync(directory, { recursive: true })
      const durable = DurableRaftStorage.open(directory)
      storage = durable
      close = () => durable.close()
    }
    const member = startGroupMember({
      ...init.options,
      components: { peerId: node.peerId, raft: node.services.raft, gradients: node.services.gradients },
      members: ids,
      storage,
      backend: init.backend,
      ...init.perMember?.(index),
    })
    const clusterMember: ClusterMember = {
      id,
      index,
      node,
      storage,
      member,
      alive: true,
      appliedSteps: [],
      async kill() {
        if (!clusterMember.alive) return
        clusterMember.alive = false
        member.stop()
        await node.stop()
        close()
      },
    }
    member.on('step', (event) => clusterMember.appliedSteps.push(event.step))
    return clusterMember
  })
}

export async function stopTrainingCluster(members: readonly ClusterMember[]): Promise<void> {
  await Promise.all(members.map((member) => member.kill()))
}

// the same polling helper the Raft cluster tests use
export { waitFor } from './raft-cluster.js'

export function leaderOf(members: readonly ClusterMember[]): ClusterMember | undefined {
  let best: ClusterMember | undefined
  for (const member of members) {
    if (!member.alive) continue
    const status = member.member.status()
    if (status.isLeader && (!best || status.raftTerm > best.member.status().raftTerm)) best = member
  }
  return best
}
