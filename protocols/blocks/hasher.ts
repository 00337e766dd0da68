/**
 * Incremental sha2-256 for verifying received blocks, inline or on a worker thread.
 *
 * Why a worker: hashing costs about as much CPU per byte as the whole noise+yamux stream does on the
 * receiving side (sha2-256 about 600-800 MiB/s here), so hashing on the event loop caps a block transfer
 * at roughly half of the bare stream. On a worker it runs beside the network work on another core. Each
 * chunk is copied once (1 MiB, well under a millisecond) and its buffer transferred, not cloned, to the
 * worker. Small blocks are hashed inline: a round trip to the worker would cost more than the hash.
 */
import { createHash, type Hash } from 'node:crypto'
import { Worker } from 'node:worker_threads'

export interface IncrementalHash {
  update(bytes: Uint8Array): void
  /** The sha2-256 digest of everything passed to update(). */
  digest(): Promise<Uint8Array>
  /** Forget this hash (a failed transfer). */
  abort(): void
}

export class InlineHash implements IncrementalHash {
  private readonly hash: Hash = createHash('sha256')

  update(bytes: Uint8Array): void {
    this.hash.update(bytes)
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest())
  }

  abort(): void {}
}

/** The worker's whole program (CommonJS, evaluated): one sha2-256 per id, fed chunks in order. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const hashes = new Map()
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id)
    if (h === undefined) { h = createHash('sha256'); hashes.set(m.id, h) }
    h.update(new Uint8Array(m.buffer))
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) ?? createHash('sha256')
    hashes.delete(m.id)
    const d = h.digest()
    parentPort.postMessage({ id: m.id, digest: new Uint8Array(d) })
  } else if (m.op === 'abort') {
    hashes.delete(m.id)
  }
})
`

/** Hashes concurrently on one worker thread, started on first use and ended by close(). */
export class HashWorker {
  private worker: Worker | undefined
  private nextId = 0
  private readonly pending = new Map<
    number,
    { resolve: (d: Uint8Array) => void; reject: (e: Error) => void }
  >()

  private ensure(): Worker {
    if (this.worker !== undefined) return this.worker
    const worker = new Worker(WORKER_SOURCE, { eval: true })
    worker.unref()
    worker.on('message', (m: { id: number; digest: Uint8Array }) => {
      const waiter = this.pending.get(m.id)
      this.pending.delete(m.id)
      waiter?.resolve(m.digest)
    })
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined
      for (const waiter of this.pending.values()) waiter.reject(err)
      this.pending.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`hash worker exited with code ${code}`)))
    this.worker = worker
    return worker
  }

  create(): IncrementalHash {
    const worker = this.ensure()
    const id = this.nextId++
    return {
      update: (bytes: Uint8Array) => {
        const copy = bytes.slice()
        worker.postMessage({ op: 'update', id, buffer: copy.buffer }, [copy.buffer])
      },
      digest: () =>
        new Promise<Uint8Array>((resolve, reject) => {
          this.pending.set(id, { resolve, reject })
          worker.postMessage({ op: 'digest', id })
        }),
      abort: () => {
        worker.postMessage({ op: 'abort', id })
      },
    }
  }

  async close(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    await worker?.terminate()
  }
}
