// The manifest of a GPT model directory that tests and benches write with saveGptModel: a model made
// from seeded parameters, with no training history, dated at the epoch so that its files (and so
// its model id) are the same on every run.
import type { saveGptModel } from '../../../node/executor/model-files.js'

export function gptManifest(seed: number): Parameters<typeof saveGptModel>[3] {
  return {
    model: 'gpt',
    dataset: {},
    seed,
    training: {},
    backend: {},
    metrics: {},
    history: [],
    createdAt: new Date(0).toISOString(),
  }
}
