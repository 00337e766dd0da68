// The composition root: a running node. Opens the data dir (identity, datastore, block store),
// measures its backends (or reads their cached figures) and picks one, builds the libp2p host with
// the protocols, starts the parts (the bootstrap dialer of node/bootstrap.ts, the capability
// advertiser of node/capability-advertiser.ts, the span server of node/serving/span-host.ts and the
// models it serves (node/serving/served-models.ts), the task service of node/tasks/service.ts, the
// network generation of node/serving/network-serving.ts) and serves the control API (the routes of
// node/api/node-routes.ts, tasks.ts, serving-routes.ts, openai.ts and generate-routes.ts). Every part it
// starts goes on one cleanup stack, unwound in reverse order when a later step of start-up fails and
// when the daemon stops.
import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { Backend } from '../kernels/backend.js'
import { BLOCKS_PROTOCOL, type BlockExchange, blockExchange } from '../protocols/blocks/index.js'
import {
  type Capability,
  type CapabilityDiscovery,
  type CapabilityDiscoveryInit,
  capabilityDiscovery,
  shardnetDhtSelectors,
  shardnetDhtValidators,
} from '../protocols/discovery/index.js'
import { type RaftTransport, raftTransport } from '../protocols/raft/transport.js'
import {
  TASKS_TOPIC,
  type TaskGossip,
  type TaskGossipInit,
  taskGossip,
  taskTopicScoreParams,
} from '../protocols/tasks/index.js'
import { type GradientExchange, gradientExchange } from '../protocols/training/exchange.js'
import { generateRoutes } from './api/generate-routes.js'
import { createNodeMetrics, type NodeMetrics, type RefusalTotals } from './api/metrics.js'
import { type ApiNode, type NodeStatus, nodeApiRoutes } from './api/node-routes.js'
import { openAiRoutes } from './api/openai.js'
import { ApiError, type ApiServer, startApiServer } from './api/server.js'
import { servingRoutes } from './api/serving-routes.js'
import { taskApiRoutes } from './api/tasks.js'
import { loadOrCreateApiTokens } from './api/token.js'
import { BootstrapDialer, dialRememberedPeers } from './bootstrap.js'
import { CapabilityAdvertiser } from './capability-advertiser.js'
import type { NodeConfig } from './config.js'
import { openCapabilityBackend, probedCapability } from './executor/backend-probe.js'
import type { CapabilityProbe, NodeCapability } from './executor/capability.js'
import { createHost, dhtRoutingTableSize, inboundRefusals, readSwarmKey, type ShardnetHost } from './host.js'
import { listPeers, type PeerEntry } from './peers.js'
import { REPUTATION_FILE, ReputationBook } from './reputation.js'
import {
  createNetworkServing,
  type NetworkServing,
  type NetworkServingOptions,
} from './serving/network-serving.js'
import { SERVING_STATE_FILE, ServedModels, type ServedModelsInit } from './serving/served-models.js'
import { SpanHost, type SpanHostInit } from './serving/span-host.js'
import { writeFileAtomic } from './store/atomic-file.js'
import { FileBlockStore } from './store/block-store.js'
import {
  type DataDirPaths,
  dataDirPaths,
  ensureDataDir,
  removeStaleTemporaryFiles,
} from './store/data-dir.js'
import { openDatastore } from './store/datastore.js'
import { loadOrCreateIdentity } from './store/identity.js'
import { findStorageFault } from './store/storage-fault.js'
import { TaskService, type TaskServiceInit } from './tasks/service.js'

const log = logger('shardnet:daemon')

/** The folder of the data dir where models fetched by id are kept (node/serving/model-package.ts). */
export const MODEL_CACHE_FOLDER = 'models'

/** The protocol services a shardnet node runs on top of the core libp2p services. */
export interface ProtocolServices extends Record<string, unknown> {
  discovery: CapabilityDiscovery
  tasks: TaskGossip
  blocks: BlockExchange
  raft: RaftTransport
  gradients: GradientExchange
}

export type NodeHost = ShardnetHost<ProtocolServices>

/**
 * How a node measures itself when the caller does not say: every backend timed through the kernels
 * the executors run (cached per machine in the data dir), computing on the fastest or the pinned one.
 */
export function defaultCapabilityProbe(config: NodeConfig): CapabilityProbe {
  return probedCapability({
    dataDir: config.dataDir,
    pins: {
      backend: config.backend,
      ...(config.cpuEngine === undefined ? {} : { cpuEngine: config.cpuEngine }),
    },
  })
}

/** The version every node reports; read once from package.json. */
export function shardnetVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}

export interface DaemonInit {
  config: NodeConfig
  /**
   * how this node measures what it can compute; the daemon measures once at start-up
   * @default defaultCapabilityProbe(config)
   */
  capabilityProbe?: CapabilityProbe
  /**
   * gossipsub's IP-colocation penalty; only tests and local demo networks turn it off
   * @default true
   */
  ipColocationPenalty?: boolean
  /** @default DHT_INITIAL_QUERY_SELF_INTERVAL_MS_DEFAULT (node/host.ts) */
  dhtInitialQuerySelfIntervalMs?: number
  /**
   * register libp2p's metrics in this node's registry. prometheus-metrics keeps a process-wide
   * table of metric objects, so in a process with many nodes only one should have it on.
   * @default true
   */
  libp2pMetrics?: boolean
  /**
   * how often bootstrap peers that are not connected are dialled again
   * @default BOOTSTRAP_REDIAL_INTERVAL_MS_DEFAULT (node/bootstrap.ts)
   */
  bootstrapRedialIntervalMs?: number
  /** capability discovery settings (record refresh interval and lifetime) */
  discovery?: CapabilityDiscoveryInit
  /** task gossip settings */
  tasks?: TaskGossipInit
  /**
   * how long to wait between attempts to publish the capability record while the DHT has no peers,
   * and how often to check whether the network grew enough to publish again
   * @default ADVERTISE_RETRY_MS_DEFAULT (node/capability-advertiser.ts)
   */
  advertiseRetryMs?: number
  /** span server tuning (tests): its limits, the load-time measure, and the adversary's hook */
  spanHost?: Pick<SpanHostInit, 'limits' | 'measureSteps' | 'transformOutput'>
  /** serving tuning (tests): how long the placement and a model id's package lookup wait */
  served?: Pick<ServedModelsInit, 'placementLookupMs' | 'packageFetchTimeoutMs' | 'startRetryMs'>
  /** network generation tuning (tests): timeouts, failovers, verification tolerance */
  networkServing?: NetworkServingOptions
  /** task service tuning (tests) */
  taskService?: Pick<
    TaskServiceInit,
    | 'stallMs'
    | 'reannounceMs'
    | 'progressIntervalMs'
    | 'trainRaft'
    | 'executors'
    | 'openBackend'
    | 'inferPredict'
  >
}

/** What every part of a node refused, by reason, for /metrics (`shardnet_refused_total`). */
function refusalTotals(
  host: NodeHost | undefined,
  tasks: TaskService | undefined,
  spans: SpanHost | undefined,
): RefusalTotals[] {
  const totals: RefusalTotals[] = []
  const add = (source: string, refused: Record<string, number> | undefined) => {
    if (refused !== undefined) totals.push({ source, refused })
  }
  if (host !== undefined) {
    add('inbound-connection', inboundRefusals(host) as Record<string, number> | undefined)
    add('gossip', host.services.tasks.counters().rejected)
    add('capability-record', host.services.discovery.counters().rejected)
    add('blocks', host.services.blocks.counters().rejected)
  }
  if (tasks !== undefined) {
    add('claim', tasks.claims.rejected)
    add('claim-budget', tasks.claims.budgets.refused)
    add('infer', tasks.inferWorker.rejected)
    add('infer-budget', tasks.inferWorker.budgets.refused)
  }
  if (spans !== undefined) {
    const counters = spans.counters()
    add('span', counters.refused)
    add('span-budget', counters.budgets)
  }
  return totals
}

/** api.json: how the CLI finds a running daemon's API (the token is in its own 0600 file). */
export interface ApiEndpointFile {
  url: string
  pid: number
  peerId: string
}

/** What start-up opened, each with what closing it is called in the log; closed in reverse order. */
class CleanupStack {
  private readonly steps: Array<{ what: string; close: () => Promise<void> | void }> = []

  push(what: string, close: () => Promise<void> | void): void {
    this.steps.push({ what, close })
  }

  /** Closes everything, newest first; a step that fails is logged and the others still run. */
  async unwind(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.close()
      } catch (error) {
        log.error('%s failed: %e', step.what, error)
      }
    }
  }
}

/** A running node; `Daemon.start` builds one from its config. */
export class Daemon implements ApiNode {
  readonly paths: DataDirPaths
  readonly config: NodeConfig
  readonly host: NodeHost
  readonly blockStore: FileBlockStore
  readonly capability: NodeCapability
  readonly metrics: NodeMetrics
  readonly api: ApiServer
  readonly tasks: TaskService
  /** the compute backend the served spans and the network generation's ends run on */
  readonly backend: Backend
  /** the spans of models' blocks this node serves over /shardnet/span/1.0.0 */
  readonly spans: SpanHost
  /** what this node was asked to serve (`shardnet node serve`, the config's `serve`), with their states */
  readonly served: ServedModels
  /** generation through a chain of span servers (the API's /v1/generate and OpenAI routes) */
  readonly serving: NetworkServing
  readonly startedAtMs: number
  /** resolves once the daemon has stopped (after `stop()` or an API stop request) */
  readonly stopped: Promise<void>

  private readonly cleanups: CleanupStack
  private stopping: Promise<void> | undefined
  private readonly resolveStopped: () => void

  private constructor(parts: {
    paths: DataDirPaths
    config: NodeConfig
    host: NodeHost
    blockStore: FileBlockStore
    capability: NodeCapability
    metrics: NodeMetrics
    api: ApiServer
    tasks: TaskService
    backend: Backend
    spans: SpanHost
    served: ServedModels
    serving: NetworkServing
    startedAtMs: number
    cleanups: CleanupStack
  }) {
    this.paths = parts.paths
    this.config = parts.config
    this.host = parts.host
    this.blockStore = parts.blockStore
    this.capability = parts.capability
    this.metrics = parts.metrics
    this.api = parts.api
    this.tasks = parts.tasks
    this.backend = parts.backend
    this.spans = parts.spans
    this.served = parts.served
    this.serving = parts.serving
    this.startedAtMs = parts.startedAtMs
    this.cleanups = parts.cleanups
    let resolveStopped!: () => void
    this.stopped = new Promise<void>((resolve) => {
      resolveStopped = resolve
    })
    this.resolveStopped = resolveStopped
  }

  get peerId(): PeerId {
    return this.host.peerId
  }

  get blocks(): BlockExchange {
    return this.host.services.blocks
  }

  /** Starts a node from its config. Everything it opened is closed again if a later step fails. */
  static async start(init: DaemonInit): Promise<Daemon> {
    const startedAtMs = Date.now()
    const config = init.config
    const paths = dataDirPaths(config.dataDir)
    await ensureDataDir(paths)
    // a bad swarm key is the user's typo: refuse it before touching anything
    const swarmKey = config.swarmKeyFile != null ? await readSwarmKey(config.swarmKeyFile) : undefined

    const cleanups = new CleanupStack()
    try {
      // the datastore's lock makes this process the data dir's only owner; only then is it safe to
      // clean up after a crash and to create the identity and the token
      const datastore = await openDatastore(paths.datastore)
      cleanups.push('closing the datastore', () => datastore.close())
      await removeStaleTemporaryFiles(paths.root)
      await removeStaleTemporaryFiles(paths.blocks)
      const { privateKey, created } = await loadOrCreateIdentity(paths.identityKey)
      const tokens = await loadOrCreateApiTokens(paths.apiToken, paths.apiReadToken)
      const capability = await (init.capabilityProbe ?? defaultCapabilityProbe(config)).measure()
      log(
        'backend %s%s (%s), %d GFLOP/s, %s; probe %s in %d ms',
        capability.backend,
        capability.cpuEngine === undefined ? '' : `/${capability.cpuEngine}`,
        capability.adapterName,
        capability.matmulGflops,
        capability.chosenBy ?? 'given',
        capability.probe?.source ?? 'given',
        Math.round((capability.probe?.seconds ?? 0) * 1000),
      )
      const blockStore = new FileBlockStore({ folder: paths.blocks })

      let host: NodeHost | undefined
      let spans: SpanHost | undefined
      let tasks: TaskService | undefined
      const metrics = createNodeMetrics({
        startedAtMs,
        peerCount: () => host?.getPeers().length ?? 0,
        dhtRoutingTableSize: () => dhtRoutingTableSize(host),
        backend: () => capability,
        gossip: () => {
          const gossip = host?.services.tasks
          if (gossip == null) return []
          const counters = gossip.counters()
          return [{ topic: gossip.topic, accepted: counters.accepted, rejected: counters.rejected }]
        },
        refusals: () => refusalTotals(host, tasks, spans),
        spans: () => spans?.counters(),
        streams: () => {
          const blocks = host?.services.blocks
          if (blocks == null) return []
          const counters = blocks.counters()
          return [
            {
              protocol: BLOCKS_PROTOCOL,
              sentBytes: counters.bytesSent,
              receivedBytes: counters.bytesReceived,
            },
          ]
        },
      })
      host = await createHost<ProtocolServices>({
        privateKey,
        listen: config.listen,
        announce: config.announce,
        configuredPeers: config.bootstrap,
        datastore,
        swarmKey,
        metricsRegistry: init.libp2pMetrics === false ? undefined : metrics.registry,
        ipColocationPenalty: init.ipColocationPenalty,
        dhtInitialQuerySelfIntervalMs: init.dhtInitialQuerySelfIntervalMs,
        maxConnections: config.maxConnections,
        dhtValidators: shardnetDhtValidators(),
        dhtSelectors: shardnetDhtSelectors(),
        gossipScoreParams: { topics: { [TASKS_TOPIC]: taskTopicScoreParams() } },
        services: {
          discovery: capabilityDiscovery(init.discovery),
          tasks: taskGossip(init.tasks),
          blocks: blockExchange({ store: blockStore }),
          raft: raftTransport(),
          gradients: gradientExchange(),
        },
      })
      const startedHost = host
      await startedHost.start()
      cleanups.push('stopping libp2p', () => startedHost.stop())
      log(
        'peer %s (%s identity) listening on %s',
        host.peerId,
        created ? 'new' : 'existing',
        host
          .getMultiaddrs()
          .map((address) => address.toString())
          .join(' '),
      )

      // a restarted node rejoins through the peers it remembers (the peer store is in LevelDB), so
      // losing the bootstrap node, or starting without --bootstrap, does not strand it
      void dialRememberedPeers(host)

      const bootstrapDialer = new BootstrapDialer(host, {
        addresses: config.bootstrap,
        redialIntervalMs: init.bootstrapRedialIntervalMs,
      })
      bootstrapDialer.start()
      cleanups.push('stopping the bootstrap dialer', () => bootstrapDialer.stop())
      // the served spans and the network generation's ends compute on the backend the probe chose
      const backend = await openCapabilityBackend(capability)
      cleanups.push('releasing the compute backend', () => backend.destroy())
      spans = new SpanHost({ host, backend, ...init.spanHost })
      await spans.start()
      cleanups.push('stopping the span server', () => spans.stop())
      const advertiser = new CapabilityAdvertiser(
        {
          discovery: host.services.discovery,
          routingTableSize: () => dhtRoutingTableSize(startedHost),
          spans: () =>
            spans.spans().map(({ model, start, end, blocks, tokensPerSecond }) => ({
              model,
              start,
              end,
              blocks,
              tokensPerSecond,
            })),
        },
        { capability, retryMs: init.advertiseRetryMs },
      )
      const unsubscribe = spans.onChange(() => advertiser.spansChanged())
      advertiser.start()
      cleanups.push('stopping the capability advertiser', () => {
        unsubscribe()
        advertiser.stop()
      })

      const reputation = await ReputationBook.open(join(paths.root, REPUTATION_FILE))
      cleanups.push('writing the reputation book', () => reputation.flush())
      tasks = new TaskService({
        host,
        dataDir: paths.root,
        blockStore,
        capability,
        reputation,
        policy: {
          allowedWorkers: config.allowedWorkers,
          allowedSubmitters: config.allowedSubmitters,
          claimTimeoutMs: config.claimTimeoutMs,
        },
        ...init.taskService,
      })
      await tasks.start()
      cleanups.push('stopping the task service', () => tasks.stop())

      const modelCacheDir = join(paths.root, MODEL_CACHE_FOLDER)
      const discovery = host.services.discovery
      const findServers: ServedModelsInit['findServers'] = (model, options) =>
        discovery.findServers(model, options)
      const serving = createNetworkServing({
        host,
        findServers,
        blocks: host.services.blocks,
        spans,
        reputation,
        backend,
        modelCacheDir,
        ...(init.networkServing === undefined ? {} : { options: init.networkServing }),
      })
      cleanups.push('ending the network generations', () => serving.close())
      const served = new ServedModels({
        spans,
        blocks: host.services.blocks,
        findServers,
        selfPeerId: host.peerId.toString(),
        cacheRoot: modelCacheDir,
        stateFile: join(paths.root, SERVING_STATE_FILE),
        memoryBytes: config.serveMemoryBytes,
        routingTableSize: () => dhtRoutingTableSize(startedHost),
        ...init.served,
      })
      await served.start(config.serve)
      cleanups.push('stopping the serve requests in progress', () => served.stop())

      let daemon: Daemon | undefined
      const api = await startApiServer({
        host: config.apiHost,
        port: config.apiPort,
        token: tokens.admin,
        readToken: tokens.read,
        allowRemoteClients: config.allowRemoteApi,
        metrics,
        routes: [
          ...nodeApiRoutes(() => {
            if (daemon == null) throw new ApiError(503, 'the daemon is still starting')
            return daemon
          }),
          ...taskApiRoutes(() => tasks),
          ...servingRoutes(() => served),
          ...openAiRoutes(() => serving),
          ...generateRoutes(() => serving),
        ],
      })
      cleanups.push('closing the API', () => api.close())
      daemon = new Daemon({
        paths,
        config,
        host,
        blockStore,
        capability,
        metrics,
        api,
        tasks,
        backend,
        spans,
        served,
        serving,
        startedAtMs,
        cleanups,
      })
      const endpoint: ApiEndpointFile = { url: api.url, pid: process.pid, peerId: host.peerId.toString() }
      await writeFileAtomic(paths.apiEndpoint, `${JSON.stringify(endpoint)}\n`, 0o600)
      log('control API on %s', api.url)
      return daemon
    } catch (error) {
      await cleanups.unwind()
      // a full or read-only disk found during start-up: one sentence (which path, what to do)
      throw findStorageFault(error) ?? error
    }
  }

  /** Multiaddrs other nodes can dial, each ending in /p2p/<our peer id>. */
  addresses(): string[] {
    return this.host.getMultiaddrs().map((address) => address.toString())
  }

  status(): NodeStatus {
    return {
      peerId: this.peerId.toString(),
      addresses: this.addresses(),
      capability: this.capability,
      peers: this.host.getPeers().length,
      dhtRoutingTablePeers: dhtRoutingTableSize(this.host),
      uptimeSeconds: (Date.now() - this.startedAtMs) / 1000,
      version: shardnetVersion(),
      dataDir: this.paths.root,
      apiUrl: this.api.url,
      privateNetwork: this.config.swarmKeyFile != null,
      counters: {
        tasks: this.host.services.tasks.counters(),
        blocks: this.host.services.blocks.counters(),
        discovery: this.host.services.discovery.counters(),
      },
      serving: { spans: this.spans.spans(), counters: this.spans.counters() },
    }
  }

  /** Peers this node knows (node/peers.ts); with `capability`, the workers that offer it. */
  peers(options: { capability?: Capability; signal?: AbortSignal } = {}): Promise<PeerEntry[]> {
    return listPeers(this.host, options)
  }

  /** Stops everything start-up opened, newest first, and closes the data dir; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      log('stopping')
      await this.cleanups.unwind()
      await rm(this.paths.apiEndpoint, { force: true })
      log('stopped')
      this.resolveStopped()
    })()
    return this.stopping
  }
}
