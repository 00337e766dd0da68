// Proves a private network stays closed: daemons sharing a swarm key (libp2p pnet) connect, while a
// daemon with no key or another key cannot connect to them, even when it keeps dialling; the private
// nodes keep serving each other throughout, and a malformed swarm key file is refused at start.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, describe, expect, it } from 'vitest'
import type { Daemon } from '../../node/daemon.js'
import { generateSwarmKey, SwarmKeyFormatError } from '../../node/host.js'
import { startTestDaemon, tempDataDir, waitUntil } from './daemon-helpers.js'

describe('a private network (swarm key)', () => {
  const daemons: Daemon[] = []
  afterAll(async () => {
    await Promise.allSettled(daemons.map((daemon) => daemon.stop()))
  })

  it('admits nodes with the key and refuses nodes without it or with another key', async () => {
    const folder = await tempDataDir()
    const keyA = join(folder, 'a.key')
    const keyB = join(folder, 'b.key')
    await writeFile(keyA, generateSwarmKey(), { mode: 0o600 })
    await writeFile(keyB, generateSwarmKey(), { mode: 0o600 })

    const first = await startTestDaemon({ overrides: { swarmKeyFile: keyA } })
    daemons.push(first)
    const bootstrap = first.addresses()
    const member = await startTestDaemon({ overrides: { swarmKeyFile: keyA, bootstrap } })
    const outsider = await startTestDaemon({ overrides: { bootstrap } })
    const otherNetwork = await startTestDaemon({ overrides: { swarmKeyFile: keyB, bootstrap } })
    daemons.push(member, outsider, otherNetwork)

    await waitUntil(() => member.host.getConnections(first.peerId).length > 0, 'the member to connect')
    expect(first.status().privateNetwork).toBe(true)

    // direct dials fail at the connection-protector stage
    await expect(
      outsider.host.dial(multiaddr(first.addresses()[0]), { signal: AbortSignal.timeout(10_000) }),
    ).rejects.toThrow()
    await expect(
      otherNetwork.host.dial(multiaddr(first.addresses()[0]), { signal: AbortSignal.timeout(10_000) }),
    ).rejects.toThrow()

    // the bootstrap loop keeps redialling every 500 ms; give it several rounds
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    const connectedToFirst = first.host.getPeers().map((peer) => peer.toString())
    expect(connectedToFirst).toEqual([member.peerId.toString()])
    expect(outsider.host.getPeers()).toEqual([])
    expect(otherNetwork.host.getPeers()).toEqual([])

    // the private pair still works: a ping round trip over the protected connection
    const rtt = await member.host.services.ping.ping(first.peerId, { signal: AbortSignal.timeout(10_000) })
    expect(rtt).toBeGreaterThanOrEqual(0)
  }, 120_000)

  it('refuses a malformed swarm key file at start', async () => {
    const folder = await tempDataDir()
    const bad = join(folder, 'bad.key')
    await writeFile(bad, '/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n')
    await expect(startTestDaemon({ overrides: { swarmKeyFile: bad } })).rejects.toThrow(SwarmKeyFormatError)
  })
})
