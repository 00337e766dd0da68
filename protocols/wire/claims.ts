import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Capability {
  backend: string
  gflops: number
  maxBufferBytes: number
  memoryBytes: number
}

export namespace Capability {
  let _codec: Codec<Capability>

  export const codec = (): Codec<Capability> => {
    if (_codec == null) {
      _codec = message<Capability>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.backend != null && obj.backend !== '')) {
          w.uint32(10)
          w.string(obj.backend)
        }

        if ((obj.gflops != null && obj.gflops !== 0)) {
          w.uint32(17)
          w.double(obj.gflops)
        }

        if ((obj.maxBufferBytes != null && obj.maxBufferBytes !== 0)) {
          w.uint32(24)
          w.uint64Number(obj.maxBufferBytes)
        }

        if ((obj.memoryBytes != null && obj.memoryBytes !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.memoryBytes)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          backend: '',
          gflops: 0,
          maxBufferBytes: 0,
          memoryBytes: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.backend = reader.string()
              break
            }
            case 2: {
              obj.gflops = reader.double()
              break
            }
            case 3: {
              obj.maxBufferBytes = reader.uint64Number()
              break
            }
            case 4: {
              obj.memoryBytes = reader.uint64Number()
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
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.gflops`,
                value: reader.double()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.maxBufferBytes`,
                value: reader.uint64Number()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.memoryBytes`,
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

  export interface CapabilityBackendFieldEvent {
    field: '$.backend'
    value: string
  }

  export interface CapabilityGflopsFieldEvent {
    field: '$.gflops'
    value: number
  }

  export interface CapabilityMaxBufferBytesFieldEvent {
    field: '$.maxBufferBytes'
    value: number
  }

  export interface CapabilityMemoryBytesFieldEvent {
    field: '$.memoryBytes'
    value: number
  }

  export function encode (obj: Partial<Capability>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Capability.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Capability>): Capability {
    return decodeMessage(buf, Capability.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Capability>): Generator<CapabilityBackendFieldEvent | CapabilityGflopsFieldEvent | CapabilityMaxBufferBytesFieldEvent | CapabilityMemoryBytesFieldEvent> {
    return streamMessage(buf, Capability.codec(), opts)
  }
}

export interface Claim {
  taskCid: Uint8Array<ArrayBuffer>
  capability?: Capability
  eligible: boolean
  reason: string
}

export namespace Claim {
  let _codec: Codec<Claim>

  export const codec = (): Codec<Claim> => {
    if (_codec == null) {
      _codec = message<Claim>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if (obj.capability != null) {
          w.uint32(18)
          Capability.codec().encode(obj.capability, w)
        }

        if ((obj.eligible != null && obj.eligible !== false)) {
          w.uint32(24)
          w.bool(obj.eligible)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(34)
          w.string(obj.reason)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          eligible: false,
          reason: ''
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
              obj.capability = Capability.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.capability
              })
              break
            }
            case 3: {
              obj.eligible = reader.bool()
              break
            }
            case 4: {
              obj.reason = reader.string()
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
              yield * Capability.codec().stream(reader, reader.uint32(), `${prefix}.capability`, {
                limits: opts.limits?.capability
              })

              break
            }
            case 3: {
              yield {
                field: `${prefix}.eligible`,
                value: reader.bool()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.reason`,
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

  export interface ClaimTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimCapabilityBackendFieldEvent {
    field: '$.capability.backend'
    value: string
  }

  export interface ClaimCapabilityGflopsFieldEvent {
    field: '$.capability.gflops'
    value: number
  }

  export interface ClaimCapabilityMaxBufferBytesFieldEvent {
    field: '$.capability.maxBufferBytes'
    value: number
  }

  export interface ClaimCapabilityMemoryBytesFieldEvent {
    field: '$.capability.memoryBytes'
    value: number
  }

  export interface ClaimEligibleFieldEvent {
    field: '$.eligible'
    value: boolean
  }

  export interface ClaimReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export function encode (obj: Partial<Claim>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Claim.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Claim>): Claim {
    return decodeMessage(buf, Claim.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Claim>): Generator<ClaimTaskCidFieldEvent | ClaimCapabilityBackendFieldEvent | ClaimCapabilityGflopsFieldEvent | ClaimCapabilityMaxBufferBytesFieldEvent | ClaimCapabilityMemoryBytesFieldEvent | ClaimEligibleFieldEvent | ClaimReasonFieldEvent> {
    return streamMessage(buf, Claim.codec(), opts)
  }
}

export interface Assignment {
  taskCid: Uint8Array<ArrayBuffer>
  group: number
  members: Uint8Array<ArrayBuffer>[]
  shardCid: Uint8Array<ArrayBuffer>
  incarnation: number
  stateCid: Uint8Array<ArrayBuffer>
}

export namespace Assignment {
  let _codec: Codec<Assignment>

  export const codec = (): Codec<Assignment> => {
    if (_codec == null) {
      _codec = message<Assignment>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if ((obj.group != null && obj.group !== 0)) {
          w.uint32(16)
          w.uint32(obj.group)
        }

        if (obj.members != null && obj.members.length > 0) {
          for (const value of obj.members) {
            w.uint32(26)
            w.bytes(value)
          }
        }

        if ((obj.shardCid != null && obj.shardCid.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.shardCid)
        }

        if ((obj.incarnation != null && obj.incarnation !== 0)) {
          w.uint32(40)
          w.uint32(obj.incarnation)
        }

        if ((obj.stateCid != null && obj.stateCid.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.stateCid)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          group: 0,
          members: [],
          shardCid: uint8ArrayAlloc(0),
          incarnation: 0,
          stateCid: uint8ArrayAlloc(0)
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
              obj.group = reader.uint32()
              break
            }
            case 3: {
              if (opts.limits?.members != null && obj.members.length === opts.limits.members) {
                throw new MaxLengthError('Decode error - repeated field "members" had too many elements')
              }

              obj.members.push(reader.bytes())
              break
            }
            case 4: {
              obj.shardCid = reader.bytes()
              break
            }
            case 5: {
              obj.incarnation = reader.uint32()
              break
            }
            case 6: {
              obj.stateCid = reader.bytes()
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
          members: 0
        }

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
                field: `${prefix}.group`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              if (opts.limits?.members != null && obj.members === opts.limits.members) {
                throw new MaxLengthError('Streaming decode error - repeated field "members" had too many elements')
              }

              yield {
                field: `${prefix}.members[]`,
                index: obj.members,
                value: reader.bytes()
              }

              obj.members++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.shardCid`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.incarnation`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.stateCid`,
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

  export interface AssignmentTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AssignmentGroupFieldEvent {
    field: '$.group'
    value: number
  }

  export interface AssignmentMembersFieldEvent {
    field: '$.members[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface AssignmentShardCidFieldEvent {
    field: '$.shardCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AssignmentIncarnationFieldEvent {
    field: '$.incarnation'
    value: number
  }

  export interface AssignmentStateCidFieldEvent {
    field: '$.stateCid'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Assignment>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Assignment.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Assignment>): Assignment {
    return decodeMessage(buf, Assignment.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Assignment>): Generator<AssignmentTaskCidFieldEvent | AssignmentGroupFieldEvent | AssignmentMembersFieldEvent | AssignmentShardCidFieldEvent | AssignmentIncarnationFieldEvent | AssignmentStateCidFieldEvent> {
    return streamMessage(buf, Assignment.codec(), opts)
  }
}

export interface GroupProgress {
  taskCid: Uint8Array<ArrayBuffer>
  group: number
  step: number
  loss: number
  samplesPerSecond: number
  leader: Uint8Array<ArrayBuffer>
  members: Uint8Array<ArrayBuffer>[]
  outerRound: number
  paramsCid: Uint8Array<ArrayBuffer>
  done: boolean
  error: string
  appliedRound: number
  incarnation: number
  stateCid: Uint8Array<ArrayBuffer>
  reports: MemberCounts[]
}

export namespace GroupProgress {
  let _codec: Codec<GroupProgress>

  export const codec = (): Codec<GroupProgress> => {
    if (_codec == null) {
      _codec = message<GroupProgress>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if ((obj.group != null && obj.group !== 0)) {
          w.uint32(16)
          w.uint32(obj.group)
        }

        if ((obj.step != null && obj.step !== 0)) {
          w.uint32(24)
          w.uint32(obj.step)
        }

        if ((obj.loss != null && obj.loss !== 0)) {
          w.uint32(33)
          w.double(obj.loss)
        }

        if ((obj.samplesPerSecond != null && obj.samplesPerSecond !== 0)) {
          w.uint32(41)
          w.double(obj.samplesPerSecond)
        }

        if ((obj.leader != null && obj.leader.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.leader)
        }

        if (obj.members != null && obj.members.length > 0) {
          for (const value of obj.members) {
            w.uint32(58)
            w.bytes(value)
          }
        }

        if ((obj.outerRound != null && obj.outerRound !== 0)) {
          w.uint32(64)
          w.uint32(obj.outerRound)
        }

        if ((obj.paramsCid != null && obj.paramsCid.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.paramsCid)
        }

        if ((obj.done != null && obj.done !== false)) {
          w.uint32(80)
          w.bool(obj.done)
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(90)
          w.string(obj.error)
        }

        if ((obj.appliedRound != null && obj.appliedRound !== 0)) {
          w.uint32(96)
          w.uint32(obj.appliedRound)
        }

        if ((obj.incarnation != null && obj.incarnation !== 0)) {
          w.uint32(104)
          w.uint32(obj.incarnation)
        }

        if ((obj.stateCid != null && obj.stateCid.byteLength > 0)) {
          w.uint32(114)
          w.bytes(obj.stateCid)
        }

        if (obj.reports != null && obj.reports.length > 0) {
          for (const value of obj.reports) {
            w.uint32(122)
            MemberCounts.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          group: 0,
          step: 0,
          loss: 0,
          samplesPerSecond: 0,
          leader: uint8ArrayAlloc(0),
          members: [],
          outerRound: 0,
          paramsCid: uint8ArrayAlloc(0),
          done: false,
          error: '',
          appliedRound: 0,
          incarnation: 0,
          stateCid: uint8ArrayAlloc(0),
          reports: []
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
              obj.group = reader.uint32()
              break
            }
            case 3: {
              obj.step = reader.uint32()
              break
            }
            case 4: {
              obj.loss = reader.double()
              break
            }
            case 5: {
              obj.samplesPerSecond = reader.double()
              break
            }
            case 6: {
              obj.leader = reader.bytes()
              break
            }
            case 7: {
              if (opts.limits?.members != null && obj.members.length === opts.limits.members) {
                throw new MaxLengthError('Decode error - repeated field "members" had too many elements')
              }

              obj.members.push(reader.bytes())
              break
            }
            case 8: {
              obj.outerRound = reader.uint32()
              break
            }
            case 9: {
              obj.paramsCid = reader.bytes()
              break
            }
            case 10: {
              obj.done = reader.bool()
              break
            }
            case 11: {
              obj.error = reader.string()
              break
            }
            case 12: {
              obj.appliedRound = reader.uint32()
              break
            }
            case 13: {
              obj.incarnation = reader.uint32()
              break
            }
            case 14: {
              obj.stateCid = reader.bytes()
              break
            }
            case 15: {
              if (opts.limits?.reports != null && obj.reports.length === opts.limits.reports) {
                throw new MaxLengthError('Decode error - repeated field "reports" had too many elements')
              }

              obj.reports.push(MemberCounts.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.reports$
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
          members: 0,
          reports: 0
        }

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
                field: `${prefix}.group`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.step`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.loss`,
                value: reader.double()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.samplesPerSecond`,
                value: reader.double()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.leader`,
                value: reader.bytes()
              }
              break
            }
            case 7: {
              if (opts.limits?.members != null && obj.members === opts.limits.members) {
                throw new MaxLengthError('Streaming decode error - repeated field "members" had too many elements')
              }

              yield {
                field: `${prefix}.members[]`,
                index: obj.members,
                value: reader.bytes()
              }

              obj.members++

              break
            }
            case 8: {
              yield {
                field: `${prefix}.outerRound`,
                value: reader.uint32()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.paramsCid`,
                value: reader.bytes()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.done`,
                value: reader.bool()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
              }
              break
            }
            case 12: {
              yield {
                field: `${prefix}.appliedRound`,
                value: reader.uint32()
              }
              break
            }
            case 13: {
              yield {
                field: `${prefix}.incarnation`,
                value: reader.uint32()
              }
              break
            }
            case 14: {
              yield {
                field: `${prefix}.stateCid`,
                value: reader.bytes()
              }
              break
            }
            case 15: {
              if (opts.limits?.reports != null && obj.reports === opts.limits.reports) {
                throw new MaxLengthError('Streaming decode error - repeated field "reports" had too many elements')
              }

              for (const evt of MemberCounts.codec().stream(reader, reader.uint32(), `${prefix}.reports[]`, {
                limits: opts.limits?.reports$
              })) {
                yield {
                  ...evt,
                  index: obj.reports
                }
              }

              obj.reports++

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

  export interface GroupProgressTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupProgressGroupFieldEvent {
    field: '$.group'
    value: number
  }

  export interface GroupProgressStepFieldEvent {
    field: '$.step'
    value: number
  }

  export interface GroupProgressLossFieldEvent {
    field: '$.loss'
    value: number
  }

  export interface GroupProgressSamplesPerSecondFieldEvent {
    field: '$.samplesPerSecond'
    value: number
  }

  export interface GroupProgressLeaderFieldEvent {
    field: '$.leader'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupProgressMembersFieldEvent {
    field: '$.members[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupProgressOuterRoundFieldEvent {
    field: '$.outerRound'
    value: number
  }

  export interface GroupProgressParamsCidFieldEvent {
    field: '$.paramsCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupProgressDoneFieldEvent {
    field: '$.done'
    value: boolean
  }

  export interface GroupProgressErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface GroupProgressAppliedRoundFieldEvent {
    field: '$.appliedRound'
    value: number
  }

  export interface GroupProgressIncarnationFieldEvent {
    field: '$.incarnation'
    value: number
  }

  export interface GroupProgressStateCidFieldEvent {
    field: '$.stateCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupProgressReportsMemberFieldEvent {
    field: '$.reports[].member'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GroupProgressReportsAcceptedFieldEvent {
    field: '$.reports[].accepted'
    value: number
    index: number
  }

  export interface GroupProgressReportsRejectedFieldEvent {
    field: '$.reports[].rejected'
    value: number
    index: number
  }

  export interface GroupProgressReportsSuspectFieldEvent {
    field: '$.reports[].suspect'
    value: number
    index: number
  }

  export interface GroupProgressReportsDistrustedFieldEvent {
    field: '$.reports[].distrusted'
    value: boolean
    index: number
  }

  export function encode (obj: Partial<GroupProgress>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GroupProgress.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GroupProgress>): GroupProgress {
    return decodeMessage(buf, GroupProgress.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GroupProgress>): Generator<GroupProgressTaskCidFieldEvent | GroupProgressGroupFieldEvent | GroupProgressStepFieldEvent | GroupProgressLossFieldEvent | GroupProgressSamplesPerSecondFieldEvent | GroupProgressLeaderFieldEvent | GroupProgressMembersFieldEvent | GroupProgressOuterRoundFieldEvent | GroupProgressParamsCidFieldEvent | GroupProgressDoneFieldEvent | GroupProgressErrorFieldEvent | GroupProgressAppliedRoundFieldEvent | GroupProgressIncarnationFieldEvent | GroupProgressStateCidFieldEvent | GroupProgressReportsMemberFieldEvent | GroupProgressReportsAcceptedFieldEvent | GroupProgressReportsRejectedFieldEvent | GroupProgressReportsSuspectFieldEvent | GroupProgressReportsDistrustedFieldEvent> {
    return streamMessage(buf, GroupProgress.codec(), opts)
  }
}

export interface MemberCounts {
  member: Uint8Array<ArrayBuffer>
  accepted: number
  rejected: number
  suspect: number
  distrusted: boolean
}

export namespace MemberCounts {
  let _codec: Codec<MemberCounts>

  export const codec = (): Codec<MemberCounts> => {
    if (_codec == null) {
      _codec = message<MemberCounts>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.member != null && obj.member.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.member)
        }

        if ((obj.accepted != null && obj.accepted !== 0)) {
          w.uint32(16)
          w.uint32(obj.accepted)
        }

        if ((obj.rejected != null && obj.rejected !== 0)) {
          w.uint32(24)
          w.uint32(obj.rejected)
        }

        if ((obj.suspect != null && obj.suspect !== 0)) {
          w.uint32(32)
          w.uint32(obj.suspect)
        }

        if ((obj.distrusted != null && obj.distrusted !== false)) {
          w.uint32(40)
          w.bool(obj.distrusted)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          member: uint8ArrayAlloc(0),
          accepted: 0,
          rejected: 0,
          suspect: 0,
          distrusted: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.member = reader.bytes()
              break
            }
            case 2: {
              obj.accepted = reader.uint32()
              break
            }
            case 3: {
              obj.rejected = reader.uint32()
              break
            }
            case 4: {
              obj.suspect = reader.uint32()
              break
            }
            case 5: {
              obj.distrusted = reader.bool()
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
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.accepted`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.rejected`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.suspect`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.distrusted`,
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

  export interface MemberCountsMemberFieldEvent {
    field: '$.member'
    value: Uint8Array<ArrayBuffer>
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

  export interface MemberCountsDistrustedFieldEvent {
    field: '$.distrusted'
    value: boolean
  }

  export function encode (obj: Partial<MemberCounts>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, MemberCounts.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<MemberCounts>): MemberCounts {
    return decodeMessage(buf, MemberCounts.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<MemberCounts>): Generator<MemberCountsMemberFieldEvent | MemberCountsAcceptedFieldEvent | MemberCountsRejectedFieldEvent | MemberCountsSuspectFieldEvent | MemberCountsDistrustedFieldEvent> {
    return streamMessage(buf, MemberCounts.codec(), opts)
  }
}

export interface OuterUpdate {
  taskCid: Uint8Array<ArrayBuffer>
  group: number
  round: number
  paramsCid: Uint8Array<ArrayBuffer>
}

export namespace OuterUpdate {
  let _codec: Codec<OuterUpdate>

  export const codec = (): Codec<OuterUpdate> => {
    if (_codec == null) {
      _codec = message<OuterUpdate>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if ((obj.group != null && obj.group !== 0)) {
          w.uint32(16)
          w.uint32(obj.group)
        }

        if ((obj.round != null && obj.round !== 0)) {
          w.uint32(24)
          w.uint32(obj.round)
        }

        if ((obj.paramsCid != null && obj.paramsCid.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.paramsCid)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          group: 0,
          round: 0,
          paramsCid: uint8ArrayAlloc(0)
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
              obj.group = reader.uint32()
              break
            }
            case 3: {
              obj.round = reader.uint32()
              break
            }
            case 4: {
              obj.paramsCid = reader.bytes()
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
                field: `${prefix}.group`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.round`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.paramsCid`,
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

  export interface OuterUpdateTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OuterUpdateGroupFieldEvent {
    field: '$.group'
    value: number
  }

  export interface OuterUpdateRoundFieldEvent {
    field: '$.round'
    value: number
  }

  export interface OuterUpdateParamsCidFieldEvent {
    field: '$.paramsCid'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<OuterUpdate>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, OuterUpdate.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<OuterUpdate>): OuterUpdate {
    return decodeMessage(buf, OuterUpdate.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<OuterUpdate>): Generator<OuterUpdateTaskCidFieldEvent | OuterUpdateGroupFieldEvent | OuterUpdateRoundFieldEvent | OuterUpdateParamsCidFieldEvent> {
    return streamMessage(buf, OuterUpdate.codec(), opts)
  }
}

export interface Cancel {
  taskCid: Uint8Array<ArrayBuffer>
  reason: string
}

export namespace Cancel {
  let _codec: Codec<Cancel>

  export const codec = (): Codec<Cancel> => {
    if (_codec == null) {
      _codec = message<Cancel>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(18)
          w.string(obj.reason)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          reason: ''
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
              obj.reason = reader.string()
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
                field: `${prefix}.reason`,
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

  export interface CancelTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface CancelReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export function encode (obj: Partial<Cancel>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Cancel.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Cancel>): Cancel {
    return decodeMessage(buf, Cancel.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Cancel>): Generator<CancelTaskCidFieldEvent | CancelReasonFieldEvent> {
    return streamMessage(buf, Cancel.codec(), opts)
  }
}

export interface Challenge {
  taskCid: Uint8Array<ArrayBuffer>
  seed: Uint8Array<ArrayBuffer>
  rows: number
  inner: number
  cols: number
}

export namespace Challenge {
  let _codec: Codec<Challenge>

  export const codec = (): Codec<Challenge> => {
    if (_codec == null) {
      _codec = message<Challenge>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.taskCid != null && obj.taskCid.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.taskCid)
        }

        if ((obj.seed != null && obj.seed.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.seed)
        }

        if ((obj.rows != null && obj.rows !== 0)) {
          w.uint32(24)
          w.uint32(obj.rows)
        }

        if ((obj.inner != null && obj.inner !== 0)) {
          w.uint32(32)
          w.uint32(obj.inner)
        }

        if ((obj.cols != null && obj.cols !== 0)) {
          w.uint32(40)
          w.uint32(obj.cols)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          taskCid: uint8ArrayAlloc(0),
          seed: uint8ArrayAlloc(0),
          rows: 0,
          inner: 0,
          cols: 0
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
              obj.seed = reader.bytes()
              break
            }
            case 3: {
              obj.rows = reader.uint32()
              break
            }
            case 4: {
              obj.inner = reader.uint32()
              break
            }
            case 5: {
              obj.cols = reader.uint32()
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
                field: `${prefix}.seed`,
                value: reader.bytes()
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
                field: `${prefix}.inner`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.cols`,
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

  export interface ChallengeTaskCidFieldEvent {
    field: '$.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ChallengeSeedFieldEvent {
    field: '$.seed'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ChallengeRowsFieldEvent {
    field: '$.rows'
    value: number
  }

  export interface ChallengeInnerFieldEvent {
    field: '$.inner'
    value: number
  }

  export interface ChallengeColsFieldEvent {
    field: '$.cols'
    value: number
  }

  export function encode (obj: Partial<Challenge>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Challenge.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Challenge>): Challenge {
    return decodeMessage(buf, Challenge.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Challenge>): Generator<ChallengeTaskCidFieldEvent | ChallengeSeedFieldEvent | ChallengeRowsFieldEvent | ChallengeInnerFieldEvent | ChallengeColsFieldEvent> {
    return streamMessage(buf, Challenge.codec(), opts)
  }
}

export interface ClaimRequest {
  claim?: Claim
  assignment?: Assignment
  progress?: GroupProgress
  outer?: OuterUpdate
  cancel?: Cancel
  challenge?: Challenge
}

export namespace ClaimRequest {
  let _codec: Codec<ClaimRequest>

  export const codec = (): Codec<ClaimRequest> => {
    if (_codec == null) {
      _codec = message<ClaimRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.claim != null) {
          w.uint32(10)
          Claim.codec().encode(obj.claim, w)
        }

        if (obj.assignment != null) {
          w.uint32(18)
          Assignment.codec().encode(obj.assignment, w)
        }

        if (obj.progress != null) {
          w.uint32(26)
          GroupProgress.codec().encode(obj.progress, w)
        }

        if (obj.outer != null) {
          w.uint32(34)
          OuterUpdate.codec().encode(obj.outer, w)
        }

        if (obj.cancel != null) {
          w.uint32(42)
          Cancel.codec().encode(obj.cancel, w)
        }

        if (obj.challenge != null) {
          w.uint32(50)
          Challenge.codec().encode(obj.challenge, w)
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
              obj.claim = Claim.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.claim
              })
              break
            }
            case 2: {
              obj.assignment = Assignment.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.assignment
              })
              break
            }
            case 3: {
              obj.progress = GroupProgress.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.progress
              })
              break
            }
            case 4: {
              obj.outer = OuterUpdate.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.outer
              })
              break
            }
            case 5: {
              obj.cancel = Cancel.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.cancel
              })
              break
            }
            case 6: {
              obj.challenge = Challenge.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.challenge
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
              yield * Claim.codec().stream(reader, reader.uint32(), `${prefix}.claim`, {
                limits: opts.limits?.claim
              })

              break
            }
            case 2: {
              yield * Assignment.codec().stream(reader, reader.uint32(), `${prefix}.assignment`, {
                limits: opts.limits?.assignment
              })

              break
            }
            case 3: {
              yield * GroupProgress.codec().stream(reader, reader.uint32(), `${prefix}.progress`, {
                limits: opts.limits?.progress
              })

              break
            }
            case 4: {
              yield * OuterUpdate.codec().stream(reader, reader.uint32(), `${prefix}.outer`, {
                limits: opts.limits?.outer
              })

              break
            }
            case 5: {
              yield * Cancel.codec().stream(reader, reader.uint32(), `${prefix}.cancel`, {
                limits: opts.limits?.cancel
              })

              break
            }
            case 6: {
              yield * Challenge.codec().stream(reader, reader.uint32(), `${prefix}.challenge`, {
                limits: opts.limits?.challenge
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

  export interface ClaimRequestClaimTaskCidFieldEvent {
    field: '$.claim.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestClaimCapabilityBackendFieldEvent {
    field: '$.claim.capability.backend'
    value: string
  }

  export interface ClaimRequestClaimCapabilityGflopsFieldEvent {
    field: '$.claim.capability.gflops'
    value: number
  }

  export interface ClaimRequestClaimCapabilityMaxBufferBytesFieldEvent {
    field: '$.claim.capability.maxBufferBytes'
    value: number
  }

  export interface ClaimRequestClaimCapabilityMemoryBytesFieldEvent {
    field: '$.claim.capability.memoryBytes'
    value: number
  }

  export interface ClaimRequestClaimEligibleFieldEvent {
    field: '$.claim.eligible'
    value: boolean
  }

  export interface ClaimRequestClaimReasonFieldEvent {
    field: '$.claim.reason'
    value: string
  }

  export interface ClaimRequestAssignmentTaskCidFieldEvent {
    field: '$.assignment.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestAssignmentGroupFieldEvent {
    field: '$.assignment.group'
    value: number
  }

  export interface ClaimRequestAssignmentMembersFieldEvent {
    field: '$.assignment.members[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestAssignmentShardCidFieldEvent {
    field: '$.assignment.shardCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestAssignmentIncarnationFieldEvent {
    field: '$.assignment.incarnation'
    value: number
  }

  export interface ClaimRequestAssignmentStateCidFieldEvent {
    field: '$.assignment.stateCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestProgressTaskCidFieldEvent {
    field: '$.progress.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestProgressGroupFieldEvent {
    field: '$.progress.group'
    value: number
  }

  export interface ClaimRequestProgressStepFieldEvent {
    field: '$.progress.step'
    value: number
  }

  export interface ClaimRequestProgressLossFieldEvent {
    field: '$.progress.loss'
    value: number
  }

  export interface ClaimRequestProgressSamplesPerSecondFieldEvent {
    field: '$.progress.samplesPerSecond'
    value: number
  }

  export interface ClaimRequestProgressLeaderFieldEvent {
    field: '$.progress.leader'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestProgressMembersFieldEvent {
    field: '$.progress.members[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestProgressOuterRoundFieldEvent {
    field: '$.progress.outerRound'
    value: number
  }

  export interface ClaimRequestProgressParamsCidFieldEvent {
    field: '$.progress.paramsCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestProgressDoneFieldEvent {
    field: '$.progress.done'
    value: boolean
  }

  export interface ClaimRequestProgressErrorFieldEvent {
    field: '$.progress.error'
    value: string
  }

  export interface ClaimRequestProgressAppliedRoundFieldEvent {
    field: '$.progress.appliedRound'
    value: number
  }

  export interface ClaimRequestProgressIncarnationFieldEvent {
    field: '$.progress.incarnation'
    value: number
  }

  export interface ClaimRequestProgressStateCidFieldEvent {
    field: '$.progress.stateCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestProgressReportsMemberFieldEvent {
    field: '$.progress.reports[].member'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface ClaimRequestProgressReportsAcceptedFieldEvent {
    field: '$.progress.reports[].accepted'
    value: number
    index: number
  }

  export interface ClaimRequestProgressReportsRejectedFieldEvent {
    field: '$.progress.reports[].rejected'
    value: number
    index: number
  }

  export interface ClaimRequestProgressReportsSuspectFieldEvent {
    field: '$.progress.reports[].suspect'
    value: number
    index: number
  }

  export interface ClaimRequestProgressReportsDistrustedFieldEvent {
    field: '$.progress.reports[].distrusted'
    value: boolean
    index: number
  }

  export interface ClaimRequestOuterTaskCidFieldEvent {
    field: '$.outer.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestOuterGroupFieldEvent {
    field: '$.outer.group'
    value: number
  }

  export interface ClaimRequestOuterRoundFieldEvent {
    field: '$.outer.round'
    value: number
  }

  export interface ClaimRequestOuterParamsCidFieldEvent {
    field: '$.outer.paramsCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestCancelTaskCidFieldEvent {
    field: '$.cancel.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestCancelReasonFieldEvent {
    field: '$.cancel.reason'
    value: string
  }

  export interface ClaimRequestChallengeTaskCidFieldEvent {
    field: '$.challenge.taskCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestChallengeSeedFieldEvent {
    field: '$.challenge.seed'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ClaimRequestChallengeRowsFieldEvent {
    field: '$.challenge.rows'
    value: number
  }

  export interface ClaimRequestChallengeInnerFieldEvent {
    field: '$.challenge.inner'
    value: number
  }

  export interface ClaimRequestChallengeColsFieldEvent {
    field: '$.challenge.cols'
    value: number
  }

  export function encode (obj: Partial<ClaimRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ClaimRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ClaimRequest>): ClaimRequest {
    return decodeMessage(buf, ClaimRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ClaimRequest>): Generator<ClaimRequestClaimTaskCidFieldEvent | ClaimRequestClaimCapabilityBackendFieldEvent | ClaimRequestClaimCapabilityGflopsFieldEvent | ClaimRequestClaimCapabilityMaxBufferBytesFieldEvent | ClaimRequestClaimCapabilityMemoryBytesFieldEvent | ClaimRequestClaimEligibleFieldEvent | ClaimRequestClaimReasonFieldEvent | ClaimRequestAssignmentTaskCidFieldEvent | ClaimRequestAssignmentGroupFieldEvent | ClaimRequestAssignmentMembersFieldEvent | ClaimRequestAssignmentShardCidFieldEvent | ClaimRequestAssignmentIncarnationFieldEvent | ClaimRequestAssignmentStateCidFieldEvent | ClaimRequestProgressTaskCidFieldEvent | ClaimRequestProgressGroupFieldEvent | ClaimRequestProgressStepFieldEvent | ClaimRequestProgressLossFieldEvent | ClaimRequestProgressSamplesPerSecondFieldEvent | ClaimRequestProgressLeaderFieldEvent | ClaimRequestProgressMembersFieldEvent | ClaimRequestProgressOuterRoundFieldEvent | ClaimRequestProgressParamsCidFieldEvent | ClaimRequestProgressDoneFieldEvent | ClaimRequestProgressErrorFieldEvent | ClaimRequestProgressAppliedRoundFieldEvent | ClaimRequestProgressIncarnationFieldEvent | ClaimRequestProgressStateCidFieldEvent | ClaimRequestProgressReportsMemberFieldEvent | ClaimRequestProgressReportsAcceptedFieldEvent | ClaimRequestProgressReportsRejectedFieldEvent | ClaimRequestProgressReportsSuspectFieldEvent | ClaimRequestProgressReportsDistrustedFieldEvent | ClaimRequestOuterTaskCidFieldEvent | ClaimRequestOuterGroupFieldEvent | ClaimRequestOuterRoundFieldEvent | ClaimRequestOuterParamsCidFieldEvent | ClaimRequestCancelTaskCidFieldEvent | ClaimRequestCancelReasonFieldEvent | ClaimRequestChallengeTaskCidFieldEvent | ClaimRequestChallengeSeedFieldEvent | ClaimRequestChallengeRowsFieldEvent | ClaimRequestChallengeInnerFieldEvent | ClaimRequestChallengeColsFieldEvent> {
    return streamMessage(buf, ClaimRequest.codec(), opts)
  }
}

export interface ClaimResponse {
  status: ClaimResponse.Status
  reason: string
  stateWanted: boolean
  challengeResult: Uint8Array<ArrayBuffer>
}

export namespace ClaimResponse {
  export enum Status {
    STATUS_UNSPECIFIED = 'STATUS_UNSPECIFIED',
    OK = 'OK',
    REFUSED = 'REFUSED',
    UNKNOWN_TASK = 'UNKNOWN_TASK',
    BAD_REQUEST = 'BAD_REQUEST'
  }

  enum __StatusValues {
    STATUS_UNSPECIFIED = 0,
    OK = 1,
    REFUSED = 2,
    UNKNOWN_TASK = 3,
    BAD_REQUEST = 4
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<ClaimResponse>

  export const codec = (): Codec<ClaimResponse> => {
    if (_codec == null) {
      _codec = message<ClaimResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(8)
          ClaimResponse.Status.codec().encode(obj.status, w)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(18)
          w.string(obj.reason)
        }

        if ((obj.stateWanted != null && obj.stateWanted !== false)) {
          w.uint32(24)
          w.bool(obj.stateWanted)
        }

        if ((obj.challengeResult != null && obj.challengeResult.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.challengeResult)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          status: Status.STATUS_UNSPECIFIED,
          reason: '',
          stateWanted: false,
          challengeResult: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.status = ClaimResponse.Status.codec().decode(reader)
              break
            }
            case 2: {
              obj.reason = reader.string()
              break
            }
            case 3: {
              obj.stateWanted = reader.bool()
              break
            }
            case 4: {
              obj.challengeResult = reader.bytes()
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
                value: ClaimResponse.Status.codec().decode(reader)
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
                field: `${prefix}.stateWanted`,
                value: reader.bool()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.challengeResult`,
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

  export interface ClaimResponseStatusFieldEvent {
    field: '$.status'
    value: ClaimResponse.Status
  }

  export interface ClaimResponseReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export interface ClaimResponseStateWantedFieldEvent {
    field: '$.stateWanted'
    value: boolean
  }

  export interface ClaimResponseChallengeResultFieldEvent {
    field: '$.challengeResult'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<ClaimResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ClaimResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ClaimResponse>): ClaimResponse {
    return decodeMessage(buf, ClaimResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ClaimResponse>): Generator<ClaimResponseStatusFieldEvent | ClaimResponseReasonFieldEvent | ClaimResponseStateWantedFieldEvent | ClaimResponseChallengeResultFieldEvent> {
    return streamMessage(buf, ClaimResponse.codec(), opts)
  }
}
