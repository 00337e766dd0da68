// Proves the GPT on each backend against the independent float64 GPT of gpt-reference.ts: the loss
// and logits of a batch, every parameter tensor's gradient against central finite differences of
// the float64 loss (the tied wte included: rows fed as inputs carry the embedding's and the head's
// gradient, rows never fed only the head's), one trainer step against AdamW computed here, bits per
// byte with a short last window, and generation (greedy bytes equal to the float64 model's, with
// and without the KV cache and across a slide of the window; seeded sampling repeats). A tracking
// backend checks that nothing the model allocates outlives it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../../kernels/backend.js'
import { CpuBackend } from '../../../kernels/cpu-backend.js'
import { SeededRandom } from '../../../kernels/data/random.js'
import {
  evaluateBitsPerByte,
  type GenerateOptions,
  GenerateOptionsError,
  Gpt,
  type GptConfig,
  GptInputError,
  GptTrainer,
  generateBytes,
  gptLossAndGradient,
  gptParameterLayout,
  initializeGpt,
  sampleByte,
} from '../../../kernels/models/gpt/index.js'
import { BACKENDS, expectClose, openBackend } from '../kernels/helpers.js'
import {
  referenceBitsPerByte,
  referenceGreedy,
  referenceLoss,
  referenceSequenceLogits,
} from './gpt-reference.js'
import { trackingBackend } from './tracking-backend.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 8,
  width: 16,
  layers: 2,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const BATCH = 3
const SEQUENCE = 7
/** float64 central differences: truncation error ~ eps^2 f''' (about 1e-8 here), far below float32's */
const FD_EPSILON = 1e-4
const FD_SAMPLES_PER_TENSOR = 5
/**
 * |analytic - numeric| <= FD_ABSOLUTE + FD_RELATIVE |numeric|: both backends' float32 gradients
 * are within 1e-7 of the differences here (gradients up to 0.3; cpu 3e-8, webgpu on lavapipe
 * 7e-8), while a missing or doubled term (the tied head's share of wte, say) is off by 1e-3 or more
 */
const FD_ABSOLUTE = 1e-6
const FD_RELATIVE = 1e-3

/**
 * Seeded parameters farther from the initialisation (every value plus normal(0, 0.1)): LayerNorm
 * gains away from 1 and non-zero biases, so every parameter's gradient is exercised.
 */
function perturbedParameters(seed: number): Float32Array {
  const params = initializeGpt(CONFIG, seed)
  const random = SeededRandom.stream(seed, 'test:perturb')
  for (let i = 0; i < params.length; i++) params[i] += 0.1 * random.normal()
  return params
}

function bytes(seed: number, length: number): Float32Array {
  const random = SeededRandom.stream(seed, 'test:bytes')
  // ids from a small alphabet, so that wte has rows fed as inputs and rows never fed
  return Float32Array.from({ length }, () => 97 + random.int(0, 11))
}

const INPUTS = bytes(1, BATCH * SEQUENCE)
const TARGETS = bytes(2, BATCH * SEQUENCE)

async function collect(generator: AsyncGenerator<number>): Promise<number[]> {
  const out: number[] = []
  for await (const byte of generator) out.push(byte)
  return out
}

describe('the float64 reference', () => {
  it('scores about 8 bits per byte at initialisation and matches a hand-computed uniform model', () => {
    const params = initializeGpt(CONFIG, 3)
    const validation = Uint8Array.from(bytes(4, 30))
    const result = referenceBitsPerByte(CONFIG, params, validation)
    expect(result.windows).toBe(4)
    expect(result.bytes).toBe(29)
    expect(Math.abs(result.bitsPerByte - 8)).toBeLessThan(0.1)
    // all-zero parameters: LayerNorm gives beta = 0, every logit is 0, the model is uniform
    const zero = new Float32Array(params.length)
    expect(referenceBitsPerByte(CONFIG, zero, validation).bitsPerByte).toBeCloseTo(8, 12)
  })
})

for (const kind of BACKENDS) {
  describe(`gpt on ${kind}`, () => {
    let backend: Backend
    beforeAll(async () => {
      backend = await openBackend(kind)
    })
    afterAll(() => backend?.destroy())

    it('gives the float64 reference loss and logits of a batch shorter than the context', async () => {
      const params = perturbedParameters(5)
      const gpt = Gpt.create(backend, CONFIG, params)
      try {
        const { loss } = await gptLossAndGradient(gpt, INPUTS, TARGETS, BATCH)
        const expected = referenceLoss(CONFIG, params, INPUTS, TARGETS, BATCH)
        expect(Math.abs(loss - expected)).toBeLessThan(1e-5 * expected)
        const logits = gpt.logits(INPUTS, BATCH)
        const got = await backend.read(logits)
        logits.dispose()
        const reference = new Float64Array(BATCH * SEQUENCE * 256)
        for (let b = 0; b < BATCH; b++) {
          const ids = INPUTS.subarray(b * SEQUENCE, (b + 1) * SEQUENCE)
          reference.set(referenceSequenceLogits(CONFIG, params, ids), b * SEQUENCE * 256)
        }
        expectClose('logits', reference, got, { atol: 2e-5, rtol: 1e-4 })
      } finally {
        gpt.dispose()
      }
    })

    it("matches central differences of the float64 loss in every parameter tensor's gradient", async () => {
      const params = perturbedParameters(6)
      const gpt = Gpt.create(backend, CONFIG, params)
      const { gradient } = await gptLossAndGradient(gpt, INPUTS, TARGETS, BATCH)
      gpt.dispose()
      const point = Float64Array.from(params)
      const lossAt = (index: number, delta: number) => {
        const saved = point[index]
        point[index] = saved + delta
        const value = referenceLoss(CONFIG, point, INPUTS, TARGETS, BATCH)
        point[index] = saved
        return value
      }
      const random = SeededRandom.stream(7, 'test:samples')
      const fed = new Set(Array.from(INPUTS))
      const failures: string[] = []
      let checked = 0
      for (const entry of gptParameterLayout(CONFIG)) {
        const indices = Array.from({ length: FD_SAMPLES_PER_TENSOR }, () => random.int(0, entry.size - 1))
        if (entry.name === 'wte.weight') {
          // a row fed as an input (embedding + head) and a row never fed (head only)
          const width = CONFIG.width
          indices.push(97 * width + 3, 5 * width + 7, 200 * width)
          expect(fed.has(97) && !fed.has(5) && !fed.has(200)).toBe(true)
        }
        if (entry.name === 'wpe.weight') indices.push(SEQUENCE * CONFIG.width + 1) // an unused position
        for (const index of indices) {
          const at = entry.offset + index
          const numeric = (lossAt(at, FD_EPSILON) - lossAt(at, -FD_EPSILON)) / (2 * FD_EPSILON)
          const analytic = gradient[at]
          checked++
          if (!(Math.abs(analytic - numeric) <= FD_ABSOLUTE + FD_RELATIVE * Math.abs(numeric)))
            failures.push(`${entry.name}[${index}]: analytic ${analytic}, numeric ${numeric}`)
        }
      }
      expect(checked).toBeGreaterThan(FD_SAMPLES_PER_TENSOR * gptParameterLayout(CONFIG).length)
      expect(failures).toEqual([])
    })

    it('steps as AdamW with global-norm clipping, warmup and decay of 2-D weights only', async () => {
      const params = perturbedParameters(8)
      const gpt = Gpt.create(backend, CONFIG, params)
      const { gradient } = await gptLossAndGradient(gpt, INPUTS, TARGETS, BATCH)
      let squares = 0
      for (const value of gradient) squares += value * value
      const norm = Math.sqrt(squares)
      const clip = norm / 3 // the step must scale the gradient by 1/3
      const options = {
        learningRate: 0.01,
        weightDecay: 0.1,
        beta1: 0.9,
        beta2: 0.95,
        epsilon: 1e-3,
        gradClip: clip,
        warmupSteps: 4,
        totalSteps: 10,
        schedule: 'cosine' as const,
      }
      const trainer = new GptTrainer(gpt, options)
      const loss = await trainer.step(INPUTS, TARGETS, BATCH)
      const [lossValue] = await backend.read(loss)
      loss.dispose()
      const after = await gpt.getParameters()
      trainer.dispose()
      gpt.dispose()
      expect(trainer.lastGradientNorm).toBeCloseTo(norm, 4)
      expect(lossValue).toBeCloseTo(referenceLoss(CONFIG, params, INPUTS, TARGETS, BATCH), 4)
      const learningRate = 0.01 / 4 // the first of 4 warmup steps
      const expected = new Float64Array(params.length)
      for (const entry of gptParameterLayout(CONFIG)) {
        const decay = entry.shape.length === 2 ? 0.1 : 0
        for (let i = entry.offset; i < entry.offset + entry.size; i++) {
          const g = gradient[i] / 3
          // step 1: m = (1 - b1) g and v = (1 - b2) g^2, divided by the same (1 - b^1)
          const update = g / (Math.abs(g) + 1e-3) + decay * params[i]
          expected[i] = params[i] - learningRate * update
        }
      }
      expectClose('parameters after one step', expected, after, { atol: 1e-6, rtol: 1e-5 })
    })

    it('lowers the loss of a repeated batch over a few trainer steps', async () => {
      const gpt = Gpt.create(backend, CONFIG, 9)
      const trainer = new GptTrainer(gpt, { learningRate: 3e-3, totalSteps: 20, warmupSteps: 2 })
      const losses: number[] = []
      for (let step = 0; step < 20; step++) {
        const loss = await trainer.step(INPUTS, TARGETS, BATCH)
        losses.push((await backend.read(loss))[0])
        loss.dispose()
      }
      trainer.dispose()
      gpt.dispose()
      expect(losses[0]).toBeGreaterThan(5)
      expect(losses[19]).toBeLessThan(losses[0] - 1)
    })

    it('evaluates bits per byte as the float64 reference does, with a short last window', async () => {
      const params = initializeGpt(CONFIG, 10)
      const gpt = Gpt.create(backend, CONFIG, params)
      // 30 bytes: 29 scored, windows of 8, 8, 8 and 5
      const validation = Uint8Array.from(bytes(11, 30))
      try {
        const result = await evaluateBitsPerByte(backend, gpt, validation, { batch: 2 })
        const expected = referenceBitsPerByte(CONFIG, params, validation)
        expect(result.bytes).toBe(29)
        expect(result.windows).toBe(4)
        expect(Math.abs(result.bitsPerByte - expected.bitsPerByte)).toBeLessThan(1e-5)
        expect(Math.abs(result.bitsPerByte - 8)).toBeLessThan(0.1)
        const capped = await evaluateBitsPerByte(backend, gpt, validation, { maxWindows: 2 })
        const prefix = referenceBitsPerByte(CONFIG, params, validation.subarray(0, 17))
        expect(capped).toMatchObject({ bytes: 16, windows: 2 })
        expect(Math.abs(capped.bitsPerByte - prefix.bitsPerByte)).toBeLessThan(1e-5)
        const trained = perturbedParameters(12)
        gpt.setParameters(trained)
        const other = await evaluateBitsPerByte(backend, gpt, validation, { batch: 3 })
        const otherExpected = referenceBitsPerByte(CONFIG, trained, validation).bitsPerByte
        expect(Math.abs(other.bitsPerByte - otherExpected)).toBeLessThan(1e-5)
      } finally {
        gpt.dispose()
      }
    })

    it('generates float64 greedy bytes with and without the cache, past truncation and slides', async () => {
      const params = perturbedParameters(13)
      const gpt = Gpt.create(backend, CONFIG, params)
      const prompt = Uint8Array.from(bytes(14, 11)) // 3 bytes longer than the context
      try {
        const expected = referenceGreedy(CONFIG, params, prompt, 14)
        for (const cache of [true, false]) {
          const dropped: number[] = []
          const options: GenerateOptions = {
            tokens: 14,
            temperature: 0,
            topK: 0,
            seed: 1,
            cache,
            onTruncate: (count) => dropped.push(count),
          }
          expect(await collect(generateBytes(backend, gpt, prompt, options))).toEqual(expected)
          expect(dropped).toEqual([3])
        }
      } finally {
        gpt.dispose()
      }
    })

    it('samples the same bytes for the same seed, with or without the cache', async () => {
      const gpt = Gpt.create(backend, CONFIG, perturbedParameters(15))
      const prompt = new TextEncoder().encode('abc')
      try {
        const run = (seed: number, cache: boolean) =>
          collect(
            generateBytes(backend, gpt, prompt, { tokens: 12, temperature: 1.5, topK: 40, seed, cache }),
          )
        const first = await run(1, true)
        expect(await run(1, true)).toEqual(first)
        expect(await run(1, false)).toEqual(first)
        expect(await run(2, true)).not.toEqual(first)
        await expect(collect(generateBytes(backend, gpt, new Uint8Array(0), { ...OPTIONS }))).rejects.toThrow(
          GenerateOptionsError,
        )
      } finally {
        gpt.dispose()
      }
    })
  })
}

const OPTIONS: GenerateOptions = { tokens: 1, temperature: 0, topK: 0, seed: 0 }

describe('gpt inputs, sampling and disposal', () => {
  it('refuses a batch that is not byte sequences within the context', () => {
    const gpt = Gpt.create(new CpuBackend(), CONFIG, 0)
    expect(() => gpt.lossAndGradients(new Float32Array(9), new Float32Array(9), 1)).toThrow(GptInputError)
    expect(() => gpt.lossAndGradients(new Float32Array(7), new Float32Array(7), 2)).toThrow(GptInputError)
    expect(() => gpt.lossAndGradients(Float32Array.of(256), Float32Array.of(0), 1)).toThrow(GptInputError)
    expect(() => gpt.lossAndGradients(Float32Array.of(1.5), Float32Array.of(0), 1)).toThrow(GptInputError)
    expect(() => gpt.lossAndGradients(Float32Array.of(1), Float32Array.of(-1), 1)).toThrow(GptInputError)
    gpt.dispose()
  })

  it('samples greedily at temperature 0 and by softmax / temperature among the top k', () => {
    const logits = new Float32Array(256).fill(-5)
    logits[10] = Math.log(2)
    logits[20] = 0
    logits[30] = -0.5
    const random = new SeededRandom(1)
    expect(sampleByte(logits, 0, 0, random)).toBe(10)
    expect(sampleByte(logits, 1, 1, random)).toBe(10)
    const counts = new Map<number, number>()
    const draws = 6000
    for (let i = 0; i < draws; i++) {
      const byte = sampleByte(logits, 1, 2, random)
      counts.set(byte, (counts.get(byte) ?? 0) + 1)
    }
    expect([...counts.keys()].sort((a, b) => a - b)).toEqual([10, 20])
    expect(Math.abs((counts.get(10) ?? 0) / draws - 2 / 3)).toBeLessThan(0.03)
    // temperature 2 over the top 2: weights 2^(1/2) and 1
    let tens = 0
    for (let i = 0; i < draws; i++) if (sampleByte(logits, 2, 2, random) === 10) tens++
    expect(Math.abs(tens / draws - Math.SQRT2 / (Math.SQRT2 + 1))).toBeLessThan(0.03)
  })

  it('disposes every tensor it allocates (training, evaluation, generation)', async () => {
    const { backend, live } = trackingBackend(new CpuBackend())
    const gpt = Gpt.create(backend, CONFIG, 16)
    const trainer = new GptTrainer(gpt, { learningRate: 1e-3, totalSteps: 2 })
    ;(await trainer.step(INPUTS, TARGETS, BATCH)).dispose()
    await gptLossAndGradient(gpt, INPUTS, TARGETS, BATCH)
    await evaluateBitsPerByte(backend, gpt, Uint8Array.from(bytes(17, 20)), { batch: 2 })
    const prompt = Uint8Array.from(bytes(18, 5))
    for (const cache of [true, false])
      await collect(generateBytes(backend, gpt, prompt, { ...OPTIONS, tokens: 9, cache }))
    // a consumer that stops early: the generator's finally still frees the cache
    for await (const _ of generateBytes(backend, gpt, prompt, { ...OPTIONS, tokens: 5 })) break
    trainer.dispose()
    gpt.dispose()
    expect(live().map((tensor) => tensor.shape)).toEqual([])
  })
})
