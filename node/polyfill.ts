// The one polyfill shardnet needs, loaded before anything else by the CLI entry (bin/shardnet.js),
// the vitest setup and the benchmarks. libp2p 3 (yamux, utils, ping) calls Promise.withResolvers,
// which Node gained in 22; we support Node 20 as well.
interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

const promiseConstructor = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> }
if (typeof promiseConstructor.withResolvers !== 'function') {
  promiseConstructor.withResolvers = <T>(): Resolvers<T> => {
    let resolve!: Resolvers<T>['resolve']
    let reject!: Resolvers<T>['reject']
    const promise = new Promise<T>((res, rej) => {
      resolve = res
      reject = rej
    })
    return { promise, resolve, reject }
  }
}

export {}
