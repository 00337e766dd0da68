// Proves the start-up capability measurement: the plain TypeScript matmul computes the right product
// (checked against the textbook triple loop) and the cpu probe reports a positive, finite GFLOP/s; the
// daemon's default probe measures the real backends (cpu, and WebGPU on the installed driver).
import { describe, expect, it } from 'vitest'
import { createBackend } from '../../../kernels/index.js'
import {
  backendProbe,
  plainCpuProbe,
  plainMatmul,
  timePlainMatmul,
} from '../../../node/executor/capability.js'

function textbookMatmul(a: Float32Array, b: Float32Array, n: number): Float64Array {
  const c = new Float64Array(n * n)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0
      for (let k = 0; k < n; k++) sum += a[i * n + k] * b[k * n + j]
      c[i * n + j] = sum
    }
  }
  return c
}

describe('capability measurement', () => {
  it('multiplies matrices correctly', () => {
    const n = 17
    const a = Float32Array.from({ length: n * n }, (_, index) => Math.sin(index))
    const b = Float32Array.from({ length: n * n }, (_, index) => Math.cos(index * 0.5))
    const expected = textbookMatmul(a, b, n)
    const actual = plainMatmul(a, b, n)
    for (let index = 0; index < expected.length; index++) {
      expect(Math.abs(actual[index] - expected[index])).toBeLessThanOrEqual(
        1e-5 + 1e-5 * Math.abs(expected[index]),
      )
    }
  })

  it('times a matmul and reports GFLOP/s from 2 n^3 operations', () => {
    const timing = timePlainMatmul(32, 2)
    expect(timing.seconds).toBeGreaterThan(0)
    expect(timing.gflops).toBeCloseTo((2 * 32 ** 3) / timing.seconds / 1e9, 6)
  })

  it('describes a cpu node', async () => {
    const capability = await plainCpuProbe({ size: 64, repeats: 1 }).measure()
    expect(capability.backend).toBe('cpu')
    expect(capability.matmulSize).toBe(64)
    expect(Number.isFinite(capability.matmulGflops) && capability.matmulGflops > 0).toBe(true)
    expect(capability.memoryBytes).toBeGreaterThan(0)
  })

  it('measures the cpu backend through the kernels contract', async () => {
    const capability = await backendProbe({
      openBackend: () => createBackend({ prefer: 'cpu' }),
      size: 64,
      repeats: 1,
    }).measure()
    expect(capability.backend).toBe('cpu')
    expect(capability.adapterName).toContain('cpu')
    expect(capability.isFallbackAdapter).toBe(true)
    expect(Number.isFinite(capability.matmulGflops) && capability.matmulGflops > 0).toBe(true)
  })

  it('measures the WebGPU adapter, or says why it fell back to cpu', async () => {
    const capability = await backendProbe({
      openBackend: () => createBackend({ prefer: 'webgpu' }),
      size: 128,
      repeats: 1,
    }).measure()
    if (capability.backend === 'webgpu') {
      expect(capability.adapterName.length).toBeGreaterThan(0)
      expect(capability.maxBufferBytes).toBeGreaterThanOrEqual(128 * 1024 * 1024)
      expect(capability.fallbackReason).toBeUndefined()
    } else {
      expect(capability.fallbackReason).toMatch(/webgpu/)
    }
    expect(Number.isFinite(capability.matmulGflops) && capability.matmulGflops > 0).toBe(true)
  })
})
