// Shape checks shared by both backends: every op validates its operands here before any work is
// enqueued, so both backends throw the same ShapeError for the same mistake.
import { AliasedTensorError, type MatmulOptions, ShapeError, type Tensor } from '../backend.js'
import { INT8_SCALE_MIN } from '../reference/quantize.js'

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`
}

/** the number of elements of `shape`; throws ShapeError on a negative or non-integer dimension */
export function shapeSize(shape: readonly number[]): number {
  let size = 1
  for (const dim of shape) {
    if (!Number.isInteger(dim) || dim < 0)
      throw new ShapeError(`invalid dimension ${dim} in shape ${describeShape(shape)}`)
    size *= dim
  }
  return size
}

export function assertRank(op: string, name: string, tensor: Tensor, rank: number): void {
  if (tensor.shape.length !== rank) {
    throw new ShapeError(`${op}: ${name} must have rank ${rank}, got shape ${describeShape(tensor.shape)}`)
  }
}

export function assertSameShape(op: string, a: Tensor, b: Tensor, aName = 'a', bName = 'b'): void {
  if (a.shape.length !== b.shape.length || a.shape.some((dim, i) => dim !== b.shape[i])) {
    throw new ShapeError(
      `${op}: ${aName} ${describeShape(a.shape)} and ${bName} ${describeShape(b.shape)} must ` +
        `have the same shape`,
    )
  }
}

export function assertDataLength(op: string, shape: readonly number[], length: number): number {
  const size = shapeSize(shape)
  if (size !== length) {
    throw new ShapeError(
      `${op}: ${length} values do not fill shape ${describeShape(shape)} (${size} elements)`,
    )
  }
  return size
}

/** resolves matmul dimensions: op(A) is [M,K], op(B) is [K,N] */
export function matmulDims(
  a: Tensor,
  b: Tensor,
  options: MatmulOptions = {},
): { m: number; k: number; n: number } {
  assertRank('matmul', 'a', a, 2)
  assertRank('matmul', 'b', b, 2)
  const [m, k] = options.transposeA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]]
  const [kb, n] = options.transposeB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]]
  if (k !== kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ: op(a) is [${m},${k}] and op(b) is [${kb},${n}] ` +
        `(a ${describeShape(a.shape)}${options.transposeA ? ' transposed' : ''}, ` +
        `b ${describeShape(b.shape)}${options.transposeB ? ' transposed' : ''})`,
    )
  }
  return { m, k, n }
}

/** x [..., N] and bias [N] */
export function biasAddDims(x: Tensor, bias: Tensor): { rows: number; n: number } {
  assertRank('biasAdd', 'bias', bias, 1)
  const n = bias.shape[0]
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== n) {
    throw new ShapeError(`biasAdd: last dimension of x ${describeShape(x.shape)} must equal bias length ${n}`)
  }
  return { rows: n === 0 ? 0 : x.size / n, n }
}

/** x [M,N] -> M, N */
export function rowsDims(op: string, x: Tensor): { m: number; n: number } {
  assertRank(op, 'x', x, 2)
  return { m: x.shape[0], n: x.shape[1] }
}

/** logits [M,C], labels [M] */
export function softmaxCrossEntropyDims(logits: Tensor, labels: Tensor): { m: number; c: number } {
  assertRank('softmaxCrossEntropy', 'logits', logits, 2)
  assertRank('softmaxCrossEntropy', 'labels', labels, 1)
  const [m, c] = logits.shape
  if (labels.shape[0] !== m) {
    throw new ShapeError(
      `softmaxCrossEntropy: labels ${describeShape(labels.shape)} must have one entry per row of ` +
        `logits ${describeShape(logits.shape)}`,
    )
  }
  return { m, c }
}

export function assertBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new ShapeError(`quantizeInt8: blockSize must be a positive integer, got ${blockSize}`)
  }
}

export function assertQuantized(quantized: {
  values: Int8Array
  scales: Float32Array
  blockSize: number
  length: number
}): void {
  assertBlockSize(quantized.blockSize)
  const blocks = Math.ceil(quantized.length / quantized.blockSize)
  if (quantized.values.length !== quantized.length || quantized.scales.length !== blocks) {
    throw new ShapeError(
      `dequantizeInt8: ${quantized.values.length} values and ${quantized.scales.length} scales ` +
        `do not match ` +
        `length ${quantized.length} with blockSize ${quantized.blockSize} (${blocks} blocks)`,
    )
  }
  for (let b = 0; b < blocks; b++) {
    const scale = quantized.scales[b]
    if (!Number.isFinite(scale) || (scale !== 0 && Math.abs(scale) < INT8_SCALE_MIN)) {
      throw new RangeError(
        `dequantizeInt8: scale ${scale} of block ${b} is not one a quantizer makes ` +
          `(finite, and 0 or at least ${INT8_SCALE_MIN} in magnitude)`,
      )
    }
  }
}

/**
 * Throws AliasedTensorError when two operands of an in-place op share storage. `operands` pairs
 * each operand's name with its storage as the backend sees it; `overlaps` says whether two share
 * (identity by default).
 */
export function assertNotAliased<S>(
  op: string,
  operands: readonly (readonly [name: string, storage: S])[],
  overlaps: (a: S, b: S) => boolean = (a, b) => a === b,
): void {
  for (let i = 0; i < operands.length; i++) {
    for (let j = i + 1; j < operands.length; j++) {
      if (overlaps(operands[i][1], operands[j][1])) {
        throw new AliasedTensorError(
          `${op}: ${operands[i][0]} and ${operands[j][0]} are the same tensor; ` +
            `an in-place op needs distinct tensors (copy one first)`,
        )
      }
    }
  }
}
