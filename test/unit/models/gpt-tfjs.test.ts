// The tfjs GPT of the anchor benchmark (bench/gpt-tfjs.ts) against an independent float64 GPT written
// here from GPT-2's definition: the loss at initialisation, every tensor's gradient against central
// finite differences of the float64 loss, and two AdamW steps with clipping and weight decay against
// the update computed in float64 from the same gradients; then shardnet's own GPT on the cpu backend
// against it (loss and gradients), the check bench/gpt-anchor.ts makes at full size.
import '@tensorflow/tfjs-backend-cpu'
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { TfjsGpt, TfjsGptTrainer } from '../../../bench/gpt-tfjs.js'
import { SeededRandom } from '../../../kernels/data/random.js'
import { CpuBackend } from '../../../kernels/index.js'
import { type GptConfig, gptParameterLayout, initializeGpt } from '../../../kernels/models/gpt/config.js'
import { Gpt } from '../../../kernels/models/gpt/model.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 8,
  width: 16,
  layers: 2,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const BATCH = 2
/** shorter than the context: the position table is sliced */
const SEQUENCE = 6

function batchOf(seed: number): { inputs: Float32Array; targets: Float32Array } {
  const random = new SeededRandom(seed)
  const bytes = Array.from({ length: BATCH * (SEQUENCE + 1) }, () => random.int(0, 255))
  const inputs = new Float32Array(BATCH * SEQUENCE)
  const targets = new Float32Array(BATCH * SEQUENCE)
  for (let b = 0; b < BATCH; b++)
    for (let t = 0; t < SEQUENCE; t++) {
      inputs[b * SEQUENCE + t] = bytes[b * (SEQUENCE + 1) + t]
      targets[b * SEQUENCE + t] = bytes[b * (SEQUENCE + 1) + t + 1]
    }
  return { inputs, targets }
}

/** The float64 GPT-2 loss: mean cross-entropy of next bytes, straight from the definition. */
function referenceLoss(
  config: GptConfig,
  params: Float64Array,
  inputs: Float32Array,
  targets: Float32Array,
  batch: number,
): number {
  const { width: d, heads, vocabSize: vocab, layerNormEpsilon: eps } = config
  const sequence = inputs.length / batch
  const layout = new Map(gptParameterLayout(config).map((e) => [e.name, e]))
  const at = (name: string, i: number) => params[(layout.get(name)?.offset ?? Number.NaN) + i]
  const linear = (x: number[], weight: string, bias: string, outputs: number) => {
    const y = Array.from({ length: outputs }, (_, j) => at(bias, j))
    for (let i = 0; i < x.length; i++)
      for (let j = 0; j < outputs; j++) y[j] += x[i] * at(weight, i * outputs + j)
    return y
  }
  const norm = (x: number[], prefix: string) => {
    const mean = x.reduce((a, b) => a + b, 0) / x.length
    const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length
    const rstd = 1 / Math.sqrt(variance + eps)
    return x.map((v, i) => (v - mean) * rstd * at(`${prefix}.weight`, i) + at(`${prefix}.bias`, i))
  }
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
  const headWidth = d / heads
  let total = 0
  for (let b = 0; b < batch; b++) {
    let xs = Array.from({ length: sequence }, (_, t) => {
      const token = inputs[b * sequence + t]
      return Array.from(
        { length: d },
        (_, i) => at('wte.weight', token * d + i) + at('wpe.weight', t * d + i),
      )
    })
    for (let layer = 0; layer < config.layers; layer++) {
      const p = `h.${layer}.`
      const qkv = xs.map((x) =>
        linear(norm(x, `${p}ln_1`), `${p}attn.c_attn.weight`, `${p}attn.c_attn.bias`, 3 * d),
      )
      const attended = xs.map((_, t) => {
        const out = new Array<number>(d).fill(0)
        for (let h = 0; h < heads; h++) {
          const q = (s: number, i: number) => qkv[s][h * headWidth + i]
          const k = (s: number, i: number) => qkv[s][d + h * headWidth + i]
          const v = (s: number, i: number) => qkv[s][2 * d + h * headWidth + i]
          const scores = Array.from({ length: t + 1 }, (_, s) => {
            let dot = 0
            for (let i = 0; i < headWidth; i++) dot += q(t, i) * k(s, i)
            return dot / Math.sqrt(headWidth)
          })
          const max = Math.max(...scores)
          const weights = scores.map((score) => Math.exp(score - max))
          const sum = weights.reduce((a, c) => a + c, 0)
          for (let s = 0; s <= t; s++)
            for (let i = 0; i < headWidth; i++) out[h * headWidth + i] += (weights[s] / sum) * v(s, i)
        }
        return out
      })
      xs = xs.map((x, t) => {
        const projected = linear(attended[t], `${p}attn.c_proj.weight`, `${p}attn.c_proj.bias`, d)
        return x.map((value, i) => value + projected[i])
      })
      xs = xs.map((x) => {
        const hidden = linear(norm(x, `${p}ln_2`), `${p}mlp.c_fc.weight`, `${p}mlp.c_fc.bias`, 4 * d).map(
          gelu,
        )
        const projected = linear(hidden, `${p}mlp.c_proj.weight`, `${p}mlp.c_proj.bias`, d)
        return x.map((value, i) => value + projected[i])
      })
    }
    for (let t = 0; t < sequence; t++) {
      const final = norm(xs[t], 'ln_f')
      const logits = Array.from({ length: vocab }, (_, v) => {
        let dot = 0
        for (let i = 0; i < d; i++) dot += final[i] * at('wte.weight', v * d + i)
        return dot
      })
      const max = Math.max(...logits)
      const logSum = max + Math.log(logits.reduce((a, l) => a + Math.exp(l - max), 0))
      total += logSum - logits[targets[b * sequence + t]]
    }
  }
  return total / (batch * sequence)
}

/** A trained-looking parameter vector: the seeded init plus noise on the gains and biases. */
function parameters(): Float32Array {
  const flat = initializeGpt(CONFIG, 7)
  const random = new SeededRandom(11)
  for (const entry of gptParameterLayout(CONFIG))
    if (entry.init === 'ones' || entry.init === 'zeros')
      for (let i = 0; i < entry.size; i++) flat[entry.offset + i] += 0.1 * random.normal()
  return flat
}

beforeAll(async () => {
  await tf.setBackend('cpu')
  await tf.ready()
})

describe('the tfjs GPT of the anchor benchmark', () => {
  it('computes the float64 loss', async () => {
    const flat = parameters()
    const { inputs, targets } = batchOf(1)
    const model = TfjsGpt.create(CONFIG, flat)
    const loss = await model.loss(inputs, targets, BATCH)
    model.dispose()
    const expected = referenceLoss(CONFIG, Float64Array.from(flat), inputs, targets, BATCH)
    expect(Math.abs(loss - expected) / expected).toBeLessThan(1e-5)
  })

  it('computes every tensor gradient of the float64 loss (central differences)', async () => {
    const flat = parameters()
    const { inputs, targets } = batchOf(2)
    const model = TfjsGpt.create(CONFIG, flat)
    const { gradients } = await model.lossAndGradients(inputs, targets, BATCH)
    model.dispose()
    const params = Float64Array.from(flat)
    const random = new SeededRandom(3)
    const step = 1e-5
    for (const [index, entry] of gptParameterLayout(CONFIG).entries()) {
      const gradient = gradients[index]
      expect(gradient.length).toBe(entry.size)
      const scale = gradient.reduce((max, g) => Math.max(max, Math.abs(g)), 0)
      // the largest entry and two random ones
      const largest = gradient.findIndex((g) => Math.abs(g) === scale)
      for (const i of [largest, random.int(0, entry.size - 1), random.int(0, entry.size - 1)]) {
        const saved = params[entry.offset + i]
        params[entry.offset + i] = saved + step
        const up = referenceLoss(CONFIG, params, inputs, targets, BATCH)
        params[entry.offset + i] = saved - step
        const down = referenceLoss(CONFIG, params, inputs, targets, BATCH)
        params[entry.offset + i] = saved
        const numeric = (up - down) / (2 * step)
        // float32 autodiff against float64: within 1e-5 of the tensor's largest gradient (4.6e-7 seen)
        expect(Math.abs(gradient[i] - numeric), `${entry.name}[${i}]`).toBeLessThan(1e-5 * scale + 1e-10)
      }
    }
  }, 120_000)

  it('applies AdamW with global-norm clipping and decay on 2-D weights, as computed in float64', async () => {
    const flat = parameters()
    const settings = { beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1, gradClip: 0.5 }
    const learningRates = [1e-2, 5e-3]
    const trained = TfjsGpt.create(CONFIG, flat)
    const trainer = new TfjsGptTrainer(trained, settings)
    // the float64 side: the same gradients (read from a second model kept at the same parameters)
    const layout = gptParameterLayout(CONFIG)
    const expected = Float64Array.from(flat)
    const m = new Float64Array(flat.length)
    const v = new Float64Array(flat.length)
    let clipped = false
    for (const [step, learningRate] of learningRates.entries()) {
      const { inputs, targets } = batchOf(10 + step)
      const probe = TfjsGpt.create(CONFIG, Float32Array.from(expected))
      const { loss, gradients } = await probe.lossAndGradients(inputs, targets, BATCH)
      probe.dispose()
      const norm = Math.sqrt(gradients.reduce((sum, g) => sum + g.reduce((s, x) => s + x * x, 0), 0))
      const scale = Math.min(1, settings.gradClip / norm)
      clipped ||= scale < 1
      const t = step + 1
      for (const [index, entry] of layout.entries()) {
        const decay = entry.shape.length === 2 ? settings.weightDecay : 0
        for (let i = 0; i < entry.size; i++) {
          const k = entry.offset + i
          const g = gradients[index][i] * scale
          m[k] = settings.beta1 * m[k] + (1 - settings.beta1) * g
          v[k] = settings.beta2 * v[k] + (1 - settings.beta2) * g * g
          const mHat = m[k] / (1 - settings.beta1 ** t)
          const vHat = v[k] / (1 - settings.beta2 ** t)
          expected[k] -= learningRate * (mHat / (Math.sqrt(vHat) + settings.epsilon) + decay * expected[k])
        }
      }
      const lossTensor = trainer.step(inputs, targets, BATCH, learningRate)
      expect((await lossTensor.data())[0]).toBeCloseTo(loss, 5)
      lossTensor.dispose()
    }
    expect(clipped).toBe(true)
    const got = await trained.flatParameters()
    trainer.dispose()
    trained.dispose()
    // Adam moves a parameter by up to about lr per step: the float32 update of float32 gradients
    // stays within 2e-4 of that reach (2.3e-5 seen: AdamW's m / sqrt(v) magnifies the relative error
    // of the smallest gradients); a wrong rule, e.g. the decay left out, is off by 1e-3 or more
    const reach = learningRates.reduce((a, b) => a + b, 0)
    let worst = 0
    for (let k = 0; k < got.length; k++) worst = Math.max(worst, Math.abs(got[k] - expected[k]) / reach)
    expect(worst).toBeLessThan(2e-4)
  })

  it("gives shardnet's cpu GPT's loss and gradients", async () => {
    const flat = parameters()
    const { inputs, targets } = batchOf(4)
    const model = TfjsGpt.create(CONFIG, flat)
    const theirs = await model.lossAndGradients(inputs, targets, BATCH)
    model.dispose()
    const backend = new CpuBackend()
    const gpt = Gpt.create(backend, CONFIG, flat)
    const ours = gpt.lossAndGradients(inputs, targets, BATCH)
    const loss = (await backend.read(ours.loss))[0]
    const gradients = await Promise.all(ours.gradients.map((g) => backend.read(g)))
    gpt.dispose()
    backend.destroy()
    expect(Math.abs(loss - theirs.loss) / theirs.loss).toBeLessThan(1e-6)
    for (const [index, entry] of gptParameterLayout(CONFIG).entries()) {
      const scale = theirs.gradients[index].reduce((max, g) => Math.max(max, Math.abs(g)), 0)
      let worst = 0
      for (let i = 0; i < entry.size; i++)
        worst = Math.max(worst, Math.abs(gradients[index][i] - theirs.gradients[index][i]))
      // two float32 computations of the same gradient: within 1e-5 of the tensor's largest entry
      expect(worst, entry.name).toBeLessThan(1e-5 * scale)
    }
  })
})
