// The submitter's side of task data: load MNIST (or a user's --data file), cut the training samples
// into one shard per group with the task seed, and encode each shard and the test set as a dataset
// block (protocols/tasks/dataset.ts). Workers fetch only their group's shard and verify it by CID.
//
// The --data file format (JSON, at most DATA_FILE_BYTES_MAX):
//   { "images": [[784 numbers in 0..1], ...], "labels": [digit 0..9, ...] }
// The last 20% of the samples (rounded down, at least 1) are held out as the test set; the rest train.
import { readFile, stat } from 'node:fs/promises'
import { CLASS_COUNT, type Dataset, loadMnist, PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { shardIndices } from '../../kernels/data/sharding.js'
import { type DatasetBlock, encodeDatasetBlock } from '../../protocols/tasks/dataset.js'

export const DATA_FILE_BYTES_MAX = 512 * 1024 * 1024
export const DATA_FILE_SAMPLES_MAX = 1_000_000

/** A --data file the user must fix; the message is one sentence naming the problem. */
export class DataFileError extends Error {
  static override name = 'DataFileError'
  override name = 'DataFileError'
}

export interface TaskData {
  name: 'mnist' | 'custom'
  train: Dataset
  test: Dataset
}

export async function loadTaskData(dataFile: string | undefined): Promise<TaskData> {
  if (dataFile === undefined) {
    const split = await loadMnist()
    return { name: 'mnist', train: split.train, test: split.test }
  }
  const info = await stat(dataFile).catch(() => undefined)
  if (info === undefined || !info.isFile())
    throw new DataFileError(`the data file ${dataFile} does not exist`)
  if (info.size > DATA_FILE_BYTES_MAX) {
    throw new DataFileError(
      `the data file ${dataFile} is ${info.size} bytes, above the limit of ${DATA_FILE_BYTES_MAX}`,
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(dataFile, 'utf8'))
  } catch {
    throw new DataFileError(`the data file ${dataFile} is not valid JSON`)
  }
  const { images, labels } = (parsed ?? {}) as { images?: unknown; labels?: unknown }
  if (!Array.isArray(images) || !Array.isArray(labels)) {
    throw new DataFileError(
      `the data file ${dataFile} must hold {"images": [[...784 pixels], ...], "labels": [...]}`,
    )
  }
  if (images.length !== labels.length) {
    throw new DataFileError(`the data file has ${images.length} images but ${labels.length} labels`)
  }
  if (images.length < 2 || images.length > DATA_FILE_SAMPLES_MAX) {
    throw new DataFileError(
      `the data file must hold 2 to ${DATA_FILE_SAMPLES_MAX} samples, got ${images.length}`,
    )
  }
  const count = images.length
  const all = { images: new Float32Array(count * PIXEL_COUNT), labels: new Uint8Array(count) }
  for (let i = 0; i < count; i++) {
    const image = images[i]
    if (!Array.isArray(image) || image.length !== PIXEL_COUNT) {
      throw new DataFileError(`image ${i} of the data file must be a list of ${PIXEL_COUNT} pixels`)
    }
    for (let p = 0; p < PIXEL_COUNT; p++) {
      const value = image[p]
      if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
        throw new DataFileError(
          `image ${i} of the data file has pixel ${p} = ${JSON.stringify(value)}; ` +
            `pixels are numbers in [0, 1]`,
        )
      }
      all.images[i * PIXEL_COUNT + p] = value
    }
    const label = labels[i]
    if (!Number.isInteger(label) || label < 0 || label >= CLASS_COUNT) {
      throw new DataFileError(
        `label ${i} of the data file is ${JSON.stringify(label)}; labels are digits 0 to 9`,
      )
    }
    all.labels[i] = label
  }
  const testCount = Math.max(1, Math.floor(count * 0.2))
  const trainCount = count - testCount
  return {
    name: 'custom',
    train: {
      images: all.images.subarray(0, trainCount * PIXEL_COUNT),
      labels: all.labels.subarray(0, trainCount),
      count: trainCount,
    },
    test: {
      images: all.images.subarray(trainCount * PIXEL_COUNT),
      labels: all.labels.subarray(trainCount),
      count: testCount,
    },
  }
}

function gather(dataset: Dataset, indices: Uint32Array): DatasetBlock {
  const images = new Float32Array(indices.length * PIXEL_COUNT)
  const labels = new Uint8Array(indices.length)
  for (let row = 0; row < indices.length; row++) {
    const sample = indices[row]
    images.set(dataset.images.subarray(sample * PIXEL_COUNT, (sample + 1) * PIXEL_COUNT), row * PIXEL_COUNT)
    labels[row] = dataset.labels[sample]
  }
  return { images, labels, count: indices.length, features: PIXEL_COUNT }
}

/** One encoded block per group (disjoint, seeded) plus the test block. */
export function encodeTaskData(
  data: TaskData,
  groups: number,
  seed: number,
): { shards: Uint8Array[]; test: Uint8Array } {
  if (data.train.count < groups) {
    throw new DataFileError(`${data.train.count} training samples cannot be split into ${groups} groups`)
  }
  const shards = Array.from({ length: groups }, (_, group) =>
    encodeDatasetBlock(gather(data.train, shardIndices(data.train.count, groups, group, seed))),
  )
  const test = encodeDatasetBlock({ ...data.test, features: PIXEL_COUNT })
  return { shards, test }
}
