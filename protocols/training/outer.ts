// The DiLoCo-style outer step (Douillard et al. 2023) that joins groups training on disjoint shards
// into one model: every H inner steps each group hands its params to a coordinator, which returns
// the params all groups continue from.
//
// outerStepParams is pure. With outerLearningRate 1 and no momentum it is plain parameter
// averaging (local SGD / FedAvg); other rates apply the averaged delta ("outer gradient")
// `previous - mean(params)` with SGD: next = previous - lr * delta.
import type { OuterStepRequest } from './types.js'

export function averageParams(paramsList: readonly Float32Array[]): Float32Array {
  if (paramsList.length === 0) throw new RangeError('nothing to average')
  const length = paramsList[0].length
  for (const params of paramsList) {
    if (params.length !== length) throw new RangeError('params of different lengths')
  }
  const out = new Float32Array(length)
  for (let i = 0; i < length; i++) {
    let sum = 0
    for (const params of paramsList) sum += params[i]
    out[i] = sum / paramsList.length
  }
  return out
}

/** next = previous - outerLearningRate * (previous - mean(groups)); previous absent or lr 1: the mean. */
export function outerStepParams(
  groupParams: readonly Float32Array[],
  previous?: Float32Array,
  outerLearningRate = 1,
): Float32Array {
  const mean = averageParams(groupParams)
  if (previous === undefined || outerLearningRate === 1) return mean
  if (previous.length !== mean.length) throw new RangeError('previous params of a different length')
  const out = new Float32Array(mean.length)
  for (let i = 0; i < mean.length; i++) out[i] = previous[i] - outerLearningRate * (previous[i] - mean[i])
  return out
}

/**
 * An in-process outer-step coordinator for `groupCount` groups (tests, benchmarks, and a daemon that
 * hosts every group of a task): each group's leader calls `outerStep`; the call resolves once every
 * group has delivered its params for that round, with the same result for all, and again with the
 * same result if a new leader asks for a round already completed.
 */
export class OuterStepBarrier {
  private readonly rounds = new Map<
    number,
    {
      params: Map<string, Float32Array>
      previous?: Float32Array
      done: boolean
      promise: Promise<Float32Array>
      resolve: (params: Float32Array) => void
    }
  >()
  private lastResult: Float32Array | undefined

  constructor(
    readonly groupCount: number,
    readonly outerLearningRate = 1,
  ) {}

  outerStep = (request: OuterStepRequest): Promise<Float32Array> => {
    let round = this.rounds.get(request.round)
    if (!round) {
      let resolve!: (params: Float32Array) => void
      const promise = new Promise<Float32Array>((resolvePromise) => {
        resolve = resolvePromise
      })
      round = { params: new Map(), previous: this.lastResult, done: false, promise, resolve }
      this.rounds.set(request.round, round)
    }
    if (!round.params.has(request.groupId)) round.params.set(request.groupId, request.params.slice())
    if (!round.done && round.params.size === this.groupCount) {
      round.done = true
      const ordered = [...round.params.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, p]) => p)
      const result = outerStepParams(ordered, round.previous, this.outerLearningRate)
      this.lastResult = result
      round.resolve(result)
    }
    return round.promise.then((params) => params.slice())
  }
}
