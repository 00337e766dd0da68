// Proves the MNIST loader reads the real `mnist` package files into the documented fixed split
// (per class, the last floor(20%) are test: 8,004 train and 1,996 test digits), that the split is
// the same on every load, and that malformed digit files are refused with a DatasetError.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  DatasetError,
  defaultDigitsDirectory,
  loadMnist,
  MNIST_TEST_COUNT,
  MNIST_TRAIN_COUNT,
  type MnistSplit,
  PIXEL_COUNT,
} from '../../../kernels/data/index.js'

describe('loadMnist', () => {
  let split: MnistSplit
  beforeAll(async () => {
    split = await loadMnist()
  })

  it('splits 10,000 digits into 8,004 train and 1,996 test', () => {
    expect(MNIST_TRAIN_COUNT).toBe(8004)
    expect(MNIST_TEST_COUNT).toBe(1996)
    expect(split.train.count).toBe(8004)
    expect(split.test.count).toBe(1996)
    expect(split.train.images.length).toBe(8004 * PIXEL_COUNT)
    expect(split.test.labels.length).toBe(1996)
    expect(split.split.perClass).toEqual([
      [801, 200],
      [902, 225],
      [793, 198],
      [826, 206],
      [784, 196],
      [691, 172],
      [812, 202],
      [856, 214],
      [756, 188],
      [783, 195],
    ])
  })

  it('takes the last 20% of each class, in package order, as the test set', async () => {
    const raw = JSON.parse(await readFile(join(defaultDigitsDirectory(), '3.json'), 'utf8')).data as number[]
    const classCount = raw.length / PIXEL_COUNT // 1032 threes
    const testCount = Math.floor(classCount * 0.2) // 206
    // first test three = sample (classCount - testCount) of the class file
    const firstTestThree = split.test.labels.indexOf(3)
    const expected = Float32Array.from(
      raw.slice((classCount - testCount) * PIXEL_COUNT, (classCount - testCount + 1) * PIXEL_COUNT),
    )
    expect(
      split.test.images.subarray(firstTestThree * PIXEL_COUNT, (firstTestThree + 1) * PIXEL_COUNT),
    ).toEqual(expected)
    // last train three = sample classCount - testCount - 1
    const lastTrainThree = split.train.labels.lastIndexOf(3)
    const expectedTrain = Float32Array.from(
      raw.slice((classCount - testCount - 1) * PIXEL_COUNT, (classCount - testCount) * PIXEL_COUNT),
    )
    expect(
      split.train.images.subarray(lastTrainThree * PIXEL_COUNT, (lastTrainThree + 1) * PIXEL_COUNT),
    ).toEqual(expectedTrain)
  })

  it('gives identical data on every load', async () => {
    const again = await loadMnist()
    // compare bytes: vitest's deep equality is slow on millions of elements
    const bytes = (array: Float32Array | Uint8Array) =>
      Buffer.from(array.buffer, array.byteOffset, array.byteLength)
    expect(bytes(again.train.images).equals(bytes(split.train.images))).toBe(true)
    expect(bytes(again.test.images).equals(bytes(split.test.images))).toBe(true)
    expect(bytes(again.train.labels).equals(bytes(split.train.labels))).toBe(true)
    expect(bytes(again.test.labels).equals(bytes(split.test.labels))).toBe(true)
  })

  it('keeps pixels in [0, 1] and labels in 0..9', () => {
    let inRange = true
    for (const value of split.train.images) inRange &&= value >= 0 && value <= 1
    expect(inRange).toBe(true)
    expect(split.train.labels.every((label) => label <= 9)).toBe(true)
  })
})

describe('loadMnist with malformed files', () => {
  let directory: string
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'shardnet-mnist-'))
  })
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true })
  })

  async function writeClasses(makeData: (digitClass: number) => unknown): Promise<void> {
    for (let digitClass = 0; digitClass < 10; digitClass++) {
      await writeFile(join(directory, `${digitClass}.json`), JSON.stringify({ data: makeData(digitClass) }))
    }
  }

  it('loads a well-formed custom directory with the same split rule', async () => {
    await writeClasses(() => new Array(PIXEL_COUNT * 5).fill(0.5))
    const split = await loadMnist({ digitsDirectory: directory })
    expect(split.train.count).toBe(40)
    expect(split.test.count).toBe(10)
  })

  it.each([
    ['a NaN pixel (written as null by JSON)', () => [null, ...new Array(PIXEL_COUNT - 1).fill(0)]],
    ['a pixel above 1', () => [2, ...new Array(PIXEL_COUNT - 1).fill(0)]],
    ['a length that is not a multiple of 784', () => new Array(PIXEL_COUNT + 3).fill(0)],
    ['a string pixel', () => ['0.5', ...new Array(PIXEL_COUNT - 1).fill(0)]],
  ])('refuses %s', async (_name, makeData) => {
    await writeClasses((digitClass) => (digitClass === 4 ? makeData() : new Array(PIXEL_COUNT).fill(0)))
    await expect(loadMnist({ digitsDirectory: directory })).rejects.toBeInstanceOf(DatasetError)
  })

  it('refuses digits too few to leave a test set', async () => {
    await writeClasses(() => new Array(PIXEL_COUNT * 4).fill(0.5))
    await expect(loadMnist({ digitsDirectory: directory })).rejects.toThrow(/too few for a test set/)
  })

  it('refuses a file that is not JSON and a missing file', async () => {
    await writeClasses(() => new Array(PIXEL_COUNT).fill(0))
    await writeFile(join(directory, '7.json'), '{"data": [0, 0,')
    await expect(loadMnist({ digitsDirectory: directory })).rejects.toThrow(/not valid JSON/)
    await rm(join(directory, '7.json'))
    await expect(loadMnist({ digitsDirectory: directory })).rejects.toThrow(/cannot read/)
  })
})
