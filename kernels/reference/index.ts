// Plain TypeScript versions of every op: the oracle for kernel tests and the CPU backend's kernels.
export {
  axpyReference,
  biasAddReference,
  reluBackwardReference,
  reluReference,
  scaleReference,
} from './elementwise.js'
export { matmulLoopFloat32, matmulReference } from './matmul.js'
export { adamWConstants, adamWReference, sgdMomentumReference } from './optimizers.js'
export {
  dequantizeInt8Reference,
  INT8_BLOCK_MAX_MIN,
  INT8_SCALE_MIN,
  int8BlockScale,
  quantizeInt8Reference,
  quantizeInt8Value,
} from './quantize.js'
export { meanReference, meanRowsReference, sumReference, sumRowsReference } from './reductions.js'
export { softmaxCrossEntropyReference } from './softmax-cross-entropy.js'
