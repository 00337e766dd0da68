// Proves that 10 real daemons (in-process, TCP on 127.0.0.1, durable data dirs) bootstrapping from
// one form a working network: every node finds every other through the DHT, a capability query finds
// every webgpu and every cpu worker, an announcement reaches all 10, a block fetched from a peer two
// hops away verifies and lands in the fetcher's durable store, and /metrics reports it all.
import { peerIdFromString } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Daemon } from '../../node/daemon.js'
import { fixedCapabilityProbe, plainCpuProbe } from '../../node/executor/capability.js'
import type { ReceivedAnnouncement } from '../../protocols/tasks/index.js'
import { TASKS_TOPIC } from '../../protocols/tasks/index.js'
import { apiRequest, startTestDaemon, waitUntil } from './daemon-helpers.js'

const NODE_COUNT = 10
const WEBGPU_NODES = new Set([2, 5, 7, 9])

// The webgpu nodes advertise a fixed webgpu record: this test is about discovery, not measurement
// (a real adapter measurement needs kernels/, which this branch does not have yet).
function probeFor(index: number) {
  if (!WEBGPU_NODES.has(index)) return plainCpuProbe({ size: 32, repeats: 1 })
  return fixedCapabilityProbe({
    backend: 'webgpu',
    adapterName: `test webgpu adapter ${index}`,
    isFallbackAdapter: true,
    maxBufferBytes: 256 * 1024 * 1024,
    memoryBytes: 8 * 1024 ** 3,
    matmulGflops: 10 + index,
    matmulSize: 256,
    backends: [
      {
        backend: 'webgpu',
        adapterName: `test webgpu adapter ${index}`,
        matmulGflops: 10 + index,
        inUse: true,
      },
    ],
  })
}

describe('a network of 10 shardnet daemons on loopback', () => {
  const daemons: Daemon[] = []

  beforeAll(async () => {
    daemons.push(await startTestDaemon({ capabilityProbe: probeFor(0), libp2pMetrics: true }))
    const bootstrap = daemons[0].addresses()
    const rest = await Promise.all(
      Array.from({ length: NODE_COUNT - 1 }, (_, offset) =>
        startTestDaemon({ capabilityProbe: probeFor(offset + 1), overrides: { bootstrap } }),
      ),
    )
    daemons.push(...rest)
    await waitUntil(
      () => daemons.slice(1).every((daemon) => daemon.host.getConnections(daemons[0].peerId).length > 0),
      'every node to connect to the bootstrap node',
    )
    await waitUntil(
      () => daemons.every((daemon) => daemon.host.services.discovery.current() !== undefined),
      'every node to publish its capability record',
    )
  }, 120_000)

  afterAll(async () => {
    await Promise.allSettled(daemons.map((daemon) => daemon.stop()))
  })

  it('every node finds every other node through the DHT', async () => {
    for (const seeker of daemons) {
      await Promise.all(
        daemons
          .filter((target) => target !== seeker)
          .map(async (target) => {
            let lastFailure = ''
            // a query can fail on a loaded machine (a peer slow to answer): ask again until the deadline
            await waitUntil(
              async () => {
                try {
                  const found = await seeker.host.peerRouting.findPeer(target.peerId, {
                    signal: AbortSignal.timeout(20_000),
                  })
                  const addresses = found.multiaddrs.map((address) => address.toString())
                  const matches = addresses.some((address) =>
                    target.addresses().some((own) => own.startsWith(address)),
                  )
                  lastFailure = matches
                    ? ''
                    : `addresses ${addresses.join(' ')} are not ${target.addresses().join(' ')}`
                  return found.id.equals(target.peerId) && matches
                } catch (error) {
                  lastFailure = String(error)
                  return false
                }
              },
              () => `${seeker.peerId} to find ${target.peerId} (last failure: ${lastFailure})`,
              90_000,
              500,
            )
          }),
      )
    }
  }, 300_000)

  it('a capability query finds every webgpu and every cpu worker, with their records', async () => {
    const expected = (capability: 'webgpu' | 'cpu') =>
      daemons
        .filter((_, index) => WEBGPU_NODES.has(index) === (capability === 'webgpu'))
        .map((daemon) => daemon.peerId.toString())
    for (const capability of ['webgpu', 'cpu'] as const) {
      for (const seeker of daemons) {
        const want = expected(capability)
          .filter((id) => id !== seeker.peerId.toString())
          .sort()
        let found: string[] = []
        // provider records spread as the network forms: poll until the lookup sees them all
        await waitUntil(
          async () => {
            const peers = await seeker.peers({ capability, signal: AbortSignal.timeout(20_000) })
            found = peers.map((peer) => peer.peerId).sort()
            return found.length === want.length
          },
          () =>
            `node ${seeker.peerId} to find all ${want.length} ${capability} workers (found ${found.length})`,
          90_000,
          500,
        )
        expect(found).toEqual(want)
      }
    }
    const webgpu = await daemons[0].peers({ capability: 'webgpu' })
    for (const peer of webgpu) {
      const index = daemons.findIndex((daemon) => daemon.peerId.toString() === peer.peerId)
      expect(peer.capability).toMatchObject({
        backend: 'webgpu',
        adapterName: `test webgpu adapter ${index}`,
      })
      expect(peer.source).toBe('capability-record')
    }
    // the API and the CLI see the same thing
    const response = await apiRequest(daemons[3], '/v1/peers?capability=cpu')
    const { peers } = (await response.json()) as {
      peers: Array<{ peerId: string; capability: { backend: string } }>
    }
    expect(peers.map((peer) => peer.peerId).sort()).toEqual(
      expected('cpu')
        .filter((id) => id !== daemons[3].peerId.toString())
        .sort(),
    )
    expect(peers.every((peer) => peer.capability.backend === 'cpu')).toBe(true)
  }, 300_000)

  it('an announcement reaches all 10 nodes', async () => {
    await waitUntil(
      () => daemons.every((daemon) => daemon.host.services.pubsub.getSubscribers(TASKS_TOPIC).length >= 1),
      'every node to see a subscriber of the tasks topic',
    )
    const announcer = daemons[4]
    const received = new Map<string, ReceivedAnnouncement>()
    const listeners = daemons
      .filter((daemon) => daemon !== announcer)
      .map((daemon) => {
        const listener = (event: CustomEvent<ReceivedAnnouncement>) => {
          received.set(daemon.peerId.toString(), event.detail)
        }
        daemon.host.services.tasks.addEventListener('announcement', listener)
        return () => daemon.host.services.tasks.removeEventListener('announcement', listener)
      })
    try {
      const spec = new TextEncoder().encode(JSON.stringify({ model: 'mnist-mlp', steps: 600 }))
      const taskCid = await announcer.host.services.blocks.put(spec)
      const sent = await announcer.host.services.tasks.announce({
        taskCid,
        kind: 'train',
        groups: 2,
        groupSize: 3,
      })
      await waitUntil(
        () => received.size === NODE_COUNT - 1,
        'the announcement to reach the other 9 nodes',
        30_000,
      )
      for (const { announcement } of received.values()) {
        expect(announcement.taskCid.toString()).toBe(taskCid.toString())
        expect(announcement.submitter.toString()).toBe(announcer.peerId.toString())
        expect([...announcement.nonce]).toEqual([...sent.nonce])
      }
    } finally {
      for (const remove of listeners) remove()
    }
    const metrics = await (await apiRequest(daemons[6], '/metrics')).text()
    expect(metrics).toMatch(
      /shardnet_gossip_messages_total\{topic="shardnet\/tasks\/1",result="accepted",reason=""\} [1-9]/,
    )
  }, 120_000)

  it('a block fetched from a peer two hops away verifies and is stored durably', async () => {
    const holder = daemons[8]
    const fetcher = daemons[1]
    // 2.5 MiB of patterned bytes: more than two 1 MiB chunks
    const bytes = new Uint8Array(2.5 * 1024 * 1024)
    for (let index = 0; index < bytes.length; index++) bytes[index] = (index * 31 + (index >> 10)) & 0xff
    const cid = await holder.host.services.blocks.put(bytes)
    // not directly connected: the fetcher must find the holder through the DHT (via the bootstrap node)
    await fetcher.host.hangUp(holder.peerId)
    await holder.host.hangUp(fetcher.peerId)
    await waitUntil(
      () => fetcher.host.getConnections(holder.peerId).length === 0,
      'the direct connection to close',
    )
    expect(await fetcher.blockStore.has(cid)).toBe(false)
    const fetched = await fetcher.host.services.blocks.get(cid, { signal: AbortSignal.timeout(60_000) })
    expect(fetched.byteLength).toBe(bytes.byteLength)
    expect(Buffer.compare(Buffer.from(fetched), Buffer.from(bytes))).toBe(0)
    // the fetcher now holds a verified copy on disk and serves it through its API
    expect(await fetcher.blockStore.has(cid)).toBe(true)
    const response = await apiRequest(fetcher, `/v1/blocks?cid=${cid.toString()}`)
    expect(response.status).toBe(200)
    const body = (await response.json()) as { data: string }
    expect(Buffer.compare(Buffer.from(body.data, 'base64'), Buffer.from(bytes))).toBe(0)
    expect(fetcher.host.services.blocks.counters().rejected['hash-mismatch']).toBe(0)
    const metrics = await (await apiRequest(holder, '/metrics')).text()
    expect(metrics).toMatch(
      /shardnet_stream_bytes_total\{protocol="\/shardnet\/blocks\/1.0.0",direction="sent"\} \d{7}/,
    )
  }, 120_000)

  it('reports status and metrics through the control API', async () => {
    const response = await apiRequest(daemons[0], '/v1/status')
    const status = (await response.json()) as {
      peerId: string
      peers: number
      capability: { backend: string }
    }
    expect(status.peerId).toBe(daemons[0].peerId.toString())
    expect(status.peers).toBeGreaterThanOrEqual(NODE_COUNT - 1)
    expect(status.capability.backend).toBe('cpu')
    const metrics = await (await apiRequest(daemons[0], '/metrics')).text()
    expect(metrics).toMatch(/shardnet_peers (9|\d\d)/)
    expect(metrics).toMatch(/shardnet_dht_routing_table_peers [1-9]/)
    expect(metrics).toContain('shardnet_backend_info{backend="cpu"')
    // libp2p's own metrics share the registry on the node that registered them
    expect(metrics).toContain('libp2p_data_transfer_bytes_total')
    expect(peerIdFromString(status.peerId).type).toBe('Ed25519')
  })
})
