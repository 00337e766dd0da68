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
export { dequantizeInt8Reference, quantizeInt8Reference } from './quantize.js'
export { meanReference, meanRowsReference, sumReference, sumRowsReference } from './reductions.js'
export { softmaxCrossEntropyReference } from './softmax-cross-entropy.js'
