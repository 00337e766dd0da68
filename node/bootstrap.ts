// How a node gets into the network and stays in it: the bootstrap dialer keeps the configured
// bootstrap peers connected (libp2p's own bootstrap module dials once), and a restarting node dials
// the peers its peer store remembers, so losing the bootstrap node, or starting without --bootstrap,
// does not strand it.
import type { Libp2p } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'

const log = logger('shardnet:bootstrap')

/** How often bootstrap peers that are not connected are dialled again. */
export const BOOTSTRAP_REDIAL_INTERVAL_MS_DEFAULT = 2000
/** Bootstrap addresses used; the rest of a longer list is ignored (and logged). */
const BOOTSTRAP_ADDRESSES_MAX = 64
/** How long one bootstrap dial may take. */
const BOOTSTRAP_DIAL_TIMEOUT_MS = 10_000
/** How many remembered peers a starting node dials, and how long each dial may take. */
const REMEMBERED_PEERS_DIALED_MAX = 16
const REMEMBERED_PEER_DIAL_TIMEOUT_MS = 10_000

/** The libp2p calls the dialers make. */
export type BootstrapHost = Pick<Libp2p, 'peerId' | 'dial' | 'getConnections' | 'peerStore'>

export interface BootstrapDialerInit {
  /** multiaddrs of the bootstrap peers, each ending in /p2p/<peer id> */
  addresses: string[]
  /** @default BOOTSTRAP_REDIAL_INTERVAL_MS_DEFAULT */
  redialIntervalMs?: number
}

/** The bounded loop that keeps us connected to bootstrap peers. */
export class BootstrapDialer {
  private timer: NodeJS.Timeout | undefined
  private running = false
  private readonly controller = new AbortController()
  private readonly addresses: string[]
  private readonly redialIntervalMs: number

  constructor(
    private readonly host: BootstrapHost,
    init: BootstrapDialerInit,
  ) {
    this.addresses = init.addresses
    this.redialIntervalMs = init.redialIntervalMs ?? BOOTSTRAP_REDIAL_INTERVAL_MS_DEFAULT
  }

  start(): void {
    if (this.addresses.length === 0) return
    if (this.addresses.length > BOOTSTRAP_ADDRESSES_MAX) {
      log(
        'only the first %d of %d bootstrap addresses are used',
        BOOTSTRAP_ADDRESSES_MAX,
        this.addresses.length,
      )
    }
    void this.round()
  }

  stop(): void {
    this.controller.abort()
    clearTimeout(this.timer)
  }

  private async round(): Promise<void> {
    if (this.running || this.controller.signal.aborted) return
    this.running = true
    const self = this.host.peerId.toString()
    const targets = this.addresses.slice(0, BOOTSTRAP_ADDRESSES_MAX).map((text) => multiaddr(text))
    await Promise.all(
      targets.map(async (target) => {
        const peer = target.getComponents().findLast((component) => component.name === 'p2p')?.value
        if (peer === self) return
        if (peer != null && this.host.getConnections().some((c) => c.remotePeer.toString() === peer)) return
        try {
          await this.host.dial(target, {
            signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS)]),
          })
          log('connected to bootstrap peer %s', target.toString())
        } catch (error) {
          if (!this.controller.signal.aborted) {
            log('bootstrap dial %s failed: %s', target.toString(), (error as Error).message)
          }
        }
      }),
    )
    this.running = false
    if (!this.controller.signal.aborted) {
      this.timer = setTimeout(() => void this.round(), this.redialIntervalMs)
      this.timer.unref()
    }
  }
}

/** Dials (once, bounded) the peers the peer store remembers from earlier runs. */
export async function dialRememberedPeers(host: BootstrapHost): Promise<void> {
  let peers: Awaited<ReturnType<BootstrapHost['peerStore']['all']>>
  try {
    peers = await host.peerStore.all({
      filters: [(peer) => peer.addresses.length > 0 && !peer.id.equals(host.peerId)],
      limit: REMEMBERED_PEERS_DIALED_MAX,
    })
  } catch (error) {
    log('reading remembered peers failed: %s', (error as Error).message)
    return
  }
  if (peers.length > 0) log('dialling %d remembered peers', peers.length)
  await Promise.all(
    peers.map(async (peer) => {
      try {
        await host.dial(peer.id, { signal: AbortSignal.timeout(REMEMBERED_PEER_DIAL_TIMEOUT_MS) })
      } catch {
        // gone or moved: the DHT and the bootstrap peers are the other ways back in
      }
    }),
  )
}
