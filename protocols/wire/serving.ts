import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface SpanRequest {
  open?: SpanOpen
  step?: SpanStep
  close: boolean
}

export namespace SpanRequest {
  let _codec: Codec<SpanRequest>

  export const codec = (): Codec<SpanRequest> => {
    if (_codec == null) {
      _codec = message<SpanRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.open != null) {
          w.uint32(10)
          SpanOpen.codec().encode(obj.open, w)
        }

        if (obj.step != null) {
          w.uint32(18)
          SpanStep.codec().encode(obj.step, w)
        }

        if ((obj.close != null && obj.close !== false)) {
          w.uint32(24)
          w.bool(obj.close)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          close: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.open = SpanOpen.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.open
              })
              break
            }
            case 2: {
              obj.step = SpanStep.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.step
              })
              break
            }
            case 3: {
              obj.close = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield * SpanOpen.codec().stream(reader, reader.uint32(), `${prefix}.open`, {
                limits: opts.limits?.open
              })

              break
            }
            case 2: {
              yield * SpanStep.codec().stream(reader, reader.uint32(), `${prefix}.step`, {
                limits: opts.limits?.step
              })

              break
            }
            case 3: {
              yield {
                field: `${prefix}.close`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanRequestOpenModelFieldEvent {
    field: '$.open.model'
    value: string
  }

  export interface SpanRequestOpenStartFieldEvent {
    field: '$.open.start'
    value: number
  }

  export interface SpanRequestOpenEndFieldEvent {
    field: '$.open.end'
    value: number
  }

  export interface SpanRequestOpenMaxLengthFieldEvent {
    field: '$.open.maxLength'
    value: number
  }

  export interface SpanRequestStepSessionFieldEvent {
    field: '$.step.session'
    value: number
  }

  export interface SpanRequestStepOffsetFieldEvent {
    field: '$.step.offset'
    value: number
  }

  export interface SpanRequestStepRowsFieldEvent {
    field: '$.step.rows'
    value: number
  }

  export interface SpanRequestStepHiddenFieldEvent {
    field: '$.step.hidden'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SpanRequestCloseFieldEvent {
    field: '$.close'
    value: boolean
  }

  export function encode (obj: Partial<SpanRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanRequest>): SpanRequest {
    return decodeMessage(buf, SpanRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanRequest>): Generator<SpanRequestOpenModelFieldEvent | SpanRequestOpenStartFieldEvent | SpanRequestOpenEndFieldEvent | SpanRequestOpenMaxLengthFieldEvent | SpanRequestStepSessionFieldEvent | SpanRequestStepOffsetFieldEvent | SpanRequestStepRowsFieldEvent | SpanRequestStepHiddenFieldEvent | SpanRequestCloseFieldEvent> {
    return streamMessage(buf, SpanRequest.codec(), opts)
  }
}

export interface SpanOpen {
  model: string
  start: number
  end: number
  maxLength: number
}

export namespace SpanOpen {
  let _codec: Codec<SpanOpen>

  export const codec = (): Codec<SpanOpen> => {
    if (_codec == null) {
      _codec = message<SpanOpen>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.model != null && obj.model !== '')) {
          w.uint32(10)
          w.string(obj.model)
        }

        if ((obj.start != null && obj.start !== 0)) {
          w.uint32(16)
          w.uint32(obj.start)
        }

        if ((obj.end != null && obj.end !== 0)) {
          w.uint32(24)
          w.uint32(obj.end)
        }

        if ((obj.maxLength != null && obj.maxLength !== 0)) {
          w.uint32(32)
          w.uint32(obj.maxLength)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          model: '',
          start: 0,
          end: 0,
          maxLength: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.model = reader.string()
              break
            }
            case 2: {
              obj.start = reader.uint32()
              break
            }
            case 3: {
              obj.end = reader.uint32()
              break
            }
            case 4: {
              obj.maxLength = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.model`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.start`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.end`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.maxLength`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanOpenModelFieldEvent {
    field: '$.model'
    value: string
  }

  export interface SpanOpenStartFieldEvent {
    field: '$.start'
    value: number
  }

  export interface SpanOpenEndFieldEvent {
    field: '$.end'
    value: number
  }

  export interface SpanOpenMaxLengthFieldEvent {
    field: '$.maxLength'
    value: number
  }

  export function encode (obj: Partial<SpanOpen>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanOpen.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanOpen>): SpanOpen {
    return decodeMessage(buf, SpanOpen.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanOpen>): Generator<SpanOpenModelFieldEvent | SpanOpenStartFieldEvent | SpanOpenEndFieldEvent | SpanOpenMaxLengthFieldEvent> {
    return streamMessage(buf, SpanOpen.codec(), opts)
  }
}

export interface SpanStep {
  session: number
  offset: number
  rows: number
  hidden: Uint8Array<ArrayBuffer>
}

export namespace SpanStep {
  let _codec: Codec<SpanStep>

  export const codec = (): Codec<SpanStep> => {
    if (_codec == null) {
      _codec = message<SpanStep>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.session != null && obj.session !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.session)
        }

        if ((obj.offset != null && obj.offset !== 0)) {
          w.uint32(16)
          w.uint32(obj.offset)
        }

        if ((obj.rows != null && obj.rows !== 0)) {
          w.uint32(24)
          w.uint32(obj.rows)
        }

        if ((obj.hidden != null && obj.hidden.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.hidden)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          session: 0,
          offset: 0,
          rows: 0,
          hidden: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.session = reader.uint64Number()
              break
            }
            case 2: {
              obj.offset = reader.uint32()
              break
            }
            case 3: {
              obj.rows = reader.uint32()
              break
            }
            case 4: {
              obj.hidden = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.session`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.offset`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.rows`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.hidden`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanStepSessionFieldEvent {
    field: '$.session'
    value: number
  }

  export interface SpanStepOffsetFieldEvent {
    field: '$.offset'
    value: number
  }

  export interface SpanStepRowsFieldEvent {
    field: '$.rows'
    value: number
  }

  export interface SpanStepHiddenFieldEvent {
    field: '$.hidden'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SpanStep>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanStep.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanStep>): SpanStep {
    return decodeMessage(buf, SpanStep.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanStep>): Generator<SpanStepSessionFieldEvent | SpanStepOffsetFieldEvent | SpanStepRowsFieldEvent | SpanStepHiddenFieldEvent> {
    return streamMessage(buf, SpanStep.codec(), opts)
  }
}

export interface SpanResponse {
  opened?: SpanOpened
  hidden?: SpanHidden
  error?: SpanError
}

export namespace SpanResponse {
  let _codec: Codec<SpanResponse>

  export const codec = (): Codec<SpanResponse> => {
    if (_codec == null) {
      _codec = message<SpanResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.opened != null) {
          w.uint32(10)
          SpanOpened.codec().encode(obj.opened, w)
        }

        if (obj.hidden != null) {
          w.uint32(18)
          SpanHidden.codec().encode(obj.hidden, w)
        }

        if (obj.error != null) {
          w.uint32(26)
          SpanError.codec().encode(obj.error, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {}

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.opened = SpanOpened.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.opened
              })
              break
            }
            case 2: {
              obj.hidden = SpanHidden.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.hidden
              })
              break
            }
            case 3: {
              obj.error = SpanError.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.error
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield * SpanOpened.codec().stream(reader, reader.uint32(), `${prefix}.opened`, {
                limits: opts.limits?.opened
              })

              break
            }
            case 2: {
              yield * SpanHidden.codec().stream(reader, reader.uint32(), `${prefix}.hidden`, {
                limits: opts.limits?.hidden
              })

              break
            }
            case 3: {
              yield * SpanError.codec().stream(reader, reader.uint32(), `${prefix}.error`, {
                limits: opts.limits?.error
              })

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanResponseOpenedSessionFieldEvent {
    field: '$.opened.session'
    value: number
  }

  export interface SpanResponseOpenedWidthFieldEvent {
    field: '$.opened.width'
    value: number
  }

  export interface SpanResponseOpenedMaxLengthFieldEvent {
    field: '$.opened.maxLength'
    value: number
  }

  export interface SpanResponseOpenedIdleTimeoutMsFieldEvent {
    field: '$.opened.idleTimeoutMs'
    value: number
  }

  export interface SpanResponseHiddenSessionFieldEvent {
    field: '$.hidden.session'
    value: number
  }

  export interface SpanResponseHiddenOffsetFieldEvent {
    field: '$.hidden.offset'
    value: number
  }

  export interface SpanResponseHiddenRowsFieldEvent {
    field: '$.hidden.rows'
    value: number
  }

  export interface SpanResponseHiddenHiddenFieldEvent {
    field: '$.hidden.hidden'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SpanResponseHiddenComputeMsFieldEvent {
    field: '$.hidden.computeMs'
    value: number
  }

  export interface SpanResponseErrorCodeFieldEvent {
    field: '$.error.code'
    value: string
  }

  export interface SpanResponseErrorMessageFieldEvent {
    field: '$.error.message'
    value: string
  }

  export function encode (obj: Partial<SpanResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanResponse>): SpanResponse {
    return decodeMessage(buf, SpanResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanResponse>): Generator<SpanResponseOpenedSessionFieldEvent | SpanResponseOpenedWidthFieldEvent | SpanResponseOpenedMaxLengthFieldEvent | SpanResponseOpenedIdleTimeoutMsFieldEvent | SpanResponseHiddenSessionFieldEvent | SpanResponseHiddenOffsetFieldEvent | SpanResponseHiddenRowsFieldEvent | SpanResponseHiddenHiddenFieldEvent | SpanResponseHiddenComputeMsFieldEvent | SpanResponseErrorCodeFieldEvent | SpanResponseErrorMessageFieldEvent> {
    return streamMessage(buf, SpanResponse.codec(), opts)
  }
}

export interface SpanOpened {
  session: number
  width: number
  maxLength: number
  idleTimeoutMs: number
}

export namespace SpanOpened {
  let _codec: Codec<SpanOpened>

  export const codec = (): Codec<SpanOpened> => {
    if (_codec == null) {
      _codec = message<SpanOpened>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.session != null && obj.session !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.session)
        }

        if ((obj.width != null && obj.width !== 0)) {
          w.uint32(16)
          w.uint32(obj.width)
        }

        if ((obj.maxLength != null && obj.maxLength !== 0)) {
          w.uint32(24)
          w.uint32(obj.maxLength)
        }

        if ((obj.idleTimeoutMs != null && obj.idleTimeoutMs !== 0)) {
          w.uint32(32)
          w.uint32(obj.idleTimeoutMs)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          session: 0,
          width: 0,
          maxLength: 0,
          idleTimeoutMs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.session = reader.uint64Number()
              break
            }
            case 2: {
              obj.width = reader.uint32()
              break
            }
            case 3: {
              obj.maxLength = reader.uint32()
              break
            }
            case 4: {
              obj.idleTimeoutMs = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.session`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.width`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.maxLength`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.idleTimeoutMs`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanOpenedSessionFieldEvent {
    field: '$.session'
    value: number
  }

  export interface SpanOpenedWidthFieldEvent {
    field: '$.width'
    value: number
  }

  export interface SpanOpenedMaxLengthFieldEvent {
    field: '$.maxLength'
    value: number
  }

  export interface SpanOpenedIdleTimeoutMsFieldEvent {
    field: '$.idleTimeoutMs'
    value: number
  }

  export function encode (obj: Partial<SpanOpened>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanOpened.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanOpened>): SpanOpened {
    return decodeMessage(buf, SpanOpened.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanOpened>): Generator<SpanOpenedSessionFieldEvent | SpanOpenedWidthFieldEvent | SpanOpenedMaxLengthFieldEvent | SpanOpenedIdleTimeoutMsFieldEvent> {
    return streamMessage(buf, SpanOpened.codec(), opts)
  }
}

export interface SpanHidden {
  session: number
  offset: number
  rows: number
  hidden: Uint8Array<ArrayBuffer>
  computeMs: number
}

export namespace SpanHidden {
  let _codec: Codec<SpanHidden>

  export const codec = (): Codec<SpanHidden> => {
    if (_codec == null) {
      _codec = message<SpanHidden>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.session != null && obj.session !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.session)
        }

        if ((obj.offset != null && obj.offset !== 0)) {
          w.uint32(16)
          w.uint32(obj.offset)
        }

        if ((obj.rows != null && obj.rows !== 0)) {
          w.uint32(24)
          w.uint32(obj.rows)
        }

        if ((obj.hidden != null && obj.hidden.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.hidden)
        }

        if ((obj.computeMs != null && obj.computeMs !== 0)) {
          w.uint32(41)
          w.double(obj.computeMs)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          session: 0,
          offset: 0,
          rows: 0,
          hidden: uint8ArrayAlloc(0),
          computeMs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.session = reader.uint64Number()
              break
            }
            case 2: {
              obj.offset = reader.uint32()
              break
            }
            case 3: {
              obj.rows = reader.uint32()
              break
            }
            case 4: {
              obj.hidden = reader.bytes()
              break
            }
            case 5: {
              obj.computeMs = reader.double()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.session`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.offset`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.rows`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.hidden`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.computeMs`,
                value: reader.double()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanHiddenSessionFieldEvent {
    field: '$.session'
    value: number
  }

  export interface SpanHiddenOffsetFieldEvent {
    field: '$.offset'
    value: number
  }

  export interface SpanHiddenRowsFieldEvent {
    field: '$.rows'
    value: number
  }

  export interface SpanHiddenHiddenFieldEvent {
    field: '$.hidden'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SpanHiddenComputeMsFieldEvent {
    field: '$.computeMs'
    value: number
  }

  export function encode (obj: Partial<SpanHidden>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanHidden.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanHidden>): SpanHidden {
    return decodeMessage(buf, SpanHidden.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanHidden>): Generator<SpanHiddenSessionFieldEvent | SpanHiddenOffsetFieldEvent | SpanHiddenRowsFieldEvent | SpanHiddenHiddenFieldEvent | SpanHiddenComputeMsFieldEvent> {
    return streamMessage(buf, SpanHidden.codec(), opts)
  }
}

export interface SpanError {
  code: string
  message: string
}

export namespace SpanError {
  let _codec: Codec<SpanError>

  export const codec = (): Codec<SpanError> => {
    if (_codec == null) {
      _codec = message<SpanError>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.code != null && obj.code !== '')) {
          w.uint32(10)
          w.string(obj.code)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(18)
          w.string(obj.message)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          code: '',
          message: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.code = reader.string()
              break
            }
            case 2: {
              obj.message = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.code`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.message`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SpanErrorCodeFieldEvent {
    field: '$.code'
    value: string
  }

  export interface SpanErrorMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export function encode (obj: Partial<SpanError>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SpanError.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanError>): SpanError {
    return decodeMessage(buf, SpanError.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SpanError>): Generator<SpanErrorCodeFieldEvent | SpanErrorMessageFieldEvent> {
    return streamMessage(buf, SpanError.codec(), opts)
  }
}
