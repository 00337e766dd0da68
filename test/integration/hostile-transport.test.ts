// Hostile peers against the transport layer, each a stranger's (or a member's) real libp2p node on
// 127.0.0.1: a trickled 0xff length prefix on raft and on blocks is cut off after the largest frame's
// varint length, counted, with nothing left charged; a stranger's raft stream is aborted before any byte
// of it is read; a member over its stream budget is refused and one that sends nothing is closed at the
// first-frame deadline; the host's connection limits hold for loopback peers (per IP, pending
// handshakes); a gossipsub flood is throttled to the peer's rate and its connections closed.
import { type Socket, connect as tcpConnect } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p, Stream } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { afterAll, describe, expect, it } from 'vitest'
import type { Daemon } from '../../node/daemon.js'
import { createHost, inboundRefusals, type ShardnetHost, throttleCounts } from '../../node/host.js'
import { shardnetTcp } from '../../node/tcp.js'
import { RAFT_PROTOCOL, type RaftTransport, type RaftTransportInit } from '../../protocols/raft/transport.js'
import { varintBytes } from '../../protocols/wire/framing.js'

function varintPrefix(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}

import { RaftFrame } from '../../protocols/wire/raft.js'
import { BLOCK_REQUEST_BYTES_MAX } from '../../protocols/wire/validation/index.js'
import { startTestDaemon, waitUntil } from './daemon-helpers.js'
import { createRaftNode } from './raft-cluster.js'

const BLOCKS_PROTOCOL = '/shardnet/blocks/1.0.0'
const cleanups: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function stranger(): Promise<Libp2p> {
  const node = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  })
  await node.start()
  cleanups.push(async () => node.stop())
  return node
}

/** A raft service whose one group counts `members` (peer id strings) as its members. */
async function raftService(members: () => string[], init: RaftTransportInit = {}) {
  const node = await createRaftNode(init)
  await node.start()
  cleanups.push(async () => node.stop())
  const transport: RaftTransport = node.services.raft
  transport.join('hostile-group', { isMember: (peer) => members().includes(peer), onMessages: () => {} })
  return { node, transport }
}

/**
 * Sends 0xff one byte at a time (every 20 ms) until the stream is closed or `max` bytes went out;
 * returns how many were sent.
 */
async function trickle(stream: Stream, max = 64): Promise<number> {
  let sent = 0
  while (sent < max && stream.status === 'open' && stream.writeStatus === 'writable') {
    try {
      stream.send(Uint8Array.of(0xff))
    } catch {
      break
    }
    sent++
    await sleep(20)
  }
  return sent
}

async function closedWithin(stream: Stream, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (stream.status === 'open' && Date.now() < deadline) await sleep(10)
  return stream.status !== 'open'
}

describe('hostile peers on the transport', () => {
  it('cuts a member trickling 0xff on raft off after the largest frame varint, counted', async () => {
    let attacker: Libp2p | undefined
    const { node, transport } = await raftService(() => (attacker ? [attacker.peerId.toString()] : []))
    attacker = await stranger()
    const stream = await attacker.dialProtocol(node.getMultiaddrs(), RAFT_PROTOCOL)
    const sent = await trickle(stream)
    expect(await closedWithin(stream, 2000)).toBe(true)
    // 16 MiB frames: a 4-byte prefix at most; a byte or two more may be in flight when the reset lands
    expect(sent).toBeGreaterThanOrEqual(varintBytes(16 << 20))
    expect(sent).toBeLessThanOrEqual(varintBytes(16 << 20) + 3)
    await waitUntil(() => transport.stats.refusedMalformed >= 1, 'the prefix to be counted', 5000)
    expect(transport.budgets.refused.oversized).toBe(1)
    expect(transport.stats.framesReceived).toBe(0)
    // nothing stays charged to the peer
    await waitUntil(() => transport.budgets.bytesInFlight === 0, 'the stream to be refunded', 5000)
    expect(transport.budgets.peerUsage(attacker.peerId)).toEqual({ streams: 0, bytes: 0 })
  })

  it('aborts a stranger raft stream before reading any byte of it', async () => {
    const { node, transport } = await raftService(() => [])
    const attacker = await stranger()
    const stream = await attacker.dialProtocol(node.getMultiaddrs(), RAFT_PROTOCOL)
    // a well-formed frame that would be counted (as a non-member's) if the transport decoded it
    const frame = RaftFrame.encode({ group: 'hostile-group', messages: [] })
    try {
      stream.send(Uint8Array.from([frame.byteLength, ...frame]))
    } catch {
      // already reset
    }
    expect(await closedWithin(stream, 2000)).toBe(true)
    await waitUntil(() => transport.stats.refusedStranger >= 1, 'the stranger to be counted', 5000)
    expect(transport.budgets.refused.stranger).toBeGreaterThanOrEqual(1)
    expect(transport.stats.framesReceived).toBe(0)
    expect(transport.stats.refusedNonMember).toBe(0)
    expect(transport.stats.refusedMalformed).toBe(0)
    expect(transport.budgets.bytesInFlight).toBe(0)
  })

  it('refuses a member over its stream budget, closes a stream whose first frame never comes', async () => {
    let attacker: Libp2p | undefined
    const { node, transport } = await raftService(() => (attacker ? [attacker.peerId.toString()] : []), {
      streamsPerPeerMax: 2,
      firstFrameTimeoutMs: 1500,
    })
    attacker = await stranger()
    const connection = await attacker.dial(node.getMultiaddrs())
    const streams: Stream[] = []
    for (let i = 0; i < 3; i++) {
      const stream = await connection.newStream(RAFT_PROTOCOL)
      try {
        // the start of a frame that never completes
        stream.send(Uint8Array.of(0x05))
      } catch {
        // refused already
      }
      streams.push(stream)
      await sleep(100)
    }
    await waitUntil(() => transport.stats.refusedOverBudget >= 1, 'the third stream to be refused', 5000)
    expect(await closedWithin(streams[2], 2000)).toBe(true)
    expect(streams[0].status).toBe('open')
    expect(transport.budgets.refused.streams).toBe(1)
    // the two admitted streams never complete a frame: closed at the first-frame deadline
    await waitUntil(() => transport.stats.refusedIdle >= 2, 'the idle streams to be closed', 10_000)
    expect(await closedWithin(streams[0], 2000)).toBe(true)
    expect(transport.budgets.peerUsage(attacker.peerId)).toEqual({ streams: 0, bytes: 0 })
  })

  it('cuts a stranger trickling 0xff on a daemon blocks protocol off after its request varint', async () => {
    const daemon: Daemon = await startTestDaemon()
    cleanups.push(async () => daemon.stop())
    const attacker = await stranger()
    const stream = await attacker.dialProtocol(daemon.host.getMultiaddrs(), BLOCKS_PROTOCOL)
    const sent = await trickle(stream)
    expect(await closedWithin(stream, 2000)).toBe(true)
    expect(sent).toBeGreaterThanOrEqual(varintBytes(BLOCK_REQUEST_BYTES_MAX))
    expect(sent).toBeLessThanOrEqual(varintBytes(BLOCK_REQUEST_BYTES_MAX) + 3)
    await waitUntil(() => daemon.blocks.counters().rejected.oversized >= 1, 'the prefix to be counted', 5000)
  })

  describe('connection limits on loopback', () => {
    async function host(inbound: Parameters<typeof createHost>[0]['inbound']): Promise<ShardnetHost> {
      const node = await createHost({
        privateKey: await generateKeyPair('Ed25519'),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        inbound,
      })
      await node.start()
      cleanups.push(async () => node.stop())
      return node
    }

    /**
     * Whether `from` gets a working connection to `to`: the dialer's side of an upgrade can finish
     * (Noise's last message, an optimistic muxer choice) before the listener refuses it, so a stream
     * must open on it too.
     */
    async function tryDial(from: Libp2p, to: Multiaddr[]): Promise<boolean> {
      try {
        const connection = await from.dial(to, { signal: AbortSignal.timeout(5000) })
        const stream = await connection.newStream('/ipfs/id/1.0.0', { signal: AbortSignal.timeout(5000) })
        stream.abort(new Error('probe done'))
        return true
      } catch {
        return false
      }
    }

    it('holds inbound connections per IP to the limit, loopback included', async () => {
      const target = await host({ perIpMax: 3 })
      const attackers = await Promise.all(Array.from({ length: 5 }, () => stranger()))
      const results: boolean[] = []
      for (const attacker of attackers) results.push(await tryDial(attacker, target.getMultiaddrs()))
      expect(results.filter(Boolean)).toHaveLength(3)
      expect(inboundRefusals(target)?.perIp).toBe(2)
      const inbound = target.getConnections().filter((c) => c.direction === 'inbound')
      expect(inbound).toHaveLength(3)
      // one leaves: its room is free again
      await attackers[0].stop()
      await waitUntil(() => target.getConnections().length === 2, 'the connection to close', 5000)
      expect(await tryDial(attackers[4], target.getMultiaddrs())).toBe(true)
    })

    it('refuses a new connection while one IP holds its pending handshakes', async () => {
      const target = await host({ pendingPerIpMax: 2 })
      const address = target.getMultiaddrs()[0]
      const port = Number(address.getComponents().find((c) => c.name === 'tcp')?.value)
      const sockets: Socket[] = []
      for (let i = 0; i < 2; i++) {
        const socket = tcpConnect({ host: '127.0.0.1', port })
        socket.on('error', () => {})
        // the first bytes of multistream-select, then nothing: a handshake that never ends
        socket.write(Uint8Array.of(0x13, 0x2f))
        sockets.push(socket)
      }
      await sleep(300)
      const attacker = await stranger()
      expect(await tryDial(attacker, [address])).toBe(false)
      expect(inboundRefusals(target)?.pendingPerIp).toBeGreaterThanOrEqual(1)
      for (const socket of sockets) socket.destroy()
      await sleep(300)
      expect(await tryDial(attacker, [address])).toBe(true)
    })

    it('throttles a gossipsub flood to the peer rate, then bans a peer that ignores it', async () => {
      const target = await host({})
      const attacker = await stranger()
      const connection = await attacker.dial(target.getMultiaddrs())
      const before = { ...throttleCounts }
      // frames just under gossipsub's 1 MiB limit: cheap for it to refuse, so the rate limit is what
      // bounds the flood (tiny frames would be bounded by the CPU of decoding them)
      const frameBytes = (1 << 20) - 16
      const frame = new Uint8Array(varintBytes(frameBytes) + frameBytes)
      frame.set(varintPrefix(frameBytes))
      const CHUNK = 64 << 10

      /** Writes frames as fast as the window allows until `until`; returns the bytes written. */
      async function flood(stream: Stream, until: number): Promise<number> {
        let sent = 0
        while (Date.now() < until && stream.status === 'open') {
          const offset = sent % frame.byteLength
          const chunk = frame.subarray(offset, Math.min(offset + CHUNK, frame.byteLength))
          try {
            if (!stream.send(chunk)) {
              // the window is spent: wait for more of it (or the reset)
              const deadline = Date.now() + 500
              while (stream.writableNeedsDrain && stream.status === 'open' && Date.now() < deadline)
                await sleep(10)
              if (stream.writableNeedsDrain) break
            }
            sent += chunk.byteLength
          } catch {
            break
          }
        }
        return sent
      }

      // a peer that keeps to flow control: one stream at a time, for 3 s
      let sent = 0
      const started = Date.now()
      while (Date.now() - started < 3000 && connection.status === 'open') {
        let stream: Stream
        try {
          stream = await connection.newStream('/meshsub/1.1.0', { signal: AbortSignal.timeout(2000) })
        } catch {
          await sleep(50)
          continue
        }
        sent += await flood(stream, started + 3000)
        stream.abort(new Error('next'))
      }
      // 1 MiB burst and 256 KiB/s for 3 s, plus the window of the stream it paused (up to 4 MiB once
      // grown) and 256 KiB on each stream it was refused before being cut off
      expect(sent).toBeLessThan(8 << 20)
      expect(throttleCounts.pausedStreams).toBeGreaterThan(before.pausedStreams)

      // one that opens streams side by side to get a window on each: refused, then cut off
      const burst = Date.now()
      await Promise.allSettled(
        Array.from({ length: 12 }, async () => {
          const stream = await connection.newStream('/meshsub/1.1.0', { signal: AbortSignal.timeout(2000) })
          await flood(stream, burst + 2000)
        }),
      )
      await waitUntil(() => connection.status !== 'open', 'the flooding peer to be disconnected', 5000)
      expect(throttleCounts.refusedStreams + throttleCounts.abortedStreams).toBeGreaterThan(
        before.refusedStreams + before.abortedStreams,
      )
      // and kept out for a while
      expect(await tryDial(attacker, target.getMultiaddrs())).toBe(false)
      expect(inboundRefusals(target)?.banned).toBeGreaterThanOrEqual(1)
    })
  })
})
