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

/** The worker's whole program (CommonJS, evaluated): one sha2-256 per id, fed chunks in order. Every buffer
 * it is sent goes back to the sender once hashed, so the sender can fill it again. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const hashes = new Map()
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id)
    if (h === undefined) { h = createHash('sha256'); hashes.set(m.id, h) }
    h.update(new Uint8Array(m.buffer, 0, m.length))
    parentPort.postMessage({ op: 'return', buffer: m.buffer }, [m.buffer])
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) ?? createHash('sha256')
    hashes.delete(m.id)
    const d = h.digest()
    parentPort.postMessage({ op: 'digest', id: m.id, digest: new Uint8Array(d) })
  } else if (m.op === 'abort') {
    hashes.delete(m.id)
  }
})
`

export interface HashWorkerInit {
  /**
   * Size of each buffer that carries bytes to the worker.
   * @default 1_048_576
   */
  bufferBytes?: number
  /**
   * Buffers kept for reuse once the worker has handed them back; more are allocated while the worker is
   * behind, and dropped when they come back to a full pool.
   * @default 16
   */
  pooledBuffersMax?: number
}

/**
 * Hashes concurrently on one worker thread, started on first use and ended by close().
 *
 * Bytes travel to the worker in buffers that are transferred there and back and reused: a fresh 1 MiB
 * ArrayBuffer per chunk (what `slice()` gave) costs page faults, a garbage-collected external allocation and
 * a copy into cold memory, which on this machine took as long as hashing the chunk inline. A copy into a warm
 * pooled buffer costs about a tenth of that.
 */
export class HashWorker {
  private worker: Worker | undefined
  private nextId = 0
  private readonly bufferBytes: number
  private readonly pooledBuffersMax: number
  private readonly pool: ArrayBuffer[] = []
  private readonly pending = new Map<
    number,
    { resolve: (d: Uint8Array) => void; reject: (e: Error) => void }
  >()

  constructor(init: HashWorkerInit = {}) {
    this.bufferBytes = init.bufferBytes ?? 1024 * 1024
    this.pooledBuffersMax = init.pooledBuffersMax ?? 16
    if (this.bufferBytes < 1) throw new RangeError('bufferBytes must be at least 1')
  }

  private ensure(): Worker {
    if (this.worker !== undefined) return this.worker
    const worker = new Worker(WORKER_SOURCE, { eval: true })
    worker.unref()
    worker.on(
      'message',
      (m: { op: 'digest'; id: number; digest: Uint8Array } | { op: 'return'; buffer: ArrayBuffer }) => {
        if (m.op === 'return') {
          if (this.pool.length < this.pooledBuffersMax) this.pool.push(m.buffer)
          return
        }
        const waiter = this.pending.get(m.id)
        this.pending.delete(m.id)
        waiter?.resolve(m.digest)
      },
    )
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
        for (let offset = 0; offset < bytes.byteLength; offset += this.bufferBytes) {
          const piece = bytes.subarray(offset, offset + this.bufferBytes)
          const buffer = this.pool.pop() ?? new ArrayBuffer(this.bufferBytes)
          new Uint8Array(buffer).set(piece)
          worker.postMessage({ op: 'update', id, buffer, length: piece.byteLength }, [buffer])
        }
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
    this.pool.length = 0
    await worker?.terminate()
  }
}
