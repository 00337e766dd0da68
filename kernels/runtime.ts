// WebGPU device acquisition through Dawn's node binding, plus what every op needs from the device:
// a pipeline cache, a buffer pool, uniform upload, one-place dispatch sizing and release.
//
// Dawn pitfalls handled here (`webgpu` 0.6.2 on Mesa's lavapipe):
// - the GPU object returned by create([]) must stay referenced while any device it made lives, even
//   a destroyed one, or the process aborts: one instance serves the whole process (dawnInstance);
// - a device gets default limits unless the adapter's limits are requested explicitly;
// - Dawn wants XDG_RUNTIME_DIR set.
import { mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'

const log = logger('shardnet:kernels:runtime')

/** the GPU object, adapter and device; keep the whole object alive while the device is used */
export interface AcquiredDevice {
  gpu: GPU
  adapter: GPUAdapter
  device: GPUDevice
}

/** how a backend obtains its device; tests inject failing factories to exercise the CPU fallback */
export type DeviceFactory = () => Promise<AcquiredDevice>

export interface AdapterDescription {
  adapterName: string
  vendor: string
  architecture: string
  isFallbackAdapter: boolean
  maxBufferBytes: number
  maxComputeWorkgroupsPerDimension: number
  maxComputeWorkgroupStorageSize: number
  maxComputeInvocationsPerWorkgroup: number
  /**
   * The subgroup size when the device has the `subgroups` feature and the adapter runs every
   * subgroup at one size (lavapipe: 8, its SIMD width); undefined otherwise. Kernels that
   * exchange values between lanes are generated for this size.
   */
  fixedSubgroupSize: number | undefined
}

/** limits we copy from the adapter to the device (everything the adapter reports as a number) */
function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const limits: Record<string, number> = {}
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key]
    if (typeof value === 'number') limits[key] = value
  }
  return limits
}

/**
 * The one Dawn instance of this process, created on first use and never released. Dawn aborts or
 * hangs the process when the instance is garbage-collected while any device wrapper it made is still
 * alive, even a destroyed one (reproduced: create, destroy the device, keep the device object, gc:
 * `std::system_error` and SIGABRT). Holding the instance here, not per backend, makes that impossible.
 */
let dawnInstance: GPU | undefined

/** Dawn through the `webgpu` package: the default DeviceFactory on Node. */
export async function acquireDawnDevice(): Promise<AcquiredDevice> {
  if (process.env.XDG_RUNTIME_DIR === undefined || process.env.XDG_RUNTIME_DIR === '') {
    const dir = join(tmpdir(), `shardnet-xdg-${process.getuid?.() ?? 'user'}`)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    process.env.XDG_RUNTIME_DIR = dir
  }
  const { create, globals } = await import('webgpu')
  // GPUBufferUsage, GPUMapMode, ... as globals, as in a browser
  for (const [name, value] of Object.entries(globals)) {
    if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value
  }
  dawnInstance ??= create([])
  const gpu = dawnInstance
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' })
  if (adapter === null)
    throw new Error('no WebGPU adapter found (is a Vulkan driver such as lavapipe installed?)')
  // subgroups: the packed-subgroup matmul shares values between the lanes of a subgroup
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('subgroups')
    ? ['subgroups' as GPUFeatureName]
    : []
  const device = await adapter.requestDevice({ requiredLimits: adapterLimits(adapter), requiredFeatures })
  return { gpu, adapter, device }
}

export function describeAdapter(adapter: GPUAdapter, device: GPUDevice): AdapterDescription {
  const info = adapter.info
  // description reads like "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)"; device is an id-like fallback
  const name = info.description || info.device || 'unknown adapter'
  const fallback =
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? adapter.isFallbackAdapter ?? false
  return {
    adapterName: name,
    vendor: info.vendor || 'unknown',
    architecture: info.architecture || 'unknown',
    // lavapipe/llvmpipe and SwiftShader are software even where the flag is not set
    isFallbackAdapter:
      fallback || /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device}`),
    maxBufferBytes: Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize),
    maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    fixedSubgroupSize: fixedSubgroupSize(info, device),
  }
}

function fixedSubgroupSize(info: GPUAdapterInfo, device: GPUDevice): number | undefined {
  if (!device.features.has('subgroups')) return undefined
  const { subgroupMinSize, subgroupMaxSize } = info as { subgroupMinSize?: number; subgroupMaxSize?: number }
  if (subgroupMinSize === undefined || subgroupMinSize !== subgroupMaxSize) return undefined
  // the kernels split rows of k into subgroup-sized blocks: keep to sizes they are written for
  return subgroupMinSize >= 4 && subgroupMinSize <= 64 && Number.isInteger(Math.log2(subgroupMinSize))
    ? subgroupMinSize
    : undefined
}

export interface RuntimeStats {
  pipelinesCompiled: number
  pipelineCacheHits: number
  buffersCreated: number
  buffersReused: number
  /** bytes held in the free pool, waiting for reuse */
  pooledBytes: number
  dispatches: number
  /** validation/out-of-memory errors reported by the device */
  deviceErrors: number
}

/** A storage buffer's usage: bound to shaders, copied in and out. */
const storageUsage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST
const uniformUsage = () => GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST
const readbackUsage = () => GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST

/** compute passes encoded before the runtime submits them unasked (bounds latency) */
export const PASSES_PER_SUBMIT = 32

/** most bytes kept in the free pool; buffers released beyond it are destroyed */
export const POOL_BYTES_MAX = 1024 * 1024 * 1024

/** round a byte length up to the 16-byte granule (vec4 bindings, copy alignment) */
export function roundBytes(bytes: number): number {
  return Math.max(16, Math.ceil(bytes / 16) * 16)
}

export type WorkgroupCount = readonly [number, number, number]

export class GpuRuntime {
  readonly description: AdapterDescription
  readonly device: GPUDevice
  // the adapter, for `adapter`; the Dawn instance itself is held process-wide (dawnInstance)
  #acquired: AcquiredDevice | undefined
  readonly #pipelines = new Map<string, GPUComputePipeline>()
  readonly #freeBuffers = new Map<string, GPUBuffer[]>()
  readonly #stats: RuntimeStats = {
    pipelinesCompiled: 0,
    pipelineCacheHits: 0,
    buffersCreated: 0,
    buffersReused: 0,
    pooledBytes: 0,
    dispatches: 0,
    deviceErrors: 0,
  }
  #lastDeviceError: string | undefined
  #pending: GPUCommandEncoder | undefined
  #pendingPasses = 0
  #pendingUniforms: GPUBuffer[] = []
  #destroyed = false

  constructor(acquired: AcquiredDevice) {
    this.#acquired = acquired
    this.device = acquired.device
    this.description = describeAdapter(acquired.adapter, acquired.device)
    this.device.addEventListener('uncapturederror', (event) => {
      this.#stats.deviceErrors++
      this.#lastDeviceError = (event as GPUUncapturedErrorEvent).error.message
      log.error('device error: %s', this.#lastDeviceError)
    })
    this.device.lost.then((info) => {
      if (!this.#destroyed) log.error('device lost: %s %s', info.reason, info.message)
    })
  }

  /** the adapter the device came from (undefined once destroyed) */
  get adapter(): GPUAdapter | undefined {
    return this.#acquired?.adapter
  }

  get stats(): Readonly<RuntimeStats> {
    return { ...this.#stats }
  }

  get lastDeviceError(): string | undefined {
    return this.#lastDeviceError
  }

  get destroyed(): boolean {
    return this.#destroyed
  }

  /** compiles once per (WGSL source, entry point) and returns the cached pipeline afterwards */
  pipeline(source: string, entryPoint = 'main'): GPUComputePipeline {
    const key = `${entryPoint}\u0000${source}`
    const cached = this.#pipelines.get(key)
    if (cached !== undefined) {
      this.#stats.pipelineCacheHits++
      return cached
    }
    const module = this.device.createShaderModule({ code: source })
    const pipeline = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint } })
    this.#pipelines.set(key, pipeline)
    this.#stats.pipelinesCompiled++
    return pipeline
  }

  #acquire(kind: string, usage: number, bytes: number): GPUBuffer {
    const size = roundBytes(bytes)
    const free = this.#freeBuffers.get(`${kind}:${size}`)
    const reused = free?.pop()
    if (reused !== undefined) {
      this.#stats.buffersReused++
      this.#stats.pooledBytes -= size
      return reused
    }
    this.#stats.buffersCreated++
    return this.device.createBuffer({ size, usage, label: kind })
  }

  #release(kind: string, buffer: GPUBuffer): void {
    if (this.#destroyed) return
    if (this.#stats.pooledBytes + buffer.size > POOL_BYTES_MAX) {
      buffer.destroy()
      return
    }
    const key = `${kind}:${buffer.size}`
    let free = this.#freeBuffers.get(key)
    if (free === undefined) {
      free = []
      this.#freeBuffers.set(key, free)
    }
    free.push(buffer)
    this.#stats.pooledBytes += buffer.size
  }

  /** a storage buffer of at least `bytes` (contents undefined), from the pool when one is free */
  storageBuffer(bytes: number): GPUBuffer {
    return this.#acquire('storage', storageUsage(), bytes)
  }

  /**
   * Returns a storage buffer to the pool. Safe even while encoded commands still use it: a later
   * op that reuses it is encoded after them (passes run in order), and every queue.writeBuffer to
   * a storage buffer flushes the pending commands first (see write()).
   */
  releaseStorageBuffer(buffer: GPUBuffer): void {
    this.#release('storage', buffer)
  }

  /** the encoder collecting commands until the next flush */
  #encoder(): GPUCommandEncoder {
    this.#pending ??= this.device.createCommandEncoder()
    return this.#pending
  }

  /**
   * Submits the pending commands. Uniform buffers of the submitted passes go back to the pool
   * only now: their next writeBuffer is then queue-ordered after the passes that read them.
   */
  flush(): void {
    if (this.#pending === undefined) return
    this.device.queue.submit([this.#pending.finish()])
    this.#pending = undefined
    this.#pendingPasses = 0
    for (const uniform of this.#pendingUniforms) this.#release('uniform', uniform)
    this.#pendingUniforms = []
  }

  /** clears the first `bytes` of a buffer to zero (enqueued in order with the other commands) */
  clear(buffer: GPUBuffer, bytes: number): void {
    this.#encoder().clearBuffer(buffer, 0, roundBytes(bytes))
  }

  /**
   * Copies host data into a storage buffer. queue.writeBuffer runs ahead of commands not yet
   * submitted, so those are flushed first: the write then lands after everything enqueued before it.
   */
  write(buffer: GPUBuffer, data: Float32Array | Uint32Array | Int32Array | Uint8Array): void {
    this.flush()
    // writeBuffer wants a multiple of 4 bytes
    if (data.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4)
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
      data = padded
    }
    if (data.byteLength > 0)
      this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
  }

  /**
   * Encodes one compute pass per step into the pending command encoder. Each step binds a uniform
   * (binding 0, when `uniform` is given) followed by the storage buffers in order (bindings 1, 2,
   * ...). Commands are submitted in batches of PASSES_PER_SUBMIT, and before any read, sync or
   * storage write.
   */
  run(steps: readonly DispatchStep[]): void {
    const encoder = this.#encoder()
    for (const step of steps) {
      if (step.workgroups.some((count) => count === 0)) continue
      const entries: GPUBindGroupEntry[] = []
      let binding = 0
      if (step.uniform !== undefined) {
        // a fresh uniform buffer, written now: nothing pending reads it, so writing ahead is safe
        const uniform = this.#acquire('uniform', uniformUsage(), step.uniform.byteLength)
        this.device.queue.writeBuffer(uniform, 0, step.uniform)
        this.#pendingUniforms.push(uniform)
        entries.push({ binding: binding++, resource: { buffer: uniform } })
      }
      for (const buffer of step.buffers) entries.push({ binding: binding++, resource: { buffer } })
      const bindGroup = this.device.createBindGroup({ layout: step.pipeline.getBindGroupLayout(0), entries })
      const pass = encoder.beginComputePass()
      pass.setPipeline(step.pipeline)
      pass.setBindGroup(0, bindGroup)
      pass.dispatchWorkgroups(step.workgroups[0], step.workgroups[1], step.workgroups[2])
      pass.end()
      this.#stats.dispatches++
      this.#pendingPasses++
    }
    if (this.#pendingPasses >= PASSES_PER_SUBMIT) this.flush()
  }

  /** copies `bytes` from a buffer back to the host, after all enqueued work */
  async read(buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    const size = roundBytes(bytes)
    const staging = this.#acquire('readback', readbackUsage(), size)
    this.#encoder().copyBufferToBuffer(buffer, 0, staging, 0, size)
    this.flush()
    await staging.mapAsync(GPUMapMode.READ, 0, size)
    // copy out of the mapped range into a fresh array (slice() of the mapping page-faults: slow)
    const out = new ArrayBuffer(bytes)
    new Uint8Array(out).set(new Uint8Array(staging.getMappedRange(0, size), 0, bytes))
    staging.unmap()
    this.#release('readback', staging)
    return out
  }

  /** waits for all enqueued work */
  async sync(): Promise<void> {
    this.flush()
    await this.device.queue.onSubmittedWorkDone()
  }

  /** destroys pooled buffers and the device; the process can exit afterwards */
  destroy(): void {
    if (this.#destroyed) return
    this.#pending = undefined
    this.#destroyed = true
    for (const buffers of this.#freeBuffers.values()) for (const buffer of buffers) buffer.destroy()
    this.#freeBuffers.clear()
    this.#pipelines.clear()
    this.device.destroy()
    this.#acquired = undefined
  }
}

export interface DispatchStep {
  pipeline: GPUComputePipeline
  uniform?: ArrayBuffer
  buffers: readonly GPUBuffer[]
  workgroups: WorkgroupCount
}

/**
 * The one place dispatch sizes are derived from workgroup sizes.
 * 1-D: `invocations` threads in workgroups of `workgroupSize`, folded into (x, y) so that no
 * dimension exceeds `maxPerDimension`; shaders rebuild the linear index with linearIndex() from
 * wgsl/common.ts (workgroup_id.y * num_workgroups.x + workgroup_id.x).
 */
export function dispatch1d(
  invocations: number,
  workgroupSize: number,
  maxPerDimension = 65535,
): WorkgroupCount {
  const groups = Math.ceil(invocations / workgroupSize)
  if (groups <= maxPerDimension) return [groups, 1, 1]
  const y = Math.ceil(groups / maxPerDimension)
  if (y > maxPerDimension) throw new RangeError(`dispatch of ${invocations} invocations is too large`)
  return [Math.ceil(groups / y), y, 1]
}

/** 2-D: a grid of `columns` x `rows` threads in workgroups of `workgroupX` x `workgroupY` */
export function dispatch2d(
  columns: number,
  rows: number,
  workgroupX: number,
  workgroupY: number,
  maxPerDimension = 65535,
): WorkgroupCount {
  const x = Math.ceil(columns / workgroupX)
  const y = Math.ceil(rows / workgroupY)
  if (x > maxPerDimension || y > maxPerDimension) {
    throw new RangeError(
      `dispatch grid ${columns}x${rows} exceeds ${maxPerDimension} workgroups per dimension`,
    )
  }
  return [x, y, 1]
}
