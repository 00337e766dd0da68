import { decodeMessage, encodeMessage, enumeration, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface BlockRequest {
  cid: Uint8Array<ArrayBuffer>
  offset: number
}

export namespace BlockRequest {
  let _codec: Codec<BlockRequest>

  export const codec = (): Codec<BlockRequest> => {
    if (_codec == null) {
      _codec = message<BlockRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.cid != null && obj.cid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.cid)
        }

        if ((obj.offset != null && obj.offset !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.offset)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          cid: uint8ArrayAlloc(0),
          offset: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.cid = reader.bytes()
              break
            }
            case 2: {
              obj.offset = reader.uint64Number()
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
                field: `${prefix}.cid`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.offset`,
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

  export interface BlockRequestCidFieldEvent {
    field: '$.cid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface BlockRequestOffsetFieldEvent {
    field: '$.offset'
    value: number
  }

  export function encode (obj: Partial<BlockRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BlockRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockRequest>): BlockRequest {
    return decodeMessage(buf, BlockRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockRequest>): Generator<BlockRequestCidFieldEvent | BlockRequestOffsetFieldEvent> {
    return streamMessage(buf, BlockRequest.codec(), opts)
  }
}

export interface BlockResponse {
  status: BlockResponse.Status
  size: number
  chunkBytes: number
}

export namespace BlockResponse {
  export enum Status {
    STATUS_UNSPECIFIED = 'STATUS_UNSPECIFIED',
    OK = 'OK',
    NOT_FOUND = 'NOT_FOUND',
    TOO_LARGE = 'TOO_LARGE',
    BAD_REQUEST = 'BAD_REQUEST'
  }

  enum __StatusValues {
    STATUS_UNSPECIFIED = 0,
    OK = 1,
    NOT_FOUND = 2,
    TOO_LARGE = 3,
    BAD_REQUEST = 4
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<BlockResponse>

  export const codec = (): Codec<BlockResponse> => {
    if (_codec == null) {
      _codec = message<BlockResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(8)
          BlockResponse.Status.codec().encode(obj.status, w)
        }

        if ((obj.size != null && obj.size !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.size)
        }

        if ((obj.chunkBytes != null && obj.chunkBytes !== 0)) {
          w.uint32(24)
          w.uint32(obj.chunkBytes)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          status: Status.STATUS_UNSPECIFIED,
          size: 0,
          chunkBytes: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.status = BlockResponse.Status.codec().decode(reader)
              break
            }
            case 2: {
              obj.size = reader.uint64Number()
              break
            }
            case 3: {
              obj.chunkBytes = reader.uint32()
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
                field: `${prefix}.status`,
                value: BlockResponse.Status.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.chunkBytes`,
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

  export interface BlockResponseStatusFieldEvent {
    field: '$.status'
    value: BlockResponse.Status
  }

  export interface BlockResponseSizeFieldEvent {
    field: '$.size'
    value: number
  }

  export interface BlockResponseChunkBytesFieldEvent {
    field: '$.chunkBytes'
    value: number
  }

  export function encode (obj: Partial<BlockResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BlockResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockResponse>): BlockResponse {
    return decodeMessage(buf, BlockResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockResponse>): Generator<BlockResponseStatusFieldEvent | BlockResponseSizeFieldEvent | BlockResponseChunkBytesFieldEvent> {
    return streamMessage(buf, BlockResponse.codec(), opts)
  }
}

export interface BlockChunk {
  index: number
  offset: number
  length: number
}

export namespace BlockChunk {
  let _codec: Codec<BlockChunk>

  export const codec = (): Codec<BlockChunk> => {
    if (_codec == null) {
      _codec = message<BlockChunk>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.offset != null && obj.offset !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.offset)
        }

        if ((obj.length != null && obj.length !== 0)) {
          w.uint32(24)
          w.uint32(obj.length)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          offset: 0,
          length: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.offset = reader.uint64Number()
              break
            }
            case 3: {
              obj.length = reader.uint32()
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
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.offset`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.length`,
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

  export interface BlockChunkIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface BlockChunkOffsetFieldEvent {
    field: '$.offset'
    value: number
  }

  export interface BlockChunkLengthFieldEvent {
    field: '$.length'
    value: number
  }

  export function encode (obj: Partial<BlockChunk>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BlockChunk.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockChunk>): BlockChunk {
    return decodeMessage(buf, BlockChunk.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockChunk>): Generator<BlockChunkIndexFieldEvent | BlockChunkOffsetFieldEvent | BlockChunkLengthFieldEvent> {
    return streamMessage(buf, BlockChunk.codec(), opts)
  }
}
