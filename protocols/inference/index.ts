export * from './quorum.js'
