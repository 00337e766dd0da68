// What the wasm engine's calling thread (wasm-pool.ts) and each of its worker threads
// (wasm-worker.ts) share:
// - per worker, one Int32Array of CONTROL_SLOTS slots over a SharedArrayBuffer: the job, written
//   while the worker is idle (DONE equals REQUEST) and before the job's sequence number is stored
//   into REQUEST (Atomics.store and Atomics.load order them);
// - per data buffer (all threads): a header of HEADER_SLOTS int32 (the block claims of the current
//   product and each block's state) followed by A, B and C as floats;
// - per worker, a private MessagePort: new data buffers arrive on it, job failures leave on it.

/** the latest job's sequence number: the calling thread stores it and notifies; the worker waits on it */
export const REQUEST = 0
/** the latest finished job's sequence number: the worker stores it and notifies */
export const DONE = 1
/** how the latest finished job ended: one of the STATUS_* values */
export const STATUS = 2
/** the data buffer's generation the job's offsets refer to (a new buffer comes on the port first) */
export const GENERATION = 3
/** the job: what to compute (one of the JOB_* values) */
export const JOB = 4
/** C = op(A) op(B): sizes and transposes (0 or 1) */
export const M = 5
export const K = 6
export const N = 7
export const TRANSPOSE_A = 8
export const TRANSPOSE_B = 9
/** the blocks: along C's rows (1) or columns (0), rows or columns per block, and how many */
export const ALONG_ROWS = 10
export const STEP = 11
export const COUNT = 12
/** the product's tag (see CLAIM) and this worker's thread number (the calling thread is 0) */
export const TAG = 13
export const THREAD = 14
/** float offsets of A, B and C in the data buffer */
export const A_AT = 15
export const B_AT = 16
export const C_AT = 17
/** fault injection for the tests: one of the FAULT_* values, acted on at the next job */
export const FAULT = 18
/** attention: its sizes (AttentionSizes) and the float offsets of its operands and results */
export const BATCH = 19
export const SEQUENCE = 20
export const HEADS = 21
export const WIDTH = 22
export const HEAD_WIDTH = 23
export const QKV_AT = 24
export const GRAD_AT = 25
export const OUTPUT_AT = 26
export const LSE_AT = 27
export const RESULT_AT = 28
export const CONTROL_SLOTS = 29

export const JOB_MATMUL = 1
/** the worker ends its loop (and with it the thread) */
export const JOB_STOP = 2
/** attention's pairs (sequence, head), STEP pairs a block */
export const JOB_ATTENTION = 3
export const JOB_ATTENTION_BACKWARD = 4

export const STATUS_OK = 0
/** the job threw: the message comes on the port */
export const STATUS_FAILED = 1
/** the worker's module heap could not hold the operands: it claimed no block */
export const STATUS_NO_MEMORY = 2

export const FAULT_NONE = 0
/** the worker thread ends as soon as it has claimed a block, as a crash would, without answering */
export const FAULT_EXIT = 1
/** the worker never finishes the block it claims, as a hung thread would */
export const FAULT_HANG = 2

/** most blocks a product is split into */
export const BLOCKS_MAX = 256
/** bits of a claim that count blocks (the rest is the product's tag) */
const CLAIM_INDEX_BITS = 10
/** tags are taken modulo this, so that a claim stays a positive int32 */
export const TAG_MODULO = 2 ** (31 - CLAIM_INDEX_BITS)
/**
 * header slot: tag * 2^CLAIM_INDEX_BITS + the next unclaimed block's index. A thread claims a block
 * by compare-and-exchange, only while the tag is its job's: a worker that wakes late for a finished
 * product claims nothing of the next one.
 */
export const CLAIM = 0
/**
 * header slots STATE + i: block i's state: 0 unclaimed, t + 1 claimed by thread t, -(t + 1)
 * computed by thread t, BLOCK_FAILED failed (the calling thread computes it). Every change is notified.
 */
export const STATE = 1
export const BLOCK_FAILED = -(2 ** 30)
/** int32 slots before the floats of a data buffer (a multiple of 16: the floats start 64-byte aligned) */
export const HEADER_SLOTS = Math.ceil((STATE + BLOCKS_MAX) / 16) * 16

/** opens the product `tag` of `count` blocks for claims (the calling thread, before waking workers) */
export function openClaims(header: Int32Array, tag: number, count: number): void {
  header.fill(0, STATE, STATE + count)
  Atomics.store(header, CLAIM, tag * 2 ** CLAIM_INDEX_BITS)
}

/** the next block of product `tag` for `thread` (recorded in its state), or -1 when none is left */
export function claimBlock(header: Int32Array, tag: number, count: number, thread: number): number {
  for (;;) {
    const claim = Atomics.load(header, CLAIM)
    if (claim >>> CLAIM_INDEX_BITS !== tag) return -1
    const index = claim & (2 ** CLAIM_INDEX_BITS - 1)
    if (index >= count) return -1
    if (Atomics.compareExchange(header, CLAIM, claim, claim + 1) === claim) {
      setBlockState(header, index, thread + 1)
      return index
    }
  }
}

/**
 * Claims of single pairs (attention's (sequence, head)) over blocks of `step` pairs of `total`:
 * `claim` gives the next pair of the thread's block, claiming the next block (and marking the one
 * before computed) when it is used up; `block` is the block being computed, or -1.
 */
export function pairClaims(
  header: Int32Array,
  tag: number,
  step: number,
  total: number,
  thread: number,
): { claim: () => number; block: () => number } {
  const count = Math.ceil(total / step)
  let block = -1
  let next = 0
  let end = 0
  return {
    claim: () => {
      if (next < end) return next++
      if (block >= 0) setBlockState(header, block, -(thread + 1))
      block = claimBlock(header, tag, count, thread)
      if (block < 0) return -1
      next = block * step
      end = Math.min(next + step, total)
      return next++
    },
    block: () => block,
  }
}

/** stores a block's state and wakes whoever waits on it */
export function setBlockState(header: Int32Array, index: number, state: number): void {
  Atomics.store(header, STATE + index, state)
  Atomics.notify(header, STATE + index)
}

/** what the worker thread is started with */
export interface WorkerStart {
  control: SharedArrayBuffer
  /** the compiled WebAssembly.Module */
  module: object
  simd: boolean
  version: string
  /** a MessagePort: new data buffers arrive on it, job failures leave on it */
  port: unknown
}

/** on the worker's port, from the calling thread: the data buffer of a generation */
export interface DataMessage {
  generation: number
  data: SharedArrayBuffer
}

/** on parentPort, from the worker, once: ready for jobs, or why not */
export type ReadyMessage = { ready: true } | { ready: false; error: string }
