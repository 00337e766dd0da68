// Models built from backend ops, their optimizer, training loops and checkpoint encoding.
export * from './checkpoint.js'
export * from './mlp.js'
export * from './optimizer.js'
export * from './safetensors.js'
export * from './training.js'
