// The server side of /shardnet/span/1.0.0: the spans of models' transformer blocks this node holds on
// its backend, and the inference sessions clients open on them (protocols/serving/ has the frames and
// the client).
//
// A stream is one session. Its first frame must be an open (read within openTimeoutMs, at most
// SPAN_CONTROL_FRAME_BYTES_MAX bytes): the model must be loaded here and [start, end) inside the span
// loaded of it (else unknown-model / outside-model), max_length within the model's context (else
// past-context), and the host under its limits (else busy): sessionsMax sessions, cacheBytesMax bytes
// of KV caches reserved at their worst case (span.cacheBytes(maxLength)) together with the weights of
// sub-spans, and sessionsPerPeerMax streams per peer (PeerBudgets, with bytes in flight per peer and
// in all). Then every frame is a step (checked by checkSpanStep: unknown-session, bad-shape,
// bad-offset, past-context, answered and the session goes on) or a close. A session ends, and its cache
// is freed, when the client closes (frame or stream), the stream breaks, it is idle for idleTimeoutMs
// (answered 'timeout'), its model is unloaded ('unknown-model') or the host stops ('busy'). Every error
// answers one SpanError frame; refusals are counted by code.
//
// A span's tensors alone are read from the model directory (node/executor/gpt-tensors.ts: a whole
// weights file, or a partial one in the model cache holding the pieces of the span), so host memory
// follows the span, not the model. A request for a strict sub-range of a loaded span runs on a GptSpan
// of just those blocks, read again from the model directory the first time a session needs it and freed
// with its last session; its weights count against cacheBytesMax while it lives.
//
// Steps of all sessions run one at a time on the backend (a queue per host), so no two forwards
// interleave their kernels or reads.
import { randomInt } from 'node:crypto'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { Backend } from '../../kernels/backend.js'
import type { GptConfig } from '../../kernels/models/gpt/config.js'
import { GptSpan, type GptSpanSession } from '../../kernels/models/gpt/span.js'
import {
  bytesToHidden,
  checkSpanStep,
  decodeSpanRequest,
  encodeSpanResponse,
  hiddenToBytes,
  SPAN_CONTROL_FRAME_BYTES_MAX,
  SPAN_ERROR_CODES,
  SPAN_PROTOCOL,
  type SpanErrorCode,
  type SpanOpenRequest,
  SpanProtocolError,
  type SpanResponseFrame,
  type SpanSession,
  type SpanStepResult,
  SpanStreamClosedError,
  spanStepFrameBytesMax,
  spanStepRowsMax,
} from '../../protocols/serving/index.js'
import {
  type BoundedLpStream,
  BudgetExceededError,
  type BudgetLease,
  type BudgetRefusal,
  boundedLpStream,
  FrameTimeoutError,
  isOversizedFrameError,
  PeerBudgets,
} from '../../protocols/wire/framing.js'
import { readGptParts } from '../executor/gpt-tensors.js'
import { ModelFilesError, readGptManifestAndConfig } from '../executor/model-files.js'
import type { ServedSpanInfo } from './api.js'

const log = logger('shardnet:serving:span-host')

/** Sessions open at once over all clients (local ones included). */
export const SPAN_SESSIONS_MAX_DEFAULT = 64
/** Sessions (streams) one peer may hold at once. */
export const SPAN_SESSIONS_PER_PEER_MAX_DEFAULT = 8
/** Bytes of KV caches (each session's worst case) and sub-span weights held at once. */
export const SPAN_CACHE_BYTES_MAX_DEFAULT = 1024 * 1024 * 1024
/** A session ends after this long without a step. */
export const SPAN_IDLE_TIMEOUT_MS_DEFAULT = 60_000
/** The open frame must arrive within this long of the stream. */
export const SPAN_OPEN_TIMEOUT_MS_DEFAULT = 10_000
/** Bytes one peer may have buffered or being decoded over all its streams (a few steps' frames). */
export const SPAN_BYTES_IN_FLIGHT_PER_PEER_DEFAULT = 64 * 1024 * 1024
/** Bytes buffered over all peers. */
export const SPAN_BYTES_IN_FLIGHT_MAX_DEFAULT = 256 * 1024 * 1024
/** Streams beyond sessionsMax that are still read far enough to be answered busy. */
const SPARE_STREAMS = 16
/** Span streams this node opens at once on one connection as a client (sessions, verification). */
const OUTBOUND_STREAMS_MAX = 64
/** How long a closing stream waits for its client to close its end before it is reset. */
const CLOSE_GRACE_MS = 5_000
/** Untimed steps, then timed ones, of the tokens/s measure at load. */
const MEASURE_WARM_STEPS = 2
/** Positions of the tokens/s measure's session at most. */
const MEASURE_POSITIONS_MAX = 256
export const SPAN_MEASURE_STEPS_DEFAULT = 16

export interface SpanHostLimits {
  sessionsMax: number
  sessionsPerPeerMax: number
  cacheBytesMax: number
  idleTimeoutMs: number
  openTimeoutMs: number
  bytesInFlightPerPeer: number
  bytesInFlightMax: number
}

/** What SpanHost needs of libp2p: a protocol handler's registration. */
export interface SpanRegistrar {
  handle(
    protocol: string,
    handler: (stream: Stream, connection: Connection) => void | Promise<void>,
    options?: { maxInboundStreams?: number; maxOutboundStreams?: number },
  ): Promise<void>
  unhandle(protocol: string): Promise<void>
}

/** One step as the adversary's hook sees it. */
export interface SpanStepContext {
  model: string
  start: number
  end: number
  session: number
  offset: number
  rows: number
}

export interface SpanHostInit {
  /** the node's libp2p (or its registrar) */
  host: SpanRegistrar
  /** the daemon's compute backend: every span lives and computes on it */
  backend: Backend
  limits?: Partial<SpanHostLimits>
  /** timed steps of the tokens/s measure at load. @default SPAN_MEASURE_STEPS_DEFAULT */
  measureSteps?: number
  /**
   * THE ADVERSARY'S HOOK, for tests only: rewrites (or delays) each step's output before it is
   * answered, making this server lie or stall. A daemon never sets it.
   */
  transformOutput?: (output: Float32Array, step: SpanStepContext) => Float32Array | Promise<Float32Array>
}

export interface SpanLoadRequest {
  /** the model's content id (node/serving/model-package.ts) */
  model: string
  /** a model directory (readGptParts reads the span's tensors: the weights may be partial) */
  directory: string
  /** blocks [start, end) */
  start: number
  end: number
}

export interface SpanHostCounters {
  sessionsOpened: number
  sessionsOpen: number
  /** sessions ended, by why */
  sessionsEnded: Record<SessionEnd, number>
  steps: number
  /** hidden bytes received in steps and answered */
  bytesIn: number
  bytesOut: number
  /** every refusal answered (a SpanError frame, or a local session's SpanProtocolError), by code */
  refused: Record<SpanErrorCode, number>
  /** streams and frames refused by the per-peer budgets (protocols/wire/framing.ts) */
  budgets: Record<BudgetRefusal, number>
  /** bytes reserved now: sessions' worst-case caches and sub-spans' weights */
  cacheBytes: number
}

type SessionEnd = 'closed' | 'timeout' | 'unloaded' | 'stopped' | 'stream' | 'failed'
const SESSION_ENDS: readonly SessionEnd[] = ['closed', 'timeout', 'unloaded', 'stopped', 'stream', 'failed']

interface LoadedSpan {
  model: string
  name: string
  directory: string
  config: GptConfig
  span: GptSpan
  tokensPerSecond: number
  sessions: Set<HostedSession>
}

/** A GptSpan of a strict sub-range of a loaded span, shared by its sessions. */
interface SubSpan {
  key: string
  span: Promise<GptSpan>
  bytes: number
  refs: number
}

/** Why a session ended, and what its stream answers (when it still can). */
interface Ending {
  end: SessionEnd
  code?: SpanErrorCode
  message?: string
}

/** A tensor readGptParts read (it reads every tensor of the span asked for). */
function tensorOf(tensors: ReadonlyMap<string, Float32Array>, name: string): Float32Array {
  const values = tensors.get(name)
  if (values === undefined) throw new ModelFilesError(`the tensor ${name} was not read`)
  return values
}

/** Serves spans of models' blocks over SPAN_PROTOCOL and to this node's own chain client. */
export class SpanHost {
  readonly limits: Readonly<SpanHostLimits>
  readonly budgets: PeerBudgets
  private readonly init: SpanHostInit
  private readonly loaded = new Map<string, LoadedSpan>()
  private readonly subSpans = new Map<string, SubSpan>()
  private readonly sessions = new Map<number, HostedSession>()
  private readonly listeners = new Set<() => void>()
  private compute: Promise<unknown> = Promise.resolve()
  /** sub-spans being freed */
  private readonly disposals = new Set<Promise<unknown>>()
  private reservedBytes = 0
  private started = false
  private stopping = false
  private readonly count = {
    sessionsOpened: 0,
    steps: 0,
    bytesIn: 0,
    bytesOut: 0,
    refused: Object.fromEntries(SPAN_ERROR_CODES.map((code) => [code, 0])) as Record<SpanErrorCode, number>,
    sessionsEnded: Object.fromEntries(SESSION_ENDS.map((end) => [end, 0])) as Record<SessionEnd, number>,
  }

  constructor(init: SpanHostInit) {
    this.init = init
    this.limits = {
      sessionsMax: init.limits?.sessionsMax ?? SPAN_SESSIONS_MAX_DEFAULT,
      sessionsPerPeerMax: init.limits?.sessionsPerPeerMax ?? SPAN_SESSIONS_PER_PEER_MAX_DEFAULT,
      cacheBytesMax: init.limits?.cacheBytesMax ?? SPAN_CACHE_BYTES_MAX_DEFAULT,
      idleTimeoutMs: init.limits?.idleTimeoutMs ?? SPAN_IDLE_TIMEOUT_MS_DEFAULT,
      openTimeoutMs: init.limits?.openTimeoutMs ?? SPAN_OPEN_TIMEOUT_MS_DEFAULT,
      bytesInFlightPerPeer: init.limits?.bytesInFlightPerPeer ?? SPAN_BYTES_IN_FLIGHT_PER_PEER_DEFAULT,
      bytesInFlightMax: init.limits?.bytesInFlightMax ?? SPAN_BYTES_IN_FLIGHT_MAX_DEFAULT,
    }
    // every client is a stranger: serving is public; the stream budget is the per-peer session limit
    const limits = {
      streamsPerPeer: this.limits.sessionsPerPeerMax,
      bytesInFlightPerPeer: this.limits.bytesInFlightPerPeer,
      readTimeoutMs: this.limits.openTimeoutMs,
    }
    this.budgets = new PeerBudgets({
      known: limits,
      stranger: limits,
      isKnown: () => false,
      strangerStreamsMax: this.limits.sessionsMax + SPARE_STREAMS,
      bytesInFlightMax: this.limits.bytesInFlightMax,
    })
  }

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    this.stopping = false
    await this.init.host.handle(SPAN_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: this.limits.sessionsMax + SPARE_STREAMS,
      // this node's own chain client dials span servers on the same protocol
      maxOutboundStreams: OUTBOUND_STREAMS_MAX,
    })
  }

  /** Unregisters the protocol, ends every session ('busy': the server is stopping) and frees every span. */
  async stop(): Promise<void> {
    this.stopping = true
    if (this.started) await this.init.host.unhandle(SPAN_PROTOCOL).catch(() => {})
    this.started = false
    await Promise.all(
      [...this.sessions.values()].map((s) =>
        s.terminate({ end: 'stopped', code: 'busy', message: 'the span server is stopping' }),
      ),
    )
    await Promise.all(this.disposals)
    await this.exclusive(async () => {
      for (const loaded of this.loaded.values()) loaded.span.dispose()
    })
    this.loaded.clear()
    this.notify()
  }

  /**
   * Loads blocks [start, end) of the GPT in `directory` onto the backend and measures its tokens/s
   * with a short timed cached step. A model already loaded with another span is unloaded first (its
   * sessions end); with the same span, its info is returned. Throws ModelFilesError (the directory)
   * or GptSpanError (the span).
   */
  async load(request: SpanLoadRequest): Promise<ServedSpanInfo> {
    const existing = this.loaded.get(request.model)
    if (existing !== undefined && existing.span.start === request.start && existing.span.end === request.end)
      return this.infoOf(existing)
    const { config: described } = await readGptManifestAndConfig(request.directory)
    GptSpan.checkSpan(described.layers, request.start, request.end)
    // only the span's tensors are read: host memory follows the span, not the model
    const { manifest, config, tensors } = await readGptParts(request.directory, {
      span: { start: request.start, end: request.end },
    })
    if (existing !== undefined) await this.unload(request.model)
    const span = await this.exclusive(async () =>
      GptSpan.fromTensors(this.init.backend, config, request.start, request.end, (name) =>
        tensorOf(tensors, name),
      ),
    )
    let tokensPerSecond: number
    try {
      tokensPerSecond = await this.measure(span)
    } catch (error) {
      span.dispose()
      throw error
    }
    const loaded: LoadedSpan = {
      model: request.model,
      name: manifest.model,
      directory: request.directory,
      config,
      span,
      tokensPerSecond,
      sessions: new Set(),
    }
    // another load of the model may have landed meanwhile: the last one wins
    if (this.loaded.has(request.model)) await this.unload(request.model)
    this.loaded.set(request.model, loaded)
    log(
      'serving blocks %d-%d of %s (%d tokens/s)',
      request.start,
      request.end - 1,
      request.model,
      tokensPerSecond,
    )
    this.notify()
    return this.infoOf(loaded)
  }

  /** Stops serving `model`: its sessions end ('unknown-model') and its span is freed. */
  async unload(model: string): Promise<boolean> {
    const loaded = this.loaded.get(model)
    if (loaded === undefined) return false
    this.loaded.delete(model)
    await Promise.all(
      [...loaded.sessions].map((s) =>
        s.terminate({
          end: 'unloaded',
          code: 'unknown-model',
          message: 'this server stopped serving the model',
        }),
      ),
    )
    await Promise.all(this.disposals)
    await this.exclusive(async () => loaded.span.dispose())
    this.notify()
    return true
  }

  /** The spans served now. */
  spans(): ServedSpanInfo[] {
    return [...this.loaded.values()].map((loaded) => this.infoOf(loaded))
  }

  /** Calls `listener` whenever the spans served change (load, unload, stop); returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  counters(): SpanHostCounters {
    return {
      sessionsOpened: this.count.sessionsOpened,
      sessionsOpen: this.sessions.size,
      sessionsEnded: { ...this.count.sessionsEnded },
      steps: this.count.steps,
      bytesIn: this.count.bytesIn,
      bytesOut: this.count.bytesOut,
      refused: { ...this.count.refused },
      budgets: { ...this.budgets.refused },
      cacheBytes: this.reservedBytes,
    }
  }

  /**
   * A session on this node's own span, with the limits and errors of the protocol and no libp2p (the
   * chain client's hop when a span is served here). Throws SpanProtocolError when refused.
   */
  async openLocalSession(open: SpanOpenRequest): Promise<SpanSession> {
    const session = await this.open(open, undefined)
    return new LocalSpanSession(session)
  }

  private infoOf(loaded: LoadedSpan): ServedSpanInfo {
    return {
      model: loaded.model,
      name: loaded.name,
      start: loaded.span.start,
      end: loaded.span.end,
      blocks: loaded.config.layers,
      context: loaded.config.context,
      tokensPerSecond: loaded.tokensPerSecond,
      sessions: loaded.sessions.size,
    }
  }

  private notify(): void {
    for (const listener of this.listeners) {
      try {
        listener()
      } catch (error) {
        log.error('a span listener failed: %s', (error as Error).message)
      }
    }
  }

  /** Runs `fn` when every earlier compute on the backend has settled. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.compute.then(fn)
    this.compute = run.catch(() => {})
    return run
  }

  /**
   * tokens/s of one cached single-row step of `span` midway through a session of up to
   * MEASURE_POSITIONS_MAX positions (a prefill of half of them first), timed over a few steps after a
   * warm-up.
   */
  private async measure(span: GptSpan): Promise<number> {
    const steps = Math.max(1, this.init.measureSteps ?? SPAN_MEASURE_STEPS_DEFAULT)
    const maxLength = Math.min(span.config.context, MEASURE_POSITIONS_MAX)
    const prefill = Math.max(1, Math.min(Math.floor(maxLength / 2), maxLength - MEASURE_WARM_STEPS - steps))
    const width = span.config.width
    const rows = Float32Array.from({ length: prefill * width }, (_, i) => Math.sin(i + 1))
    const row = rows.subarray(0, width)
    return this.exclusive(async () => {
      const session = span.session(maxLength)
      try {
        await session.forward(rows, prefill, 0)
        // a context too short for every step starts over at 0
        const next = () => session.forward(row, 1, session.length < maxLength ? session.length : 0)
        for (let i = 0; i < MEASURE_WARM_STEPS; i++) await next()
        const started = performance.now()
        for (let i = 0; i < steps; i++) await next()
        const seconds = Math.max((performance.now() - started) / 1000, 1e-6)
        return steps / seconds
      } finally {
        session.dispose()
      }
    })
  }

  private refuse(code: SpanErrorCode, message: string): SpanProtocolError {
    this.count.refused[code]++
    return new SpanProtocolError(code, message)
  }

  /** @internal counts a refusal that a session's step answered */
  countRefusal(code: SpanErrorCode): void {
    this.count.refused[code]++
  }

  /** @internal */
  countStep(bytesIn: number, bytesOut: number): void {
    this.count.steps++
    this.count.bytesIn += bytesIn
    this.count.bytesOut += bytesOut
  }

  /** Opens a session for `peer` (undefined: this node); throws SpanProtocolError (counted). */
  private async open(open: SpanOpenRequest, peer: string | undefined): Promise<HostedSession> {
    const { model, start, end, maxLength } = open
    if (this.stopping) throw this.refuse('busy', 'the span server is stopping')
    if (typeof model !== 'string' || model.length === 0)
      throw this.refuse('malformed', 'the open names no model')
    if (![start, end, maxLength].every(Number.isSafeInteger) || start >= end || maxLength < 1)
      throw this.refuse(
        'malformed',
        `blocks [${start}, ${end}) with ${maxLength} positions are not a request`,
      )
    const loaded = this.loaded.get(model)
    if (loaded === undefined)
      throw this.refuse('unknown-model', `this server serves no span of ${model.slice(0, 80)}`)
    const { layers, context, width } = loaded.config
    if (start < 0 || end > layers)
      throw this.refuse('outside-model', `blocks [${start}, ${end}) are outside the model's ${layers} blocks`)
    if (start < loaded.span.start || end > loaded.span.end)
      throw this.refuse(
        'outside-model',
        `this server serves blocks ${loaded.span.start}-${loaded.span.end - 1}, ` +
          `not all of ${start}-${end - 1}`,
      )
    if (maxLength > context)
      throw this.refuse('past-context', `${maxLength} positions pass the model's context of ${context}`)
    if (this.sessions.size >= this.limits.sessionsMax)
      throw this.refuse('busy', `this server holds ${this.sessions.size} sessions, the most it takes`)
    const whole = start === loaded.span.start && end === loaded.span.end
    const perBlock = loaded.span.cacheBytes(maxLength) / loaded.span.blockCount
    const cacheBytes = perBlock * (end - start)
    const key = `${model}\n${start}\n${end}`
    const sub = whole ? undefined : this.subSpans.get(key)
    const subBytes =
      whole || sub !== undefined ? 0 : (loaded.span.parameterBytes / loaded.span.blockCount) * (end - start)
    if (this.reservedBytes + cacheBytes + subBytes > this.limits.cacheBytesMax)
      throw this.refuse(
        'busy',
        `a cache of ${maxLength} positions does not fit in this server's cache memory now ` +
          '(try fewer positions, or another server)',
      )
    // reserved before any await, so concurrent opens see each other
    this.reservedBytes += cacheBytes + subBytes
    let span: GptSpan
    let subSpan: SubSpan | undefined
    if (whole) span = loaded.span
    else {
      subSpan = sub ?? this.newSubSpan(key, loaded, start, end, subBytes)
      subSpan.refs++
      try {
        span = await subSpan.span
      } catch (error) {
        this.reservedBytes -= cacheBytes
        this.releaseSubSpan(subSpan)
        log.error('cannot build blocks %d-%d of %s: %s', start, end - 1, model, (error as Error).message)
        throw this.refuse('internal', 'this server cannot load those blocks now')
      }
      // the model may have been unloaded (or the host stopped) while the sub-span was read
      if (this.loaded.get(model) !== loaded || this.stopping) {
        this.reservedBytes -= cacheBytes
        this.releaseSubSpan(subSpan)
        throw this.refuse('unknown-model', 'this server stopped serving the model')
      }
    }
    let id = randomInt(1, 2 ** 47)
    while (this.sessions.has(id)) id = randomInt(1, 2 ** 47)
    const session = new HostedSession(this, {
      id,
      peer,
      loaded,
      span,
      gptSession: span.session(maxLength),
      width,
      maxLength,
      start,
      end,
      cacheBytes,
      subSpan,
      transform: this.init.transformOutput,
    })
    this.sessions.set(id, session)
    loaded.sessions.add(session)
    this.count.sessionsOpened++
    return session
  }

  private newSubSpan(key: string, loaded: LoadedSpan, start: number, end: number, bytes: number): SubSpan {
    const subSpan: SubSpan = {
      key,
      bytes,
      refs: 0,
      // the directory was checked whole at load: only the sub-span's tensors are read again
      span: readGptParts(loaded.directory, { span: { start, end } }, { checkSha256: false }).then(
        ({ config, tensors }) =>
          this.exclusive(async () =>
            GptSpan.fromTensors(this.init.backend, config, start, end, (name) => tensorOf(tensors, name)),
          ),
      ),
    }
    this.subSpans.set(key, subSpan)
    return subSpan
  }

  private releaseSubSpan(subSpan: SubSpan): void {
    subSpan.refs--
    if (subSpan.refs > 0) return
    this.subSpans.delete(subSpan.key)
    this.reservedBytes -= subSpan.bytes
    const disposal = subSpan.span.then(
      (span) => this.exclusive(async () => span.dispose()),
      () => {},
    )
    this.disposals.add(disposal)
    void disposal.finally(() => this.disposals.delete(disposal))
  }

  /** @internal a session's end: its cache is freed (after any step of it in flight) */
  forget(session: HostedSession, end: SessionEnd): void {
    this.sessions.delete(session.id)
    session.loaded.sessions.delete(session)
    this.reservedBytes -= session.cacheBytes
    if (session.subSpan !== undefined) this.releaseSubSpan(session.subSpan)
    this.count.sessionsEnded[end]++
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const from: PeerId = connection.remotePeer
    const lease = this.budgets.acquire(from)
    if (lease === undefined) {
      // over the peer's sessions or all streams: answered busy without reading a byte
      this.count.refused.busy++
      const lp = boundedLpStream(stream, SPAN_CONTROL_FRAME_BYTES_MAX)
      await finish(stream, lp, {
        type: 'error',
        code: 'busy',
        message: `over ${this.limits.sessionsPerPeerMax} sessions for one peer, or this server is full`,
      })
      return
    }
    try {
      await this.serveSession(stream, from, lease)
    } catch (error) {
      log('span stream of %p failed: %s', from, (error as Error).message)
      stream.abort(error instanceof Error ? error : new Error(String(error)))
    } finally {
      lease.release()
    }
  }

  /** Reads the open and serves the session's steps; the session has ended when this settles. */
  private async serveSession(stream: Stream, from: PeerId, lease: BudgetLease): Promise<void> {
    const first = boundedLpStream(stream, SPAN_CONTROL_FRAME_BYTES_MAX, {
      lease,
      readTimeoutMs: this.limits.openTimeoutMs,
    })
    const answerError = async (lp: BoundedLpStream, code: SpanErrorCode, message: string) => {
      this.count.refused[code]++
      await finish(stream, lp, { type: 'error', code, message })
    }
    let open: SpanOpenRequest
    try {
      const frame = decodeSpanRequest(await first.read())
      if (frame.type === 'step') {
        await answerError(first, 'unknown-session', 'no session is open on this stream: open one first')
        return
      }
      if (frame.type === 'close') {
        await finish(stream, first)
        return
      }
      open = frame.open
    } catch (error) {
      if (error instanceof SpanProtocolError) await answerError(first, error.code, error.message)
      else if (error instanceof FrameTimeoutError)
        await answerError(first, 'timeout', `no open frame within ${this.limits.openTimeoutMs} ms`)
      else if (isOversizedFrameError(error))
        await answerError(
          first,
          'malformed',
          `an open frame is at most ${SPAN_CONTROL_FRAME_BYTES_MAX} bytes`,
        )
      else if (!(error instanceof BudgetExceededError)) await finish(stream, first)
      return
    }
    let session: HostedSession
    try {
      session = await this.open(open, from.toString())
    } catch (error) {
      // open() counted its own refusals
      if (!(error instanceof SpanProtocolError)) {
        log.error('opening a span session failed: %s', (error as Error).message)
        this.count.refused.internal++
      }
      const refusal =
        error instanceof SpanProtocolError
          ? error
          : new SpanProtocolError('internal', 'cannot open a session')
      await finish(stream, first, { type: 'error', code: refusal.code, message: refusal.message })
      return
    }
    // a stream that breaks ends the session at once, even while its step computes
    const onClose = () => void session.terminate({ end: 'stream' })
    stream.addEventListener('close', onClose, { once: true })
    try {
      await this.serveSteps(stream, first, lease, session)
    } finally {
      stream.removeEventListener('close', onClose)
      await session.terminate({ end: 'stream' })
    }
  }

  /** Answers the open and serves the session's steps until it ends. */
  private async serveSteps(
    stream: Stream,
    first: BoundedLpStream,
    lease: BudgetLease,
    session: HostedSession,
  ): Promise<void> {
    const { width, maxLength } = session
    const writeSignal = () =>
      AbortSignal.any([session.signal, AbortSignal.timeout(this.limits.idleTimeoutMs)])
    await first.write(
      encodeSpanResponse({
        type: 'opened',
        opened: { session: session.id, width, maxLength, idleTimeoutMs: this.limits.idleTimeoutMs },
      }),
      { signal: writeSignal() },
    )
    const lp = boundedLpStream(first.unwrap(), spanStepFrameBytesMax(width, maxLength), {
      lease,
      readTimeoutMs: 0,
    })
    const reply = (frame: SpanResponseFrame) => lp.write(encodeSpanResponse(frame), { signal: writeSignal() })
    const answerError = async (code: SpanErrorCode, message: string) => {
      this.count.refused[code]++
      await finish(stream, lp, { type: 'error', code, message })
    }
    /** the session was ended here (idle, unload, stop): the stream is told why and closed */
    const ended = async () => {
      const ending = session.ending!
      if (ending.code !== undefined) await answerError(ending.code, ending.message ?? ending.code)
      else await finish(stream, lp)
    }
    for (;;) {
      let frame: ReturnType<typeof decodeSpanRequest>
      try {
        frame = decodeSpanRequest(await lp.read({ signal: session.signal }))
      } catch (error) {
        if (session.signal.aborted) return ended()
        if (error instanceof SpanProtocolError) {
          this.count.refused[error.code]++
          await reply({ type: 'error', code: error.code, message: error.message })
          continue
        }
        if (isOversizedFrameError(error))
          return answerError(
            'bad-shape',
            `a step of this session is at most ${spanStepRowsMax(width, maxLength)} rows of width ${width}`,
          )
        // the client went away (end of stream, reset, over its byte budget: the reader aborted it)
        if (!(error instanceof BudgetExceededError)) await finish(stream, lp)
        return
      }
      if (frame.type === 'close') {
        await session.terminate({ end: 'closed' })
        return finish(stream, lp)
      }
      if (frame.type === 'open') {
        this.count.refused.malformed++
        await reply({
          type: 'error',
          code: 'malformed',
          message: 'a stream holds one session: open another stream',
        })
        continue
      }
      const { step } = frame
      let result: SpanStepResult
      try {
        result = await session.step(step.session, step.offset, step.rows, step.hidden)
      } catch (error) {
        if (session.signal.aborted) return ended()
        const refusal =
          error instanceof SpanProtocolError ? error : new SpanProtocolError('internal', 'the step failed')
        if (refusal.terminal) return answerError(refusal.code, refusal.message)
        this.count.refused[refusal.code]++
        await reply({ type: 'error', code: refusal.code, message: refusal.message })
        continue
      }
      await reply({
        type: 'hidden',
        hidden: {
          session: session.id,
          offset: step.offset,
          rows: step.rows,
          hidden: hiddenToBytes(result.hidden),
          computeMs: result.computeMs,
        },
      })
    }
  }
}

/** Writes `frame` (if any) and closes the stream, resetting it if the client does not close its end. */
async function finish(stream: Stream, lp: BoundedLpStream, frame?: SpanResponseFrame): Promise<void> {
  try {
    if (frame !== undefined)
      await lp.write(encodeSpanResponse(frame), { signal: AbortSignal.timeout(CLOSE_GRACE_MS) })
    await stream.close({ signal: AbortSignal.timeout(CLOSE_GRACE_MS) })
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)))
    return
  }
  if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') return
  const timer = setTimeout(
    () => stream.abort(new Error('the client did not close the span stream')),
    CLOSE_GRACE_MS,
  )
  timer.unref?.()
  stream.addEventListener('close', () => clearTimeout(timer), { once: true })
}

interface HostedSessionInit {
  id: number
  peer: string | undefined
  loaded: LoadedSpan
  span: GptSpan
  gptSession: GptSpanSession
  width: number
  maxLength: number
  start: number
  end: number
  cacheBytes: number
  subSpan: SubSpan | undefined
  transform: SpanHostInit['transformOutput']
}

/** One session on the host: its cache, its idle timer and its steps, one at a time. */
class HostedSession {
  readonly id: number
  readonly peer: string | undefined
  readonly loaded: LoadedSpan
  readonly width: number
  readonly maxLength: number
  readonly start: number
  readonly end: number
  readonly cacheBytes: number
  readonly subSpan: SubSpan | undefined
  readonly host: SpanHost
  private readonly gptSession: GptSpanSession
  private readonly transform: SpanHostInit['transformOutput']
  private readonly controller = new AbortController()
  private idleTimer: ReturnType<typeof setTimeout> | undefined
  private queue: Promise<unknown> = Promise.resolve()
  /** the step being computed, which the cache must outlive */
  private inFlight: Promise<unknown> = Promise.resolve()
  private ended: Promise<void> | undefined
  ending: Ending | undefined

  constructor(host: SpanHost, init: HostedSessionInit) {
    this.host = host
    this.id = init.id
    this.peer = init.peer
    this.loaded = init.loaded
    this.width = init.width
    this.maxLength = init.maxLength
    this.start = init.start
    this.end = init.end
    this.cacheBytes = init.cacheBytes
    this.subSpan = init.subSpan
    this.gptSession = init.gptSession
    this.transform = init.transform
    this.armIdle()
  }

  /** aborted when the session ends */
  get signal(): AbortSignal {
    return this.controller.signal
  }

  get length(): number {
    return this.gptSession.length
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer)
    const ms = this.host.limits.idleTimeoutMs
    this.idleTimer = setTimeout(() => {
      void this.terminate({ end: 'timeout', code: 'timeout', message: `the session was idle for ${ms} ms` })
    }, ms)
    this.idleTimer.unref?.()
  }

  /** Runs one step (after any earlier step of this session); throws SpanProtocolError when refused. */
  step(
    session: number,
    offset: number,
    rows: number,
    hidden: Uint8Array | Float32Array,
    signal?: AbortSignal,
  ): Promise<SpanStepResult> {
    const run = this.queue.then(() => this.run(session, offset, rows, hidden, signal))
    this.queue = run.catch(() => {})
    return run
  }

  private async run(
    session: number,
    offset: number,
    rows: number,
    hidden: Uint8Array | Float32Array,
    signal: AbortSignal | undefined,
  ): Promise<SpanStepResult> {
    if (this.controller.signal.aborted) {
      const ending = this.ending!
      throw new SpanProtocolError(ending.code ?? 'unknown-session', ending.message ?? 'the session has ended')
    }
    checkSpanStep(
      { session, offset, rows, hiddenBytes: hidden.byteLength },
      { id: this.id, width: this.width, length: this.gptSession.length, maxLength: this.maxLength },
    )
    const input = hidden instanceof Float32Array ? hidden : bytesToHidden(hidden)
    clearTimeout(this.idleTimer)
    try {
      const context = { model: this.loaded.model, start: this.start, end: this.end, session, offset, rows }
      const computed = this.host.exclusive(async () => {
        if (this.controller.signal.aborted || signal?.aborted) return undefined
        const started = performance.now()
        const output = await this.gptSession.forward(input, rows, offset)
        return { output, computeMs: performance.now() - started }
      })
      this.inFlight = computed.catch(() => {})
      let result: { output: Float32Array; computeMs: number } | undefined
      try {
        result = await computed
      } catch (error) {
        log.error('a step of blocks %d-%d failed: %s', this.start, this.end - 1, (error as Error).message)
        const message = 'the server failed to compute the step'
        void this.terminate({ end: 'failed', code: 'internal', message })
        throw new SpanProtocolError('internal', message)
      }
      signal?.throwIfAborted()
      if (result === undefined) {
        const ending = this.ending
        throw new SpanProtocolError(
          ending?.code ?? 'unknown-session',
          ending?.message ?? 'the session has ended',
        )
      }
      let output = result.output
      if (this.transform !== undefined) output = await this.transform(output, context)
      this.host.countStep(input.byteLength, output.byteLength)
      return { hidden: output, computeMs: result.computeMs }
    } finally {
      if (!this.controller.signal.aborted) this.armIdle()
    }
  }

  /** Ends the session once: its stream is told why (when `ending.code`), its cache freed. */
  terminate(ending: Ending): Promise<void> {
    if (this.ended !== undefined) return this.ended
    this.ending = ending
    clearTimeout(this.idleTimer)
    this.controller.abort(new Error(ending.message ?? 'the session ended'))
    this.ended = this.inFlight.then(() => {
      this.gptSession.dispose()
      this.host.forget(this, ending.end)
    })
    return this.ended
  }
}

/** A session on this node's own span (SpanHost.openLocalSession). */
class LocalSpanSession implements SpanSession {
  readonly id: number
  readonly width: number
  readonly maxLength: number
  readonly stepRowsMax: number
  private readonly session: HostedSession
  #closed = false

  constructor(session: HostedSession) {
    this.session = session
    this.id = session.id
    this.width = session.width
    this.maxLength = session.maxLength
    this.stepRowsMax = spanStepRowsMax(session.width, session.maxLength)
  }

  get length(): number {
    return this.session.length
  }

  get closed(): boolean {
    return this.#closed || this.session.signal.aborted
  }

  async step(
    offset: number,
    rows: number,
    hidden: Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<SpanStepResult> {
    if (this.closed) throw new SpanStreamClosedError('the span session is closed')
    options.signal?.throwIfAborted()
    try {
      return await this.session.step(this.id, offset, rows, hidden, options.signal)
    } catch (error) {
      if (error instanceof SpanProtocolError) {
        this.session.host.countRefusal(error.code)
        if (error.terminal) void this.close()
      } else void this.close()
      throw error
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.session.terminate({ end: 'closed' })
  }
}
