// Reference versions of the transformer ops (see backend.ts): the oracle of the kernel tests and the
// cpu backend's kernels. Filled in by the kernels work of the GPT model kind.
const pending = (op: string): never => {
  throw new Error(`${op}: not implemented yet`)
}

export function addReference(_a: Float32Array, _b: Float32Array): Float32Array {
  return pending('add')
}
export function embeddingReference(
  _table: Float32Array,
  _ids: Float32Array,
  _rows: number,
  _width: number,
): Float32Array {
  return pending('embedding')
}
export function embeddingBackwardReference(
  _gradOutput: Float32Array,
  _ids: Float32Array,
  _rows: number,
  _width: number,
): Float32Array {
  return pending('embeddingBackward')
}
export function layerNormReference(
  _x: Float32Array,
  _gamma: Float32Array,
  _beta: Float32Array,
  _m: number,
  _d: number,
  _epsilon: number,
): { y: Float32Array; mean: Float32Array; rstd: Float32Array } {
  return pending('layerNorm')
}
export function layerNormBackwardReference(
  _gradOutput: Float32Array,
  _x: Float32Array,
  _gamma: Float32Array,
  _mean: Float32Array,
  _rstd: Float32Array,
  _m: number,
  _d: number,
): { gradInput: Float32Array; gradGamma: Float32Array; gradBeta: Float32Array } {
  return pending('layerNormBackward')
}
export function geluReference(_x: Float32Array): Float32Array {
  return pending('gelu')
}
export function geluBackwardReference(_gradOutput: Float32Array, _x: Float32Array): Float32Array {
  return pending('geluBackward')
}
export function sumSquaresReference(_x: Float32Array): Float32Array {
  return pending('sumSquares')
}
