import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface CapabilityRecord {
  peerId: Uint8Array<ArrayBuffer>
  backend: CapabilityRecord.Backend
  adapterName: string
  maxBufferBytes: number
  gflops: number
  protocols: string[]
  addresses: Uint8Array<ArrayBuffer>[]
  seq: number
  expiresMs: number
  backends: CapabilityRecord.BackendFigure[]
  spans: CapabilityRecord.ServedSpan[]
}

export namespace CapabilityRecord {
  export enum Backend {
    BACKEND_UNSPECIFIED = 'BACKEND_UNSPECIFIED',
    WEBGPU = 'WEBGPU',
    CPU = 'CPU'
  }

  enum __BackendValues {
    BACKEND_UNSPECIFIED = 0,
    WEBGPU = 1,
    CPU = 2
  }

  export namespace Backend {
    export const codec = (): Codec<Backend> => {
      return enumeration<Backend>(__BackendValues)
    }
  }

  export interface BackendFigure {
    backend: CapabilityRecord.Backend
    engine: string
    adapterName: string
    gflops: number
    inUse: boolean
  }

  export namespace BackendFigure {
    let _codec: Codec<BackendFigure>

    export const codec = (): Codec<BackendFigure> => {
      if (_codec == null) {
        _codec = message<BackendFigure>((obj, w, opts = {}) => {
          if (opts.lengthDelimited !== false) {
            w.fork()
          }

          if (obj.backend != null && __BackendValues[obj.backend] !== 0) {
            w.uint32(8)
            CapabilityRecord.Backend.codec().encode(obj.backend, w)
          }

          if ((obj.engine != null && obj.engine !== '')) {
            w.uint32(18)
            w.string(obj.engine)
          }

          if ((obj.adapterName != null && obj.adapterName !== '')) {
            w.uint32(26)
            w.string(obj.adapterName)
          }

          if ((obj.gflops != null && obj.gflops !== 0)) {
            w.uint32(33)
            w.double(obj.gflops)
          }

          if ((obj.inUse != null && obj.inUse !== false)) {
            w.uint32(40)
            w.bool(obj.inUse)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            backend: Backend.BACKEND_UNSPECIFIED,
            engine: '',
            adapterName: '',
            gflops: 0,
            inUse: false
          }

          const end = length == null ? reader.len : reader.pos + length

          while (reader.pos < end) {
            const tag = reader.uint32()

            switch (tag >>> 3) {
              case 1: {
                obj.backend = CapabilityRecord.Backend.codec().decode(reader)
                break
              }
              case 2: {
                obj.engine = reader.string()
                break
              }
              case 3: {
                obj.adapterName = reader.string()
                break
              }
              case 4: {
                obj.gflops = reader.double()
                break
              }
              case 5: {
                obj.inUse = reader.bool()
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
                  field: `${prefix}.backend`,
                  value: CapabilityRecord.Backend.codec().decode(reader)
                }
                break
              }
              case 2: {
                yield {
                  field: `${prefix}.engine`,
                  value: reader.string()
                }
                break
              }
              case 3: {
                yield {
                  field: `${prefix}.adapterName`,
                  value: reader.string()
                }
                break
              }
              case 4: {
                yield {
                  field: `${prefix}.gflops`,
                  value: reader.double()
                }
                break
              }
              case 5: {
                yield {
                  field: `${prefix}.inUse`,
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

    export interface BackendFigureBackendFieldEvent {
      field: '$.backend'
      value: CapabilityRecord.Backend
    }

    export interface BackendFigureEngineFieldEvent {
      field: '$.engine'
      value: string
    }

    export interface BackendFigureAdapterNameFieldEvent {
      field: '$.adapterName'
      value: string
    }

    export interface BackendFigureGflopsFieldEvent {
      field: '$.gflops'
      value: number
    }

    export interface BackendFigureInUseFieldEvent {
      field: '$.inUse'
      value: boolean
    }

    export function encode (obj: Partial<BackendFigure>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, BackendFigure.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BackendFigure>): BackendFigure {
      return decodeMessage(buf, BackendFigure.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BackendFigure>): Generator<BackendFigureBackendFieldEvent | BackendFigureEngineFieldEvent | BackendFigureAdapterNameFieldEvent | BackendFigureGflopsFieldEvent | BackendFigureInUseFieldEvent> {
      return streamMessage(buf, BackendFigure.codec(), opts)
    }
  }

  export interface ServedSpan {
    model: string
    start: number
    end: number
    blocks: number
    tokensPerSecond: number
  }

  export namespace ServedSpan {
    let _codec: Codec<ServedSpan>

    export const codec = (): Codec<ServedSpan> => {
      if (_codec == null) {
        _codec = message<ServedSpan>((obj, w, opts = {}) => {
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

          if ((obj.blocks != null && obj.blocks !== 0)) {
            w.uint32(32)
            w.uint32(obj.blocks)
          }

          if ((obj.tokensPerSecond != null && obj.tokensPerSecond !== 0)) {
            w.uint32(41)
            w.double(obj.tokensPerSecond)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            model: '',
            start: 0,
            end: 0,
            blocks: 0,
            tokensPerSecond: 0
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
                obj.blocks = reader.uint32()
                break
              }
              case 5: {
                obj.tokensPerSecond = reader.double()
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
                  field: `${prefix}.blocks`,
                  value: reader.uint32()
                }
                break
              }
              case 5: {
                yield {
                  field: `${prefix}.tokensPerSecond`,
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

    export interface ServedSpanModelFieldEvent {
      field: '$.model'
      value: string
    }

    export interface ServedSpanStartFieldEvent {
      field: '$.start'
      value: number
    }

    export interface ServedSpanEndFieldEvent {
      field: '$.end'
      value: number
    }

    export interface ServedSpanBlocksFieldEvent {
      field: '$.blocks'
      value: number
    }

    export interface ServedSpanTokensPerSecondFieldEvent {
      field: '$.tokensPerSecond'
      value: number
    }

    export function encode (obj: Partial<ServedSpan>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, ServedSpan.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ServedSpan>): ServedSpan {
      return decodeMessage(buf, ServedSpan.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ServedSpan>): Generator<ServedSpanModelFieldEvent | ServedSpanStartFieldEvent | ServedSpanEndFieldEvent | ServedSpanBlocksFieldEvent | ServedSpanTokensPerSecondFieldEvent> {
      return streamMessage(buf, ServedSpan.codec(), opts)
    }
  }

  let _codec: Codec<CapabilityRecord>

  export const codec = (): Codec<CapabilityRecord> => {
    if (_codec == null) {
      _codec = message<CapabilityRecord>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.peerId)
        }

        if (obj.backend != null && __BackendValues[obj.backend] !== 0) {
          w.uint32(16)
          CapabilityRecord.Backend.codec().encode(obj.backend, w)
        }

        if ((obj.adapterName != null && obj.adapterName !== '')) {
          w.uint32(26)
          w.string(obj.adapterName)
        }

        if ((obj.maxBufferBytes != null && obj.maxBufferBytes !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.maxBufferBytes)
        }

        if ((obj.gflops != null && obj.gflops !== 0)) {
          w.uint32(41)
          w.double(obj.gflops)
        }

        if (obj.protocols != null && obj.protocols.length > 0) {
          for (const value of obj.protocols) {
            w.uint32(50)
            w.string(value)
          }
        }

        if (obj.addresses != null && obj.addresses.length > 0) {
          for (const value of obj.addresses) {
            w.uint32(58)
            w.bytes(value)
          }
        }

        if ((obj.seq != null && obj.seq !== 0)) {
          w.uint32(64)
          w.uint64Number(obj.seq)
        }

        if ((obj.expiresMs != null && obj.expiresMs !== 0)) {
          w.uint32(72)
          w.uint64Number(obj.expiresMs)
        }

        if (obj.backends != null && obj.backends.length > 0) {
          for (const value of obj.backends) {
            w.uint32(82)
            CapabilityRecord.BackendFigure.codec().encode(value, w)
          }
        }

        if (obj.spans != null && obj.spans.length > 0) {
          for (const value of obj.spans) {
            w.uint32(90)
            CapabilityRecord.ServedSpan.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: uint8ArrayAlloc(0),
          backend: Backend.BACKEND_UNSPECIFIED,
          adapterName: '',
          maxBufferBytes: 0,
          gflops: 0,
          protocols: [],
          addresses: [],
          seq: 0,
          expiresMs: 0,
          backends: [],
          spans: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.bytes()
              break
            }
            case 2: {
              obj.backend = CapabilityRecord.Backend.codec().decode(reader)
              break
            }
            case 3: {
              obj.adapterName = reader.string()
              break
            }
            case 4: {
              obj.maxBufferBytes = reader.uint64Number()
              break
            }
            case 5: {
              obj.gflops = reader.double()
              break
            }
            case 6: {
              if (opts.limits?.protocols != null && obj.protocols.length === opts.limits.protocols) {
                throw new MaxLengthError('Decode error - repeated field "protocols" had too many elements')
              }

              obj.protocols.push(reader.string())
              break
            }
            case 7: {
              if (opts.limits?.addresses != null && obj.addresses.length === opts.limits.addresses) {
                throw new MaxLengthError('Decode error - repeated field "addresses" had too many elements')
              }

              obj.addresses.push(reader.bytes())
              break
            }
            case 8: {
              obj.seq = reader.uint64Number()
              break
            }
            case 9: {
              obj.expiresMs = reader.uint64Number()
              break
            }
            case 10: {
              if (opts.limits?.backends != null && obj.backends.length === opts.limits.backends) {
                throw new MaxLengthError('Decode error - repeated field "backends" had too many elements')
              }

              obj.backends.push(CapabilityRecord.BackendFigure.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.backends$
              }))
              break
            }
            case 11: {
              if (opts.limits?.spans != null && obj.spans.length === opts.limits.spans) {
                throw new MaxLengthError('Decode error - repeated field "spans" had too many elements')
              }

              obj.spans.push(CapabilityRecord.ServedSpan.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.spans$
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
          protocols: 0,
          addresses: 0,
          backends: 0,
          spans: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.backend`,
                value: CapabilityRecord.Backend.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.adapterName`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.maxBufferBytes`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.gflops`,
                value: reader.double()
              }
              break
            }
            case 6: {
              if (opts.limits?.protocols != null && obj.protocols === opts.limits.protocols) {
                throw new MaxLengthError('Streaming decode error - repeated field "protocols" had too many elements')
              }

              yield {
                field: `${prefix}.protocols[]`,
                index: obj.protocols,
                value: reader.string()
              }

              obj.protocols++

              break
            }
            case 7: {
              if (opts.limits?.addresses != null && obj.addresses === opts.limits.addresses) {
                throw new MaxLengthError('Streaming decode error - repeated field "addresses" had too many elements')
              }

              yield {
                field: `${prefix}.addresses[]`,
                index: obj.addresses,
                value: reader.bytes()
              }

              obj.addresses++

              break
            }
            case 8: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64Number()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.expiresMs`,
                value: reader.uint64Number()
              }
              break
            }
            case 10: {
              if (opts.limits?.backends != null && obj.backends === opts.limits.backends) {
                throw new MaxLengthError('Streaming decode error - repeated field "backends" had too many elements')
              }

              for (const evt of CapabilityRecord.BackendFigure.codec().stream(reader, reader.uint32(), `${prefix}.backends[]`, {
                limits: opts.limits?.backends$
              })) {
                yield {
                  ...evt,
                  index: obj.backends
                }
              }

              obj.backends++

              break
            }
            case 11: {
              if (opts.limits?.spans != null && obj.spans === opts.limits.spans) {
                throw new MaxLengthError('Streaming decode error - repeated field "spans" had too many elements')
              }

              for (const evt of CapabilityRecord.ServedSpan.codec().stream(reader, reader.uint32(), `${prefix}.spans[]`, {
                limits: opts.limits?.spans$
              })) {
                yield {
                  ...evt,
                  index: obj.spans
                }
              }

              obj.spans++

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

  export interface CapabilityRecordPeerIdFieldEvent {
    field: '$.peerId'
    value: Uint8Array<ArrayBuffer>
  }

  export interface CapabilityRecordBackendFieldEvent {
    field: '$.backend'
    value: CapabilityRecord.Backend
  }

  export interface CapabilityRecordAdapterNameFieldEvent {
    field: '$.adapterName'
    value: string
  }

  export interface CapabilityRecordMaxBufferBytesFieldEvent {
    field: '$.maxBufferBytes'
    value: number
  }

  export interface CapabilityRecordGflopsFieldEvent {
    field: '$.gflops'
    value: number
  }

  export interface CapabilityRecordProtocolsFieldEvent {
    field: '$.protocols[]'
    index: number
    value: string
  }

  export interface CapabilityRecordAddressesFieldEvent {
    field: '$.addresses[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface CapabilityRecordSeqFieldEvent {
    field: '$.seq'
    value: number
  }

  export interface CapabilityRecordExpiresMsFieldEvent {
    field: '$.expiresMs'
    value: number
  }

  export interface CapabilityRecordBackendsBackendFieldEvent {
    field: '$.backends[].backend'
    value: CapabilityRecord.Backend
    index: number
  }

  export interface CapabilityRecordBackendsEngineFieldEvent {
    field: '$.backends[].engine'
    value: string
    index: number
  }

  export interface CapabilityRecordBackendsAdapterNameFieldEvent {
    field: '$.backends[].adapterName'
    value: string
    index: number
  }

  export interface CapabilityRecordBackendsGflopsFieldEvent {
    field: '$.backends[].gflops'
    value: number
    index: number
  }

  export interface CapabilityRecordBackendsInUseFieldEvent {
    field: '$.backends[].inUse'
    value: boolean
    index: number
  }

  export interface CapabilityRecordSpansModelFieldEvent {
    field: '$.spans[].model'
    value: string
    index: number
  }

  export interface CapabilityRecordSpansStartFieldEvent {
    field: '$.spans[].start'
    value: number
    index: number
  }

  export interface CapabilityRecordSpansEndFieldEvent {
    field: '$.spans[].end'
    value: number
    index: number
  }

  export interface CapabilityRecordSpansBlocksFieldEvent {
    field: '$.spans[].blocks'
    value: number
    index: number
  }

  export interface CapabilityRecordSpansTokensPerSecondFieldEvent {
    field: '$.spans[].tokensPerSecond'
    value: number
    index: number
  }

  export function encode (obj: Partial<CapabilityRecord>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, CapabilityRecord.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<CapabilityRecord>): CapabilityRecord {
    return decodeMessage(buf, CapabilityRecord.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<CapabilityRecord>): Generator<CapabilityRecordPeerIdFieldEvent | CapabilityRecordBackendFieldEvent | CapabilityRecordAdapterNameFieldEvent | CapabilityRecordMaxBufferBytesFieldEvent | CapabilityRecordGflopsFieldEvent | CapabilityRecordProtocolsFieldEvent | CapabilityRecordAddressesFieldEvent | CapabilityRecordSeqFieldEvent | CapabilityRecordExpiresMsFieldEvent | CapabilityRecordBackendsBackendFieldEvent | CapabilityRecordBackendsEngineFieldEvent | CapabilityRecordBackendsAdapterNameFieldEvent | CapabilityRecordBackendsGflopsFieldEvent | CapabilityRecordBackendsInUseFieldEvent | CapabilityRecordSpansModelFieldEvent | CapabilityRecordSpansStartFieldEvent | CapabilityRecordSpansEndFieldEvent | CapabilityRecordSpansBlocksFieldEvent | CapabilityRecordSpansTokensPerSecondFieldEvent> {
    return streamMessage(buf, CapabilityRecord.codec(), opts)
  }
}

export interface SignedCapabilityRecord {
  record: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedCapabilityRecord {
  let _codec: Codec<SignedCapabilityRecord>

  export const codec = (): Codec<SignedCapabilityRecord> => {
    if (_codec == null) {
      _codec = message<SignedCapabilityRecord>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.record != null && obj.record.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.record)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          record: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.record = reader.bytes()
              break
            }
            case 2: {
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
                field: `${prefix}.record`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
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

  export interface SignedCapabilityRecordRecordFieldEvent {
    field: '$.record'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedCapabilityRecordSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedCapabilityRecord>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedCapabilityRecord.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedCapabilityRecord>): SignedCapabilityRecord {
    return decodeMessage(buf, SignedCapabilityRecord.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedCapabilityRecord>): Generator<SignedCapabilityRecordRecordFieldEvent | SignedCapabilityRecordSignatureFieldEvent> {
    return streamMessage(buf, SignedCapabilityRecord.codec(), opts)
  }
}
