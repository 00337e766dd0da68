// Evaluation of a GPT in bits per byte over a validation buffer d of bytes.
//
// Protocol: non-overlapping windows of the model's context C. Window w takes inputs d[wC, wC+C) and
// targets d[wC+1, wC+C+1), with positions restarting at 0 in each window, so every byte but the
// very first is scored exactly once; the last window holds what is left and may be shorter than C.
// The result is the mean cross-entropy over the scored bytes in bits (nats / ln 2). A model that
// predicts the uniform distribution scores 8 bits per byte.
//
// Full windows go through the model `batch` at a time; the short last window goes alone. Each
// batch's summed loss is read back while later batches are enqueued and added up in float64 here.
import type { Backend } from '../../backend.js'
import type { Gpt } from './model.js'

export interface EvaluateOptions {
  /** windows per forward pass; @default 8 */
  batch?: number
  /** evaluate only the first maxWindows windows; @default all */
  maxWindows?: number
}

export interface BitsPerByte {
  bitsPerByte: number
  /** bytes scored */
  bytes: number
  windows: number
}

export const EVALUATE_BATCH_DEFAULT = 8
/** batches whose loss read may be outstanding at once */
const READS_IN_FLIGHT_MAX = 4

export async function evaluateBitsPerByte(
  backend: Backend,
  gpt: Gpt,
  validation: Uint8Array,
  options: EvaluateOptions = {},
): Promise<BitsPerByte> {
  const batch = options.batch ?? EVALUATE_BATCH_DEFAULT
  if (!Number.isInteger(batch) || batch < 1)
    throw new RangeError(`batch must be a positive integer: ${batch}`)
  const context = gpt.config.context
  if (validation.length < 2) throw new RangeError('the validation buffer needs at least 2 bytes')
  const allWindows = Math.ceil((validation.length - 1) / context)
  const maxWindows = options.maxWindows ?? allWindows
  if (!Number.isInteger(maxWindows) || maxWindows < 1)
    throw new RangeError(`maxWindows must be a positive integer: ${maxWindows}`)
  const windows = Math.min(allWindows, maxWindows)
  const scored = Math.min(validation.length - 1, windows * context)
  const fullWindows = Math.floor(scored / context)

  let nats = 0
  let failure: unknown
  const pending: Array<Promise<void>> = []
  /** enqueues `count` windows of `length` bytes from `start` and the read of their summed loss */
  const enqueue = (start: number, count: number, length: number) => {
    const inputs = new Float32Array(count * length)
    const targets = new Float32Array(count * length)
    for (let w = 0; w < count; w++) {
      const from = start + w * context
      for (let i = 0; i < length; i++) {
        inputs[w * length + i] = validation[from + i]
        targets[w * length + i] = validation[from + i + 1]
      }
    }
    const losses = gpt.tokenLosses(inputs, targets, count)
    const total = backend.sum(losses)
    losses.dispose()
    pending.push(
      backend
        .read(total)
        .then((value) => {
          nats += value[0]
        })
        .catch((error: unknown) => {
          failure ??= error
        })
        .finally(() => total.dispose()),
    )
  }
  for (let window = 0; window < fullWindows; window += batch) {
    enqueue(window * context, Math.min(batch, fullWindows - window), context)
    if (pending.length >= READS_IN_FLIGHT_MAX) await pending.shift()
  }
  const rest = scored - fullWindows * context
  if (rest > 0) enqueue(fullWindows * context, 1, rest)
  await Promise.all(pending)
  if (failure !== undefined) throw failure
  return { bitsPerByte: nats / scored / Math.LN2, bytes: scored, windows }
}
