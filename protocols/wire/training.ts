import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Gradient {
  step: number
  baseDigest: Uint8Array<ArrayBuffer>
  loss: number
  encoding: Gradient.Encoding
  length: number
  values: Uint8Array<ArrayBuffer>
  scales: Uint8Array<ArrayBuffer>
  blockSize: number
  signature: Uint8Array<ArrayBuffer>
}

export namespace Gradient {
  export enum Encoding {
    FLOAT32 = 'FLOAT32',
    INT8 = 'INT8'
  }

  enum __EncodingValues {
    FLOAT32 = 0,
    INT8 = 1
  }

  export namespace Encoding {
    export const codec = (): Codec<Encoding> => {
      return enumeration<Encoding>(__EncodingValues)
    }
  }

  let _codec: Codec<Gradient>

  export const codec = (): Codec<Gradient> => {
    if (_codec == null) {
      _codec = message<Gradient>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.step != null && obj.step !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.step)
        }

        if ((obj.baseDigest != null && obj.baseDigest.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.baseDigest)
        }

        if ((obj.loss != null && obj.loss !== 0)) {
          w.uint32(29)
          w.float(obj.loss)
        }

        if (obj.encoding != null && __EncodingValues[obj.encoding] !== 0) {
          w.uint32(32)
          Gradient.Encoding.codec().encode(obj.encoding, w)
        }

        if ((obj.length != null && obj.length !== 0)) {
          w.uint32(40)
          w.uint32(obj.length)
        }

        if ((obj.values != null && obj.values.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.values)
        }

        if ((obj.scales != null && obj.scales.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.scales)
        }

        if ((obj.blockSize != null && obj.blockSize !== 0)) {
          w.uint32(64)
          w.uint32(obj.blockSize)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          step: 0,
          baseDigest: uint8ArrayAlloc(0),
          loss: 0,
          encoding: Encoding.FLOAT32,
          length: 0,
          values: uint8ArrayAlloc(0),
          scales: uint8ArrayAlloc(0),
          blockSize: 0,
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.step = reader.uint64Number()
              break
            }
            case 2: {
              obj.baseDigest = reader.bytes()
              break
            }
            case 3: {
              obj.loss = reader.float()
              break
            }
            case 4: {
              obj.encoding = Gradient.Encoding.codec().decode(reader)
              break
            }
            case 5: {
              obj.length = reader.uint32()
              break
            }
            case 6: {
              obj.values = reader.bytes()
              break
            }
            case 7: {
              obj.scales = reader.bytes()
              break
            }
            case 8: {
              obj.blockSize = reader.uint32()
              break
            }
            case 9: {
              obj.signature = reader.bytes()
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
                field: `${prefix}.step`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.baseDigest`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.loss`,
                value: reader.float()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.encoding`,
                value: Gradient.Encoding.codec().decode(reader)
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.length`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.values`,
                value: reader.bytes()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.scales`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.blockSize`,
                value: reader.uint32()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.signature`,
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

  export interface GradientStepFieldEvent {
    field: '$.step'
    value: number
  }

  export interface GradientBaseDigestFieldEvent {
    field: '$.baseDigest'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradientLossFieldEvent {
    field: '$.loss'
    value: number
  }

  export interface GradientEncodingFieldEvent {
    field: '$.encoding'
    value: Gradient.Encoding
  }

  export interface GradientLengthFieldEvent {
    field: '$.length'
    value: number
  }

  export interface GradientValuesFieldEvent {
    field: '$.values'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradientScalesFieldEvent {
    field: '$.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradientBlockSizeFieldEvent {
    field: '$.blockSize'
    value: number
  }

  export interface GradientSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Gradient>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Gradient.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Gradient>): Gradient {
    return decodeMessage(buf, Gradient.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Gradient>): Generator<GradientStepFieldEvent | GradientBaseDigestFieldEvent | GradientLossFieldEvent | GradientEncodingFieldEvent | GradientLengthFieldEvent | GradientValuesFieldEvent | GradientScalesFieldEvent | GradientBlockSizeFieldEvent | GradientSignatureFieldEvent> {
    return streamMessage(buf, Gradient.codec(), opts)
  }
}

export interface GradientFetch {
  step: number
  digest: Uint8Array<ArrayBuffer>
}

export namespace GradientFetch {
  let _codec: Codec<GradientFetch>

  export const codec = (): Codec<GradientFetch> => {
    if (_codec == null) {
      _codec = message<GradientFetch>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.step != null && obj.step !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.step)
        }

        if ((obj.digest != null && obj.digest.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.digest)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          step: 0,
          digest: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.step = reader.uint64Number()
              break
            }
            case 2: {
              obj.digest = reader.bytes()
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
                field: `${prefix}.step`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.digest`,
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

  export interface GradientFetchStepFieldEvent {
    field: '$.step'
    value: number
  }

  export interface GradientFetchDigestFieldEvent {
    field: '$.digest'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<GradientFetch>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GradientFetch.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GradientFetch>): GradientFetch {
    return decodeMessage(buf, GradientFetch.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GradientFetch>): Generator<GradientFetchStepFieldEvent | GradientFetchDigestFieldEvent> {
    return streamMessage(buf, GradientFetch.codec(), opts)
  }
}

export interface GradRequest {
  group: string
  gradient?: Gradient
  stateRequest: boolean
  share: boolean
  fetch?: GradientFetch
}

export namespace GradRequest {
  let _codec: Codec<GradRequest>

  export const codec = (): Codec<GradRequest> => {
    if (_codec == null) {
      _codec = message<GradRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.group != null && obj.group !== '')) {
          w.uint32(10)
          w.string(obj.group)
        }

        if (obj.gradient != null) {
          w.uint32(18)
          Gradient.codec().encode(obj.gradient, w)
        }

        if ((obj.stateRequest != null && obj.stateRequest !== false)) {
          w.uint32(24)
          w.bool(obj.stateRequest)
        }

        if ((obj.share != null && obj.share !== false)) {
          w.uint32(32)
          w.bool(obj.share)
        }

        if (obj.fetch != null) {
          w.uint32(42)
          GradientFetch.codec().encode(obj.fetch, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          group: '',
          stateRequest: false,
          share: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.group = reader.string()
              break
            }
            case 2: {
              obj.gradient = Gradient.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.gradient
              })
              break
            }
            case 3: {
              obj.stateRequest = reader.bool()
              break
            }
            case 4: {
              obj.share = reader.bool()
              break
            }
            case 5: {
              obj.fetch = GradientFetch.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.fetch
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
              yield {
                field: `${prefix}.group`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield * Gradient.codec().stream(reader, reader.uint32(), `${prefix}.gradient`, {
                limits: opts.limits?.gradient
              })

              break
            }
            case 3: {
              yield {
                field: `${prefix}.stateRequest`,
                value: reader.bool()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.share`,
                value: reader.bool()
              }
              break
            }
            case 5: {
              yield * GradientFetch.codec().stream(reader, reader.uint32(), `${prefix}.fetch`, {
                limits: opts.limits?.fetch
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

  export interface GradRequestGroupFieldEvent {
    field: '$.group'
    value: string
  }

  export interface GradRequestGradientStepFieldEvent {
    field: '$.gradient.step'
    value: number
  }

  export interface GradRequestGradientBaseDigestFieldEvent {
    field: '$.gradient.baseDigest'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradRequestGradientLossFieldEvent {
    field: '$.gradient.loss'
    value: number
  }

  export interface GradRequestGradientEncodingFieldEvent {
    field: '$.gradient.encoding'
    value: Gradient.Encoding
  }

  export interface GradRequestGradientLengthFieldEvent {
    field: '$.gradient.length'
    value: number
  }

  export interface GradRequestGradientValuesFieldEvent {
    field: '$.gradient.values'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradRequestGradientScalesFieldEvent {
    field: '$.gradient.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradRequestGradientBlockSizeFieldEvent {
    field: '$.gradient.blockSize'
    value: number
  }

  export interface GradRequestGradientSignatureFieldEvent {
    field: '$.gradient.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradRequestStateRequestFieldEvent {
    field: '$.stateRequest'
    value: boolean
  }

  export interface GradRequestShareFieldEvent {
    field: '$.share'
    value: boolean
  }

  export interface GradRequestFetchStepFieldEvent {
    field: '$.fetch.step'
    value: number
  }

  export interface GradRequestFetchDigestFieldEvent {
    field: '$.fetch.digest'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<GradRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GradRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GradRequest>): GradRequest {
    return decodeMessage(buf, GradRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GradRequest>): Generator<GradRequestGroupFieldEvent | GradRequestGradientStepFieldEvent | GradRequestGradientBaseDigestFieldEvent | GradRequestGradientLossFieldEvent | GradRequestGradientEncodingFieldEvent | GradRequestGradientLengthFieldEvent | GradRequestGradientValuesFieldEvent | GradRequestGradientScalesFieldEvent | GradRequestGradientBlockSizeFieldEvent | GradRequestGradientSignatureFieldEvent | GradRequestStateRequestFieldEvent | GradRequestShareFieldEvent | GradRequestFetchStepFieldEvent | GradRequestFetchDigestFieldEvent> {
    return streamMessage(buf, GradRequest.codec(), opts)
  }
}

export interface GradResponse {
  status: GradResponse.Status
  reason: string
  leader: string
  state: Uint8Array<ArrayBuffer>
  gradient?: Gradient
  author: string
  evidence: Gradient[]
  evidenceAuthors: string[]
}

export namespace GradResponse {
  export enum Status {
    ACCEPTED = 'ACCEPTED',
    NOT_LEADER = 'NOT_LEADER',
    NOT_READY = 'NOT_READY',
    STALE = 'STALE',
    REJECTED = 'REJECTED',
    STATE = 'STATE',
    GRADIENT = 'GRADIENT'
  }

  enum __StatusValues {
    ACCEPTED = 0,
    NOT_LEADER = 1,
    NOT_READY = 2,
    STALE = 3,
    REJECTED = 4,
    STATE = 5,
    GRADIENT = 6
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<GradResponse>

  export const codec = (): Codec<GradResponse> => {
    if (_codec == null) {
      _codec = message<GradResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(8)
          GradResponse.Status.codec().encode(obj.status, w)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(18)
          w.string(obj.reason)
        }

        if ((obj.leader != null && obj.leader !== '')) {
          w.uint32(26)
          w.string(obj.leader)
        }

        if ((obj.state != null && obj.state.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.state)
        }

        if (obj.gradient != null) {
          w.uint32(42)
          Gradient.codec().encode(obj.gradient, w)
        }

        if ((obj.author != null && obj.author !== '')) {
          w.uint32(50)
          w.string(obj.author)
        }

        if (obj.evidence != null && obj.evidence.length > 0) {
          for (const value of obj.evidence) {
            w.uint32(58)
            Gradient.codec().encode(value, w)
          }
        }

        if (obj.evidenceAuthors != null && obj.evidenceAuthors.length > 0) {
          for (const value of obj.evidenceAuthors) {
            w.uint32(66)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          status: Status.ACCEPTED,
          reason: '',
          leader: '',
          state: uint8ArrayAlloc(0),
          author: '',
          evidence: [],
          evidenceAuthors: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.status = GradResponse.Status.codec().decode(reader)
              break
            }
            case 2: {
              obj.reason = reader.string()
              break
            }
            case 3: {
              obj.leader = reader.string()
              break
            }
            case 4: {
              obj.state = reader.bytes()
              break
            }
            case 5: {
              obj.gradient = Gradient.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.gradient
              })
              break
            }
            case 6: {
              obj.author = reader.string()
              break
            }
            case 7: {
              if (opts.limits?.evidence != null && obj.evidence.length === opts.limits.evidence) {
                throw new MaxLengthError('Decode error - repeated field "evidence" had too many elements')
              }

              obj.evidence.push(Gradient.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.evidence$
              }))
              break
            }
            case 8: {
              if (opts.limits?.evidenceAuthors != null && obj.evidenceAuthors.length === opts.limits.evidenceAuthors) {
                throw new MaxLengthError('Decode error - repeated field "evidenceAuthors" had too many elements')
              }

              obj.evidenceAuthors.push(reader.string())
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
        const obj = {
          evidence: 0,
          evidenceAuthors: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.status`,
                value: GradResponse.Status.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.reason`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.leader`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.state`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield * Gradient.codec().stream(reader, reader.uint32(), `${prefix}.gradient`, {
                limits: opts.limits?.gradient
              })

              break
            }
            case 6: {
              yield {
                field: `${prefix}.author`,
                value: reader.string()
              }
              break
            }
            case 7: {
              if (opts.limits?.evidence != null && obj.evidence === opts.limits.evidence) {
                throw new MaxLengthError('Streaming decode error - repeated field "evidence" had too many elements')
              }

              for (const evt of Gradient.codec().stream(reader, reader.uint32(), `${prefix}.evidence[]`, {
                limits: opts.limits?.evidence$
              })) {
                yield {
                  ...evt,
                  index: obj.evidence
                }
              }

              obj.evidence++

              break
            }
            case 8: {
              if (opts.limits?.evidenceAuthors != null && obj.evidenceAuthors === opts.limits.evidenceAuthors) {
                throw new MaxLengthError('Streaming decode error - repeated field "evidenceAuthors" had too many elements')
              }

              yield {
                field: `${prefix}.evidenceAuthors[]`,
                index: obj.evidenceAuthors,
                value: reader.string()
              }

              obj.evidenceAuthors++

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

  export interface GradResponseStatusFieldEvent {
    field: '$.status'
    value: GradResponse.Status
  }

  export interface GradResponseReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export interface GradResponseLeaderFieldEvent {
    field: '$.leader'
    value: string
  }

  export interface GradResponseStateFieldEvent {
    field: '$.state'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradResponseGradientStepFieldEvent {
    field: '$.gradient.step'
    value: number
  }

  export interface GradResponseGradientBaseDigestFieldEvent {
    field: '$.gradient.baseDigest'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradResponseGradientLossFieldEvent {
    field: '$.gradient.loss'
    value: number
  }

  export interface GradResponseGradientEncodingFieldEvent {
    field: '$.gradient.encoding'
    value: Gradient.Encoding
  }

  export interface GradResponseGradientLengthFieldEvent {
    field: '$.gradient.length'
    value: number
  }

  export interface GradResponseGradientValuesFieldEvent {
    field: '$.gradient.values'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradResponseGradientScalesFieldEvent {
    field: '$.gradient.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradResponseGradientBlockSizeFieldEvent {
    field: '$.gradient.blockSize'
    value: number
  }

  export interface GradResponseGradientSignatureFieldEvent {
    field: '$.gradient.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GradResponseAuthorFieldEvent {
    field: '$.author'
    value: string
  }

  export interface GradResponseEvidenceStepFieldEvent {
    field: '$.evidence[].step'
    value: number
    index: number
  }

  export interface GradResponseEvidenceBaseDigestFieldEvent {
    field: '$.evidence[].baseDigest'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GradResponseEvidenceLossFieldEvent {
    field: '$.evidence[].loss'
    value: number
    index: number
  }

  export interface GradResponseEvidenceEncodingFieldEvent {
    field: '$.evidence[].encoding'
    value: Gradient.Encoding
    index: number
  }

  export interface GradResponseEvidenceLengthFieldEvent {
    field: '$.evidence[].length'
    value: number
    index: number
  }

  export interface GradResponseEvidenceValuesFieldEvent {
    field: '$.evidence[].values'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GradResponseEvidenceScalesFieldEvent {
    field: '$.evidence[].scales'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GradResponseEvidenceBlockSizeFieldEvent {
    field: '$.evidence[].blockSize'
    value: number
    index: number
  }

  export interface GradResponseEvidenceSignatureFieldEvent {
    field: '$.evidence[].signature'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GradResponseEvidenceAuthorsFieldEvent {
    field: '$.evidenceAuthors[]'
    index: number
    value: string
  }

  export function encode (obj: Partial<GradResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GradResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GradResponse>): GradResponse {
    return decodeMessage(buf, GradResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GradResponse>): Generator<GradResponseStatusFieldEvent | GradResponseReasonFieldEvent | GradResponseLeaderFieldEvent | GradResponseStateFieldEvent | GradResponseGradientStepFieldEvent | GradResponseGradientBaseDigestFieldEvent | GradResponseGradientLossFieldEvent | GradResponseGradientEncodingFieldEvent | GradResponseGradientLengthFieldEvent | GradResponseGradientValuesFieldEvent | GradResponseGradientScalesFieldEvent | GradResponseGradientBlockSizeFieldEvent | GradResponseGradientSignatureFieldEvent | GradResponseAuthorFieldEvent | GradResponseEvidenceStepFieldEvent | GradResponseEvidenceBaseDigestFieldEvent | GradResponseEvidenceLossFieldEvent | GradResponseEvidenceEncodingFieldEvent | GradResponseEvidenceLengthFieldEvent | GradResponseEvidenceValuesFieldEvent | GradResponseEvidenceScalesFieldEvent | GradResponseEvidenceBlockSizeFieldEvent | GradResponseEvidenceSignatureFieldEvent | GradResponseEvidenceAuthorsFieldEvent> {
    return streamMessage(buf, GradResponse.codec(), opts)
  }
}

export interface Rejection {
  member: string
  reason: string
  digest: Uint8Array<ArrayBuffer>
}

export namespace Rejection {
  let _codec: Codec<Rejection>

  export const codec = (): Codec<Rejection> => {
    if (_codec == null) {
      _codec = message<Rejection>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.member != null && obj.member !== '')) {
          w.uint32(10)
          w.string(obj.member)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(18)
          w.string(obj.reason)
        }

        if ((obj.digest != null && obj.digest.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.digest)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          member: '',
          reason: '',
          digest: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.member = reader.string()
              break
            }
            case 2: {
              obj.reason = reader.string()
              break
            }
            case 3: {
              obj.digest = reader.bytes()
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
                field: `${prefix}.member`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.reason`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.digest`,
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

  export interface RejectionMemberFieldEvent {
    field: '$.member'
    value: string
  }

  export interface RejectionReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export interface RejectionDigestFieldEvent {
    field: '$.digest'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Rejection>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Rejection.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Rejection>): Rejection {
    return decodeMessage(buf, Rejection.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Rejection>): Generator<RejectionMemberFieldEvent | RejectionReasonFieldEvent | RejectionDigestFieldEvent> {
    return streamMessage(buf, Rejection.codec(), opts)
  }
}

export interface TrainingEntry {
  kind: TrainingEntry.Kind
  step: number
  contributors: string[]
  rejected: Rejection[]
  suspects: string[]
  loss: number
  update: Uint8Array<ArrayBuffer>
  updateCid: string
  digestAfter: Uint8Array<ArrayBuffer>
  outerRound: number
  agreement: number[]
  updateEncoding: TrainingEntry.Encoding
  updateScales: Uint8Array<ArrayBuffer>
  updateBlockSize: number
  gradientDigests: Uint8Array<ArrayBuffer>[]
}

export namespace TrainingEntry {
  export enum Kind {
    STEP = 'STEP',
    OUTER = 'OUTER'
  }

  enum __KindValues {
    STEP = 0,
    OUTER = 1
  }

  export namespace Kind {
    export const codec = (): Codec<Kind> => {
      return enumeration<Kind>(__KindValues)
    }
  }

  export enum Encoding {
    FLOAT32 = 'FLOAT32',
    INT8 = 'INT8'
  }

  enum __EncodingValues {
    FLOAT32 = 0,
    INT8 = 1
  }

  export namespace Encoding {
    export const codec = (): Codec<Encoding> => {
      return enumeration<Encoding>(__EncodingValues)
    }
  }

  let _codec: Codec<TrainingEntry>

  export const codec = (): Codec<TrainingEntry> => {
    if (_codec == null) {
      _codec = message<TrainingEntry>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.kind != null && __KindValues[obj.kind] !== 0) {
          w.uint32(8)
          TrainingEntry.Kind.codec().encode(obj.kind, w)
        }

        if ((obj.step != null && obj.step !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.step)
        }

        if (obj.contributors != null && obj.contributors.length > 0) {
          for (const value of obj.contributors) {
            w.uint32(26)
            w.string(value)
          }
        }

        if (obj.rejected != null && obj.rejected.length > 0) {
          for (const value of obj.rejected) {
            w.uint32(34)
            Rejection.codec().encode(value, w)
          }
        }

        if (obj.suspects != null && obj.suspects.length > 0) {
          for (const value of obj.suspects) {
            w.uint32(42)
            w.string(value)
          }
        }

        if ((obj.loss != null && obj.loss !== 0)) {
          w.uint32(53)
          w.float(obj.loss)
        }

        if ((obj.update != null && obj.update.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.update)
        }

        if ((obj.updateCid != null && obj.updateCid !== '')) {
          w.uint32(66)
          w.string(obj.updateCid)
        }

        if ((obj.digestAfter != null && obj.digestAfter.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.digestAfter)
        }

        if ((obj.outerRound != null && obj.outerRound !== 0)) {
          w.uint32(80)
          w.uint64Number(obj.outerRound)
        }

        if (obj.agreement != null && obj.agreement.length > 0) {
          for (const value of obj.agreement) {
            w.uint32(93)
            w.float(value)
          }
        }

        if (obj.updateEncoding != null && __EncodingValues[obj.updateEncoding] !== 0) {
          w.uint32(96)
          TrainingEntry.Encoding.codec().encode(obj.updateEncoding, w)
        }

        if ((obj.updateScales != null && obj.updateScales.byteLength > 0)) {
          w.uint32(106)
          w.bytes(obj.updateScales)
        }

        if ((obj.updateBlockSize != null && obj.updateBlockSize !== 0)) {
          w.uint32(112)
          w.uint32(obj.updateBlockSize)
        }

        if (obj.gradientDigests != null && obj.gradientDigests.length > 0) {
          for (const value of obj.gradientDigests) {
            w.uint32(122)
            w.bytes(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          kind: Kind.STEP,
          step: 0,
          contributors: [],
          rejected: [],
          suspects: [],
          loss: 0,
          update: uint8ArrayAlloc(0),
          updateCid: '',
          digestAfter: uint8ArrayAlloc(0),
          outerRound: 0,
          agreement: [],
          updateEncoding: Encoding.FLOAT32,
          updateScales: uint8ArrayAlloc(0),
          updateBlockSize: 0,
          gradientDigests: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.kind = TrainingEntry.Kind.codec().decode(reader)
              break
            }
            case 2: {
              obj.step = reader.uint64Number()
              break
            }
            case 3: {
              if (opts.limits?.contributors != null && obj.contributors.length === opts.limits.contributors) {
                throw new MaxLengthError('Decode error - repeated field "contributors" had too many elements')
              }

              obj.contributors.push(reader.string())
              break
            }
            case 4: {
              if (opts.limits?.rejected != null && obj.rejected.length === opts.limits.rejected) {
                throw new MaxLengthError('Decode error - repeated field "rejected" had too many elements')
              }

              obj.rejected.push(Rejection.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.rejected$
              }))
              break
            }
            case 5: {
              if (opts.limits?.suspects != null && obj.suspects.length === opts.limits.suspects) {
                throw new MaxLengthError('Decode error - repeated field "suspects" had too many elements')
              }

              obj.suspects.push(reader.string())
              break
            }
            case 6: {
              obj.loss = reader.float()
              break
            }
            case 7: {
              obj.update = reader.bytes()
              break
            }
            case 8: {
              obj.updateCid = reader.string()
              break
            }
            case 9: {
              obj.digestAfter = reader.bytes()
              break
            }
            case 10: {
              obj.outerRound = reader.uint64Number()
              break
            }
            case 11: {
              if (opts.limits?.agreement != null && obj.agreement.length === opts.limits.agreement) {
                throw new MaxLengthError('Decode error - repeated field "agreement" had too many elements')
              }

              obj.agreement.push(reader.float())
              break
            }
            case 12: {
              obj.updateEncoding = TrainingEntry.Encoding.codec().decode(reader)
              break
            }
            case 13: {
              obj.updateScales = reader.bytes()
              break
            }
            case 14: {
              obj.updateBlockSize = reader.uint32()
              break
            }
            case 15: {
              if (opts.limits?.gradientDigests != null && obj.gradientDigests.length === opts.limits.gradientDigests) {
                throw new MaxLengthError('Decode error - repeated field "gradientDigests" had too many elements')
              }

              obj.gradientDigests.push(reader.bytes())
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
        const obj = {
          contributors: 0,
          rejected: 0,
          suspects: 0,
          agreement: 0,
          gradientDigests: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.kind`,
                value: TrainingEntry.Kind.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.step`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              if (opts.limits?.contributors != null && obj.contributors === opts.limits.contributors) {
                throw new MaxLengthError('Streaming decode error - repeated field "contributors" had too many elements')
              }

              yield {
                field: `${prefix}.contributors[]`,
                index: obj.contributors,
                value: reader.string()
              }

              obj.contributors++

              break
            }
            case 4: {
              if (opts.limits?.rejected != null && obj.rejected === opts.limits.rejected) {
                throw new MaxLengthError('Streaming decode error - repeated field "rejected" had too many elements')
              }

              for (const evt of Rejection.codec().stream(reader, reader.uint32(), `${prefix}.rejected[]`, {
                limits: opts.limits?.rejected$
              })) {
                yield {
                  ...evt,
                  index: obj.rejected
                }
              }

              obj.rejected++

              break
            }
            case 5: {
              if (opts.limits?.suspects != null && obj.suspects === opts.limits.suspects) {
                throw new MaxLengthError('Streaming decode error - repeated field "suspects" had too many elements')
              }

              yield {
                field: `${prefix}.suspects[]`,
                index: obj.suspects,
                value: reader.string()
              }

              obj.suspects++

              break
            }
            case 6: {
              yield {
                field: `${prefix}.loss`,
                value: reader.float()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.update`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.updateCid`,
                value: reader.string()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.digestAfter`,
                value: reader.bytes()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.outerRound`,
                value: reader.uint64Number()
              }
              break
            }
            case 11: {
              if (opts.limits?.agreement != null && obj.agreement === opts.limits.agreement) {
                throw new MaxLengthError('Streaming decode error - repeated field "agreement" had too many elements')
              }

              yield {
                field: `${prefix}.agreement[]`,
                index: obj.agreement,
                value: reader.float()
              }

              obj.agreement++

              break
            }
            case 12: {
              yield {
                field: `${prefix}.updateEncoding`,
                value: TrainingEntry.Encoding.codec().decode(reader)
              }
              break
            }
            case 13: {
              yield {
                field: `${prefix}.updateScales`,
                value: reader.bytes()
              }
              break
            }
            case 14: {
              yield {
                field: `${prefix}.updateBlockSize`,
                value: reader.uint32()
              }
              break
            }
            case 15: {
              if (opts.limits?.gradientDigests != null && obj.gradientDigests === opts.limits.gradientDigests) {
                throw new MaxLengthError('Streaming decode error - repeated field "gradientDigests" had too many elements')
              }

              yield {
                field: `${prefix}.gradientDigests[]`,
                index: obj.gradientDigests,
                value: reader.bytes()
              }

              obj.gradientDigests++

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

  export interface TrainingEntryKindFieldEvent {
    field: '$.kind'
    value: TrainingEntry.Kind
  }

  export interface TrainingEntryStepFieldEvent {
    field: '$.step'
    value: number
  }

  export interface TrainingEntryContributorsFieldEvent {
    field: '$.contributors[]'
    index: number
    value: string
  }

  export interface TrainingEntryRejectedMemberFieldEvent {
    field: '$.rejected[].member'
    value: string
    index: number
  }

  export interface TrainingEntryRejectedReasonFieldEvent {
    field: '$.rejected[].reason'
    value: string
    index: number
  }

  export interface TrainingEntryRejectedDigestFieldEvent {
    field: '$.rejected[].digest'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface TrainingEntrySuspectsFieldEvent {
    field: '$.suspects[]'
    index: number
    value: string
  }

  export interface TrainingEntryLossFieldEvent {
    field: '$.loss'
    value: number
  }

  export interface TrainingEntryUpdateFieldEvent {
    field: '$.update'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TrainingEntryUpdateCidFieldEvent {
    field: '$.updateCid'
    value: string
  }

  export interface TrainingEntryDigestAfterFieldEvent {
    field: '$.digestAfter'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TrainingEntryOuterRoundFieldEvent {
    field: '$.outerRound'
    value: number
  }

  export interface TrainingEntryAgreementFieldEvent {
    field: '$.agreement[]'
    index: number
    value: number
  }

  export interface TrainingEntryUpdateEncodingFieldEvent {
    field: '$.updateEncoding'
    value: TrainingEntry.Encoding
  }

  export interface TrainingEntryUpdateScalesFieldEvent {
    field: '$.updateScales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TrainingEntryUpdateBlockSizeFieldEvent {
    field: '$.updateBlockSize'
    value: number
  }

  export interface TrainingEntryGradientDigestsFieldEvent {
    field: '$.gradientDigests[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<TrainingEntry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TrainingEntry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TrainingEntry>): TrainingEntry {
    return decodeMessage(buf, TrainingEntry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TrainingEntry>): Generator<TrainingEntryKindFieldEvent | TrainingEntryStepFieldEvent | TrainingEntryContributorsFieldEvent | TrainingEntryRejectedMemberFieldEvent | TrainingEntryRejectedReasonFieldEvent | TrainingEntryRejectedDigestFieldEvent | TrainingEntrySuspectsFieldEvent | TrainingEntryLossFieldEvent | TrainingEntryUpdateFieldEvent | TrainingEntryUpdateCidFieldEvent | TrainingEntryDigestAfterFieldEvent | TrainingEntryOuterRoundFieldEvent | TrainingEntryAgreementFieldEvent | TrainingEntryUpdateEncodingFieldEvent | TrainingEntryUpdateScalesFieldEvent | TrainingEntryUpdateBlockSizeFieldEvent | TrainingEntryGradientDigestsFieldEvent> {
    return streamMessage(buf, TrainingEntry.codec(), opts)
  }
}

export interface MemberCounts {
  member: string
  accepted: number
  rejected: number
  suspect: number
  agreementSum: number
  scored: number
}

export namespace MemberCounts {
  let _codec: Codec<MemberCounts>

  export const codec = (): Codec<MemberCounts> => {
    if (_codec == null) {
      _codec = message<MemberCounts>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.member != null && obj.member !== '')) {
          w.uint32(10)
          w.string(obj.member)
        }

        if ((obj.accepted != null && obj.accepted !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.accepted)
        }

        if ((obj.rejected != null && obj.rejected !== 0)) {
          w.uint32(24)
          w.uint64Number(obj.rejected)
        }

        if ((obj.suspect != null && obj.suspect !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.suspect)
        }

        if ((obj.agreementSum != null && obj.agreementSum !== 0)) {
          w.uint32(41)
          w.double(obj.agreementSum)
        }

        if ((obj.scored != null && obj.scored !== 0)) {
          w.uint32(48)
          w.uint64Number(obj.scored)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          member: '',
          accepted: 0,
          rejected: 0,
          suspect: 0,
          agreementSum: 0,
          scored: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.member = reader.string()
              break
            }
            case 2: {
              obj.accepted = reader.uint64Number()
              break
            }
            case 3: {
              obj.rejected = reader.uint64Number()
              break
            }
            case 4: {
              obj.suspect = reader.uint64Number()
              break
            }
            case 5: {
              obj.agreementSum = reader.double()
              break
            }
            case 6: {
              obj.scored = reader.uint64Number()
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
                field: `${prefix}.member`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.accepted`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.rejected`,
                value: reader.uint64Number()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.suspect`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.agreementSum`,
                value: reader.double()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.scored`,
                value: reader.uint64Number()
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

  export interface MemberCountsMemberFieldEvent {
    field: '$.member'
    value: string
  }

  export interface MemberCountsAcceptedFieldEvent {
    field: '$.accepted'
    value: number
  }

  export interface MemberCountsRejectedFieldEvent {
    field: '$.rejected'
    value: number
  }

  export interface MemberCountsSuspectFieldEvent {
    field: '$.suspect'
    value: number
  }

  export interface MemberCountsAgreementSumFieldEvent {
    field: '$.agreementSum'
    value: number
  }

  export interface MemberCountsScoredFieldEvent {
    field: '$.scored'
    value: number
  }

  export function encode (obj: Partial<MemberCounts>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, MemberCounts.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<MemberCounts>): MemberCounts {
    return decodeMessage(buf, MemberCounts.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<MemberCounts>): Generator<MemberCountsMemberFieldEvent | MemberCountsAcceptedFieldEvent | MemberCountsRejectedFieldEvent | MemberCountsSuspectFieldEvent | MemberCountsAgreementSumFieldEvent | MemberCountsScoredFieldEvent> {
    return streamMessage(buf, MemberCounts.codec(), opts)
  }
}

export interface TrainingState {
  step: number
  outerRounds: number
  params: Uint8Array<ArrayBuffer>
  firstMoment: Uint8Array<ArrayBuffer>
  secondMoment: Uint8Array<ArrayBuffer>
  lastLoss: number
  counts: MemberCounts[]
}

export namespace TrainingState {
  let _codec: Codec<TrainingState>

  export const codec = (): Codec<TrainingState> => {
    if (_codec == null) {
      _codec = message<TrainingState>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.step != null && obj.step !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.step)
        }

        if ((obj.outerRounds != null && obj.outerRounds !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.outerRounds)
        }

        if ((obj.params != null && obj.params.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.params)
        }

        if ((obj.firstMoment != null && obj.firstMoment.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.firstMoment)
        }

        if ((obj.secondMoment != null && obj.secondMoment.byteLength > 0)) {
          w.uint32(42)
          w.bytes(obj.secondMoment)
        }

        if ((obj.lastLoss != null && obj.lastLoss !== 0)) {
          w.uint32(53)
          w.float(obj.lastLoss)
        }

        if (obj.counts != null && obj.counts.length > 0) {
          for (const value of obj.counts) {
            w.uint32(58)
            MemberCounts.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          step: 0,
          outerRounds: 0,
          params: uint8ArrayAlloc(0),
          firstMoment: uint8ArrayAlloc(0),
          secondMoment: uint8ArrayAlloc(0),
          lastLoss: 0,
          counts: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.step = reader.uint64Number()
              break
            }
            case 2: {
              obj.outerRounds = reader.uint64Number()
              break
            }
            case 3: {
              obj.params = reader.bytes()
              break
            }
            case 4: {
              obj.firstMoment = reader.bytes()
              break
            }
            case 5: {
              obj.secondMoment = reader.bytes()
              break
            }
            case 6: {
              obj.lastLoss = reader.float()
              break
            }
            case 7: {
              if (opts.limits?.counts != null && obj.counts.length === opts.limits.counts) {
                throw new MaxLengthError('Decode error - repeated field "counts" had too many elements')
              }

              obj.counts.push(MemberCounts.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.counts$
              }))
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
        const obj = {
          counts: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.step`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.outerRounds`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.params`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.firstMoment`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.secondMoment`,
                value: reader.bytes()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.lastLoss`,
                value: reader.float()
              }
              break
            }
            case 7: {
              if (opts.limits?.counts != null && obj.counts === opts.limits.counts) {
                throw new MaxLengthError('Streaming decode error - repeated field "counts" had too many elements')
              }

              for (const evt of MemberCounts.codec().stream(reader, reader.uint32(), `${prefix}.counts[]`, {
                limits: opts.limits?.counts$
              })) {
                yield {
                  ...evt,
                  index: obj.counts
                }
              }

              obj.counts++

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

  export interface TrainingStateStepFieldEvent {
    field: '$.step'
    value: number
  }

  export interface TrainingStateOuterRoundsFieldEvent {
    field: '$.outerRounds'
    value: number
  }

  export interface TrainingStateParamsFieldEvent {
    field: '$.params'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TrainingStateFirstMomentFieldEvent {
    field: '$.firstMoment'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TrainingStateSecondMomentFieldEvent {
    field: '$.secondMoment'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TrainingStateLastLossFieldEvent {
    field: '$.lastLoss'
    value: number
  }

  export interface TrainingStateCountsMemberFieldEvent {
    field: '$.counts[].member'
    value: string
    index: number
  }

  export interface TrainingStateCountsAcceptedFieldEvent {
    field: '$.counts[].accepted'
    value: number
    index: number
  }

  export interface TrainingStateCountsRejectedFieldEvent {
    field: '$.counts[].rejected'
    value: number
    index: number
  }

  export interface TrainingStateCountsSuspectFieldEvent {
    field: '$.counts[].suspect'
    value: number
    index: number
  }

  export interface TrainingStateCountsAgreementSumFieldEvent {
    field: '$.counts[].agreementSum'
    value: number
    index: number
  }

  export interface TrainingStateCountsScoredFieldEvent {
    field: '$.counts[].scored'
    value: number
    index: number
  }

  export function encode (obj: Partial<TrainingState>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TrainingState.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TrainingState>): TrainingState {
    return decodeMessage(buf, TrainingState.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TrainingState>): Generator<TrainingStateStepFieldEvent | TrainingStateOuterRoundsFieldEvent | TrainingStateParamsFieldEvent | TrainingStateFirstMomentFieldEvent | TrainingStateSecondMomentFieldEvent | TrainingStateLastLossFieldEvent | TrainingStateCountsMemberFieldEvent | TrainingStateCountsAcceptedFieldEvent | TrainingStateCountsRejectedFieldEvent | TrainingStateCountsSuspectFieldEvent | TrainingStateCountsAgreementSumFieldEvent | TrainingStateCountsScoredFieldEvent> {
    return streamMessage(buf, TrainingState.codec(), opts)
  }
}
