// Proves the gossip and DHT models agree with the real libraries at small N: 50 real libp2p nodes
// (memory transport, noise, yamux, @libp2p/gossipsub, @libp2p/kad-dht) in this process publish
// announcements and run lookups, the models run the same ones over the same meshes, publishers'
// connections and routing tables, and the results agree within the margins real.ts states:
// gossip delivery hops (mean within 0.35 hops, histogram total variation at most 0.25), gossip
// propagation latency (median delivery time of the multi-hop deliveries within 30%, with the time of
// one hop measured on the same publication's one-hop deliveries), and DHT lookup hops (mean within 0.35 hops,
// total variation at most 0.2).
import { describe, expect, it } from 'vitest'
import {
  crossCheckWithRealNodes,
  DHT_HOPS_MARGIN,
  DHT_TV_MARGIN,
  GOSSIP_HOPS_MARGIN,
  GOSSIP_LATENCY_MARGIN,
  GOSSIP_TV_MARGIN,
} from '../../simulations/network/real.js'

describe('models vs real libp2p', () => {
  it('gossip hops and latency and DHT lookup hops agree with 50 real nodes', {
    timeout: 240_000,
  }, async () => {
    const result = await crossCheckWithRealNodes({ nodes: 50, seed: 5 })
    const report = result.lines.join('\n')
    // the figures of every run, not only of a failing one (to see how close to the margins it runs)
    console.log(report)
    const { gossip, dht } = result
    expect(gossip.realReached, report).toBe(1)
    expect(Math.abs(gossip.realHopsMean - gossip.modelHopsMean), report).toBeLessThanOrEqual(
      GOSSIP_HOPS_MARGIN,
    )
    expect(gossip.hopsTv, report).toBeLessThanOrEqual(GOSSIP_TV_MARGIN)
    expect(gossip.latencyP50Off, report).toBeLessThanOrEqual(GOSSIP_LATENCY_MARGIN)
    expect(gossip.agrees, report).toBe(true)
    expect(Math.abs(dht.realMean - dht.modelMean), report).toBeLessThanOrEqual(DHT_HOPS_MARGIN)
    expect(dht.tv, report).toBeLessThanOrEqual(DHT_TV_MARGIN)
    expect(dht.agrees, report).toBe(true)
    expect(result.agrees).toBe(true)
  })
})
