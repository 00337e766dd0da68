import { Counter, Gauge, Registry } from 'prom-client'

/** Counters the daemon and its protocols increment; read through GET /metrics. */
export interface NodeMetrics {
  registry: Registry
  /** gossip messages by topic, result (`accepted`, `rejected`, `ignored`) and reason */
  gossipMessages: Counter<'topic' | 'result' | 'reason'>
  /** bytes on shardnet's own stream protocols, by protocol and direction */
  streamBytes: Counter<'protocol' | 'direction'>
  /** API requests refused, by reason (`no-token`, `wrong-token`, `non-loopback`) */
  apiRefused: Counter<'reason'>
}

/** What /metrics reads from the running node when it is scraped. */
export interface NodeMetricsSources {
  peerCount(): number
  dhtRoutingTableSize(): number
  backend(): { backend: string; adapterName: string; matmulGflops: number } | undefined
  startedAtMs: number
}

/**
 * One Prometheus registry per node for our metrics and libp2p's (the host registers its own in the
 * same registry), so an in-process test network of many nodes keeps their figures apart.
 */
export function createNodeMetrics(sources: NodeMetricsSources): NodeMetrics {
  const registry = new Registry()
  new Gauge({
    name: 'shardnet_peers',
    help: 'peers with an open connection',
    registers: [registry],
    collect() {
      this.set(sources.peerCount())
    },
  })
  new Gauge({
    name: 'shardnet_dht_routing_table_peers',
    help: 'peers in the kad-dht routing table',
    registers: [registry],
    collect() {
      this.set(sources.dhtRoutingTableSize())
    },
  })
  new Gauge({
    name: 'shardnet_backend_info',
    help: 'the compute backend this node measured at start-up (value is always 1)',
    labelNames: ['backend', 'adapter'],
    registers: [registry],
    collect() {
      const backend = sources.backend()
      this.reset()
      if (backend != null) this.set({ backend: backend.backend, adapter: backend.adapterName }, 1)
    },
  })
  new Gauge({
    name: 'shardnet_backend_matmul_gflops',
    help: 'matmul throughput measured at start-up',
    registers: [registry],
    collect() {
      this.set(sources.backend()?.matmulGflops ?? 0)
    },
  })
  new Gauge({
    name: 'shardnet_uptime_seconds',
    help: 'seconds since the daemon started',
    registers: [registry],
    collect() {
      this.set((Date.now() - sources.startedAtMs) / 1000)
    },
  })
  return {
    registry,
    gossipMessages: new Counter({
      name: 'shardnet_gossip_messages_total',
      help: 'gossip messages validated, by topic, result and reason',
      labelNames: ['topic', 'result', 'reason'],
      registers: [registry],
    }),
    streamBytes: new Counter({
      name: 'shardnet_stream_bytes_total',
      help: 'bytes on shardnet stream protocols, by protocol and direction',
      labelNames: ['protocol', 'direction'],
      registers: [registry],
    }),
    apiRefused: new Counter({
      name: 'shardnet_api_refused_total',
      help: 'control API requests refused, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
  }
}
