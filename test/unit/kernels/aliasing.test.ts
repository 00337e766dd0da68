// Proves an in-place op refuses one tensor passed as two of its operands (AliasedTensorError) on
// both backends, before anything is enqueued: on webgpu the same buffer bound as read and
// read_write invalidates the whole pending command buffer, and Dawn drops it (earlier ops' results
// included) without an error the caller sees. Ops that allocate their output only read their inputs,
// so repeating an input there is allowed; those are checked against distinct copies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AliasedTensorError, type Backend, type Tensor } from '../../../kernels/index.js'
import { runAxpy } from '../../../kernels/ops/elementwise.js'
import { WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { BACKENDS, openBackend, randomArray, seededRandom } from './helpers.js'

describe.each(BACKENDS)('%s backend refuses aliased in-place operands', (name) => {
  let backend: Backend
  const random = seededRandom(99)
  const live: Tensor[] = []
  const tensor = (data: Float32Array, shape: readonly number[] = [data.length]) => {
    const t = backend.upload(data, shape)
    live.push(t)
    return t
  }
  const deviceErrors = () => (backend instanceof WebGpuBackend ? backend.runtime.stats.deviceErrors : 0)

  beforeAll(async () => {
    backend = await openBackend(name)
  })
  afterAll(() => {
    for (const t of live) t.dispose()
    backend.destroy()
  })

  it('axpyInPlace(alpha, y, y) throws and leaves the pending work intact', async () => {
    const data = randomArray(random, 300)
    const y = tensor(data)
    // enqueued before the refused call: on webgpu it sits in the same pending command buffer
    const doubled = backend.scale(y, 2)
    live.push(doubled)
    const errorsBefore = deviceErrors()
    expect(() => backend.axpyInPlace(1, y, y)).toThrow(AliasedTensorError)
    expect(() => backend.axpyInPlace(1, y, y)).toThrow(/axpyInPlace: x and y are the same tensor/)
    expect(await backend.read(doubled)).toEqual(data.map((v) => Math.fround(v * 2)))
    expect(await backend.read(y)).toEqual(data)
    expect(deviceErrors()).toBe(errorsBefore)
  })

  it('sgdMomentumInPlace refuses every pair of shared operands', async () => {
    const [a, b] = [tensor(randomArray(random, 50)), tensor(randomArray(random, 50))]
    const before = await backend.read(a)
    const options = { learningRate: 0.1, momentum: 0.9 }
    for (const [param, grad, velocity] of [
      [a, a, b],
      [a, b, a],
      [b, a, a],
      [a, a, a],
    ]) {
      expect(() => backend.sgdMomentumInPlace(param, grad, velocity, options)).toThrow(AliasedTensorError)
    }
    expect(await backend.read(a)).toEqual(before)
  })

  it('adamWInPlace refuses every pair of shared operands', async () => {
    const operands = [0, 1, 2, 3].map(() => tensor(randomArray(random, 40)))
    const before = await Promise.all(operands.map((t) => backend.read(t)))
    const options = { learningRate: 0.01, step: 1 }
    for (let i = 0; i < 4; i++) {
      for (let j = i + 1; j < 4; j++) {
        const args = [...operands]
        args[j] = args[i]
        expect(() => backend.adamWInPlace(args[0], args[1], args[2], args[3], options), `${i},${j}`).toThrow(
          AliasedTensorError,
        )
      }
    }
    expect(await Promise.all(operands.map((t) => backend.read(t)))).toEqual(before)
  })

  it('distinct operands of the same shape still work', async () => {
    const x = tensor(Float32Array.of(1, 2, 3))
    const y = tensor(Float32Array.of(10, 20, 30))
    backend.axpyInPlace(2, x, y)
    expect(await backend.read(y)).toEqual(Float32Array.of(12, 24, 36))
  })

  it('ops that allocate their output accept a repeated input, as with distinct copies', async () => {
    const errorsBefore = deviceErrors()
    const data = randomArray(random, 6 * 6)
    const a = tensor(data, [6, 6])
    const copy = tensor(data, [6, 6])
    const row = tensor(data.slice(0, 6), [6])
    const pairs: [string, Tensor, Tensor][] = [
      ['add', backend.add(a, a), backend.add(a, copy)],
      ['matmul', backend.matmul(a, a), backend.matmul(a, copy)],
      ['matmul^T', backend.matmul(a, a, { transposeB: true }), backend.matmul(a, copy, { transposeB: true })],
      ['biasAdd', backend.biasAdd(row, row), backend.biasAdd(tensor(data.slice(0, 6), [6]), row)],
      ['reluBackward', backend.reluBackward(a, a), backend.reluBackward(copy, a)],
      ['geluBackward', backend.geluBackward(a, a), backend.geluBackward(copy, a)],
      [
        'attentionCached',
        backend.attentionCached(a, a, a, { heads: 2, offset: 0 }),
        backend.attentionCached(a, copy, tensor(data, [6, 6]), { heads: 2, offset: 0 }),
      ],
    ]
    for (const [op, aliased, distinct] of pairs) {
      live.push(aliased, distinct)
      expect(await backend.read(aliased), op).toEqual(await backend.read(distinct))
    }
    expect(deviceErrors()).toBe(errorsBefore)
  })
})

describe('why: webgpu without the check', () => {
  it('one aliased dispatch makes Dawn drop the earlier work of its batch', async () => {
    const backend = await openBackend('webgpu')
    try {
      if (!(backend instanceof WebGpuBackend)) throw new Error('expected webgpu')
      const y = backend.upload(Float32Array.of(1, 2, 3, 4), [4])
      const doubled = backend.scale(y, 2)
      const buffer = (y as unknown as { buffer: GPUBuffer }).buffer
      runAxpy(backend.runtime, 1, buffer, buffer, 4)
      const result = await backend.read(doubled)
      await backend.sync()
      // the scale before it never ran: its output is whatever the pooled buffer held, not 2y
      expect(backend.runtime.stats.deviceErrors).toBeGreaterThan(0)
      expect(result).not.toEqual(Float32Array.of(2, 4, 6, 8))
    } finally {
      backend.destroy()
    }
  })
})
