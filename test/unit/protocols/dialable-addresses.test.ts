// Proves the dial filter: a peer's loopback, private and link-local addresses are dialled only by a
// node with an address in the same block (so loopback tests keep working), public addresses and names
// always, configured bootstrap addresses always; every skip is counted by block.
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { DialableAddressFilter, localBlockOf } from '../../../protocols/discovery/addresses.js'

const id = '12D3KooWMPmWnTSjFW9DwwgY37131AadmQHzr1PnnbXEUikzpdWo'

describe('dialable addresses', () => {
  it('names the block of an address', () => {
    expect(localBlockOf(multiaddr('/ip4/127.0.0.1/tcp/1'))).toBe('127/8')
    expect(localBlockOf(multiaddr('/ip4/10.1.2.3/tcp/1'))).toBe('10/8')
    expect(localBlockOf(multiaddr('/ip4/172.20.0.1/tcp/1'))).toBe('172.16/12')
    expect(localBlockOf(multiaddr('/ip4/172.32.0.1/tcp/1'))).toBeUndefined()
    expect(localBlockOf(multiaddr('/ip4/192.168.1.1/tcp/1'))).toBe('192.168/16')
    expect(localBlockOf(multiaddr('/ip4/169.254.169.254/tcp/80'))).toBe('169.254/16')
    expect(localBlockOf(multiaddr('/ip6/::1/tcp/1'))).toBe('::1')
    expect(localBlockOf(multiaddr('/ip6/fd00::1/tcp/1'))).toBe('fc00/7')
    expect(localBlockOf(multiaddr('/ip6/fe80::1/tcp/1'))).toBe('fe80/10')
    expect(localBlockOf(multiaddr('/ip6/::ffff:10.0.0.1/tcp/1'))).toBe('10/8')
    expect(localBlockOf(multiaddr('/ip4/8.8.8.8/tcp/1'))).toBeUndefined()
    expect(localBlockOf(multiaddr('/ip6/2001:db8::1/tcp/1'))).toBeUndefined()
    expect(localBlockOf(multiaddr('/dns4/localhost/tcp/1'))).toBeUndefined()
  })

  it('dials a local block only from a node with an address in it, and counts skips', () => {
    let own = [multiaddr('/ip4/8.8.4.4/tcp/4001')]
    const filter = new DialableAddressFilter({
      ownAddresses: () => own,
      configured: [multiaddr(`/ip4/192.168.7.7/tcp/4001/p2p/${id}`)],
    })
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/1.2.3.4/tcp/1'))).toBe(false)
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/127.0.0.1/tcp/1'))).toBe(true)
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/10.0.0.5/tcp/1'))).toBe(true)
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/169.254.169.254/tcp/80'))).toBe(true)
    // the user's own bootstrap address is dialled whatever its block
    expect(filter.denyDialMultiaddr(multiaddr(`/ip4/192.168.7.7/tcp/4001/p2p/${id}`))).toBe(false)
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/192.168.7.8/tcp/4001'))).toBe(true)
    expect(filter.skipped).toMatchObject({ '127/8': 1, '10/8': 1, '169.254/16': 1, '192.168/16': 1 })
    // a node on loopback (the tests) dials loopback peers, but still no private addresses
    own = [multiaddr('/ip4/127.0.0.1/tcp/4001')]
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/127.0.0.1/tcp/2'))).toBe(false)
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/10.0.0.5/tcp/1'))).toBe(true)
    own = [multiaddr('/ip4/10.9.9.9/tcp/4001')]
    expect(filter.denyDialMultiaddr(multiaddr('/ip4/10.0.0.5/tcp/1'))).toBe(false)
  })

  it("drops the addresses it would not dial from a DHT peer's info", () => {
    const filter = new DialableAddressFilter({ ownAddresses: () => [multiaddr('/ip4/5.6.7.8/tcp/1')] })
    const info = {
      id: undefined as never,
      multiaddrs: [
        multiaddr('/ip4/127.0.0.1/tcp/1'),
        multiaddr('/ip4/192.168.0.2/tcp/1'),
        multiaddr('/ip4/9.9.9.9/tcp/1'),
        multiaddr('/dns4/example.org/tcp/1'),
      ],
    }
    expect(filter.peerInfoMapper(info).multiaddrs.map(String)).toEqual([
      '/ip4/9.9.9.9/tcp/1',
      '/dns4/example.org/tcp/1',
    ])
  })
})
