import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface TaskSpec {
  version: number
  kind: TaskSpec.Kind
  requirements?: TaskSpec.Requirements
  staffingDeadlineMs: number
  createdMs: number
  submitter: Uint8Array<ArrayBuffer>
  nonce: Uint8Array<ArrayBuffer>
  train?: TaskSpec.Train
  infer?: TaskSpec.Infer
}

export namespace TaskSpec {
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

  export enum Aggregate {
    MEAN = 'MEAN',
    MEDIAN = 'MEDIAN',
    TRIMMED_MEAN = 'TRIMMED_MEAN'
  }

  enum __AggregateValues {
    MEAN = 0,
    MEDIAN = 1,
    TRIMMED_MEAN = 2
  }

  export namespace Aggregate {
    export const codec = (): Codec<Aggregate> => {
      return enumeration<Aggregate>(__AggregateValues)
    }
  }

  export enum Compress {
    NONE = 'NONE',
    INT8 = 'INT8'
  }

  enum __CompressValues {
    NONE = 0,
    INT8 = 1
  }

  export namespace Compress {
    export const codec = (): Codec<Compress> => {
      return enumeration<Compress>(__CompressValues)
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

  export interface Dataset {
    name: string
    shardCids: Uint8Array<ArrayBuffer>[]
    testCid: Uint8Array<ArrayBuffer>
    trainCount: number
    testCount: number
  }

  export namespace Dataset {
    let _codec: Codec<Dataset>

    export const codec = (): Codec<Dataset> => {
      if (_codec == null) {
        _codec = message<Dataset>((obj, w, opts = {}) => {
          if (opts.lengthDelimited !== false) {
            w.fork()
          }

          if ((obj.name != null && obj.name !== '')) {
            w.uint32(10)
            w.string(obj.name)
          }

          if (obj.shardCids != null && obj.shardCids.length > 0) {
            for (const value of obj.shardCids) {
              w.uint32(18)
              w.bytes(value)
            }
          }

          if ((obj.testCid != null && obj.testCid.byteLength > 0)) {
            w.uint32(26)
            w.bytes(obj.testCid)
          }

          if ((obj.trainCount != null && obj.trainCount !== 0)) {
            w.uint32(32)
            w.uint32(obj.trainCount)
          }

          if ((obj.testCount != null && obj.testCount !== 0)) {
            w.uint32(40)
            w.uint32(obj.testCount)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            name: '',
            shardCids: [],
            testCid: uint8ArrayAlloc(0),
            trainCount: 0,
            testCount: 0
          }

          const end = length == null ? reader.len : reader.pos + length

          while (reader.pos < end) {
            const tag = reader.uint32()

            switch (tag >>> 3) {
              case 1: {
                obj.name = reader.string()
                break
              }
              case 2: {
                if (opts.limits?.shardCids != null && obj.shardCids.length === opts.limits.shardCids) {
                  throw new MaxLengthError('Decode error - repeated field "shardCids" had too many elements')
                }

                obj.shardCids.push(reader.bytes())
                break
              }
              case 3: {
                obj.testCid = reader.bytes()
                break
              }
              case 4: {
                obj.trainCount = reader.uint32()
                break
              }
              case 5: {
                obj.testCount = reader.uint32()
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
            shardCids: 0
          }

          const end = length == null ? reader.len : reader.pos + length

          while (reader.pos < end) {
            const tag = reader.uint32()

            switch (tag >>> 3) {
              case 1: {
                yield {
                  field: `${prefix}.name`,
                  value: reader.string()
                }
                break
              }
              case 2: {
                if (opts.limits?.shardCids != null && obj.shardCids === opts.limits.shardCids) {
                  throw new MaxLengthError('Streaming decode error - repeated field "shardCids" had too many elements')
                }

                yield {
                  field: `${prefix}.shardCids[]`,
                  index: obj.shardCids,
                  value: reader.bytes()
                }

                obj.shardCids++

                break
              }
              case 3: {
                yield {
                  field: `${prefix}.testCid`,
                  value: reader.bytes()
                }
                break
              }
              case 4: {
                yield {
                  field: `${prefix}.trainCount`,
                  value: reader.uint32()
                }
                break
              }
              case 5: {
                yield {
                  field: `${prefix}.testCount`,
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

    export interface DatasetNameFieldEvent {
      field: '$.name'
      value: string
    }

    export interface DatasetShardCidsFieldEvent {
      field: '$.shardCids[]'
      index: number
      value: Uint8Array<ArrayBuffer>
    }

    export interface DatasetTestCidFieldEvent {
      field: '$.testCid'
      value: Uint8Array<ArrayBuffer>
    }

    export interface DatasetTrainCountFieldEvent {
      field: '$.trainCount'
      value: number
    }

    export interface DatasetTestCountFieldEvent {
      field: '$.testCount'
      value: number
    }

    export function encode (obj: Partial<Dataset>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, Dataset.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Dataset>): Dataset {
      return decodeMessage(buf, Dataset.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Dataset>): Generator<DatasetNameFieldEvent | DatasetShardCidsFieldEvent | DatasetTestCidFieldEvent | DatasetTrainCountFieldEvent | DatasetTestCountFieldEvent> {
      return streamMessage(buf, Dataset.codec(), opts)
    }
  }

  export interface Gpt {
    context: number
    width: number
    layers: number
    heads: number
  }

  export namespace Gpt {
    let _codec: Codec<Gpt>

    export const codec = (): Codec<Gpt> => {
      if (_codec == null) {
        _codec = message<Gpt>((obj, w, opts = {}) => {
          if (opts.lengthDelimited !== false) {
            w.fork()
          }

          if ((obj.context != null && obj.context !== 0)) {
            w.uint32(8)
            w.uint32(obj.context)
          }

          if ((obj.width != null && obj.width !== 0)) {
            w.uint32(16)
            w.uint32(obj.width)
          }

          if ((obj.layers != null && obj.layers !== 0)) {
            w.uint32(24)
            w.uint32(obj.layers)
          }

          if ((obj.heads != null && obj.heads !== 0)) {
            w.uint32(32)
            w.uint32(obj.heads)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            context: 0,
            width: 0,
            layers: 0,
            heads: 0
          }

          const end = length == null ? reader.len : reader.pos + length

          while (reader.pos < end) {
            const tag = reader.uint32()

            switch (tag >>> 3) {
              case 1: {
                obj.context = reader.uint32()
                break
              }
              case 2: {
                obj.width = reader.uint32()
                break
              }
              case 3: {
                obj.layers = reader.uint32()
                break
              }
              case 4: {
                obj.heads = reader.uint32()
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
                  field: `${prefix}.context`,
                  value: reader.uint32()
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
                  field: `${prefix}.layers`,
                  value: reader.uint32()
                }
                break
              }
              case 4: {
                yield {
                  field: `${prefix}.heads`,
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

    export interface GptContextFieldEvent {
      field: '$.context'
      value: number
    }

    export interface GptWidthFieldEvent {
      field: '$.width'
      value: number
    }

    export interface GptLayersFieldEvent {
      field: '$.layers'
      value: number
    }

    export interface GptHeadsFieldEvent {
      field: '$.heads'
      value: number
    }

    export function encode (obj: Partial<Gpt>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, Gpt.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Gpt>): Gpt {
      return decodeMessage(buf, Gpt.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Gpt>): Generator<GptContextFieldEvent | GptWidthFieldEvent | GptLayersFieldEvent | GptHeadsFieldEvent> {
      return streamMessage(buf, Gpt.codec(), opts)
    }
  }

  export interface Train {
    model: string
    hiddenSizes: number[]
    groups: number
    groupSize: number
    steps: number
    batchSize: number
    learningRate: number
    seed: number
    aggregate: TaskSpec.Aggregate
    outerEvery: number
    compress: TaskSpec.Compress
    dataset?: TaskSpec.Dataset
    gpt?: TaskSpec.Gpt
    minGradients: number
  }

  export namespace Train {
    let _codec: Codec<Train>

    export const codec = (): Codec<Train> => {
      if (_codec == null) {
        _codec = message<Train>((obj, w, opts = {}) => {
          if (opts.lengthDelimited !== false) {
            w.fork()
          }

          if ((obj.model != null && obj.model !== '')) {
            w.uint32(10)
            w.string(obj.model)
          }

          if (obj.hiddenSizes != null && obj.hiddenSizes.length > 0) {
            for (const value of obj.hiddenSizes) {
              w.uint32(16)
              w.uint32(value)
            }
          }

          if ((obj.groups != null && obj.groups !== 0)) {
            w.uint32(24)
            w.uint32(obj.groups)
          }

          if ((obj.groupSize != null && obj.groupSize !== 0)) {
            w.uint32(32)
            w.uint32(obj.groupSize)
          }

          if ((obj.steps != null && obj.steps !== 0)) {
            w.uint32(40)
            w.uint32(obj.steps)
          }

          if ((obj.batchSize != null && obj.batchSize !== 0)) {
            w.uint32(48)
            w.uint32(obj.batchSize)
          }

          if ((obj.learningRate != null && obj.learningRate !== 0)) {
            w.uint32(57)
            w.double(obj.learningRate)
          }

          if ((obj.seed != null && obj.seed !== 0)) {
            w.uint32(64)
            w.uint32(obj.seed)
          }

          if (obj.aggregate != null && __AggregateValues[obj.aggregate] !== 0) {
            w.uint32(72)
            TaskSpec.Aggregate.codec().encode(obj.aggregate, w)
          }

          if ((obj.outerEvery != null && obj.outerEvery !== 0)) {
            w.uint32(80)
            w.uint32(obj.outerEvery)
          }

          if (obj.compress != null && __CompressValues[obj.compress] !== 0) {
            w.uint32(88)
            TaskSpec.Compress.codec().encode(obj.compress, w)
          }

          if (obj.dataset != null) {
            w.uint32(98)
            TaskSpec.Dataset.codec().encode(obj.dataset, w)
          }

          if (obj.gpt != null) {
            w.uint32(106)
            TaskSpec.Gpt.codec().encode(obj.gpt, w)
          }

          if ((obj.minGradients != null && obj.minGradients !== 0)) {
            w.uint32(112)
            w.uint32(obj.minGradients)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            model: '',
            hiddenSizes: [],
            groups: 0,
            groupSize: 0,
            steps: 0,
            batchSize: 0,
            learningRate: 0,
            seed: 0,
            aggregate: Aggregate.MEAN,
            outerEvery: 0,
            compress: Compress.NONE,
            minGradients: 0
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
                if (opts.limits?.hiddenSizes != null && obj.hiddenSizes.length === opts.limits.hiddenSizes) {
                  throw new MaxLengthError('Decode error - repeated field "hiddenSizes" had too many elements')
                }

                obj.hiddenSizes.push(reader.uint32())
                break
              }
              case 3: {
                obj.groups = reader.uint32()
                break
              }
              case 4: {
                obj.groupSize = reader.uint32()
                break
              }
              case 5: {
                obj.steps = reader.uint32()
                break
              }
              case 6: {
                obj.batchSize = reader.uint32()
                break
              }
              case 7: {
                obj.learningRate = reader.double()
                break
              }
              case 8: {
                obj.seed = reader.uint32()
                break
              }
              case 9: {
                obj.aggregate = TaskSpec.Aggregate.codec().decode(reader)
                break
              }
              case 10: {
                obj.outerEvery = reader.uint32()
                break
              }
              case 11: {
                obj.compress = TaskSpec.Compress.codec().decode(reader)
                break
              }
              case 12: {
                obj.dataset = TaskSpec.Dataset.codec().decode(reader, reader.uint32(), {
                  limits: opts.limits?.dataset
                })
                break
              }
              case 13: {
                obj.gpt = TaskSpec.Gpt.codec().decode(reader, reader.uint32(), {
                  limits: opts.limits?.gpt
                })
                break
              }
              case 14: {
                obj.minGradients = reader.uint32()
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
            hiddenSizes: 0
          }

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
                if (opts.limits?.hiddenSizes != null && obj.hiddenSizes === opts.limits.hiddenSizes) {
                  throw new MaxLengthError('Streaming decode error - repeated field "hiddenSizes" had too many elements')
                }

                yield {
                  field: `${prefix}.hiddenSizes[]`,
                  index: obj.hiddenSizes,
                  value: reader.uint32()
                }

                obj.hiddenSizes++

                break
              }
              case 3: {
                yield {
                  field: `${prefix}.groups`,
                  value: reader.uint32()
                }
                break
              }
              case 4: {
                yield {
                  field: `${prefix}.groupSize`,
                  value: reader.uint32()
                }
                break
              }
              case 5: {
                yield {
                  field: `${prefix}.steps`,
                  value: reader.uint32()
                }
                break
              }
              case 6: {
                yield {
                  field: `${prefix}.batchSize`,
                  value: reader.uint32()
                }
                break
              }
              case 7: {
                yield {
                  field: `${prefix}.learningRate`,
                  value: reader.double()
                }
                break
              }
              case 8: {
                yield {
                  field: `${prefix}.seed`,
                  value: reader.uint32()
                }
                break
              }
              case 9: {
                yield {
                  field: `${prefix}.aggregate`,
                  value: TaskSpec.Aggregate.codec().decode(reader)
                }
                break
              }
              case 10: {
                yield {
                  field: `${prefix}.outerEvery`,
                  value: reader.uint32()
                }
                break
              }
              case 11: {
                yield {
                  field: `${prefix}.compress`,
                  value: TaskSpec.Compress.codec().decode(reader)
                }
                break
              }
              case 12: {
                yield * TaskSpec.Dataset.codec().stream(reader, reader.uint32(), `${prefix}.dataset`, {
                  limits: opts.limits?.dataset
                })

                break
              }
              case 13: {
                yield * TaskSpec.Gpt.codec().stream(reader, reader.uint32(), `${prefix}.gpt`, {
                  limits: opts.limits?.gpt
                })

                break
              }
              case 14: {
                yield {
                  field: `${prefix}.minGradients`,
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

    export interface TrainModelFieldEvent {
      field: '$.model'
      value: string
    }

    export interface TrainHiddenSizesFieldEvent {
      field: '$.hiddenSizes[]'
      index: number
      value: number
    }

    export interface TrainGroupsFieldEvent {
      field: '$.groups'
      value: number
    }

    export interface TrainGroupSizeFieldEvent {
      field: '$.groupSize'
      value: number
    }

    export interface TrainStepsFieldEvent {
      field: '$.steps'
      value: number
    }

    export interface TrainBatchSizeFieldEvent {
      field: '$.batchSize'
      value: number
    }

    export interface TrainLearningRateFieldEvent {
      field: '$.learningRate'
      value: number
    }

    export interface TrainSeedFieldEvent {
      field: '$.seed'
      value: number
    }

    export interface TrainAggregateFieldEvent {
      field: '$.aggregate'
      value: TaskSpec.Aggregate
    }

    export interface TrainOuterEveryFieldEvent {
      field: '$.outerEvery'
      value: number
    }

    export interface TrainCompressFieldEvent {
      field: '$.compress'
      value: TaskSpec.Compress
    }

    export interface TrainDatasetNameFieldEvent {
      field: '$.dataset.name'
      value: string
    }

    export interface TrainDatasetShardCidsFieldEvent {
      field: '$.dataset.shardCids[]'
      index: number
      value: Uint8Array<ArrayBuffer>
    }

    export interface TrainDatasetTestCidFieldEvent {
      field: '$.dataset.testCid'
      value: Uint8Array<ArrayBuffer>
    }

    export interface TrainDatasetTrainCountFieldEvent {
      field: '$.dataset.trainCount'
      value: number
    }

    export interface TrainDatasetTestCountFieldEvent {
      field: '$.dataset.testCount'
      value: number
    }

    export interface TrainGptContextFieldEvent {
      field: '$.gpt.context'
      value: number
    }

    export interface TrainGptWidthFieldEvent {
      field: '$.gpt.width'
      value: number
    }

    export interface TrainGptLayersFieldEvent {
      field: '$.gpt.layers'
      value: number
    }

    export interface TrainGptHeadsFieldEvent {
      field: '$.gpt.heads'
      value: number
    }

    export interface TrainMinGradientsFieldEvent {
      field: '$.minGradients'
      value: number
    }

    export function encode (obj: Partial<Train>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, Train.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Train>): Train {
      return decodeMessage(buf, Train.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Train>): Generator<TrainModelFieldEvent | TrainHiddenSizesFieldEvent | TrainGroupsFieldEvent | TrainGroupSizeFieldEvent | TrainStepsFieldEvent | TrainBatchSizeFieldEvent | TrainLearningRateFieldEvent | TrainSeedFieldEvent | TrainAggregateFieldEvent | TrainOuterEveryFieldEvent | TrainCompressFieldEvent | TrainDatasetNameFieldEvent | TrainDatasetShardCidsFieldEvent | TrainDatasetTestCidFieldEvent | TrainDatasetTrainCountFieldEvent | TrainDatasetTestCountFieldEvent | TrainGptContextFieldEvent | TrainGptWidthFieldEvent | TrainGptLayersFieldEvent | TrainGptHeadsFieldEvent | TrainMinGradientsFieldEvent> {
      return streamMessage(buf, Train.codec(), opts)
    }
  }

  export interface Infer {
    modelCid: Uint8Array<ArrayBuffer>
    inputCid: Uint8Array<ArrayBuffer>
    inputCount: number
    replicas: number
    shards: number
  }

  export namespace Infer {
    let _codec: Codec<Infer>

    export const codec = (): Codec<Infer> => {
      if (_codec == null) {
        _codec = message<Infer>((obj, w, opts = {}) => {
          if (opts.lengthDelimited !== false) {
            w.fork()
          }

          if ((obj.modelCid != null && obj.modelCid.byteLength > 0)) {
            w.uint32(10)
            w.bytes(obj.modelCid)
          }

          if ((obj.inputCid != null && obj.inputCid.byteLength > 0)) {
            w.uint32(18)
            w.bytes(obj.inputCid)
          }

          if ((obj.inputCount != null && obj.inputCount !== 0)) {
            w.uint32(24)
            w.uint32(obj.inputCount)
          }

          if ((obj.replicas != null && obj.replicas !== 0)) {
            w.uint32(32)
            w.uint32(obj.replicas)
          }

          if ((obj.shards != null && obj.shards !== 0)) {
            w.uint32(40)
            w.uint32(obj.shards)
          }

          if (opts.lengthDelimited !== false) {
            w.ldelim()
          }
        }, (reader, length, opts = {}) => {
          const obj: any = {
            modelCid: uint8ArrayAlloc(0),
            inputCid: uint8ArrayAlloc(0),
            inputCount: 0,
            replicas: 0,
            shards: 0
          }

          const end = length == null ? reader.len : reader.pos + length

          while (reader.pos < end) {
            const tag = reader.uint32()

            switch (tag >>> 3) {
              case 1: {
                obj.modelCid = reader.bytes()
                break
              }
              case 2: {
                obj.inputCid = reader.bytes()
                break
              }
              case 3: {
                obj.inputCount = reader.uint32()
                break
              }
              case 4: {
                obj.replicas = reader.uint32()
                break
              }
              case 5: {
                obj.shards = reader.uint32()
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
                  field: `${prefix}.modelCid`,
                  value: reader.bytes()
                }
                break
              }
              case 2: {
                yield {
                  field: `${prefix}.inputCid`,
                  value: reader.bytes()
                }
                break
              }
              case 3: {
                yield {
                  field: `${prefix}.inputCount`,
                  value: reader.uint32()
                }
                break
              }
              case 4: {
                yield {
                  field: `${prefix}.replicas`,
                  value: reader.uint32()
                }
                break
              }
              case 5: {
                yield {
                  field: `${prefix}.shards`,
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

    export interface InferModelCidFieldEvent {
      field: '$.modelCid'
      value: Uint8Array<ArrayBuffer>
    }

    export interface InferInputCidFieldEvent {
      field: '$.inputCid'
      value: Uint8Array<ArrayBuffer>
    }

    export interface InferInputCountFieldEvent {
      field: '$.inputCount'
      value: number
    }

    export interface InferReplicasFieldEvent {
      field: '$.replicas'
      value: number
    }

    export interface InferShardsFieldEvent {
      field: '$.shards'
      value: number
    }

    export function encode (obj: Partial<Infer>): Uint8Array<ArrayBuffer> {
      return encodeMessage(obj, Infer.codec())
    }

    export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Infer>): Infer {
      return decodeMessage(buf, Infer.codec(), opts)
    }

    export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Infer>): Generator<InferModelCidFieldEvent | InferInputCidFieldEvent | InferInputCountFieldEvent | InferReplicasFieldEvent | InferShardsFieldEvent> {
      return streamMessage(buf, Infer.codec(), opts)
    }
  }

  export interface Requirements {
    backend: TaskSpec.Backend
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
            TaskSpec.Backend.codec().encode(obj.backend, w)
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
                obj.backend = TaskSpec.Backend.codec().decode(reader)
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
                  value: TaskSpec.Backend.codec().decode(reader)
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
      value: TaskSpec.Backend
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

  let _codec: Codec<TaskSpec>

  export const codec = (): Codec<TaskSpec> => {
    if (_codec == null) {
      _codec = message<TaskSpec>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if (obj.kind != null && __KindValues[obj.kind] !== 0) {
          w.uint32(16)
          TaskSpec.Kind.codec().encode(obj.kind, w)
        }

        if (obj.requirements != null) {
          w.uint32(26)
          TaskSpec.Requirements.codec().encode(obj.requirements, w)
        }

        if ((obj.staffingDeadlineMs != null && obj.staffingDeadlineMs !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.staffingDeadlineMs)
        }

        if ((obj.createdMs != null && obj.createdMs !== 0)) {
          w.uint32(40)
          w.uint64Number(obj.createdMs)
        }

        if ((obj.submitter != null && obj.submitter.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.submitter)
        }

        if ((obj.nonce != null && obj.nonce.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.nonce)
        }

        if (obj.train != null) {
          w.uint32(66)
          TaskSpec.Train.codec().encode(obj.train, w)
        }

        if (obj.infer != null) {
          w.uint32(74)
          TaskSpec.Infer.codec().encode(obj.infer, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          kind: Kind.KIND_UNSPECIFIED,
          staffingDeadlineMs: 0,
          createdMs: 0,
          submitter: uint8ArrayAlloc(0),
          nonce: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.kind = TaskSpec.Kind.codec().decode(reader)
              break
            }
            case 3: {
              obj.requirements = TaskSpec.Requirements.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.requirements
              })
              break
            }
            case 4: {
              obj.staffingDeadlineMs = reader.uint64Number()
              break
            }
            case 5: {
              obj.createdMs = reader.uint64Number()
              break
            }
            case 6: {
              obj.submitter = reader.bytes()
              break
            }
            case 7: {
              obj.nonce = reader.bytes()
              break
            }
            case 8: {
              obj.train = TaskSpec.Train.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.train
              })
              break
            }
            case 9: {
              obj.infer = TaskSpec.Infer.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.infer
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
                field: `${prefix}.version`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.kind`,
                value: TaskSpec.Kind.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield * TaskSpec.Requirements.codec().stream(reader, reader.uint32(), `${prefix}.requirements`, {
                limits: opts.limits?.requirements
              })

              break
            }
            case 4: {
              yield {
                field: `${prefix}.staffingDeadlineMs`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.createdMs`,
                value: reader.uint64Number()
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
                field: `${prefix}.nonce`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield * TaskSpec.Train.codec().stream(reader, reader.uint32(), `${prefix}.train`, {
                limits: opts.limits?.train
              })

              break
            }
            case 9: {
              yield * TaskSpec.Infer.codec().stream(reader, reader.uint32(), `${prefix}.infer`, {
                limits: opts.limits?.infer
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

  export interface TaskSpecVersionFieldEvent {
    field: '$.version'
    value: number
  }

  export interface TaskSpecKindFieldEvent {
    field: '$.kind'
    value: TaskSpec.Kind
  }

  export interface TaskSpecRequirementsBackendFieldEvent {
    field: '$.requirements.backend'
    value: TaskSpec.Backend
  }

  export interface TaskSpecRequirementsMinMemoryBytesFieldEvent {
    field: '$.requirements.minMemoryBytes'
    value: number
  }

  export interface TaskSpecRequirementsMinGflopsFieldEvent {
    field: '$.requirements.minGflops'
    value: number
  }

  export interface TaskSpecStaffingDeadlineMsFieldEvent {
    field: '$.staffingDeadlineMs'
    value: number
  }

  export interface TaskSpecCreatedMsFieldEvent {
    field: '$.createdMs'
    value: number
  }

  export interface TaskSpecSubmitterFieldEvent {
    field: '$.submitter'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskSpecNonceFieldEvent {
    field: '$.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskSpecTrainModelFieldEvent {
    field: '$.train.model'
    value: string
  }

  export interface TaskSpecTrainHiddenSizesFieldEvent {
    field: '$.train.hiddenSizes[]'
    index: number
    value: number
  }

  export interface TaskSpecTrainGroupsFieldEvent {
    field: '$.train.groups'
    value: number
  }

  export interface TaskSpecTrainGroupSizeFieldEvent {
    field: '$.train.groupSize'
    value: number
  }

  export interface TaskSpecTrainStepsFieldEvent {
    field: '$.train.steps'
    value: number
  }

  export interface TaskSpecTrainBatchSizeFieldEvent {
    field: '$.train.batchSize'
    value: number
  }

  export interface TaskSpecTrainLearningRateFieldEvent {
    field: '$.train.learningRate'
    value: number
  }

  export interface TaskSpecTrainSeedFieldEvent {
    field: '$.train.seed'
    value: number
  }

  export interface TaskSpecTrainAggregateFieldEvent {
    field: '$.train.aggregate'
    value: TaskSpec.Aggregate
  }

  export interface TaskSpecTrainOuterEveryFieldEvent {
    field: '$.train.outerEvery'
    value: number
  }

  export interface TaskSpecTrainCompressFieldEvent {
    field: '$.train.compress'
    value: TaskSpec.Compress
  }

  export interface TaskSpecTrainDatasetNameFieldEvent {
    field: '$.train.dataset.name'
    value: string
  }

  export interface TaskSpecTrainDatasetShardCidsFieldEvent {
    field: '$.train.dataset.shardCids[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskSpecTrainDatasetTestCidFieldEvent {
    field: '$.train.dataset.testCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskSpecTrainDatasetTrainCountFieldEvent {
    field: '$.train.dataset.trainCount'
    value: number
  }

  export interface TaskSpecTrainDatasetTestCountFieldEvent {
    field: '$.train.dataset.testCount'
    value: number
  }

  export interface TaskSpecTrainGptContextFieldEvent {
    field: '$.train.gpt.context'
    value: number
  }

  export interface TaskSpecTrainGptWidthFieldEvent {
    field: '$.train.gpt.width'
    value: number
  }

  export interface TaskSpecTrainGptLayersFieldEvent {
    field: '$.train.gpt.layers'
    value: number
  }

  export interface TaskSpecTrainGptHeadsFieldEvent {
    field: '$.train.gpt.heads'
    value: number
  }

  export interface TaskSpecTrainMinGradientsFieldEvent {
    field: '$.train.minGradients'
    value: number
  }

  export interface TaskSpecInferModelCidFieldEvent {
    field: '$.infer.modelCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskSpecInferInputCidFieldEvent {
    field: '$.infer.inputCid'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TaskSpecInferInputCountFieldEvent {
    field: '$.infer.inputCount'
    value: number
  }

  export interface TaskSpecInferReplicasFieldEvent {
    field: '$.infer.replicas'
    value: number
  }

  export interface TaskSpecInferShardsFieldEvent {
    field: '$.infer.shards'
    value: number
  }

  export function encode (obj: Partial<TaskSpec>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TaskSpec.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TaskSpec>): TaskSpec {
    return decodeMessage(buf, TaskSpec.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TaskSpec>): Generator<TaskSpecVersionFieldEvent | TaskSpecKindFieldEvent | TaskSpecRequirementsBackendFieldEvent | TaskSpecRequirementsMinMemoryBytesFieldEvent | TaskSpecRequirementsMinGflopsFieldEvent | TaskSpecStaffingDeadlineMsFieldEvent | TaskSpecCreatedMsFieldEvent | TaskSpecSubmitterFieldEvent | TaskSpecNonceFieldEvent | TaskSpecTrainModelFieldEvent | TaskSpecTrainHiddenSizesFieldEvent | TaskSpecTrainGroupsFieldEvent | TaskSpecTrainGroupSizeFieldEvent | TaskSpecTrainStepsFieldEvent | TaskSpecTrainBatchSizeFieldEvent | TaskSpecTrainLearningRateFieldEvent | TaskSpecTrainSeedFieldEvent | TaskSpecTrainAggregateFieldEvent | TaskSpecTrainOuterEveryFieldEvent | TaskSpecTrainCompressFieldEvent | TaskSpecTrainDatasetNameFieldEvent | TaskSpecTrainDatasetShardCidsFieldEvent | TaskSpecTrainDatasetTestCidFieldEvent | TaskSpecTrainDatasetTrainCountFieldEvent | TaskSpecTrainDatasetTestCountFieldEvent | TaskSpecTrainGptContextFieldEvent | TaskSpecTrainGptWidthFieldEvent | TaskSpecTrainGptLayersFieldEvent | TaskSpecTrainGptHeadsFieldEvent | TaskSpecTrainMinGradientsFieldEvent | TaskSpecInferModelCidFieldEvent | TaskSpecInferInputCidFieldEvent | TaskSpecInferInputCountFieldEvent | TaskSpecInferReplicasFieldEvent | TaskSpecInferShardsFieldEvent> {
    return streamMessage(buf, TaskSpec.codec(), opts)
  }
}
