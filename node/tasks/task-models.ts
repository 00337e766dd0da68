// The model kinds a training task can name, as the submitter and the workers see them: how a task's
// data is prepared and found, the model's size and initial parameters, a worker's TrainingModel for
// its group, and the submitter's score and result files. The coordinator and the train executor go
// through TASK_MODELS and never name a model; a new kind is a kernels/models folder and one entry here.

import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Backend } from '../../kernels/backend.js'
import {
  ByteCorpus,
  buildCorpus,
  CORPUS_PACKAGE,
  type CorpusFiles,
  defaultCorpusCacheDir,
} from '../../kernels/data/corpus.js'
import {
  type GptConfig,
  gptParameterCount,
  initializeGpt,
  LAYER_NORM_EPSILON,
} from '../../kernels/models/gpt/config.js'
import { evaluateBitsPerByte } from '../../kernels/models/gpt/evaluate.js'
import { Gpt } from '../../kernels/models/gpt/model.js'
import { gptTrainingModel } from '../../kernels/models/gpt/training-model.js'
import type { TrainingModel } from '../../kernels/models/kind.js'
import { Mlp, parameterCount } from '../../kernels/models/mlp.js'
import { initialParams, mlpTrainingModel, paramsToHostLayers } from '../../kernels/models/mlp-kind.js'
import { evaluate } from '../../kernels/models/training.js'
import { decodeDatasetBlock } from '../../protocols/tasks/dataset.js'
import {
  GPT_SHAPE_DEFAULT,
  type ModelName,
  type TaskDataset,
  type TrainRequest,
  type TrainSpec,
  trainArchitecture,
} from '../../protocols/tasks/spec.js'
import { describeArchitecture, type ModelManifest, saveGptModel, saveModel } from '../executor/model-files.js'
import { encodeTaskData, loadTaskData } from './datasets.js'

/** How the submitter scores a task's params: the metric of its model kind, and the mean loss. */
export interface TaskScore {
  /** test accuracy (classifiers) */
  accuracy?: number
  /** validation bits per byte (byte language models) */
  bitsPerByte?: number
  /** bytes of the validation split that bits per byte covers */
  scoredBytes?: number
  /** mean loss on the held-out data, in nats */
  loss: number
}

/** What the result's model.json says besides the model (filled in by the coordinator). */
export type ResultManifest = Omit<ModelManifest, 'weights' | 'format' | 'architecture' | 'parameterCount'>

export interface TaskModel {
  /** Submitter: the task's data blocks (stored through `put`) and the spec's dataset fields. */
  prepareData(request: TrainRequest, put: (bytes: Uint8Array) => Promise<CID>): Promise<TaskDataset>
  parameterCount(train: Pick<TrainSpec, 'hiddenSizes' | 'gpt'>): number
  initialParams(train: TrainSpec): Float32Array
  /** Worker: the model bound to its group's data; close() releases the data. */
  trainingModel(
    train: TrainSpec,
    group: number,
    fetchBlock: (cid: CID) => Promise<Uint8Array>,
  ): Promise<{ model: TrainingModel; close(): void }>
  /**
   * Submitter: the score of `params` on the held-out data. `quick` asks for an estimate (the
   * outer rounds' progress figure) where the full figure is slow.
   */
  score(
    train: TrainSpec,
    params: Float32Array,
    backend: Backend,
    getBlock: (cid: CID) => Promise<Uint8Array>,
    quick: boolean,
  ): Promise<TaskScore>
  /** Submitter: writes the result directory (weights, manifest, and the kind's other files). */
  save(directory: string, train: TrainSpec, params: Float32Array, manifest: ResultManifest): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// mnist-mlp: MNIST (or the submitter's --data file), one block of samples per group

const mlpTaskModel: TaskModel = {
  async prepareData(request, put) {
    const data = await loadTaskData(request.dataFile)
    const { shards, test } = encodeTaskData(data, request.groups, request.seed)
    const shardCids = await Promise.all(shards.map(put))
    const testCid = await put(test)
    return { name: data.name, shardCids, testCid, trainCount: data.train.count, testCount: data.test.count }
  },
  parameterCount: (train) => parameterCount(trainArchitecture(train)),
  initialParams: (train) => initialParams(trainArchitecture(train), train.seed),
  async trainingModel(train, group, fetchBlock) {
    const shard = decodeDatasetBlock(await fetchBlock(train.dataset.shardCids[group]))
    if (!shard.ok) throw new Error(`the data shard is unusable: ${shard.reason}`)
    const architecture = trainArchitecture(train)
    if (shard.value.features !== architecture.inputSize) {
      throw new Error(
        `the data shard has ${shard.value.features} features, the model takes ${architecture.inputSize}`,
      )
    }
    const inputs = shard.value.images
    const model = mlpTrainingModel(architecture, { inputs, labels: Float32Array.from(shard.value.labels) })
    return { model, close() {} }
  },
  async score(train, params, backend, getBlock) {
    const architecture = trainArchitecture(train)
    const test = decodeDatasetBlock(await getBlock(train.dataset.testCid))
    if (!test.ok) throw new Error(`the test set block is unreadable: ${test.reason}`)
    const model = Mlp.fromHost(backend, architecture, paramsToHostLayers(architecture, params))
    try {
      const result = await evaluate(model, test.value)
      return { accuracy: result.accuracy, loss: result.meanLoss }
    } finally {
      model.dispose()
    }
  },
  async save(directory, train, params, manifest) {
    const architecture = trainArchitecture(train)
    await saveModel(directory, architecture, paramsToHostLayers(architecture, params), {
      ...manifest,
      ...describeArchitecture(architecture),
    })
  },
}

// ---------------------------------------------------------------------------------------------------
// gpt: the linux-doc-6.1 byte corpus, built by every peer from Debian's package and checked by CID

/** The raw CID of bytes whose SHA-256 is `hex`: a corpus split's content id. */
export function rawCidOfSha256(hex: string): CID {
  return CID.createV1(raw.code, createDigest(sha256.code, new Uint8Array(Buffer.from(hex, 'hex'))))
}

/** The sha2-256 digest a raw CID names, as hex (undefined for another hash). */
function sha256Hex(cid: CID): string | undefined {
  return cid.multihash.code === sha256.code ? Buffer.from(cid.multihash.digest).toString('hex') : undefined
}

/**
 * Windows of the validation split a task's final score takes (from its start, by the protocol of
 * `shardnet eval`, which takes them all): 512 windows of the tiny preset's 256 bytes are 15% of the
 * split, scored in about a minute on lavapipe where the whole split takes several; the figure and the
 * bytes it covers go into the result's model.json.
 */
export const TASK_SCORE_WINDOWS = 512
/** Windows the outer rounds' progress estimate scores. */
export const QUICK_SCORE_WINDOWS = 64

/** The GPT configuration of a task. */
export function taskGptConfig(train: Pick<TrainSpec, 'gpt'>): GptConfig {
  const shape = train.gpt ?? GPT_SHAPE_DEFAULT
  return { vocabSize: 256, layerNormEpsilon: LAYER_NORM_EPSILON, ...shape }
}

/** The corpus as this machine builds it, checked against the task's content ids. */
async function taskCorpus(train: TrainSpec): Promise<CorpusFiles> {
  const files = await buildCorpus({ cacheDir: defaultCorpusCacheDir(), allowMismatch: true })
  const training = sha256Hex(train.dataset.shardCids[0])
  const validation = sha256Hex(train.dataset.testCid)
  if (files.training.sha256 !== training || files.validation.sha256 !== validation) {
    throw new Error(
      `this machine's ${CORPUS_PACKAGE} corpus differs from the task's (another package version?): ` +
        `training ${files.training.sha256.slice(0, 12)}, the task's ${training?.slice(0, 12)}`,
    )
  }
  return files
}

const gptTaskModel: TaskModel = {
  async prepareData(request) {
    const files = await buildCorpus({ cacheDir: defaultCorpusCacheDir(), allowMismatch: true })
    const trainingCid = rawCidOfSha256(files.training.sha256)
    return {
      name: CORPUS_PACKAGE,
      shardCids: Array.from({ length: request.groups }, () => trainingCid),
      testCid: rawCidOfSha256(files.validation.sha256),
      trainCount: files.training.bytes,
      testCount: files.validation.bytes,
    }
  },
  parameterCount: (train) => gptParameterCount(taskGptConfig(train)),
  initialParams: (train) => initializeGpt(taskGptConfig(train), train.seed),
  async trainingModel(train, group) {
    const files = await taskCorpus(train)
    const corpus = ByteCorpus.open(files.training.path)
    const model = gptTrainingModel(taskGptConfig(train), corpus, { group, groups: train.groups })
    return { model, close: () => corpus.close() }
  },
  async score(train, params, backend, _getBlock, quick) {
    const files = await taskCorpus(train)
    const corpus = ByteCorpus.open(files.validation.path)
    const validation = corpus.readAll()
    corpus.close()
    const gpt = Gpt.create(backend, taskGptConfig(train), params)
    try {
      const result = await evaluateBitsPerByte(backend, gpt, validation, {
        maxWindows: quick ? QUICK_SCORE_WINDOWS : TASK_SCORE_WINDOWS,
      })
      return {
        bitsPerByte: result.bitsPerByte,
        scoredBytes: result.bytes,
        loss: result.bitsPerByte * Math.LN2,
      }
    } finally {
      gpt.dispose()
    }
  },
  async save(directory, train, params, manifest) {
    await saveGptModel(directory, taskGptConfig(train), params, manifest)
  },
}

/** Every model kind a training task can name. */
export const TASK_MODELS: Readonly<Record<ModelName, TaskModel>> = {
  'mnist-mlp': mlpTaskModel,
  gpt: gptTaskModel,
}
