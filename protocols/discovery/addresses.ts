/**
 * Which advertised addresses of other peers this node dials. A peer may advertise (in the DHT, in
 * identify, in a capability record) loopback, private or link-local addresses: dialling them probes this
 * node's own machine or LAN on the peer's say-so. Such an address is dialled only when this node itself
 * has an address in the same block (two nodes on one LAN, or the loopback tests); public addresses and
 * names (dns) are always dialled. Skips are counted by block.
 *
 * ```ts
 * const filter = new DialableAddressFilter({ ownAddresses: () => node.getMultiaddrs() })
 * kadDHT({ peerInfoMapper: (info) => filter.peerInfoMapper(info) })
 * createLibp2p({ connectionGater: { denyDialMultiaddr: (ma) => filter.denyDialMultiaddr(ma) } })
 * filter.skipped  // { '10/8': 3, ... }
 * ```
 */
import type { PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The address blocks that are dialled only from a node with an address in the same block. */
export const LOCAL_BLOCKS = [
  '127/8',
  '::1',
  '10/8',
  '172.16/12',
  '192.168/16',
  '100.64/10',
  '169.254/16',
  'fc00/7',
  'fe80/10',
  '0/8',
  '::',
] as const
export type LocalBlock = (typeof LOCAL_BLOCKS)[number]

/** The local block of an IPv4 address (dotted), or undefined for a public one. */
function ip4Block(address: string): LocalBlock | undefined {
  const parts = address.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined
  const [a, b] = parts
  if (a === 127) return '127/8'
  if (a === 10) return '10/8'
  if (a === 172 && b >= 16 && b <= 31) return '172.16/12'
  if (a === 192 && b === 168) return '192.168/16'
  if (a === 100 && b >= 64 && b <= 127) return '100.64/10'
  if (a === 169 && b === 254) return '169.254/16'
  if (a === 0) return '0/8'
  return undefined
}

/** The local block of an IPv6 address, or undefined for a public one. */
function ip6Block(address: string): LocalBlock | undefined {
  const text = address.toLowerCase()
  if (text === '::1' || text === '0:0:0:0:0:0:0:1') return '::1'
  if (text === '::' || text === '0:0:0:0:0:0:0:0') return '::'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (mapped !== null) return ip4Block(mapped[1])
  const mappedHex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(text)
  if (mappedHex !== null) {
    const high = Number.parseInt(mappedHex[1], 16)
    const low = Number.parseInt(mappedHex[2], 16)
    return ip4Block(`${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`)
  }
  const first = Number.parseInt(text.split(':')[0] || '0', 16)
  if ((first & 0xfe00) === 0xfc00) return 'fc00/7'
  if ((first & 0xffc0) === 0xfe80) return 'fe80/10'
  return undefined
}

/** The local block of a multiaddr's first IP component; undefined when public or not an IP address. */
export function localBlockOf(address: Multiaddr): LocalBlock | undefined {
  for (const component of address.getComponents()) {
    if (component.name === 'ip4' && component.value !== undefined) return ip4Block(component.value)
    if (component.name === 'ip6' && component.value !== undefined) return ip6Block(component.value)
    if (component.name === 'dns' || component.name === 'dns4' || component.name === 'dns6') return undefined
  }
  return undefined
}

export interface DialableAddressFilterInit {
  /** this node's own addresses (listen and announced), read at each decision */
  ownAddresses: () => Multiaddr[]
  /** addresses the user configured (bootstrap): always dialled */
  configured?: Multiaddr[]
}

export class DialableAddressFilter {
  /** Addresses not dialled (or dropped from peer infos), by block. */
  readonly skipped: Record<LocalBlock, number> = Object.fromEntries(
    LOCAL_BLOCKS.map((b) => [b, 0]),
  ) as Record<LocalBlock, number>
  private readonly init: DialableAddressFilterInit
  private readonly configured: Set<string>

  constructor(init: DialableAddressFilterInit) {
    this.init = init
    this.configured = new Set((init.configured ?? []).map((a) => a.decapsulateCode(421).toString()))
  }

  /** The local blocks this node has an address in. */
  ownBlocks(): Set<LocalBlock> {
    const blocks = new Set<LocalBlock>()
    for (const address of this.init.ownAddresses()) {
      const block = localBlockOf(address)
      if (block !== undefined) blocks.add(block)
    }
    return blocks
  }

  /** Whether `address` may be dialled (counts a refusal). */
  allows(address: Multiaddr, ownBlocks: Set<LocalBlock> = this.ownBlocks()): boolean {
    const block = localBlockOf(address)
    if (block === undefined || ownBlocks.has(block)) return true
    // 421: the /p2p/<peer id> part, which a configured bootstrap address carries
    if (this.configured.has(address.decapsulateCode(421).toString())) return true
    this.skipped[block]++
    return false
  }

  /** For libp2p's connection gater: true means "do not dial". */
  denyDialMultiaddr(address: Multiaddr): boolean {
    return !this.allows(address)
  }

  /** For kad-dht's peerInfoMapper: the peer's addresses this node would dial. */
  peerInfoMapper(info: PeerInfo): PeerInfo {
    const own = this.ownBlocks()
    return { ...info, multiaddrs: info.multiaddrs.filter((address) => this.allows(address, own)) }
  }
}
