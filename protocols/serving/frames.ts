// The frames of /shardnet/span/1.0.0 (protocols/wire/serving.proto) as checked values: error codes,
// frame limits, and decode + validate of SpanRequest and SpanResponse. Both sides use these; the
// server's session checks (checkSpanStep) live here too so the protocol and an in-process session
// refuse the same steps with the same codes.
import type { Uint8ArrayList } from 'uint8arraylist'
import { SpanRequest, SpanResponse } from '../wire/serving.js'

export const SPAN_PROTOCOL = '/shardnet/span/1.0.0'

/**
 * Why a server refuses a frame (SpanError.code):
 * unknown-model (the model is not served here), outside-model (blocks outside the model or outside
 * every span served here), busy (past the server's sessions, cache or per-peer limits: try another),
 * unknown-session (a step names a session this stream does not hold), bad-shape (hidden bytes that are
 * not rows x width float32, or a frame over the session's limit), past-context (positions past the
 * session's max_length, or a max_length past the model's context), bad-offset (a step neither at 0 nor
 * at the session's length), malformed (a frame that does not decode or sets other than one field),
 * timeout (the session was idle too long or the first frame came too late), internal (the server
 * failed to compute).
 */
export const SPAN_ERROR_CODES = [
  'unknown-model',
  'outside-model',
  'busy',
  'unknown-session',
  'bad-shape',
  'past-context',
  'bad-offset',
  'malformed',
  'timeout',
  'internal',
] as const
export type SpanErrorCode = (typeof SPAN_ERROR_CODES)[number]

/**
 * Codes after which the server has ended the session and closes the stream. After any other code the
 * session stays usable (the refused step changed nothing).
 */
export const SPAN_TERMINAL_ERROR_CODES: ReadonlySet<SpanErrorCode> = new Set<SpanErrorCode>([
  'unknown-model',
  'outside-model',
  'busy',
  'timeout',
  'internal',
])

/** The server refused a frame: `code` is one of SPAN_ERROR_CODES, the message one sentence for the user. */
export class SpanProtocolError extends Error {
  static override name = 'SpanProtocolError'
  readonly code: SpanErrorCode
  constructor(code: SpanErrorCode, message: string) {
    super(message)
    this.name = 'SpanProtocolError'
    this.code = code
  }
  /** Whether the session ended with this error (see SPAN_TERMINAL_ERROR_CODES). */
  get terminal(): boolean {
    return SPAN_TERMINAL_ERROR_CODES.has(this.code)
  }
}

/**
 * A server's answer broke the protocol (undecodable, another session's, the wrong size): a lying or
 * broken server.
 */
export class SpanMalformedResponseError extends Error {
  static override name = 'SpanMalformedResponseError'
  override name = 'SpanMalformedResponseError'
}

/** Hidden bytes of one step at most, whatever the session: a longer prefill goes in several steps. */
export const SPAN_HIDDEN_BYTES_MAX = 16 * 1024 * 1024
/** Bytes of a step frame (or a hidden answer) besides its hidden bytes, at most. */
export const SPAN_FRAME_OVERHEAD_BYTES = 64
/** Bytes of any frame without hidden states (open, close, opened, error). */
export const SPAN_CONTROL_FRAME_BYTES_MAX = 4096
/** Bytes of a model id (a CID string). */
export const SPAN_MODEL_ID_BYTES_MAX = 256
/** Characters of an error message on the wire; longer ones are cut. */
export const SPAN_ERROR_MESSAGE_MAX = 500
/** Widths and lengths a frame may name at all (the model's own limits are tighter). */
export const SPAN_WIDTH_MAX = 65_536
export const SPAN_LENGTH_MAX = 65_536

/** Rows one step of a session may carry: its max_length, or fewer where those pass SPAN_HIDDEN_BYTES_MAX. */
export function spanStepRowsMax(width: number, maxLength: number): number {
  return Math.max(1, Math.min(maxLength, Math.floor(SPAN_HIDDEN_BYTES_MAX / (width * 4))))
}

/** Bytes of a step frame (and of a hidden answer) of a session of `width` and `maxLength`, at most. */
export function spanStepFrameBytesMax(width: number, maxLength: number): number {
  return SPAN_FRAME_OVERHEAD_BYTES + spanStepRowsMax(width, maxLength) * width * 4
}

export interface SpanOpenRequest {
  /** the model's content id */
  model: string
  /** blocks [start, end) */
  start: number
  end: number
  /** positions the session will hold at most */
  maxLength: number
}

export interface SpanStepRequest {
  session: number
  offset: number
  rows: number
  /** rows x width float32 little-endian (unchecked against the width here: see checkSpanStep) */
  hidden: Uint8Array<ArrayBuffer>
}

export type SpanRequestFrame =
  | { type: 'open'; open: SpanOpenRequest }
  | { type: 'step'; step: SpanStepRequest }
  | { type: 'close' }

export interface SpanOpenedInfo {
  session: number
  width: number
  maxLength: number
  idleTimeoutMs: number
}

export interface SpanHiddenAnswer {
  session: number
  offset: number
  rows: number
  hidden: Uint8Array<ArrayBuffer>
  computeMs: number
}

export type SpanResponseFrame =
  | { type: 'opened'; opened: SpanOpenedInfo }
  | { type: 'hidden'; hidden: SpanHiddenAnswer }
  | { type: 'error'; code: SpanErrorCode; message: string }

const bytesOf = (data: Uint8Array | Uint8ArrayList): Uint8Array =>
  data instanceof Uint8Array ? data : data.subarray()

const isCount = (value: number, min: number, max: number): boolean =>
  Number.isSafeInteger(value) && value >= min && value <= max

/** A frame from a client, checked; throws SpanProtocolError('malformed') naming what is wrong. */
export function decodeSpanRequest(data: Uint8Array | Uint8ArrayList): SpanRequestFrame {
  let request: SpanRequest
  try {
    request = SpanRequest.decode(bytesOf(data))
  } catch (error) {
    throw new SpanProtocolError('malformed', `the frame does not decode: ${(error as Error).message}`)
  }
  const set = Number(request.open != null) + Number(request.step != null) + Number(request.close === true)
  if (set !== 1) throw new SpanProtocolError('malformed', `a request sets exactly one field, this one ${set}`)
  if (request.open != null) {
    const { model, start, end, maxLength } = request.open
    if (model.length === 0 || new TextEncoder().encode(model).byteLength > SPAN_MODEL_ID_BYTES_MAX)
      throw new SpanProtocolError('malformed', `the model id must hold 1 to ${SPAN_MODEL_ID_BYTES_MAX} bytes`)
    if (start >= end)
      throw new SpanProtocolError('malformed', `the span [${start}, ${end}) holds no block (start < end)`)
    if (maxLength < 1) throw new SpanProtocolError('malformed', 'max_length must be at least 1')
    return { type: 'open', open: { model, start, end, maxLength } }
  }
  if (request.step != null) {
    const { session, offset, rows, hidden } = request.step
    if (!isCount(session, 0, Number.MAX_SAFE_INTEGER))
      throw new SpanProtocolError('malformed', 'the session id is not a safe integer')
    return { type: 'step', step: { session, offset, rows, hidden } }
  }
  return { type: 'close' }
}

export function encodeSpanRequest(frame: SpanRequestFrame): Uint8Array {
  if (frame.type === 'open') return SpanRequest.encode({ open: frame.open, close: false })
  if (frame.type === 'step') return SpanRequest.encode({ step: frame.step, close: false })
  return SpanRequest.encode({ close: true })
}

function malformedResponse(message: string): SpanMalformedResponseError {
  return new SpanMalformedResponseError(`the server's answer breaks the protocol: ${message}`)
}

/** A frame from a server, checked; throws SpanMalformedResponseError naming what is wrong. */
export function decodeSpanResponse(data: Uint8Array | Uint8ArrayList): SpanResponseFrame {
  let response: SpanResponse
  try {
    response = SpanResponse.decode(bytesOf(data))
  } catch (error) {
    throw malformedResponse(`it does not decode (${(error as Error).message})`)
  }
  const set =
    Number(response.opened != null) + Number(response.hidden != null) + Number(response.error != null)
  if (set !== 1) throw malformedResponse(`an answer sets exactly one field, this one ${set}`)
  if (response.error != null) {
    const code = response.error.code as SpanErrorCode
    if (!SPAN_ERROR_CODES.includes(code)) throw malformedResponse(`unknown error code ${code.slice(0, 40)}`)
    return { type: 'error', code, message: response.error.message.slice(0, SPAN_ERROR_MESSAGE_MAX) }
  }
  if (response.opened != null) {
    const { session, width, maxLength, idleTimeoutMs } = response.opened
    if (!isCount(session, 0, Number.MAX_SAFE_INTEGER))
      throw malformedResponse('the session id is not an integer')
    if (!isCount(width, 1, SPAN_WIDTH_MAX)) throw malformedResponse(`a width of ${width}`)
    if (!isCount(maxLength, 1, SPAN_LENGTH_MAX)) throw malformedResponse(`a max_length of ${maxLength}`)
    return { type: 'opened', opened: { session, width, maxLength, idleTimeoutMs } }
  }
  const { session, offset, rows, hidden, computeMs } = response.hidden!
  if (!Number.isFinite(computeMs) || computeMs < 0)
    throw malformedResponse(`a compute time of ${computeMs} ms`)
  return { type: 'hidden', hidden: { session, offset, rows, hidden, computeMs } }
}

export function encodeSpanResponse(frame: SpanResponseFrame): Uint8Array {
  if (frame.type === 'opened') return SpanResponse.encode({ opened: frame.opened })
  if (frame.type === 'hidden') return SpanResponse.encode({ hidden: frame.hidden })
  return SpanResponse.encode({
    error: { code: frame.code, message: frame.message.slice(0, SPAN_ERROR_MESSAGE_MAX) },
  })
}

/** What a server knows of a session when it checks a step. */
export interface SpanSessionState {
  id: number
  width: number
  /** positions in the cache */
  length: number
  maxLength: number
}

/**
 * Checks a step against its session; throws SpanProtocolError with the code the server answers:
 * unknown-session, bad-shape, bad-offset or past-context (in that order of checking).
 */
export function checkSpanStep(
  step: { session: number; offset: number; rows: number; hiddenBytes: number },
  state: SpanSessionState,
): void {
  if (step.session !== state.id)
    throw new SpanProtocolError('unknown-session', `no session ${step.session} on this stream`)
  const rowsMax = spanStepRowsMax(state.width, state.maxLength)
  if (!isCount(step.rows, 1, Number.MAX_SAFE_INTEGER))
    throw new SpanProtocolError('bad-shape', 'a step carries at least one row')
  if (step.hiddenBytes !== step.rows * state.width * 4)
    throw new SpanProtocolError(
      'bad-shape',
      `${step.rows} rows of width ${state.width} are ${step.rows * state.width * 4} bytes of float32, ` +
        `not ${step.hiddenBytes}`,
    )
  if (step.offset !== 0 && step.offset !== state.length)
    throw new SpanProtocolError(
      'bad-offset',
      `a step starts at 0 (a new prefill) or at the session's length ${state.length}, not ${step.offset}`,
    )
  if (step.offset + step.rows > state.maxLength)
    throw new SpanProtocolError(
      'past-context',
      `positions ${step.offset} to ${step.offset + step.rows - 1} pass the session's ${state.maxLength}`,
    )
  if (step.rows > rowsMax)
    throw new SpanProtocolError(
      'bad-shape',
      `a step carries at most ${rowsMax} rows: send the rest in more steps`,
    )
}

/** Float32 rows as little-endian bytes (a copy). */
export function hiddenToBytes(hidden: Float32Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Float32Array(hidden).buffer)
}

/** Little-endian bytes as float32 rows (a copy, aligned); the length must be a multiple of 4. */
export function bytesToHidden(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new RangeError(`${bytes.byteLength} bytes are not whole float32 values`)
  const copy = new Uint8Array(bytes.byteLength)
  copy.set(bytes)
  return new Float32Array(copy.buffer)
}
