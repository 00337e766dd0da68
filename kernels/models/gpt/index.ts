// The GPT model kind: configuration and parameter layout, the model on the Backend contract, its
// local training step, evaluation in bits per byte, byte sampling with a KV cache, checkpoints in
// Hugging Face's layout, the training-group model, and the pieces a chain of span servers runs.
export * from './checkpoint.js'
export * from './config.js'
export * from './evaluate.js'
export * from './generate.js'
export * from './model.js'
export * from './span.js'
export * from './training.js'
export * from './training-model.js'
