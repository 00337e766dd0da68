// One worker thread of the wasm cpu engine (started by wasm-pool.ts): its own instance of the module
// (wasm-module.ts), computing the blocks of products the calling thread hands it through shared
// memory (wasm-control.ts). After instantiating it never returns to its event loop: it waits for a job
// with Atomics.wait, claims blocks of the product until none is left (each claim and each computed
// block is stored in the data buffer's header and notified), then stores DONE: a hand-off costs a futex
// wake, not a message.
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import {
  A_AT,
  ALONG_ROWS,
  B_AT,
  BATCH,
  BLOCK_FAILED,
  C_AT,
  COUNT,
  claimBlock,
  type DataMessage,
  DONE,
  FAULT,
  FAULT_EXIT,
  FAULT_HANG,
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
  pairClaims,
  QKV_AT,
  REQUEST,
  RESULT_AT,
  type ReadyMessage,
  SEQUENCE,
  STATUS,
  STATUS_FAILED,
  STATUS_NO_MEMORY,
  STATUS_OK,
  STEP,
  setBlockState,
  TAG,
  THREAD,
  TRANSPOSE_A,
  TRANSPOSE_B,
  WIDTH,
  type WorkerStart,
} from './wasm-control.js'
import { instantiateKernels, type WasmKernels } from './wasm-module.js'

const parent = parentPort
if (parent === null) throw new Error('wasm-worker.ts runs only as a worker thread')
const start = workerData as WorkerStart
const control = new Int32Array(start.control)
const port = start.port as MessagePort

const loaded = await instantiateKernels(start, () => {})
if ('error' in loaded) {
  const message: ReadyMessage = { ready: false, error: loaded.error }
  parent.postMessage(message)
} else {
  const message: ReadyMessage = { ready: true }
  parent.postMessage(message)
  serve(loaded.kernels)
  port.close()
}

/** the jobs, one at a time, until JOB_STOP */
function serve(kernels: WasmKernels): void {
  let seen = 0
  let generation = -1
  let header: Int32Array = new Int32Array(0)
  let data: Float32Array = new Float32Array(0)
  for (;;) {
    Atomics.wait(control, REQUEST, seen)
    const sequence = Atomics.load(control, REQUEST)
    if (sequence === seen) continue
    seen = sequence
    const job = control[JOB]
    if (job === JOB_STOP) return
    let status = STATUS_OK
    /** the block claimed and not yet computed, if any */
    let current = -1
    try {
      while (generation !== control[GENERATION]) {
        const received = receiveMessageOnPort(port)
        if (received === undefined) throw new Error(`no data buffer of generation ${control[GENERATION]}`)
        const message = received.message as DataMessage
        generation = message.generation
        header = new Int32Array(message.data, 0, HEADER_SLOTS)
        data = new Float32Array(message.data)
      }
      const fault = control[FAULT]
      /** the fault strikes once the worker has claimed a block */
      const strike = () => {
        if (fault === FAULT_EXIT) process.exit(1)
        if (fault === FAULT_HANG) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
      }
      if (job === JOB_ATTENTION || job === JOB_ATTENTION_BACKWARD) {
        const sizes = {
          batch: control[BATCH],
          sequence: control[SEQUENCE],
          heads: control[HEADS],
          width: control[WIDTH],
          headWidth: control[HEAD_WIDTH],
        }
        const { batch, sequence, heads, width } = sizes
        const pairs = pairClaims(header, control[TAG], control[STEP], batch * heads, control[THREAD])
        const claim = () => {
          const pair = pairs.claim()
          current = pairs.block()
          if (pair >= 0) strike()
          return pair
        }
        const view = (slot: number, length: number) => data.subarray(control[slot], control[slot] + length)
        const rows = batch * sequence
        const qkv = view(QKV_AT, rows * 3 * width)
        const output = view(OUTPUT_AT, rows * width)
        const logSumExp = view(LSE_AT, batch * heads * sequence)
        const ok =
          job === JOB_ATTENTION
            ? kernels.attentionPairs(qkv, sizes, claim, output, logSumExp)
            : kernels.attentionBackwardPairs(
                view(GRAD_AT, rows * width),
                qkv,
                output,
                logSumExp,
                sizes,
                claim,
                view(RESULT_AT, rows * 3 * width),
              )
        if (!ok) status = STATUS_NO_MEMORY
      } else if (job !== JOB_MATMUL) throw new Error(`unknown job ${job}`)
      else
        status = matmul(kernels, data, header, strike, (block) => {
          current = block
        })
    } catch (error) {
      status = STATUS_FAILED
      if (current >= 0) setBlockState(header, current, BLOCK_FAILED)
      port.postMessage(error instanceof Error ? error.message : String(error))
    }
    control[STATUS] = status
    Atomics.store(control, DONE, sequence)
    Atomics.notify(control, DONE)
  }
}

/** a matmul job's claimed blocks; its status. `claimed` hears each block claimed (-1: computed) */
function matmul(
  kernels: WasmKernels,
  data: Float32Array,
  header: Int32Array,
  strike: () => void,
  claimed: (block: number) => void,
): number {
  const n = control[N]
  const operands = {
    a: data,
    aAt: control[A_AT],
    b: data,
    bAt: control[B_AT],
    m: control[M],
    k: control[K],
    n,
    transposeA: control[TRANSPOSE_A] === 1,
    transposeB: control[TRANSPOSE_B] === 1,
  }
  const split = { alongRows: control[ALONG_ROWS] === 1, step: control[STEP], count: control[COUNT] }
  const tag = control[TAG]
  const thread = control[THREAD]
  const claim = () => {
    const block = claimBlock(header, tag, split.count, thread)
    claimed(block)
    if (block >= 0) strike()
    return block
  }
  const done = (block: number) => {
    claimed(-1)
    setBlockState(header, block, -(thread + 1))
  }
  return kernels.matmulBlocks(operands, split, claim, data, control[C_AT], n, done)
    ? STATUS_OK
    : STATUS_NO_MEMORY
}
