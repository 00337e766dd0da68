// The task side of a daemon: the claims protocol, the submitter's coordinator and the worker, wired
// to the node's libp2p host (gossip, blocks, raft and gradient services) and its data dir. Every node
// is both: it coordinates the tasks its user submits and works on other nodes' tasks.

import { join } from 'node:path'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { Backend } from '../../kernels/backend.js'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { type ClaimPart, type ClaimReply, ClaimsProtocol } from '../../protocols/tasks/claims.js'
import type { TaskGossip } from '../../protocols/tasks/index.js'
import type { GroupMemberComponents } from '../../protocols/training/types.js'
import { openCapabilityBackend } from '../executor/backend-probe.js'
import type { NodeCapability } from '../executor/capability.js'
import type { ReputationBook } from '../reputation.js'
import type { FileBlockStore } from '../store/block-store.js'
import { Coordinator } from './coordinator.js'
import { InferCoordinator } from './infer-coordinator.js'
import { InferWorker, type InferWorkerInit } from './infer-executor.js'
import { taskFolders } from './records.js'
import { type TrainExecutorInit, trainExecutor } from './train-executor.js'
import { type AnyTaskExecutor, Worker } from './worker.js'

const log = logger('shardnet:tasks')

export interface TaskServiceInit {
  host: Pick<Libp2p, 'peerId' | 'handle' | 'unhandle' | 'dialProtocol' | 'getPeers'> & {
    services: {
      pubsub: GossipSub
      tasks: TaskGossip
      blocks: BlockExchange
    } & Pick<GroupMemberComponents, 'raft' | 'gradients'>
  }
  dataDir: string
  blockStore: FileBlockStore
  capability: NodeCapability
  /** @default the backend and cpu engine the capability names (webgpu falls back to cpu) */
  openBackend?: () => Promise<Backend>
  /** extra executors (e.g. inference); training is always there */
  executors?: AnyTaskExecutor[]
  /** test tuning */
  stallMs?: number
  reannounceMs?: number
  progressIntervalMs?: number
  trainRaft?: TrainExecutorInit['raft']
  /** how this node's inference worker computes a shard's logits. @default predictLogits */
  inferPredict?: InferWorkerInit['predict']
  /** this node's record of its peers (node/reputation.ts), used to staff and to choose replicas */
  reputation?: ReputationBook
  /** who may work for this node and whose tasks it claims (node config), and the claim staffing timeout */
  policy?: { allowedWorkers?: string[]; allowedSubmitters?: string[]; claimTimeoutMs?: number }
}

export class TaskService {
  readonly coordinator: Coordinator
  readonly worker: Worker
  readonly claims: ClaimsProtocol
  readonly inference: InferCoordinator
  readonly inferWorker: InferWorker
  readonly reputation: ReputationBook | undefined
  private readonly peerId: PeerId
  /** peers this node knows to subscribe to the task topic (gossip reaches them) */
  readonly topicPeers: () => number

  constructor(init: TaskServiceInit) {
    const host = init.host
    this.peerId = host.peerId
    this.topicPeers = () => host.services.pubsub.getSubscribers(host.services.tasks.topic).length
    const folders = taskFolders(init.dataDir)
    this.reputation = init.reputation
    const openBackend = init.openBackend ?? (() => openCapabilityBackend(init.capability))
    this.claims = new ClaimsProtocol({
      host: {
        handle: (protocol, handler, options) => host.handle(protocol, handler, options),
        unhandle: (protocol) => host.unhandle(protocol),
        dialProtocol: (peer, protocol, options) => host.dialProtocol(peer, protocol, options),
      },
      handler: (from, request) => this.dispatch(from, request),
      isKnown: (peer) => this.coordinator.knows(peer) || this.worker.knows(peer),
    })
    this.inference = new InferCoordinator({
      peerId: host.peerId,
      host,
      blocks: host.services.blocks,
      recordsFolder: join(folders.submitted, 'inference'),
      resultsFolder: folders.results,
      ...(init.reputation ? { reputation: init.reputation } : {}),
    })
    this.inferWorker = new InferWorker({
      host,
      blocks: host.services.blocks,
      openBackend,
      predict: init.inferPredict,
      capability: init.capability,
    })
    this.coordinator = new Coordinator({
      inference: this.inference,
      peerId: host.peerId,
      claims: this.claims,
      blocks: host.services.blocks,
      blockStore: init.blockStore,
      gossip: host.services.tasks,
      topicPeers: this.topicPeers,
      recordsFolder: folders.submitted,
      resultsFolder: folders.results,
      openBackend,
      stallMs: init.stallMs,
      reannounceMs: init.reannounceMs,
      reputation: init.reputation,
      allowedWorkers: new Set(init.policy?.allowedWorkers ?? []),
    })
    this.worker = new Worker({
      peerId: host.peerId,
      claims: this.claims,
      blocks: host.services.blocks,
      gossip: host.services.tasks,
      capability: init.capability,
      assignedFolder: folders.assigned,
      workFolder: folders.raft,
      openBackend,
      progressIntervalMs: init.progressIntervalMs,
      claimTimeoutMs: init.policy?.claimTimeoutMs,
      allowedSubmitters: new Set(init.policy?.allowedSubmitters ?? []),
      executors: [
        trainExecutor({
          components: { peerId: host.peerId, raft: host.services.raft, gradients: host.services.gradients },
          raft: init.trainRaft,
        }),
        ...(init.executors ?? []),
      ],
    })
  }

  async start(): Promise<void> {
    // records first: a request that arrives as soon as the protocol is up finds its task
    await this.coordinator.start()
    await this.inference.start()
    await this.claims.start()
    await this.inferWorker.start()
    await this.worker.start()
    log('task service started on %p', this.peerId)
  }

  async stop(): Promise<void> {
    await this.worker.stop()
    await this.coordinator.stop()
    await this.inferWorker.stop()
    await this.inference.stop()
    await this.claims.stop()
  }

  /** Claims and progress go to this node as a submitter; assignments, outer rounds, cancels as a worker. */
  private async dispatch(from: PeerId, request: ClaimPart): Promise<ClaimReply> {
    switch (request.type) {
      case 'claim':
      case 'progress':
        return this.coordinator.handle(from, request)
      case 'assignment':
      case 'outer':
      case 'cancel':
      case 'challenge':
        return this.worker.handle(from, request)
    }
  }
}
