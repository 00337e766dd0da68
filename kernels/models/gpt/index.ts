// The GPT model kind: configuration and parameter layout, the model on the Backend contract, its
// local training step, evaluation in bits per byte and byte sampling with a KV cache.
export * from './config.js'
export * from './evaluate.js'
export * from './generate.js'
export * from './model.js'
export * from './training.js'
