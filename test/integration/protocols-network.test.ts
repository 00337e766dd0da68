// Proves the protocol services work across a real network: 10 libp2p nodes on 127.0.0.1 TCP bootstrap
// from one, then a block is fetched and verified from a provider two hops away, every node finds every
// other through the DHT, a capability query finds all webgpu and cpu workers with verified records, and
// one announcement reaches all 10 nodes.
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ReceivedAnnouncement } from '../../protocols/tasks/index.js'
import { createNetwork, stopAll, type TestNode, waitFor, waitForTopicMesh } from './protocols-host.js'

const NODE_COUNT = 10

describe('a 10-node shardnet network on loopback', () => {
  let nodes: TestNode[] = []

  beforeAll(async () => {
    nodes = await createNetwork(NODE_COUNT)
  }, 120_000)

  afterAll(async () => {
    await stopAll(nodes)
  })

  it('fetches a 3 MiB block from a provider two hops away and verifies it', async () => {
    // pick a provider/fetcher pair that share no connection: both reach each other only through node 0
    let provider = nodes[1]
    let fetcher = nodes[2]
    outer: for (const a of nodes.slice(1)) {
      for (const b of nodes.slice(1)) {
        if (a !== b && a.getConnections(b.peerId).length === 0) {
          provider = a
          fetcher = b
          break outer
        }
      }
    }
    expect(fetcher.getConnections(provider.peerId)).toHaveLength(0)
    const bytes = crypto.getRandomValues(new Uint8Array(65536))
    const block = new Uint8Array(3 * 1024 * 1024 + 17)
    for (let i = 0; i < block.length; i += bytes.length) block.set(bytes.subarray(0, block.length - i), i)
    const cid = await provider.services.blocks.put(block)
    expect(cid.version).toBe(1)
    expect(cid.code).toBe(raw.code)

    const fetched = await fetcher.services.blocks.get(cid, { signal: AbortSignal.timeout(60_000) })
    expect(fetched.byteLength).toBe(block.byteLength)
    const again = CID.createV1(raw.code, await sha256.digest(fetched))
    expect(again.equals(cid)).toBe(true)
    expect(fetcher.services.blocks.counters().fetched).toBe(1)
    expect(provider.services.blocks.counters().served).toBe(1)
    // now held locally: a second get needs no network
    expect(await fetcher.services.blocks.store.has(cid)).toBe(true)
  })

  it('every node finds every other node through the DHT', async () => {
    // nodes 1..9 dialed only node 0 and gossipsub peer exchange is off, so whatever they know of each
    // other came from DHT queries (the self-queries that fill the routing table, or this lookup)
    for (const node of nodes) {
      for (const other of nodes) {
        if (other === node) continue
        const info = await node.peerRouting.findPeer(other.peerId, { signal: AbortSignal.timeout(30_000) })
        expect(info.id.equals(other.peerId)).toBe(true)
        expect(info.multiaddrs.length).toBeGreaterThan(0)
      }
    }
  })

  it('a capability query finds every webgpu and every cpu worker with a verified record', async () => {
    const webgpu = nodes.filter((_, i) => i % 2 === 0)
    const cpu = nodes.filter((_, i) => i % 2 === 1)
    await Promise.all(
      nodes.map((node, i) =>
        node.services.discovery.advertise(
          i % 2 === 0
            ? { capability: 'webgpu', adapterName: `lavapipe-${i}`, maxBufferBytes: 2 ** 30, gflops: 10 + i }
            : { capability: 'cpu', adapterName: 'reference', maxBufferBytes: 2 ** 28, gflops: 1 },
          { signal: AbortSignal.timeout(60_000) },
        ),
      ),
    )
    // ask from a node of the other kind, so the result cannot be only local knowledge
    const asker = nodes[NODE_COUNT - 1]
    for (const [capability, expected] of [
      ['webgpu', webgpu],
      ['cpu', cpu],
    ] as const) {
      const found = new Map<string, number>()
      for await (const worker of asker.services.discovery.findWorkers(capability, {
        limit: 100,
        signal: AbortSignal.timeout(60_000),
      })) {
        expect(worker.record.capability).toBe(capability)
        expect(worker.record.peerId.equals(worker.peerId)).toBe(true)
        expect(worker.record.addresses.length).toBeGreaterThan(0)
        found.set(worker.peerId.toString(), worker.record.gflops)
      }
      expect([...found.keys()].sort()).toEqual(expected.map((n) => n.peerId.toString()).sort())
      if (capability === 'webgpu') {
        for (const [i, node] of nodes.entries()) {
          if (i % 2 === 0) expect(found.get(node.peerId.toString())).toBe(10 + i)
        }
      }
    }
    expect(asker.services.discovery.counters().rejected['bad-signature']).toBe(0)
  })

  it('an announcement reaches all 10 nodes', async () => {
    await waitForTopicMesh(nodes)
    const received = new Map<string, ReceivedAnnouncement>()
    const listeners = nodes.map((node) => {
      const listener = (evt: CustomEvent<ReceivedAnnouncement>) =>
        received.set(node.peerId.toString(), evt.detail)
      node.services.tasks.addEventListener('announcement', listener)
      return () => node.services.tasks.removeEventListener('announcement', listener)
    })
    const submitter = nodes[4]
    const taskCid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('task spec 1')))
    const sent = await submitter.services.tasks.announce({
      taskCid,
      kind: 'train',
      groups: 2,
      groupSize: 3,
      requirements: { backend: 'webgpu', minMemoryBytes: 2 ** 26, minGflops: 5 },
    })
    // the submitter itself does not receive its own message (emitSelf is off): the 9 others do
    await waitFor(() => received.size === NODE_COUNT - 1, 'the announcement to reach every other node')
    for (const node of nodes) {
      if (node === submitter) continue
      const got = received.get(node.peerId.toString())!
      expect(got.announcement.taskCid.equals(taskCid)).toBe(true)
      expect(got.announcement.submitter.equals(submitter.peerId)).toBe(true)
      expect(got.announcement.requirements).toEqual({
        backend: 'webgpu',
        minMemoryBytes: 2 ** 26,
        minGflops: 5,
      })
      expect(new Uint8Array(got.announcement.nonce)).toEqual(new Uint8Array(sent.nonce))
      expect(node.services.tasks.counters().accepted).toBe(1)
    }
    expect(submitter.services.tasks.counters().published).toBe(1)
    for (const remove of listeners) remove()
  })
})
