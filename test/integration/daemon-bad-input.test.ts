// Proves a daemon survives hostile peers with its data intact: random garbage and an oversized length
// prefix sent on every protocol id it registers leave it serving (API status, a verified block fetch
// by an honest peer), and after a restart from the same data dir it has the same PeerId and an intact,
// verifiable block store and datastore.
import { randomBytes } from 'node:crypto'
import type { Stream } from '@libp2p/interface'
import { afterAll, describe, expect, it } from 'vitest'
import type { Daemon } from '../../node/daemon.js'
import { apiRequest, startTestDaemon, waitUntil } from './daemon-helpers.js'

async function sendRaw(attacker: Daemon, victim: Daemon, protocol: string, bytes: Uint8Array): Promise<void> {
  let stream: Stream
  try {
    stream = await attacker.host.dialProtocol(victim.peerId, protocol, {
      signal: AbortSignal.timeout(10_000),
    })
  } catch {
    // a victim may refuse the stream outright (stream limits): also fine
    return
  }
  const exchange = async (): Promise<void> => {
    try {
      stream.send(bytes)
      await stream.close({ signal: AbortSignal.timeout(5_000) })
      for await (const _ of stream) {
        // drain whatever the victim answers until it closes or aborts the stream
      }
    } catch {
      // the victim aborted the stream, which is the expected answer to garbage
    }
  }
  // long-lived protocols (gossipsub) keep a stream open, and a frame that announces more bytes than
  // sent leaves the victim waiting: give up on the stream after a deadline, as a real peer would
  let timer: NodeJS.Timeout | undefined
  await Promise.race([exchange(), new Promise<void>((resolve) => (timer = setTimeout(resolve, 3_000)))])
  clearTimeout(timer)
  stream.abort(new Error('done'))
}

describe('a daemon under garbage input', () => {
  const daemons: Daemon[] = []
  afterAll(async () => {
    await Promise.allSettled(daemons.map((daemon) => daemon.stop()))
  })

  it('keeps serving and keeps its data dir intact', async () => {
    const victim = await startTestDaemon()
    daemons.push(victim)
    const bootstrap = victim.addresses()
    const attacker = await startTestDaemon({ overrides: { bootstrap } })
    daemons.push(attacker)
    await waitUntil(() => attacker.host.getConnections(victim.peerId).length > 0, 'the attacker to connect')

    const bytes = randomBytes(300_000)
    const cid = await victim.host.services.blocks.put(bytes, { provide: false })

    const protocols = victim.host.getProtocols()
    expect(protocols).toContain('/shardnet/blocks/1.0.0')
    expect(protocols).toContain('/shardnet/kad/1.0.0')
    // varint 2^32: a frame that announces 4 GiB
    const oversizedPrefix = new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3])
    for (const protocol of protocols) {
      await sendRaw(attacker, victim, protocol, randomBytes(4096))
      await sendRaw(attacker, victim, protocol, oversizedPrefix)
    }

    // the blocks protocol counted what it refused, by reason
    // (the garbage frame's random first bytes decide which reason), once the handlers have run
    await waitUntil(() => {
      const rejected = victim.host.services.blocks.counters().rejected
      const total = Object.values(rejected).reduce((sum, count) => sum + count, 0)
      return rejected.oversized >= 1 && total >= 2
    }, 'the blocks protocol to count both bad requests')
    // still serving: its API, and a verified block for an honest newcomer
    const status = await apiRequest(victim, '/v1/status')
    expect(status.status).toBe(200)
    const honest = await startTestDaemon({ overrides: { bootstrap } })
    daemons.push(honest)
    await waitUntil(() => honest.host.getConnections(victim.peerId).length > 0, 'the honest node to connect')
    const fetched = await honest.host.services.blocks.get(cid, {
      peers: [victim.peerId],
      signal: AbortSignal.timeout(30_000),
    })
    expect(Buffer.compare(Buffer.from(fetched), bytes)).toBe(0)

    // restart from the same data dir: same identity, block store and datastore intact
    const dataDir = victim.paths.root
    const peerId = victim.peerId.toString()
    await victim.stop()
    const restarted = await startTestDaemon({ dataDir })
    daemons.push(restarted)
    expect(restarted.peerId.toString()).toBe(peerId)
    const stored = await restarted.blockStore.get(cid)
    expect(stored).toBeDefined()
    expect(Buffer.compare(Buffer.from(stored!), bytes)).toBe(0)
    // the peer store in LevelDB remembers the attacker and the honest node from before the restart
    const known = (await restarted.host.peerStore.all()).map((peer) => peer.id.toString())
    expect(known).toEqual(expect.arrayContaining([attacker.peerId.toString(), honest.peerId.toString()]))
  }, 120_000)
})
