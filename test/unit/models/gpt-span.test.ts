// Proves the pieces a chain of span servers runs (kernels/models/gpt/span.ts) against local cached
// generation (GptGenerator), which is itself proved against the float64 GPT in gpt.test.ts: the ends
// and spans 0..1, 1..3, 3..4 give bitwise the logits of GptGenerator on every backend, for a prefill
// and the appends after it, and again after a prefill that restarts the window. Refused steps leave
// a session usable; the sizes a server budgets with are the tensors' real sizes; nothing leaks.
// Nucleus sampling (topP) keeps exactly the most likely bytes whose probability reaches topP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../../kernels/backend.js'
import { CpuBackend } from '../../../kernels/cpu-backend.js'
import { SeededRandom } from '../../../kernels/data/random.js'
import {
  Gpt,
  type GptConfig,
  GptGenerator,
  generateBytes,
  initializeGpt,
  sampleByte,
} from '../../../kernels/models/gpt/index.js'
import { GptEnds, GptSpan, GptSpanError } from '../../../kernels/models/gpt/span.js'
import { BACKENDS, openBackend } from '../kernels/helpers.js'
import { trackingBackend } from './tracking-backend.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 12,
  width: 16,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const CUTS = [0, 1, 3, 4]
const PROMPT = [104, 101, 108, 108, 111]
const APPENDED = [32, 119, 111, 114]

function parameters(seed: number): Float32Array {
  const params = initializeGpt(CONFIG, seed)
  const random = SeededRandom.stream(seed, 'test:perturb')
  for (let i = 0; i < params.length; i++) params[i] += 0.05 * random.normal()
  return params
}

/** logits of the last row of each step through ends + spans cut at CUTS */
async function chainLogits(
  backend: Backend,
  params: Float32Array,
  steps: number[][],
): Promise<Float32Array[]> {
  const ends = GptEnds.fromParameters(backend, CONFIG, params)
  const spans = CUTS.slice(1).map((end, i) => GptSpan.fromParameters(backend, CONFIG, params, CUTS[i], end))
  const sessions = spans.map((span) => span.session(CONFIG.context))
  const out: Float32Array[] = []
  let length = 0
  for (const [i, step] of steps.entries()) {
    const offset = i === 0 || step.length > 1 ? 0 : length
    let hidden = await ends.embed(step, offset)
    for (const session of sessions) hidden = await session.forward(hidden, step.length, offset)
    length = offset + step.length
    const last = hidden.subarray((step.length - 1) * CONFIG.width)
    out.push(await ends.logits(last))
  }
  for (const session of sessions) session.dispose()
  for (const span of spans) span.dispose()
  ends.dispose()
  return out
}

/** the same steps through GptGenerator: a step of several bytes is a prefill, of one an append */
async function generatorLogits(
  backend: Backend,
  params: Float32Array,
  steps: number[][],
): Promise<Float32Array[]> {
  const gpt = Gpt.create(backend, CONFIG, params)
  const generator = await GptGenerator.create(gpt)
  const out: Float32Array[] = []
  for (const [i, step] of steps.entries()) {
    const logits = i === 0 || step.length > 1 ? generator.prefill(step) : generator.append(step[0])
    out.push(await backend.read(logits))
    logits.dispose()
  }
  generator.dispose()
  gpt.dispose()
  return out
}

for (const kind of BACKENDS) {
  describe(`gpt spans on ${kind}`, () => {
    let backend: Backend
    beforeAll(async () => {
      backend = await openBackend(kind)
    })
    afterAll(() => backend?.destroy())

    it('give bitwise the logits of local cached generation: prefill, appends, a new prefill', async () => {
      const params = parameters(7)
      const steps = [PROMPT, ...APPENDED.map((b) => [b]), [...PROMPT, ...APPENDED].slice(2), [33]]
      const local = await generatorLogits(backend, params, steps)
      const chain = await chainLogits(backend, params, steps)
      expect(chain.length).toBe(steps.length)
      for (let i = 0; i < steps.length; i++) expect(Array.from(chain[i])).toEqual(Array.from(local[i]))
    })
  })
}

describe('gpt span sessions', () => {
  const params = parameters(3)
  const backend = new CpuBackend()

  it('refuses spans outside the model and sessions past the context', () => {
    for (const [start, end] of [
      [-1, 2],
      [2, 2],
      [3, 1],
      [0, 5],
      [0.5, 2],
    ])
      expect(() => GptSpan.fromParameters(backend, CONFIG, params, start, end)).toThrow(GptSpanError)
    expect(() => GptSpan.fromParameters(backend, CONFIG, params.subarray(1), 0, 1)).toThrow(/parameters/)
    const span = GptSpan.fromParameters(backend, CONFIG, params, 1, 3)
    expect(() => span.session(0)).toThrow(GptSpanError)
    expect(() => span.session(CONFIG.context + 1)).toThrow(/context/)
    span.dispose()
    expect(() => span.session(4)).toThrow(/unloaded/)
  })

  it('refuses a bad shape, offset or length and stays usable after each refusal', async () => {
    const span = GptSpan.fromParameters(backend, CONFIG, params, 0, 2)
    const session = span.session(6)
    const rows = (n: number) => Float32Array.from({ length: n * CONFIG.width }, (_, i) => Math.sin(i))
    const first = await session.forward(rows(3), 3, 0)
    expect(session.length).toBe(3)
    await expect(session.forward(rows(2), 3, 3)).rejects.toThrow(/rows x 16/)
    await expect(session.forward(rows(0), 0, 3)).rejects.toThrow(GptSpanError)
    await expect(session.forward(rows(1), 1, 2)).rejects.toThrow(/length 3/)
    await expect(session.forward(rows(4), 4, 3)).rejects.toThrow(/pass the session's 6 positions/)
    expect(session.length).toBe(3)
    // the same prefill again (offset 0 clears the cache) gives the same rows
    expect(Array.from(await session.forward(rows(3), 3, 0))).toEqual(Array.from(first))
    await session.forward(rows(3).subarray(0, CONFIG.width), 1, 3)
    expect(session.length).toBe(4)
    session.dispose()
    await expect(session.forward(rows(1), 1, 4)).rejects.toThrow(/closed/)
    span.dispose()
  })

  it('budgets with the sizes of the tensors it holds, and disposes every one', async () => {
    const { backend: tracked, live } = trackingBackend(new CpuBackend())
    const span = GptSpan.fromParameters(tracked, CONFIG, params, 1, 4)
    const weights = live().reduce((sum, tensor) => sum + tensor.size * 4, 0)
    expect(span.parameterBytes).toBe(weights)
    const session = span.session(8)
    const before = live().length
    await session.forward(new Float32Array(5 * CONFIG.width).fill(0.25), 5, 0)
    const caches = live().slice(before)
    // keys and values of 3 blocks, each [maxLength, D]
    expect(caches.reduce((sum, tensor) => sum + tensor.size * 4, 0)).toBe(span.cacheBytes(8))
    const ends = GptEnds.fromParameters(tracked, CONFIG, params)
    await ends.logits(await ends.embed([1, 2], 0).then((x) => x.subarray(CONFIG.width)))
    await expect(ends.embed([256], 0)).rejects.toThrow(/vocabulary/)
    await expect(ends.embed([1, 2], CONFIG.context - 1)).rejects.toThrow(/context/)
    await expect(ends.logits(new Float32Array(3))).rejects.toThrow(/16 values/)
    session.dispose()
    span.dispose()
    ends.dispose()
    expect(live().map((tensor) => tensor.shape)).toEqual([])
  })
})

describe('nucleus sampling', () => {
  it('draws only among the most likely bytes whose probability reaches top_p, in proportion', () => {
    // probabilities at temperature 1: 0.5, 0.3, 0.2 (and ~0 for the rest)
    const logits = new Float32Array(256).fill(-80)
    logits[7] = Math.log(0.5)
    logits[8] = Math.log(0.3)
    logits[9] = Math.log(0.2)
    const random = new SeededRandom(5)
    const draws = 6000
    const counts = new Map<number, number>()
    for (let i = 0; i < draws; i++) {
      const byte = sampleByte(logits, 1, 0, random, 0.75)
      counts.set(byte, (counts.get(byte) ?? 0) + 1)
    }
    // 0.5 < 0.75 <= 0.8: bytes 7 and 8, renormalised to 5/8 and 3/8
    expect([...counts.keys()].sort((a, b) => a - b)).toEqual([7, 8])
    expect(Math.abs((counts.get(7) ?? 0) / draws - 5 / 8)).toBeLessThan(0.03)
    for (let i = 0; i < 100; i++) expect(sampleByte(logits, 1, 0, random, 0.4)).toBe(7)
  })

  it('with top_p 1 draws the same bytes as without it, and refuses top_p outside (0, 1]', async () => {
    const backend = new CpuBackend()
    const gpt = Gpt.create(backend, CONFIG, parameters(9))
    const options = { tokens: 6, temperature: 0.9, topK: 0, seed: 4 }
    const run = async (topP?: number) => {
      const out: number[] = []
      for await (const byte of generateBytes(backend, gpt, Uint8Array.from(PROMPT), { ...options, topP }))
        out.push(byte)
      return out
    }
    expect(await run(1)).toEqual(await run(undefined))
    for (const topP of [0, -0.1, 1.5, Number.NaN]) await expect(run(topP)).rejects.toThrow(/topP/)
    gpt.dispose()
  })
})
