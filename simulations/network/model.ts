// The model the simulated tasks train and serve: submit's default, the MNIST MLP with
// HIDDEN_SIZES_DEFAULT (trainArchitecture, as a task's members build it). Its size sets the bytes of
// every gradient, state transfer and model fetch on the simulated links (the arithmetic itself runs
// on a few values: members.ts).
import { PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { type MlpArchitecture, parameterCount } from '../../kernels/models/mlp.js'
import { HIDDEN_SIZES_DEFAULT, trainArchitecture } from '../../protocols/tasks/spec.js'

export const MODEL_ARCHITECTURE: MlpArchitecture = trainArchitecture({
  hiddenSizes: [...HIDDEN_SIZES_DEFAULT],
})
export const MODEL_PARAMETER_COUNT = parameterCount(MODEL_ARCHITECTURE)
/** Bytes of the model's params as float32 (a gradient, a model fetch). */
export const MODEL_BYTES = MODEL_PARAMETER_COUNT * 4
/** Bytes of one input row (an image, float32). */
export const INPUT_ROW_BYTES = PIXEL_COUNT * 4
