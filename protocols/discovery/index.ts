/**
 * Capability discovery: each worker publishes a signed capability record in the DHT and provides the
 * well-known CID of its capability, so `findProviders` finds workers and their verified records.
 *
 * API (a libp2p service):
 * ```ts
 * const node = await createLibp2p({
 *   services: {
 *     dht: kadDHT({
 *       protocol: '/shardnet/kad/1.0.0',
 *       validators: shardnetDhtValidators(),
 *       selectors: shardnetDhtSelectors(),
 *       clientMode: false,
 *       peerInfoMapper: passthroughMapper,
 *     }),
 *     discovery: capabilityDiscovery({ refreshIntervalMs: 10 * 60_000 }),
 *   },
 * })
 * await node.services.discovery.advertise({ capability: 'webgpu', adapterName, maxBufferBytes, gflops })
 * for await (const worker of node.services.discovery.findWorkers('webgpu', { limit: 10, signal })) {
 *   worker.peerId; worker.record  // a VerifiedCapabilityRecord
 * }
 * node.services.discovery.counters() // { published, publishFailed, found, rejected: { reason: n } }
 * ```
 * The service reaches the DHT through `components.contentRouting` (libp2p routes it to kad-dht), so it
 * needs no service name; `serviceDependencies` makes libp2p refuse a config without content routing.
 * The DHT itself must be configured with {@link shardnetDhtValidators}/{@link shardnetDhtSelectors}, or it
 * refuses to store our `/shardnet/...` records.
 * Limit: kad-dht's findProviders stops after k (20) providers, so one findWorkers call lists at most 20
 * workers of a capability (plus this node). Enough to staff groups of up to 15; a scheduler that needs
 * more would shard the capability CID (e.g. by a peer-id bucket) and query each shard.
 */
import {
  type AbortOptions,
  type ComponentLogger,
  type ContentRouting,
  type Logger,
  type Metrics,
  type PeerId,
  type PrivateKey,
  type Startable,
  serviceCapabilities,
  serviceDependencies,
  setMaxListeners,
} from '@libp2p/interface'
import type { AddressManager } from '@libp2p/interface-internal'
import type { CID } from 'multiformats/cid'
import {
  ADAPTER_NAME_LENGTH_MAX,
  CAPABILITY_ADDRESSES_MAX,
  CAPABILITY_BACKENDS_MAX,
  CAPABILITY_PROTOCOLS_MAX,
  CAPABILITY_REJECT_REASONS,
  CAPABILITY_SPANS_MAX,
  type CapabilityRejectReason,
} from '../wire/validation/index.js'
import {
  type AdvertisedBackend,
  type AdvertisedSpan,
  backendsToWire,
  CAPABILITIES,
  type Capability,
  capabilityCid,
  capabilityKey,
  capabilityToWire,
  InvalidCapabilityRecordError,
  servingCid,
  signCapabilityRecord,
  spansToWire,
  type VerifiedCapabilityRecord,
  verifyCapabilityRecord,
} from './record.js'

export * from './record.js'

/** How often the record is re-signed and re-published, and the capability CID re-provided (10 minutes). */
export const REFRESH_INTERVAL_MS_DEFAULT = 600_000
/** How long a published record stays valid (30 minutes): longer than a refresh, so it never lapses. */
export const RECORD_TTL_MS_DEFAULT = 1_800_000
/** Deadline for one publication (the record's DHT put and the capability CID's provide). */
export const PUBLISH_TIMEOUT_MS_DEFAULT = 60_000
/** Deadline for fetching one provider's record during findWorkers. */
export const RECORD_FETCH_TIMEOUT_MS_DEFAULT = 10_000
/** Provider records findWorkers fetches at once. */
export const RECORD_FETCH_CONCURRENCY_DEFAULT = 8
/** Workers one findWorkers call yields when the caller does not say. */
export const FIND_WORKERS_LIMIT_DEFAULT = 20

export interface CapabilityDiscoveryInit {
  /**
   * How often the record is re-signed (new seq, new expiry) and re-published, and the capability CID
   * re-provided, in ms.
   * @default REFRESH_INTERVAL_MS_DEFAULT
   */
  refreshIntervalMs?: number
  /**
   * How long a published record stays valid, in ms. Must exceed refreshIntervalMs so a live worker's
   * record never lapses.
   * @default RECORD_TTL_MS_DEFAULT
   */
  recordTtlMs?: number
  /**
   * Deadline for one publication (DHT put of the record and provide of the capability CID), in ms.
   * @default PUBLISH_TIMEOUT_MS_DEFAULT
   */
  publishTimeoutMs?: number
  /**
   * Deadline for fetching one provider's record during findWorkers, in ms.
   * @default RECORD_FETCH_TIMEOUT_MS_DEFAULT
   */
  recordFetchTimeoutMs?: number
  /**
   * How many provider records findWorkers fetches at once.
   * @default RECORD_FETCH_CONCURRENCY_DEFAULT
   */
  recordFetchConcurrency?: number
  /**
   * Default and largest number of workers one findWorkers call yields.
   * @default FIND_WORKERS_LIMIT_DEFAULT (at most FIND_WORKERS_LIMIT_MAX)
   */
  findWorkersLimit?: number
  /**
   * The clock, injectable for tests.
   * @default Date.now
   */
  now?: () => number
}

export interface CapabilityDiscoveryComponents {
  peerId: PeerId
  privateKey: PrivateKey
  contentRouting: ContentRouting
  addressManager: AddressManager
  logger: ComponentLogger
  metrics?: Metrics
}

/** What a worker measured about itself (from kernels/ createBackend + its benchmark). */
export interface CapabilityAdvertisement {
  capability: Capability
  adapterName: string
  maxBufferBytes: number
  gflops: number
  /** every backend this worker measured (at most CAPABILITY_BACKENDS_MAX are published); @default [] */
  backends?: AdvertisedBackend[]
  /** protocol ids this worker serves; default: the ones the libp2p registrar has handlers for */
  protocols?: string[]
  /**
   * spans of models' blocks this worker serves (at most CAPABILITY_SPANS_MAX are published); the worker
   * also provides servingCid(model) of each model named, so findServers finds it @default []
   */
  spans?: AdvertisedSpan[]
}

export interface FindWorkersOptions extends AbortOptions {
  /** stop after this many verified workers @default CapabilityDiscoveryInit.findWorkersLimit */
  limit?: number
}

export interface FoundWorker {
  peerId: PeerId
  record: VerifiedCapabilityRecord
}

export interface FindServersOptions extends AbortOptions {
  /** stop after this many verified servers @default CapabilityDiscoveryInit.findWorkersLimit */
  limit?: number
}

/** A worker serving a span of a model, with its verified record and that model's spans in it. */
export interface FoundServer {
  peerId: PeerId
  record: VerifiedCapabilityRecord
  /** the record's spans of the model asked for (at least one) */
  spans: AdvertisedSpan[]
}

export interface CapabilityDiscoveryCounters {
  published: number
  publishFailed: number
  found: number
  /** 'not-serving': a provider of a model's serving CID whose record names no span of that model */
  rejected: Record<CapabilityRejectReason | 'fetch-failed' | 'wrong-capability' | 'not-serving', number>
}

export interface CapabilityDiscovery extends Startable {
  /**
   * Signs and publishes this node's record and provides its capability CID, then keeps both fresh every
   * refreshIntervalMs until stop() or the next advertise(). Resolves when the first publication is done
   * (or throws PublishFailedError, after which refreshes still retry).
   */
  advertise(ad: CapabilityAdvertisement, options?: AbortOptions): Promise<VerifiedCapabilityRecord>
  /** Stops advertising (records expire on their own). */
  withdraw(): void
  /** The record last published by this node, if any. */
  current(): VerifiedCapabilityRecord | undefined
  /** Providers of `capability` with a verified, unexpired record of that capability. Includes this node. */
  findWorkers(capability: Capability, options?: FindWorkersOptions): AsyncGenerator<FoundWorker>
  /**
   * Providers of servingCid(model) whose verified, unexpired record names a span of `model` (a model id).
   * Includes this node. Yields each server once, with that model's spans of its record.
   */
  findServers(model: string, options?: FindServersOptions): AsyncGenerator<FoundServer>
  /** Fetches and verifies one peer's record from the DHT. Throws InvalidCapabilityRecordError. */
  getRecord(peerId: PeerId, options?: AbortOptions): Promise<VerifiedCapabilityRecord>
  counters(): CapabilityDiscoveryCounters
}

/** advertise() could not publish the record or provide the capability CID (e.g. no DHT peers yet). */
export class PublishFailedError extends Error {
  static override name = 'PublishFailedError'
  override name = 'PublishFailedError'
}

export class UnknownCapabilityError extends Error {
  static override name = 'UnknownCapabilityError'
  override name = 'UnknownCapabilityError'
}

/** Most workers one findWorkers call yields, whatever the caller asks. */
export const FIND_WORKERS_LIMIT_MAX = 1_000

/** One signal for several deadlines; libp2p hangs many listeners on it, hence no listener limit. */
function signalOf(...signals: Array<AbortSignal | undefined>): AbortSignal {
  const signal = AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined))
  setMaxListeners(Number.POSITIVE_INFINITY, signal)
  return signal
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

class DefaultCapabilityDiscovery implements CapabilityDiscovery {
  readonly [Symbol.toStringTag] = 'shardnet:discovery'
  readonly [serviceCapabilities] = ['shardnet:discovery']
  readonly [serviceDependencies] = ['@libp2p/content-routing']

  private readonly components: CapabilityDiscoveryComponents
  private readonly log: Logger
  private readonly refreshIntervalMs: number
  private readonly recordTtlMs: number
  private readonly publishTimeoutMs: number
  private readonly recordFetchTimeoutMs: number
  private readonly recordFetchConcurrency: number
  private readonly findWorkersLimit: number
  private readonly now: () => number
  private started = false
  private ad: CapabilityAdvertisement | undefined
  private record: VerifiedCapabilityRecord | undefined
  private recordValue: Uint8Array | undefined
  private seq = 0
  private refreshTimer: ReturnType<typeof setInterval> | undefined
  private readonly shutdown = new AbortController()
  private readonly stats: CapabilityDiscoveryCounters

  constructor(components: CapabilityDiscoveryComponents, init: CapabilityDiscoveryInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shardnet:discovery')
    this.refreshIntervalMs = init.refreshIntervalMs ?? REFRESH_INTERVAL_MS_DEFAULT
    this.recordTtlMs = init.recordTtlMs ?? RECORD_TTL_MS_DEFAULT
    this.publishTimeoutMs = init.publishTimeoutMs ?? PUBLISH_TIMEOUT_MS_DEFAULT
    this.recordFetchTimeoutMs = init.recordFetchTimeoutMs ?? RECORD_FETCH_TIMEOUT_MS_DEFAULT
    this.recordFetchConcurrency = init.recordFetchConcurrency ?? RECORD_FETCH_CONCURRENCY_DEFAULT
    this.findWorkersLimit = Math.min(
      init.findWorkersLimit ?? FIND_WORKERS_LIMIT_DEFAULT,
      FIND_WORKERS_LIMIT_MAX,
    )
    this.now = init.now ?? Date.now
    if (this.recordTtlMs <= this.refreshIntervalMs) {
      throw new RangeError('recordTtlMs must exceed refreshIntervalMs, or live records would lapse')
    }
    const rejected = Object.fromEntries(
      [...CAPABILITY_REJECT_REASONS, 'fetch-failed', 'wrong-capability', 'not-serving'].map((r) => [r, 0]),
    ) as CapabilityDiscoveryCounters['rejected']
    this.stats = { published: 0, publishFailed: 0, found: 0, rejected }
    components.metrics?.registerCounterGroup('shardnet_discovery_records_rejected_total', {
      label: 'reason',
      help: 'Capability records fetched from the DHT and refused, by reason',
      calculate: () => ({ ...this.stats.rejected }),
    })
    components.metrics?.registerCounterGroup('shardnet_discovery_publications_total', {
      label: 'outcome',
      help: 'Publications of this node capability record',
      calculate: () => ({ published: this.stats.published, failed: this.stats.publishFailed }),
    })
  }

  isStarted(): boolean {
    return this.started
  }

  async start(): Promise<void> {
    this.started = true
  }

  async stop(): Promise<void> {
    this.withdraw()
    this.shutdown.abort()
    this.started = false
  }

  current(): VerifiedCapabilityRecord | undefined {
    return this.record
  }

  counters(): CapabilityDiscoveryCounters {
    return { ...this.stats, rejected: { ...this.stats.rejected } }
  }

  withdraw(): void {
    if (this.refreshTimer !== undefined) clearInterval(this.refreshTimer)
    this.refreshTimer = undefined
    this.ad = undefined
  }

  async advertise(
    ad: CapabilityAdvertisement,
    options: AbortOptions = {},
  ): Promise<VerifiedCapabilityRecord> {
    if (!CAPABILITIES.includes(ad.capability)) throw new UnknownCapabilityError(String(ad.capability))
    this.withdraw()
    this.ad = ad
    // refreshes start now, so a first publication that fails (no DHT peers yet) is retried by them
    this.refreshTimer = setInterval(() => {
      this.publish({}).catch((err) => this.log.error('refreshing capability record failed - %e', err))
    }, this.refreshIntervalMs)
    this.refreshTimer.unref?.()
    return this.publish(options)
  }

  private async buildRecord(ad: CapabilityAdvertisement): Promise<Uint8Array> {
    const nowMs = this.now()
    // seq grows with time and with every publication, so a restarted node still outbids its old record
    this.seq = Math.max(this.seq + 1, nowMs)
    const protocols = (ad.protocols ?? []).slice(0, CAPABILITY_PROTOCOLS_MAX)
    const addresses = this.components.addressManager
      .getAddresses()
      .slice(0, CAPABILITY_ADDRESSES_MAX)
      .map((a) => a.decapsulateCode(421).bytes) // drop /p2p/<id>: the record already names the peer
    return signCapabilityRecord(this.components.privateKey, {
      peerId: this.components.peerId.toMultihash().bytes,
      backend: capabilityToWire(ad.capability),
      adapterName: ad.adapterName.slice(0, ADAPTER_NAME_LENGTH_MAX),
      maxBufferBytes: ad.maxBufferBytes,
      gflops: ad.gflops,
      backends: backendsToWire(
        (ad.backends ?? []).slice(0, CAPABILITY_BACKENDS_MAX).map((b) => ({
          ...b,
          adapterName: b.adapterName.slice(0, ADAPTER_NAME_LENGTH_MAX),
        })),
      ),
      spans: spansToWire((ad.spans ?? []).slice(0, CAPABILITY_SPANS_MAX)),
      protocols,
      addresses,
      seq: this.seq,
      expiresMs: nowMs + this.recordTtlMs,
    })
  }

  private async publish(options: AbortOptions): Promise<VerifiedCapabilityRecord> {
    const ad = this.ad
    if (ad === undefined) throw new PublishFailedError('nothing to advertise')
    const value = await this.buildRecord(ad)
    // check our own record exactly as remote peers will (the DHT stores a local put without validation)
    const record = await verifyCapabilityRecord(value, this.now(), this.components.peerId.toString())
    this.record = record
    this.recordValue = value
    const signal = signalOf(AbortSignal.timeout(this.publishTimeoutMs), this.shutdown.signal, options.signal)
    const cid = await capabilityCid(ad.capability)
    const models = [...new Set(record.spans.map((s) => s.model))]
    const servingCids = await Promise.all(models.map((model) => servingCid(model)))
    const results = await Promise.allSettled([
      this.components.contentRouting.put(capabilityKey(this.components.peerId), value, { signal }),
      this.components.contentRouting.provide(cid, { signal }),
      ...servingCids.map((c) => this.components.contentRouting.provide(c, { signal })),
    ])
    const failure = results.find((r) => r.status === 'rejected')
    if (failure !== undefined) {
      this.stats.publishFailed++
      throw new PublishFailedError(`publishing the capability record failed: ${String(failure.reason)}`)
    }
    this.stats.published++
    this.log('published %s record seq %d with %d spans', ad.capability, record.seq, record.spans.length)
    return record
  }

  async getRecord(peerId: PeerId, options: AbortOptions = {}): Promise<VerifiedCapabilityRecord> {
    if (peerId.equals(this.components.peerId) && this.recordValue !== undefined) {
      return verifyCapabilityRecord(this.recordValue, this.now(), peerId.toString())
    }
    const signal = signalOf(
      AbortSignal.timeout(this.recordFetchTimeoutMs),
      this.shutdown.signal,
      options.signal,
    )
    let value: Uint8Array
    try {
      value = await this.components.contentRouting.get(capabilityKey(peerId), { signal })
    } catch (err) {
      this.stats.rejected['fetch-failed']++
      throw err
    }
    try {
      return await verifyCapabilityRecord(value, this.now(), peerId.toString())
    } catch (err) {
      if (err instanceof InvalidCapabilityRecordError) this.stats.rejected[err.reason]++
      throw err
    }
  }

  async *findWorkers(capability: Capability, options: FindWorkersOptions = {}): AsyncGenerator<FoundWorker> {
    if (!CAPABILITIES.includes(capability)) throw new UnknownCapabilityError(String(capability))
    yield* this.findVerifiedProviders(
      await capabilityCid(capability),
      capability,
      options,
      (peerId, record) => {
        if (record.capability === capability) return { peerId, record }
        this.stats.rejected['wrong-capability']++
        return undefined
      },
    )
  }

  async *findServers(model: string, options: FindServersOptions = {}): AsyncGenerator<FoundServer> {
    yield* this.findVerifiedProviders(await servingCid(model), model, options, (peerId, record) => {
      const spans = record.spans.filter((s) => s.model === model)
      if (spans.length > 0) return { peerId, record, spans }
      // a provider entry outlives the span it announced: the record says what the peer serves now
      this.stats.rejected['not-serving']++
      return undefined
    })
  }

  /**
   * Providers of `cid` (this node first, when its own record is accepted), each one's record fetched and
   * verified, recordFetchConcurrency at once, and mapped by `accept` (undefined drops the provider).
   */
  private async *findVerifiedProviders<T>(
    cid: CID,
    what: string,
    options: { limit?: number; signal?: AbortSignal },
    accept: (peerId: PeerId, record: VerifiedCapabilityRecord) => T | undefined,
  ): AsyncGenerator<T> {
    const limit = Math.min(options.limit ?? this.findWorkersLimit, FIND_WORKERS_LIMIT_MAX)
    const lookup = new AbortController()
    const signal = signalOf(lookup.signal, this.shutdown.signal, options.signal)
    const seen = new Set<string>([this.components.peerId.toString()])
    const found: T[] = []
    let inflight = 0
    let providersDone = false
    // one wake-up signal for both loops; re-armed after every wait, state is re-checked after waking
    let wake = deferred()
    const notify = () => wake.resolve()
    const waitForChange = async () => {
      await wake.promise
      wake = deferred()
    }

    const fetchRecord = async (peerId: PeerId): Promise<void> => {
      try {
        const record = await this.getRecord(peerId, { signal })
        const accepted = accept(peerId, record)
        if (accepted !== undefined) found.push(accepted)
      } catch (err) {
        this.log('no usable record for provider %p - %e', peerId, err)
      } finally {
        inflight--
        notify()
      }
    }

    // the pump walks providers as they arrive and fetches their records, recordFetchConcurrency at once
    const pump = async () => {
      try {
        if (this.record !== undefined) {
          inflight++
          void fetchRecord(this.components.peerId)
        }
        for await (const provider of this.components.contentRouting.findProviders(cid, { signal })) {
          const id = provider.id.toString()
          if (seen.has(id)) continue
          seen.add(id)
          while (inflight >= this.recordFetchConcurrency) await waitForChange()
          inflight++
          void fetchRecord(provider.id)
        }
      } catch (err) {
        if (!signal.aborted) this.log('findProviders for %s ended - %e', what, err)
      } finally {
        providersDone = true
        notify()
      }
    }

    void pump()
    let yielded = 0
    try {
      while (yielded < limit) {
        const next = found.shift()
        if (next !== undefined) {
          this.stats.found++
          yielded++
          yield next
          continue
        }
        if (providersDone && inflight === 0) break
        if (signal.aborted) break
        await waitForChange()
      }
    } finally {
      lookup.abort()
    }
  }
}

/** The capability discovery service factory. */
export function capabilityDiscovery(
  init: CapabilityDiscoveryInit = {},
): (components: CapabilityDiscoveryComponents) => CapabilityDiscovery {
  return (components) => new DefaultCapabilityDiscovery(components, init)
}
