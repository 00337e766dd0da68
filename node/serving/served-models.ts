// The models a daemon serves spans of, and how each came to be served: `shardnet node serve MODEL
// [--blocks A-B]` (POST /v1/serve) and the config's `serve` entries. MODEL is a model directory (its
// files are published over the blocks protocol and its content id computed) or a model id (the weights
// pieces of the span served are fetched by it, every byte verified, into the data dir's model cache).
// Without --blocks the span is chosen by node/serving/placement.ts: as many blocks as the serve memory
// budget has left, where the spans other servers advertise (discovery.findServers) cover the model
// thinnest.
//
// A request is checked at once (the range's syntax, the directory's model.json or the model id's package
// block, the blocks against the model, an explicit span against the memory budget) so that a bad one is
// refused with a ServeRequestError the API answers 4xx; the slow part (publishing the files, finding the
// other servers, fetching the span's pieces, loading and measuring the span) runs in the background, one
// request at a time, and GET /v1/serve shows each entry's state. Requests made through the API are kept in
// serving.json in the data dir and served again after a restart, like the config's entries.
import { readFile, stat } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { BlockExchange } from '../../protocols/blocks/index.js'
import { BlockNotFoundError } from '../../protocols/blocks/index.js'
import type { AdvertisedSpan } from '../../protocols/discovery/index.js'
import { isModelId } from '../../protocols/wire/validation/index.js'
import { ModelFilesError } from '../executor/model-files.js'
import { writeFileAtomic } from '../store/atomic-file.js'
import type { ServedSpanInfo } from './api.js'
import {
  fetchModel,
  MODEL_PACKAGE_BYTES_MAX,
  ModelPackageError,
  type ModelShape,
  parseModelPackage,
  publishModel,
  readModelShape,
} from './model-package.js'
import {
  BlockRangeError,
  type CoveringSpan,
  chooseSpan,
  formatBlockRange,
  parseBlockRange,
  type SpanMemoryModel,
  spanMemoryBytes,
} from './placement.js'

const log = logger('shardnet:serving')

/** The file in the data dir that keeps what `shardnet node serve` asked for. */
export const SERVING_STATE_FILE = 'serving.json'
/** How long a request waits for a model id's package block. */
export const PACKAGE_FETCH_TIMEOUT_MS_DEFAULT = 20_000
/** How long the automatic placement looks for the other servers of a model. */
export const PLACEMENT_LOOKUP_MS_DEFAULT = 10_000
/** Servers of a model the placement considers at most. */
export const PLACEMENT_SERVERS_MAX = 200
/** How long a start-up entry whose model no peer had yet waits before it is tried again. */
export const START_RETRY_MS_DEFAULT = 5_000
/** Entries (models served) at most; each is one span of this node's capability record. */
export const SERVED_MODELS_MAX = 16

/** What to serve: a model directory (an absolute path) or a model id, and optionally which blocks. */
export interface ServeRequest {
  model: string
  /** "A-B": blocks A through B, inclusive; absent: chosen where coverage is thinnest */
  blocks?: string
}

/**
 * preparing: checked, waiting its turn; publishing: storing a directory's files as blocks; placing: looking
 * at the other servers; fetching: fetching a model id's files (those of the span's blocks); loading: the
 * span onto the backend; serving; failed (see `error`); stopped (in unserve's answer only).
 */
export type ServeState =
  | 'preparing'
  | 'publishing'
  | 'fetching'
  | 'placing'
  | 'loading'
  | 'serving'
  | 'failed'
  | 'stopped'

/** One model this node serves or is about to, as GET /v1/serve shows it. */
export interface ServeEntry {
  /** the request's model: a directory or a model id */
  model: string
  /** the blocks asked for ("A-B"), if any */
  blocksRequested?: string
  /** config: from the config file; api: from `shardnet node serve` (kept in serving.json) */
  source: 'config' | 'api'
  state: ServeState
  /** the model's content id, once known (a directory's is computed while publishing) */
  modelId?: string
  name: string
  /** the model's block count L */
  blocks: number
  context: number
  /** the span [start, end), once chosen */
  start?: number
  end?: number
  /** whether the span was chosen by placement (no --blocks) */
  placed: boolean
  /** measured at load */
  tokensPerSecond?: number
  /** sessions open on the span now */
  sessions?: number
  /** why it failed */
  error?: string
  /** bytes the span takes at most (weights and session caches), once chosen */
  memoryBytes?: number
}

/** A serve request refused before any work: `status` is the HTTP status the API answers. */
export class ServeRequestError extends Error {
  static override name = 'ServeRequestError'
  readonly status: 400 | 404 | 422
  constructor(status: ServeRequestError['status'], message: string) {
    super(message)
    this.name = 'ServeRequestError'
    this.status = status
  }
}

/** What ServedModels needs of the span host (node/serving/span-host.ts SpanHost). */
export interface ServedSpanHost {
  readonly limits: { readonly sessionsMax: number; readonly cacheBytesMax: number }
  load(request: { model: string; directory: string; start: number; end: number }): Promise<ServedSpanInfo>
  unload(model: string): Promise<boolean>
  spans(): ServedSpanInfo[]
}

export interface ServedModelsInit {
  spans: ServedSpanHost
  blocks: Pick<BlockExchange, 'put' | 'get'>
  /** the servers of a model (protocols/discovery findServers) */
  findServers(
    model: string,
    options: { limit?: number; signal?: AbortSignal },
  ): AsyncIterable<{ peerId: PeerId | string; spans: AdvertisedSpan[] }>
  /** this node's peer id (its own spans are not the network's coverage) */
  selfPeerId: string
  /** where fetched models are cached (fetchModel's cacheRoot) */
  cacheRoot: string
  /** serving.json in the data dir */
  stateFile: string
  /** bytes all served spans may take */
  memoryBytes: number
  /** @default PACKAGE_FETCH_TIMEOUT_MS_DEFAULT */
  packageFetchTimeoutMs?: number
  /** @default PLACEMENT_LOOKUP_MS_DEFAULT */
  placementLookupMs?: number
  /** @default START_RETRY_MS_DEFAULT */
  startRetryMs?: number
  /**
   * peers in the DHT routing table now: the placement waits (up to placementLookupMs) for one, so that a
   * node that has just started sees the network before choosing its span @default always some
   */
  routingTableSize?: () => number
}

interface Job {
  entry: ServeEntry
  shape: ModelShape
  range?: { start: number; end: number }
  /** the model id, known at once for a model id, after publishing for a directory */
  modelId?: string
  /** settles when the job has run */
  done?: Promise<void>
  /** it failed because no peer had the model's files (yet) */
  notFound?: boolean
}

/** The models this daemon serves spans of; see the file's comment. */
export class ServedModels {
  private readonly init: ServedModelsInit
  private readonly jobs = new Map<string, Job>()
  private readonly shutdown = new AbortController()
  private queue: Promise<void> = Promise.resolve()
  private starting: Promise<void> = Promise.resolve()

  constructor(init: ServedModelsInit) {
    this.init = init
  }

  /**
   * Serves the config's entries and those kept in serving.json, in the background: a model id no peer
   * has yet (the network is still forming) is tried again every startRetryMs until it is served.
   */
  async start(configured: readonly ServeRequest[]): Promise<void> {
    const kept = await this.readState()
    const requests: Array<[ServeRequest, ServeEntry['source']]> = [
      ...configured.map((r): [ServeRequest, 'config'] => [r, 'config']),
      ...kept
        .filter((r) => !configured.some((c) => c.model === r.model))
        .map((r): [ServeRequest, 'api'] => [r, 'api']),
    ]
    this.starting = Promise.all(requests.map(([request, source]) => this.serveAtStart(request, source))).then(
      () => {},
    )
  }

  private async serveAtStart(request: ServeRequest, source: ServeEntry['source']): Promise<void> {
    const retryMs = this.init.startRetryMs ?? START_RETRY_MS_DEFAULT
    while (!this.shutdown.signal.aborted) {
      let retry = false
      try {
        await this.serve(request, source)
        const job = this.jobs.get(request.model)
        await job?.done
        retry = job?.entry.state === 'failed' && job.notFound === true && this.jobs.get(request.model) === job
      } catch (error) {
        // a model that cannot be served now (its directory gone, no peer has it yet): shown as failed
        const message = (error as Error).message
        retry = error instanceof ServeRequestError && error.status === 404 && isModelId(request.model)
        log.error('cannot serve %s: %s%s', request.model, message, retry ? ' (trying again)' : '')
        // a request made since (through the API) is not overwritten
        const since = this.jobs.get(request.model)
        if (since !== undefined && since.entry.state !== 'failed') return
        this.jobs.set(request.model, {
          entry: {
            model: request.model,
            ...(request.blocks === undefined ? {} : { blocksRequested: request.blocks }),
            source,
            state: 'failed',
            name: '',
            blocks: 0,
            context: 0,
            placed: request.blocks === undefined,
            error: message,
          },
          shape: { name: '', blocks: 0, context: 0, width: 0 },
        })
      }
      if (!retry) return
      await new Promise<void>((done) => {
        const timer = setTimeout(done, retryMs)
        this.shutdown.signal.addEventListener('abort', () => {
          clearTimeout(timer)
          done()
        })
      })
    }
  }

  /** Stops the work in progress (the spans themselves are the span host's to free). */
  async stop(): Promise<void> {
    this.shutdown.abort()
    await this.starting
    await this.queue
  }

  /** Every entry, in the order they were asked for, with the span host's figures. */
  list(): ServeEntry[] {
    const live = new Map(this.init.spans.spans().map((info) => [info.model, info]))
    return [...this.jobs.values()].map((job) => {
      if (job.entry.state !== 'serving') return { ...job.entry }
      const info = job.modelId === undefined ? undefined : live.get(job.modelId)
      // the span host is the truth: a span it no longer holds (unloaded by hand) is not served
      if (info === undefined || info.start !== job.entry.start || info.end !== job.entry.end) {
        return { ...job.entry, state: 'failed', error: 'the span server no longer holds this span' }
      }
      return { ...job.entry, sessions: info.sessions, tokensPerSecond: info.tokensPerSecond }
    })
  }

  /** Bytes the spans served (or being loaded) take at most. */
  memoryUsedBytes(except?: Job): number {
    let used = 0
    for (const job of this.jobs.values()) {
      if (job === except || job.entry.state === 'failed') continue
      used += job.entry.memoryBytes ?? 0
    }
    return used
  }

  /**
   * Stops serving `model` (as it was asked for: a directory or a model id, or the model id of either):
   * its span is unloaded, its sessions end, and it is dropped from serving.json. A config entry is served
   * again at the next start. Throws ServeRequestError (404) when nothing of that name is served.
   */
  async unserve(model: string): Promise<ServeEntry> {
    const key =
      [...this.jobs.keys()].find((k) => k === model) ??
      [...this.jobs.entries()].find(([, job]) => job.modelId === model)?.[0]
    const job = key === undefined ? undefined : this.jobs.get(key)
    if (key === undefined || job === undefined) {
      throw new ServeRequestError(404, `this node does not serve ${model.slice(0, 200)}`)
    }
    this.jobs.delete(key)
    if (job.entry.source === 'api') await this.writeState()
    // another entry of the same model (its directory and its id) keeps the span
    const shared = [...this.jobs.values()].some((other) => other.modelId === job.modelId)
    if (job.modelId !== undefined && !shared) await this.init.spans.unload(job.modelId)
    log('stopped serving %s', job.entry.model)
    return { ...job.entry, state: 'stopped' }
  }

  get memoryBytes(): number {
    return this.init.memoryBytes
  }

  /**
   * Checks a request and starts serving it (in the background); returns its entry. A request for a
   * model already asked for replaces that entry. Throws ServeRequestError.
   */
  async serve(request: ServeRequest, source: ServeEntry['source'] = 'api'): Promise<ServeEntry> {
    if (this.shutdown.signal.aborted) throw new ServeRequestError(400, 'the daemon is stopping')
    let range: { start: number; end: number } | undefined
    if (request.blocks !== undefined) {
      try {
        range = parseBlockRange(request.blocks)
      } catch (error) {
        if (error instanceof BlockRangeError) throw new ServeRequestError(400, error.message)
        throw error
      }
    }
    const isId = isModelId(request.model)
    if (!isId && !isAbsolute(request.model)) {
      throw new ServeRequestError(
        400,
        `"${request.model.slice(0, 200)}" is neither a model id (a CIDv1 string) nor the absolute path ` +
          'of a model directory',
      )
    }
    const shape = isId ? await this.packageShape(request.model) : await this.directoryShape(request.model)
    if (range !== undefined && range.end > shape.blocks) {
      throw new ServeRequestError(
        400,
        `${formatBlockRange(range.start, range.end)} are outside the model, whose ${shape.blocks} blocks ` +
          `are 0-${shape.blocks - 1}`,
      )
    }
    const replaced = this.jobs.get(request.model)
    if (
      replaced === undefined &&
      this.jobs.size >= SERVED_MODELS_MAX &&
      ![...this.jobs.values()].some((job) => job.entry.state === 'failed')
    ) {
      throw new ServeRequestError(400, `this node serves ${SERVED_MODELS_MAX} models already`)
    }
    const entry: ServeEntry = {
      model: request.model,
      ...(request.blocks === undefined ? {} : { blocksRequested: request.blocks }),
      source,
      state: 'preparing',
      ...(isId ? { modelId: request.model } : {}),
      name: shape.name,
      blocks: shape.blocks,
      context: shape.context,
      placed: range === undefined,
    }
    const job: Job = { entry, shape, ...(range === undefined ? {} : { range }) }
    if (isId) job.modelId = request.model
    if (range !== undefined) {
      // an explicit span must fit what the budget has left beside the other models
      const bytes = spanMemoryBytes(this.memoryModel(shape), range.end - range.start)
      const left = this.init.memoryBytes - this.memoryUsedBytes(replaced)
      if (bytes > left) {
        throw new ServeRequestError(
          400,
          `${formatBlockRange(range.start, range.end, shape.blocks)} need ${bytes} bytes (weights and ` +
            `${this.init.spans.limits.sessionsMax} sessions' caches), above the ${Math.max(0, left)} bytes ` +
            'the serve memory budget has left (serveMemoryBytes)',
        )
      }
      entry.memoryBytes = bytes
    }
    // a replaced entry keeps its place in the list
    this.jobs.set(request.model, job)
    if (source === 'api') await this.writeState()
    job.done = this.queue.then(() => this.run(job))
    this.queue = job.done
    return { ...entry }
  }

  private memoryModel(shape: ModelShape): SpanMemoryModel {
    return {
      width: shape.width,
      context: shape.context,
      sessionsMax: this.init.spans.limits.sessionsMax,
      cacheBytesMax: this.init.spans.limits.cacheBytesMax,
    }
  }

  private async directoryShape(directory: string): Promise<ModelShape> {
    try {
      return await readModelShape(directory)
    } catch (error) {
      if (!(error instanceof ModelFilesError)) throw error
      const found = await stat(directory).then(
        (info) => info.isDirectory(),
        () => false,
      )
      if (!found) throw new ServeRequestError(404, `no model directory at ${directory}`)
      throw new ServeRequestError(400, error.message)
    }
  }

  private async packageShape(modelId: string): Promise<ModelShape> {
    let bytes: Uint8Array
    const timeout = AbortSignal.timeout(this.init.packageFetchTimeoutMs ?? PACKAGE_FETCH_TIMEOUT_MS_DEFAULT)
    try {
      bytes = await this.init.blocks.get(CID.parse(modelId), {
        signal: AbortSignal.any([this.shutdown.signal, timeout]),
      })
    } catch (error) {
      if (error instanceof BlockNotFoundError || (timeout.aborted && !this.shutdown.signal.aborted)) {
        throw new ServeRequestError(404, `no peer has the model ${modelId} (its package block was not found)`)
      }
      throw error
    }
    if (bytes.byteLength > MODEL_PACKAGE_BYTES_MAX) {
      throw new ServeRequestError(422, `${modelId} is not a model package (it is ${bytes.byteLength} bytes)`)
    }
    try {
      const pkg = parseModelPackage(bytes)
      return { name: pkg.name, blocks: pkg.blocks, context: pkg.context, width: pkg.width }
    } catch (error) {
      if (error instanceof ModelPackageError) throw new ServeRequestError(422, `${modelId}: ${error.message}`)
      throw error
    }
  }

  /** The slow part of a request: the files, the placement, the load. Never throws: failures are shown. */
  private async run(job: Job): Promise<void> {
    const { entry } = job
    // a later request for the same model replaced this one before its turn
    const current = () => this.jobs.get(entry.model) === job && !this.shutdown.signal.aborted
    if (!current()) return
    const signal = this.shutdown.signal
    try {
      let directory: string | undefined
      if (job.modelId === undefined) {
        entry.state = 'publishing'
        const published = await publishModel(entry.model, this.init.blocks, { signal })
        job.modelId = published.modelId
        entry.modelId = published.modelId
        if (!published.provided)
          log('the files of %s are stored but not provided yet (no DHT peers)', entry.model)
        directory = entry.model
      }
      const modelId = job.modelId
      if (!current()) return
      // another entry of the same model (its directory and its id) gives way to this one
      for (const [key, other] of this.jobs) {
        if (other !== job && other.modelId === modelId) {
          this.jobs.delete(key)
          if (other.entry.source === 'api') await this.writeState()
        }
      }
      // the placement needs the model's shape alone (its package): the weights come after, only the span's
      let range = job.range
      if (range === undefined) {
        entry.state = 'placing'
        const coverage = await this.coverage(modelId)
        range = chooseSpan({
          blocks: job.shape.blocks,
          memory: this.memoryModel(job.shape),
          memoryBytes: this.init.memoryBytes - this.memoryUsedBytes(job),
          coverage,
        })
        entry.memoryBytes = spanMemoryBytes(this.memoryModel(job.shape), range.end - range.start)
      }
      if (!current()) return
      entry.start = range.start
      entry.end = range.end
      if (directory === undefined) {
        entry.state = 'fetching'
        // only the weights pieces of the span's blocks (and the header) are fetched
        directory = await fetchModel(modelId, this.init.blocks, this.init.cacheRoot, {
          signal,
          parts: { span: range },
        })
        if (!current()) return
      }
      entry.state = 'loading'
      const info = await this.init.spans.load({
        model: modelId,
        directory,
        start: range.start,
        end: range.end,
      })
      if (!current()) return
      entry.state = 'serving'
      entry.name = info.name
      entry.tokensPerSecond = info.tokensPerSecond
      log(
        'serving %s of %s (%s), %d tokens/s',
        formatBlockRange(range.start, range.end, info.blocks),
        modelId,
        entry.model,
        info.tokensPerSecond,
      )
    } catch (error) {
      if (signal.aborted) return
      entry.state = 'failed'
      entry.error = (error as Error).message
      job.notFound = error instanceof ModelPackageError && error.code === 'not-found'
      log.error('serving %s failed: %s', entry.model, entry.error)
    }
  }

  /** The spans of `model` other servers advertise now. */
  private async coverage(model: string): Promise<CoveringSpan[]> {
    const spans: CoveringSpan[] = []
    const signal = AbortSignal.any([
      this.shutdown.signal,
      AbortSignal.timeout(this.init.placementLookupMs ?? PLACEMENT_LOOKUP_MS_DEFAULT),
    ])
    const peers = this.init.routingTableSize
    while (peers !== undefined && peers() === 0 && !signal.aborted) {
      await new Promise((done) => setTimeout(done, 100))
    }
    try {
      for await (const server of this.init.findServers(model, { limit: PLACEMENT_SERVERS_MAX, signal })) {
        if (server.peerId.toString() === this.init.selfPeerId) continue
        for (const span of server.spans) {
          if (span.model === model) spans.push(span)
        }
      }
    } catch (error) {
      if (this.shutdown.signal.aborted) throw error
      // a lookup cut short places by what it found
      log('looking for the servers of %s ended early: %s', model, (error as Error).message)
    }
    return spans
  }

  private async readState(): Promise<ServeRequest[]> {
    let text: string
    try {
      text = await readFile(this.init.stateFile, 'utf8')
    } catch {
      return []
    }
    try {
      const value = JSON.parse(text) as { serve?: unknown }
      if (!Array.isArray(value.serve)) return []
      return value.serve.filter(
        (r): r is ServeRequest =>
          typeof r === 'object' &&
          r !== null &&
          typeof (r as ServeRequest).model === 'string' &&
          ((r as ServeRequest).blocks === undefined || typeof (r as ServeRequest).blocks === 'string'),
      )
    } catch {
      log.error('%s is not valid JSON: the models it listed are not served', this.init.stateFile)
      return []
    }
  }

  private async writeState(): Promise<void> {
    const serve = [...this.jobs.values()]
      .filter((job) => job.entry.source === 'api')
      .map((job) => ({
        model: job.entry.model,
        ...(job.entry.blocksRequested === undefined ? {} : { blocks: job.entry.blocksRequested }),
      }))
    await writeFileAtomic(this.init.stateFile, `${JSON.stringify({ serve }, null, 2)}\n`, 0o600)
  }
}
