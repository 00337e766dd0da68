// Publishes this node's capability record and provider entry (protocols/discovery), retrying while
// the DHT has no peers, and publishing again when the routing table has doubled since the last
// publication: a record put into a network of two nodes sits on those two only, so the first nodes of
// a network would stay hard to find until the discovery service's periodic refresh (minutes). The
// record carries the spans of models this node serves: when they change (spansChanged(), which the
// daemon calls from SpanHost.onChange) the record is published again at once.
import { logger } from '@libp2p/logger'
import type { AdvertisedSpan, CapabilityDiscovery } from '../protocols/discovery/index.js'
import type { NodeCapability } from './executor/capability.js'

const log = logger('shardnet:advertiser')

/**
 * How long to wait between attempts to publish while the DHT has no peers, and how often to check
 * whether the network grew enough to publish again.
 */
export const ADVERTISE_RETRY_MS_DEFAULT = 2000

export interface CapabilityAdvertiserComponents {
  discovery: Pick<CapabilityDiscovery, 'advertise'>
  /** peers in the DHT routing table now */
  routingTableSize: () => number
  /** the spans of models this node serves now @default none */
  spans?: () => AdvertisedSpan[]
}

export interface CapabilityAdvertiserInit {
  capability: NodeCapability
  /** @default ADVERTISE_RETRY_MS_DEFAULT */
  retryMs?: number
}

export class CapabilityAdvertiser {
  private timer: NodeJS.Timeout | undefined
  private readonly controller = new AbortController()
  private readonly capability: NodeCapability
  private readonly retryMs: number
  private publishedAtPeers = 0
  private lastAttemptMs = 0
  private busy = false
  /** the served spans changed since the last publication */
  private spansDirty = false

  constructor(
    private readonly components: CapabilityAdvertiserComponents,
    init: CapabilityAdvertiserInit,
  ) {
    this.capability = init.capability
    this.retryMs = init.retryMs ?? ADVERTISE_RETRY_MS_DEFAULT
  }

  start(): void {
    this.schedule(0)
  }

  stop(): void {
    this.controller.abort()
    clearTimeout(this.timer)
  }

  /** The served spans changed: publish the record again as soon as the DHT has peers. */
  spansChanged(): void {
    this.spansDirty = true
    if (this.busy || this.controller.signal.aborted) return
    clearTimeout(this.timer)
    this.schedule(0)
  }

  private schedule(delayMs: number): void {
    if (this.controller.signal.aborted) return
    this.timer = setTimeout(() => void this.tick(), delayMs)
    this.timer.unref()
  }

  private async tick(): Promise<void> {
    if (this.busy) return
    const peers = this.components.routingTableSize()
    const due =
      peers > 0 &&
      (this.spansDirty ||
        ((this.publishedAtPeers === 0 || peers >= 2 * this.publishedAtPeers) &&
          Date.now() - this.lastAttemptMs >= this.retryMs))
    if (due) {
      this.busy = true
      this.lastAttemptMs = Date.now()
      const spansChanged = this.spansDirty
      this.spansDirty = false
      const spans = this.components.spans?.() ?? []
      try {
        await this.components.discovery.advertise(
          {
            capability: this.capability.backend,
            adapterName: this.capability.adapterName,
            maxBufferBytes: this.capability.maxBufferBytes,
            gflops: this.capability.matmulGflops,
            backends: this.capability.backends.map(({ matmulGflops, ...figure }) => ({
              ...figure,
              gflops: matmulGflops,
            })),
            spans,
          },
          { signal: this.controller.signal },
        )
        this.publishedAtPeers = peers
        log(
          'advertised %s capability and %d served spans to a network of %d DHT peers',
          this.capability.backend,
          spans.length,
          peers,
        )
      } catch (error) {
        // a failed publication of changed spans is tried again on the next tick
        this.spansDirty ||= spansChanged
        if (!this.controller.signal.aborted)
          log('advertising the capability failed, will retry: %s', (error as Error).message)
      } finally {
        this.busy = false
      }
    }
    this.schedule(this.retryMs)
  }
}
