// The models checked against the real libraries at small N: N real libp2p nodes in this process
// (@libp2p/memory transport, noise, yamux, identify, @libp2p/kad-dht, @libp2p/gossipsub) publish
// announcements and run DHT lookups; the gossip and DHT models then run the same publications and
// lookups over the same topology (the real gossip meshes, the real publishers' connections and the
// real routing tables), and the two distributions are compared.
//
// The memory transport delays only dials, so each real node's topic validator waits
// LINK_LATENCY_MS before accepting a message: a per-hop latency on every delivery, as the model's
// link latency. Propagation latency is then (hops x per-hop latency) in both, so the check compares
// the distribution of delivery hops (each real node records who delivered the message first,
// gossipsub's propagationSource, and the chain is followed back to the publisher). Delivery times
// in ms are reported too but not checked: with N nodes sharing one event loop on a loaded 2-core
// machine, CPU time per hop (signatures, noise, yamux) was measured at 50-100 ms here, more than
// the link latency, and the model does not include this machine's load.
// - gossip: mean delivery hops agree within GOSSIP_HOPS_MARGIN (0.35: a model off by one hop on a
//   third of deliveries fails) and the hop histograms' total-variation distance is at most
//   GOSSIP_TV_MARGIN (0.25), and the real network reaches every node. CPU jitter can let a 2-hop
//   path beat a 1-hop one in the real network, hence some slack.
// - DHT: mean hops agree within DHT_HOPS_MARGIN (0.35, about a third of a hop) and the hop
//   histograms' total-variation distance is at most DHT_TV_MARGIN (0.2): the real lookup uses 3
//   disjoint paths where the model runs one pipelined path, which can shift a few lookups by a hop.
import { createHash } from 'node:crypto'
import { type GossipSub, gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { type KadDHT, kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { memory } from '@libp2p/memory'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { SeededRandom } from '../../protocols/raft/random.js'
import { DhtModel } from './dht.js'
import { GOSSIP_D_LO, GossipModel } from './gossip.js'
import { Histogram } from './histogram.js'
import { PeerState, PeerTable } from './peers.js'

export const LINK_LATENCY_MS = 40
export const GOSSIP_HOPS_MARGIN = 0.35
export const GOSSIP_TV_MARGIN = 0.25
export const DHT_HOPS_MARGIN = 0.35
export const DHT_TV_MARGIN = 0.2
/** Dials each new node makes to earlier nodes (the rest of the topology comes from the protocols). */
export const DIALS_PER_NODE = 4
/** Announcements published in the cross-check, and how long one may take to reach everyone. */
export const PUBLICATIONS = 6
export const PUBLICATION_GAP_MS = 3000
export const LOOKUPS = 30
/** Lookups run at once (the model's tables are reloaded from the real ones before each batch). */
export const LOOKUP_BATCH = 5
/** Model repetitions per real publication (averages out its random IHAVE targets and latencies). */
export const MODEL_REPEATS = 20
const TOPIC = 'shardnet/sim-crosscheck/1'
const DHT_PROTOCOL = '/shardnet-sim/kad/1.0.0'

export interface CrossCheckOptions {
  nodes: number
  seed: number
  log?: (line: string) => void
  /** Mesh formation and routing-table fill deadline. @default 20000 */
  settleMsMax?: number
}

export interface CrossCheckResult {
  agrees: boolean
  lines: string[]
  json: Record<string, unknown>
  gossip: {
    realHopsMean: number
    modelHopsMean: number
    hopsTv: number
    realP50: number
    realP90: number
    modelP50: number
    modelP90: number
    agrees: boolean
  }
  dht: { realMean: number; modelMean: number; idealModelMean: number; tv: number; agrees: boolean }
}

/** What the cross-check uses of gossipsub; getMeshPeers is on the implementation, not the GossipSub interface. */
type MeshPubSub = GossipSub & { getMeshPeers(topic: string): string[] }
type RealNode = Libp2p<{ dht: KadDHT; pubsub: MeshPubSub }>

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The 64-bit prefix of a peer's Kademlia id (sha2-256 of its multihash bytes) as two uint32. */
function kadPrefix(peerId: PeerId): [number, number] {
  const digest = createHash('sha256').update(peerId.toMultihash().bytes).digest()
  return [digest.readUInt32BE(0), digest.readUInt32BE(4)]
}

async function startNode(seed: number, index: number): Promise<RealNode> {
  return (await createLibp2p({
    addresses: { listen: [`/memory/shardnet-sim-${seed}-${index}`] },
    transports: [memory()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        initialQuerySelfInterval: 100,
      }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        scoreParams: { IPColocationFactorWeight: 0 },
      }),
    },
  })) as unknown as RealNode
}

function totalVariation(a: Histogram, b: Histogram): number {
  let distance = 0
  for (let i = 0; i < Math.max(a.bins, b.bins); i++) {
    distance += Math.abs(
      (a.counts[i] ?? 0) / Math.max(1, a.count) - (b.counts[i] ?? 0) / Math.max(1, b.count),
    )
  }
  return distance / 2
}

export async function crossCheckWithRealNodes(options: CrossCheckOptions): Promise<CrossCheckResult> {
  const log = options.log ?? (() => {})
  const n = options.nodes
  const random = new SeededRandom(options.seed ^ 0x51ed270b)
  const nodes: RealNode[] = []
  try {
    for (let i = 0; i < n; i += 10) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(10, n - i) }, (_, j) => startNode(options.seed, i + j)),
      )
      nodes.push(...batch)
    }
    const index = new Map<string, number>()
    for (const [i, node] of nodes.entries()) index.set(node.peerId.toString(), i)
    // deliveries[publication][node] = ms after publication; sources[publication][node] = who sent it first
    const publishedAt: number[] = []
    const deliveries: number[][] = []
    const sources: number[][] = []
    nodes.forEach((node, i) => {
      node.services.pubsub.topicValidators.set(TOPIC, async () => {
        await sleep(LINK_LATENCY_MS)
        return 'accept' as never
      })
      node.services.pubsub.addEventListener('message', (event) => {
        const detail = event.detail as { topic: string; data: Uint8Array }
        if (detail.topic !== TOPIC) return
        const publication = detail.data[0]
        if (publishedAt[publication] === undefined) return
        deliveries[publication][i] ??= performance.now() - publishedAt[publication]
      })
      node.services.pubsub.addEventListener('gossipsub:message', (event) => {
        const detail = event.detail as { propagationSource: PeerId; msg: { topic: string; data: Uint8Array } }
        if (detail.msg.topic !== TOPIC) return
        const publication = detail.msg.data[0]
        if (sources[publication] === undefined) return
        sources[publication][i] ??= index.get(detail.propagationSource.toString()) ?? -1
      })
      node.services.pubsub.subscribe(TOPIC)
    })
    for (let i = 1; i < n; i++) {
      const targets = new Set<number>([random.int(i)])
      for (let d = 1; d < DIALS_PER_NODE && targets.size < i; d++) targets.add(random.int(i))
      await Promise.all(
        [...targets].map((t) => nodes[i].dial(nodes[t].getMultiaddrs()[0]).catch(() => undefined)),
      )
    }
    log(`cross-check: ${n} nodes started and dialled; waiting for gossip meshes and routing tables`)
    const settleDeadline = performance.now() + (options.settleMsMax ?? 20_000)
    while (performance.now() < settleDeadline) {
      const meshMin = Math.min(...nodes.map((node) => node.services.pubsub.getMeshPeers(TOPIC).length))
      const tableMin = Math.min(
        ...nodes.map(
          (node) => (node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size,
        ),
      )
      if (meshMin >= Math.min(GOSSIP_D_LO, n - 1) && tableMin >= Math.min(4, n - 1)) break
      await sleep(250)
    }
    log(
      `cross-check: settled after ${Math.round(performance.now() - settleDeadline + (options.settleMsMax ?? 20_000))} ms`,
    )
    await sleep(2000) // two gossip heartbeats: meshes settle

    // the model's view of the same network
    const peers = new PeerTable(n)
    for (let i = 0; i < n; i++) {
      peers.add()
      peers.state[i] = PeerState.up
      peers.heartbeatPhaseMs[i] = random.float() * 1000
    }
    const modelRandom = new SeededRandom(options.seed ^ 0x2f1b)
    const links = {
      peers,
      random: modelRandom,
      lossProbability: 0,
      reachable: () => true,
      latencyMs: () => LINK_LATENCY_MS,
    }
    const gossipModel = new GossipModel(links, n)
    for (let i = 0; i < n; i++) {
      for (const other of nodes[i].services.pubsub.getMeshPeers(TOPIC)) {
        const j = index.get(other)
        if (j === undefined || j < i) continue
        const mutual = nodes[j].services.pubsub.getMeshPeers(TOPIC).includes(nodes[i].peerId.toString())
        if (!mutual && gossipModel.meshDegree[i] >= 12) continue
        if (gossipModel.meshDegree[i] < 12 && gossipModel.meshDegree[j] < 12) {
          gossipModel.mesh[i * 12 + gossipModel.meshDegree[i]++] = j
          gossipModel.mesh[j * 12 + gossipModel.meshDegree[j]++] = i
        }
      }
    }
    const up = Int32Array.from({ length: n }, (_, i) => i)

    // real publications
    const realGossip = new Histogram(1, 5000)
    const realGossipHops = new Histogram(1, 32)
    const modelGossipHops = new Histogram(1, 32)
    const modelGossip = new Histogram(1, 5000)
    for (let publication = 0; publication < PUBLICATIONS; publication++) {
      const origin = random.int(n)
      deliveries[publication] = []
      sources[publication] = []
      publishedAt[publication] = performance.now()
      await nodes[origin].services.pubsub.publish(TOPIC, Uint8Array.of(publication))
      // wait until every node has it (or the lazy-gossip window has passed)
      const deliveredBy = performance.now() + PUBLICATION_GAP_MS + 4 * LINK_LATENCY_MS
      while (performance.now() < deliveredBy && Object.keys(deliveries[publication]).length < n - 1)
        await sleep(25)
      for (let i = 0; i < n; i++) {
        if (i === origin || deliveries[publication][i] === undefined) continue
        realGossip.add(deliveries[publication][i])
        // hops: follow the first senders back to the publisher (bounded by n)
        let hops = 0
        for (let at = i; at !== origin && at >= 0 && hops <= n; at = sources[publication][at] ?? -1) hops++
        if (hops <= n) realGossipHops.add(hops)
      }
      // the model: the same origin, its real subscriber connections for floodPublish
      const subscribers = nodes[origin].services.pubsub
        .getSubscribers(TOPIC)
        .map((peer) => index.get(peer.toString()))
        .filter((j): j is number => j !== undefined)
      for (let repeat = 0; repeat < MODEL_REPEATS; repeat++) {
        gossipModel.flood(origin, 0, 100, up, n, subscribers)
        for (let i = 0; i < n; i++) {
          const t = gossipModel.arrivalMs[i]
          if (i !== origin && Number.isFinite(t)) {
            modelGossip.add(t)
            modelGossipHops.add(gossipModel.hops[i])
          }
        }
      }
    }
    const gossipTv = totalVariation(realGossipHops, modelGossipHops)
    const gossip = {
      realHopsMean: round(realGossipHops.mean()),
      modelHopsMean: round(modelGossipHops.mean()),
      hopsTv: round(gossipTv),
      realP50: realGossip.quantile(0.5),
      realP90: realGossip.quantile(0.9),
      modelP50: modelGossip.quantile(0.5),
      modelP90: modelGossip.quantile(0.9),
      realReached: round(realGossip.count / (PUBLICATIONS * (n - 1))),
      agrees: false,
    }
    gossip.agrees =
      Math.abs(realGossipHops.mean() - modelGossipHops.mean()) <= GOSSIP_HOPS_MARGIN &&
      gossipTv <= GOSSIP_TV_MARGIN &&
      gossip.realReached === 1

    // DHT: the same lookups through the real kad-dht and through the model on the real tables
    const dhtModel = new DhtModel({ ...links, random: new SeededRandom(options.seed ^ 0x77) }, n)
    const idealModel = new DhtModel({ ...links, random: new SeededRandom(options.seed ^ 0x78) }, n)
    for (let i = 0; i < n; i++) {
      const [hi, lo] = kadPrefix(nodes[i].peerId)
      dhtModel.keyHi[i] = hi
      dhtModel.keyLo[i] = lo
      idealModel.keyHi[i] = hi
      idealModel.keyLo[i] = lo
      idealModel.index(i)
    }
    for (let i = 0; i < n; i++) idealModel.buildTable(i)
    // real tables grow as lookups run (contacted peers are added): load them before every lookup
    const loadRealTables = () => {
      for (let i = 0; i < n; i++) {
        const table = (
          nodes[i].services.dht as unknown as {
            routingTable: { kb: { toIterable(): Iterable<{ peerId: PeerId }> } }
          }
        ).routingTable.kb.toIterable()
        const entries: number[] = []
        for (const entry of table) {
          const j = index.get(entry.peerId.toString())
          if (j !== undefined && j !== i) entries.push(j)
        }
        dhtModel.setTable(i, entries)
      }
    }
    const realHops = new Histogram(1, 16)
    const modelHops = new Histogram(1, 16)
    const idealHops = new Histogram(1, 16)
    let realLookupsFailed = 0
    const realLookup = async (origin: number, target: number): Promise<number> => {
      const targetId = nodes[target].peerId.toString()
      const depth = new Map<string, number>()
      let hops = 0
      for await (const event of nodes[origin].services.dht.getClosestPeers(
        nodes[target].peerId.toMultihash().bytes,
        { signal: AbortSignal.timeout(60_000) },
      )) {
        if (event.name === 'SEND_QUERY') {
          const to = event.to.toString()
          if (!depth.has(to)) depth.set(to, 1)
          if (to === targetId && hops === 0) hops = depth.get(to) ?? 1
        } else if (event.name === 'PEER_RESPONSE') {
          const d = depth.get(event.from.toString()) ?? 1
          for (const closer of event.closer)
            if (!depth.has(closer.id.toString())) depth.set(closer.id.toString(), d + 1)
        }
      }
      return hops
    }
    for (let batch = 0; batch < LOOKUPS; batch += LOOKUP_BATCH) {
      const pairs: [number, number][] = []
      for (let i = 0; i < LOOKUP_BATCH; i++) {
        const origin = random.int(n)
        let target = random.int(n)
        if (target === origin) target = (target + 1) % n
        pairs.push([origin, target])
      }
      loadRealTables()
      for (const [origin, target] of pairs) {
        for (let repeat = 0; repeat < 5; repeat++) {
          const model = dhtModel.lookup(origin, dhtModel.keyHi[target], dhtModel.keyLo[target], target)
          if (model.found) modelHops.add(model.hops)
          const ideal = idealModel.lookup(origin, idealModel.keyHi[target], idealModel.keyLo[target], target)
          if (ideal.found) idealHops.add(ideal.hops)
        }
      }
      // a lookup that times out on an overloaded machine is counted, not fatal
      const hops = await Promise.all(
        pairs.map(([origin, target]) => realLookup(origin, target).catch(() => -1)),
      )
      for (const h of hops) {
        if (h > 0) realHops.add(h)
        else realLookupsFailed++
      }
    }
    const tv = totalVariation(realHops, modelHops)
    const dht = {
      realMean: round(realHops.mean()),
      modelMean: round(modelHops.mean()),
      idealModelMean: round(idealHops.mean()),
      realFound: realHops.count,
      realFailed: realLookupsFailed,
      tv: round(tv),
      agrees:
        realHops.count >= LOOKUPS / 2 &&
        Math.abs(realHops.mean() - modelHops.mean()) <= DHT_HOPS_MARGIN &&
        tv <= DHT_TV_MARGIN,
    }
    const histogram = (h: Histogram) => Array.from(h.counts.subarray(0, 6))
    const lines = [
      `cross-check gossip (${PUBLICATIONS} publications, ${n} nodes): real delivery hops mean ${gossip.realHopsMean} ${JSON.stringify(histogram(realGossipHops))}, reached ${gossip.realReached}; model ${gossip.modelHopsMean} ${JSON.stringify(histogram(modelGossipHops))}; total variation ${gossip.hopsTv}; margin ${GOSSIP_HOPS_MARGIN} hops and TV ${GOSSIP_TV_MARGIN}: ${gossip.agrees ? 'agree' : 'DISAGREE'}`,
      `  (delivery time, informational: real p50 ${gossip.realP50} ms p90 ${gossip.realP90} ms includes this machine's CPU time per hop; model p50 ${gossip.modelP50} ms p90 ${gossip.modelP90} ms at ${LINK_LATENCY_MS} ms per hop)`,
      `cross-check dht (${LOOKUPS} lookups): real hops mean ${dht.realMean} ${JSON.stringify(histogram(realHops))}, model on the real tables ${dht.modelMean} ${JSON.stringify(histogram(modelHops))}, model on ideal tables ${dht.idealModelMean}; total variation ${dht.tv}; margin ${DHT_HOPS_MARGIN} hops and TV ${DHT_TV_MARGIN}: ${dht.agrees ? 'agree' : 'DISAGREE'}`,
    ]
    return {
      agrees: gossip.agrees && dht.agrees,
      lines,
      json: {
        nodes: n,
        linkLatencyMs: LINK_LATENCY_MS,
        gossip,
        dht: {
          ...dht,
          realHistogram: histogram(realHops),
          modelHistogram: histogram(modelHops),
          idealHistogram: histogram(idealHops),
        },
        margins: {
          gossipHops: GOSSIP_HOPS_MARGIN,
          gossipTotalVariation: GOSSIP_TV_MARGIN,
          dhtHops: DHT_HOPS_MARGIN,
          dhtTotalVariation: DHT_TV_MARGIN,
        },
      },
      gossip,
      dht,
    }
  } finally {
    await Promise.all(nodes.map(async (node) => node.stop()))
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000
}
