// /shardnet/span/1.0.0: inference sessions over spans of a model's transformer blocks. The frames and
// their checks (frames.ts) and the client (client.ts); the server is node/serving/span-host.ts.
export * from './client.js'
export * from './frames.js'
