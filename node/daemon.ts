import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { LevelDatastore } from 'datastore-level'
import { CID } from 'multiformats/cid'
import { createBackend } from '../kernels/index.js'
import {
  BLOCKS_PROTOCOL,
  type BlockExchange,
  BlockNotFoundError,
  blockExchange,
} from '../protocols/blocks/index.js'
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
import { createNodeMetrics, type NodeMetrics } from './api/metrics.js'
import { ApiError, type ApiRoute, type ApiServer, startApiServer } from './api/server.js'
import { taskApiRoutes } from './api/tasks.js'
import { loadOrCreateApiToken } from './api/token.js'
import type { NodeConfig } from './config.js'
import { backendProbe, type CapabilityProbe, type NodeCapability } from './executor/capability.js'
import { createHost, readSwarmKey, type ShardnetHost } from './host.js'
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
import { TaskService, type TaskServiceInit } from './tasks/service.js'

const log = logger('shardnet:daemon')

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
 * How a node measures itself when the caller does not say: a matmul timed through whichever backend
 * createBackend opens for the configured preference (webgpu, or cpu with its fallback reason).
 */
export function defaultCapabilityProbe(config: NodeConfig): CapabilityProbe {
  // the backend the node will compute on (webgpu falls back to cpu, saying why), timed through the
  // same kernels the executor runs
  return backendProbe({ openBackend: () => createBackend({ prefer: config.backend }) })
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
   * @default backendProbe over createBackend({ prefer: config.backend })
   */
  capabilityProbe?: CapabilityProbe
  /**
   * gossipsub's IP-colocation penalty; only tests and local demo networks turn it off
   * @default true
   */
  ipColocationPenalty?: boolean
  /** @default 1000 */
  dhtInitialQuerySelfIntervalMs?: number
  /**
   * register libp2p's metrics in this node's registry. prometheus-metrics keeps a process-wide
   * table of metric objects, so in a process with many nodes only one should have it on.
   * @default true
   */
  libp2pMetrics?: boolean
  /**
   * how often bootstrap peers that are not connected are dialled again
   * @default 2000
   */
  bootstrapRedialIntervalMs?: number
  /** capability discovery settings (record refresh interval and lifetime) */
  discovery?: CapabilityDiscoveryInit
  /** task gossip settings */
  tasks?: TaskGossipInit
  /**
   * how long to wait between attempts to publish the capability record while the DHT has no peers,
   * and how often to check whether the network grew enough to publish again
   * @default 2000
   */
  advertiseRetryMs?: number
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

/** What `shardnet node status` shows. */
export interface NodeStatus {
  peerId: string
  addresses: string[]
  capability: NodeCapability
  peers: number
  dhtRoutingTablePeers: number
  uptimeSeconds: number
  version: string
  dataDir: string
  apiUrl: string
  privateNetwork: boolean
  /** what the protocols counted since start: gossip accepted/rejected, blocks moved, records published */
  counters: {
    tasks: ReturnType<TaskGossip['counters']>
    blocks: ReturnType<BlockExchange['counters']>
    discovery: ReturnType<CapabilityDiscovery['counters']>
  }
}

/** One peer as `shardnet node peers` lists it. */
export interface PeerEntry {
  peerId: string
  addresses: string[]
  connected: boolean
  /** where we learned of it: an open connection, the DHT routing table, a capability record */
  source: 'connection' | 'dht' | 'capability-record'
  capability?: {
    backend: string
    adapterName: string
    gflops: number
    maxBufferBytes: number
  }
}

/** api.json: how the CLI finds a running daemon's API (the token is in its own 0600 file). */
export interface ApiEndpointFile {
  url: string
  pid: number
  peerId: string
}

/** The bounded loop that keeps us connected to bootstrap peers (libp2p's bootstrap dials once). */
class BootstrapDialer {
  private timer: NodeJS.Timeout | undefined
  private running = false
  private readonly controller = new AbortController()
  private static readonly addressesMax = 64
  private static readonly dialTimeoutMs = 10_000

  constructor(
    private readonly host: NodeHost,
    private readonly addresses: string[],
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.addresses.length === 0) return
    if (this.addresses.length > BootstrapDialer.addressesMax) {
      log(
        'only the first %d of %d bootstrap addresses are used',
        BootstrapDialer.addressesMax,
        this.addresses.length,
      )
    }
    void this.round()
  }

  stop(): void {
    this.controller.abort()
    clearTimeout(this.timer)
  }

  private async round(): Promise<void> {
    if (this.running || this.controller.signal.aborted) return
    this.running = true
    const self = this.host.peerId.toString()
    const targets = this.addresses.slice(0, BootstrapDialer.addressesMax).map((text) => multiaddr(text))
    await Promise.all(
      targets.map(async (target) => {
        const peer = target.getComponents().findLast((component) => component.name === 'p2p')?.value
        if (peer === self) return
        if (peer != null && this.host.getConnections().some((c) => c.remotePeer.toString() === peer)) return
        try {
          await this.host.dial(target, {
            signal: AbortSignal.any([
              this.controller.signal,
              AbortSignal.timeout(BootstrapDialer.dialTimeoutMs),
            ]),
          })
          log('connected to bootstrap peer %s', target.toString())
        } catch (error) {
          if (!this.controller.signal.aborted) {
            log('bootstrap dial %s failed: %s', target.toString(), (error as Error).message)
          }
        }
      }),
    )
    this.running = false
    if (!this.controller.signal.aborted) {
      this.timer = setTimeout(() => void this.round(), this.intervalMs)
      this.timer.unref()
    }
  }
}

/** how many remembered peers a starting node dials, and how long each dial may take */
const REMEMBERED_PEERS_DIALED_MAX = 16
const REMEMBERED_PEER_DIAL_TIMEOUT_MS = 10_000

async function dialRememberedPeers(host: NodeHost): Promise<void> {
  let peers: Awaited<ReturnType<NodeHost['peerStore']['all']>>
  try {
    peers = await host.peerStore.all({
      filters: [(peer) => peer.addresses.length > 0 && !peer.id.equals(host.peerId)],
      limit: REMEMBERED_PEERS_DIALED_MAX,
    })
  } catch (error) {
    log('reading remembered peers failed: %s', (error as Error).message)
    return
  }
  if (peers.length > 0) log('dialling %d remembered peers', peers.length)
  await Promise.all(
    peers.map(async (peer) => {
      try {
        await host.dial(peer.id, { signal: AbortSignal.timeout(REMEMBERED_PEER_DIAL_TIMEOUT_MS) })
      } catch {
        // gone or moved: the DHT and the bootstrap peers are the other ways back in
      }
    }),
  )
}

/**
 * Publishes this node's capability record and provider entry, retrying while the DHT has no peers,
 * and publishing again when the routing table has doubled since the last publication: a record put
 * into a network of two nodes sits on those two only, so the first nodes of a network would stay
 * hard to find until the discovery service's periodic refresh (minutes) otherwise.
 */
class CapabilityAdvertiser {
  private timer: NodeJS.Timeout | undefined
  private readonly controller = new AbortController()
  private publishedAtPeers = 0
  private lastAttemptMs = 0
  private busy = false

  constructor(
    private readonly host: NodeHost,
    private readonly capability: NodeCapability,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.schedule(0)
  }

  stop(): void {
    this.controller.abort()
    clearTimeout(this.timer)
  }

  private schedule(delayMs: number): void {
    if (this.controller.signal.aborted) return
    this.timer = setTimeout(() => void this.tick(), delayMs)
    this.timer.unref()
  }

  private async tick(): Promise<void> {
    if (this.busy) return
    const peers = dhtRoutingTableSize(this.host)
    const due =
      peers > 0 &&
      (this.publishedAtPeers === 0 || peers >= 2 * this.publishedAtPeers) &&
      Date.now() - this.lastAttemptMs >= this.intervalMs
    if (due) {
      this.busy = true
      this.lastAttemptMs = Date.now()
      try {
        await this.host.services.discovery.advertise(
          {
            capability: this.capability.backend,
            adapterName: this.capability.adapterName,
            maxBufferBytes: this.capability.maxBufferBytes,
            gflops: this.capability.matmulGflops,
          },
          { signal: this.controller.signal },
        )
        this.publishedAtPeers = peers
        log('advertised %s capability to a network of %d DHT peers', this.capability.backend, peers)
      } catch (error) {
        if (!this.controller.signal.aborted)
          log('advertising the capability failed, will retry: %s', (error as Error).message)
      } finally {
        this.busy = false
      }
    }
    this.schedule(this.intervalMs)
  }
}

/**
 * The composition root: a running node. Opens the data dir (identity, datastore, block store),
 * measures the backend, builds the libp2p host with the protocols, keeps bootstrap peers connected
 * and serves the control API.
 */
export class Daemon {
  readonly paths: DataDirPaths
  readonly config: NodeConfig
  readonly host: NodeHost
  readonly blockStore: FileBlockStore
  readonly capability: NodeCapability
  readonly metrics: NodeMetrics
  readonly api: ApiServer
  readonly tasks: TaskService
  readonly startedAtMs: number
  /** resolves once the daemon has stopped (after `stop()` or an API stop request) */
  readonly stopped: Promise<void>

  private readonly datastore: LevelDatastore
  private readonly bootstrapDialer: BootstrapDialer
  private readonly advertiser: CapabilityAdvertiser
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
    startedAtMs: number
    datastore: LevelDatastore
    bootstrapDialer: BootstrapDialer
    advertiser: CapabilityAdvertiser
  }) {
    this.paths = parts.paths
    this.config = parts.config
    this.host = parts.host
    this.blockStore = parts.blockStore
    this.capability = parts.capability
    this.metrics = parts.metrics
    this.api = parts.api
    this.tasks = parts.tasks
    this.startedAtMs = parts.startedAtMs
    this.datastore = parts.datastore
    this.bootstrapDialer = parts.bootstrapDialer
    this.advertiser = parts.advertiser
    let resolveStopped!: () => void
    this.stopped = new Promise<void>((resolve) => {
      resolveStopped = resolve
    })
    this.resolveStopped = resolveStopped
  }

  get peerId(): PeerId {
    return this.host.peerId
  }

  /** Starts a node from its config. Everything it opened is closed again if a later step fails. */
  static async start(init: DaemonInit): Promise<Daemon> {
    const startedAtMs = Date.now()
    const config = init.config
    const paths = dataDirPaths(config.dataDir)
    await ensureDataDir(paths)
    // a bad swarm key is the user's typo: refuse it before touching anything
    const swarmKey = config.swarmKeyFile != null ? await readSwarmKey(config.swarmKeyFile) : undefined

    const cleanups: Array<() => Promise<void>> = []
    const undo = async (): Promise<void> => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
    }
    try {
      // the datastore's lock makes this process the data dir's only owner; only then is it safe to
      // clean up after a crash and to create the identity and the token
      const datastore = await openDatastore(paths.datastore)
      cleanups.push(() => datastore.close())
      await removeStaleTemporaryFiles(paths.root)
      await removeStaleTemporaryFiles(paths.blocks)
      const { privateKey, created } = await loadOrCreateIdentity(paths.identityKey)
      const token = await loadOrCreateApiToken(paths.apiToken)
      const capability = await (init.capabilityProbe ?? defaultCapabilityProbe(config)).measure()
      log('backend %s (%s), %d GFLOP/s', capability.backend, capability.adapterName, capability.matmulGflops)
      const blockStore = new FileBlockStore({ folder: paths.blocks })

      let host: NodeHost | undefined
      const metrics = createNodeMetrics({
        startedAtMs,
        peerCount: () => host?.getPeers().length ?? 0,
        dhtRoutingTableSize: () => dhtRoutingTableSize(host),
        backend: () => capability,
        gossip: () => {
          const tasks = host?.services.tasks
          if (tasks == null) return []
          const counters = tasks.counters()
          return [{ topic: tasks.topic, accepted: counters.accepted, rejected: counters.rejected }]
        },
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
      cleanups.push(async () => startedHost.stop())
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

      const bootstrapDialer = new BootstrapDialer(
        host,
        config.bootstrap,
        init.bootstrapRedialIntervalMs ?? 2000,
      )
      bootstrapDialer.start()
      cleanups.push(async () => bootstrapDialer.stop())
      const advertiser = new CapabilityAdvertiser(host, capability, init.advertiseRetryMs ?? 2000)
      advertiser.start()
      cleanups.push(async () => advertiser.stop())

      const tasks = new TaskService({
        host,
        dataDir: paths.root,
        blockStore,
        capability,
        ...init.taskService,
      })
      await tasks.start()
      cleanups.push(() => tasks.stop())

      let daemon: Daemon | undefined
      const api = await startApiServer({
        host: config.apiHost,
        port: config.apiPort,
        token,
        allowRemoteClients: config.allowRemoteApi,
        metrics,
        routes: [
          ...apiRoutes(() => {
            if (daemon == null) throw new ApiError(503, 'the daemon is still starting')
            return daemon
          }),
          ...taskApiRoutes(() => tasks),
        ],
      })
      cleanups.push(() => api.close())
      daemon = new Daemon({
        paths,
        config,
        host,
        blockStore,
        capability,
        metrics,
        api,
        tasks,
        startedAtMs,
        datastore,
        bootstrapDialer,
        advertiser,
      })
      const endpoint: ApiEndpointFile = { url: api.url, pid: process.pid, peerId: host.peerId.toString() }
      await writeFileAtomic(paths.apiEndpoint, `${JSON.stringify(endpoint)}\n`, 0o600)
      log('control API on %s', api.url)
      return daemon
    } catch (error) {
      await undo()
      throw error
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
    }
  }

  /**
   * Peers this node knows: with `capability`, the workers whose verified capability records the DHT
   * returns for it; without, open connections and the DHT routing table too, each with its capability
   * record when one was found. This node itself is not listed.
   */
  async peers(options: { capability?: Capability; signal?: AbortSignal } = {}): Promise<PeerEntry[]> {
    const self = this.peerId.toString()
    const signal = options.signal ?? AbortSignal.timeout(PEER_LOOKUP_TIMEOUT_MS)
    const connected = new Set(this.host.getPeers().map((peer) => peer.toString()))
    const entries = new Map<string, PeerEntry>()
    const addressesOf = async (peerId: PeerId): Promise<string[]> => {
      try {
        const peer = await this.host.peerStore.get(peerId)
        return peer.addresses.map((address) => address.multiaddr.toString())
      } catch {
        return []
      }
    }
    const capabilities: Capability[] = options.capability != null ? [options.capability] : ['webgpu', 'cpu']
    await Promise.all(
      capabilities.map(async (capability) => {
        try {
          for await (const worker of this.host.services.discovery.findWorkers(capability, {
            limit: FIND_WORKERS_LIMIT,
            signal,
          })) {
            const key = worker.peerId.toString()
            if (key === self) continue
            const record = worker.record
            entries.set(key, {
              peerId: key,
              addresses: record.addresses,
              connected: connected.has(key),
              source: 'capability-record',
              capability: {
                backend: record.capability,
                adapterName: record.adapterName,
                gflops: record.gflops,
                maxBufferBytes: record.maxBufferBytes,
              },
            })
          }
        } catch (error) {
          // a lookup cut short by its deadline still lists what it found
          if (!signal.aborted) throw error
        }
      }),
    )
    if (options.capability == null) {
      for (const peerId of this.host.getPeers()) {
        const key = peerId.toString()
        if (!entries.has(key)) {
          entries.set(key, {
            peerId: key,
            addresses: await addressesOf(peerId),
            connected: true,
            source: 'connection',
          })
        }
      }
      for (const peerId of dhtRoutingTablePeers(this.host)) {
        const key = peerId.toString()
        if (!entries.has(key)) {
          entries.set(key, {
            peerId: key,
            addresses: await addressesOf(peerId),
            connected: connected.has(key),
            source: 'dht',
          })
        }
      }
    }
    return [...entries.values()].sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /** Stops everything and closes the data dir; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      log('stopping')
      await this.api.close().catch((error: unknown) => log.error('closing the API failed: %e', error))
      this.bootstrapDialer.stop()
      this.advertiser.stop()
      await this.tasks
        .stop()
        .catch((error: unknown) => log.error('stopping the task service failed: %e', error))
      try {
        await this.host.stop()
      } catch (error) {
        log.error('stopping libp2p failed: %e', error)
      }
      await this.datastore
        .close()
        .catch((error: unknown) => log.error('closing the datastore failed: %e', error))
      await rm(this.paths.apiEndpoint, { force: true })
      log('stopped')
      this.resolveStopped()
    })()
    return this.stopping
  }
}

interface RoutingTableView {
  routingTable?: { size: number; kb?: { toIterable(): Iterable<{ peerId: PeerId }> } }
}

function dhtRoutingTableSize(host: NodeHost | undefined): number {
  return (host?.services.dht as unknown as RoutingTableView | undefined)?.routingTable?.size ?? 0
}

function dhtRoutingTablePeers(host: NodeHost): PeerId[] {
  const table = (host.services.dht as unknown as RoutingTableView).routingTable
  if (table?.kb == null) return []
  return [...table.kb.toIterable()].map((contact) => contact.peerId)
}

/** bounds on one `peers` request */
const PEER_LOOKUP_TIMEOUT_MS = 20_000
const FIND_WORKERS_LIMIT = 1_000

function apiRoutes(daemonOf: () => Daemon): ApiRoute[] {
  return [
    { method: 'GET', path: '/v1/status', handle: async () => daemonOf().status() },
    {
      method: 'GET',
      path: '/v1/peers',
      handle: async ({ url, signal }) => {
        const capability = url.searchParams.get('capability')
        if (capability != null && capability !== 'webgpu' && capability !== 'cpu') {
          throw new ApiError(400, `unknown capability "${capability}" (expected webgpu or cpu)`)
        }
        const lookup = AbortSignal.any([signal, AbortSignal.timeout(PEER_LOOKUP_TIMEOUT_MS)])
        return { peers: await daemonOf().peers({ capability: capability ?? undefined, signal: lookup }) }
      },
    },
    {
      method: 'POST',
      path: '/v1/blocks',
      handle: async ({ body, signal }) => {
        const data = (body as { data?: unknown } | undefined)?.data
        if (typeof data !== 'string') throw new ApiError(400, 'expected {"data": "<base64>"}')
        const cid = await daemonOf().host.services.blocks.put(Buffer.from(data, 'base64'), { signal })
        return { cid: cid.toString() }
      },
    },
    {
      method: 'GET',
      path: '/v1/blocks',
      handle: async ({ url, signal }) => {
        let cid: CID
        try {
          cid = CID.parse(url.searchParams.get('cid') ?? '')
        } catch {
          throw new ApiError(400, 'expected ?cid=<a CID>')
        }
        try {
          const bytes = await daemonOf().host.services.blocks.get(cid, { signal })
          return { cid: cid.toString(), data: Buffer.from(bytes).toString('base64') }
        } catch (error) {
          if (error instanceof BlockNotFoundError) throw new ApiError(404, `block ${cid} was not found`)
          throw error
        }
      },
    },
    {
      method: 'POST',
      path: '/v1/stop',
      handle: async () => {
        // answer first, then stop: the client gets its reply before the API closes
        setTimeout(() => void daemonOf().stop(), 50)
        return { stopping: true }
      },
    },
  ]
}
