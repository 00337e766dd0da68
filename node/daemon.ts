import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { LevelDatastore } from 'datastore-level'
import { createNodeMetrics, type NodeMetrics } from './api/metrics.js'
import { ApiError, type ApiRoute, type ApiServer, startApiServer } from './api/server.js'
import { loadOrCreateApiToken } from './api/token.js'
import type { NodeConfig } from './config.js'
import { type CapabilityProbe, type NodeCapability, plainCpuProbe } from './executor/capability.js'
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

const log = logger('shardnet:daemon')

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
   * @default plainCpuProbe()
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
    private readonly host: ShardnetHost,
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

/**
 * The composition root: a running node. Opens the data dir (identity, datastore, block store),
 * measures the backend, builds the libp2p host with the protocols, keeps bootstrap peers connected
 * and serves the control API.
 */
export class Daemon {
  readonly paths: DataDirPaths
  readonly config: NodeConfig
  readonly host: ShardnetHost
  readonly blockStore: FileBlockStore
  readonly capability: NodeCapability
  readonly metrics: NodeMetrics
  readonly api: ApiServer
  readonly startedAtMs: number
  /** resolves once the daemon has stopped (after `stop()` or an API stop request) */
  readonly stopped: Promise<void>

  private readonly datastore: LevelDatastore
  private readonly bootstrapDialer: BootstrapDialer
  private stopping: Promise<void> | undefined
  private readonly resolveStopped: () => void

  private constructor(parts: {
    paths: DataDirPaths
    config: NodeConfig
    host: ShardnetHost
    blockStore: FileBlockStore
    capability: NodeCapability
    metrics: NodeMetrics
    api: ApiServer
    startedAtMs: number
    datastore: LevelDatastore
    bootstrapDialer: BootstrapDialer
  }) {
    this.paths = parts.paths
    this.config = parts.config
    this.host = parts.host
    this.blockStore = parts.blockStore
    this.capability = parts.capability
    this.metrics = parts.metrics
    this.api = parts.api
    this.startedAtMs = parts.startedAtMs
    this.datastore = parts.datastore
    this.bootstrapDialer = parts.bootstrapDialer
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
    await removeStaleTemporaryFiles(paths.root)
    await removeStaleTemporaryFiles(paths.blocks)
    const { privateKey, created } = await loadOrCreateIdentity(paths.identityKey)
    const swarmKey = config.swarmKeyFile != null ? await readSwarmKey(config.swarmKeyFile) : undefined
    const token = await loadOrCreateApiToken(paths.apiToken)
    const capability = await (init.capabilityProbe ?? plainCpuProbe()).measure()
    log('backend %s (%s), %d GFLOP/s', capability.backend, capability.adapterName, capability.matmulGflops)

    const cleanups: Array<() => Promise<void>> = []
    const undo = async (): Promise<void> => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
    }
    try {
      const datastore = await openDatastore(paths.datastore)
      cleanups.push(() => datastore.close())
      const blockStore = new FileBlockStore({ folder: paths.blocks })

      let host: ShardnetHost | undefined
      const metrics = createNodeMetrics({
        startedAtMs,
        peerCount: () => host?.getPeers().length ?? 0,
        dhtRoutingTableSize: () => dhtRoutingTableSize(host),
        backend: () => capability,
      })
      host = await createHost({
        privateKey,
        listen: config.listen,
        announce: config.announce,
        datastore,
        swarmKey,
        metricsRegistry: init.libp2pMetrics === false ? undefined : metrics.registry,
        ipColocationPenalty: init.ipColocationPenalty,
        dhtInitialQuerySelfIntervalMs: init.dhtInitialQuerySelfIntervalMs,
        maxConnections: config.maxConnections,
      })
      const startedHost = host
      await startedHost.start()
      cleanups.push(async () => startedHost.stop())
      log(
        'peer %s (%s identity) listening on %s',
        host.peerId,
        created ? 'new' : 'existing',
        host.getMultiaddrs(),
      )

      const bootstrapDialer = new BootstrapDialer(
        host,
        config.bootstrap,
        init.bootstrapRedialIntervalMs ?? 2000,
      )
      bootstrapDialer.start()
      cleanups.push(async () => bootstrapDialer.stop())

      let daemon: Daemon | undefined
      const api = await startApiServer({
        host: config.apiHost,
        port: config.apiPort,
        token,
        allowRemoteClients: config.allowRemoteApi,
        metrics,
        routes: apiRoutes(() => {
          if (daemon == null) throw new ApiError(503, 'the daemon is still starting')
          return daemon
        }),
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
        startedAtMs,
        datastore,
        bootstrapDialer,
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
    }
  }

  /** Peers we are connected to and peers in our DHT routing table. */
  async peers(): Promise<PeerEntry[]> {
    const entries = new Map<string, PeerEntry>()
    const connected = new Set(this.host.getPeers().map((peer) => peer.toString()))
    const addressesOf = async (peerId: PeerId): Promise<string[]> => {
      try {
        const peer = await this.host.peerStore.get(peerId)
        return peer.addresses.map((address) => address.multiaddr.toString())
      } catch {
        return []
      }
    }
    for (const peerId of this.host.getPeers()) {
      entries.set(peerId.toString(), {
        peerId: peerId.toString(),
        addresses: await addressesOf(peerId),
        connected: true,
        source: 'connection',
      })
    }
    for (const peerId of dhtRoutingTablePeers(this.host)) {
      const key = peerId.toString()
      if (entries.has(key)) continue
      entries.set(key, {
        peerId: key,
        addresses: await addressesOf(peerId),
        connected: connected.has(key),
        source: 'dht',
      })
    }
    return [...entries.values()].sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /** Stops everything and closes the data dir; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      log('stopping')
      await this.api.close().catch((error: unknown) => log.error('closing the API failed: %e', error))
      this.bootstrapDialer.stop()
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

function dhtRoutingTableSize(host: ShardnetHost | undefined): number {
  return (host?.services.dht as unknown as RoutingTableView | undefined)?.routingTable?.size ?? 0
}

function dhtRoutingTablePeers(host: ShardnetHost): PeerId[] {
  const table = (host.services.dht as unknown as RoutingTableView).routingTable
  if (table?.kb == null) return []
  return [...table.kb.toIterable()].map((contact) => contact.peerId)
}

function apiRoutes(daemonOf: () => Daemon): ApiRoute[] {
  return [
    { method: 'GET', path: '/v1/status', handle: async () => daemonOf().status() },
    {
      method: 'GET',
      path: '/v1/peers',
      handle: async () => ({ peers: await daemonOf().peers() }),
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
