import { readFile } from 'node:fs/promises'
import type { GossipSub } from '@libp2p/gossipsub'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import type { PeerScoreParams, PeerScoreThresholds } from '@libp2p/gossipsub/score'
import type { Identify } from '@libp2p/identify'
import { identify } from '@libp2p/identify'
import type { PeerId, PrivateKey, ServiceMap } from '@libp2p/interface'
import type { KadDHT, Selectors, Validators } from '@libp2p/kad-dht'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import type { Ping } from '@libp2p/ping'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { yamux } from '@libp2p/yamux'
import type { Datastore } from 'interface-datastore'
import type { Libp2p, ServiceFactoryMap } from 'libp2p'
import { createLibp2p } from 'libp2p'
import type { Registry } from 'prom-client'
import { shardnetTcp } from './tcp.js'

/** The private DHT protocol: shardnet nodes never join (or pollute) the public IPFS DHT. */
export const SHARDNET_DHT_PROTOCOL = '/shardnet/kad/1.0.0'
/** Most simultaneous connections a node keeps when its config does not say. */
export const MAX_CONNECTIONS_DEFAULT = 300
/** How soon after start the DHT runs its first self-query when the host's init does not say. */
export const DHT_INITIAL_QUERY_SELF_INTERVAL_MS_DEFAULT = 1000

/** The services every shardnet host runs; protocol services are added on top by the daemon. */
export interface CoreServices extends ServiceMap {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export type ShardnetHost<Extra extends ServiceMap = ServiceMap> = Libp2p<CoreServices & Extra>

export interface HostInit<Extra extends ServiceMap = ServiceMap> {
  privateKey: PrivateKey
  /** multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/0` */
  listen: string[]
  /** multiaddrs to advertise instead of the listen addresses (behind NAT, port forwarding) */
  announce?: string[]
  /** durable store for the peer store and DHT records; in memory when absent */
  datastore?: Datastore
  /** contents of a libp2p swarm key file: only peers holding the same key can connect */
  swarmKey?: Uint8Array
  /** registry that libp2p's own metrics are registered in (the daemon's /metrics registry) */
  metricsRegistry?: Registry
  /** DHT record validators and selectors, keyed by the record key's first segment */
  dhtValidators?: Validators
  dhtSelectors?: Selectors
  /**
   * How soon after start the DHT runs its first self-query; queries wait for it.
   * @default DHT_INITIAL_QUERY_SELF_INTERVAL_MS_DEFAULT
   */
  dhtInitialQuerySelfIntervalMs?: number
  /** gossipsub score parameters (the topic parameters come from protocols/tasks) */
  gossipScoreParams?: Partial<PeerScoreParams>
  gossipScoreThresholds?: Partial<PeerScoreThresholds>
  /**
   * gossipsub's IP-colocation penalty graylists peers once about a dozen share one IP, which every
   * node of a loopback test network does. Turn it off in tests and simulations only.
   * @default true
   */
  ipColocationPenalty?: boolean
  /**
   * most simultaneous connections
   * @default MAX_CONNECTIONS_DEFAULT
   */
  maxConnections?: number
  /** protocol services from protocols/ (discovery, tasks, blocks...) */
  services?: Pick<ServiceFactoryMap<CoreServices & Extra>, keyof Extra>
}

/** A swarm key file in the go-ipfs/libp2p format: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits. */
export class SwarmKeyFormatError extends Error {
  static override name = 'SwarmKeyFormatError'
  constructor(path: string, reason: string) {
    super(`the swarm key ${path} is not a libp2p swarm key (${reason})`)
    this.name = 'SwarmKeyFormatError'
  }
}

/** Reads and checks a swarm key file so a typo is a clear error at start, not a silent closed door. */
export async function readSwarmKey(path: string): Promise<Uint8Array> {
  const bytes = await readFile(path)
  const lines = bytes.toString('utf8').split(/\r\n|\r|\n/)
  if (lines[0] !== '/key/swarm/psk/1.0.0/')
    throw new SwarmKeyFormatError(path, 'first line must be /key/swarm/psk/1.0.0/')
  if (lines[1] !== '/base16/') throw new SwarmKeyFormatError(path, 'second line must be /base16/')
  if (!/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
    throw new SwarmKeyFormatError(path, 'third line must be 64 hexadecimal digits')
  }
  return new Uint8Array(bytes)
}

/** A new swarm key file's contents (32 random bytes, base16). */
export function generateSwarmKey(): string {
  const key = crypto.getRandomValues(new Uint8Array(32))
  return `/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(key).toString('hex')}\n`
}

/**
 * Builds (but does not start) a shardnet libp2p host: TCP, Noise, Yamux, identify, ping, kad-dht in
 * server mode on the private protocol, gossipsub with strictly signed messages, optionally a
 * private network (pnet) and Prometheus metrics.
 */
export async function createHost<Extra extends ServiceMap = ServiceMap>(
  init: HostInit<Extra>,
): Promise<ShardnetHost<Extra>> {
  const scoreParams: Partial<PeerScoreParams> = { ...init.gossipScoreParams }
  if (init.ipColocationPenalty === false) scoreParams.IPColocationFactorWeight = 0
  const coreServices: ServiceFactoryMap<CoreServices> = {
    identify: identify(),
    // libp2p's connection monitor pings every connection on the same protocol: room for one more ping
    // at a time, or a ping asked for while the monitor's is in flight fails (TooManyOutboundProtocolStreams)
    ping: ping({ maxOutboundStreams: 2 }),
    dht: kadDHT({
      protocol: SHARDNET_DHT_PROTOCOL,
      // nodes on a LAN or loopback are dialable: be a DHT server from the start
      clientMode: false,
      // the default mapper drops private and loopback addresses, which is every address of a LAN network
      peerInfoMapper: passthroughMapper,
      validators: init.dhtValidators ?? {},
      selectors: init.dhtSelectors ?? {},
      initialQuerySelfInterval:
        init.dhtInitialQuerySelfIntervalMs ?? DHT_INITIAL_QUERY_SELF_INTERVAL_MS_DEFAULT,
    }),
    pubsub: gossipsub({
      globalSignaturePolicy: StrictSign,
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      scoreParams,
      scoreThresholds: init.gossipScoreThresholds ?? {},
    }),
  }
  const services = { ...coreServices, ...init.services } as ServiceFactoryMap<CoreServices & Extra>
  return createLibp2p<CoreServices & Extra>({
    start: false,
    privateKey: init.privateKey,
    addresses: { listen: init.listen, announce: init.announce ?? [] },
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: init.swarmKey != null ? preSharedKey({ psk: init.swarmKey }) : undefined,
    connectionManager: {
      maxConnections: init.maxConnections ?? MAX_CONNECTIONS_DEFAULT,
      // local processes (tests, a demo network, the simulator's real-node checks) are not throttled
      // by the per-IP inbound rate limit
      allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'],
    },
    datastore: init.datastore,
    metrics:
      init.metricsRegistry != null
        ? prometheusMetrics({ registry: init.metricsRegistry, preserveExistingMetrics: true })
        : undefined,
    services,
  })
}

/** kad-dht's routing table, which its public interface does not expose. */
interface RoutingTableView {
  routingTable?: { size: number; kb?: { toIterable(): Iterable<{ peerId: PeerId }> } }
}

/** Peers in the host's DHT routing table (0 before the host exists). */
export function dhtRoutingTableSize(host: Pick<ShardnetHost, 'services'> | undefined): number {
  return (host?.services.dht as unknown as RoutingTableView | undefined)?.routingTable?.size ?? 0
}

/** The peers in the host's DHT routing table. */
export function dhtRoutingTablePeers(host: Pick<ShardnetHost, 'services'>): PeerId[] {
  const table = (host.services.dht as unknown as RoutingTableView).routingTable
  if (table?.kb == null) return []
  return [...table.kb.toIterable()].map((contact) => contact.peerId)
}
