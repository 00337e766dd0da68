// The GPT as a training model kind: a member of a training group computes the gradient of its own
// micro-batch of windows from its own shard of the corpus's training split. The split is cut into
// groups x members contiguous shards; member i of group g draws from shard g * members + i, each step's
// windows drawn from a seeded stream of (seed, shard, step) (BatchSampler), so any member can recompute
// any step's batch and no two members of a task read the same part of the corpus.
import { BatchSampler, type ByteCorpus } from '../../data/corpus.js'
import type { GradientComputer, OptimizerSettings, TrainingModel } from '../kind.js'
import { type GptConfig, gptParameterCount, initializeGpt } from './config.js'
import { Gpt, gptLossAndGradient } from './model.js'
import { GPT_BETA2_DEFAULT, GPT_GRAD_CLIP_DEFAULT } from './training.js'

/** The GPT's optimizer settings, the same in a group as in a local run (training.ts). */
export const GPT_OPTIMIZER: Readonly<OptimizerSettings> = Object.freeze({
  beta2: GPT_BETA2_DEFAULT,
  gradClip: GPT_GRAD_CLIP_DEFAULT,
})

export interface GptPlacement {
  /** this member's group */
  group: number
  /** groups in the task */
  groups: number
}

/** The GPT of `config` trained on `corpus` (the training split) by a member of `placement.group`. */
export function gptTrainingModel(
  config: GptConfig,
  corpus: ByteCorpus,
  placement: GptPlacement,
): TrainingModel {
  return {
    kind: 'gpt',
    parameterCount: gptParameterCount(config),
    initialParams: (seed) => initializeGpt(config, seed),
    optimizer: GPT_OPTIMIZER,
    gradientComputer({ backend, seed, batchSize, memberCount, memberIndex }): GradientComputer {
      const gpt = Gpt.create(backend, config)
      const sampler = new BatchSampler(corpus, {
        seed,
        batch: batchSize,
        context: config.context,
        shard: placement.group * memberCount + memberIndex,
        shards: placement.groups * memberCount,
      })
      return {
        async compute(step, params) {
          gpt.setParameters(params)
          const { inputs, targets } = sampler.batchAt(step)
          return gptLossAndGradient(gpt, inputs, targets, batchSize)
        },
        dispose() {
          gpt.dispose()
        },
      }
    },
  }
}
