// One worker thread of the wasm cpu engine (started by wasm-pool.ts): its own instance of the module
// (wasm-module.ts), computing the blocks of products the calling thread hands it through shared
// memory (wasm-control.ts). After instantiating it never returns to its event loop: it waits for a job
// with Atomics.wait, computes, stores DONE and notifies, so a hand-off costs a futex wake, not a message.
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import {
  A_AT,
  B_AT,
  C_AT,
  COLUMN_END,
  COLUMN_START,
  type DataMessage,
  DONE,
  FAULT,
  FAULT_EXIT,
  FAULT_HANG,
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
  STATUS_FAILED,
  STATUS_NO_MEMORY,
  STATUS_OK,
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
  let data: Float32Array = new Float32Array(0)
  for (;;) {
    Atomics.wait(control, REQUEST, seen)
    const sequence = Atomics.load(control, REQUEST)
    if (sequence === seen) continue
    seen = sequence
    const job = control[JOB]
    if (job === JOB_STOP) return
    const fault = control[FAULT]
    if (fault === FAULT_EXIT) process.exit(1)
    if (fault === FAULT_HANG) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
    let status = STATUS_OK
    try {
      while (generation !== control[GENERATION]) {
        const received = receiveMessageOnPort(port)
        if (received === undefined) throw new Error(`no data buffer of generation ${control[GENERATION]}`)
        const message = received.message as DataMessage
        generation = message.generation
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
      const block = {
        r0: control[ROW_START],
        r1: control[ROW_END],
        c0: control[COLUMN_START],
        c1: control[COLUMN_END],
      }
      if (!kernels.matmulBlock(operands, block, data, control[C_AT], n)) status = STATUS_NO_MEMORY
    } catch (error) {
      status = STATUS_FAILED
      port.postMessage(error instanceof Error ? error.message : String(error))
    }
    control[STATUS] = status
    Atomics.store(control, DONE, sequence)
    Atomics.notify(control, DONE)
  }
}
