import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface RaftEntry {
  term: number
  index: number
  conf: boolean
  data: Uint8Array<ArrayBuffer>
}

export namespace RaftEntry {
  let _codec: Codec<RaftEntry>

  export const codec = (): Codec<RaftEntry> => {
    if (_codec == null) {
      _codec = message<RaftEntry>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.term != null && obj.term !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.term)
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.index)
        }

        if ((obj.conf != null && obj.conf !== false)) {
          w.uint32(24)
          w.bool(obj.conf)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.data)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          term: 0,
          index: 0,
          conf: false,
          data: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.term = reader.uint64Number()
              break
            }
            case 2: {
              obj.index = reader.uint64Number()
              break
            }
            case 3: {
              obj.conf = reader.bool()
              break
            }
            case 4: {
              obj.data = reader.bytes()
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
                field: `${prefix}.term`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.conf`,
                value: reader.bool()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.data`,
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

  export interface RaftEntryTermFieldEvent {
    field: '$.term'
    value: number
  }

  export interface RaftEntryIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface RaftEntryConfFieldEvent {
    field: '$.conf'
    value: boolean
  }

  export interface RaftEntryDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<RaftEntry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RaftEntry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftEntry>): RaftEntry {
    return decodeMessage(buf, RaftEntry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftEntry>): Generator<RaftEntryTermFieldEvent | RaftEntryIndexFieldEvent | RaftEntryConfFieldEvent | RaftEntryDataFieldEvent> {
    return streamMessage(buf, RaftEntry.codec(), opts)
  }
}

export interface RaftSnapshotChunk {
  index: number
  term: number
  voters: string[]
  offset: number
  totalBytes: number
  data: Uint8Array<ArrayBuffer>
}

export namespace RaftSnapshotChunk {
  let _codec: Codec<RaftSnapshotChunk>

  export const codec = (): Codec<RaftSnapshotChunk> => {
    if (_codec == null) {
      _codec = message<RaftSnapshotChunk>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.index)
        }

        if ((obj.term != null && obj.term !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.term)
        }

        if (obj.voters != null && obj.voters.length > 0) {
          for (const value of obj.voters) {
            w.uint32(26)
            w.string(value)
          }
        }

        if ((obj.offset != null && obj.offset !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.offset)
        }

        if ((obj.totalBytes != null && obj.totalBytes !== 0)) {
          w.uint32(40)
          w.uint64Number(obj.totalBytes)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.data)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          term: 0,
          voters: [],
          offset: 0,
          totalBytes: 0,
          data: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint64Number()
              break
            }
            case 2: {
              obj.term = reader.uint64Number()
              break
            }
            case 3: {
              if (opts.limits?.voters != null && obj.voters.length === opts.limits.voters) {
                throw new MaxLengthError('Decode error - repeated field "voters" had too many elements')
              }

              obj.voters.push(reader.string())
              break
            }
            case 4: {
              obj.offset = reader.uint64Number()
              break
            }
            case 5: {
              obj.totalBytes = reader.uint64Number()
              break
            }
            case 6: {
              obj.data = reader.bytes()
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
          voters: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.term`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              if (opts.limits?.voters != null && obj.voters === opts.limits.voters) {
                throw new MaxLengthError('Streaming decode error - repeated field "voters" had too many elements')
              }

              yield {
                field: `${prefix}.voters[]`,
                index: obj.voters,
                value: reader.string()
              }

              obj.voters++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.offset`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.totalBytes`,
                value: reader.uint64Number()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.data`,
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

  export interface RaftSnapshotChunkIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface RaftSnapshotChunkTermFieldEvent {
    field: '$.term'
    value: number
  }

  export interface RaftSnapshotChunkVotersFieldEvent {
    field: '$.voters[]'
    index: number
    value: string
  }

  export interface RaftSnapshotChunkOffsetFieldEvent {
    field: '$.offset'
    value: number
  }

  export interface RaftSnapshotChunkTotalBytesFieldEvent {
    field: '$.totalBytes'
    value: number
  }

  export interface RaftSnapshotChunkDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<RaftSnapshotChunk>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RaftSnapshotChunk.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftSnapshotChunk>): RaftSnapshotChunk {
    return decodeMessage(buf, RaftSnapshotChunk.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftSnapshotChunk>): Generator<RaftSnapshotChunkIndexFieldEvent | RaftSnapshotChunkTermFieldEvent | RaftSnapshotChunkVotersFieldEvent | RaftSnapshotChunkOffsetFieldEvent | RaftSnapshotChunkTotalBytesFieldEvent | RaftSnapshotChunkDataFieldEvent> {
    return streamMessage(buf, RaftSnapshotChunk.codec(), opts)
  }
}

export interface RaftMessage {
  type: RaftMessage.Type
  from: string
  to: string
  term: number
  logTerm: number
  index: number
  entries: RaftEntry[]
  commit: number
  reject: boolean
  rejectHint: number
  transfer: boolean
  snapshot?: RaftSnapshotChunk
}

export namespace RaftMessage {
  export enum Type {
    UNKNOWN = 'UNKNOWN',
    APP = 'APP',
    APP_RESP = 'APP_RESP',
    VOTE = 'VOTE',
    VOTE_RESP = 'VOTE_RESP',
    PRE_VOTE = 'PRE_VOTE',
    PRE_VOTE_RESP = 'PRE_VOTE_RESP',
    SNAP = 'SNAP',
    SNAP_RESP = 'SNAP_RESP',
    HEARTBEAT = 'HEARTBEAT',
    HEARTBEAT_RESP = 'HEARTBEAT_RESP',
    TIMEOUT_NOW = 'TIMEOUT_NOW'
  }

  enum __TypeValues {
    UNKNOWN = 0,
    APP = 1,
    APP_RESP = 2,
    VOTE = 3,
    VOTE_RESP = 4,
    PRE_VOTE = 5,
    PRE_VOTE_RESP = 6,
    SNAP = 7,
    SNAP_RESP = 8,
    HEARTBEAT = 9,
    HEARTBEAT_RESP = 10,
    TIMEOUT_NOW = 11
  }

  export namespace Type {
    export const codec = (): Codec<Type> => {
      return enumeration<Type>(__TypeValues)
    }
  }

  let _codec: Codec<RaftMessage>

  export const codec = (): Codec<RaftMessage> => {
    if (_codec == null) {
      _codec = message<RaftMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.type != null && __TypeValues[obj.type] !== 0) {
          w.uint32(8)
          RaftMessage.Type.codec().encode(obj.type, w)
        }

        if ((obj.from != null && obj.from !== '')) {
          w.uint32(18)
          w.string(obj.from)
        }

        if ((obj.to != null && obj.to !== '')) {
          w.uint32(26)
          w.string(obj.to)
        }

        if ((obj.term != null && obj.term !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.term)
        }

        if ((obj.logTerm != null && obj.logTerm !== 0)) {
          w.uint32(40)
          w.uint64Number(obj.logTerm)
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(48)
          w.uint64Number(obj.index)
        }

        if (obj.entries != null && obj.entries.length > 0) {
          for (const value of obj.entries) {
            w.uint32(58)
            RaftEntry.codec().encode(value, w)
          }
        }

        if ((obj.commit != null && obj.commit !== 0)) {
          w.uint32(64)
          w.uint64Number(obj.commit)
        }

        if ((obj.reject != null && obj.reject !== false)) {
          w.uint32(72)
          w.bool(obj.reject)
        }

        if ((obj.rejectHint != null && obj.rejectHint !== 0)) {
          w.uint32(80)
          w.uint64Number(obj.rejectHint)
        }

        if ((obj.transfer != null && obj.transfer !== false)) {
          w.uint32(88)
          w.bool(obj.transfer)
        }

        if (obj.snapshot != null) {
          w.uint32(98)
          RaftSnapshotChunk.codec().encode(obj.snapshot, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          type: Type.UNKNOWN,
          from: '',
          to: '',
          term: 0,
          logTerm: 0,
          index: 0,
          entries: [],
          commit: 0,
          reject: false,
          rejectHint: 0,
          transfer: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.type = RaftMessage.Type.codec().decode(reader)
              break
            }
            case 2: {
              obj.from = reader.string()
              break
            }
            case 3: {
              obj.to = reader.string()
              break
            }
            case 4: {
              obj.term = reader.uint64Number()
              break
            }
            case 5: {
              obj.logTerm = reader.uint64Number()
              break
            }
            case 6: {
              obj.index = reader.uint64Number()
              break
            }
            case 7: {
              if (opts.limits?.entries != null && obj.entries.length === opts.limits.entries) {
                throw new MaxLengthError('Decode error - repeated field "entries" had too many elements')
              }

              obj.entries.push(RaftEntry.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.entries$
              }))
              break
            }
            case 8: {
              obj.commit = reader.uint64Number()
              break
            }
            case 9: {
              obj.reject = reader.bool()
              break
            }
            case 10: {
              obj.rejectHint = reader.uint64Number()
              break
            }
            case 11: {
              obj.transfer = reader.bool()
              break
            }
            case 12: {
              obj.snapshot = RaftSnapshotChunk.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.snapshot
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
        const obj = {
          entries: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.type`,
                value: RaftMessage.Type.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.from`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.to`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.term`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.logTerm`,
                value: reader.uint64Number()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint64Number()
              }
              break
            }
            case 7: {
              if (opts.limits?.entries != null && obj.entries === opts.limits.entries) {
                throw new MaxLengthError('Streaming decode error - repeated field "entries" had too many elements')
              }

              for (const evt of RaftEntry.codec().stream(reader, reader.uint32(), `${prefix}.entries[]`, {
                limits: opts.limits?.entries$
              })) {
                yield {
                  ...evt,
                  index: obj.entries
                }
              }

              obj.entries++

              break
            }
            case 8: {
              yield {
                field: `${prefix}.commit`,
                value: reader.uint64Number()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.reject`,
                value: reader.bool()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.rejectHint`,
                value: reader.uint64Number()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.transfer`,
                value: reader.bool()
              }
              break
            }
            case 12: {
              yield * RaftSnapshotChunk.codec().stream(reader, reader.uint32(), `${prefix}.snapshot`, {
                limits: opts.limits?.snapshot
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

  export interface RaftMessageTypeFieldEvent {
    field: '$.type'
    value: RaftMessage.Type
  }

  export interface RaftMessageFromFieldEvent {
    field: '$.from'
    value: string
  }

  export interface RaftMessageToFieldEvent {
    field: '$.to'
    value: string
  }

  export interface RaftMessageTermFieldEvent {
    field: '$.term'
    value: number
  }

  export interface RaftMessageLogTermFieldEvent {
    field: '$.logTerm'
    value: number
  }

  export interface RaftMessageIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface RaftMessageEntriesTermFieldEvent {
    field: '$.entries[].term'
    value: number
    index: number
  }

  export interface RaftMessageEntriesIndexFieldEvent {
    field: '$.entries[].index'
    value: number
    index: number
  }

  export interface RaftMessageEntriesConfFieldEvent {
    field: '$.entries[].conf'
    value: boolean
    index: number
  }

  export interface RaftMessageEntriesDataFieldEvent {
    field: '$.entries[].data'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface RaftMessageCommitFieldEvent {
    field: '$.commit'
    value: number
  }

  export interface RaftMessageRejectFieldEvent {
    field: '$.reject'
    value: boolean
  }

  export interface RaftMessageRejectHintFieldEvent {
    field: '$.rejectHint'
    value: number
  }

  export interface RaftMessageTransferFieldEvent {
    field: '$.transfer'
    value: boolean
  }

  export interface RaftMessageSnapshotIndexFieldEvent {
    field: '$.snapshot.index'
    value: number
  }

  export interface RaftMessageSnapshotTermFieldEvent {
    field: '$.snapshot.term'
    value: number
  }

  export interface RaftMessageSnapshotVotersFieldEvent {
    field: '$.snapshot.voters[]'
    index: number
    value: string
  }

  export interface RaftMessageSnapshotOffsetFieldEvent {
    field: '$.snapshot.offset'
    value: number
  }

  export interface RaftMessageSnapshotTotalBytesFieldEvent {
    field: '$.snapshot.totalBytes'
    value: number
  }

  export interface RaftMessageSnapshotDataFieldEvent {
    field: '$.snapshot.data'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<RaftMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RaftMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftMessage>): RaftMessage {
    return decodeMessage(buf, RaftMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftMessage>): Generator<RaftMessageTypeFieldEvent | RaftMessageFromFieldEvent | RaftMessageToFieldEvent | RaftMessageTermFieldEvent | RaftMessageLogTermFieldEvent | RaftMessageIndexFieldEvent | RaftMessageEntriesTermFieldEvent | RaftMessageEntriesIndexFieldEvent | RaftMessageEntriesConfFieldEvent | RaftMessageEntriesDataFieldEvent | RaftMessageCommitFieldEvent | RaftMessageRejectFieldEvent | RaftMessageRejectHintFieldEvent | RaftMessageTransferFieldEvent | RaftMessageSnapshotIndexFieldEvent | RaftMessageSnapshotTermFieldEvent | RaftMessageSnapshotVotersFieldEvent | RaftMessageSnapshotOffsetFieldEvent | RaftMessageSnapshotTotalBytesFieldEvent | RaftMessageSnapshotDataFieldEvent> {
    return streamMessage(buf, RaftMessage.codec(), opts)
  }
}

export interface RaftFrame {
  group: string
  messages: RaftMessage[]
}

export namespace RaftFrame {
  let _codec: Codec<RaftFrame>

  export const codec = (): Codec<RaftFrame> => {
    if (_codec == null) {
      _codec = message<RaftFrame>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.group != null && obj.group !== '')) {
          w.uint32(10)
          w.string(obj.group)
        }

        if (obj.messages != null && obj.messages.length > 0) {
          for (const value of obj.messages) {
            w.uint32(18)
            RaftMessage.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          group: '',
          messages: []
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
              if (opts.limits?.messages != null && obj.messages.length === opts.limits.messages) {
                throw new MaxLengthError('Decode error - repeated field "messages" had too many elements')
              }

              obj.messages.push(RaftMessage.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.messages$
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
          messages: 0
        }

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
              if (opts.limits?.messages != null && obj.messages === opts.limits.messages) {
                throw new MaxLengthError('Streaming decode error - repeated field "messages" had too many elements')
              }

              for (const evt of RaftMessage.codec().stream(reader, reader.uint32(), `${prefix}.messages[]`, {
                limits: opts.limits?.messages$
              })) {
                yield {
                  ...evt,
                  index: obj.messages
                }
              }

              obj.messages++

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

  export interface RaftFrameGroupFieldEvent {
    field: '$.group'
    value: string
  }

  export interface RaftFrameMessagesTypeFieldEvent {
    field: '$.messages[].type'
    value: RaftMessage.Type
    index: number
  }

  export interface RaftFrameMessagesFromFieldEvent {
    field: '$.messages[].from'
    value: string
    index: number
  }

  export interface RaftFrameMessagesToFieldEvent {
    field: '$.messages[].to'
    value: string
    index: number
  }

  export interface RaftFrameMessagesTermFieldEvent {
    field: '$.messages[].term'
    value: number
    index: number
  }

  export interface RaftFrameMessagesLogTermFieldEvent {
    field: '$.messages[].logTerm'
    value: number
    index: number
  }

  export interface RaftFrameMessagesIndexFieldEvent {
    field: '$.messages[].index'
    value: number
    index: number
  }

  export interface RaftFrameMessagesEntriesTermFieldEvent {
    field: '$.messages[].entries[].term'
    value: number
    index: number
  }

  export interface RaftFrameMessagesEntriesIndexFieldEvent {
    field: '$.messages[].entries[].index'
    value: number
    index: number
  }

  export interface RaftFrameMessagesEntriesConfFieldEvent {
    field: '$.messages[].entries[].conf'
    value: boolean
    index: number
  }

  export interface RaftFrameMessagesEntriesDataFieldEvent {
    field: '$.messages[].entries[].data'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface RaftFrameMessagesCommitFieldEvent {
    field: '$.messages[].commit'
    value: number
    index: number
  }

  export interface RaftFrameMessagesRejectFieldEvent {
    field: '$.messages[].reject'
    value: boolean
    index: number
  }

  export interface RaftFrameMessagesRejectHintFieldEvent {
    field: '$.messages[].rejectHint'
    value: number
    index: number
  }

  export interface RaftFrameMessagesTransferFieldEvent {
    field: '$.messages[].transfer'
    value: boolean
    index: number
  }

  export interface RaftFrameMessagesSnapshotIndexFieldEvent {
    field: '$.messages[].snapshot.index'
    value: number
    index: number
  }

  export interface RaftFrameMessagesSnapshotTermFieldEvent {
    field: '$.messages[].snapshot.term'
    value: number
    index: number
  }

  export interface RaftFrameMessagesSnapshotVotersFieldEvent {
    field: '$.messages[].snapshot.voters[]'
    index: number
    value: string
  }

  export interface RaftFrameMessagesSnapshotOffsetFieldEvent {
    field: '$.messages[].snapshot.offset'
    value: number
    index: number
  }

  export interface RaftFrameMessagesSnapshotTotalBytesFieldEvent {
    field: '$.messages[].snapshot.totalBytes'
    value: number
    index: number
  }

  export interface RaftFrameMessagesSnapshotDataFieldEvent {
    field: '$.messages[].snapshot.data'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export function encode (obj: Partial<RaftFrame>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RaftFrame.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftFrame>): RaftFrame {
    return decodeMessage(buf, RaftFrame.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RaftFrame>): Generator<RaftFrameGroupFieldEvent | RaftFrameMessagesTypeFieldEvent | RaftFrameMessagesFromFieldEvent | RaftFrameMessagesToFieldEvent | RaftFrameMessagesTermFieldEvent | RaftFrameMessagesLogTermFieldEvent | RaftFrameMessagesIndexFieldEvent | RaftFrameMessagesEntriesTermFieldEvent | RaftFrameMessagesEntriesIndexFieldEvent | RaftFrameMessagesEntriesConfFieldEvent | RaftFrameMessagesEntriesDataFieldEvent | RaftFrameMessagesCommitFieldEvent | RaftFrameMessagesRejectFieldEvent | RaftFrameMessagesRejectHintFieldEvent | RaftFrameMessagesTransferFieldEvent | RaftFrameMessagesSnapshotIndexFieldEvent | RaftFrameMessagesSnapshotTermFieldEvent | RaftFrameMessagesSnapshotVotersFieldEvent | RaftFrameMessagesSnapshotOffsetFieldEvent | RaftFrameMessagesSnapshotTotalBytesFieldEvent | RaftFrameMessagesSnapshotDataFieldEvent> {
    return streamMessage(buf, RaftFrame.codec(), opts)
  }
}
