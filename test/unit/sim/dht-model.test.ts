// Proves the DHT model's lookup follows @libp2p/kad-dht 16's query rules on hand-built tables: the
// origin's closest peers are all queried first (one disjoint path each), a peer is queried only when
// named by a peer it is strictly closer to the key than, a peer that does not answer costs a failure
// and the lookup still ends, and the hop count is the depth of the query that reached the target.
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { DHT_ALPHA, DHT_DISJOINT_PATHS, DhtModel, K_BUCKET_SIZE } from '../../../simulations/network/dht.js'
import { PeerState, PeerTable } from '../../../simulations/network/peers.js'

/** Peers whose keys are their row numbers in the top bits: distance to peer t's key is row XOR t. */
function network(count: number) {
  const peers = new PeerTable(count)
  for (let i = 0; i < count; i++) {
    peers.add()
    peers.state[i] = PeerState.up
  }
  const latency = new Map<string, number>()
  const model = new DhtModel(
    {
      peers,
      random: new SeededRandom(1),
      lossProbability: 0,
      reachable: () => true,
      latencyMs: (from, to) => latency.get(`${from}-${to}`) ?? 10,
    },
    count,
  )
  for (let i = 0; i < count; i++) {
    model.keyHi[i] = i
    model.keyLo[i] = 0
  }
  const lookup = (origin: number, target: number) =>
    model.lookup(origin, model.keyHi[target], model.keyLo[target], target)
  return { peers, model, lookup, latency }
}

describe('DHT model lookups', () => {
  it('uses the library defaults: K 20, 20 disjoint paths, 10 queries in flight per path', () => {
    expect([K_BUCKET_SIZE, DHT_DISJOINT_PATHS, DHT_ALPHA]).toEqual([20, 20, 10])
  })

  it('finds a target in its own table at hop 1 and one a neighbour knows at hop 2', () => {
    const { model, lookup } = network(16)
    model.setTable(0, [8, 9])
    model.setTable(8, [0, 5])
    model.setTable(9, [0])
    expect(lookup(0, 9)).toMatchObject({ found: true, hops: 1 })
    // 5 is closer to itself (distance 0) than 8 (distance 13): 8 names it, it is queried at depth 2
    expect(lookup(0, 5)).toMatchObject({ found: true, hops: 2 })
  })

  it('queries every starting peer even when the first answers name the target (disjoint paths)', () => {
    const { model, lookup } = network(64)
    const table = Array.from({ length: 12 }, (_, i) => 40 + i)
    model.setTable(0, table)
    for (const peer of table) model.setTable(peer, [0, 3])
    const result = lookup(0, 3)
    expect(result).toMatchObject({ found: true, hops: 2 })
    // 12 starting peers (one path each), then 3 once: the paths share what they have seen
    expect(result.contacted).toBe(13)
  })

  it('never queries a named peer that is not closer to the key than the peer that named it', () => {
    const { model, lookup } = network(64)
    // target 1; 0 knows only 3 (distance 2); 3 names 40 (distance 41, farther) and 1
    model.setTable(0, [3])
    model.setTable(3, [40, 1])
    model.setTable(40, [1])
    const result = lookup(0, 1)
    expect(result).toMatchObject({ found: true, hops: 2, contacted: 2 })
  })

  it('counts a crashed peer as a failure and still ends, finding the target another way', () => {
    const { peers, model, lookup } = network(64)
    model.setTable(0, [2, 12])
    model.setTable(2, [1])
    model.setTable(12, [1])
    peers.state[2] = PeerState.crashed
    const result = lookup(0, 1)
    expect(result).toMatchObject({ found: true, hops: 2, failed: 1 })
  })

  it('picks the k closest entries of a table exactly as a full XOR sort would', () => {
    const random = new SeededRandom(9)
    const { model } = network(600)
    for (let i = 0; i < 600; i++) {
      // keys that share long prefixes and differ only in the low word too
      model.keyHi[i] = i % 3 === 0 ? 0x80000000 + (random.int(4) >>> 0) : random.int(2 ** 32) >>> 0
      model.keyLo[i] = random.int(2 ** 32) >>> 0
    }
    const distance = (peer: number, hi: number, lo: number) =>
      (BigInt((model.keyHi[peer] ^ hi) >>> 0) << 32n) | BigInt((model.keyLo[peer] ^ lo) >>> 0)
    for (let trial = 0; trial < 200; trial++) {
      const owner = random.int(600)
      const size = random.int(250)
      const entries = [...new Set(Array.from({ length: size }, () => random.int(600)))]
      model.setTable(owner, entries)
      const key = random.int(600)
      const [hi, lo] = [model.keyHi[key], model.keyLo[key] ^ (trial % 2)]
      const count = 1 + random.int(25)
      const expected = [...entries]
        .sort((a, b) => (distance(a, hi, lo) < distance(b, hi, lo) ? -1 : 1))
        .slice(0, count)
      expect(model.closest(owner, hi, lo, count)).toEqual(expected)
    }
  })

  it('reports not found when no path reaches the target', () => {
    const { model, lookup } = network(8)
    model.setTable(0, [4])
    model.setTable(4, [0])
    expect(lookup(0, 7)).toMatchObject({ found: false, hops: 0, contacted: 1 })
  })
})
