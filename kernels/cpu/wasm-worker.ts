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
  HEADER_SLOTS,
  JOB,
  JOB_MATMUL,
  JOB_STOP,
  K,
  M,
  N,
  REQUEST,
  type ReadyMessage,
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
      if (job !== JOB_MATMUL) throw new Error(`unknown job ${job}`)
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
      const fault = control[FAULT]
      const claim = () => {
        current = claimBlock(header, tag, split.count, thread)
        if (current >= 0 && fault === FAULT_EXIT) process.exit(1)
        if (current >= 0 && fault === FAULT_HANG) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
        return current
      }
      const done = (index: number) => {
        current = -1
        setBlockState(header, index, -(thread + 1))
      }
      if (!kernels.matmulBlocks(operands, split, claim, data, control[C_AT], n, done))
        status = STATUS_NO_MEMORY
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
