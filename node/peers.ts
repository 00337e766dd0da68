// The peers a node knows, as `shardnet node peers` lists them: workers found through their verified
// capability records in the DHT, and (without a capability filter) open connections and the DHT
// routing table, each with its capability record when one was found.
import type { PeerId } from '@libp2p/interface'
import {
  type AdvertisedBackend,
  type Capability,
  type CapabilityDiscovery,
  FIND_WORKERS_LIMIT_MAX,
} from '../protocols/discovery/index.js'
import { dhtRoutingTablePeers, type ShardnetHost } from './host.js'

/** How long one peer listing may take when the caller gives no signal. */
export const PEER_LOOKUP_TIMEOUT_MS = 20_000

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
    /** every backend the peer measured (empty when its record predates the figures) */
    backends: AdvertisedBackend[]
  }
}

export type PeersHost = Pick<
  ShardnetHost<{ discovery: CapabilityDiscovery }>,
  'peerId' | 'getPeers' | 'peerStore' | 'services'
>

/**
 * Peers this node knows: with `capability`, the workers whose verified capability records the DHT
 * returns for it; without, open connections and the DHT routing table too, each with its capability
 * record when one was found. This node itself is not listed.
 */
export async function listPeers(
  host: PeersHost,
  options: { capability?: Capability; signal?: AbortSignal } = {},
): Promise<PeerEntry[]> {
  const self = host.peerId.toString()
  const signal = options.signal ?? AbortSignal.timeout(PEER_LOOKUP_TIMEOUT_MS)
  const connected = new Set(host.getPeers().map((peer) => peer.toString()))
  const entries = new Map<string, PeerEntry>()
  const addressesOf = async (peerId: PeerId): Promise<string[]> => {
    try {
      const peer = await host.peerStore.get(peerId)
      return peer.addresses.map((address) => address.multiaddr.toString())
    } catch {
      return []
    }
  }
  const capabilities: Capability[] = options.capability != null ? [options.capability] : ['webgpu', 'cpu']
  await Promise.all(
    capabilities.map(async (capability) => {
      try {
        for await (const worker of host.services.discovery.findWorkers(capability, {
          // every record the DHT holds, up to the most one lookup may read
          limit: FIND_WORKERS_LIMIT_MAX,
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
              backends: record.backends,
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
    for (const peerId of host.getPeers()) {
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
    for (const peerId of dhtRoutingTablePeers(host)) {
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
