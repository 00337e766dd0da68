// The wasm cpu engine's worker threads (wasm-worker.ts), each with its own instance of the module, and
// the split of a product among them and the calling thread.
//
// A product of at least PARALLEL_WORK_MIN multiply-adds is split along C's longer side into blocks
// (rows, or columns starting at multiples of BLOCK_ALIGN; about BLOCKS_PER_THREAD per thread, none
// under BLOCK_WORK_MIN multiply-adds). The calling thread copies A and B into a SharedArrayBuffer,
// wakes the idle workers (Atomics.notify), and then every thread claims blocks one at a time until
// none is left (wasm-control.ts), so a thread that the OS runs less often computes fewer blocks and
// nobody waits for it. The calling thread computes its blocks from the caller's arrays straight into
// the result; the workers write theirs into the shared buffer, and the calling thread waits
// (Atomics.wait, synchronous, as the ops are) for each block it did not compute and copies it over.
// Every element of C is computed whole by one thread, so the bits depend neither on the blocks nor
// on which thread computed each (wasm-module.ts).
//
// A block that a worker failed, or claimed and has not finished within WORKER_STEAL_FACTOR times the
// calling thread's own time a block after the calling thread ran out of blocks (the worker is starved
// by the OS, as on a busy machine, or died or hung), is computed by the calling thread itself, and the
// worker's copy, if it ever comes, is not used: a slow or failing worker costs at most about that
// time, never a wrong or missing result, and never a hang. A worker still busy with an earlier job sits
// the next ones out; the next job then takes a new shared buffer if that worker may still write into
// the current one; a worker busy for more than WORKER_WAIT_MIN_MS plus WORKER_WAIT_FACTOR times its
// job's time is dropped (terminated) as hung. After a job in which the calling thread computed a late
// worker's block, jobs run on the calling thread alone for BACKOFF_MIN_MS, doubling up to
// BACKOFF_MAX_MS while that goes on: on a machine whose cores are busy with other processes the
// workers are late every time, and the calling thread alone is faster than waiting for them (the bits
// are the same either way). Workers are unref'd: they never keep the process alive.
import { MessageChannel, type MessagePort, receiveMessageOnPort, type Worker } from 'node:worker_threads'
import { logger } from '@libp2p/logger'
import { startModuleWorker } from '../module-worker.js'
import type { AttentionSizes } from '../ops/transformer-shapes.js'
import {
  A_AT,
  ALONG_ROWS,
  B_AT,
  BATCH,
  BLOCK_FAILED,
  BLOCKS_MAX,
  C_AT,
  CONTROL_SLOTS,
  COUNT,
  claimBlock,
  type DataMessage,
  DONE,
  FAULT,
  FAULT_EXIT,
  FAULT_HANG,
  FAULT_NONE,
  GENERATION,
  GRAD_AT,
  HEAD_WIDTH,
  HEADER_SLOTS,
  HEADS,
  JOB,
  JOB_ATTENTION,
  JOB_ATTENTION_BACKWARD,
  JOB_MATMUL,
  JOB_STOP,
  K,
  LSE_AT,
  M,
  N,
  OUTPUT_AT,
  openClaims,
  pairClaims,
  QKV_AT,
  REQUEST,
  RESULT_AT,
  type ReadyMessage,
  SEQUENCE,
  STATE,
  STATUS,
  STATUS_FAILED,
  STEP,
  setBlockState,
  TAG,
  TAG_MODULO,
  THREAD,
  TRANSPOSE_A,
  TRANSPOSE_B,
  WIDTH,
  type WorkerStart,
} from './wasm-control.js'
import {
  attentionOnWasm,
  BLOCK_ALIGN,
  type Block,
  blockOf,
  type CompiledModule,
  type MatmulOperands,
  type Split,
  type WasmKernels,
} from './wasm-module.js'

const log = logger('shardnet:kernels:cpu:wasm')

/**
 * products of fewer multiply-adds stay on the calling thread: measured on 2 shared cores, a 128^3
 * product (2^21) split in two ran at 0.9x whole; 256^3 (2^24) at 1.2-1.4x back to back but 0.6-0.9x
 * after the worker had slept a few milliseconds (between other work, as in bench:kernels' rounds);
 * 1024^3 at 1.7x
 */
export const PARALLEL_WORK_MIN = 2 ** 25
/** blocks a product is split into per thread, where each still has BLOCK_WORK_MIN multiply-adds */
export const BLOCKS_PER_THREAD = 4
/** the fewest multiply-adds in a block (a block costs a few microseconds besides its work) */
export const BLOCK_WORK_MIN = 2 ** 20
/** floats of B in a block of columns, where B is larger (512 KiB: within a core's L2 cache) */
export const B_BLOCK_FLOATS = 2 ** 17
/** the narrowest block of columns of that kind */
export const COLUMN_BLOCK_MIN = 64
/**
 * how long the calling thread waits for a worker's unfinished block, after running out of blocks, in
 * multiples of its own time a block, before computing the block itself
 */
export const WORKER_STEAL_FACTOR = 2
/** after a job with a late worker, jobs stay on the calling thread this long (ms), doubling ... */
export const BACKOFF_MIN_MS = 50
/** ... up to this, while workers stay late */
export const BACKOFF_MAX_MS = 5_000
/** a worker still busy this long after its job started (ms) ... */
export const WORKER_WAIT_MIN_MS = 1_000
/** ... plus this many times the job's time on the calling thread is dropped as hung */
export const WORKER_WAIT_FACTOR = 10
/**
 * how long a product waits for a busy worker to finish its previous job before going on without it
 * (the worker that computed the previous product's last block needs microseconds)
 */
export const WORKER_IDLE_WAIT_MS = 0.2
/** how long a worker may take to start (register the TypeScript loader, instantiate the module) */
export const WORKER_START_TIMEOUT_MS = 30_000
/** the largest shared buffer (header, A, B, C; 4-byte slots): larger products stay on the calling thread */
const SHARED_SLOTS_MAX = 2 ** 28

/** a fault the tests inject into one worker's next claimed block */
export type WorkerFault = 'exit' | 'hang'

/** The worker's thread, running wasm-worker.ts (kernels/module-worker.ts). */
function startThread(start: WorkerStart, port: MessagePort): Worker {
  return startModuleWorker(import.meta.url, 'wasm-worker', { workerData: start, transferList: [port] })
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
  /** when its last job was posted (performance.now()) and how long that job took the calling thread */
  postedAt = 0
  jobMs = 0
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
        void this.drop()
        resolve()
      }, WORKER_START_TIMEOUT_MS)
      timer.unref()
      this.#thread.once('message', (message: ReadyMessage) => {
        clearTimeout(timer)
        if (message.ready && this.state === 'starting') this.state = 'ready'
        else {
          if (!message.ready) log('wasm worker %d could not start: %s', index, message.error)
          void this.drop()
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

  /**
   * whether it is ready and done with its last job, waiting up to `ms` for that (a worker woken late
   * may still be in an earlier product)
   */
  awaitIdle(ms: number): boolean {
    if (this.state !== 'ready') return false
    const done = Atomics.load(this.control, DONE)
    if (done === this.sequence) return true
    Atomics.wait(this.control, DONE, done, ms)
    return Atomics.load(this.control, DONE) === this.sequence
  }

  /** sends the data buffer of a generation (before the job that uses it) */
  sendData(message: DataMessage): void {
    this.#port.postMessage(message)
    this.generation = message.generation
  }

  /** starts a job whose slots are already written */
  post(job: number): void {
    this.control[JOB] = job
    this.postedAt = performance.now()
    this.jobMs = 0
    this.sequence++
    Atomics.store(this.control, REQUEST, this.sequence)
    Atomics.notify(this.control, REQUEST)
  }

  /** what the worker said about its failed jobs, if anything */
  failures(): string {
    const messages: string[] = []
    for (let received = receiveMessageOnPort(this.#port); received !== undefined; ) {
      messages.push(String(received.message))
      received = receiveMessageOnPort(this.#port)
    }
    return messages.length === 0 ? 'no message' : messages.join('; ')
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

const alignUp = (value: number) => Math.ceil(value / BLOCK_ALIGN) * BLOCK_ALIGN
const alignDown = (value: number) => Math.floor(value / BLOCK_ALIGN) * BLOCK_ALIGN

/**
 * C's blocks for a product on `threads` threads (the calling thread computes them one after the other
 * when it is alone). Blocks of columns where there are enough of them, because each thread then
 * packs only its blocks' part of B (XNNPACK packs B at about 4 ns a float: at n = 256, a fifth of a
 * product's time), where blocks of rows have every thread pack all of B; blocks of columns need A
 * whole, which each thread copies (cheaper than packing).
 * - Blocks of columns at most as wide as keeps their part of B within B_BLOCK_FLOATS (a core's cache:
 *   XNNPACK reads the packed B once per few rows of A; on one thread at n = 1024 and 2048 such blocks
 *   ran at 1.04-1.08x the whole product), at least COLUMN_BLOCK_MIN wide (narrower ones ran slower
 *   than whole), about BLOCKS_PER_THREAD a thread; used when there are at least two a thread (or,
 *   on one thread, where B is larger than B_BLOCK_FLOATS).
 * - Else blocks along C's longer side (rows on a tie), about BLOCKS_PER_THREAD a thread, each of at
 *   least BLOCK_WORK_MIN multiply-adds where C is large enough.
 * At most BLOCKS_MAX blocks; every block but the last is a multiple of BLOCK_ALIGN wide.
 */
export function splitOf(m: number, k: number, n: number, threads: number): Split {
  const cacheWidth = Math.max(COLUMN_BLOCK_MIN, alignDown(B_BLOCK_FLOATS / k), alignUp(n / BLOCKS_MAX))
  if (threads === 1) {
    return k * n > B_BLOCK_FLOATS && n > cacheWidth
      ? { alongRows: false, step: cacheWidth, count: Math.ceil(n / cacheWidth) }
      : { alongRows: true, step: m, count: 1 }
  }
  const width = Math.max(
    COLUMN_BLOCK_MIN,
    Math.min(cacheWidth, alignUp(n / (threads * BLOCKS_PER_THREAD))),
    alignUp(n / BLOCKS_MAX),
  )
  if (Math.ceil(n / width) >= 2 * threads)
    return { alongRows: false, step: width, count: Math.ceil(n / width) }
  const alongRows = m >= n
  const side = alongRows ? m : n
  const across = alongRows ? n : m
  const step = alignUp(
    Math.max(
      Math.ceil(side / (threads * BLOCKS_PER_THREAD)),
      Math.ceil(BLOCK_WORK_MIN / (k * across)),
      Math.ceil(side / BLOCKS_MAX),
      1,
    ),
  )
  return { alongRows, step, count: Math.ceil(side / step) }
}

/** a claim function that hands out block `index` once */
function onlyBlock(index: number): () => number {
  let given = false
  return () => {
    if (given) return -1
    given = true
    return index
  }
}

export class WasmWorkerPool {
  readonly #workers: PoolWorker[]
  /** the shared buffer (header, A, B and C) and its generation: new when it grows or a worker is dropped */
  #data: { header: Int32Array; floats: Float32Array } | undefined
  #generation = 0
  #tag = 0
  /** every worker has started or failed to */
  readonly started: Promise<void>
  /** products split among the threads so far */
  split = 0
  /** blocks of them that workers computed, and that workers failed or were late with */
  workerBlocks = 0
  stolenBlocks = 0
  /** jobs stay on the calling thread until then (performance.now()); the next back-off's length */
  #alone = 0
  #backoffMs = BACKOFF_MIN_MS

  /** starts `count` workers on the compiled module; they get ready in the background */
  constructor(compiled: CompiledModule, count: number) {
    this.#workers = Array.from({ length: count }, (_, index) => new PoolWorker(compiled, index))
    this.started = Promise.all(this.#workers.map((worker) => worker.started)).then(() => {})
  }

  /** how many workers answer jobs now */
  get ready(): number {
    return this.#workers.filter((worker) => worker.state === 'ready').length
  }

  /** the threads a product is split for: the calling thread and every worker started */
  get threads(): number {
    return this.#workers.length + 1
  }

  /** for the tests: the worker's next claimed block fails as a crash ('exit') or a hang would */
  injectFault(index: number, fault: WorkerFault): void {
    this.#workers[index].inject(fault)
  }

  /**
   * C = op(A) op(B) in the blocks of `split` (splitOf for this.threads) among the threads, or
   * undefined when the calling thread should compute it alone (one block, too large for the shared
   * buffer, no worker idle) or its module cannot hold its operands.
   */
  matmul(local: WasmKernels, operands: MatmulOperands, split: Split): Float32Array | undefined {
    const { a, b, m, k, n, transposeA, transposeB } = operands
    if (split.count < 2) return undefined
    const aAt = HEADER_SLOTS
    const bAt = aAt + m * k
    const cAt = bAt + k * n
    const job = this.#begin(cAt + m * n, split.count, (floats) => {
      floats.set(a.subarray(0, m * k), aAt)
      floats.set(b.subarray(0, k * n), bAt)
      return {
        [M]: m,
        [K]: k,
        [N]: n,
        [TRANSPOSE_A]: transposeA ? 1 : 0,
        [TRANSPOSE_B]: transposeB ? 1 : 0,
        [ALONG_ROWS]: split.alongRows ? 1 : 0,
        [STEP]: split.step,
        [A_AT]: aAt,
        [B_AT]: bAt,
        [C_AT]: cAt,
        [JOB]: JOB_MATMUL,
      }
    })
    if (job === undefined) return undefined
    const { header, floats, tag } = job
    const c = new Float32Array(m * n)
    const began = performance.now()
    const claim = () => claimBlock(header, tag, split.count, 0)
    const done = (index: number) => setBlockState(header, index, -1)
    if (!local.matmulBlocks(operands, split, claim, c, 0, n, done)) return this.#abandon(header, tag)
    const finished = this.#collect(job, split.count, began, `${m}x${k}x${n}`, {
      copy: (index) => copyBlockOfC(floats, cAt, blockOf(split, m, n, index), n, c),
      compute: (index) => local.matmulBlocks(operands, split, onlyBlock(index), c, 0, n),
    })
    return finished ? c : undefined
  }

  /**
   * attention split among the threads by pairs (sequence, head), or undefined when the calling
   * thread should compute it alone (sizes for the reference, fewer than 2 pairs, less work than
   * PARALLEL_WORK_MIN, no worker idle) or its module cannot hold a pair's blocks
   */
  attention(
    local: WasmKernels,
    qkv: Float32Array,
    sizes: AttentionSizes,
  ): { output: Float32Array; logSumExp: Float32Array } | undefined {
    const { batch, sequence: T, heads, width: D } = sizes
    const rows = batch * T
    const qkvAt = HEADER_SLOTS
    const outputAt = qkvAt + rows * 3 * D
    const lseAt = outputAt + rows * D
    const pairs = batch * heads
    const step = Math.ceil(pairs / BLOCKS_MAX)
    const count = Math.ceil(pairs / step)
    if (!attentionSplits(sizes)) return undefined
    const job = this.#begin(lseAt + pairs * T, count, (floats) => {
      floats.set(qkv.subarray(0, rows * 3 * D), qkvAt)
      return {
        ...attentionSlots(sizes, step),
        [QKV_AT]: qkvAt,
        [OUTPUT_AT]: outputAt,
        [LSE_AT]: lseAt,
        [JOB]: JOB_ATTENTION,
      }
    })
    if (job === undefined) return undefined
    const { header, floats, tag } = job
    const output = new Float32Array(rows * D)
    const logSumExp = new Float32Array(pairs * T)
    const began = performance.now()
    if (!local.attentionPairs(qkv, sizes, pairClaims(header, tag, step, pairs, 0).claim, output, logSumExp))
      return this.#abandon(header, tag)
    const finished = this.#collect(job, count, began, 'attention', {
      copy: (index) => {
        for (let pair = index * step; pair < Math.min((index + 1) * step, pairs); pair++) {
          copyPairColumns(floats, outputAt, output, sizes, pair, 1)
          logSumExp.set(floats.subarray(lseAt + pair * T, lseAt + (pair + 1) * T), pair * T)
        }
      },
      compute: (index) => local.attentionPairs(qkv, sizes, pairsOf(index, step, pairs), output, logSumExp),
    })
    return finished ? { output, logSumExp } : undefined
  }

  /** attentionBackward split among the threads by pairs, as attention */
  attentionBackward(
    local: WasmKernels,
    gradOutput: Float32Array,
    qkv: Float32Array,
    output: Float32Array,
    logSumExp: Float32Array,
    sizes: AttentionSizes,
  ): Float32Array | undefined {
    const { batch, sequence: T, heads, width: D } = sizes
    const rows = batch * T
    const qkvAt = HEADER_SLOTS
    const gradAt = qkvAt + rows * 3 * D
    const outputAt = gradAt + rows * D
    const lseAt = outputAt + rows * D
    const resultAt = lseAt + batch * heads * T
    const pairs = batch * heads
    const step = Math.ceil(pairs / BLOCKS_MAX)
    const count = Math.ceil(pairs / step)
    if (!attentionSplits(sizes)) return undefined
    const job = this.#begin(resultAt + rows * 3 * D, count, (floats) => {
      floats.set(qkv.subarray(0, rows * 3 * D), qkvAt)
      floats.set(gradOutput.subarray(0, rows * D), gradAt)
      floats.set(output.subarray(0, rows * D), outputAt)
      floats.set(logSumExp.subarray(0, pairs * T), lseAt)
      return {
        ...attentionSlots(sizes, step),
        [QKV_AT]: qkvAt,
        [GRAD_AT]: gradAt,
        [OUTPUT_AT]: outputAt,
        [LSE_AT]: lseAt,
        [RESULT_AT]: resultAt,
        [JOB]: JOB_ATTENTION_BACKWARD,
      }
    })
    if (job === undefined) return undefined
    const { header, floats, tag } = job
    const gradQkv = new Float32Array(rows * 3 * D)
    const began = performance.now()
    const compute = (claim: () => number) =>
      local.attentionBackwardPairs(gradOutput, qkv, output, logSumExp, sizes, claim, gradQkv)
    if (!compute(pairClaims(header, tag, step, pairs, 0).claim)) return this.#abandon(header, tag)
    const finished = this.#collect(job, count, began, 'attention backward', {
      copy: (index) => {
        for (let pair = index * step; pair < Math.min((index + 1) * step, pairs); pair++)
          copyPairColumns(floats, resultAt, gradQkv, sizes, pair, 3)
      },
      compute: (index) => compute(pairsOf(index, step, pairs)),
    })
    return finished ? gradQkv : undefined
  }

  /**
   * Starts a job of `count` blocks on every idle worker: the shared buffer of `slots` slots, filled
   * by `fill`, which answers the job's control slots. Undefined when no worker is idle or the buffer
   * would be too large.
   */
  #begin(
    slots: number,
    count: number,
    fill: (floats: Float32Array) => Record<number, number>,
  ): { header: Int32Array; floats: Float32Array; tag: number; helpers: PoolWorker[] } | undefined {
    if (slots > SHARED_SLOTS_MAX || count > BLOCKS_MAX) return undefined
    // a worker that computed the last block of the previous job may not have stored DONE yet
    const helpers: PoolWorker[] = []
    for (const worker of this.#workers) {
      if (worker.state !== 'ready') continue
      if (worker.awaitIdle(WORKER_IDLE_WAIT_MS)) {
        helpers.push(worker)
        continue
      }
      const busyMs = performance.now() - worker.postedAt
      if (busyMs > WORKER_WAIT_MIN_MS + WORKER_WAIT_FACTOR * worker.jobMs) {
        log(
          'wasm worker %d busy for %d ms: dropped as hung',
          this.#workers.indexOf(worker),
          Math.round(busyMs),
        )
        void worker.drop()
      }
      // it may still write into the current buffer (a block the calling thread computed instead)
      if (worker.generation === this.#generation) this.#data = undefined
    }
    if (helpers.length === 0 || performance.now() < this.#alone) return undefined
    const { header, floats } = this.#dataOf(slots)
    const values = fill(floats)
    this.#tag = (this.#tag + 1) % TAG_MODULO
    const tag = this.#tag
    openClaims(header, tag, count)
    for (const worker of helpers) {
      if (worker.generation !== this.#generation)
        worker.sendData({ generation: this.#generation, data: header.buffer as SharedArrayBuffer })
      const control = worker.control
      for (const [slot, value] of Object.entries(values)) control[Number(slot)] = value
      control[GENERATION] = this.#generation
      control[COUNT] = count
      control[TAG] = tag
      control[THREAD] = this.#workers.indexOf(worker) + 1
      worker.post(values[JOB])
    }
    this.split++
    return { header, floats, tag, helpers }
  }

  /** the calling thread could not hold its operands: stops the claims, leaves the buffer to the workers */
  #abandon(header: Int32Array, tag: number): undefined {
    openClaims(header, (tag + 1) % TAG_MODULO, 0)
    this.#data = undefined
    return undefined
  }

  /**
   * After the calling thread ran out of blocks: copies each block a worker computed, and computes
   * each one a worker failed or has not finished in WORKER_STEAL_FACTOR times the calling thread's
   * time a block. False when the calling thread's module could not hold a block's operands.
   */
  #collect(
    job: { header: Int32Array; helpers: PoolWorker[] },
    count: number,
    began: number,
    what: string,
    block: { copy(index: number): void; compute(index: number): boolean },
  ): boolean {
    const { header, helpers } = job
    const ownMs = performance.now() - began
    let own = 0
    for (let index = 0; index < count; index++) if (Atomics.load(header, STATE + index) === -1) own++
    const waitMs = (WORKER_STEAL_FACTOR * ownMs) / Math.max(own, 1)
    let late = false
    for (let index = 0; index < count; index++) {
      const state = this.#awaitBlock(header, index, performance.now() + waitMs)
      if (state === -1) continue
      if (state < 0 && state !== BLOCK_FAILED) {
        block.copy(index)
        this.workerBlocks++
        continue
      }
      const why = state === BLOCK_FAILED ? 'it failed' : `no answer in ${waitMs.toFixed(1)} ms`
      log('wasm block %d of %s computed on the calling thread: %s', index, what, why)
      this.stolenBlocks++
      late ||= state !== BLOCK_FAILED
      if (!block.compute(index)) return false
    }
    const jobMs = performance.now() - began
    if (late) {
      this.#alone = performance.now() + this.#backoffMs
      this.#backoffMs = Math.min(2 * this.#backoffMs, BACKOFF_MAX_MS)
    } else this.#backoffMs = BACKOFF_MIN_MS
    for (const worker of helpers) {
      worker.jobMs = jobMs
      if (Atomics.load(worker.control, DONE) === worker.sequence && worker.control[STATUS] === STATUS_FAILED)
        log('wasm worker %d: %s', this.#workers.indexOf(worker), worker.failures())
    }
    return true
  }

  /** block `index`'s state once it is computed or failed, or its state at the deadline */
  #awaitBlock(header: Int32Array, index: number, deadline: number): number {
    for (;;) {
      const state = Atomics.load(header, STATE + index)
      if (state < 0) return state
      const left = deadline - performance.now()
      if (left <= 0) return state
      Atomics.wait(header, STATE + index, state, left)
    }
  }

  /** the shared buffer, at least `slots` 4-byte slots long (a new generation when it grows) */
  #dataOf(slots: number): { header: Int32Array; floats: Float32Array } {
    if (this.#data === undefined || this.#data.floats.length < slots) {
      const buffer = new SharedArrayBuffer(slots * 4)
      this.#data = { header: new Int32Array(buffer, 0, HEADER_SLOTS), floats: new Float32Array(buffer) }
      this.#generation++
    }
    return this.#data
  }

  /** stops every worker */
  async close(): Promise<void> {
    await Promise.all(this.#workers.map((worker) => worker.drop()))
  }
}

/** whether attention of these sizes is worth splitting: on the module, 2 pairs or more, enough work */
export function attentionSplits(sizes: AttentionSizes): boolean {
  const { batch, sequence, heads, headWidth } = sizes
  // two [T, T] products of hd multiply-adds an element per pair
  const work = 2 * batch * heads * sequence * sequence * headWidth
  return attentionOnWasm(sizes) && batch * heads >= 2 && work >= PARALLEL_WORK_MIN
}

/** attention's control slots: its sizes and pairs a block */
function attentionSlots(sizes: AttentionSizes, step: number): Record<number, number> {
  return {
    [BATCH]: sizes.batch,
    [SEQUENCE]: sizes.sequence,
    [HEADS]: sizes.heads,
    [WIDTH]: sizes.width,
    [HEAD_WIDTH]: sizes.headWidth,
    [STEP]: step,
  }
}

/** a claim function that hands out the pairs of block `index` once */
function pairsOf(index: number, step: number, pairs: number): () => number {
  let next = index * step
  const end = Math.min(next + step, pairs)
  return () => (next < end ? next++ : -1)
}

/**
 * copies pair (b, h)'s columns of every row of sequence b from `data` (from float `at`) into `into`:
 * `parts` slices of headWidth floats, one per width (attention's output: 1; gradQkv: 3)
 */
function copyPairColumns(
  data: Float32Array,
  at: number,
  into: Float32Array,
  sizes: AttentionSizes,
  pair: number,
  parts: number,
): void {
  const { sequence: T, heads, width: D, headWidth: hd } = sizes
  const b = Math.floor(pair / heads)
  const h = pair % heads
  for (let t = 0; t < T; t++) {
    const row = (b * T + t) * parts * D + h * hd
    for (let part = 0; part < parts; part++) {
      const from = row + part * D
      into.set(data.subarray(at + from, at + from + hd), from)
    }
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
