// Proves the gossip and DHT models agree with the real libraries at small N: real libp2p nodes
// (memory transport, noise, yamux, @libp2p/gossipsub, @libp2p/kad-dht) in this process publish
// announcements and run lookups, the models run the same ones over the same meshes and routing
// tables, and delivery-hop and lookup-hop distributions agree within the margins real.ts states.
import { describe, expect, it } from 'vitest'
import { crossCheckWithRealNodes } from '../../simulations/network/real.js'

describe('models vs real libp2p', () => {
  it('gossip delivery hops and DHT lookup hops agree with 20 real nodes', { timeout: 300_000 }, async () => {
    const result = await crossCheckWithRealNodes({ nodes: 20, seed: 5 })
    expect(result.gossip.agrees, result.lines.join('\n')).toBe(true)
    expect(result.dht.agrees, result.lines.join('\n')).toBe(true)
    expect(result.agrees).toBe(true)
  })
})
