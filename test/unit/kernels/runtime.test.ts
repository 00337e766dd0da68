// Proves the runtime's promises: createBackend falls back to cpu and says why when no device can
// be had (a failing device factory is injected), the webgpu backend reports its adapter, caches
// pipelines, reuses pooled buffers, folds large 1-D dispatches under the per-dimension limit, and
// lets the process exit cleanly (code 0, no abort from a collected GPU object) after destroy(),
// checked in a real child process, and survives garbage collection of everything but the destroyed
// devices (Dawn aborts when its instance is collected while a device wrapper lives, which is why the
// runtime holds one instance per process). With webgpu 0.6.2 a process also exits without
// destroy(); the check guards against destroy() crashing or leaving the event loop busy.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackend } from '../../../kernels/index.js'
import { dispatch1d, dispatch2d } from '../../../kernels/runtime.js'
import { WebGpuBackend } from '../../../kernels/webgpu-backend.js'
import { openBackend } from './helpers.js'

const run = promisify(execFile)

describe('createBackend', () => {
  it('falls back to cpu and reports why when the device factory fails', async () => {
    const backend = await createBackend({
      prefer: 'webgpu',
      deviceFactory: async () => {
        throw new Error('no adapter (injected by the test)')
      },
    })
    expect(backend.kind).toBe('cpu')
    expect(backend.info.kind).toBe('cpu')
    expect(backend.info.fallbackReason).toContain('no adapter (injected by the test)')
    const x = backend.upload(Float32Array.of(-1, 1), [2])
    expect(await backend.read(backend.relu(x))).toEqual(Float32Array.of(0, 1))
    backend.destroy()
  })

  it('refuses an unknown backend preference', async () => {
    await expect(createBackend({ prefer: 'gpu' as 'webgpu' })).rejects.toThrow(TypeError)
  })

  it('gives the cpu backend without a fallback reason when cpu is asked for', async () => {
    const backend = await createBackend({ prefer: 'cpu' })
    expect(backend.kind).toBe('cpu')
    expect(backend.info.fallbackReason).toBeUndefined()
    backend.destroy()
  })
})

describe('dispatch sizes', () => {
  it('folds 1-D dispatches past maxComputeWorkgroupsPerDimension into two dimensions', () => {
    expect(dispatch1d(1000, 256)).toEqual([4, 1, 1])
    expect(dispatch1d(65535 * 256, 256)).toEqual([65535, 1, 1])
    const [x, y, z] = dispatch1d(65535 * 256 + 1, 256)
    expect(y).toBe(2)
    expect(z).toBe(1)
    expect(x).toBeLessThanOrEqual(65535)
    expect(x * y * 256).toBeGreaterThanOrEqual(65535 * 256 + 1)
    expect(() => dispatch2d(70000 * 16, 1, 16, 16)).toThrow(RangeError)
  })
})

describe('webgpu runtime', () => {
  let backend: WebGpuBackend

  beforeAll(async () => {
    const opened = await openBackend('webgpu')
    if (!(opened instanceof WebGpuBackend)) throw new Error('expected the webgpu backend')
    backend = opened
  })
  afterAll(() => {
    expect(backend.runtime.stats.deviceErrors).toBe(0)
    backend?.destroy()
  })

  it('reports the adapter and its limits', () => {
    expect(backend.info.kind).toBe('webgpu')
    expect(backend.info.adapterName.length).toBeGreaterThan(0)
    expect(typeof backend.info.isFallbackAdapter).toBe('boolean')
    // the adapter's limits were requested: more than the 128 MiB default binding size is not
    // guaranteed, but at least the default must be there
    expect(backend.info.maxBufferBytes).toBeGreaterThanOrEqual(128 * 1024 * 1024)
    expect(backend.runtime.description.maxComputeWorkgroupsPerDimension).toBeGreaterThanOrEqual(65535)
  })

  it('compiles a pipeline once and serves it from the cache afterwards', async () => {
    const x = backend.upload(Float32Array.of(1, -2, 3), [3])
    const first = backend.relu(x)
    const afterFirst = backend.runtime.stats
    const second = backend.relu(x)
    const afterSecond = backend.runtime.stats
    expect(afterSecond.pipelinesCompiled).toBe(afterFirst.pipelinesCompiled)
    expect(afterSecond.pipelineCacheHits).toBe(afterFirst.pipelineCacheHits + 1)
    expect(await backend.read(second)).toEqual(await backend.read(first))
    for (const tensor of [x, first, second]) tensor.dispose()
  })

  it('reuses a disposed tensor buffer for the next tensor of the same size', async () => {
    const a = backend.upload(new Float32Array(1000).fill(1), [10, 100])
    a.dispose()
    const before = backend.runtime.stats
    const b = backend.upload(new Float32Array(1000).fill(2), [100, 10])
    const after = backend.runtime.stats
    expect(after.buffersCreated).toBe(before.buffersCreated)
    expect(after.buffersReused).toBe(before.buffersReused + 1)
    expect(await backend.read(b)).toEqual(new Float32Array(1000).fill(2))
    b.dispose()
  })

  it('keeps results right when a buffer is disposed and reused while commands are pending', async () => {
    const first = Float32Array.from({ length: 4096 }, (_, i) => (i % 7) - 3)
    const second = Float32Array.from({ length: 4096 }, (_, i) => 100 + i)
    const x = backend.upload(first, [4096])
    const y = backend.relu(x) // enqueued, not yet submitted
    x.dispose()
    const reused = backend.upload(second, [4096]) // takes x's buffer from the pool: must flush first
    const z = backend.scale(y, 2)
    y.dispose()
    const w = backend.scale(reused, 1) // its output may take y's buffer, after z read it
    expect(await backend.read(z)).toEqual(Float32Array.from(first, (v) => 2 * Math.max(v, 0)))
    expect(await backend.read(w)).toEqual(second)
    for (const tensor of [reused, z, w]) tensor.dispose()
  })

  it('runs elementwise kernels over more than 65535 workgroups', async () => {
    const length = 65535 * 256 + 1000
    const data = new Float32Array(length)
    for (let i = 0; i < length; i++) data[i] = i % 2 === 0 ? -(i % 1000) : i % 1000
    const x = backend.upload(data, [length])
    const y = backend.relu(x)
    const out = await backend.read(y)
    let wrong = 0
    for (let i = 0; i < length; i++) if (out[i] !== Math.max(data[i], 0)) wrong++
    expect(wrong).toBe(0)
    x.dispose()
    y.dispose()
  })
})

describe('process lifetime', () => {
  it('exits on its own after destroy()', async () => {
    const script = fileURLToPath(new URL('./fixtures/exit-after-destroy.ts', import.meta.url))
    const { stdout } = await run(process.execPath, ['--import', 'tsx', script], { timeout: 45_000 })
    expect(JSON.parse(stdout.trim().split('\n').at(-1) ?? '')).toEqual({ kind: 'webgpu', relu: [0, 2, 0, 4] })
  })

  it('survives garbage collection while destroyed devices are still referenced', async () => {
    const script = fileURLToPath(new URL('./fixtures/gc-after-destroy.ts', import.meta.url))
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', script], {
      timeout: 45_000,
    })
    expect(JSON.parse(stdout.trim().split('\n').at(-1) ?? '')).toEqual({ rounds: 3, sums: [7, 8] })
  })
})
