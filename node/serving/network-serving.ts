// The daemon's ServingApi over the network: models this node can generate with, and generation through
// a chain of span servers (chain.ts) found in the DHT (discovery.findServers).
//
// A generation: the model's servers are looked up (a look-up is reused for lookupTtlMs; the chain asks
// for a fresh one when the known servers cannot cover a span), each one's round trip is measured with
// libp2p's ping (reused for latencyTtlMs; this node itself counts 0 ms), and reputations come from
// the node's ReputationBook; meanwhile the weights pieces of the model's ends (embeddings, final
// LayerNorm, tied head) are fetched over the blocks protocol (fetchModel's parts, verified by hash, cached
// under modelCacheDir) and the ends alone are read and loaded on the daemon's backend (kept for the last
// ENDS_CACHED_MAX models). A hop on this node's own span goes through SpanHost.openLocalSession (libp2p
// does not dial itself); every other hop is a /shardnet/span/1.0.0 session (openSpanSession).
//
// models() lists every model this node serves a span of and every model it has generated with (or
// tried to) within KNOWN_MODEL_TTL_MS_DEFAULT, with whether a chain covering it was found the last
// time it looked (a served model nobody looked for yet is looked up, within modelsLookupTimeoutMs).
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Backend } from '../../kernels/backend.js'
import { GptEnds } from '../../kernels/models/gpt/span.js'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { openSpanSession, type SpanDialer } from '../../protocols/serving/index.js'
import { isModelId } from '../../protocols/wire/validation/index.js'
import { type GptPartTensors, readGptParts } from '../executor/gpt-tensors.js'
import { ModelFilesError } from '../executor/model-files.js'
import type { ReputationBook } from '../reputation.js'
import {
  type NetworkGenerateRequest,
  type NetworkGenerateResult,
  type NetworkGeneration,
  type ServingApi,
  ServingError,
  type ServingModelListing,
} from './api.js'
import {
  type ChainModel,
  type ChainNetwork,
  type ChainOptions,
  type ChainSpanSession,
  checkGenerateRequest,
  generateThroughChain,
} from './chain.js'
import { fetchModel, ModelPackageError } from './model-package.js'
import { planChain, type RouteCandidate } from './route.js'
import type { SpanHost } from './span-host.js'

const log = logger('shardnet:serving:network')

/** One server of a model as discovery yields it (protocols/discovery FoundServer fits). */
export interface FoundSpanServer {
  peerId: PeerId | string
  spans: ReadonlyArray<{ model: string; start: number; end: number; blocks: number; tokensPerSecond: number }>
}

export interface NetworkServingOptions {
  /** a step without an answer for this long is a stalled server @default CHAIN_STEP_TIMEOUT_MS_DEFAULT */
  stepTimeoutMs?: number
  /** @default CHAIN_FAILOVERS_MAX_DEFAULT */
  failoversMax?: number
  /** @default VERIFY_TOLERANCE_DEFAULT */
  verifyTolerance?: number
  /** servers one look-up collects at most @default FIND_SERVERS_LIMIT_DEFAULT */
  findServersLimit?: number
  /** how long one look-up may take @default FIND_SERVERS_TIMEOUT_MS_DEFAULT */
  findServersTimeoutMs?: number
  /** how long a look-up's servers are reused @default LOOKUP_TTL_MS_DEFAULT */
  lookupTtlMs?: number
  /** how long a measured round trip is reused @default LATENCY_TTL_MS_DEFAULT */
  latencyTtlMs?: number
  /** a ping without an answer for this long leaves the latency unknown @default PING_TIMEOUT_MS_DEFAULT */
  pingTimeoutMs?: number
  /** how long models() waits for the look-ups it needs @default MODELS_LOOKUP_TIMEOUT_MS_DEFAULT */
  modelsLookupTimeoutMs?: number
  /** how long a model generated with stays listed @default KNOWN_MODEL_TTL_MS_DEFAULT */
  knownModelTtlMs?: number
  now?: () => number
}

export interface NetworkServingDeps {
  /** the node's libp2p: its peer id, dials for span sessions, and ping when it runs the service */
  host: SpanDialer & {
    peerId: PeerId
    services?: { ping?: { ping(peer: PeerId, options?: { signal?: AbortSignal }): Promise<number> } }
  }
  /** the servers of a model (discovery.findServers) */
  findServers(
    model: string,
    options: { limit?: number; signal?: AbortSignal },
  ): AsyncIterable<FoundSpanServer>
  /** the blocks protocol, to fetch model files */
  blocks: Pick<BlockExchange, 'get'>
  /** the spans this node serves (its own hops open local sessions on it) */
  spans: Pick<SpanHost, 'spans' | 'openLocalSession'>
  reputation: ReputationBook
  /** where the client's ends compute */
  backend: Backend
  /** fetchModel's cache root */
  modelCacheDir: string
  options?: NetworkServingOptions
}

export const FIND_SERVERS_LIMIT_DEFAULT = 64
export const FIND_SERVERS_TIMEOUT_MS_DEFAULT = 15_000
export const LOOKUP_TTL_MS_DEFAULT = 30_000
export const LATENCY_TTL_MS_DEFAULT = 60_000
export const PING_TIMEOUT_MS_DEFAULT = 1_000
export const MODELS_LOOKUP_TIMEOUT_MS_DEFAULT = 3_000
export const KNOWN_MODEL_TTL_MS_DEFAULT = 3_600_000
/** Models whose ends are kept loaded (the least recently used unused one goes first). */
export const ENDS_CACHED_MAX = 4
/** Models remembered for models() at most. */
export const KNOWN_MODELS_MAX = 256

export interface NetworkServing extends ServingApi {
  /** Ends every generation in progress and frees the ends. */
  close(): Promise<void>
}

interface Lookup {
  atMs: number
  servers: Array<{ peerId: PeerId; spans: FoundSpanServer['spans'] }>
}

interface LoadedEnds {
  ends: GptEnds
  model: ChainModel
  name: string
  users: number
  usedMs: number
}

interface KnownModel {
  name: string
  blocks: number
  context: number
  chainFound: boolean
  /** when chainFound was last decided (0: never) */
  checkedMs: number
  createdMs: number
  seenMs: number
}

export function createNetworkServing(deps: NetworkServingDeps): NetworkServing {
  return new NetworkServingImpl(deps)
}

class NetworkServingImpl implements NetworkServing {
  readonly #deps: NetworkServingDeps
  readonly #options: NetworkServingOptions
  readonly #now: () => number
  readonly #self: string
  readonly #lookups = new Map<string, Promise<Lookup>>()
  readonly #latency = new Map<string, { ms: number | undefined; atMs: number }>()
  readonly #ends = new Map<string, Promise<LoadedEnds>>()
  readonly #known = new Map<string, KnownModel>()
  readonly #running = new Set<AbortController>()
  readonly #closing = new AbortController()
  #closed = false

  constructor(deps: NetworkServingDeps) {
    this.#deps = deps
    this.#options = deps.options ?? {}
    this.#now = this.#options.now ?? Date.now
    this.#self = deps.host.peerId.toString()
  }

  async models(options: { signal?: AbortSignal } = {}): Promise<ServingModelListing[]> {
    const now = this.#now()
    const ttl = this.#options.knownModelTtlMs ?? KNOWN_MODEL_TTL_MS_DEFAULT
    const served = new Map<string, ServingModelListing>()
    for (const span of this.#deps.spans.spans()) {
      const listing = served.get(span.model) ?? {
        model: span.model,
        name: span.name,
        blocks: span.blocks,
        context: span.context,
        served: [],
        chainFound: false,
        createdMs: this.#know(span.model, span.name, span.blocks, span.context, undefined).createdMs,
      }
      listing.served.push({ start: span.start, end: span.end })
      served.set(span.model, listing)
    }
    // a served model's chain: known from a generation, or looked up now (bounded)
    const timeout = AbortSignal.timeout(
      this.#options.modelsLookupTimeoutMs ?? MODELS_LOOKUP_TIMEOUT_MS_DEFAULT,
    )
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
    await Promise.all(
      [...served.values()].map(async (listing) => {
        const known = this.#known.get(listing.model)
        const fresh = this.#options.lookupTtlMs ?? LOOKUP_TTL_MS_DEFAULT
        if (known !== undefined && known.checkedMs > 0 && now - known.checkedMs <= fresh) {
          listing.chainFound = known.chainFound
          return
        }
        try {
          const candidates = await this.#candidates(listing.model, false, signal)
          planChain(listing.blocks, candidates)
          listing.chainFound = true
        } catch {
          listing.chainFound = false
        }
        this.#know(listing.model, listing.name, listing.blocks, listing.context, listing.chainFound)
      }),
    )
    const out = [...served.values()]
    for (const [model, known] of this.#known) {
      if (served.has(model)) continue
      if (now - known.seenMs > ttl) {
        this.#known.delete(model)
        continue
      }
      out.push({
        model,
        name: known.name,
        blocks: known.blocks,
        context: known.context,
        served: [],
        chainFound: known.chainFound,
        createdMs: known.createdMs,
      })
    }
    return out.sort((a, b) => a.createdMs - b.createdMs || (a.model < b.model ? -1 : 1))
  }

  /** Remembers a model (and whether a chain of it was found, when known); returns its entry. */
  #know(model: string, name: string, blocks: number, context: number, chainFound: boolean | undefined) {
    const now = this.#now()
    let known = this.#known.get(model)
    if (known === undefined) {
      known = { name, blocks, context, chainFound: false, checkedMs: 0, createdMs: now, seenMs: now }
      this.#known.set(model, known)
      if (this.#known.size > KNOWN_MODELS_MAX) {
        const oldest = [...this.#known].sort((a, b) => a[1].seenMs - b[1].seenMs)[0][0]
        this.#known.delete(oldest)
      }
    }
    known.seenMs = now
    if (name !== '') known.name = name
    if (chainFound !== undefined) {
      known.chainFound = chainFound
      known.checkedMs = now
    }
    return known
  }

  generate(request: NetworkGenerateRequest): NetworkGeneration {
    if (this.#closed) throw new ServingError('unavailable', 'the node is stopping')
    checkGenerateRequest(request)
    if (typeof request.model !== 'string' || !isModelId(request.model))
      throw new ServingError('bad-request', `"${String(request.model).slice(0, 100)}" is not a model id`)
    const startedMs = this.#now()
    const controller = new AbortController()
    this.#running.add(controller)
    const signal =
      request.signal === undefined ? controller.signal : AbortSignal.any([request.signal, controller.signal])
    const inner = this.#start({ ...request, signal }, startedMs)
    inner.catch(() => {})
    const result: Promise<NetworkGenerateResult> = inner
      .then((g) => g.generation.result)
      .finally(() => {
        this.#running.delete(controller)
        inner.then(
          (g) => g.release(),
          () => {},
        )
      })
    result.catch(() => {})
    return {
      result,
      async *[Symbol.asyncIterator]() {
        const { generation } = await inner
        yield* generation
      },
    }
  }

  async #start(
    request: NetworkGenerateRequest,
    startedMs: number,
  ): Promise<{ generation: NetworkGeneration; release: () => void }> {
    const signal = request.signal
    const model = request.model
    // the model's files and the first look-up at once; no server at all fails without waiting for files
    const loading = this.#loadEnds(model)
    try {
      await Promise.all([loading, this.#candidates(model, false, signal)])
    } catch (error) {
      loading.then(
        (loaded) => this.#release(loaded),
        () => {},
      )
      signal?.throwIfAborted()
      throw error
    }
    const loaded = await loading
    let released = false
    const release = () => {
      if (released) return
      released = true
      this.#release(loaded)
    }
    const network: ChainNetwork = {
      candidates: ({ refresh, signal }) => this.#candidates(model, refresh, signal),
      isLocal: (peerId) => peerId === this.#self,
      open: (hop, maxLength, { signal }) => this.#open(model, hop, maxLength, signal),
    }
    const options: ChainOptions = {
      stepTimeoutMs: this.#options.stepTimeoutMs,
      failoversMax: this.#options.failoversMax,
      verifyTolerance: this.#options.verifyTolerance,
      reputation: this.#deps.reputation,
      startedMs,
      now: this.#now,
      onChain: () => {
        planned = true
        this.#know(model, loaded.name, loaded.model.blocks, loaded.model.context, true)
      },
    }
    let planned = false
    try {
      const generation = generateThroughChain(loaded.ends, network, loaded.model, request, options)
      generation.result.catch((error) => {
        if (!planned && error instanceof ServingError)
          this.#know(model, loaded.name, loaded.model.blocks, loaded.model.context, false)
      })
      return { generation, release }
    } catch (error) {
      release()
      throw error
    }
  }

  #release(loaded: LoadedEnds): void {
    loaded.users--
    loaded.usedMs = this.#now()
    this.#evictEnds()
  }

  /**
   * The model's ends on the daemon's backend (fetching the model's files when not cached); one load is
   * shared by every request for the model, so only close() cuts it short.
   */
  async #loadEnds(model: string): Promise<LoadedEnds> {
    let loading = this.#ends.get(model)
    if (loading === undefined) {
      loading = this.#readEnds(model, this.#closing.signal)
      this.#ends.set(model, loading)
      loading.catch(() => this.#ends.delete(model))
    }
    const loaded = await loading
    loaded.users++
    loaded.usedMs = this.#now()
    return loaded
  }

  async #readEnds(model: string, signal: AbortSignal): Promise<LoadedEnds> {
    let directory: string
    try {
      // only the weights pieces of the ends (and the header) are fetched
      directory = await fetchModel(model, this.#deps.blocks, this.#deps.modelCacheDir, {
        signal,
        parts: { ends: true },
      })
    } catch (error) {
      signal.throwIfAborted()
      if (error instanceof ModelPackageError) {
        if (error.code === 'bad-id') throw new ServingError('bad-request', error.message)
        if (error.code === 'not-found')
          throw new ServingError('not-found', `the model ${model} was not found: ${error.message}`)
        throw new ServingError('unavailable', `the model ${model} could not be fetched: ${error.message}`)
      }
      throw error
    }
    let gpt: GptPartTensors
    try {
      gpt = await readGptParts(directory, { ends: true })
    } catch (error) {
      if (error instanceof ModelFilesError)
        throw new ServingError('unavailable', `the model ${model} could not be loaded: ${error.message}`)
      throw error
    }
    const { tensors } = gpt
    const ends = GptEnds.fromTensors(this.#deps.backend, gpt.config, (name) => {
      const values = tensors.get(name)
      if (values === undefined) throw new ServingError('unavailable', `the model's ${name} was not read`)
      return values
    })
    return {
      ends,
      model: { blocks: gpt.config.layers, context: gpt.config.context, width: gpt.config.width },
      name: gpt.manifest.model,
      users: 0,
      usedMs: this.#now(),
    }
  }

  #evictEnds(): void {
    if (this.#ends.size <= ENDS_CACHED_MAX) return
    void Promise.all(
      [...this.#ends].map(async ([model, loading]) => ({
        model,
        loaded: await loading.catch(() => undefined),
      })),
    ).then((all) => {
      const idle = all
        .filter((e) => e.loaded !== undefined && e.loaded.users === 0)
        .sort((a, b) => (a.loaded?.usedMs ?? 0) - (b.loaded?.usedMs ?? 0))
      for (const { model, loaded } of idle) {
        if (this.#ends.size <= ENDS_CACHED_MAX) break
        this.#ends.delete(model)
        loaded?.ends.dispose()
      }
    })
  }

  /** The model's servers as route candidates: found (or reused), with latency and reputation. */
  async #candidates(
    model: string,
    refresh: boolean,
    signal: AbortSignal | undefined,
  ): Promise<RouteCandidate[]> {
    const lookup = await this.#lookup(model, refresh, signal)
    const book = this.#deps.reputation
    const out: RouteCandidate[] = []
    const seen = new Set<string>()
    const add = (peerId: string, start: number, end: number, tokensPerSecond: number) => {
      const key = `${peerId}/${start}/${end}`
      if (seen.has(key)) return
      seen.add(key)
      out.push({
        peerId,
        start,
        end,
        tokensPerSecond,
        latencyMs: peerId === this.#self ? 0 : this.#latency.get(peerId)?.ms,
        reputation: peerId === this.#self ? 1 : book.score(peerId),
      })
    }
    // this node's own spans, whether or not its record is in the DHT yet
    for (const span of this.#deps.spans.spans())
      if (span.model === model) add(this.#self, span.start, span.end, span.tokensPerSecond)
    for (const server of lookup.servers)
      for (const span of server.spans)
        add(server.peerId.toString(), span.start, span.end, span.tokensPerSecond)
    if (out.length === 0) throw new ServingError('not-found', `no server of the model ${model} was found`)
    return out
  }

  async #lookup(model: string, refresh: boolean, signal: AbortSignal | undefined): Promise<Lookup> {
    const ttl = this.#options.lookupTtlMs ?? LOOKUP_TTL_MS_DEFAULT
    const cached = this.#lookups.get(model)
    if (cached !== undefined && !refresh) {
      const lookup = await cached.catch(() => undefined)
      if (lookup !== undefined && this.#now() - lookup.atMs <= ttl) return lookup
    }
    const fresh = this.#find(model, signal)
    this.#lookups.set(model, fresh)
    fresh.catch(() => {
      if (this.#lookups.get(model) === fresh) this.#lookups.delete(model)
    })
    return fresh
  }

  async #find(model: string, signal: AbortSignal | undefined): Promise<Lookup> {
    const timeout = AbortSignal.timeout(this.#options.findServersTimeoutMs ?? FIND_SERVERS_TIMEOUT_MS_DEFAULT)
    const bounded = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    const servers: Lookup['servers'] = []
    try {
      for await (const found of this.#deps.findServers(model, {
        limit: this.#options.findServersLimit ?? FIND_SERVERS_LIMIT_DEFAULT,
        signal: bounded,
      })) {
        const peerId = typeof found.peerId === 'string' ? peerIdFromString(found.peerId) : found.peerId
        const spans = found.spans.filter((s) => s.model === model)
        if (spans.length > 0) servers.push({ peerId, spans })
      }
    } catch (error) {
      signal?.throwIfAborted()
      // a look-up cut short by its deadline keeps what it found
      if (!timeout.aborted) log('finding servers of %s failed: %e', model, error)
    }
    await this.#measure(
      servers.map((s) => s.peerId),
      signal,
    )
    return { atMs: this.#now(), servers }
  }

  /** round trips to the peers not measured recently, at once, each within pingTimeoutMs */
  async #measure(peers: PeerId[], signal: AbortSignal | undefined): Promise<void> {
    const ping = this.#deps.host.services?.ping
    if (ping === undefined) return
    const ttl = this.#options.latencyTtlMs ?? LATENCY_TTL_MS_DEFAULT
    const timeoutMs = this.#options.pingTimeoutMs ?? PING_TIMEOUT_MS_DEFAULT
    await Promise.all(
      peers.map(async (peer) => {
        const key = peer.toString()
        if (key === this.#self) return
        const known = this.#latency.get(key)
        if (known !== undefined && this.#now() - known.atMs <= ttl) return
        const deadline = AbortSignal.timeout(timeoutMs)
        const bounded = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
        const ms = await ping.ping(peer, { signal: bounded }).catch(() => undefined)
        this.#latency.set(key, { ms, atMs: this.#now() })
      }),
    )
  }

  async #open(
    model: string,
    hop: { peerId: string; start: number; end: number },
    maxLength: number,
    signal: AbortSignal,
  ): Promise<ChainSpanSession> {
    const open = { model, start: hop.start, end: hop.end, maxLength }
    if (hop.peerId === this.#self) return this.#deps.spans.openLocalSession(open)
    const lookup = this.#lookups.get(model)
    const known = (await lookup?.catch(() => undefined))?.servers.find(
      (s) => s.peerId.toString() === hop.peerId,
    )
    const peer = known?.peerId ?? peerIdFromString(hop.peerId)
    return openSpanSession({ dialer: this.#deps.host, peer }, open, {
      signal,
      stepTimeoutMs: this.#options.stepTimeoutMs,
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#closing.abort(new ServingError('unavailable', 'the node is stopping'))
    for (const controller of this.#running)
      controller.abort(new ServingError('unavailable', 'the node is stopping'))
    this.#running.clear()
    const all = await Promise.all([...this.#ends.values()].map((loading) => loading.catch(() => undefined)))
    this.#ends.clear()
    for (const loaded of all) loaded?.ends.dispose()
  }
}
