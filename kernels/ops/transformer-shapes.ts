// Shape checks of the transformer ops (see backend.ts), shared by both backends so that both throw
// the same ShapeError for the same mistake before any work is enqueued.
import { type AttentionDims, type CachedAttentionDims, ShapeError, type Tensor } from '../backend.js'
import { assertRank, describeShape } from './shapes.js'

function positiveInteger(op: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new ShapeError(`${op}: ${name} must be a positive integer`)
}

/** table [V, D], ids [N] -> { rows: V, width: D, count: N } */
export function embeddingDims(table: Tensor, ids: Tensor): { rows: number; width: number; count: number } {
  assertRank('embedding', 'table', table, 2)
  assertRank('embedding', 'ids', ids, 1)
  return { rows: table.shape[0], width: table.shape[1], count: ids.shape[0] }
}

/** gradOutput [N, D], ids [N], rows V -> { count: N, width: D } */
export function embeddingBackwardDims(
  gradOutput: Tensor,
  ids: Tensor,
  rows: number,
): { count: number; width: number } {
  assertRank('embeddingBackward', 'gradOutput', gradOutput, 2)
  assertRank('embeddingBackward', 'ids', ids, 1)
  if (!Number.isInteger(rows) || rows < 0)
    throw new ShapeError('embeddingBackward: rows must be an integer >= 0')
  const [count, width] = gradOutput.shape
  if (ids.shape[0] !== count) {
    throw new ShapeError(
      `embeddingBackward: ids ${describeShape(ids.shape)} must have one entry per row of gradOutput ` +
        describeShape(gradOutput.shape),
    )
  }
  return { count, width }
}

/** x [M, D], gamma [D], beta [D] -> { m, d } */
export function layerNormDims(x: Tensor, gamma: Tensor, beta: Tensor): { m: number; d: number } {
  assertRank('layerNorm', 'x', x, 2)
  const [m, d] = x.shape
  for (const [name, tensor] of [
    ['gamma', gamma],
    ['beta', beta],
  ] as const) {
    if (tensor.shape.length !== 1 || tensor.shape[0] !== d) {
      throw new ShapeError(`layerNorm: ${name} must have shape [${d}], got ${describeShape(tensor.shape)}`)
    }
  }
  return { m, d }
}

/** gradOutput [M, D] = x [M, D], gamma [D], mean [M], rstd [M] -> { m, d } */
export function layerNormBackwardDims(
  gradOutput: Tensor,
  x: Tensor,
  gamma: Tensor,
  mean: Tensor,
  rstd: Tensor,
): { m: number; d: number } {
  assertRank('layerNormBackward', 'x', x, 2)
  const [m, d] = x.shape
  const expect = (name: string, tensor: Tensor, shape: readonly number[]) => {
    if (tensor.shape.length !== shape.length || tensor.shape.some((dim, i) => dim !== shape[i])) {
      throw new ShapeError(
        `layerNormBackward: ${name} must have shape ${describeShape(shape)}, ` +
          `got ${describeShape(tensor.shape)}`,
      )
    }
  }
  expect('gradOutput', gradOutput, [m, d])
  expect('gamma', gamma, [d])
  expect('mean', mean, [m])
  expect('rstd', rstd, [m])
  return { m, d }
}

/** Attention sizes: B, T, H, the model width D and the head width D / H. */
export interface AttentionSizes {
  batch: number
  sequence: number
  heads: number
  width: number
  headWidth: number
}

/** qkv [B*T, 3D] -> sizes */
export function attentionDims(op: string, qkv: Tensor, dims: AttentionDims): AttentionSizes {
  assertRank(op, 'qkv', qkv, 2)
  positiveInteger(op, 'batch', dims.batch)
  positiveInteger(op, 'sequence', dims.sequence)
  positiveInteger(op, 'heads', dims.heads)
  const [rows, columns] = qkv.shape
  if (rows !== dims.batch * dims.sequence) {
    throw new ShapeError(
      `${op}: qkv ${describeShape(qkv.shape)} must have batch*sequence = ${dims.batch * dims.sequence} rows`,
    )
  }
  if (columns % 3 !== 0 || (columns / 3) % dims.heads !== 0) {
    throw new ShapeError(
      `${op}: qkv ${describeShape(qkv.shape)} must have 3*D columns with D a multiple of ${dims.heads} heads`,
    )
  }
  const width = columns / 3
  return { ...dims, width, headWidth: width / dims.heads }
}

/** the operands of attentionBackward against qkv's sizes */
export function attentionBackwardDims(
  gradOutput: Tensor,
  qkv: Tensor,
  output: Tensor,
  logSumExp: Tensor,
  dims: AttentionDims,
): AttentionSizes {
  const sizes = attentionDims('attentionBackward', qkv, dims)
  const rows = sizes.batch * sizes.sequence
  for (const [name, tensor] of [
    ['gradOutput', gradOutput],
    ['output', output],
  ] as const) {
    if (tensor.shape.length !== 2 || tensor.shape[0] !== rows || tensor.shape[1] !== sizes.width) {
      throw new ShapeError(
        `attentionBackward: ${name} must have shape [${rows},${sizes.width}], ` +
          `got ${describeShape(tensor.shape)}`,
      )
    }
  }
  const statistics = sizes.batch * sizes.heads * sizes.sequence
  if (logSumExp.shape.length !== 1 || logSumExp.shape[0] !== statistics) {
    throw new ShapeError(
      `attentionBackward: logSumExp must have shape [${statistics}], got ${describeShape(logSumExp.shape)}`,
    )
  }
  return sizes
}

/** Sizes of cached attention: N queries, L cache rows, D, H, D / H and the first query's position. */
export interface CachedAttentionSizes {
  queries: number
  keys: number
  width: number
  heads: number
  headWidth: number
  offset: number
}

/** queries [N, D], keys and values [L, D] -> sizes of cached attention */
export function cachedAttentionDims(
  queries: Tensor,
  keys: Tensor,
  values: Tensor,
  dims: CachedAttentionDims,
): CachedAttentionSizes {
  const op = 'attentionCached'
  assertRank(op, 'queries', queries, 2)
  assertRank(op, 'keys', keys, 2)
  assertRank(op, 'values', values, 2)
  positiveInteger(op, 'heads', dims.heads)
  if (!Number.isInteger(dims.offset) || dims.offset < 0)
    throw new ShapeError(`${op}: offset must be an integer >= 0`)
  const [count, width] = queries.shape
  if (width % dims.heads !== 0)
    throw new ShapeError(`${op}: width ${width} is not a multiple of ${dims.heads} heads`)
  if (keys.shape[1] !== width || values.shape[1] !== width || keys.shape[0] !== values.shape[0]) {
    throw new ShapeError(
      `${op}: keys ${describeShape(keys.shape)} and values ${describeShape(values.shape)} ` +
        `must be [L,${width}]`,
    )
  }
  if (keys.shape[0] < dims.offset + count) {
    throw new ShapeError(
      `${op}: the cache holds ${keys.shape[0]} rows, fewer than offset + queries = ${dims.offset + count}`,
    )
  }
  return {
    queries: count,
    keys: keys.shape[0],
    width,
    heads: dims.heads,
    headWidth: width / dims.heads,
    offset: dims.offset,
  }
}
