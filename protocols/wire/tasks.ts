import { decodeMessage, encodeMessage, enumeration, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface TaskAnnouncement {
  taskCid: Uint8Array<ArrayBuffer>
  kind: TaskAnnouncement.Kind
  requirements?: TaskAnnouncement.Requirements
  groups: number
  groupSize: number
  submitter: Uint8Array<ArrayBuffer>
  createdMs: number
  expiresMs: number
  nonce: Uint8Array<ArrayBuffer>
}

export namespace TaskAnnouncement {
  export enum Kind {
    KIND_UNSPECIFIED = 'KIND_UNSPECIFIED',
    TRAIN = 'TRAIN',
    INFER = 'INFER'
  }

  enum __KindValues {
    KIND_UNSPECIFIED = 0,
    TRAIN = 1,
    INFER = 2
  }

  export namespace Kind {
    export const codec = (): Codec<Kind> => {
      return enumeration<Kind>(__KindValues)
    }
  }

  export enum Backend {
    ANY = 'ANY',
    WEBGPU = 'WEBGPU',
    CPU = 'CPU'
  }

  enum __BackendValues {
    ANY = 0,
    WEBGPU = 1,
    CPU = 2
  }

  export namespace Backend {
    export const codec = (): Codec<Backend> => {
      return enumeration<Backend>(__BackendValues)
    }
  }

  export interface Requirements {
    backend: TaskAnnouncement.Backend
    minMemoryBytes: number
    minGflops: number
  }

  export namespace Requirements {
    let _codec: Codec<Requirements>

    export const codec = (): Codec<Requirements> => {
      if (_codec == null) {
        _codec = message<Requirements>((obj, w, opts = {}) => {
          if (opts.lengthDelimited !== false) {
            w.fork()
          }

          if (obj.backend != null && __BackendValues[obj.backend] !== 0) {
            w.uint32(8)
            TaskAnnouncement.Backend.codec().encode(obj.backend, w)
          }

          if ((obj.minMemoryBytes != null && obj.minMemoryBytes !== 0)) {
            w.uint32(16)
            w.uint64Number(obj.minMemoryBytes)
          }

          if ((obj.minGflops != null && obj.minGflops !== 0)) {
            w.uint32(25)
            w.double(obj.minGflops)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            backend: Backend.ANY,
            minMemoryBytes: 0,
            minGflops: 0
          }

          const end = length == null ? reader.len : reader.pos + length

          while (reader.pos < end) {
            const tag = reader.uint32()

            switch (tag >>> 3) {
              case 1: {
                obj.backend = TaskAnnouncement.Backend.codec().decode(reader)
                break
              }
              case 2: {
                obj.minMemoryBytes = reader.uint64Number()
                break
              }
              case 3: {
                obj.minGflops = reader.double()
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
                  value: TaskAnnouncement.Backend.codec().decode(reader)
                }
                break
              }
              case 2: {
                yield {
                  field: `${prefix}.minMemoryBytes`,
                  value: reader.uint64Number()
                }
                break
              }
              case 3: {
                yield {
                  field: `${prefix}.minGflops`,
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

    export interface RequirementsBackendFieldEvent {
      field: '$.backend'
      value: TaskAnnouncement.Backend
    }

    export interface RequirementsMinMemoryBytesFieldEvent {
      field: '$.minMemoryBytes'
      value: number
    }

    export interface RequirementsMinGflopsFieldEvent {
      field: '$.minGflops'
      value: number
    }

    export function encode (obj: Partial<Requirements>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, Requirements.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Requirements>): Requirements {
      return decodeMessage(buf, Requirements.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Requirements>): Generator<RequirementsBackendFieldEvent | RequirementsMinMemoryBytesFieldEvent | RequirementsMinGflopsFieldEvent> {
      return streamMessage(buf, Requirements.codec(), opts)
    }
  }

  let _codec: Codec<TaskAnnouncement>

  export const codec = (): Codec<TaskAnnouncement> => {
    if (_codec == null) {
      _codec = message<TaskAnnouncement>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if (obj.kind != null && __KindValues[obj.kind] !== 0) {
          w.uint32(16)
          TaskAnnouncement.Kind.codec().encode(obj.kind, w)
        }

        if (obj.requirements != null) {
          w.uint32(26)
          TaskAnnouncement.Requirements.codec().encode(obj.requirements, w)
        }

        if ((obj.groups != null && obj.groups !== 0)) {
          w.uint32(32)
          w.uint32(obj.groups)
        }

        if ((obj.groupSize != null && obj.groupSize !== 0)) {
          w.uint32(40)
          w.uint32(obj.groupSize)
        }

        if ((obj.submitter != null && obj.submitter.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.submitter)
        }

        if ((obj.createdMs != null && obj.createdMs !== 0)) {
          w.uint32(56)
          w.uint64Number(obj.createdMs)
        }

        if ((obj.expiresMs != null && obj.expiresMs !== 0)) {
          w.uint32(64)
          w.uint64Number(obj.expiresMs)
        }

        if ((obj.nonce != null && obj.nonce.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.nonce)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          kind: Kind.KIND_UNSPECIFIED,
          groups: 0,
          groupSize: 0,
          submitter: uint8ArrayAlloc(0),
          createdMs: 0,
          expiresMs: 0,
          nonce: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.taskCid = reader.bytes()
              break
            }
            case 2: {
              obj.kind = TaskAnnouncement.Kind.codec().decode(reader)
              break
            }
            case 3: {
              obj.requirements = TaskAnnouncement.Requirements.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.requirements
              })
              break
            }
            case 4: {
              obj.groups = reader.uint32()
              break
            }
            case 5: {
              obj.groupSize = reader.uint32()
              break
            }
            case 6: {
              obj.submitter = reader.bytes()
              break
            }
            case 7: {
              obj.createdMs = reader.uint64Number()
              break
            }
            case 8: {
              obj.expiresMs = reader.uint64Number()
              break
            }
            case 9: {
              obj.nonce = reader.bytes()
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
                field: `${prefix}.taskCid`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.kind`,
                value: TaskAnnouncement.Kind.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield * TaskAnnouncement.Requirements.codec().stream(reader, reader.uint32(), `${prefix}.requirements`, {
                limits: opts.limits?.requirements
              })

              break
            }
            case 4: {
              yield {
                field: `${prefix}.groups`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.groupSize`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.submitter`,
                value: reader.bytes()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.createdMs`,
                value: reader.uint64Number()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.expiresMs`,
                value: reader.uint64Number()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.nonce`,
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

  export interface TaskAnnouncementTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskAnnouncementKindFieldEvent {
    field: '$.kind'
    value: TaskAnnouncement.Kind
  }

  export interface TaskAnnouncementRequirementsBackendFieldEvent {
    field: '$.requirements.backend'
    value: TaskAnnouncement.Backend
  }

  export interface TaskAnnouncementRequirementsMinMemoryBytesFieldEvent {
    field: '$.requirements.minMemoryBytes'
    value: number
  }

  export interface TaskAnnouncementRequirementsMinGflopsFieldEvent {
    field: '$.requirements.minGflops'
    value: number
  }

  export interface TaskAnnouncementGroupsFieldEvent {
    field: '$.groups'
    value: number
  }

  export interface TaskAnnouncementGroupSizeFieldEvent {
    field: '$.groupSize'
    value: number
  }

  export interface TaskAnnouncementSubmitterFieldEvent {
    field: '$.submitter'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskAnnouncementCreatedMsFieldEvent {
    field: '$.createdMs'
    value: number
  }

  export interface TaskAnnouncementExpiresMsFieldEvent {
    field: '$.expiresMs'
    value: number
  }

  export interface TaskAnnouncementNonceFieldEvent {
    field: '$.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<TaskAnnouncement>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TaskAnnouncement.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TaskAnnouncement>): TaskAnnouncement {
    return decodeMessage(buf, TaskAnnouncement.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TaskAnnouncement>): Generator<TaskAnnouncementTaskCidFieldEvent | TaskAnnouncementKindFieldEvent | TaskAnnouncementRequirementsBackendFieldEvent | TaskAnnouncementRequirementsMinMemoryBytesFieldEvent | TaskAnnouncementRequirementsMinGflopsFieldEvent | TaskAnnouncementGroupsFieldEvent | TaskAnnouncementGroupSizeFieldEvent | TaskAnnouncementSubmitterFieldEvent | TaskAnnouncementCreatedMsFieldEvent | TaskAnnouncementExpiresMsFieldEvent | TaskAnnouncementNonceFieldEvent> {
    return streamMessage(buf, TaskAnnouncement.codec(), opts)
  }
}
