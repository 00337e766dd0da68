// The frames of /shardnet/span/1.0.0 decode to checked values or are refused with one clear code, and a
// step is checked against its session with the code a server answers.
import { describe, expect, it } from 'vitest'
import {
  bytesToHidden,
  checkSpanStep,
  decodeSpanRequest,
  decodeSpanResponse,
  encodeSpanRequest,
  encodeSpanResponse,
  hiddenToBytes,
  SPAN_CONTROL_FRAME_BYTES_MAX,
  SPAN_ERROR_CODES,
  SPAN_FRAME_OVERHEAD_BYTES,
  SPAN_HIDDEN_BYTES_MAX,
  SpanMalformedResponseError,
  SpanProtocolError,
  spanStepFrameBytesMax,
  spanStepRowsMax,
} from '../../../protocols/serving/index.js'
import { SpanRequest, SpanResponse } from '../../../protocols/wire/serving.js'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (error) {
    if (error instanceof SpanProtocolError) return error.code
    throw error
  }
  return undefined
}

describe('span requests', () => {
  const open = { model: 'bafkreiexample', start: 1, end: 3, maxLength: 16 }

  it('round-trips each kind of request', () => {
    expect(decodeSpanRequest(encodeSpanRequest({ type: 'open', open }))).toEqual({ type: 'open', open })
    const hidden = hiddenToBytes(Float32Array.of(1.5, -2, 3.25, 0))
    const step = { session: 2 ** 40 + 7, offset: 4, rows: 1, hidden }
    const decoded = decodeSpanRequest(encodeSpanRequest({ type: 'step', step }))
    expect(decoded.type).toBe('step')
    if (decoded.type !== 'step') return
    expect(decoded.step.session).toBe(2 ** 40 + 7)
    expect(Array.from(bytesToHidden(decoded.step.hidden))).toEqual([1.5, -2, 3.25, 0])
    expect(decodeSpanRequest(encodeSpanRequest({ type: 'close' }))).toEqual({ type: 'close' })
  })

  it('refuses frames that set other than one field, or do not decode, as malformed', () => {
    expect(codeOf(() => decodeSpanRequest(new Uint8Array()))).toBe('malformed')
    expect(codeOf(() => decodeSpanRequest(SpanRequest.encode({ open, close: true })))).toBe('malformed')
    const both = SpanRequest.encode({
      open,
      step: { session: 1, offset: 0, rows: 1, hidden: new Uint8Array(4) },
      close: false,
    })
    expect(codeOf(() => decodeSpanRequest(both))).toBe('malformed')
    expect(codeOf(() => decodeSpanRequest(Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0x0f)))).toBe('malformed')
    expect(codeOf(() => decodeSpanRequest(Uint8Array.of(0xff, 0xff)))).toBe('malformed')
  })

  it('refuses an open without a model id, with an empty span or no positions', () => {
    const bad = (o: Partial<typeof open>) =>
      codeOf(() => decodeSpanRequest(SpanRequest.encode({ open: { ...open, ...o }, close: false })))
    expect(bad({ model: '' })).toBe('malformed')
    expect(bad({ model: 'x'.repeat(257) })).toBe('malformed')
    expect(bad({ start: 3, end: 3 })).toBe('malformed')
    expect(bad({ start: 4, end: 2 })).toBe('malformed')
    expect(bad({ maxLength: 0 })).toBe('malformed')
  })
})

describe('span responses', () => {
  it('round-trips each kind of answer', () => {
    const opened = { session: 9, width: 32, maxLength: 64, idleTimeoutMs: 1000 }
    expect(decodeSpanResponse(encodeSpanResponse({ type: 'opened', opened }))).toEqual({
      type: 'opened',
      opened,
    })
    const error = { type: 'error' as const, code: 'busy' as const, message: 'too many sessions' }
    expect(decodeSpanResponse(encodeSpanResponse(error))).toEqual(error)
    const hidden = {
      session: 9,
      offset: 0,
      rows: 1,
      hidden: hiddenToBytes(Float32Array.of(1)),
      computeMs: 0.5,
    }
    const decoded = decodeSpanResponse(encodeSpanResponse({ type: 'hidden', hidden }))
    expect(decoded).toEqual({ type: 'hidden', hidden })
  })

  it('refuses answers a lying or broken server may send', () => {
    const bad = (bytes: Uint8Array) => () => decodeSpanResponse(bytes)
    expect(bad(new Uint8Array())).toThrow(SpanMalformedResponseError)
    expect(bad(SpanResponse.encode({ error: { code: 'nope', message: '' } }))).toThrow(/unknown error code/)
    expect(
      bad(
        SpanResponse.encode({
          error: { code: 'busy', message: '' },
          opened: { session: 1, width: 1, maxLength: 1, idleTimeoutMs: 1 },
        }),
      ),
    ).toThrow(/exactly one/)
    expect(
      bad(SpanResponse.encode({ opened: { session: 1, width: 0, maxLength: 1, idleTimeoutMs: 1 } })),
    ).toThrow(/width/)
    expect(
      bad(
        SpanResponse.encode({
          hidden: { session: 1, offset: 0, rows: 1, hidden: new Uint8Array(4), computeMs: Number.NaN },
        }),
      ),
    ).toThrow(/compute time/)
  })

  it('cuts a long error message', () => {
    const decoded = decodeSpanResponse(
      SpanResponse.encode({ error: { code: 'internal', message: 'x'.repeat(5000) } }),
    )
    expect(decoded.type === 'error' && decoded.message.length).toBe(500)
    expect(
      encodeSpanResponse({ type: 'error', code: 'internal', message: 'é'.repeat(5000) }).byteLength,
    ).toBeLessThan(SPAN_CONTROL_FRAME_BYTES_MAX)
  })

  it('names every error code a SpanError may carry', () => {
    expect([...SPAN_ERROR_CODES].sort()).toEqual(
      [
        'bad-offset',
        'bad-shape',
        'busy',
        'internal',
        'malformed',
        'outside-model',
        'past-context',
        'timeout',
        'unknown-model',
        'unknown-session',
      ].sort(),
    )
    expect(new SpanProtocolError('busy', 'x').terminal).toBe(true)
    expect(new SpanProtocolError('bad-shape', 'x').terminal).toBe(false)
  })
})

describe('frame limits', () => {
  it('bounds a step by the session and by an absolute cap', () => {
    expect(spanStepRowsMax(32, 64)).toBe(64)
    expect(spanStepFrameBytesMax(32, 64)).toBe(SPAN_FRAME_OVERHEAD_BYTES + 64 * 32 * 4)
    expect(spanStepRowsMax(8192, 8192) * 8192 * 4).toBe(SPAN_HIDDEN_BYTES_MAX)
    // the overhead holds the largest fields a step or an answer carries besides the hidden bytes
    const rows = spanStepRowsMax(8192, 8192)
    const hidden = new Uint8Array(rows * 8192 * 4)
    const step = { session: Number.MAX_SAFE_INTEGER, offset: 65_535, rows, hidden }
    expect(encodeSpanRequest({ type: 'step', step }).byteLength).toBeLessThanOrEqual(
      spanStepFrameBytesMax(8192, 8192),
    )
    const answer = encodeSpanResponse({ type: 'hidden', hidden: { ...step, computeMs: 1e300 } })
    expect(answer.byteLength).toBeLessThanOrEqual(spanStepFrameBytesMax(8192, 8192))
  })
})

describe('checkSpanStep', () => {
  const state = { id: 5, width: 4, length: 3, maxLength: 8 }
  const step = (s: Partial<{ session: number; offset: number; rows: number; hiddenBytes: number }>) =>
    codeOf(() => checkSpanStep({ session: 5, offset: 3, rows: 2, hiddenBytes: 32, ...s }, state))

  it('accepts an append at the length and a prefill at 0', () => {
    expect(step({})).toBeUndefined()
    expect(step({ offset: 0, rows: 8, hiddenBytes: 128 })).toBeUndefined()
  })

  it('answers each bad step with its code', () => {
    expect(step({ session: 6 })).toBe('unknown-session')
    expect(step({ hiddenBytes: 31 })).toBe('bad-shape')
    expect(step({ hiddenBytes: 36 })).toBe('bad-shape')
    expect(step({ rows: 0, hiddenBytes: 0 })).toBe('bad-shape')
    expect(step({ offset: 2 })).toBe('bad-offset')
    expect(step({ offset: 4 })).toBe('bad-offset')
    expect(step({ rows: 6, hiddenBytes: 96 })).toBe('past-context')
    expect(step({ offset: 0, rows: 9, hiddenBytes: 144 })).toBe('past-context')
  })
})
