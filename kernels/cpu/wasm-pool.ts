// The wasm cpu engine's worker threads (wasm-worker.ts), each with its own instance of the module, and
// the split of a product among them and the calling thread.
//
// A product of at least PARALLEL_WORK_MIN multiply-adds is split along C's longer side into `threads`
// fixed blocks (rows, or columns starting at multiples of BLOCK_ALIGN): the calling thread copies A
// and B into a SharedArrayBuffer, wakes the workers (Atomics.notify), computes block 0 itself from
// the caller's arrays, then waits (Atomics.wait, synchronous, as the ops are) for the workers' blocks,
// which they write into the same buffer. Every element of C is computed whole by one thread, so the
// bits do not depend on the split (wasm-module.ts), nor on which thread computes a block.
//
// A worker that has not answered WORKER_WAIT_MIN_MS plus WORKER_WAIT_FACTOR times the calling thread's
// own block after that block is done (dead, hung, or starved by the OS), or that failed its block, is
// replaced by the calling thread, which computes the block itself: a failing worker costs time, never
// a wrong or missing result, and never a hang. A worker that died or hung is dropped (terminated; the
// buffer it may still write into is dropped too), and later products split the same way, the
// calling thread computing its blocks. Workers are unref'd: they never keep the process alive.
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads'
import { logger } from '@libp2p/logger'
import {
  A_AT,
  B_AT,
  C_AT,
  COLUMN_END,
  COLUMN_START,
  CONTROL_SLOTS,
  type DataMessage,
  DONE,
  FAULT,
  FAULT_EXIT,
  FAULT_HANG,
  FAULT_NONE,
  GENERATION,
  JOB,
  JOB_MATMUL,
  JOB_STOP,
  K,
  M,
  N,
  REQUEST,
  type ReadyMessage,
  ROW_END,
  ROW_START,
  STATUS,
  STATUS_NO_MEMORY,
  STATUS_OK,
  TRANSPOSE_A,
  TRANSPOSE_B,
  type WorkerStart,
} from './wasm-control.js'
import {
  BLOCK_ALIGN,
  type Block,
  type CompiledModule,
  type MatmulOperands,
  type WasmKernels,
} from './wasm-module.js'

const log = logger('shardnet:kernels:cpu:wasm')

/**
 * products of fewer multiply-adds stay whole on the calling thread: measured on 2 cores, a 128^3
 * product (2^21) split in two ran at 0.9x whole, 256^3 at 1.5x
 */
export const PARALLEL_WORK_MIN = 2 ** 22
/** how long the calling thread waits for a worker after its own block, at the least (ms) */
export const WORKER_WAIT_MIN_MS = 1_000
/** ... and in multiples of the time its own block took */
export const WORKER_WAIT_FACTOR = 10
/** how long a worker may take to start (register the TypeScript loader, instantiate the module) */
export const WORKER_START_TIMEOUT_MS = 30_000
/** the largest shared buffer for A, B and C (floats); larger products stay on the calling thread */
const SHARED_FLOATS_MAX = 2 ** 28

/** a fault the tests inject into one worker's next job */
export type WorkerFault = 'exit' | 'hang'

/**
 * The worker's entry. Under tsx (the CLI, tests) this module is a .ts file and the thread registers
 * tsx itself before importing wasm-worker.ts; from compiled output it imports wasm-worker.js directly.
 */
function startThread(start: WorkerStart, port: MessagePort): Worker {
  const self = import.meta.url
  const options = { workerData: start, transferList: [port] }
  if (self.endsWith('.ts')) {
    const script = new URL('./wasm-worker.ts', self).href
    // require.resolve gives tsx's CommonJS entry; its ES module twin beside it is the one that
    // registers the loader for the importing thread
    const tsx = pathToFileURL(createRequire(fileURLToPath(self)).resolve('tsx/esm/api')).href.replace(
      /\.cjs$/,
      '.mjs',
    )
    const code =
      `import(${JSON.stringify(tsx)}).then((m) => { m.register(); ` +
      `return import(${JSON.stringify(script)}) })`
    return new Worker(code, { ...options, eval: true })
  }
  return new Worker(new URL('./wasm-worker.js', self), options)
}

class PoolWorker {
  readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4))
  readonly #port: MessagePort
  readonly #thread: Worker
  /** ready: answers jobs; dead: exited, failed to start, or dropped */
  state: 'starting' | 'ready' | 'dead' = 'starting'
  /** the data buffer generation this worker has been sent */
  generation = -1
  sequence = 0
  readonly started: Promise<void>

  constructor(compiled: CompiledModule, index: number) {
    const channel = new MessageChannel()
    this.#port = channel.port1
    this.#port.unref()
    const start: WorkerStart = {
      control: this.control.buffer as SharedArrayBuffer,
      module: compiled.module,
      simd: compiled.simd,
      version: compiled.version,
      port: channel.port2,
    }
    this.#thread = startThread(start, channel.port2)
    this.#thread.unref()
    this.started = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log('wasm worker %d did not start in %d ms', index, WORKER_START_TIMEOUT_MS)
        this.drop()
        resolve()
      }, WORKER_START_TIMEOUT_MS)
      timer.unref()
      this.#thread.once('message', (message: ReadyMessage) => {
        clearTimeout(timer)
        if (message.ready && this.state === 'starting') this.state = 'ready'
        else {
          if (!message.ready) log('wasm worker %d could not start: %s', index, message.error)
          this.drop()
        }
        resolve()
      })
      this.#thread.on('error', (error) => log('wasm worker %d failed: %s', index, error.message))
      this.#thread.once('exit', (code) => {
        clearTimeout(timer)
        if (this.state !== 'dead') log('wasm worker %d exited with code %d', index, code)
        this.state = 'dead'
        resolve()
      })
    })
  }

  /** sends the data buffer of a generation (before the job that uses it) */
  sendData(message: DataMessage): void {
    this.#port.postMessage(message)
    this.generation = message.generation
  }

  /** starts a job whose slots are already written; returns its sequence number */
  post(job: number): number {
    this.control[JOB] = job
    this.sequence++
    Atomics.store(this.control, REQUEST, this.sequence)
    Atomics.notify(this.control, REQUEST)
    return this.sequence
  }

  /** whether the job `sequence` finished before `deadline` (performance.now()), waiting for it */
  await(sequence: number, deadline: number): boolean {
    for (;;) {
      const done = Atomics.load(this.control, DONE)
      if (done === sequence) return true
      const left = deadline - performance.now()
      if (left <= 0) return false
      Atomics.wait(this.control, DONE, done, left)
    }
  }

  /** what the worker said about its failed job, if it said anything */
  failure(): string {
    const received = receiveMessageOnPort(this.#port)
    return received === undefined ? 'no message' : String(received.message)
  }

  inject(fault: WorkerFault): void {
    this.control[FAULT] = fault === 'exit' ? FAULT_EXIT : FAULT_HANG
  }

  /** the worker leaves the pool: told to stop, and terminated in case it cannot hear */
  drop(): Promise<void> {
    const wasAlive = this.state !== 'dead'
    this.state = 'dead'
    if (wasAlive) {
      this.control[FAULT] = FAULT_NONE
      this.post(JOB_STOP)
    }
    this.#port.close()
    return this.#thread.terminate().then(() => {})
  }
}

/** the blocks of C for `threads` threads: along its longer side, aligned to BLOCK_ALIGN */
export function splitBlocks(m: number, n: number, threads: number): Block[] {
  const alongRows = m >= n
  const side = alongRows ? m : n
  const step = Math.ceil(Math.ceil(side / threads) / BLOCK_ALIGN) * BLOCK_ALIGN
  const blocks: Block[] = []
  for (let start = 0; start < side; start += step) {
    const end = Math.min(start + step, side)
    blocks.push(alongRows ? { r0: start, r1: end, c0: 0, c1: n } : { r0: 0, r1: m, c0: start, c1: end })
  }
  return blocks
}

export class WasmWorkerPool {
  readonly #workers: PoolWorker[]
  /** the shared buffer for A, B and C, and its generation (a new one when it grows or a worker is dropped) */
  #data: Float32Array | undefined
  #generation = 0
  /** every worker has started or failed to */
  readonly started: Promise<void>

  /** starts `count` workers on the compiled module; they get ready in the background */
  constructor(compiled: CompiledModule, count: number) {
    this.#workers = Array.from({ length: count }, (_, index) => new PoolWorker(compiled, index))
    this.started = Promise.all(this.#workers.map((worker) => worker.started)).then(() => {})
  }

  /** products split among the threads so far */
  split = 0

  /** how many workers answer jobs now */
  get ready(): number {
    return this.#workers.filter((worker) => worker.state === 'ready').length
  }

  /** the threads a product is split for: the calling thread and every worker started */
  get threads(): number {
    return this.#workers.length + 1
  }

  /** for the tests: the worker's next job fails as a crash ('exit') or a hang would */
  injectFault(index: number, fault: WorkerFault): void {
    this.#workers[index].inject(fault)
  }

  /**
   * C = op(A) op(B) split among the threads, or undefined when it should stay whole on the calling
   * thread (small, too large for the shared buffer, or no worker ready) or the calling thread's
   * module cannot hold its block.
   */
  matmul(local: WasmKernels, operands: MatmulOperands): Float32Array | undefined {
    const { a, b, m, k, n, transposeA, transposeB } = operands
    if (m * k * n < PARALLEL_WORK_MIN || this.ready === 0) return undefined
    const total = m * k + k * n + m * n
    if (total > SHARED_FLOATS_MAX) return undefined
    const blocks = splitBlocks(m, n, this.threads)
    if (blocks.length < 2) return undefined

    const data = this.#dataOf(total)
    const bAt = m * k
    const cAt = bAt + k * n
    // the workers' operands: A (only the rows they need where A's rows are stored whole) and B
    if (!transposeA && blocks[0].r1 < m && blocks[0].c0 === 0 && blocks[0].c1 === n)
      data.set(a.subarray(blocks[0].r1 * k, m * k), blocks[0].r1 * k)
    else data.set(a.subarray(0, m * k), 0)
    data.set(b.subarray(0, k * n), bAt)

    const posted: { worker: PoolWorker; block: Block; sequence: number }[] = []
    const mine: Block[] = [blocks[0]]
    for (let i = 1; i < blocks.length; i++) {
      const worker = this.#workers[i - 1]
      if (worker === undefined || worker.state !== 'ready') {
        mine.push(blocks[i])
        continue
      }
      if (worker.generation !== this.#generation)
        worker.sendData({ generation: this.#generation, data: data.buffer as SharedArrayBuffer })
      const control = worker.control
      const block = blocks[i]
      control[GENERATION] = this.#generation
      control[M] = m
      control[K] = k
      control[N] = n
      control[TRANSPOSE_A] = transposeA ? 1 : 0
      control[TRANSPOSE_B] = transposeB ? 1 : 0
      control[ROW_START] = block.r0
      control[ROW_END] = block.r1
      control[COLUMN_START] = block.c0
      control[COLUMN_END] = block.c1
      control[A_AT] = 0
      control[B_AT] = bAt
      control[C_AT] = cAt
      posted.push({ worker, block, sequence: worker.post(JOB_MATMUL) })
    }

    this.split++
    const c = new Float32Array(m * n)
    const began = performance.now()
    for (const block of mine) if (!local.matmulBlock(operands, block, c, 0, n)) return undefined
    const deadline = performance.now() + WORKER_WAIT_MIN_MS + WORKER_WAIT_FACTOR * (performance.now() - began)
    for (const { worker, block, sequence } of posted) {
      let why: string | undefined
      if (!worker.await(sequence, deadline)) {
        why = `no answer in ${Math.round(deadline - began)} ms`
        // it may still write into the buffer: later products use a new one
        this.#data = undefined
        void worker.drop()
      } else if (worker.control[STATUS] !== STATUS_OK) {
        why = worker.control[STATUS] === STATUS_NO_MEMORY ? 'its module is out of memory' : worker.failure()
      }
      if (why === undefined) {
        copyBlockOfC(data, cAt, block, n, c)
        continue
      }
      log('wasm worker: block %o of %dx%dx%d computed on the calling thread: %s', block, m, k, n, why)
      if (!local.matmulBlock(operands, block, c, 0, n)) return undefined
    }
    return c
  }

  /** the shared buffer, at least `floats` long (a new generation when it grows) */
  #dataOf(floats: number): Float32Array {
    if (this.#data === undefined || this.#data.length < floats) {
      this.#data = new Float32Array(new SharedArrayBuffer(floats * 4))
      this.#generation++
    }
    return this.#data
  }

  /** stops every worker */
  async close(): Promise<void> {
    await Promise.all(this.#workers.map((worker) => worker.drop()))
  }
}

/** copies a block of C (row-major [m, n] at cAt in `data`) into c */
function copyBlockOfC(data: Float32Array, cAt: number, block: Block, n: number, c: Float32Array): void {
  const { r0, r1, c0, c1 } = block
  if (c0 === 0 && c1 === n) {
    c.set(data.subarray(cAt + r0 * n, cAt + r1 * n), r0 * n)
    return
  }
  for (let r = r0; r < r1; r++) c.set(data.subarray(cAt + r * n + c0, cAt + r * n + c1), r * n + c0)
}
