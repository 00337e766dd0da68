// The client of /shardnet/span/1.0.0: one inference session over a span of a model's blocks on one
// server, over one stream. openSpanSession sends the open frame and waits for SpanOpened; each step
// sends rows of hidden states and waits for the span's output rows. Steps of one session run one at a
// time, in call order (the protocol answers in order).
//
// How a step fails, so a chain can tell a refusal from a dead or lying server:
//   SpanProtocolError        the server answered a SpanError (its code; `terminal` when the session ended)
//   SpanStalledError         no answer within stepTimeoutMs: the stream is aborted (fail over)
//   SpanStreamClosedError    the stream could not be opened, was reset, or ended before the answer
//   SpanMalformedResponseError  the answer broke the protocol (another session's, the wrong size)
//   the caller's signal's reason, when it aborted the step (the session is closed then too)
// After any but a non-terminal SpanProtocolError the session is closed: later steps reject with
// SpanStreamClosedError.
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { type BoundedLpStream, boundedLpStream, isOversizedFrameError } from '../wire/framing.js'
import {
  bytesToHidden,
  decodeSpanResponse,
  encodeSpanRequest,
  hiddenToBytes,
  SPAN_CONTROL_FRAME_BYTES_MAX,
  SPAN_PROTOCOL,
  SpanMalformedResponseError,
  type SpanOpenRequest,
  SpanProtocolError,
  type SpanResponseFrame,
  spanStepFrameBytesMax,
  spanStepRowsMax,
} from './frames.js'

/** How long a step (or the open) may wait for its answer before the session counts as stalled. */
export const SPAN_STEP_TIMEOUT_MS_DEFAULT = 30_000

/** No answer within the step's deadline: the server is stalled (the stream was aborted). */
export class SpanStalledError extends Error {
  static override name = 'SpanStalledError'
  override name = 'SpanStalledError'
}

/** The stream could not be opened, was reset, or ended before an answer: the server is gone. */
export class SpanStreamClosedError extends Error {
  static override name = 'SpanStreamClosedError'
  override name = 'SpanStreamClosedError'
}

export interface SpanStepResult {
  /** rows x width: the hidden states leaving the span's last block */
  hidden: Float32Array
  /** the server's compute time of this step, as it reports it */
  computeMs: number
}

/** An inference session over a span: remote (RemoteSpanSession) or on this node (SpanHost's local one). */
export interface SpanSession {
  readonly id: number
  /** the model's width D */
  readonly width: number
  readonly maxLength: number
  /** rows of one step at most (a longer prefill goes in several steps at offsets 0, n, 2n...) */
  readonly stepRowsMax: number
  /** positions the server holds for this session (after the last step that succeeded) */
  readonly length: number
  /** whether the session has ended (closed, failed, timed out) */
  readonly closed: boolean
  /**
   * rows x width hidden states at positions offset.. (offset 0: a new prefill, or the session's
   * length: an append) through the span. Errors: see the module comment.
   */
  step(
    offset: number,
    rows: number,
    hidden: Float32Array,
    options?: { signal?: AbortSignal },
  ): Promise<SpanStepResult>
  /** Ends the session (the server frees its cache); never throws. */
  close(): Promise<void>
}

export interface SpanDialer {
  dialProtocol(
    peer: PeerId | Multiaddr | Multiaddr[],
    protocols: string | string[],
    options?: { signal?: AbortSignal },
  ): Promise<Stream>
}

/** Where a session goes: a stream already negotiated to SPAN_PROTOCOL, a connection, or a peer to dial. */
export type SpanTarget =
  | Stream
  | Pick<Connection, 'newStream'>
  | { dialer: SpanDialer; peer: PeerId | Multiaddr | Multiaddr[] }

export interface OpenSpanOptions {
  signal?: AbortSignal
  /** deadline of the open and of each step's answer. @default SPAN_STEP_TIMEOUT_MS_DEFAULT */
  stepTimeoutMs?: number
}

async function streamOf(target: SpanTarget, signal: AbortSignal): Promise<Stream> {
  try {
    if ('dialer' in target) return await target.dialer.dialProtocol(target.peer, SPAN_PROTOCOL, { signal })
    if ('newStream' in target && !('send' in target)) return await target.newStream(SPAN_PROTOCOL, { signal })
    return target as Stream
  } catch (error) {
    throw new SpanStreamClosedError(`cannot open a span stream: ${(error as Error).message}`, {
      cause: error,
    })
  }
}

/**
 * Writes a request and reads its answer within `timeoutMs`, mapping how it failed to the errors of
 * the module comment.
 */
async function exchange(
  lp: BoundedLpStream,
  request: Uint8Array,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<SpanResponseFrame> {
  const timeout = AbortSignal.timeout(timeoutMs)
  const both = signal === undefined ? timeout : AbortSignal.any([timeout, signal])
  try {
    await lp.write(request, { signal: both })
    return decodeSpanResponse(await lp.read({ signal: both }))
  } catch (error) {
    if (signal?.aborted) throw signal.reason
    if (timeout.aborted) throw new SpanStalledError(`no answer from the span server within ${timeoutMs} ms`)
    if (error instanceof SpanMalformedResponseError) throw error
    if (isOversizedFrameError(error))
      throw new SpanMalformedResponseError(
        `the server's answer is over its limit: ${(error as Error).message}`,
      )
    throw new SpanStreamClosedError(`the span stream ended: ${(error as Error).message}`, { cause: error })
  }
}

/**
 * Opens a session on the server at `target` for blocks [open.start, open.end) of open.model. Throws
 * SpanProtocolError when the server refuses (unknown-model, outside-model, busy, past-context...),
 * else the errors of the module comment.
 */
export async function openSpanSession(
  target: SpanTarget,
  open: SpanOpenRequest,
  options: OpenSpanOptions = {},
): Promise<RemoteSpanSession> {
  const timeoutMs = options.stepTimeoutMs ?? SPAN_STEP_TIMEOUT_MS_DEFAULT
  const dialSignal =
    options.signal === undefined
      ? AbortSignal.timeout(timeoutMs)
      : AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs)])
  const stream = await streamOf(target, dialSignal)
  try {
    const lp = boundedLpStream(stream, SPAN_CONTROL_FRAME_BYTES_MAX)
    const answer = await exchange(lp, encodeSpanRequest({ type: 'open', open }), timeoutMs, options.signal)
    if (answer.type === 'error') throw new SpanProtocolError(answer.code, answer.message)
    if (answer.type !== 'opened')
      throw new SpanMalformedResponseError('the server answered the open with hidden states')
    const { session, width, maxLength } = answer.opened
    if (maxLength !== open.maxLength)
      throw new SpanMalformedResponseError(`the server opened ${maxLength} positions, not ${open.maxLength}`)
    const steps = boundedLpStream(lp.unwrap(), spanStepFrameBytesMax(width, maxLength))
    return new RemoteSpanSession(stream, steps, session, width, maxLength, {
      timeoutMs,
      idleTimeoutMs: answer.opened.idleTimeoutMs,
    })
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)))
    throw error
  }
}

/** A session on a remote server over one stream (see openSpanSession). */
export class RemoteSpanSession implements SpanSession {
  readonly id: number
  readonly width: number
  readonly maxLength: number
  readonly stepRowsMax: number
  /** the server's idle timeout: the session ends after this long without a step */
  readonly idleTimeoutMs: number
  private readonly stream: Stream
  private readonly lp: BoundedLpStream
  private readonly timeoutMs: number
  private queue: Promise<unknown> = Promise.resolve()
  #length = 0
  #closed = false

  /** @internal use openSpanSession */
  constructor(
    stream: Stream,
    lp: BoundedLpStream,
    id: number,
    width: number,
    maxLength: number,
    options: { timeoutMs: number; idleTimeoutMs: number },
  ) {
    this.stream = stream
    this.lp = lp
    this.id = id
    this.width = width
    this.maxLength = maxLength
    this.stepRowsMax = spanStepRowsMax(width, maxLength)
    this.timeoutMs = options.timeoutMs
    this.idleTimeoutMs = options.idleTimeoutMs
    stream.addEventListener('close', () => {
      this.#closed = true
    })
  }

  get length(): number {
    return this.#length
  }

  get closed(): boolean {
    return this.#closed
  }

  step(
    offset: number,
    rows: number,
    hidden: Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<SpanStepResult> {
    const run = this.queue.then(() => this.run(offset, rows, hidden, options.signal))
    this.queue = run.catch(() => {})
    return run
  }

  private async run(
    offset: number,
    rows: number,
    hidden: Float32Array,
    signal: AbortSignal | undefined,
  ): Promise<SpanStepResult> {
    if (this.#closed) throw new SpanStreamClosedError('the span session is closed')
    signal?.throwIfAborted()
    // what cannot be sent in one frame is refused here, as the server would
    if (offset + rows > this.maxLength)
      throw new SpanProtocolError(
        'past-context',
        `positions ${offset} to ${offset + rows - 1} pass the session's ${this.maxLength}`,
      )
    if (rows > this.stepRowsMax || hidden.length > this.stepRowsMax * this.width)
      throw new SpanProtocolError(
        'bad-shape',
        `a step carries at most ${this.stepRowsMax} rows of width ${this.width}: send the rest in more steps`,
      )
    let answer: SpanResponseFrame
    try {
      answer = await exchange(
        this.lp,
        encodeSpanRequest({
          type: 'step',
          step: { session: this.id, offset, rows, hidden: hiddenToBytes(hidden) },
        }),
        this.timeoutMs,
        signal,
      )
    } catch (error) {
      this.fail(error)
      throw error
    }
    if (answer.type === 'error') {
      const refusal = new SpanProtocolError(answer.code, answer.message)
      if (refusal.terminal) this.fail(refusal)
      throw refusal
    }
    const fail = (message: string) => {
      const error = new SpanMalformedResponseError(`the server's answer breaks the protocol: ${message}`)
      this.fail(error)
      return error
    }
    if (answer.type !== 'hidden') throw fail('a second SpanOpened')
    const out = answer.hidden
    if (out.session !== this.id || out.offset !== offset || out.rows !== rows)
      throw fail(`an answer for session ${out.session} at ${out.offset} with ${out.rows} rows`)
    if (out.hidden.byteLength !== rows * this.width * 4)
      throw fail(`${out.hidden.byteLength} bytes of hidden states for ${rows} rows of width ${this.width}`)
    this.#length = offset + rows
    return { hidden: bytesToHidden(out.hidden), computeMs: out.computeMs }
  }

  private fail(error: unknown): void {
    if (this.#closed) return
    this.#closed = true
    this.stream.abort(error instanceof Error ? error : new Error(String(error)))
  }

  async close(): Promise<void> {
    await this.queue
    if (this.#closed) return
    this.#closed = true
    try {
      await this.lp.write(encodeSpanRequest({ type: 'close' }), {
        signal: AbortSignal.timeout(this.timeoutMs),
      })
      await this.stream.close({ signal: AbortSignal.timeout(this.timeoutMs) })
    } catch (error) {
      this.stream.abort(error instanceof Error ? error : new Error(String(error)))
    }
  }
}
