// Test helper: real libp2p nodes on 127.0.0.1 TCP with the shardnet protocol services, configured here
// (not through node/host.ts) so the protocol tests stand on their own. Loopback needs its own settings:
// the connection manager's allow list for 127.0.0.0/8 (it accepts 5 inbound connections/s per IP
// otherwise), no gossipsub IP-colocation penalty (it graylists peers once about a dozen share
// 127.0.0.1), DHT server mode with the passthrough mapper (kad-dht drops loopback addresses otherwise)
// and a fast first self-query (every query waits about 1 s for it otherwise).
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PeerId } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { shardnetTcp } from '../../node/tcp.js'
import { type BlockExchangeInit, blockExchange } from '../../protocols/blocks/index.js'
import {
  type CapabilityDiscoveryInit,
  capabilityDiscovery,
  shardnetDhtSelectors,
  shardnetDhtValidators,
} from '../../protocols/discovery/index.js'
import {
  TASKS_TOPIC,
  type TaskGossipInit,
  taskGossip,
  taskTopicScoreParams,
} from '../../protocols/tasks/index.js'

export const TEST_DHT_PROTOCOL = '/shardnet/kad/1.0.0'

export interface TestNodeInit {
  discovery?: CapabilityDiscoveryInit
  tasks?: TaskGossipInit
  blocks?: BlockExchangeInit
}

export async function createTestNode(init: TestNodeInit = {}) {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      allow: ['/ip4/127.0.0.0/ipcidr/8'],
      maxConnections: 500,
      // the test machine is small and shared: handshakes may wait seconds for the CPU
      dialTimeout: 30_000,
      addressDialTimeout: 20_000,
      inboundUpgradeTimeout: 30_000,
    },
    // a ping that waits seconds for a busy CPU is not a dead peer: keep the connection
    connectionMonitor: { abortConnectionOnPingFailure: false },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: TEST_DHT_PROTOCOL,
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        validators: shardnetDhtValidators(),
        selectors: shardnetDhtSelectors(),
        initialQuerySelfInterval: 100,
      }),
      pubsub: gossipsub({
        globalSignaturePolicy: StrictSign,
        allowPublishToZeroTopicPeers: true,
        scoreParams: { IPColocationFactorWeight: 0, topics: { [TASKS_TOPIC]: taskTopicScoreParams() } },
      }),
      discovery: capabilityDiscovery(init.discovery),
      tasks: taskGossip(init.tasks),
      blocks: blockExchange(init.blocks),
    },
  })
  return node
}

export type TestNode = Awaited<ReturnType<typeof createTestNode>>

/** Polls `condition` until it holds or `timeoutMs` passes (then throws with `what`). */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Dials `target` from `node`, retrying while the loaded machine is slow to accept. */
export async function connect(node: TestNode, target: TestNode): Promise<void> {
  const addr = target.getMultiaddrs()[0]
  let lastError: unknown
  for (let attempt = 0; attempt < 8; attempt++) {
    try {
      await node.dial(addr, { signal: AbortSignal.timeout(30_000) })
      return
    } catch (err) {
      lastError = err
      await new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1)))
    }
  }
  throw lastError
}

/** N started nodes, nodes 1..N-1 connected only to node 0 (the bootstrap node). */
export async function createNetwork(count: number, init: TestNodeInit = {}): Promise<TestNode[]> {
  const nodes: TestNode[] = []
  for (let i = 0; i < count; i++) nodes.push(await createTestNode(init))
  await Promise.all(nodes.map((n) => n.start()))
  const bootstrap = nodes[0]
  await Promise.all(nodes.slice(1).map((n) => connect(n, bootstrap)))
  // the DHT routing tables fill through identify; wait until the bootstrap node knows everyone
  await waitFor(
    async () => (await bootstrap.peerStore.all()).length >= count - 1,
    'the bootstrap node to know every peer',
  )
  return nodes
}

/** Waits until every node sees `count - 1` topic peers... or at least one (star topology). */
/**
 * Waits until `a` and `b` see each other subscribed to `topic`. A subscription travels on the sender's
 * outbound gossipsub stream, so then both of those streams are open: gossipsub drops a message to a peer
 * it has no outbound stream to yet, even one it already knows subscribes (it learned that on the
 * inbound stream).
 */
export async function waitForGossipLink(a: TestNode, b: TestNode, topic = TASKS_TOPIC): Promise<void> {
  await waitFor(
    () =>
      a.services.pubsub.getSubscribers(topic).some((p) => p.equals(b.peerId)) &&
      b.services.pubsub.getSubscribers(topic).some((p) => p.equals(a.peerId)),
    `${a.peerId} and ${b.peerId} to see each other subscribed to ${topic}`,
  )
}

export async function waitForTopicMesh(nodes: TestNode[], topic = TASKS_TOPIC): Promise<void> {
  await waitFor(
    () => nodes.every((n) => n.services.pubsub.getSubscribers(topic).length >= 1),
    `every node to see a subscriber of ${topic}`,
  )
  // the bootstrap node relays for the star: it must see every other node subscribed
  await waitFor(
    () => nodes[0].services.pubsub.getSubscribers(topic).length >= nodes.length - 1,
    `the bootstrap node to see all ${nodes.length - 1} subscribers`,
  )
}

export async function stopAll(nodes: TestNode[]): Promise<void> {
  await Promise.allSettled(nodes.map((n) => n.stop()))
}

export function peerIdsOf(nodes: TestNode[]): PeerId[] {
  return nodes.map((n) => n.peerId)
}
