import { readFile } from 'node:fs/promises'
import type { GossipSub } from '@libp2p/gossipsub'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import type { PeerScoreParams, PeerScoreThresholds } from '@libp2p/gossipsub/score'
import type { Identify } from '@libp2p/identify'
import { identify } from '@libp2p/identify'
import type {
  Connection,
  ConnectionGater,
  MultiaddrConnection,
  PeerId,
  PrivateKey,
  ServiceMap,
  Stream,
} from '@libp2p/interface'
import type { KadDHT, Selectors, Validators } from '@libp2p/kad-dht'
import { kadDHT } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import type { Ping } from '@libp2p/ping'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { yamux } from '@libp2p/yamux'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Datastore } from 'interface-datastore'
import type { Libp2p, ServiceFactoryMap } from 'libp2p'
import { createLibp2p } from 'libp2p'
import type { Registry } from 'prom-client'
import { DialableAddressFilter } from '../protocols/discovery/addresses.js'
import { shardnetTcp } from './tcp.js'

/** The private DHT protocol: shardnet nodes never join (or pollute) the public IPFS DHT. */
export const SHARDNET_DHT_PROTOCOL = '/shardnet/kad/1.0.0'
/** Most simultaneous connections a node keeps when its config does not say. */
export const MAX_CONNECTIONS_DEFAULT = 300
/** Most inbound connections from one IP address (loopback included), established and pending. */
export const INBOUND_CONNECTIONS_PER_IP_MAX_DEFAULT = 32
/** Most inbound connections from one IP address still in their handshake (Noise, yamux). */
export const INBOUND_PENDING_PER_IP_MAX_DEFAULT = 8
/** Most inbound connections in their handshake over all addresses. */
export const INBOUND_PENDING_MAX_DEFAULT = 32
/** Most inbound connections one IP address may open per second. */
export const INBOUND_CONNECTIONS_PER_IP_PER_SECOND_DEFAULT = 10
/** Share of maxConnections that inbound connections may take (the rest stays for this node's dials). */
export const INBOUND_CONNECTIONS_SHARE_DEFAULT = 0.75
/** Largest gossipsub RPC frame accepted: a few task announcements (64 KiB each at most) and control. */
export const GOSSIP_RPC_BYTES_MAX = 1 << 20
/** Bytes queued for one peer's outbound gossipsub stream before sends to it are refused. */
export const GOSSIP_OUTBOUND_BUFFER_BYTES_MAX = 4 << 20
/** Concurrent gossipsub streams per connection and direction (one is used, a new one replaces it). */
export const GOSSIP_STREAMS_MAX = 4
/** Concurrent inbound kad-dht streams per connection (32 by default). */
export const DHT_STREAMS_MAX = 16
/**
 * Inbound bytes per peer on gossipsub: announcements are at most 64 KiB and rare; a peer over its rate
 * has its stream paused (yamux then stops granting window) until the bucket refills.
 */
export const GOSSIP_INBOUND_RATE: InboundRate = { burstBytes: 1 << 20, bytesPerSecond: 256 * 1024 }
/** Inbound bytes per peer on kad-dht: requests are a few KiB (a capability record at most). */
export const DHT_INBOUND_RATE: InboundRate = { burstBytes: 256 * 1024, bytesPerSecond: 128 * 1024 }
/** Inbound bytes per peer on identify (and identify push): one small record now and then. */
export const IDENTIFY_INBOUND_RATE: InboundRate = { burstBytes: 64 * 1024, bytesPerSecond: 16 * 1024 }
/** Inbound bytes per peer on ping: 32 bytes per ping. */
export const PING_INBOUND_RATE: InboundRate = { burstBytes: 16 * 1024, bytesPerSecond: 4 * 1024 }
/** Inbound streams open at once on one connection, over all protocols (1000 by default). */
export const YAMUX_INBOUND_STREAMS_MAX = 256
/**
 * Largest receive window of a yamux stream (16 MiB by default): the most a stream receives beyond
 * what its reader has taken, so what a paused (throttled or budgeted) stream may still buffer.
 */
export const YAMUX_STREAM_WINDOW_BYTES_MAX = 4 << 20
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
  /**
   * addresses the user configured (bootstrap peers): always dialled. Other peers' loopback, private
   * and link-local addresses are dialled only when this node has an address in the same block
   * (DialableAddressFilter), so a peer cannot point this node at another network's hosts.
   */
  configuredPeers?: string[]
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
  /**
   * Limits on inbound connections. They apply to every address, loopback included: a stranger on
   * the same machine gets no more than one on the network.
   */
  inbound?: Partial<InboundLimits>
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
  const maxConnections = init.maxConnections ?? MAX_CONNECTIONS_DEFAULT
  const inbound: InboundLimits = {
    perIpMax: INBOUND_CONNECTIONS_PER_IP_MAX_DEFAULT,
    pendingPerIpMax: INBOUND_PENDING_PER_IP_MAX_DEFAULT,
    pendingMax: INBOUND_PENDING_MAX_DEFAULT,
    perIpPerSecond: INBOUND_CONNECTIONS_PER_IP_PER_SECOND_DEFAULT,
    totalMax: Math.max(1, Math.floor(maxConnections * INBOUND_CONNECTIONS_SHARE_DEFAULT)),
    ...init.inbound,
  }
  const gate = new InboundGate(inbound)
  // the addresses as configured, not node.getMultiaddrs(): a node listening on 0.0.0.0 expands to
  // its interfaces, 127.0.0.1 among them, and would then dial any peer's advertised loopback
  const dialFilter = new DialableAddressFilter({
    ownAddresses: () => [...init.listen, ...(init.announce ?? [])].map((address) => multiaddr(address)),
    configured: (init.configuredPeers ?? []).map((address) => multiaddr(address)),
  })
  const coreServices: ServiceFactoryMap<CoreServices> = {
    identify: throttled(identify(), IDENTIFY_INBOUND_RATE, gate),
    // libp2p's connection monitor pings every connection on the same protocol: room for one more ping
    // at a time, or a ping asked for while the monitor's is in flight fails (TooManyOutboundProtocolStreams)
    ping: throttled(ping({ maxOutboundStreams: 2 }), PING_INBOUND_RATE, gate),
    dht: throttled(
      kadDHT({
        protocol: SHARDNET_DHT_PROTOCOL,
        // nodes on a LAN or loopback are dialable: be a DHT server from the start
        clientMode: false,
        // the default mapper drops private and loopback addresses, which is every address of a LAN network
        peerInfoMapper: (info) => dialFilter.peerInfoMapper(info),
        validators: init.dhtValidators ?? {},
        selectors: init.dhtSelectors ?? {},
        initialQuerySelfInterval:
          init.dhtInitialQuerySelfIntervalMs ?? DHT_INITIAL_QUERY_SELF_INTERVAL_MS_DEFAULT,
        // a query opens a few streams to one peer at a time (kad-dht's reader has no bound of its own
        // on a length prefix, only its 10 s deadline per request)
        maxInboundStreams: DHT_STREAMS_MAX,
      }),
      DHT_INBOUND_RATE,
      gate,
    ),
    pubsub: throttled(
      gossipsub({
        globalSignaturePolicy: StrictSign,
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        scoreParams,
        scoreThresholds: init.gossipScoreThresholds ?? {},
        // one inbound stream per peer is used (a new one replaces the old); each RPC frame is bounded
        // (4 MiB by default) and so is what is queued for a slow peer (unbounded by default)
        maxInboundStreams: GOSSIP_STREAMS_MAX,
        maxOutboundStreams: GOSSIP_STREAMS_MAX,
        maxInboundDataLength: GOSSIP_RPC_BYTES_MAX,
        maxOutboundBufferSize: GOSSIP_OUTBOUND_BUFFER_BYTES_MAX,
      }),
      GOSSIP_INBOUND_RATE,
      gate,
    ),
  }
  const services = { ...coreServices, ...init.services } as ServiceFactoryMap<CoreServices & Extra>
  const node = await createLibp2p<CoreServices & Extra>({
    start: false,
    privateKey: init.privateKey,
    addresses: { listen: init.listen, announce: init.announce ?? [] },
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [
      yamux({
        maxInboundStreams: YAMUX_INBOUND_STREAMS_MAX,
        // what a paused stream may still receive: the window it granted before the pause
        streamOptions: { maxStreamWindowSize: YAMUX_STREAM_WINDOW_BYTES_MAX },
      }),
    ],
    connectionProtector: init.swarmKey != null ? preSharedKey({ psk: init.swarmKey }) : undefined,
    connectionManager: {
      maxConnections,
      // no allow list: loopback peers are limited like any other (an allow-listed address skips the
      // pending, rate and total limits)
      maxIncomingPendingConnections: inbound.pendingMax,
      inboundConnectionThreshold: inbound.perIpPerSecond,
    },
    connectionGater: {
      ...gate.gater,
      denyDialMultiaddr: (address) => dialFilter.denyDialMultiaddr(address),
    },
    datastore: init.datastore,
    metrics:
      init.metricsRegistry != null
        ? prometheusMetrics({ registry: init.metricsRegistry, preserveExistingMetrics: true })
        : undefined,
    services,
  })
  gate.connections = () => node.getConnections()
  limitStreamOpens(node, gate)
  inboundGates.set(node, gate)
  return node
}

/** A token bucket of inbound bytes per remote peer and protocol. */
export interface InboundRate {
  burstBytes: number
  bytesPerSecond: number
}

interface Bucket {
  tokens: number
  at: number
  streams: number
}

interface ConnectionCloser {
  closeConnections(peer: PeerId): Promise<void>
}

/** Registrar and stream calls the throttle needs. */
type StreamHandler = (stream: Stream, connection: Connection) => void | Promise<void>
interface HandleRegistrar {
  handle(protocol: string, handler: StreamHandler, options?: unknown): Promise<void>
}

/**
 * The service `factory` makes, with each inbound stream of the protocols it handles throttled to
 * `rate` per remote peer: a stream whose peer has spent its bucket is paused until it refills. The
 * libraries' own readers (gossipsub's, kad-dht's, identify's) buffer whatever a stream delivers; paused,
 * a stream delivers nothing and the sender's yamux window runs dry, so a flood costs at most the
 * rate in CPU and the window in memory.
 */
function throttled<S, C extends object>(
  factory: (components: C) => S,
  rate: InboundRate,
  gate: InboundGate,
): (components: C) => S {
  return (components) => {
    const registrar = (components as { registrar: HandleRegistrar }).registrar
    const connectionManager = (components as { connectionManager: ConnectionCloser }).connectionManager
    const buckets = new Map<string, Bucket>()
    const handle = (protocol: string, handler: StreamHandler, options?: unknown) =>
      registrar.handle(
        protocol,
        (stream, connection) => {
          const strike = () => {
            if (gate.strike(connection.remotePeer.toString())) {
              void connectionManager.closeConnections(connection.remotePeer).catch(() => {})
            }
          }
          throttleStream(stream, connection.remotePeer.toString(), rate, buckets, strike)
          return handler(stream, connection)
        },
        options,
      )
    const wrappedRegistrar = new Proxy(registrar, {
      get: (target, key) => {
        if (key === 'handle') return handle
        const value = Reflect.get(target, key, target)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const wrapped = new Proxy(components, {
      get: (target, key, receiver) =>
        key === 'registrar' ? wrappedRegistrar : Reflect.get(target, key, receiver),
    })
    return factory(wrapped)
  }
}

/**
 * Inbound streams a peer may open, over all protocols: a burst, then a sustained rate. A Raft member
 * keeps one stream open, a DHT query opens a few, a block fetch one; a stranger churning streams (each
 * brings a fresh 256 KiB yamux window of data with it) is refused, and strikes get it banned. Set
 * high: a training group's gradient exchange opens a stream per member and step.
 */
export const STREAM_OPENS_PER_PEER = { burst: 256, perSecond: 128 }

/**
 * Wraps the registrar's handle() (before the services register at start) so that every inbound
 * stream, whatever its protocol, first takes a token from its peer's bucket of stream opens.
 */
function limitStreamOpens(node: object, gate: InboundGate): void {
  const components = (
    node as { components?: { registrar?: HandleRegistrar; connectionManager?: ConnectionCloser } }
  ).components
  const registrar = components?.registrar
  const connectionManager = components?.connectionManager
  if (registrar === undefined || connectionManager === undefined) return
  const handle = registrar.handle.bind(registrar)
  registrar.handle = (protocol, handler, options) =>
    handle(
      protocol,
      (stream, connection) => {
        const peer = connection.remotePeer.toString()
        if (!gate.admitStream(peer)) {
          throttleCounts.refusedStreams++
          stream.abort(new InboundRateError(`${peer} opens streams faster than allowed`))
          if (gate.strike(peer))
            void connectionManager.closeConnections(connection.remotePeer).catch(() => {})
          return
        }
        return handler(stream, connection)
      },
      options,
    )
}

/** A stream refused or aborted because its peer is over its inbound byte rate on the protocol. */
export class InboundRateError extends Error {
  static override name = 'InboundRateError'
  override name = 'InboundRateError'
}

/** Streams of gossipsub, kad-dht, identify and ping throttled in this process, by outcome. */
export const throttleCounts = { pausedStreams: 0, refusedStreams: 0, abortedStreams: 0 }

function throttleStream(
  stream: Stream,
  peer: string,
  rate: InboundRate,
  buckets: Map<string, Bucket>,
  strike: () => void,
): void {
  let bucket = buckets.get(peer)
  if (bucket === undefined) {
    bucket = { tokens: rate.burstBytes, at: Date.now(), streams: 0 }
    buckets.set(peer, bucket)
  }
  const peerBucket = bucket
  peerBucket.streams++
  let timer: ReturnType<typeof setTimeout> | undefined
  const refill = () => {
    const now = Date.now()
    peerBucket.tokens = Math.min(
      rate.burstBytes,
      peerBucket.tokens + ((now - peerBucket.at) * rate.bytesPerSecond) / 1000,
    )
    peerBucket.at = now
  }
  const resume = () => {
    timer = undefined
    refill()
    if (peerBucket.tokens < 0) {
      timer = setTimeout(resume, (-peerBucket.tokens / rate.bytesPerSecond) * 1000)
      return
    }
    try {
      stream.resume()
    } catch {
      // closing
    }
  }
  const onMessage = (event: { data: { byteLength: number } }) => {
    refill()
    peerBucket.tokens -= event.data.byteLength
    if (peerBucket.tokens < -rate.burstBytes) {
      // a burst over what was granted: the peer ignores the pause (several streams at once)
      throttleCounts.abortedStreams++
      stream.abort(new InboundRateError(`${peer} is over its inbound rate`))
      strike()
      return
    }
    if (peerBucket.tokens < 0 && timer === undefined) {
      throttleCounts.pausedStreams++
      try {
        stream.pause()
      } catch {
        return
      }
      timer = setTimeout(resume, (-peerBucket.tokens / rate.bytesPerSecond) * 1000)
    }
  }
  stream.addEventListener('message', onMessage)
  // a peer that spent its bucket gets no new stream until it refills: resumed together, its paused
  // streams would each grant a fresh window at once
  refill()
  if (peerBucket.tokens < 0) {
    throttleCounts.refusedStreams++
    stream.abort(new InboundRateError(`${peer} is over its inbound rate`))
    strike()
  }
  stream.addEventListener(
    'close',
    () => {
      if (timer !== undefined) clearTimeout(timer)
      stream.removeEventListener('message', onMessage)
      peerBucket.streams--
      // a peer with no open stream and a full bucket is forgotten (the map holds only active peers)
      refill()
      if (peerBucket.streams <= 0 && peerBucket.tokens >= rate.burstBytes) buckets.delete(peer)
      else if (peerBucket.streams <= 0) {
        setTimeout(
          () => {
            if (peerBucket.streams <= 0) buckets.delete(peer)
          },
          ((rate.burstBytes - peerBucket.tokens) / rate.bytesPerSecond) * 1000,
        ).unref?.()
      }
    },
    { once: true },
  )
}

/** Limits on inbound connections, per remote IP address and in total. */
export interface InboundLimits {
  /**
   * Inbound connections from one IP, established and pending.
   * @default INBOUND_CONNECTIONS_PER_IP_MAX_DEFAULT
   */
  perIpMax: number
  /** Inbound connections from one IP in their handshake. @default INBOUND_PENDING_PER_IP_MAX_DEFAULT */
  pendingPerIpMax: number
  /** Inbound connections in their handshake over all IPs. @default INBOUND_PENDING_MAX_DEFAULT */
  pendingMax: number
  /**
   * Inbound connections one IP may open per second.
   * @default INBOUND_CONNECTIONS_PER_IP_PER_SECOND_DEFAULT
   */
  perIpPerSecond: number
  /**
   * Inbound connections, established and pending.
   * @default INBOUND_CONNECTIONS_SHARE_DEFAULT * maxConnections
   */
  totalMax: number
}

/** Inbound connections refused by the host's gate, by reason. */
export interface InboundRefusals {
  perIp: number
  pendingPerIp: number
  total: number
  /** connections of peers disconnected for abuse, refused during their ban */
  banned: number
}

/** Rate-limit strikes within ABUSE_WINDOW_MS after which a peer is disconnected and banned. */
export const ABUSE_STRIKES_MAX = 4
export const ABUSE_WINDOW_MS = 10_000
/** How long a peer disconnected for abuse has its inbound connections refused. */
export const ABUSE_BAN_MS = 60_000

const inboundGates = new WeakMap<object, InboundGate>()

/**
 * What the host's inbound gate has refused (libp2p's own refusals, by rate and pending total, not
 * included).
 */
export function inboundRefusals(host: object): InboundRefusals | undefined {
  const gate = inboundGates.get(host)
  return gate === undefined ? undefined : { ...gate.refused }
}

function ipOf(address: Multiaddr): string | undefined {
  for (const component of address.getComponents()) {
    if (component.name === 'ip4' || component.name === 'ip6') return component.value
  }
  return undefined
}

/**
 * Counts inbound connections per remote IP, established (from the node's connection list) and in
 * their handshake (from the gate's first call until the upgrade ends or the socket closes), and
 * refuses one over the limits before its handshake starts.
 */
class InboundGate {
  readonly refused: InboundRefusals = { perIp: 0, pendingPerIp: 0, total: 0, banned: 0 }
  /** Peers disconnected for abuse, and until when their inbound connections are refused. */
  private readonly bans = new Map<string, number>()
  private readonly strikes = new Map<string, { count: number; since: number }>()
  connections: () => Connection[] = () => []
  private readonly limits: InboundLimits
  private readonly pending = new Map<MultiaddrConnection, string>()
  private readonly pendingByIp = new Map<string, number>()
  readonly gater: ConnectionGater

  constructor(limits: InboundLimits) {
    this.limits = limits
    this.gater = {
      denyInboundConnection: (maConn) => this.deny(maConn),
      denyInboundEncryptedConnection: (peer, maConn) => {
        const until = this.bans.get(peer.toString())
        if (until === undefined) return false
        if (Date.now() >= until) {
          this.bans.delete(peer.toString())
          return false
        }
        this.refused.banned++
        this.settle(maConn)
        return true
      },
      denyInboundUpgradedConnection: (_peer, maConn) => {
        this.settle(maConn)
        return false
      },
    }
  }

  private deny(maConn: MultiaddrConnection): boolean {
    const ip = ipOf(maConn.remoteAddr)
    if (ip === undefined) return false
    let established = 0
    let inboundTotal = 0
    for (const connection of this.connections()) {
      if (connection.direction !== 'inbound') continue
      inboundTotal++
      if (ipOf(connection.remoteAddr) === ip) established++
    }
    const pending = this.pendingByIp.get(ip) ?? 0
    if (inboundTotal + this.pending.size >= this.limits.totalMax) {
      this.refused.total++
      return true
    }
    if (pending >= this.limits.pendingPerIpMax) {
      this.refused.pendingPerIp++
      return true
    }
    if (established + pending >= this.limits.perIpMax) {
      this.refused.perIp++
      return true
    }
    this.pending.set(maConn, ip)
    this.pendingByIp.set(ip, pending + 1)
    maConn.addEventListener('close', () => this.settle(maConn), { once: true })
    return false
  }

  /**
   * Counts a rate-limit strike against `peer`; true when it reached ABUSE_STRIKES_MAX within
   * ABUSE_WINDOW_MS: the peer is then banned for ABUSE_BAN_MS and the caller closes its connections.
   */
  strike(peer: string): boolean {
    const now = Date.now()
    let record = this.strikes.get(peer)
    if (record === undefined || now - record.since > ABUSE_WINDOW_MS) {
      record = { count: 0, since: now }
      this.strikes.set(peer, record)
    }
    record.count++
    if (record.count < ABUSE_STRIKES_MAX) return false
    this.strikes.delete(peer)
    this.bans.set(peer, now + ABUSE_BAN_MS)
    // both maps hold only recent peers
    for (const [id, until] of this.bans) if (until <= now) this.bans.delete(id)
    for (const [id, r] of this.strikes) if (now - r.since > ABUSE_WINDOW_MS) this.strikes.delete(id)
    return true
  }

  private readonly streamOpens = new Map<string, { tokens: number; at: number }>()

  /** Takes one token from `peer`'s bucket of stream opens (STREAM_OPENS_PER_PEER); false when empty. */
  admitStream(peer: string): boolean {
    const now = Date.now()
    const rate = STREAM_OPENS_PER_PEER
    let bucket = this.streamOpens.get(peer)
    if (bucket === undefined) {
      bucket = { tokens: rate.burst, at: now }
      this.streamOpens.set(peer, bucket)
      // the map holds peers seen within the time a bucket takes to refill
      if (this.streamOpens.size > 1024) {
        const full = (rate.burst / rate.perSecond) * 1000
        for (const [id, b] of this.streamOpens) if (now - b.at > full) this.streamOpens.delete(id)
      }
    }
    bucket.tokens = Math.min(rate.burst, bucket.tokens + ((now - bucket.at) * rate.perSecond) / 1000)
    bucket.at = now
    if (bucket.tokens < 1) return false
    bucket.tokens--
    return true
  }

  /** The connection's handshake is over (upgraded, failed or closed). */
  private settle(maConn: MultiaddrConnection): void {
    const ip = this.pending.get(maConn)
    if (ip === undefined) return
    this.pending.delete(maConn)
    const left = (this.pendingByIp.get(ip) ?? 1) - 1
    if (left <= 0) this.pendingByIp.delete(ip)
    else this.pendingByIp.set(ip, left)
  }
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
