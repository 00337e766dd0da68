// The CPU backend: the reference ops behind the Backend contract. Tensors are float32 arrays in
// host memory; "enqueued" work runs immediately, so read/sync only copy or resolve.
import type {
  AdamWOptions,
  Backend,
  BackendInfo,
  MatmulOptions,
  QuantizedInt8,
  SgdMomentumOptions,
  Tensor,
} from './backend.js'
import {
  assertBlockSize,
  assertDataLength,
  assertQuantized,
  assertSameShape,
  biasAddDims,
  matmulDims,
  rowsDims,
  shapeSize,
  softmaxCrossEntropyDims,
} from './ops/shapes.js'
import {
  adamWReference,
  axpyReference,
  biasAddReference,
  dequantizeInt8Reference,
  matmulReference,
  meanReference,
  meanRowsReference,
  quantizeInt8Reference,
  reluBackwardReference,
  reluReference,
  scaleReference,
  sgdMomentumReference,
  softmaxCrossEntropyReference,
  sumReference,
  sumRowsReference,
} from './reference/index.js'

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

export const cpuBackendInfo: BackendInfo = Object.freeze({
  kind: 'cpu',
  adapterName: 'cpu (reference ops)',
  vendor: 'none',
  architecture: process.arch,
  isFallbackAdapter: false,
  maxBufferBytes: 2 ** 31 - 1,
})

export class CpuBackend implements Backend {
  readonly kind = 'cpu' as const
  readonly info: BackendInfo
  #destroyed = false

  constructor(fallbackReason?: string) {
    this.info = Object.freeze(
      fallbackReason === undefined ? { ...cpuBackendInfo } : { ...cpuBackendInfo, fallbackReason },
    )
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
    const c = matmulReference(this.#data(a), this.#data(b), m, k, n, options.transposeA, options.transposeB)
    return new CpuTensor(c, [m, n])
  }

  biasAdd(x: Tensor, bias: Tensor): Tensor {
    biasAddDims(x, bias)
    return new CpuTensor(biasAddReference(this.#data(x), this.#data(bias)), x.shape)
  }

  relu(x: Tensor): Tensor {
    return new CpuTensor(reluReference(this.#data(x)), x.shape)
  }

  reluBackward(gradOutput: Tensor, input: Tensor): Tensor {
    assertSameShape('reluBackward', gradOutput, input, 'gradOutput', 'input')
    return new CpuTensor(reluBackwardReference(this.#data(gradOutput), this.#data(input)), input.shape)
  }

  softmaxCrossEntropy(logits: Tensor, labels: Tensor): { loss: Tensor; gradLogits: Tensor } {
    const { m, c } = softmaxCrossEntropyDims(logits, labels)
    const result = softmaxCrossEntropyReference(this.#data(logits), this.#data(labels), m, c)
    return { loss: new CpuTensor(result.loss, [m]), gradLogits: new CpuTensor(result.gradLogits, [m, c]) }
  }

  sumRows(x: Tensor): Tensor {
    const { m, n } = rowsDims('sumRows', x)
    return new CpuTensor(sumRowsReference(this.#data(x), m, n), [n])
  }

  meanRows(x: Tensor): Tensor {
    const { m, n } = rowsDims('meanRows', x)
    return new CpuTensor(meanRowsReference(this.#data(x), m, n), [n])
  }

  sum(x: Tensor): Tensor {
    return new CpuTensor(sumReference(this.#data(x)), [1])
  }

  mean(x: Tensor): Tensor {
    return new CpuTensor(meanReference(this.#data(x)), [1])
  }

  axpyInPlace(alpha: number, x: Tensor, y: Tensor): void {
    assertSameShape('axpyInPlace', x, y, 'x', 'y')
    axpyReference(alpha, this.#data(x), this.#data(y))
  }

  scale(x: Tensor, alpha: number): Tensor {
    return new CpuTensor(scaleReference(this.#data(x), alpha), x.shape)
  }

  sgdMomentumInPlace(param: Tensor, grad: Tensor, velocity: Tensor, options: SgdMomentumOptions): void {
    assertSameShape('sgdMomentumInPlace', param, grad, 'param', 'grad')
    assertSameShape('sgdMomentumInPlace', param, velocity, 'param', 'velocity')
    sgdMomentumReference(this.#data(param), this.#data(grad), this.#data(velocity), options)
  }

  adamWInPlace(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWOptions): void {
    assertSameShape('adamWInPlace', param, grad, 'param', 'grad')
    assertSameShape('adamWInPlace', param, m, 'param', 'm')
    assertSameShape('adamWInPlace', param, v, 'param', 'v')
    adamWReference(this.#data(param), this.#data(grad), this.#data(m), this.#data(v), options)
  }

  async quantizeInt8(x: Tensor, blockSize: number): Promise<QuantizedInt8> {
    assertBlockSize(blockSize)
    return quantizeInt8Reference(this.#data(x), blockSize)
  }

  dequantizeInt8(quantized: QuantizedInt8): Tensor {
    assertQuantized(quantized)
    return new CpuTensor(dequantizeInt8Reference(quantized), [quantized.length])
  }

  async sync(): Promise<void> {}

  destroy(): void {
    this.#destroyed = true
  }
}
