/**
 * Assembling a received block and its sha2-256, inline or on a worker thread.
 *
 * The receiving event loop is the bottleneck of a block transfer: it already runs the whole noise+yamux
 * stream, and a block fetch adds to that the copy of every byte into the block, the hash, and (into a
 * durable store) the file writes. Measured per 16 MiB on the 2-core machine, against about 36 ms of event
 * loop time for the bare stream: the hash about 9 ms (sha2-256 with SHA-NI, 1.7 GB/s), the copy into a
 * freshly allocated block about 8 ms, nearly all of it page faults on the new memory.
 *
 * So from hashInWorkerBytesMin up the event loop only copies each received piece into a reused transfer
 * buffer (warm memory: about 0.1 ms per MiB) and transfers it to the worker, which hashes it and copies
 * it into the block, taking the page faults there, hands the transfer buffer back, and finally transfers
 * the whole block, without a copy. When the sink has a file (a durable store's writer), the worker also
 * writes each piece into it and flushes it in the background: done from the event loop, each write and
 * flush waited for a turn of a loop busy with the transfer, and the file fell so far behind that the final
 * fsync took 20-30 ms under load; from the worker it stays within about a MiB. Small blocks are assembled
 * and hashed inline (a round trip to the worker would cost more than it saves), their sink written through
 * write().
 */
import { createHash, type Hash } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import type { BlockFile } from './store.js'

/** Where the pieces of a block go as they are assembled, in order (a durable store's writer). */
export interface AssemblySink {
  /**
   * Takes the next bytes of the block; the returned promise settles once the sink no longer reads them, so
   * the caller can reuse the memory.
   */
  write(bytes: Uint8Array): Promise<void>
  /**
   * A file the worker may write the block into itself instead (see BlockWriter.file): then write() is
   * never called, and the pieces never wait for the event loop on their way to the disk.
   */
  readonly file?: BlockFile
}

/** An assembled block, its sha2-256, and whether writing it into the sink's file failed. */
export interface AssembledBlock {
  block: Uint8Array
  digest: Uint8Array
  /** the worker could not write `sink.file` (disk full, I/O error); the block itself is whole */
  fileError?: Error
}

/** One block being received: its bytes arrive in order, in pieces of any size. */
export interface BlockAssembly {
  /**
   * Takes the next received bytes; they are copied or used before this returns,
   * so the caller may reuse them.
   */
  append(bytes: Uint8Array): void
  /** The whole block and the sha2-256 digest of its bytes, once every byte was appended. */
  finish(): Promise<AssembledBlock>
  /** Forget this block (a failed transfer). */
  abort(): void
}

/**
 * The block is assembled on the event loop, hashed per appended piece;
 * the sink gets about 1 MiB at a time.
 */
export class InlineAssembly implements BlockAssembly {
  private readonly block: Uint8Array
  private readonly hash: Hash = createHash('sha256')
  private offset = 0
  private sunk = 0

  constructor(
    size: number,
    private readonly sink?: AssemblySink,
    private readonly sinkBytes = 1024 * 1024,
  ) {
    this.block = new Uint8Array(size)
  }

  append(bytes: Uint8Array): void {
    if (this.offset + bytes.byteLength > this.block.byteLength)
      throw new RangeError('more bytes than the block')
    this.block.set(bytes, this.offset)
    this.offset += bytes.byteLength
    this.hash.update(bytes)
    if (this.offset - this.sunk >= this.sinkBytes) this.flush()
  }

  private flush(): void {
    if (this.sink === undefined || this.offset === this.sunk) return
    // the block is never written again, so the sink may read this view for as long as it likes
    void this.sink.write(this.block.subarray(this.sunk, this.offset))
    this.sunk = this.offset
  }

  async finish(): Promise<AssembledBlock> {
    if (this.offset !== this.block.byteLength) throw new RangeError('block incomplete')
    this.flush()
    return { block: this.block, digest: new Uint8Array(this.hash.digest()) }
  }

  abort(): void {}
}

/**
 * The worker's whole program (CommonJS, evaluated). Per id: a sha2-256 and, for an assembly, the block.
 * Every transfer buffer goes back to the event loop once hashed and copied.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const fs = require('node:fs')
const jobs = new Map()
// the block's file, when the sink has one: written here as each piece is hashed, flushed in the background
// (one fdatasync at a time, on the thread pool), closed once no flush is in flight
function openFile(job, file) {
  try {
    job.fd = fs.openSync(file.path, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600)
    job.path = file.path
    job.syncBytes = file.syncBytes
  } catch (error) {
    job.fileError = String(error && error.message)
  }
}
function writeFile(job, piece, position) {
  if (job.fd === undefined || job.fileError !== undefined) return
  try {
    let done = 0
    while (done < piece.byteLength)
      done += fs.writeSync(job.fd, piece, done, piece.byteLength - done, position + done)
    job.written = position + piece.byteLength
    flush(job)
  } catch (error) {
    job.fileError = String(error && error.message)
  }
}
function flush(job) {
  if (job.flushing || job.fd === undefined || job.fileError !== undefined) return
  if (job.written - job.flushed < job.syncBytes) return
  job.flushing = true
  const target = job.written
  fs.fdatasync(job.fd, (error) => {
    job.flushing = false
    if (error) job.fileError = job.fileError ?? String(error.message)
    else job.flushed = target
    if (job.released) closeFile(job)
    else flush(job)
  })
}
function release(job, unlink) {
  job.released = true
  job.unlink = unlink
  if (!job.flushing) closeFile(job)
}
function closeFile(job) {
  if (job.fd === undefined) return
  try { fs.closeSync(job.fd) } catch {}
  job.fd = undefined
  if (job.unlink) fs.rm(job.path, { force: true }, () => {})
}
parentPort.on('message', (m) => {
  if (m.op === 'begin') {
    const job = {
      hash: createHash('sha256'),
      block: new Uint8Array(m.size),
      offset: 0,
      written: 0,
      flushed: 0,
    }
    if (m.file !== undefined) openFile(job, m.file)
    jobs.set(m.id, job)
  } else if (m.op === 'update') {
    const job = jobs.get(m.id)
    if (job !== undefined) {
      const piece = new Uint8Array(m.buffer, 0, m.length)
      job.hash.update(piece)
      job.block.set(piece, job.offset)
      writeFile(job, piece, job.offset)
      job.offset += m.length
    }
    parentPort.postMessage({ op: 'return', id: m.id, buffer: m.buffer, length: m.length }, [m.buffer])
  } else if (m.op === 'finish') {
    const job = jobs.get(m.id)
    jobs.delete(m.id)
    if (job === undefined || job.offset !== job.block.byteLength) {
      if (job !== undefined) release(job, true)
      parentPort.postMessage({ op: 'failed', id: m.id, message: 'block incomplete' })
    } else {
      const digest = new Uint8Array(job.hash.digest())
      release(job, false)
      parentPort.postMessage(
        { op: 'finished', id: m.id, digest, block: job.block.buffer, fileError: job.fileError },
        [job.block.buffer],
      )
    }
  } else if (m.op === 'abort') {
    const job = jobs.get(m.id)
    jobs.delete(m.id)
    if (job !== undefined) release(job, true)
  }
})
`

type WorkerReply =
  | { op: 'return'; id: number; buffer: ArrayBuffer; length: number }
  | { op: 'finished'; id: number; digest: Uint8Array; block: ArrayBuffer; fileError?: string }
  | { op: 'failed'; id: number; message: string }

/** Size of each buffer that carries bytes to the hash worker. */
export const HASH_BUFFER_BYTES_DEFAULT = 1024 * 1024
/** Transfer buffers kept for reuse once handed back. */
export const POOLED_BUFFERS_MAX_DEFAULT = 16

export interface HashWorkerInit {
  /**
   * Size of each buffer that carries bytes to the worker.
   * @default HASH_BUFFER_BYTES_DEFAULT
   */
  bufferBytes?: number
  /**
   * Transfer buffers kept for reuse once handed back; more are allocated while the worker (or a sink) is
   * behind, and dropped when they come back to a full pool.
   * @default POOLED_BUFFERS_MAX_DEFAULT
   */
  pooledBuffersMax?: number
}

interface Job {
  /** where returned pieces go: a sink without a file of its own (the worker writes a sink's file itself) */
  sink: AssemblySink | undefined
  resolve: (result: AssembledBlock) => void
  reject: (error: Error) => void
  finishing: boolean
}

/** Assembles and hashes blocks on one worker thread, started on first use and ended by close(). */
export class HashWorker {
  private worker: Worker | undefined
  private nextId = 0
  private readonly bufferBytes: number
  private readonly pooledBuffersMax: number
  private readonly pool: ArrayBuffer[] = []
  private readonly jobs = new Map<number, Job>()

  constructor(init: HashWorkerInit = {}) {
    this.bufferBytes = init.bufferBytes ?? HASH_BUFFER_BYTES_DEFAULT
    this.pooledBuffersMax = init.pooledBuffersMax ?? POOLED_BUFFERS_MAX_DEFAULT
    if (this.bufferBytes < 1) throw new RangeError('bufferBytes must be at least 1')
  }

  private release(buffer: ArrayBuffer): void {
    if (this.pool.length < this.pooledBuffersMax) this.pool.push(buffer)
  }

  private ensure(): Worker {
    if (this.worker !== undefined) return this.worker
    const worker = new Worker(WORKER_SOURCE, { eval: true })
    worker.unref()
    worker.on('message', (m: WorkerReply) => {
      const job = this.jobs.get(m.id)
      if (m.op === 'return') {
        const sink = job?.sink
        if (sink === undefined) {
          this.release(m.buffer)
          return
        }
        let written: Promise<void>
        try {
          written = sink.write(new Uint8Array(m.buffer, 0, m.length))
        } catch (error) {
          // a sink that refuses (it was already committed or aborted: a caller's bug) must not take the
          // process down from this event handler; the job's caller sees the failure
          job?.reject(error as Error)
          this.release(m.buffer)
          return
        }
        void written.finally(() => this.release(m.buffer))
        return
      }
      if (job === undefined) return
      this.jobs.delete(m.id)
      if (m.op === 'finished') {
        const fileError =
          m.fileError === undefined ? undefined : new Error(`writing the block: ${m.fileError}`)
        job.resolve({ block: new Uint8Array(m.block), digest: m.digest, fileError })
      } else job.reject(new Error(`hash worker: ${m.message}`))
    })
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined
      for (const job of this.jobs.values()) job.reject(err)
      this.jobs.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`hash worker exited with code ${code}`)))
    this.worker = worker
    return worker
  }

  /** A block of `size` bytes assembled and hashed on the worker; each piece also goes to `sink`, in order. */
  assemble(size: number, sink?: AssemblySink): BlockAssembly {
    const worker = this.ensure()
    const id = this.nextId++
    const file = sink?.file
    const job: Job = {
      sink: file === undefined ? sink : undefined,
      resolve: () => {},
      reject: () => {},
      finishing: false,
    }
    const promise = new Promise<AssembledBlock>((resolve, reject) => {
      job.resolve = resolve
      job.reject = reject
    })
    // a job that is aborted never settles its promise, and a worker that dies rejects it: nobody may wait
    promise.catch(() => {})
    this.jobs.set(id, job)
    worker.postMessage({ op: 'begin', id, size, file: file === undefined ? undefined : { ...file } })
    let buffer: ArrayBuffer | undefined
    let filled = 0
    const post = () => {
      if (buffer === undefined || filled === 0) return
      worker.postMessage({ op: 'update', id, buffer, length: filled }, [buffer])
      buffer = undefined
      filled = 0
    }
    return {
      append: (bytes: Uint8Array) => {
        if (job.finishing) throw new Error('append after finish')
        let done = 0
        while (done < bytes.byteLength) {
          buffer ??= this.pool.pop() ?? new ArrayBuffer(this.bufferBytes)
          const take = Math.min(bytes.byteLength - done, this.bufferBytes - filled)
          new Uint8Array(buffer, filled, take).set(bytes.subarray(done, done + take))
          filled += take
          done += take
          if (filled === this.bufferBytes) post()
        }
      },
      finish: () => {
        job.finishing = true
        post()
        worker.postMessage({ op: 'finish', id })
        return promise
      },
      abort: () => {
        if (buffer !== undefined) this.release(buffer)
        buffer = undefined
        this.jobs.delete(id)
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
