// Datasets and deterministic sample orders (no networking, no device code).
export * from './mnist.js'
export * from './random.js'
export * from './sharding.js'
