// The CPU backend: tensors are float32 arrays in host memory, computed by an engine (cpu/engine.ts:
// native C over OpenBLAS, tfjs' WebAssembly matmul, or the reference ops). "Enqueued" work runs
// immediately, so read/sync only copy or resolve.
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
import { type CpuEngine, type CpuEngineName, type CpuOps, opsOf } from './cpu/engine.js'
import { defaultCpuEngine } from './cpu/engines.js'
import {
  assertBlockSize,
  assertDataLength,
  assertNotAliased,
  assertQuantized,
  assertSameShape,
  biasAddDims,
  matmulDims,
  rowsDims,
  shapeSize,
  softmaxCrossEntropyDims,
} from './ops/shapes.js'
import {
  attentionBackwardDims,
  attentionDims,
  cachedAttentionDims,
  embeddingBackwardDims,
  embeddingDims,
  layerNormBackwardDims,
  layerNormDims,
} from './ops/transformer-shapes.js'

export class CpuTensor implements Tensor {
  readonly shape: readonly number[]
  readonly size: number
  #data: Float32Array | undefined

  constructor(data: Float32Array, shape: readonly number[]) {
    this.shape = Object.freeze([...shape])
    this.size = data.length
    this.#data = data
  }

  /** the live contents; throws once disposed */
  get data(): Float32Array {
    if (this.#data === undefined) throw new Error(`tensor [${this.shape.join(',')}] used after dispose()`)
    return this.#data
  }

  get disposed(): boolean {
    return this.#data === undefined
  }

  dispose(): void {
    this.#data = undefined
  }
}

/** whether two arrays share any element (views of one buffer whose ranges overlap) */
function sharesStorage(a: Float32Array, b: Float32Array): boolean {
  if (a.buffer !== b.buffer) return false
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength
}

export interface CpuBackendOptions {
  /** the engine, or its name; @default defaultCpuEngine(): native where it loads, else reference */
  engine?: CpuEngine | CpuEngineName
  /** set when webgpu was asked for and cpu is used instead: why */
  fallbackReason?: string
}

/** the BackendInfo of a cpu backend computing on `engine` */
export function cpuBackendInfo(engine: CpuEngine, fallbackReason?: string): BackendInfo {
  const info: BackendInfo = {
    kind: 'cpu',
    adapterName: `cpu (${engine.description})`,
    vendor: 'none',
    architecture: process.arch,
    isFallbackAdapter: false,
    maxBufferBytes: 2 ** 31 - 1,
    cpuEngine: engine.name,
  }
  if (fallbackReason !== undefined) info.fallbackReason = fallbackReason
  return Object.freeze(info)
}

export class CpuBackend implements Backend {
  readonly kind = 'cpu' as const
  readonly info: BackendInfo
  readonly engine: CpuEngine
  readonly #ops: Readonly<CpuOps>
  #destroyed = false

  constructor(options: CpuBackendOptions = {}) {
    this.engine =
      typeof options.engine === 'object' ? options.engine : defaultCpuEngine(options.engine ?? undefined)
    this.#ops = opsOf(this.engine)
    this.info = cpuBackendInfo(this.engine, options.fallbackReason)
  }

  #data(tensor: Tensor): Float32Array {
    if (this.#destroyed) throw new Error('cpu backend used after destroy()')
    if (!(tensor instanceof CpuTensor)) throw new TypeError('tensor does not belong to the cpu backend')
    return tensor.data
  }

  upload(data: Float32Array, shape: readonly number[]): Tensor {
    assertDataLength('upload', shape, data.length)
    return new CpuTensor(Float32Array.from(data), shape)
  }

  zeros(shape: readonly number[]): Tensor {
    return new CpuTensor(new Float32Array(shapeSize(shape)), shape)
  }

  write(tensor: Tensor, data: Float32Array): void {
    const target = this.#data(tensor)
    assertDataLength('write', tensor.shape, data.length)
    target.set(data)
  }

  async read(tensor: Tensor): Promise<Float32Array> {
    return Float32Array.from(this.#data(tensor))
  }

  matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
    const { m, k, n } = matmulDims(a, b, options)
    const c = this.#ops.matmul(this.#data(a), this.#data(b), m, k, n, options.transposeA, options.transposeB)
    return new CpuTensor(c, [m, n])
  }

  biasAdd(x: Tensor, bias: Tensor): Tensor {
    biasAddDims(x, bias)
    return new CpuTensor(this.#ops.biasAdd(this.#data(x), this.#data(bias)), x.shape)
  }

  relu(x: Tensor): Tensor {
    return new CpuTensor(this.#ops.relu(this.#data(x)), x.shape)
  }

  reluBackward(gradOutput: Tensor, input: Tensor): Tensor {
    assertSameShape('reluBackward', gradOutput, input, 'gradOutput', 'input')
    return new CpuTensor(this.#ops.reluBackward(this.#data(gradOutput), this.#data(input)), input.shape)
  }

  softmaxCrossEntropy(logits: Tensor, labels: Tensor): { loss: Tensor; gradLogits: Tensor } {
    const { m, c } = softmaxCrossEntropyDims(logits, labels)
    const result = this.#ops.softmaxCrossEntropy(this.#data(logits), this.#data(labels), m, c)
    return { loss: new CpuTensor(result.loss, [m]), gradLogits: new CpuTensor(result.gradLogits, [m, c]) }
  }

  sumRows(x: Tensor): Tensor {
    const { m, n } = rowsDims('sumRows', x)
    return new CpuTensor(this.#ops.sumRows(this.#data(x), m, n), [n])
  }

  meanRows(x: Tensor): Tensor {
    const { m, n } = rowsDims('meanRows', x)
    return new CpuTensor(this.#ops.meanRows(this.#data(x), m, n), [n])
  }

  sum(x: Tensor): Tensor {
    return new CpuTensor(this.#ops.sum(this.#data(x)), [1])
  }

  mean(x: Tensor): Tensor {
    return new CpuTensor(this.#ops.mean(this.#data(x)), [1])
  }

  axpyInPlace(alpha: number, x: Tensor, y: Tensor): void {
    assertSameShape('axpyInPlace', x, y, 'x', 'y')
    const xData = this.#data(x)
    const yData = this.#data(y)
    assertNotAliased(
      'axpyInPlace',
      [
        ['x', xData],
        ['y', yData],
      ],
      sharesStorage,
    )
    this.#ops.axpy(alpha, xData, yData)
  }

  scale(x: Tensor, alpha: number): Tensor {
    return new CpuTensor(this.#ops.scale(this.#data(x), alpha), x.shape)
  }

  sgdMomentumInPlace(param: Tensor, grad: Tensor, velocity: Tensor, options: SgdMomentumOptions): void {
    assertSameShape('sgdMomentumInPlace', param, grad, 'param', 'grad')
    assertSameShape('sgdMomentumInPlace', param, velocity, 'param', 'velocity')
    const operands = [
      ['param', this.#data(param)],
      ['grad', this.#data(grad)],
      ['velocity', this.#data(velocity)],
    ] as const
    assertNotAliased('sgdMomentumInPlace', operands, sharesStorage)
    this.#ops.sgdMomentum(operands[0][1], operands[1][1], operands[2][1], options)
  }

  adamWInPlace(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWOptions): void {
    assertSameShape('adamWInPlace', param, grad, 'param', 'grad')
    assertSameShape('adamWInPlace', param, m, 'param', 'm')
    assertSameShape('adamWInPlace', param, v, 'param', 'v')
    const operands = [
      ['param', this.#data(param)],
      ['grad', this.#data(grad)],
      ['m', this.#data(m)],
      ['v', this.#data(v)],
    ] as const
    assertNotAliased('adamWInPlace', operands, sharesStorage)
    this.#ops.adamW(operands[0][1], operands[1][1], operands[2][1], operands[3][1], options)
  }

  async quantizeInt8(x: Tensor, blockSize: number): Promise<QuantizedInt8> {
    assertBlockSize(blockSize)
    return this.#ops.quantizeInt8(this.#data(x), blockSize)
  }

  dequantizeInt8(quantized: QuantizedInt8): Tensor {
    assertQuantized(quantized)
    return new CpuTensor(this.#ops.dequantizeInt8(quantized), [quantized.length])
  }

  add(a: Tensor, b: Tensor): Tensor {
    assertSameShape('add', a, b, 'a', 'b')
    return new CpuTensor(this.#ops.add(this.#data(a), this.#data(b)), a.shape)
  }

  embedding(table: Tensor, ids: Tensor): Tensor {
    const { rows, width, count } = embeddingDims(table, ids)
    return new CpuTensor(this.#ops.embedding(this.#data(table), this.#data(ids), rows, width), [count, width])
  }

  embeddingBackward(gradOutput: Tensor, ids: Tensor, rows: number): Tensor {
    const { width } = embeddingBackwardDims(gradOutput, ids, rows)
    const table = this.#ops.embeddingBackward(this.#data(gradOutput), this.#data(ids), rows, width)
    return new CpuTensor(table, [rows, width])
  }

  layerNorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    epsilon: number,
  ): { y: Tensor; mean: Tensor; rstd: Tensor } {
    const { m, d } = layerNormDims(x, gamma, beta)
    const result = this.#ops.layerNorm(this.#data(x), this.#data(gamma), this.#data(beta), m, d, epsilon)
    return {
      y: new CpuTensor(result.y, [m, d]),
      mean: new CpuTensor(result.mean, [m]),
      rstd: new CpuTensor(result.rstd, [m]),
    }
  }

  layerNormBackward(
    gradOutput: Tensor,
    x: Tensor,
    gamma: Tensor,
    mean: Tensor,
    rstd: Tensor,
  ): { gradInput: Tensor; gradGamma: Tensor; gradBeta: Tensor } {
    const { m, d } = layerNormBackwardDims(gradOutput, x, gamma, mean, rstd)
    const result = this.#ops.layerNormBackward(
      this.#data(gradOutput),
      this.#data(x),
      this.#data(gamma),
      this.#data(mean),
      this.#data(rstd),
      m,
      d,
    )
    return {
      gradInput: new CpuTensor(result.gradInput, [m, d]),
      gradGamma: new CpuTensor(result.gradGamma, [d]),
      gradBeta: new CpuTensor(result.gradBeta, [d]),
    }
  }

  gelu(x: Tensor): Tensor {
    return new CpuTensor(this.#ops.gelu(this.#data(x)), x.shape)
  }

  geluBackward(gradOutput: Tensor, input: Tensor): Tensor {
    assertSameShape('geluBackward', gradOutput, input, 'gradOutput', 'input')
    return new CpuTensor(this.#ops.geluBackward(this.#data(gradOutput), this.#data(input)), input.shape)
  }

  attention(qkv: Tensor, dims: AttentionDims): { output: Tensor; logSumExp: Tensor } {
    const sizes = attentionDims('attention', qkv, dims)
    const result = this.#ops.attention(this.#data(qkv), sizes)
    return {
      output: new CpuTensor(result.output, [sizes.batch * sizes.sequence, sizes.width]),
      logSumExp: new CpuTensor(result.logSumExp, [sizes.batch * sizes.heads * sizes.sequence]),
    }
  }

  attentionBackward(
    gradOutput: Tensor,
    qkv: Tensor,
    output: Tensor,
    logSumExp: Tensor,
    dims: AttentionDims,
  ): Tensor {
    const sizes = attentionBackwardDims(gradOutput, qkv, output, logSumExp, dims)
    const gradQkv = this.#ops.attentionBackward(
      this.#data(gradOutput),
      this.#data(qkv),
      this.#data(output),
      this.#data(logSumExp),
      sizes,
    )
    return new CpuTensor(gradQkv, qkv.shape)
  }

  attentionCached(queries: Tensor, keys: Tensor, values: Tensor, dims: CachedAttentionDims): Tensor {
    const sizes = cachedAttentionDims(queries, keys, values, dims)
    const output = this.#ops.attentionCached(this.#data(queries), this.#data(keys), this.#data(values), sizes)
    return new CpuTensor(output, queries.shape)
  }

  sumSquares(x: Tensor): Tensor {
    return new CpuTensor(this.#ops.sumSquares(this.#data(x)), [1])
  }

  async sync(): Promise<void> {}

  destroy(): void {
    this.#destroyed = true
  }
}
