// Runs cpu forward passes of inference shards on one node:worker_threads worker (node/tasks/
// infer-thread.ts), one job at a time, so the daemon's event loop never waits on a matmul. A job is
// abortable: the thread is terminated (a running matmul cannot be interrupted otherwise) and a fresh
// one starts with the next job.
import type { Worker } from 'node:worker_threads'
import type { CpuEngineName } from '../../kernels/cpu/engine.js'
import { startModuleWorker } from '../../kernels/module-worker.js'
import type { ForwardModel } from './infer-forward.js'
import type { InferThreadAnswer, InferThreadJob } from './infer-thread.js'

/** A job ended because its signal fired (stream closed, task cancelled, deadline passed). */
export class InferAbortedError extends Error {
  static override name = 'InferAbortedError'
  override name = 'InferAbortedError'
}

/** The thread, running infer-thread.ts (kernels/module-worker.ts). */
function startThread(): Worker {
  return startModuleWorker(import.meta.url, 'infer-thread')
}

export class InferThread {
  private worker: Worker | undefined
  private nextId = 1
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false

  /**
   * Logits of `inputs` through `model` on the cpu backend in the thread; jobs run one at a time.
   * `inputs` must own its whole buffer, which moves to the thread (it is unusable here afterwards).
   */
  run(
    model: ForwardModel,
    inputs: Float32Array,
    signal: AbortSignal,
    engine?: CpuEngineName,
  ): Promise<{ logits: Float32Array; backendClass: string }> {
    const work = () => this.runNow(model, inputs, signal, engine)
    const result = this.queue.then(work, work)
    this.queue = result.catch(() => {})
    return result
  }

  private runNow(
    model: ForwardModel,
    inputs: Float32Array,
    signal: AbortSignal,
    engine: CpuEngineName | undefined,
  ): Promise<{ logits: Float32Array; backendClass: string }> {
    if (this.closed) return Promise.reject(new InferAbortedError('the inference thread is closed'))
    if (signal.aborted) return Promise.reject(new InferAbortedError(abortMessage(signal)))
    this.worker ??= startThread()
    const worker = this.worker
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const done = () => {
        worker.off('message', onMessage)
        worker.off('error', onError)
        worker.off('exit', onExit)
        signal.removeEventListener('abort', onAbort)
      }
      const onMessage = (answer: InferThreadAnswer) => {
        if (answer.id !== id) return
        done()
        if (answer.ok) resolve({ logits: answer.logits, backendClass: answer.backendClass })
        else reject(new Error(answer.message))
      }
      const onError = (error: Error) => {
        done()
        this.discard(worker)
        reject(error)
      }
      const onExit = (code: number) => {
        done()
        this.discard(worker)
        reject(new Error(`the inference thread exited (code ${code})`))
      }
      const onAbort = () => {
        done()
        this.discard(worker)
        void worker.terminate()
        reject(new InferAbortedError(abortMessage(signal)))
      }
      worker.on('message', onMessage)
      worker.on('error', onError)
      worker.on('exit', onExit)
      signal.addEventListener('abort', onAbort, { once: true })
      const job: InferThreadJob = engine === undefined ? { id, model, inputs } : { id, model, inputs, engine }
      // the inputs move to the thread (the caller hands them over); the model is copied (it is cached)
      worker.postMessage(job, [inputs.buffer as ArrayBuffer])
    })
  }

  private discard(worker: Worker): void {
    if (this.worker === worker) this.worker = undefined
  }

  async close(): Promise<void> {
    this.closed = true
    const worker = this.worker
    this.worker = undefined
    await worker?.terminate()
  }
}

function abortMessage(signal: AbortSignal): string {
  const reason = signal.reason
  return reason instanceof Error ? reason.message : 'aborted'
}
