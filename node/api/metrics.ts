import { Counter, Gauge, Registry } from 'prom-client'

/** Counters the daemon and its protocols increment; read through GET /metrics. */
export interface NodeMetrics {
  registry: Registry
  /**
   * API requests refused, by reason (`no-token`, `wrong-token`, `non-loopback`, and
   * `read-only-token`: the read token on a route that needs the admin token)
   */
  apiRefused: Counter<'reason'>
}

/** Gossip validation totals of one topic, as the protocol service counts them. */
export interface GossipTotals {
  topic: string
  accepted: number
  rejected: Record<string, number>
}

/** Bytes a stream protocol moved, as the protocol service counts them. */
export interface StreamTotals {
  protocol: string
  sentBytes: number
  receivedBytes: number
}

/** What one part of the node refused, by reason (bad input, budgets, strangers), as it counts them. */
export interface RefusalTotals {
  /** the part: e.g. `inbound-connection`, `claim`, `infer`, `span`, `blocks`, `capability-record` */
  source: string
  refused: Record<string, number>
}

/** The span server's sessions (node/serving/span-host.ts). */
export interface SpanTotals {
  sessionsOpen: number
  sessionsOpened: number
  steps: number
  bytesIn: number
  bytesOut: number
}

/** What /metrics reads from the running node when it is scraped. */
export interface NodeMetricsSources {
  peerCount(): number
  dhtRoutingTableSize(): number
  backend(): { backend: string; adapterName: string; matmulGflops: number } | undefined
  gossip?(): GossipTotals[]
  streams?(): StreamTotals[]
  refusals?(): RefusalTotals[]
  spans?(): SpanTotals | undefined
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
  // totals the protocol services keep are copied in at scrape time, so every node of an in-process
  // network reports its own (libp2p's metrics table is process-wide)
  new Counter({
    name: 'shardnet_gossip_messages_total',
    help: 'gossip messages validated, by topic, result (accepted/rejected) and reason',
    labelNames: ['topic', 'result', 'reason'],
    registers: [registry],
    collect() {
      this.reset()
      for (const totals of sources.gossip?.() ?? []) {
        this.inc({ topic: totals.topic, result: 'accepted', reason: '' }, totals.accepted)
        for (const [reason, count] of Object.entries(totals.rejected)) {
          this.inc({ topic: totals.topic, result: 'rejected', reason }, count)
        }
      }
    },
  })
  new Counter({
    name: 'shardnet_stream_bytes_total',
    help: 'bytes on shardnet stream protocols, by protocol and direction',
    labelNames: ['protocol', 'direction'],
    registers: [registry],
    collect() {
      this.reset()
      for (const totals of sources.streams?.() ?? []) {
        this.inc({ protocol: totals.protocol, direction: 'sent' }, totals.sentBytes)
        this.inc({ protocol: totals.protocol, direction: 'received' }, totals.receivedBytes)
      }
    },
  })
  new Counter({
    name: 'shardnet_refused_total',
    help: 'input refused and dropped by the node, by the part that refused it and why',
    labelNames: ['source', 'reason'],
    registers: [registry],
    collect() {
      this.reset()
      for (const totals of sources.refusals?.() ?? []) {
        for (const [reason, count] of Object.entries(totals.refused)) {
          if (count > 0) this.inc({ source: totals.source, reason }, count)
        }
      }
    },
  })
  new Gauge({
    name: 'shardnet_span_sessions_open',
    help: 'generation sessions open on the spans this node serves',
    registers: [registry],
    collect() {
      this.set(sources.spans?.()?.sessionsOpen ?? 0)
    },
  })
  new Counter({
    name: 'shardnet_span_steps_total',
    help: 'steps the span server computed',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(sources.spans?.()?.steps ?? 0)
    },
  })
  new Counter({
    name: 'shardnet_span_sessions_opened_total',
    help: 'sessions the span server opened',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(sources.spans?.()?.sessionsOpened ?? 0)
    },
  })
  return {
    registry,
    apiRefused: new Counter({
      name: 'shardnet_api_refused_total',
      help: 'control API requests refused, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
  }
}
