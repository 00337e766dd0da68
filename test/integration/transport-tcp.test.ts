// node/tcp.ts on real libp2p nodes over loopback TCP (Noise + yamux): every send is one system call,
// the bytes arrive intact in both directions and between concurrent streams, and a node on the
// coalescing transport talks to one on libp2p's plain TCP transport.
import { createHash } from 'node:crypto'
import { Socket } from 'node:net'
import type { Libp2p } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { SeededRandom } from '../../kernels/data/random.js'
import { shardnetTcp } from '../../node/tcp.js'

const ECHO = '/shardnet-test/echo/1.0.0'
const MESSAGE_BYTES_MAX = 4 << 20

const nodes: Libp2p[] = []

afterEach(async () => {
  vi.restoreAllMocks()
  await Promise.all(nodes.splice(0).map((node) => node.stop()))
})

async function startNode(transport: 'shardnet' | 'plain'): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [transport === 'shardnet' ? shardnetTcp() : tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
  })
  nodes.push(node)
  // echoes each length-prefixed message back on the same stream
  await node.handle(ECHO, async (stream) => {
    const framed = lpStream(stream, { maxDataLength: MESSAGE_BYTES_MAX })
    try {
      for (;;) await framed.write(await framed.read())
    } catch {
      stream.abort(new Error('echo ended'))
    }
  })
  return node
}

function randomBytes(length: number, seed: number): Uint8Array {
  const random = SeededRandom.stream(seed, 'transport-tcp')
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random.float() * 256)
  return bytes
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** Sends `payload` from `from` to `to` and reads the echo; returns the echo. */
async function echo(from: Libp2p, to: Libp2p, payload: Uint8Array): Promise<Uint8Array> {
  const stream = await from.dialProtocol(to.getMultiaddrs(), ECHO)
  const framed = lpStream(stream, { maxDataLength: MESSAGE_BYTES_MAX })
  await framed.write(payload)
  const reply = (await framed.read()).subarray()
  await stream.close()
  return reply
}

/** Socket-level writes (system calls) made in this process while `run` runs, both ends counted. */
async function countSocketWrites(run: () => Promise<void>): Promise<number> {
  const single = vi.spyOn(Socket.prototype as unknown as { _write: () => void }, '_write')
  const vector = vi.spyOn(Socket.prototype as unknown as { _writev: () => void }, '_writev')
  await run()
  const count = single.mock.calls.length + vector.mock.calls.length
  single.mockRestore()
  vector.mockRestore()
  return count
}

describe('shardnetTcp', () => {
  it('sends each Noise frame with its length in one write: a quarter or less of plain TCP socket writes ' +
    'for 1 MiB', async () => {
    const payload = randomBytes(1 << 20, 1)
    const writes: Record<string, number> = {}
    for (const transport of ['plain', 'shardnet'] as const) {
      const [a, b] = [await startNode(transport), await startNode(transport)]
      await echo(a, b, new Uint8Array(16)) // connect and negotiate first
      writes[transport] = await countSocketWrites(async () => {
        const reply = await echo(a, b, payload)
        expect(sha256(reply)).toBe(sha256(payload))
      })
    }
    // plain: each of the ~32 Noise frames of the message and its echo is two writes (its 2-byte
    // length, its ciphertext), plus yamux's window updates; coalesced: one write per send
    expect(writes.plain).toBeGreaterThan(64)
    expect(writes.shardnet * 4).toBeLessThan(writes.plain)
  }, 60_000)

  it('keeps concurrent streams of every size intact, in both directions', async () => {
    const [a, b] = [await startNode('shardnet'), await startNode('shardnet')]
    const sizes = [0, 1, 2, 65_519, 65_520, 65_535, 200_001, 1 << 20, 3 << 20]
    const payloads = sizes.map((size, i) => randomBytes(size, 10 + i))
    const replies = await Promise.all(
      payloads.map((payload, i) => (i % 2 === 0 ? echo(a, b, payload) : echo(b, a, payload))),
    )
    replies.forEach((reply, i) => {
      expect(reply.byteLength).toBe(sizes[i])
      expect(sha256(reply)).toBe(sha256(payloads[i]))
    })
  }, 60_000)

  it('interoperates with libp2p plain TCP, either side dialing', async () => {
    const [shardnet, plain] = [await startNode('shardnet'), await startNode('plain')]
    const payload = randomBytes(700_000, 3)
    expect(sha256(await echo(shardnet, plain, payload))).toBe(sha256(payload))
    const [shardnet2, plain2] = [await startNode('shardnet'), await startNode('plain')]
    expect(sha256(await echo(plain2, shardnet2, payload))).toBe(sha256(payload))
  }, 60_000)
})
