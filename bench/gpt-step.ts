// Training throughput of the GPT (tokens/s) on each backend: a local trainer step (forward,
// backward, the global gradient norm read back, AdamW on the device) and a training-group member's
// step (forward, backward, loss and flat gradient read back: gptLossAndGradient).
//
//   npx tsx bench/gpt-step.ts [--preset tiny] [--batch 8] [--sequence 256] [--steps 5]
//                             [--backends cpu,webgpu]
//
// Batches are random bytes (the speed does not depend on the text). One warm-up step per backend
// and kind, then the median of `steps` timed steps, each ending with a read that waits for the device.
import { parseArgs } from 'node:util'
import { SeededRandom } from '../kernels/data/random.js'
import { createBackend } from '../kernels/index.js'
import {
  GPT_PRESETS,
  Gpt,
  type GptPreset,
  GptTrainer,
  gptLossAndGradient,
} from '../kernels/models/gpt/index.js'

const { values: flags } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    batch: { type: 'string', default: '8' },
    sequence: { type: 'string', default: '256' },
    steps: { type: 'string', default: '5' },
    backends: { type: 'string', default: 'cpu,webgpu' },
  },
})
if (!(flags.preset in GPT_PRESETS)) throw new RangeError(`unknown preset ${flags.preset}`)
const config = GPT_PRESETS[flags.preset as GptPreset]
const batch = Number(flags.batch)
const sequence = Number(flags.sequence)
const steps = Number(flags.steps)
const random = new SeededRandom(1)
const data = Float32Array.from({ length: batch * sequence + 1 }, () => random.int(0, 255))
const inputs = data.subarray(0, batch * sequence)
const targets = data.subarray(1)
const tokens = batch * sequence

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

for (const prefer of flags.backends.split(',') as Array<'cpu' | 'webgpu'>) {
  const backend = await createBackend({ prefer })
  if (backend.kind !== prefer) {
    console.log(`${prefer}: unavailable (${backend.info.fallbackReason})`)
    backend.destroy()
    continue
  }
  const gpt = Gpt.create(backend, config, 1)
  const trainer = new GptTrainer(gpt, { learningRate: 1e-4, totalSteps: steps + 1 })
  const time = async (step: () => Promise<void>) => {
    await step() // warm-up: pipelines compiled, buffers pooled
    const seconds: number[] = []
    for (let i = 0; i < steps; i++) {
      const start = performance.now()
      await step()
      seconds.push((performance.now() - start) / 1000)
    }
    return median(seconds)
  }
  const trainerSeconds = await time(async () => {
    const loss = await trainer.step(inputs, targets, batch)
    await backend.read(loss)
    loss.dispose()
  })
  const memberSeconds = await time(async () => {
    await gptLossAndGradient(gpt, inputs, targets, batch)
  })
  console.log(
    `${backend.kind} (${backend.info.adapterName}), ${flags.preset} B=${batch} T=${sequence}: ` +
      `trainer step ${(tokens / trainerSeconds).toFixed(0)} tokens/s (${trainerSeconds.toFixed(3)} s), ` +
      `loss+gradient read ${(tokens / memberSeconds).toFixed(0)} tokens/s (${memberSeconds.toFixed(3)} s)`,
  )
  trainer.dispose()
  gpt.dispose()
  backend.destroy()
}
