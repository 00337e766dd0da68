// What the wasm engine's calling thread (wasm-pool.ts) and each of its worker threads
// (wasm-worker.ts) share: one Int32Array of CONTROL_SLOTS slots per worker over a SharedArrayBuffer,
// written before a job's sequence number is stored into REQUEST and read after DONE reaches it
// (Atomics.store and Atomics.load order them), and the messages of the worker's private port.

/** the latest job's sequence number: the calling thread stores it and notifies; the worker waits on it */
export const REQUEST = 0
/** the latest finished job's sequence number: the worker stores it and notifies; the caller waits on it */
export const DONE = 1
/** how the latest finished job ended: one of the STATUS_* values */
export const STATUS = 2
/** the data buffer's generation the job's offsets refer to (a new buffer comes on the port first) */
export const GENERATION = 3
/** the job: what to compute (one of the JOB_* values) */
export const JOB = 4
/** C = op(A) op(B): sizes, transposes (0 or 1), the block of C and the float offsets in the data buffer */
export const M = 5
export const K = 6
export const N = 7
export const TRANSPOSE_A = 8
export const TRANSPOSE_B = 9
export const ROW_START = 10
export const ROW_END = 11
export const COLUMN_START = 12
export const COLUMN_END = 13
export const A_AT = 14
export const B_AT = 15
export const C_AT = 16
/** fault injection for the tests: one of the FAULT_* values, acted on at the next job */
export const FAULT = 17
export const CONTROL_SLOTS = 18

export const JOB_MATMUL = 1
/** the worker ends its loop (and with it the thread) */
export const JOB_STOP = 2

export const STATUS_OK = 0
/** the job threw: the message comes on the port */
export const STATUS_FAILED = 1
/** the worker's module heap could not hold the block's operands */
export const STATUS_NO_MEMORY = 2

export const FAULT_NONE = 0
/** the worker thread ends at the next job, as a crash would, without answering */
export const FAULT_EXIT = 1
/** the worker never answers the next job, as a hung thread would */
export const FAULT_HANG = 2

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
