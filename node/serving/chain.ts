// Generation through a chain of span servers: the client's side of layer-span serving.
//
// The client holds the model's ends (embeddings, final LayerNorm, tied head) and samples; each hop of
// the chain is a session on a server of blocks [start, end). Per byte: embed the new rows, send them
// through every hop in order (each hop's output is the next one's input), take the last row's logits
// and draw the byte with sampleByte. The window rule is generate.ts's, step for step (a prompt past
// the context is cut from the left; when a byte would make the window pass the context, the window
// restarts as the last C - 1 bytes: a prefill at offset 0 on every hop), and the random stream is the
// same, so the text equals local generateBytes with the same seed on the same engine.
//
// Failover. Each hop keeps the rows it was sent for the positions its session holds (its input
// history, [maxLength, D]). When a server dies (its stream ends) or stalls (no answer within
// stepTimeoutMs), the client re-plans from that hop's start (route.ts replanFrom: another server of
// the same blocks, or a new path that rejoins the chain further on), replays the history, the current
// step's rows included, as one prefill through the new hops, and goes on: the next hop receives the
// replay's last rows as this step's output. Downstream caches are kept. On one engine a prefill and
// the appends it replaces give the same rows up to the float32 order of the sums (measured: bitwise at
// width 32, within 5e-6 of the row's RMS at width 768), so the text is the text of an uninterrupted run.
//
// Verification (`verify` R): for each hop, a seeded draw per step (stream "chain:verify:<start>-<end>"
// of the request's seed) picks a fraction R of its steps; those run also, at the same time, on a second
// server of exactly the hop's blocks, whose session is caught up with the rows it missed in the same
// step (one step from the position it holds). The outputs must agree within VERIFY_TOLERANCE_DEFAULT
// (see hiddenAgree). On disagreement a third server runs the same history and decides: the server in
// the minority is recorded as 'lied' in the ReputationBook, dropped and excluded for the rest of the
// generation, and the text goes on from the majority's output (a primary that lied is replaced by the
// second server, whose cache already holds the history; the third becomes the new second). Hops this
// node serves itself are not verified. A lie smaller than the tolerance passes: the tolerance bounds
// how far a liar can move the hidden states, not whether it tried.
import { SeededRandom } from '../../kernels/data/random.js'
import { sampleByte, samplingProblem } from '../../kernels/models/gpt/generate.js'
import {
  SpanMalformedResponseError,
  SpanProtocolError,
  SpanStalledError,
  SpanStreamClosedError,
} from '../../protocols/serving/index.js'
import type { ReputationBook, ReputationEvent } from '../reputation.js'
import type { ChainHop, NetworkGenerateRequest, NetworkGenerateResult, NetworkGeneration } from './api.js'
import { ServingError } from './api.js'
import {
  findVerifier,
  planChain,
  type RouteCandidate,
  RouteError,
  type RouteHop,
  type RouteOptions,
  replanFrom,
} from './route.js'

/** What the chain needs of a session on a span server: RemoteSpanSession and SpanHost's local one fit. */
export interface ChainSpanSession {
  /** rows of one step at most (a longer replay goes in several steps); unlimited when absent */
  readonly stepRowsMax?: number
  step(
    offset: number,
    rows: number,
    hidden: Float32Array,
    options?: { signal?: AbortSignal },
  ): Promise<{ hidden: Float32Array }>
  /** ends the session; never throws */
  close(): Promise<void>
}

/** The client's ends of the model (kernels/models/gpt/span.ts GptEnds fits). */
export interface ChainEnds {
  embed(bytes: ArrayLike<number>, offset: number): Promise<Float32Array>
  logits(lastRow: Float32Array): Promise<Float32Array>
}

/** How the chain reaches servers: network-serving.ts over libp2p (and SpanHost for this node's spans). */
export interface ChainNetwork {
  /**
   * The model's servers (with their reputation filled in). `refresh` asks for a new look-up instead
   * of what was found recently (the chain asks for it when the known servers cannot cover a span).
   */
  candidates(options: { refresh: boolean; signal?: AbortSignal }): Promise<RouteCandidate[]>
  /** A session on blocks [start, end) of `peerId`'s server holding up to `maxLength` positions. */
  open(
    hop: { peerId: string; start: number; end: number },
    maxLength: number,
    options: { signal: AbortSignal },
  ): Promise<ChainSpanSession>
  /** whether `peerId` is this node (its spans are served in-process and not verified) */
  isLocal(peerId: string): boolean
}

/** The model's shape as the chain needs it. */
export interface ChainModel {
  /** block count L */
  blocks: number
  /** context C */
  context: number
  /** width D */
  width: number
}

export interface ChainOptions {
  /** a step (or an open, or a replay) without an answer for this long is a stalled server */
  stepTimeoutMs?: number
  /** servers replaced in one generation at most (dead, stalled, caught lying) */
  failoversMax?: number
  /** see hiddenAgree; @default VERIFY_TOLERANCE_DEFAULT */
  verifyTolerance?: number
  /** where lies and time-outs are recorded (and agreements) */
  reputation?: Pick<ReputationBook, 'record'>
  /** exclusions and weights of route.ts */
  route?: Omit<RouteOptions, 'exclude'>
  /** when the request arrived (firstTokenMs and seconds count from it) @default when generation starts */
  startedMs?: number
  /** called with the chain each time it is planned or changes */
  onChain?: (chain: readonly ChainHop[]) => void
  now?: () => number
}

export const CHAIN_STEP_TIMEOUT_MS_DEFAULT = 10_000
export const CHAIN_FAILOVERS_MAX_DEFAULT = 8
/**
 * Largest difference between two servers' outputs of one row, relative to the row's RMS, that still
 * counts as agreement. Different engines (native BLAS, wasm, the reference loops, WebGPU) sum float32
 * products in different orders; measured over 4 blocks of GPT widths 32, 128 and 768 (a prefill and
 * an append), the largest difference between any two engines was 1.2e-5 of the row's RMS, and a
 * prefill against appends on one engine 4.4e-6. Rounding error grows about with the square root of
 * the blocks and of the width, so 1e-3 leaves a margin of about 100 for spans of up to 96 blocks,
 * while a change of 0.1% of a row's scale is far below what moves a byte's logits noticeably.
 */
export const VERIFY_TOLERANCE_DEFAULT = 1e-3
/** Stop sequences of a request at most, and bytes of one. */
export const STOP_SEQUENCES_MAX = 16
export const STOP_BYTES_MAX = 256
/** How long the end of a generation waits for its sessions' closes at most. */
export const CLOSE_WAIT_MS_MAX = 1_000
/** Bytes one request may ask for at most. */
export const MAX_TOKENS_MAX = 1 << 20

/** A step that got no answer within the chain's stepTimeoutMs. */
export class ChainStallError extends Error {
  static override name = 'ChainStallError'
  constructor(message: string) {
    super(message)
    this.name = 'ChainStallError'
  }
}

/** A server's answer of the wrong size. */
export class ChainAnswerError extends Error {
  static override name = 'ChainAnswerError'
  constructor(message: string) {
    super(message)
    this.name = 'ChainAnswerError'
  }
}

/**
 * Whether two outputs [rows, width] agree: in every row, the largest element difference is at most
 * `tolerance` times the larger of the two rows' RMS (plus 1e-30, so two zero rows agree). NaN or
 * infinity anywhere disagrees; so do different lengths.
 */
export function hiddenAgree(a: Float32Array, b: Float32Array, width: number, tolerance: number): boolean {
  if (a.length !== b.length || a.length % width !== 0) return false
  for (let row = 0; row < a.length / width; row++) {
    let squaresA = 0
    let squaresB = 0
    let largest = 0
    for (let k = row * width; k < (row + 1) * width; k++) {
      squaresA += a[k] * a[k]
      squaresB += b[k] * b[k]
      const difference = Math.abs(a[k] - b[k])
      if (!(difference <= largest)) largest = difference
    }
    const scale = Math.sqrt(Math.max(squaresA, squaresB) / width)
    if (!Number.isFinite(scale) || !(largest <= tolerance * scale + 1e-30)) return false
  }
  return true
}

/** Checks a request; throws ServingError('bad-request') naming the first field that cannot work. */
export function checkGenerateRequest(request: NetworkGenerateRequest): void {
  const bad = (message: string) => new ServingError('bad-request', message)
  if (!(request.prompt instanceof Uint8Array) || request.prompt.length === 0)
    throw bad('the prompt must hold at least one byte')
  if (!Number.isInteger(request.maxTokens) || request.maxTokens < 0 || request.maxTokens > MAX_TOKENS_MAX)
    throw bad(`maxTokens must be an integer from 0 to ${MAX_TOKENS_MAX}, got ${request.maxTokens}`)
  const sampling = samplingProblem(request.temperature, request.topK, request.topP)
  if (sampling !== undefined) throw bad(sampling)
  if (!Number.isInteger(request.seed) || request.seed < 0 || request.seed > 0xffff_ffff)
    throw bad(`seed must be an integer from 0 to ${0xffff_ffff}, got ${request.seed}`)
  if (!Array.isArray(request.stop) || request.stop.length > STOP_SEQUENCES_MAX)
    throw bad(`at most ${STOP_SEQUENCES_MAX} stop sequences`)
  for (const stop of request.stop)
    if (!(stop instanceof Uint8Array) || stop.length === 0 || stop.length > STOP_BYTES_MAX)
      throw bad(`a stop sequence holds 1 to ${STOP_BYTES_MAX} bytes`)
  if (!(request.verify >= 0 && request.verify <= 1))
    throw bad(`verify must be a fraction from 0 to 1, got ${request.verify}`)
}

/**
 * Holds back generated bytes that may begin a stop sequence; `push` returns the bytes that can be
 * emitted now, or `stopped` when a stop sequence completed (its bytes and any held before it within
 * it are never emitted).
 */
export class StopFilter {
  readonly #stops: readonly Uint8Array[]
  readonly #held: number[] = []

  constructor(stops: readonly Uint8Array[]) {
    this.#stops = stops
  }

  push(byte: number): { emit: number[]; stopped: boolean } {
    this.#held.push(byte)
    const held = this.#held
    for (const stop of this.#stops) {
      if (stop.length > held.length) continue
      let match = true
      for (let i = 0; i < stop.length && match; i++)
        if (held[held.length - stop.length + i] !== stop[i]) match = false
      if (match) {
        const emit = held.slice(0, held.length - stop.length)
        held.length = 0
        return { emit, stopped: true }
      }
    }
    // keep the longest suffix of the held bytes that is a proper prefix of some stop sequence
    let keep = 0
    for (const stop of this.#stops)
      for (let n = Math.min(stop.length - 1, held.length); n > keep; n--) {
        let match = true
        for (let i = 0; i < n && match; i++) if (held[held.length - n + i] !== stop[i]) match = false
        if (match) {
          keep = n
          break
        }
      }
    const emit = held.splice(0, held.length - keep)
    return { emit, stopped: false }
  }

  /** the bytes still held at the end (no stop sequence completed) */
  flush(): number[] {
    return this.#held.splice(0, this.#held.length)
  }
}

/** A second (or third) server running a hop's steps for comparison. */
interface Checker {
  peerId: string
  /** the session, while it opens */
  session: Promise<ChainSpanSession>
  /** positions of the hop's current history its session holds */
  synced: number
}

/** One hop of the chain and what failover and verification need of it. */
interface Hop {
  peerId: string
  start: number
  end: number
  costMs: number
  local: boolean
  /** the session, while it opens */
  session: Promise<ChainSpanSession>
  /** the rows sent for positions 0..length-1 of the session's cache ([maxLength, D]) */
  inputs: Float32Array
  length: number
  checker: Checker | undefined
  /** the draw that picks this hop's verified steps */
  random: SeededRandom
  /** peers that agreed with another about this hop at least once */
  agreed: Set<string>
}

/** A queue of byte chunks read by one async iterator; the producer ends it with or without an error. */
class ByteQueue implements AsyncIterable<Uint8Array> {
  readonly #chunks: Uint8Array[] = []
  #done = false
  #error: unknown
  #wake: (() => void) | undefined
  #onReturn: () => void

  constructor(onReturn: () => void) {
    this.#onReturn = onReturn
  }

  push(bytes: Uint8Array): void {
    if (bytes.length === 0 || this.#done) return
    this.#chunks.push(bytes)
    this.#wake?.()
  }

  end(error?: unknown): void {
    if (this.#done) return
    this.#done = true
    this.#error = error
    this.#wake?.()
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const chunk = this.#chunks.shift()
        if (chunk !== undefined) {
          yield chunk
          continue
        }
        if (this.#done) {
          if (this.#error !== undefined) throw this.#error
          return
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve
        })
        this.#wake = undefined
      }
    } finally {
      // a reader that stops early (break, an error in its loop) ends the generation
      if (!this.#done) this.#onReturn()
    }
  }
}

/**
 * Generates through a chain of servers of the model (see the module comment). Throws ServingError
 * ('bad-request') at once for a request that cannot work; a chain that cannot be found or kept makes
 * the iteration throw ServingError('unavailable') and `result` reject with it.
 */
export function generateThroughChain(
  ends: ChainEnds,
  network: ChainNetwork,
  model: ChainModel,
  request: NetworkGenerateRequest,
  options: ChainOptions = {},
): NetworkGeneration {
  checkGenerateRequest(request)
  const controller = new AbortController()
  const queue = new ByteQueue(() =>
    controller.abort(new DOMException('the reader stopped reading the generation', 'AbortError')),
  )
  const signal =
    request.signal === undefined ? controller.signal : AbortSignal.any([request.signal, controller.signal])
  const run = new ChainRun(ends, network, model, request, options, signal)
  const result = run
    .generate((bytes) => queue.push(bytes))
    .then(
      (value) => {
        queue.end()
        return value
      },
      (error) => {
        queue.end(error)
        throw error
      },
    )
  // whoever reads the bytes sees the error there; `result` may be left unobserved
  result.catch(() => {})
  return {
    result,
    [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
  }
}

class ChainRun {
  readonly #ends: ChainEnds
  readonly #network: ChainNetwork
  readonly #model: ChainModel
  readonly #request: NetworkGenerateRequest
  readonly #signal: AbortSignal
  readonly #stepTimeoutMs: number
  readonly #failoversMax: number
  readonly #tolerance: number
  readonly #reputation: Pick<ReputationBook, 'record'> | undefined
  readonly #routeOptions: Omit<RouteOptions, 'exclude'>
  readonly #onChain: ((chain: readonly ChainHop[]) => void) | undefined
  readonly #now: () => number
  readonly #startedMs: number | undefined
  /** peers not to use again in this generation */
  readonly #exclude = new Set<string>()
  #hops: Hop[] = []
  #failovers = 0
  #verifiedSteps = 0
  readonly #dropped: string[] = []
  /** sessions to close at the end (checkers replaced, hops replaced) */
  readonly #closing: Promise<void>[] = []

  constructor(
    ends: ChainEnds,
    network: ChainNetwork,
    model: ChainModel,
    request: NetworkGenerateRequest,
    options: ChainOptions,
    signal: AbortSignal,
  ) {
    this.#ends = ends
    this.#network = network
    this.#model = model
    this.#request = request
    this.#signal = signal
    this.#stepTimeoutMs = options.stepTimeoutMs ?? CHAIN_STEP_TIMEOUT_MS_DEFAULT
    this.#failoversMax = options.failoversMax ?? CHAIN_FAILOVERS_MAX_DEFAULT
    this.#tolerance = options.verifyTolerance ?? VERIFY_TOLERANCE_DEFAULT
    this.#reputation = options.reputation
    this.#routeOptions = options.route ?? {}
    this.#onChain = options.onChain
    this.#now = options.now ?? Date.now
    this.#startedMs = options.startedMs
  }

  async generate(emit: (bytes: Uint8Array) => void): Promise<NetworkGenerateResult> {
    const began = this.#startedMs ?? this.#now()
    const request = this.#request
    const { context } = this.#model
    const keep = Math.max(1, context - 1)
    const text = Array.from(request.prompt)
    let start = Math.max(0, text.length - context)
    const truncatedBytes = start
    const random = SeededRandom.stream(request.seed, 'gpt:sample')
    const stops = new StopFilter(request.stop)
    let firstTokenMs = 0
    let emitted = 0
    let finishReason: NetworkGenerateResult['finishReason'] = 'length'
    try {
      if (request.maxTokens > 0) await this.#plan()
      let rebuild = true
      for (let n = 0; n < request.maxTokens; n++) {
        this.#signal.throwIfAborted()
        const rows = rebuild ? text.slice(start) : [text[text.length - 1]]
        const offset = rebuild ? 0 : text.length - 1 - start
        rebuild = false
        let hidden = await this.#ends.embed(rows, offset)
        let index = 0
        while (index < this.#hops.length) {
          const step = await this.#stepHop(index, offset, rows.length, hidden)
          hidden = step.output
          index = step.next
        }
        const width = this.#model.width
        const logits = await this.#ends.logits(
          hidden.subarray((rows.length - 1) * width, rows.length * width),
        )
        const byte = sampleByte(logits, request.temperature, request.topK, random, request.topP)
        if (n === 0) firstTokenMs = this.#now() - began
        text.push(byte)
        if (text.length - start > context) {
          start = text.length - keep
          rebuild = true
        }
        const { emit: ready, stopped } = stops.push(byte)
        if (ready.length > 0) {
          emit(Uint8Array.from(ready))
          emitted += ready.length
        }
        if (stopped) {
          finishReason = 'stop'
          break
        }
      }
      if (finishReason === 'length') {
        const rest = stops.flush()
        if (rest.length > 0) {
          emit(Uint8Array.from(rest))
          emitted += rest.length
        }
      }
      for (const hop of this.#hops) for (const peer of hop.agreed) this.#reputation?.record(peer, 'agreed')
      return {
        tokens: emitted,
        promptTokens: request.prompt.length,
        truncatedBytes,
        finishReason,
        seconds: (this.#now() - began) / 1000,
        firstTokenMs,
        chain: this.#chainHops(),
        failovers: this.#failovers,
        verifiedSteps: this.#verifiedSteps,
        droppedServers: [...this.#dropped],
      }
    } catch (error) {
      if (this.#signal.aborted) throw this.#signal.reason
      throw error
    } finally {
      await this.#closeAll()
    }
  }

  #chainHops(): ChainHop[] {
    return this.#hops.map((hop) => ({ peerId: hop.peerId, start: hop.start, end: hop.end, local: hop.local }))
  }

  #routeHops(): RouteHop[] {
    return this.#hops.map((hop) => ({
      peerId: hop.peerId,
      start: hop.start,
      end: hop.end,
      costMs: hop.costMs,
    }))
  }

  #changed(): void {
    this.#onChain?.(this.#chainHops())
  }

  async #candidates<T>(use: (candidates: RouteCandidate[]) => T): Promise<T> {
    let candidates = await this.#network.candidates({ refresh: false, signal: this.#signal })
    try {
      return use(candidates)
    } catch (error) {
      if (!(error instanceof RouteError)) throw error
      candidates = await this.#network.candidates({ refresh: true, signal: this.#signal })
      return use(candidates)
    }
  }

  #newHop(route: RouteHop): Hop {
    const { context, width } = this.#model
    return {
      ...route,
      local: this.#network.isLocal(route.peerId),
      session: this.#open(route),
      inputs: new Float32Array(context * width),
      length: 0,
      checker: undefined,
      random: SeededRandom.stream(this.#request.seed, `chain:verify:${route.start}-${route.end}`),
      agreed: new Set(),
    }
  }

  /** opens a session within the step deadline; the promise never rejects unobserved */
  #open(hop: { peerId: string; start: number; end: number }): Promise<ChainSpanSession> {
    const opening = this.#timed((signal) => this.#network.open(hop, this.#model.context, { signal }))
    opening.catch(() => {})
    return opening
  }

  async #plan(): Promise<void> {
    let route: RouteHop[]
    try {
      route = await this.#candidates((candidates) =>
        planChain(this.#model.blocks, candidates, { ...this.#routeOptions, exclude: this.#exclude }),
      )
    } catch (error) {
      if (error instanceof RouteError)
        throw new ServingError('unavailable', `no chain of servers covers the model: ${error.message}`)
      throw error
    }
    this.#hops = route.map((hop) => this.#newHop(hop))
    this.#changed()
  }

  /** runs `call` with a signal that aborts on the request's signal or after stepTimeoutMs */
  async #timed<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const deadline = new AbortController()
    const signal = AbortSignal.any([this.#signal, deadline.signal])
    let timer: ReturnType<typeof setTimeout> | undefined
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new ChainStallError(`no answer within ${this.#stepTimeoutMs} ms`)
        deadline.abort(error)
        reject(error)
      }, this.#stepTimeoutMs)
      signal.addEventListener('abort', () => reject(signal.reason), { once: true })
    })
    stalled.catch(() => {})
    try {
      return await Promise.race([call(signal), stalled])
    } catch (error) {
      if (this.#signal.aborted) throw this.#signal.reason
      if (deadline.signal.aborted) throw deadline.signal.reason
      throw error
    } finally {
      clearTimeout(timer)
    }
  }

  /** rows [count, D] at positions offset.. through a session, in pieces of its stepRowsMax */
  async #call(
    session: ChainSpanSession,
    offset: number,
    count: number,
    hidden: Float32Array,
  ): Promise<Float32Array> {
    const width = this.#model.width
    const piece = Math.max(1, session.stepRowsMax ?? count)
    const output = new Float32Array(count * width)
    for (let done = 0; done < count; done += piece) {
      const rows = Math.min(piece, count - done)
      const input = hidden.subarray(done * width, (done + rows) * width)
      const answer = await this.#timed((signal) => session.step(offset + done, rows, input, { signal }))
      if (answer.hidden.length !== rows * width)
        throw new ChainAnswerError(`the server answered ${answer.hidden.length} values for ${rows} rows`)
      // no honest span computes NaN or Infinity from finite rows; sampled, they would be garbage text
      for (let i = 0; i < answer.hidden.length; i++)
        if (!Number.isFinite(answer.hidden[i]))
          throw new ChainAnswerError(`the server answered ${answer.hidden[i]} among its hidden states`)
      output.set(answer.hidden, done * width)
    }
    return output
  }

  /** Whether an error is the request's end (not the server's fault). */
  #isAbort(_error: unknown): boolean {
    return this.#signal.aborted
  }

  /** The reputation event a server's failure earns, if any. */
  #failureEvent(error: unknown): ReputationEvent | undefined {
    if (error instanceof ChainStallError || error instanceof SpanStalledError) return 'timed-out'
    // gone in the middle of a session: weighed as lightly as a time-out (a restart is not dishonest)
    if (error instanceof SpanStreamClosedError) return 'timed-out'
    if (error instanceof SpanMalformedResponseError || error instanceof ChainAnswerError) return 'rejected'
    // a refusal (busy, an expired session...) is the server's right
    if (error instanceof SpanProtocolError) return undefined
    return undefined
  }

  #close(session: Promise<ChainSpanSession>): void {
    this.#closing.push(
      session.then(
        (s) => s.close().catch(() => {}),
        () => {},
      ),
    )
  }

  async #closeAll(): Promise<void> {
    for (const hop of this.#hops) {
      this.#close(hop.session)
      if (hop.checker !== undefined) this.#close(hop.checker.session)
    }
    this.#hops = []
    // a server that does not answer a close is not waited for long
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      Promise.all(this.#closing),
      new Promise((resolve) => {
        timer = setTimeout(resolve, Math.min(this.#stepTimeoutMs, CLOSE_WAIT_MS_MAX))
      }),
    ])
    clearTimeout(timer)
  }

  /** a server failed: record it, exclude it, count the failover (or give up past failoversMax) */
  #failed(peerId: string, error: unknown): void {
    const event = this.#failureEvent(error)
    if (event !== undefined) this.#reputation?.record(peerId, event)
    this.#exclude.add(peerId)
    this.#failovers++
    if (this.#failovers > this.#failoversMax)
      throw new ServingError(
        'unavailable',
        `gave up after ${this.#failoversMax} servers failed in one generation (the last: ${
          (error as Error).message ?? error
        })`,
      )
  }

  /**
   * Runs the current step (rows at positions offset..) through hop `index`; returns its output and the
   * index of the hop that takes the output next (after a failover the hops may have changed).
   */
  async #stepHop(
    index: number,
    offset: number,
    rows: number,
    input: Float32Array,
  ): Promise<{ output: Float32Array; next: number }> {
    const hop = this.#hops[index]
    const width = this.#model.width
    if (offset === 0) {
      hop.length = 0
      if (hop.checker !== undefined) hop.checker.synced = 0
    }
    hop.inputs.set(input, offset * width)
    hop.length = offset + rows
    // a step drawn for verification runs on the second server at the same time as on the hop's own
    const verify = this.#request.verify
    const checking =
      verify > 0 && !hop.local && hop.random.float() < verify
        ? this.#check(hop, 'second', hop.checker, [hop.peerId], offset, rows)
        : undefined
    checking?.catch(() => {})
    let output: Float32Array
    try {
      const session = await hop.session
      output = await this.#call(session, offset, rows, input)
    } catch (error) {
      if (this.#isAbort(error)) throw error
      if (checking !== undefined) {
        // the hop is replaced: a second server opened for it goes with it
        const second = await checking.catch(() => undefined)
        if (second !== undefined && second.checker !== hop.checker) this.#close(second.checker.session)
      }
      return this.#failover(index, rows, error)
    }
    if (checking !== undefined) output = await this.#verify(index, offset, rows, output, await checking)
    return { output, next: index + 1 }
  }

  /**
   * Replaces hop `index` (its server failed with `error`) and replays its history through the new
   * hops; returns the current step's output at the boundary where the chain goes on.
   */
  async #failover(
    index: number,
    rows: number,
    error: unknown,
  ): Promise<{ output: Float32Array; next: number }> {
    const failed = this.#hops[index]
    const width = this.#model.width
    const count = failed.length
    const history = failed.inputs.subarray(0, count * width)
    this.#failed(failed.peerId, error)
    this.#close(failed.session)
    for (;;) {
      let plan: ReturnType<typeof replanFrom>
      try {
        plan = await this.#candidates((candidates) =>
          replanFrom(this.#model.blocks, this.#routeHops(), failed.start, candidates, {
            ...this.#routeOptions,
            exclude: this.#exclude,
          }),
        )
      } catch (cause) {
        if (cause instanceof RouteError)
          throw new ServingError(
            'unavailable',
            `server ${failed.peerId} of blocks ${failed.start}-${failed.end - 1} failed and no other ` +
              `server can take over: ${cause.message}`,
          )
        throw cause
      }
      const fresh = plan.chain.slice(plan.replaced.from, plan.replaced.to).map((route) => this.#newHop(route))
      let rowsIn = history
      let broken: { hop: Hop; error: unknown } | undefined
      for (const hop of fresh) {
        hop.inputs.set(rowsIn)
        hop.length = count
        try {
          rowsIn = await this.#call(await hop.session, 0, count, rowsIn)
        } catch (cause) {
          if (this.#isAbort(cause)) {
            for (const h of fresh) this.#close(h.session)
            throw cause
          }
          broken = { hop, error: cause }
          break
        }
      }
      if (broken !== undefined) {
        for (const h of fresh) this.#close(h.session)
        this.#failed(broken.hop.peerId, broken.error)
        continue
      }
      // the hops the new ones replace: the failed one and any the new path passes over
      const rejoin = fresh[fresh.length - 1].end
      let last = index
      while (last < this.#hops.length && this.#hops[last].start < rejoin) last++
      for (const old of this.#hops.slice(index, last)) {
        if (old !== failed) this.#close(old.session)
        if (old.checker !== undefined) this.#close(old.checker.session)
      }
      this.#hops.splice(index, last - index, ...fresh)
      this.#changed()
      return { output: rowsIn.slice((count - rows) * width), next: index + fresh.length }
    }
  }

  /** a server of exactly hop's blocks other than `busy` and the excluded peers; ServingError when none */
  async #pickChecker(hop: Hop, busy: readonly string[], which: string): Promise<Checker> {
    const exclude = new Set([...this.#exclude, ...busy])
    const choose = (candidates: RouteCandidate[]) =>
      findVerifier(this.#model.blocks, hop.start, hop.end, candidates, { ...this.#routeOptions, exclude })
    const chosen =
      choose(await this.#network.candidates({ refresh: false, signal: this.#signal })) ??
      choose(await this.#network.candidates({ refresh: true, signal: this.#signal }))
    if (chosen === undefined)
      throw new ServingError(
        'unavailable',
        `no ${which} server of blocks ${hop.start}-${hop.end - 1} is available to verify against`,
      )
    return { peerId: chosen.peerId, session: this.#open(chosen), synced: 0 }
  }

  /**
   * The checker's output for the current step (rows at positions offset..) of `hop`, after catching
   * its session up with the history it has not seen. A checker that fails is replaced (and counted
   * as a failover) until one answers.
   */
  async #check(
    hop: Hop,
    which: 'second' | 'third',
    current: Checker | undefined,
    busy: readonly string[],
    offset: number,
    rows: number,
  ): Promise<{ checker: Checker; output: Float32Array }> {
    const width = this.#model.width
    let next = current
    for (;;) {
      const checker = next ?? (await this.#pickChecker(hop, busy, which))
      try {
        const from = checker.synced
        const count = offset + rows - from
        const out = await this.#call(
          await checker.session,
          from,
          count,
          hop.inputs.subarray(from * width, (offset + rows) * width),
        )
        checker.synced = offset + rows
        return { checker, output: out.subarray((count - rows) * width) }
      } catch (error) {
        if (this.#isAbort(error)) throw error
        this.#close(checker.session)
        this.#failed(checker.peerId, error)
        next = undefined
      }
    }
  }

  /** compares the current step of hop `index` with a second server's (see the module comment) */
  async #verify(
    index: number,
    offset: number,
    rows: number,
    primary: Float32Array,
    second: { checker: Checker; output: Float32Array },
  ): Promise<Float32Array> {
    const hop = this.#hops[index]
    const width = this.#model.width
    hop.checker = second.checker
    if (hiddenAgree(primary, second.output, width, this.#tolerance)) {
      this.#verifiedSteps++
      hop.agreed.add(hop.peerId)
      hop.agreed.add(second.checker.peerId)
      return primary
    }
    const third = await this.#check(
      hop,
      'third',
      undefined,
      [hop.peerId, second.checker.peerId],
      offset,
      rows,
    )
    const withPrimary = hiddenAgree(third.output, primary, width, this.#tolerance)
    const withSecond = hiddenAgree(third.output, second.output, width, this.#tolerance)
    this.#verifiedSteps++
    if (withPrimary && !withSecond) {
      // the second server lied: the third takes its place
      this.#drop(second.checker.peerId)
      this.#close(second.checker.session)
      hop.checker = third.checker
      hop.agreed.add(hop.peerId)
      hop.agreed.add(third.checker.peerId)
      return primary
    }
    if (withSecond && !withPrimary) {
      // the hop's server lied: the second server (its cache holds the history) takes over the hop
      this.#drop(hop.peerId)
      this.#failovers++
      this.#close(hop.session)
      hop.peerId = second.checker.peerId
      hop.local = this.#network.isLocal(hop.peerId)
      hop.session = second.checker.session
      hop.checker = third.checker
      hop.agreed.add(second.checker.peerId)
      hop.agreed.add(third.checker.peerId)
      this.#changed()
      return second.output
    }
    this.#close(third.checker.session)
    if (withPrimary && withSecond) return primary
    for (const peer of [hop.peerId, second.checker.peerId, third.checker.peerId])
      this.#reputation?.record(peer, 'disagreed')
    throw new ServingError(
      'unavailable',
      `three servers of blocks ${hop.start}-${hop.end - 1} gave three different answers`,
    )
  }

  #drop(peerId: string): void {
    this.#reputation?.record(peerId, 'lied')
    this.#exclude.add(peerId)
    this.#dropped.push(peerId)
    for (const hop of this.#hops) hop.agreed.delete(peerId)
  }
}
