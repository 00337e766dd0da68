// Proves the shardnet wire format is usable without shardnet code: a plain js-libp2p node, configured
// here only from public packages and the generated codecs of our .proto files (protocols/wire/*), joins a
// 5-node shardnet network on loopback, finds the webgpu capability providers through the DHT, verifies
// their signed records with its own validator written from the spec, and decodes a gossiped announcement.

import type { Message } from '@libp2p/gossipsub'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { peerIdFromMultihash, peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CapabilityRecord, SignedCapabilityRecord } from '../../protocols/wire/capability.js'
import { TaskAnnouncement } from '../../protocols/wire/tasks.js'
// the network under test is built by the protocols' test host; the interop node below uses none of it
import { createNetwork, stopAll, type TestNode, waitFor } from './protocols-host.js'

// What a third-party implementation needs to know, as written in the .proto comments and docs/protocols.md:
const DHT_PROTOCOL = '/shardnet/kad/1.0.0'
const TASKS_TOPIC = 'shardnet/tasks/1'
const SIGNATURE_DOMAIN = new TextEncoder().encode('shardnet/capability-record/1')

/** An independent record validator: the value must be signed by the peer named in `/shardnet/cap/<id>`. */
async function validateShardnetRecord(key: Uint8Array, value: Uint8Array): Promise<void> {
  const [, namespace, kind, id] = new TextDecoder().decode(key).split('/')
  if (namespace !== 'shardnet' || kind !== 'cap') throw new Error('not a capability key')
  const signed = SignedCapabilityRecord.decode(value)
  const record = CapabilityRecord.decode(signed.record)
  const signer = peerIdFromMultihash(Digest.decode(record.peerId))
  if (!signer.equals(peerIdFromString(id))) throw new Error('record of another peer')
  if (record.expiresMs <= Date.now()) throw new Error('expired')
  const message = new Uint8Array([...SIGNATURE_DOMAIN, ...signed.record])
  if (!(await signer.publicKey!.verify(message, signed.signature))) throw new Error('bad signature')
}

async function createPlainNode() {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        validators: { shardnet: validateShardnetRecord },
        selectors: { shardnet: () => 0 },
        initialQuerySelfInterval: 100,
      }),
      pubsub: gossipsub({
        globalSignaturePolicy: StrictSign,
        allowPublishToZeroTopicPeers: true,
        scoreParams: { IPColocationFactorWeight: 0 },
      }),
    },
  })
}

describe('interop with a plain js-libp2p node', () => {
  let network: TestNode[] = []
  let plain: Awaited<ReturnType<typeof createPlainNode>>

  beforeAll(async () => {
    network = await createNetwork(5)
    await Promise.all(
      network.map((node, i) =>
        node.services.discovery.advertise({
          capability: i < 3 ? 'webgpu' : 'cpu',
          adapterName: `adapter-${i}`,
          maxBufferBytes: 1 << 30,
          gflops: 4 + i,
        }),
      ),
    )
    plain = await createPlainNode()
    await plain.dial(network[0].getMultiaddrs()[0])
    // joined: connected to every node and knowing each as a DHT peer (its routing table), so a lookup
    // can ask every node, and each webgpu node holds its own provider record. A lookup started right
    // after the first dial can end within ~130 ms with only 2 of the 3 providers
    await waitFor(async () => {
      for (const node of network) {
        if (plain.getConnections(node.peerId).length === 0) return false
        const known = await plain.peerStore.get(node.peerId).catch(() => undefined)
        if (!known?.protocols.includes(DHT_PROTOCOL)) return false
      }
      return true
    }, 'the plain node to know every shardnet node as a DHT peer')
  }, 120_000)

  afterAll(async () => {
    await plain?.stop()
    await stopAll(network)
  })

  it('finds every webgpu provider and verifies its record from the DHT', async () => {
    const webgpuCid = CID.createV1(
      raw.code,
      await sha256.digest(new TextEncoder().encode('shardnet/capability/webgpu/1')),
    )
    const found = new Set<string>()
    for await (const provider of plain.contentRouting.findProviders(webgpuCid, {
      signal: AbortSignal.timeout(30_000),
    })) {
      found.add(provider.id.toString())
      if (found.size === 3) break
    }
    expect([...found].sort()).toEqual(
      network
        .slice(0, 3)
        .map((n) => n.peerId.toString())
        .sort(),
    )
    for (const id of found) {
      const value = await plain.contentRouting.get(new TextEncoder().encode(`/shardnet/cap/${id}`), {
        signal: AbortSignal.timeout(30_000),
      })
      await validateShardnetRecord(new TextEncoder().encode(`/shardnet/cap/${id}`), value)
      const record = CapabilityRecord.decode(SignedCapabilityRecord.decode(value).record)
      expect(record.backend).toBe(CapabilityRecord.Backend.WEBGPU)
      const index = network.findIndex((n) => n.peerId.toString() === id)
      expect(record.adapterName).toBe(`adapter-${index}`)
      expect(record.gflops).toBe(4 + index)
    }
  })

  it('decodes an announcement gossiped by a shardnet node', async () => {
    const received: TaskAnnouncement[] = []
    plain.services.pubsub.addEventListener('message', (evt: CustomEvent<Message>) => {
      if (evt.detail.topic === TASKS_TOPIC) received.push(TaskAnnouncement.decode(evt.detail.data))
    })
    plain.services.pubsub.subscribe(TASKS_TOPIC)
    // both ways: a subscription travels on its sender's outbound gossipsub stream, and gossipsub drops
    // a message to a peer it has no outbound stream to yet
    await waitFor(
      () =>
        network[0].services.pubsub.getSubscribers(TASKS_TOPIC).some((p) => p.equals(plain.peerId)) &&
        plain.services.pubsub.getSubscribers(TASKS_TOPIC).some((p) => p.equals(network[0].peerId)),
      'the shardnet node and the plain node to see each other subscribed',
    )
    const taskCid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('interop task')))
    await network[2].services.tasks.announce({ taskCid, kind: 'infer', groups: 1, groupSize: 3 })
    await waitFor(() => received.length === 1, 'the plain node to receive the announcement')
    const a = received[0]
    expect(CID.decode(a.taskCid).equals(taskCid)).toBe(true)
    expect(a.kind).toBe(TaskAnnouncement.Kind.INFER)
    expect(a.groupSize).toBe(3)
    expect(peerIdFromMultihash(Digest.decode(a.submitter)).equals(network[2].peerId)).toBe(true)
    expect(a.expiresMs).toBeGreaterThan(Date.now())
  })
})
