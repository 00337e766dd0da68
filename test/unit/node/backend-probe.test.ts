// Proves how a node chooses its backend: every backend that opens is timed and the fastest wins
// (fake backends whose speed is set by a delay in sync(), so the oracle is the delay, not the
// code under test), a pin wins even where it is slower, a valid cache skips measuring, and a
// corrupt, foreign-machine or other-format cache is ignored and rewritten. One test measures the
// real backends of this machine.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Backend, BackendKind, Tensor } from '../../../kernels/backend.js'
import type { CpuEngineName } from '../../../kernels/cpu/engine.js'
import { CpuBackend } from '../../../kernels/cpu-backend.js'
import { nativeEngineError } from '../../../kernels/index.js'
import {
  BACKEND_PROBE_FILE,
  type BackendProbeResult,
  BackendUnavailableError,
  capabilityOf,
  chooseBackend,
  type MachineKey,
  type MeasuredBackend,
  machineKey,
  type ProbeTarget,
  probeBackends,
  readProbeCache,
} from '../../../node/executor/backend-probe.js'

const dirs: string[] = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shardnet-probe-'))
  dirs.push(dir)
  return dir
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** a reference cpu backend that calls itself `kind`/`engine` and takes `delayMs` longer per sync */
function fakeBackend(kind: BackendKind, engine: CpuEngineName | undefined, delayMs: number): Backend {
  const inner = new CpuBackend({ engine: 'reference' })
  const info = {
    ...inner.info,
    kind,
    adapterName: `fake ${kind}${engine === undefined ? '' : ` ${engine}`}`,
    ...(engine === undefined ? { cpuEngine: undefined } : { cpuEngine: engine }),
  }
  return new Proxy(inner, {
    get(target, property) {
      if (property === 'kind') return kind
      if (property === 'info') return info
      if (property === 'sync')
        return async () => {
          await target.sync()
          await sleep(delayMs)
        }
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  }) as Backend
}

interface FakeTargets {
  targets: ProbeTarget[]
  opened: string[]
}

/** targets named like the real ones; a delay of `null` makes the target fail to open */
function fakeTargets(delays: { native?: number | null; reference?: number | null; webgpu?: number | null }) {
  const opened: string[] = []
  const target = (
    backend: BackendKind,
    engine: CpuEngineName | undefined,
    delay: number | null | undefined,
  ) => ({
    backend,
    ...(engine === undefined ? {} : { engine }),
    open: async () => {
      opened.push(engine ?? backend)
      if (delay == null) throw new Error(`${engine ?? backend} is not here`)
      return fakeBackend(backend, engine, delay)
    },
  })
  const result: FakeTargets = {
    opened,
    targets: [
      target('cpu', 'native', delays.native),
      target('cpu', 'reference', delays.reference),
      target('webgpu', undefined, delays.webgpu),
    ],
  }
  return result
}

const MACHINE: MachineKey = {
  cpuModel: 'test cpu',
  cores: 2,
  memoryBytes: 8 * 1024 ** 3,
  arch: 'x64',
  platform: 'linux',
  node: 'v20.0.0',
  nativeEngine: 'test blas, 2 threads',
  wasmEngine: '4.22.0',
  webgpu: '0.6.2',
}

// tiny products: the fake delays (milliseconds) dwarf the matmul itself; caching must not depend on
// how busy the machine running the tests is
const FAST = { size: 8, repeats: 2, busyLoadAverage: Number.POSITIVE_INFINITY }

describe('backend choice', () => {
  it('measures every backend that opens and computes on the fastest', async () => {
    const { targets, opened } = fakeTargets({ native: 2, reference: 60, webgpu: 20 })
    const probed = await probeBackends({ targets, machine: MACHINE, ...FAST })
    expect(opened).toEqual(['native', 'reference', 'webgpu'])
    expect(probed.source).toBe('measured')
    // fastest first, by the delays
    expect(probed.result.measured.map((m) => m.engine ?? m.backend)).toEqual([
      'native',
      'webgpu',
      'reference',
    ])
    const capability = capabilityOf(probed)
    expect(capability.backend).toBe('cpu')
    expect(capability.cpuEngine).toBe('native')
    expect(capability.chosenBy).toBe('fastest')
    expect(capability.matmulSize).toBe(8)
    expect(capability.backends.filter((b) => b.inUse).map((b) => b.engine)).toEqual(['native'])
    expect(capability.matmulGflops).toBe(capability.backends[0].matmulGflops)
    // 2 n^3 flops in at least the delay: an upper bound the figure must respect
    for (const figure of capability.backends)
      expect(figure.matmulGflops).toBeLessThan((2 * 8 ** 3) / 1e-3 / 1e9)

    const gpuFirst = fakeTargets({ native: 30, reference: 60, webgpu: 2 })
    const onGpu = capabilityOf(await probeBackends({ targets: gpuFirst.targets, machine: MACHINE, ...FAST }))
    expect(onGpu.backend).toBe('webgpu')
    expect(onGpu.cpuEngine).toBeUndefined()
    expect(onGpu.backends.find((b) => b.inUse)?.backend).toBe('webgpu')
  })

  it('says why a backend did not open', async () => {
    const { targets } = fakeTargets({ native: null, reference: 5 })
    // the real createBackend answers a webgpu request without an adapter with a cpu backend
    targets[2] = {
      backend: 'webgpu',
      open: async () =>
        new CpuBackend({ engine: 'reference', fallbackReason: 'webgpu unavailable: no adapter' }),
    }
    const probed = await probeBackends({ targets, machine: MACHINE, ...FAST })
    expect(probed.result.measured.map((m) => m.engine)).toEqual(['reference'])
    expect(probed.result.unavailable).toEqual([
      { backend: 'cpu', engine: 'native', reason: 'native is not here' },
      { backend: 'webgpu', reason: 'webgpu unavailable: no adapter' },
    ])
    expect(capabilityOf(probed).unavailable).toEqual(probed.result.unavailable)
  })

  it('drops a backend that fails while measured, and closes every backend it opened', async () => {
    const destroyed: string[] = []
    const closing = (name: string, backend: Backend, failAfter: number): Backend => {
      let products = 0
      return new Proxy(backend, {
        get(target, property) {
          if (property === 'destroy') return () => destroyed.push(name)
          if (property === 'matmul')
            return (a: Tensor, b: Tensor) => {
              if (++products > failAfter) throw new Error('device lost')
              return target.matmul(a, b)
            }
          return Reflect.get(target, property, target)
        },
      })
    }
    const { targets } = fakeTargets({ native: 2, reference: 5, webgpu: 1 })
    const [native, reference, webgpu] = targets
    const probed = await probeBackends({
      targets: [
        { ...native, open: async () => closing('native', await native.open(), 0) },
        { ...reference, open: async () => closing('reference', await reference.open(), Infinity) },
        { ...webgpu, open: async () => closing('webgpu', await webgpu.open(), 2) },
      ],
      machine: MACHINE,
      ...FAST,
    })
    expect(probed.result.measured.map((m) => m.engine)).toEqual(['reference'])
    expect(probed.result.unavailable).toEqual([
      { backend: 'cpu', engine: 'native', reason: 'measuring failed: device lost' },
      { backend: 'webgpu', reason: 'measuring failed: device lost' },
    ])
    expect(destroyed.sort()).toEqual(['native', 'reference', 'webgpu'])
  })

  it('uses a pinned backend or engine even where it is slower', async () => {
    const { targets, opened } = fakeTargets({ native: 2, reference: 10, webgpu: 1 })
    const probed = await probeBackends({ targets, machine: MACHINE, pins: { backend: 'cpu' }, ...FAST })
    // a node pinned to cpu opens no GPU device
    expect(opened).toEqual(['native', 'reference'])
    const capability = capabilityOf(probed, { backend: 'cpu' })
    expect(capability.backend).toBe('cpu')
    expect(capability.cpuEngine).toBe('native')
    expect(capability.chosenBy).toBe('pinned')

    const all = await probeBackends({
      targets: fakeTargets({ native: 2, reference: 10, webgpu: 1 }).targets,
      ...FAST,
    })
    const reference = capabilityOf(all, { backend: 'cpu', cpuEngine: 'reference' })
    expect(reference.cpuEngine).toBe('reference')
    expect(reference.backends.find((b) => b.inUse)?.engine).toBe('reference')
    // 'auto' with an engine pin: webgpu still competes with the pinned engine
    expect(capabilityOf(all, { backend: 'auto', cpuEngine: 'reference' }).backend).toBe('webgpu')
    expect(capabilityOf(all, { backend: 'webgpu' }).backend).toBe('webgpu')
  })

  it('falls back to cpu when a pinned webgpu does not open; refuses a pinned engine that does not', () => {
    const result: BackendProbeResult = {
      matmulSize: 256,
      measured: [
        {
          backend: 'cpu',
          engine: 'reference',
          adapterName: 'cpu (reference)',
          isFallbackAdapter: false,
          maxBufferBytes: 2 ** 31 - 1,
          matmulGflops: 1.2,
        },
      ],
      unavailable: [
        { backend: 'cpu', engine: 'native', reason: 'not built' },
        { backend: 'webgpu', reason: 'webgpu unavailable: no adapter' },
      ],
      measuredAtMs: 0,
      seconds: 0.1,
      loadAverage: 0,
    }
    const choice = chooseBackend(result, { backend: 'webgpu' })
    expect(choice.chosen.engine).toBe('reference')
    expect(choice.fallbackReason).toBe('webgpu unavailable: no adapter')
    expect(() => chooseBackend(result, { backend: 'cpu', cpuEngine: 'native' })).toThrow(
      BackendUnavailableError,
    )
    expect(() => chooseBackend(result, { backend: 'auto', cpuEngine: 'native' })).toThrow(
      /pins the cpu engine "native", which cannot run here: not built/,
    )
  })

  it('takes the first cpu engine that runs, whatever a busy moment measured', () => {
    const figure = (engine: 'native' | 'wasm' | 'reference', matmulGflops: number) => ({
      backend: 'cpu' as const,
      engine,
      adapterName: `cpu (${engine})`,
      isFallbackAdapter: false,
      maxBufferBytes: 2 ** 31 - 1,
      matmulGflops,
    })
    const webgpu = {
      backend: 'webgpu' as const,
      adapterName: 'llvmpipe',
      isFallbackAdapter: true,
      maxBufferBytes: 2 ** 28,
      matmulGflops: 10,
    }
    const result = (measured: MeasuredBackend[]): BackendProbeResult => ({
      matmulSize: 256,
      measured,
      unavailable: [],
      measuredAtMs: 0,
      seconds: 0.1,
      loadAverage: 0,
    })
    // native measured below wasm (its threads waited on a busy machine): native still computes
    const busy = chooseBackend(result([figure('wasm', 27), figure('native', 20), figure('reference', 1)]))
    expect(busy.chosen).toMatchObject({ backend: 'cpu', engine: 'native' })
    // without a native build, wasm comes before the reference ops even when measured slower
    expect(chooseBackend(result([figure('reference', 3), figure('wasm', 2)])).chosen.engine).toBe('wasm')
    // between cpu (its first engine) and webgpu the figures decide, both ways
    expect(chooseBackend(result([figure('native', 8), webgpu, figure('wasm', 27)])).chosen.backend).toBe(
      'webgpu',
    )
    expect(chooseBackend(result([figure('native', 150), webgpu])).chosen.backend).toBe('cpu')
    // a pinned engine is used as it is
    expect(
      chooseBackend(result([figure('native', 150), figure('wasm', 27)]), {
        backend: 'cpu',
        cpuEngine: 'wasm',
      }).chosen.engine,
    ).toBe('wasm')
  })

  it('caches the figures in the data dir; a valid cache skips measuring', async () => {
    const dataDir = await tempDir()
    const first = fakeTargets({ native: 2, reference: 10, webgpu: 5 })
    const measured = await probeBackends({ dataDir, targets: first.targets, machine: MACHINE, ...FAST })
    expect(measured.source).toBe('measured')
    const file = JSON.parse(await readFile(join(dataDir, BACKEND_PROBE_FILE), 'utf8'))
    expect(file.machine).toEqual(MACHINE)

    const second = fakeTargets({ native: 2, reference: 10, webgpu: 5 })
    const cached = await probeBackends({ dataDir, targets: second.targets, machine: MACHINE, ...FAST })
    expect(second.opened).toEqual([])
    expect(cached.source).toBe('cache')
    expect(cached.result).toEqual(measured.result)
    // a pin applies to cached figures too
    expect(capabilityOf(cached, { backend: 'cpu', cpuEngine: 'reference' }).cpuEngine).toBe('reference')
    expect(capabilityOf(cached).probe?.source).toBe('cache')
  })

  it('does not cache a probe that a pin cut short', async () => {
    const dataDir = await tempDir()
    const { targets } = fakeTargets({ native: 2, reference: 10, webgpu: 5 })
    await probeBackends({ dataDir, targets, machine: MACHINE, pins: { backend: 'cpu' }, ...FAST })
    expect(await readProbeCache(join(dataDir, BACKEND_PROBE_FILE), MACHINE)).toEqual({
      ignored: 'unreadable (ENOENT)',
    })
  })

  it('does not cache figures measured on a busy machine', async () => {
    const dataDir = await tempDir()
    const { targets } = fakeTargets({ native: 2, reference: 10, webgpu: 5 })
    const probed = await probeBackends({ dataDir, targets, machine: MACHINE, ...FAST, busyLoadAverage: -1 })
    expect(probed.cached).toBe(false)
    expect(capabilityOf(probed).probe?.cached).toBe(false)
    expect(await readProbeCache(join(dataDir, BACKEND_PROBE_FILE), MACHINE)).toEqual({
      ignored: 'unreadable (ENOENT)',
    })
  })

  it.each([
    ['corrupt', () => '{"format": 1, "machine": '],
    ['of another format', () => JSON.stringify({ format: 99, machine: MACHINE, probe: {} })],
    ['not a cache', () => JSON.stringify([1, 2, 3])],
  ])('ignores and rewrites a cache that is %s', async (_what, contents) => {
    const dataDir = await tempDir()
    await writeFile(join(dataDir, BACKEND_PROBE_FILE), contents())
    const { targets, opened } = fakeTargets({ native: 2, reference: 10, webgpu: 5 })
    const probed = await probeBackends({ dataDir, targets, machine: MACHINE, ...FAST })
    expect(probed.source).toBe('measured')
    expect(opened).toHaveLength(3)
    expect(await readProbeCache(join(dataDir, BACKEND_PROBE_FILE), MACHINE)).toEqual({
      result: probed.result,
    })
  })

  it('ignores and rewrites a cache written for another machine or other engines', async () => {
    const dataDir = await tempDir()
    await probeBackends({
      dataDir,
      targets: fakeTargets({ native: 2, reference: 10, webgpu: 5 }).targets,
      machine: MACHINE,
      ...FAST,
    })
    for (const other of [
      { ...MACHINE, cpuModel: 'another cpu' },
      { ...MACHINE, cores: 64 },
      { ...MACHINE, nativeEngine: 'test blas, 1 thread' },
      { ...MACHINE, webgpu: '0.7.0' },
    ]) {
      const { targets, opened } = fakeTargets({ native: 2, reference: 10, webgpu: 5 })
      const probed = await probeBackends({ dataDir, targets, machine: other, ...FAST })
      expect(probed.source).toBe('measured')
      expect(opened).toHaveLength(3)
      const file = JSON.parse(await readFile(join(dataDir, BACKEND_PROBE_FILE), 'utf8'))
      expect(file.machine).toEqual(other)
    }
  })

  it('measures the real backends of this machine and keys the cache by it', async () => {
    const dataDir = await tempDir()
    const probed = await probeBackends({ dataDir, busyLoadAverage: Number.POSITIVE_INFINITY })
    expect(probed.cached).toBe(true)
    const names = probed.result.measured.map((m) => m.engine ?? m.backend)
    // the reference ops always run; the native engine wherever it is built
    expect(names).toContain('reference')
    expect(names.includes('native')).toBe(nativeEngineError() === undefined)
    const webgpu = probed.result.measured.find((m) => m.backend === 'webgpu')
    if (webgpu === undefined) {
      expect(probed.result.unavailable.find((u) => u.backend === 'webgpu')?.reason).toMatch(/webgpu/)
    }
    for (const m of probed.result.measured)
      expect(Number.isFinite(m.matmulGflops) && m.matmulGflops > 0).toBe(true)
    const capability = capabilityOf(probed)
    expect(capability.matmulGflops).toBe(Math.max(...probed.result.measured.map((m) => m.matmulGflops)))
    expect(capability.backends.filter((b) => b.inUse)).toHaveLength(1)
    const again = await probeBackends({ dataDir })
    expect(again.source).toBe('cache')
    expect(again.result).toEqual(probed.result)
    expect(machineKey()).toEqual(machineKey())
  })
})
