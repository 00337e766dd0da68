// Proves the MLP's backward pass is right for the WHOLE model: the gradients it computes on each
// backend match central finite differences of an independent float64 implementation of the same
// loss (mean softmax cross-entropy of Linear-ReLU-...-Linear), at the same float32 parameters.
// Finite differences in float64 with eps = 1e-6 are exact to about 1e-9, so the tolerance
// |analytic - numeric| <= 2e-6 + 1e-3 * |numeric| measures the float32 error of the backend alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadMnist, PIXEL_COUNT, SeededRandom } from '../../../kernels/data/index.js'
import type { Backend } from '../../../kernels/index.js'
import {
  type HostLayer,
  initialHostLayers,
  Mlp,
  type MlpArchitecture,
  transpose,
} from '../../../kernels/models/index.js'
import { backendKindsUnderTest, createBackendUnderTest } from './backends.js'

const EPSILON = 1e-6
const ABSOLUTE_TOLERANCE = 2e-6
const RELATIVE_TOLERANCE = 1e-3

interface Float64Layer {
  /** [out, in] */
  weight: Float64Array
  bias: Float64Array
}

/** Mean cross-entropy of an MLP in plain float64 loops (the oracle; shares no code with the model). */
function meanLossFloat64(
  layers: Float64Layer[],
  x: Float32Array,
  labels: Float32Array,
  rows: number,
): number {
  let activation = Float64Array.from(x)
  let width = x.length / rows
  for (let l = 0; l < layers.length; l++) {
    const outWidth = layers[l].bias.length
    const next = new Float64Array(rows * outWidth)
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < outWidth; o++) {
        let total = layers[l].bias[o]
        for (let i = 0; i < width; i++) total += activation[r * width + i] * layers[l].weight[o * width + i]
        next[r * outWidth + o] = l < layers.length - 1 ? Math.max(0, total) : total
      }
    }
    activation = next
    width = outWidth
  }
  let lossTotal = 0
  for (let r = 0; r < rows; r++) {
    let max = Number.NEGATIVE_INFINITY
    for (let c = 0; c < width; c++) max = Math.max(max, activation[r * width + c])
    let sumExp = 0
    for (let c = 0; c < width; c++) sumExp += Math.exp(activation[r * width + c] - max)
    lossTotal += Math.log(sumExp) + max - activation[r * width + labels[r]]
  }
  return lossTotal / rows
}

interface Coordinate {
  layer: number
  tensor: 'weight' | 'bias'
  index: number
}

async function checkGradients(
  backend: Backend,
  architecture: MlpArchitecture,
  hostLayers: HostLayer[],
  x: Float32Array,
  labels: Float32Array,
  coordinates: Coordinate[],
): Promise<{ checked: number; worst: number }> {
  const rows = labels.length
  const model = Mlp.fromHost(backend, architecture, hostLayers)
  const xTensor = backend.upload(x, [rows, architecture.inputSize])
  const yTensor = backend.upload(labels, [rows])
  const result = model.lossAndGradients(xTensor, yTensor)
  const sizes = [architecture.inputSize, ...architecture.hiddenSizes, architecture.outputSize]
  // device weight gradients are [in,out]; bring them to the [out,in] layout of hostLayers
  const analytic = await Promise.all(
    result.layers.map(async (layer, l) => ({
      weight: transpose(await backend.read(layer.weight), sizes[l], sizes[l + 1]),
      bias: await backend.read(layer.bias),
    })),
  )
  const losses = await backend.read(result.loss)
  const float64Layers = hostLayers.map((layer) => ({
    weight: Float64Array.from(layer.weight),
    bias: Float64Array.from(layer.bias),
  }))
  // the backend computes the same function as the oracle
  const backendMeanLoss = losses.reduce((total, value) => total + value, 0) / rows
  const oracleLoss = meanLossFloat64(float64Layers, x, labels, rows)
  expect(Math.abs(backendMeanLoss - oracleLoss)).toBeLessThanOrEqual(1e-5 * Math.max(1, oracleLoss))
  let worst = 0
  const mismatches: string[] = []
  for (const { layer, tensor, index } of coordinates) {
    const values = float64Layers[layer][tensor]
    const original = values[index]
    values[index] = original + EPSILON
    const lossPlus = meanLossFloat64(float64Layers, x, labels, rows)
    values[index] = original - EPSILON
    const lossMinus = meanLossFloat64(float64Layers, x, labels, rows)
    values[index] = original
    const numeric = (lossPlus - lossMinus) / (2 * EPSILON)
    const computed = analytic[layer][tensor][index]
    const error = Math.abs(computed - numeric)
    const allowed = ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * Math.abs(numeric)
    worst = Math.max(worst, error / allowed)
    if (error > allowed && mismatches.length < 5) {
      mismatches.push(`layers.${layer}.${tensor}[${index}]: analytic ${computed}, numeric ${numeric}`)
    }
  }
  for (const tensor of [
    xTensor,
    yTensor,
    result.loss,
    result.logits,
    ...result.layers.flatMap((l) => [l.weight, l.bias]),
  ]) {
    tensor.dispose()
  }
  model.dispose()
  expect(mismatches).toEqual([])
  if (process.env.SHARDNET_TEST_VERBOSE) console.log(`worst error / allowed: ${worst.toFixed(3)}`)
  return { checked: coordinates.length, worst }
}

describe.each(backendKindsUnderTest())('MLP gradients on the %s backend', (kind) => {
  let backend: Backend
  beforeAll(async () => {
    backend = await createBackendUnderTest(kind)
  })
  afterAll(() => backend?.destroy())

  it('match finite differences for every parameter of a small two-hidden-layer MLP', async () => {
    const architecture = { inputSize: 9, hiddenSizes: [7, 5], outputSize: 4 }
    const random = new SeededRandom(11)
    const rows = 6
    const x = Float32Array.from({ length: rows * 9 }, () => random.normal())
    const labels = Float32Array.from({ length: rows }, () => random.int(0, 3))
    const hostLayers = initialHostLayers(architecture, 5)
    // non-zero biases so the bias paths are exercised away from the init
    for (const layer of hostLayers)
      for (let i = 0; i < layer.bias.length; i++) layer.bias[i] = random.normal() * 0.1
    const coordinates: Coordinate[] = hostLayers.flatMap((layer, l) => [
      ...Array.from(layer.weight, (_, index) => ({ layer: l, tensor: 'weight' as const, index })),
      ...Array.from(layer.bias, (_, index) => ({ layer: l, tensor: 'bias' as const, index })),
    ])
    const { checked } = await checkGradients(backend, architecture, hostLayers, x, labels, coordinates)
    expect(checked).toBe(9 * 7 + 7 + 7 * 5 + 5 + 5 * 4 + 4)
  })

  it('match finite differences on sampled parameters of the 784-256-10 model on real digits', async () => {
    const architecture = { inputSize: PIXEL_COUNT, hiddenSizes: [256], outputSize: 10 }
    const { train } = await loadMnist()
    const rows = 8
    const random = new SeededRandom(3)
    const picks = Array.from({ length: rows }, () => random.int(0, train.count - 1))
    const x = new Float32Array(rows * PIXEL_COUNT)
    picks.forEach((sample, row) => {
      x.set(train.images.subarray(sample * PIXEL_COUNT, (sample + 1) * PIXEL_COUNT), row * PIXEL_COUNT)
    })
    const labels = Float32Array.from(picks, (sample) => train.labels[sample])
    const hostLayers = initialHostLayers(architecture, 1)
    // sample weights of layer 0 only where this batch has ink (elsewhere the gradient is exactly 0,
    // which a few zero-gradient samples also check)
    const inked: number[] = []
    for (let pixel = 0; pixel < PIXEL_COUNT; pixel++) {
      if (picks.some((_, row) => x[row * PIXEL_COUNT + pixel] > 0)) inked.push(pixel)
    }
    const coordinates: Coordinate[] = []
    for (let i = 0; i < 150; i++) {
      const unit = random.int(0, 255)
      coordinates.push({
        layer: 0,
        tensor: 'weight',
        index: unit * PIXEL_COUNT + inked[random.int(0, inked.length - 1)],
      })
    }
    for (let i = 0; i < 10; i++)
      coordinates.push({ layer: 0, tensor: 'weight', index: random.int(0, 256 * PIXEL_COUNT - 1) })
    for (let i = 0; i < 40; i++) coordinates.push({ layer: 0, tensor: 'bias', index: random.int(0, 255) })
    for (let i = 0; i < 150; i++)
      coordinates.push({ layer: 1, tensor: 'weight', index: random.int(0, 10 * 256 - 1) })
    for (let i = 0; i < 10; i++) coordinates.push({ layer: 1, tensor: 'bias', index: i })
    const { checked } = await checkGradients(backend, architecture, hostLayers, x, labels, coordinates)
    expect(checked).toBe(360)
  })
})
