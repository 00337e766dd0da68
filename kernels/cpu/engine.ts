// The cpu backend's engines. CpuBackend (kernels/cpu-backend.ts) checks shapes and owns tensors; an
// engine computes. Every engine has the signatures of the reference ops (kernels/reference/), which
// stay the oracle: an engine may implement any subset, and the reference computes the rest.
//
// Engines, fastest first (figures and the reasons for the choice: docs/cpu-backend.md):
// - native: a C addon over OpenBLAS's sgemm plus C kernels for the other hot ops, on every core
//   (kernels/native/, built by scripts/setup.sh where a compiler and OpenBLAS exist);
// - wasm: tfjs-backend-wasm's XNNPACK matmul on every core, where no native build exists;
// - reference: the reference ops in TypeScript, float64 accumulation.
import type { QuantizedInt8 } from '../backend.js'
import type { AttentionSizes, CachedAttentionSizes } from '../ops/transformer-shapes.js'
import {
  attentionBackwardReference,
  attentionCachedReference,
  attentionReference,
} from '../reference/attention.js'
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
} from '../reference/index.js'
import {
  addReference,
  embeddingBackwardReference,
  embeddingReference,
  geluBackwardReference,
  geluReference,
  layerNormBackwardReference,
  layerNormReference,
  sumSquaresReference,
} from '../reference/transformer.js'

export type CpuEngineName = 'native' | 'wasm' | 'reference'
export const CPU_ENGINE_NAMES: readonly CpuEngineName[] = ['native', 'wasm', 'reference']

/** The ops an engine computes, with the reference ops' signatures and results. */
export interface CpuOps {
  matmul: typeof matmulReference
  biasAdd: typeof biasAddReference
  relu: typeof reluReference
  reluBackward: typeof reluBackwardReference
  softmaxCrossEntropy: typeof softmaxCrossEntropyReference
  sumRows: typeof sumRowsReference
  meanRows: typeof meanRowsReference
  sum: typeof sumReference
  mean: typeof meanReference
  axpy: typeof axpyReference
  scale: typeof scaleReference
  sgdMomentum: typeof sgdMomentumReference
  adamW: typeof adamWReference
  quantizeInt8: (x: Float32Array, blockSize: number) => QuantizedInt8
  dequantizeInt8: typeof dequantizeInt8Reference
  add: typeof addReference
  embedding: typeof embeddingReference
  embeddingBackward: typeof embeddingBackwardReference
  layerNorm: typeof layerNormReference
  layerNormBackward: typeof layerNormBackwardReference
  gelu: typeof geluReference
  geluBackward: typeof geluBackwardReference
  attention: (qkv: Float32Array, sizes: AttentionSizes) => { output: Float32Array; logSumExp: Float32Array }
  attentionBackward: typeof attentionBackwardReference
  attentionCached: (
    queries: Float32Array,
    keys: Float32Array,
    values: Float32Array,
    sizes: CachedAttentionSizes,
  ) => Float32Array
  sumSquares: typeof sumSquaresReference
}

export const REFERENCE_OPS: Readonly<CpuOps> = Object.freeze({
  matmul: matmulReference,
  biasAdd: biasAddReference,
  relu: reluReference,
  reluBackward: reluBackwardReference,
  softmaxCrossEntropy: softmaxCrossEntropyReference,
  sumRows: sumRowsReference,
  meanRows: meanRowsReference,
  sum: sumReference,
  mean: meanReference,
  axpy: axpyReference,
  scale: scaleReference,
  sgdMomentum: sgdMomentumReference,
  adamW: adamWReference,
  quantizeInt8: quantizeInt8Reference,
  dequantizeInt8: dequantizeInt8Reference,
  add: addReference,
  embedding: embeddingReference,
  embeddingBackward: embeddingBackwardReference,
  layerNorm: layerNormReference,
  layerNormBackward: layerNormBackwardReference,
  gelu: geluReference,
  geluBackward: geluBackwardReference,
  attention: attentionReference,
  attentionBackward: attentionBackwardReference,
  attentionCached: attentionCachedReference,
  sumSquares: sumSquaresReference,
})

export interface CpuEngine {
  readonly name: CpuEngineName
  /** what computes, e.g. "OpenBLAS 0.3.21 (openmp) + C kernels, 2 threads" */
  readonly description: string
  /** threads the engine computes on */
  readonly threads: number
  /** the ops this engine computes itself; the reference computes the others */
  readonly ops: Partial<CpuOps>
}

export const REFERENCE_ENGINE: CpuEngine = Object.freeze({
  name: 'reference',
  description: 'reference ops (TypeScript, float64 sums)',
  threads: 1,
  ops: {},
})

/** the engine's ops completed by the reference */
export function opsOf(engine: CpuEngine): Readonly<CpuOps> {
  return Object.freeze({ ...REFERENCE_OPS, ...engine.ops })
}
