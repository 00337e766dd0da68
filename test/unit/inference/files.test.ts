// Proves the inference input and model-bundle formats (node/tasks/infer-files.ts): the three accepted
// input shapes parse to the same rows, every malformed input is refused with one clear sentence, and a
// model directory round-trips through its bundle block while corrupt bundles are refused; with real
// files in a temp dir.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PIXEL_COUNT } from '../../../kernels/data/mnist.js'
import { initialHostLayers, type MlpArchitecture, parameterCount } from '../../../kernels/models/mlp.js'
import { saveModel } from '../../../node/executor/model-files.js'
import {
  decodeModelBundle,
  InferenceInputError,
  parseInputs,
  readInputFile,
  readModelBundle,
} from '../../../node/tasks/infer-files.js'

const row = (v: number) => Array.from({ length: PIXEL_COUNT }, () => v)

describe('input files', () => {
  let folder: string
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-infer-files-'))
  })
  afterAll(() => rm(folder, { recursive: true, force: true }))

  it('accepts {inputs}, {images} and a bare array alike', () => {
    const rows = [row(0), row(0.5)]
    const a = parseInputs({ inputs: rows })
    expect(a.rows).toBe(2)
    expect(a.values[PIXEL_COUNT]).toBe(0.5)
    expect(parseInputs({ images: rows }).values).toEqual(a.values)
    expect(parseInputs(rows).values).toEqual(a.values)
  })

  it.each([
    [{ inputs: [] }, /no input rows/],
    [{ rows: [row(0)] }, /must hold/],
    [{ inputs: [[1, 2, 3]] }, /row 0 .* 784 numbers, got 3 values/],
    [{ inputs: [row(0), 'x'] }, /row 1 .* got string/],
    [{ inputs: [[...row(0).slice(1), null]] }, /not a finite number at 783/],
    [42, /must hold/],
  ])('refuses %#', (value, message) => {
    expect(() => parseInputs(value)).toThrow(InferenceInputError)
    expect(() => parseInputs(value)).toThrow(message)
  })

  it('refuses a missing file and invalid JSON with one sentence', async () => {
    await expect(readInputFile(join(folder, 'nope.json'))).rejects.toThrow(
      /cannot read the input file .*ENOENT/,
    )
    const bad = join(folder, 'bad.json')
    await writeFile(bad, '{"inputs": [')
    await expect(readInputFile(bad)).rejects.toThrow(/is not valid JSON/)
  })

  it('round-trips a model directory through its bundle and refuses corrupt bundles', async () => {
    const architecture: MlpArchitecture = { inputSize: PIXEL_COUNT, hiddenSizes: [8], outputSize: 10 }
    const layers = initialHostLayers(architecture, 3)
    const dir = join(folder, 'model')
    await saveModel(dir, architecture, layers, {
      model: 'mnist-mlp',
      architecture: { type: 'mlp', activation: 'relu', ...architecture, hiddenSizes: [8] },
      parameterCount: parameterCount(architecture),
      dataset: {},
      seed: 3,
      training: {},
      backend: {},
      metrics: { testAccuracy: 0, testLoss: 0 },
      history: [],
      createdAt: new Date(0).toISOString(),
    })
    const bundle = await readModelBundle(dir)
    const decoded = decodeModelBundle(bundle)
    expect(decoded.architecture).toEqual(architecture)
    expect(decoded.layers[0].weight).toEqual(layers[0].weight)
    expect(decoded.manifest.model).toBe('mnist-mlp')
    expect(() => decodeModelBundle(bundle.subarray(0, 7))).toThrow(/not a shardnet model bundle/)
    expect(() => decodeModelBundle(Uint8Array.from([0x53, 0x4e, 0x4d, 0x42, 255, 255, 0, 0]))).toThrow(
      /truncated/,
    )
    const cut = bundle.slice(0, bundle.byteLength - 100)
    expect(() => decodeModelBundle(cut)).toThrow(/weights are unusable/)
  })
})
