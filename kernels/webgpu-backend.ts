// The WebGPU backend: tensors are pooled storage buffers on a Dawn device; every op validates
// shapes, allocates its output from the pool and enqueues its kernels (ops/), in order.
import type {
  AdamWOptions,
  AttentionDims,
  Backend,
  BackendInfo,
  CachedAttentionDims,
  MatmulOptions,
  QuantizedInt8,
  SgdMomentumOptions,
  Tensor,
} from './backend.js'
import { runAttention, runAttentionBackward, runAttentionCached } from './ops/attention.js'
import { runAxpy, runBiasAdd, runRelu, runReluBackward, runScale } from './ops/elementwise.js'
import { type MatmulTuning, runMatmul } from './ops/matmul.js'
import { runAdamW, runSgdMomentum } from './ops/optimizers.js'
import { runDequantizeInt8, runQuantizeInt8 } from './ops/quantize.js'
import { runReduceRows } from './ops/reductions.js'
import {
  assertBlockSize,
  assertDataLength,
  assertNotAliased,
  assertQuantized,
  assertSameShape,
  biasAddDims,
  describeShape,
  matmulDims,
  rowsDims,
  shapeSize,
  softmaxCrossEntropyDims,
} from './ops/shapes.js'
import { runSoftmaxCrossEntropy } from './ops/softmax-cross-entropy.js'
import {
  runAdd,
  runEmbedding,
  runEmbeddingBackward,
  runGelu,
  runGeluBackward,
  runLayerNorm,
  runLayerNormBackward,
  runSumSquares,
} from './ops/transformer.js'
import {
  attentionBackwardDims,
  attentionDims,
  cachedAttentionDims,
  embeddingBackwardDims,
  embeddingDims,
  layerNormBackwardDims,
  layerNormDims,
} from './ops/transformer-shapes.js'
import { type AcquiredDevice, GpuRuntime } from './runtime.js'
import { MATMUL_VERSIONS, type MatmulVersion } from './wgsl/matmul.js'

export class GpuTensor implements Tensor {
  readonly shape: readonly number[]
  readonly size: number
  readonly runtime: GpuRuntime
  #buffer: GPUBuffer | undefined

  constructor(runtime: GpuRuntime, buffer: GPUBuffer, shape: readonly number[], size: number) {
    this.runtime = runtime
    this.shape = Object.freeze([...shape])
    this.size = size
    this.#buffer = buffer
  }

  get buffer(): GPUBuffer {
    if (this.#buffer === undefined)
      throw new Error(`tensor ${describeShape(this.shape)} used after dispose()`)
    return this.#buffer
  }

  get disposed(): boolean {
    return this.#buffer === undefined
  }

  /** returns the buffer to the pool; commands already enqueued still see its old contents */
  dispose(): void {
    if (this.#buffer === undefined) return
    this.runtime.releaseStorageBuffer(this.#buffer)
    this.#buffer = undefined
  }
}

/**
 * Which matmul kernel to use on this adapter. On software adapters (lavapipe) workgroup barriers
 * are expensive and storage loads dominate: packed-subgroup (packed operands, A shared between
 * lanes with subgroupBroadcast, no shared memory) is fastest where subgroups have a fixed size,
 * else register-blocked, measured (bench/RESULTS.md); on real GPUs shared-memory tiles with
 * register blocking is the standard design (not yet measured here).
 */
export function chooseMatmulVersion(
  isFallbackAdapter: boolean,
  fixedSubgroupSize: number | undefined = undefined,
): MatmulVersion {
  if (!isFallbackAdapter) return 'tiled-register-blocked'
  return fixedSubgroupSize === undefined ? 'register-blocked' : 'packed-subgroup'
}

export interface WebGpuBackendOptions {
  /** override the per-adapter choice of matmul kernel */
  matmulVersion?: MatmulVersion
}

export class WebGpuBackend implements Backend {
  readonly kind = 'webgpu' as const
  readonly info: BackendInfo
  readonly runtime: GpuRuntime
  /** the matmul kernel `matmul` uses */
  readonly matmulVersion: MatmulVersion

  constructor(acquired: AcquiredDevice, options: WebGpuBackendOptions = {}) {
    this.runtime = new GpuRuntime(acquired)
    const description = this.runtime.description
    this.info = Object.freeze({
      kind: 'webgpu',
      adapterName: description.adapterName,
      vendor: description.vendor,
      architecture: description.architecture,
      isFallbackAdapter: description.isFallbackAdapter,
      maxBufferBytes: description.maxBufferBytes,
    })
    this.matmulVersion =
      options.matmulVersion ??
      chooseMatmulVersion(description.isFallbackAdapter, description.fixedSubgroupSize)
    if (!MATMUL_VERSIONS.includes(this.matmulVersion))
      throw new RangeError(`unknown matmul version ${this.matmulVersion}`)
  }

  #buffer(tensor: Tensor): GPUBuffer {
    if (this.runtime.destroyed) throw new Error('webgpu backend used after destroy()')
    if (!(tensor instanceof GpuTensor) || tensor.runtime !== this.runtime) {
      throw new TypeError('tensor does not belong to this webgpu backend')
    }
    return tensor.buffer
  }

  #allocate(shape: readonly number[]): GpuTensor {
    if (this.runtime.destroyed) throw new Error('webgpu backend used after destroy()')
    const size = shapeSize(shape)
    if (size * 4 > this.info.maxBufferBytes) {
      throw new RangeError(
        `tensor ${describeShape(shape)} needs ${size * 4} bytes, ` +
          `more than the device's ${this.info.maxBufferBytes}`,
      )
    }
    return new GpuTensor(this.runtime, this.runtime.storageBuffer(size * 4), shape, size)
  }

  upload(data: Float32Array, shape: readonly number[]): Tensor {
    assertDataLength('upload', shape, data.length)
    const tensor = this.#allocate(shape)
    this.runtime.write(tensor.buffer, data)
    return tensor
  }

  zeros(shape: readonly number[]): Tensor {
    const tensor = this.#allocate(shape)
    this.runtime.clear(tensor.buffer, tensor.size * 4)
    return tensor
  }

  write(tensor: Tensor, data: Float32Array): void {
    const buffer = this.#buffer(tensor)
    assertDataLength('write', tensor.shape, data.length)
    this.runtime.write(buffer, data)
  }

  async read(tensor: Tensor): Promise<Float32Array> {
    const bytes = await this.runtime.read(this.#buffer(tensor), tensor.size * 4)
    return new Float32Array(bytes)
  }

  matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
    return this.matmulWith(this.matmulVersion, a, b, options)
  }

  /** matmul with a named kernel version (tests and benchmarks compare them) */
  matmulWith(
    version: MatmulVersion,
    a: Tensor,
    b: Tensor,
    options: MatmulOptions = {},
    tuning?: MatmulTuning,
  ): Tensor {
    const { m, k, n } = matmulDims(a, b, options)
    const aBuffer = this.#buffer(a)
    const bBuffer = this.#buffer(b)
    const c = this.#allocate([m, n])
    const dims = { m, k, n, transposeA: options.transposeA ?? false, transposeB: options.transposeB ?? false }
    try {
      runMatmul(this.runtime, version, aBuffer, bBuffer, c.buffer, dims, tuning)
    } catch (error) {
      // a version this device cannot run, or a tuning of another version: nothing was enqueued
      c.dispose()
      throw error
    }
    return c
  }

  biasAdd(x: Tensor, bias: Tensor): Tensor {
    const { n } = biasAddDims(x, bias)
    const y = this.#allocate(x.shape)
    runBiasAdd(this.runtime, this.#buffer(x), this.#buffer(bias), y.buffer, x.size, n)
    return y
  }

  relu(x: Tensor): Tensor {
    const y = this.#allocate(x.shape)
    runRelu(this.runtime, this.#buffer(x), y.buffer, x.size)
    return y
  }

  reluBackward(gradOutput: Tensor, input: Tensor): Tensor {
    assertSameShape('reluBackward', gradOutput, input, 'gradOutput', 'input')
    const gradInput = this.#allocate(input.shape)
    runReluBackward(this.runtime, this.#buffer(gradOutput), this.#buffer(input), gradInput.buffer, input.size)
    return gradInput
  }

  softmaxCrossEntropy(logits: Tensor, labels: Tensor): { loss: Tensor; gradLogits: Tensor } {
    const { m, c } = softmaxCrossEntropyDims(logits, labels)
    const logitsBuffer = this.#buffer(logits)
    const labelsBuffer = this.#buffer(labels)
    const loss = this.#allocate([m])
    const gradLogits = this.#allocate([m, c])
    runSoftmaxCrossEntropy(this.runtime, logitsBuffer, labelsBuffer, loss.buffer, gradLogits.buffer, m, c)
    return { loss, gradLogits }
  }

  sumRows(x: Tensor): Tensor {
    const { m, n } = rowsDims('sumRows', x)
    const y = this.#allocate([n])
    runReduceRows(this.runtime, this.#buffer(x), y.buffer, m, n, 1)
    return y
  }

  meanRows(x: Tensor): Tensor {
    const { m, n } = rowsDims('meanRows', x)
    const y = this.#allocate([n])
    // the mean of no rows is 0/0 = NaN, as in the reference
    if (m === 0) this.runtime.write(y.buffer, new Float32Array(n).fill(Number.NaN))
    else runReduceRows(this.runtime, this.#buffer(x), y.buffer, m, n, 1 / m)
    return y
  }

  sum(x: Tensor): Tensor {
    const y = this.#allocate([1])
    runReduceRows(this.runtime, this.#buffer(x), y.buffer, x.size, 1, 1)
    return y
  }

  mean(x: Tensor): Tensor {
    const y = this.#allocate([1])
    if (x.size === 0) this.runtime.write(y.buffer, Float32Array.of(Number.NaN))
    else runReduceRows(this.runtime, this.#buffer(x), y.buffer, x.size, 1, 1 / x.size)
    return y
  }

  axpyInPlace(alpha: number, x: Tensor, y: Tensor): void {
    assertSameShape('axpyInPlace', x, y, 'x', 'y')
    const xBuffer = this.#buffer(x)
    const yBuffer = this.#buffer(y)
    assertNotAliased('axpyInPlace', [
      ['x', xBuffer],
      ['y', yBuffer],
    ])
    runAxpy(this.runtime, alpha, xBuffer, yBuffer, x.size)
  }

  scale(x: Tensor, alpha: number): Tensor {
    const y = this.#allocate(x.shape)
    runScale(this.runtime, this.#buffer(x), y.buffer, alpha, x.size)
    return y
  }

  sgdMomentumInPlace(param: Tensor, grad: Tensor, velocity: Tensor, options: SgdMomentumOptions): void {
    assertSameShape('sgdMomentumInPlace', param, grad, 'param', 'grad')
    assertSameShape('sgdMomentumInPlace', param, velocity, 'param', 'velocity')
    const operands = [
      ['param', this.#buffer(param)],
      ['grad', this.#buffer(grad)],
      ['velocity', this.#buffer(velocity)],
    ] as const
    assertNotAliased('sgdMomentumInPlace', operands)
    runSgdMomentum(this.runtime, operands[0][1], operands[1][1], operands[2][1], param.size, options)
  }

  adamWInPlace(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWOptions): void {
    assertSameShape('adamWInPlace', param, grad, 'param', 'grad')
    assertSameShape('adamWInPlace', param, m, 'param', 'm')
    assertSameShape('adamWInPlace', param, v, 'param', 'v')
    const operands = [
      ['param', this.#buffer(param)],
      ['grad', this.#buffer(grad)],
      ['m', this.#buffer(m)],
      ['v', this.#buffer(v)],
    ] as const
    assertNotAliased('adamWInPlace', operands)
    const [[, paramBuffer], [, gradBuffer], [, mBuffer], [, vBuffer]] = operands
    runAdamW(this.runtime, paramBuffer, gradBuffer, mBuffer, vBuffer, param.size, options)
  }

  async quantizeInt8(x: Tensor, blockSize: number): Promise<QuantizedInt8> {
    assertBlockSize(blockSize)
    return runQuantizeInt8(this.runtime, this.#buffer(x), x.size, blockSize)
  }

  dequantizeInt8(quantized: QuantizedInt8): Tensor {
    assertQuantized(quantized)
    const y = this.#allocate([quantized.length])
    runDequantizeInt8(this.runtime, quantized, y.buffer)
    return y
  }

  add(a: Tensor, b: Tensor): Tensor {
    assertSameShape('add', a, b, 'a', 'b')
    const y = this.#allocate(a.shape)
    runAdd(this.runtime, this.#buffer(a), this.#buffer(b), y.buffer, a.size)
    return y
  }

  embedding(table: Tensor, ids: Tensor): Tensor {
    const { rows, width, count } = embeddingDims(table, ids)
    const out = this.#allocate([count, width])
    runEmbedding(this.runtime, this.#buffer(table), this.#buffer(ids), out.buffer, rows, width, count)
    return out
  }

  embeddingBackward(gradOutput: Tensor, ids: Tensor, rows: number): Tensor {
    const { count, width } = embeddingBackwardDims(gradOutput, ids, rows)
    const out = this.#allocate([rows, width])
    runEmbeddingBackward(
      this.runtime,
      this.#buffer(gradOutput),
      this.#buffer(ids),
      out.buffer,
      rows,
      width,
      count,
    )
    return out
  }

  layerNorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    epsilon: number,
  ): { y: Tensor; mean: Tensor; rstd: Tensor } {
    const { m, d } = layerNormDims(x, gamma, beta)
    const y = this.#allocate([m, d])
    const mean = this.#allocate([m])
    const rstd = this.#allocate([m])
    runLayerNorm(
      this.runtime,
      this.#buffer(x),
      this.#buffer(gamma),
      this.#buffer(beta),
      y.buffer,
      mean.buffer,
      rstd.buffer,
      m,
      d,
      epsilon,
    )
    return { y, mean, rstd }
  }

  layerNormBackward(
    gradOutput: Tensor,
    x: Tensor,
    gamma: Tensor,
    mean: Tensor,
    rstd: Tensor,
  ): { gradInput: Tensor; gradGamma: Tensor; gradBeta: Tensor } {
    const { m, d } = layerNormBackwardDims(gradOutput, x, gamma, mean, rstd)
    const gradInput = this.#allocate([m, d])
    const gradGamma = this.#allocate([d])
    const gradBeta = this.#allocate([d])
    runLayerNormBackward(
      this.runtime,
      this.#buffer(gradOutput),
      this.#buffer(x),
      this.#buffer(gamma),
      this.#buffer(mean),
      this.#buffer(rstd),
      gradInput.buffer,
      gradGamma.buffer,
      gradBeta.buffer,
      m,
      d,
    )
    return { gradInput, gradGamma, gradBeta }
  }

  gelu(x: Tensor): Tensor {
    const y = this.#allocate(x.shape)
    runGelu(this.runtime, this.#buffer(x), y.buffer, x.size)
    return y
  }

  geluBackward(gradOutput: Tensor, input: Tensor): Tensor {
    assertSameShape('geluBackward', gradOutput, input, 'gradOutput', 'input')
    const gradInput = this.#allocate(input.shape)
    runGeluBackward(this.runtime, this.#buffer(gradOutput), this.#buffer(input), gradInput.buffer, input.size)
    return gradInput
  }

  attention(qkv: Tensor, dims: AttentionDims): { output: Tensor; logSumExp: Tensor } {
    const sizes = attentionDims('attention', qkv, dims)
    const output = this.#allocate([sizes.batch * sizes.sequence, sizes.width])
    const logSumExp = this.#allocate([sizes.batch * sizes.heads * sizes.sequence])
    runAttention(this.runtime, this.#buffer(qkv), output.buffer, logSumExp.buffer, sizes)
    return { output, logSumExp }
  }

  attentionBackward(
    gradOutput: Tensor,
    qkv: Tensor,
    output: Tensor,
    logSumExp: Tensor,
    dims: AttentionDims,
  ): Tensor {
    const sizes = attentionBackwardDims(gradOutput, qkv, output, logSumExp, dims)
    const gradQkv = this.#allocate(qkv.shape)
    runAttentionBackward(
      this.runtime,
      this.#buffer(gradOutput),
      this.#buffer(qkv),
      this.#buffer(output),
      this.#buffer(logSumExp),
      gradQkv.buffer,
      sizes,
    )
    return gradQkv
  }

  attentionCached(queries: Tensor, keys: Tensor, values: Tensor, dims: CachedAttentionDims): Tensor {
    const sizes = cachedAttentionDims(queries, keys, values, dims)
    const output = this.#allocate(queries.shape)
    runAttentionCached(
      this.runtime,
      this.#buffer(queries),
      this.#buffer(keys),
      this.#buffer(values),
      output.buffer,
      sizes,
    )
    return output
  }

  sumSquares(x: Tensor): Tensor {
    const y = this.#allocate([1])
    runSumSquares(this.runtime, this.#buffer(x), y.buffer, x.size)
    return y
  }

  async sync(): Promise<void> {
    await this.runtime.sync()
  }

  destroy(): void {
    this.runtime.destroy()
  }
}
