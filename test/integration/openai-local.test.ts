// Proves the OpenAI-compatible endpoint end to end with a real model, as a user of the official
// `openai` client sees it: a tiny GPT saved to a model directory, generating through the routes of
// node/api/openai.ts on a real API server, over a stand-in ServingApi that runs the real local model
// code (openai-local-serving.ts; the tests against daemons serving spans are in openai-network).
// The oracle is generateBytes called directly on its own copy of the model: the completion's text
// must be exactly its bytes, decoded as UTF-8, for the same prompt, seed, temperature and top_p.
// Odd requests are answered in OpenAI's shape with the right status, never 500: a model id in
// GET /v1/models/{id} whose percent-encoding is malformed (404), a prompt of arrays nested deeper than
// the stack (400), a completion whose chain is lost after its first bytes (503 model_unavailable,
// whole or as the stream's last event).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CpuBackend } from '../../kernels/index.js'
import { type GptConfig, initializeGpt } from '../../kernels/models/gpt/config.js'
import { generateBytes } from '../../kernels/models/gpt/generate.js'
import { Gpt } from '../../kernels/models/gpt/model.js'
import { createNodeMetrics } from '../../node/api/metrics.js'
import { openAiRoutes } from '../../node/api/openai.js'
import { type ApiServer, startApiServer } from '../../node/api/server.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { gptManifest } from '../unit/models/gpt-fixtures.js'
import { LocalModelServing } from './openai-local-serving.js'

const TOKEN = 'd'.repeat(64)
const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 64,
  width: 32,
  layers: 2,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const PARAMS = initializeGpt(CONFIG, 5)

let directory: string
let serving: LocalModelServing
let server: ApiServer
let client: OpenAI
let oracleBackend: CpuBackend
let oracleGpt: Gpt

/** the bytes the model itself draws: generateBytes on its own copy of the model */
async function oracle(
  prompt: string,
  options: { tokens: number; seed: number; temperature?: number; topP?: number },
): Promise<Uint8Array> {
  const drawn: number[] = []
  for await (const byte of generateBytes(
    oracleBackend,
    oracleGpt,
    new Uint8Array(Buffer.from(prompt, 'utf8')),
    {
      tokens: options.tokens,
      temperature: options.temperature ?? 1,
      topK: 0,
      topP: options.topP ?? 1,
      seed: options.seed,
    },
  ))
    drawn.push(byte)
  return Uint8Array.from(drawn)
}

const decode = (bytes: Uint8Array) => new TextDecoder('utf-8').decode(bytes)

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'shardnet-openai-'))
  await saveGptModel(directory, CONFIG, PARAMS, gptManifest(5))
  serving = await LocalModelServing.open(directory)
  oracleBackend = new CpuBackend()
  oracleGpt = Gpt.create(oracleBackend, CONFIG, PARAMS)
  server = await startApiServer({
    port: 0,
    token: TOKEN,
    metrics: createNodeMetrics({
      startedAtMs: Date.now(),
      peerCount: () => 0,
      dhtRoutingTableSize: () => 0,
      backend: () => undefined,
    }),
    routes: openAiRoutes(() => serving),
  })
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: TOKEN, maxRetries: 0 })
})

afterAll(async () => {
  await server?.close()
  serving?.close()
  oracleGpt?.dispose()
  oracleBackend?.destroy()
  await rm(directory, { recursive: true, force: true })
})

describe('the OpenAI endpoint over a real model', () => {
  it('lists the model', async () => {
    const models = await client.models.list()
    expect(models.data.map((model) => [model.id, model.object, model.owned_by])).toEqual([
      [serving.modelId, 'model', 'shardnet'],
    ])
  })

  it("a completion is the model's bytes for the seed, whole and streamed; usage counts bytes", async () => {
    const prompt = 'The quick brown fox'
    const expected = await oracle(prompt, { tokens: 48, seed: 11, temperature: 0.9, topP: 0.95 })
    const request = {
      model: serving.modelId,
      prompt,
      max_tokens: 48,
      seed: 11,
      temperature: 0.9,
      top_p: 0.95,
    }
    const whole = await client.completions.create(request)
    expect(whole.choices[0].text).toBe(decode(expected))
    expect(whole.choices[0].finish_reason).toBe('length')
    expect(whole.usage).toEqual({ prompt_tokens: 19, completion_tokens: 48, total_tokens: 67 })

    const stream = await client.completions.create({ ...request, stream: true })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0].text
    expect(text).toBe(decode(expected))
  })

  it('a chat completion continues the template, whole and streamed', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Say hi' },
    ]
    const expected = await oracle('system: You are terse.\nuser: Say hi\nassistant: ', {
      tokens: 30,
      seed: 2,
    })
    const whole = await client.chat.completions.create({ model: 'gpt', messages, max_tokens: 30, seed: 2 })
    expect(whole.choices[0].message.content).toBe(decode(expected))
    expect(whole.model).toBe(serving.modelId)

    const stream = await client.chat.completions.create({
      model: 'gpt',
      messages,
      max_tokens: 30,
      seed: 2,
      stream: true,
    })
    let text = ''
    let finish: string | null = null
    for await (const chunk of stream) {
      text += chunk.choices[0].delta.content ?? ''
      finish = chunk.choices[0].finish_reason ?? finish
    }
    expect(text).toBe(decode(expected))
    expect(finish).toBe('length')
  })

  it('the same seed gives the same text; another seed another', async () => {
    const ask = (seed: number) =>
      client.completions.create({
        model: serving.modelId,
        prompt: 'abc',
        max_tokens: 32,
        seed,
        temperature: 1,
      })
    const [first, again, other] = await Promise.all([ask(3), ask(3), ask(4)])
    expect(again.choices[0].text).toBe(first.choices[0].text)
    expect(other.choices[0].text).not.toBe(first.choices[0].text)
  })

  it('stop: the text ends before the first stop sequence, which is not sent', async () => {
    const drawn = await oracle('stop here', { tokens: 200, seed: 21 })
    // an ASCII byte the model draws after a few others: as a stop string it is that one byte
    const at = drawn.findIndex((byte, index) => index >= 3 && byte >= 0x20 && byte < 0x7f)
    expect(at).toBeGreaterThan(0)
    const stop = String.fromCharCode(drawn[at])
    const cut = drawn.indexOf(drawn[at])
    const request = {
      model: serving.modelId,
      prompt: 'stop here',
      max_tokens: 200,
      seed: 21,
      stop: [stop, '\u0000\u0001'],
    }
    const whole = await client.completions.create(request)
    expect(whole.choices[0].text).toBe(decode(drawn.subarray(0, cut)))
    expect(whole.choices[0].finish_reason).toBe('stop')
    expect(whole.usage?.completion_tokens).toBe(cut)

    const stream = await client.completions.create({ ...request, stream: true })
    let text = ''
    let finish: string | null = null
    for await (const chunk of stream) {
      text += chunk.choices[0].text
      finish = chunk.choices[0].finish_reason ?? finish
    }
    expect(text).toBe(decode(drawn.subarray(0, cut)))
    expect(finish).toBe('stop')
  })

  it('bad requests: unknown model 404, max_tokens out of range 400, n=2 400, a wrong key 401', async () => {
    const unknown = await client.completions.create({ model: 'llama', prompt: 'x' }).catch((error) => error)
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError)
    expect(unknown.error).toEqual({
      message: expect.stringMatching(/llama/),
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    })
    const tooMany = await client.completions
      .create({ model: serving.modelId, prompt: 'x', max_tokens: 1_000_000 })
      .catch((error) => error)
    expect(tooMany).toBeInstanceOf(OpenAI.BadRequestError)
    expect(tooMany.param).toBe('max_tokens')
    const several = await client.chat.completions
      .create({ model: serving.modelId, messages: [{ role: 'user', content: 'x' }], n: 2 })
      .catch((error) => error)
    expect(several).toBeInstanceOf(OpenAI.BadRequestError)
    expect(several.param).toBe('n')
    const stranger = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'not-the-token', maxRetries: 0 })
    const refused = await stranger.completions
      .create({ model: serving.modelId, prompt: 'x' })
      .catch((error) => error)
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(refused.status).toBe(401)
  })

  it('a client that leaves mid-stream aborts the generation', async () => {
    const outcomes = serving.outcomes.length
    const stream = await client.completions.create({
      model: serving.modelId,
      prompt: 'a long one',
      max_tokens: 100_000,
      seed: 1,
      stream: true,
    })
    let chunks = 0
    for await (const _chunk of stream) if (++chunks === 20) stream.controller.abort()
    const deadline = Date.now() + 5000
    while (serving.outcomes.length === outcomes && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 10))
    expect(serving.outcomes.slice(outcomes)).toEqual(['aborted'])
    expect(serving.active).toBe(0)
  })
})

const jsonHeaders = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

describe('odd requests to the OpenAI endpoint', () => {
  it('a model id with malformed percent-encoding is a 404 in OpenAI shape', async () => {
    const response = await fetch(`${server.url}/v1/models/%E0%A4%A`, { headers: jsonHeaders })
    expect(response.status).toBe(404)
    const body = (await response.json()) as { error: { type: string; code: string; param: string } }
    expect(body.error).toMatchObject({
      type: 'invalid_request_error',
      code: 'model_not_found',
      param: 'model',
    })
  })

  it('a prompt of arrays nested 200,000 deep is a 400 naming the prompt', async () => {
    const depth = 200_000
    const body = `{"model":"${serving.modelId}","prompt":${'['.repeat(depth)}65${']'.repeat(depth)}}`
    const before = serving.requests.length
    const response = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: jsonHeaders,
      body,
    })
    expect(response.status).toBe(400)
    const answer = (await response.json()) as { error: { type: string; param: string } }
    expect(answer.error).toMatchObject({ type: 'invalid_request_error', param: 'prompt' })
    expect(serving.requests.length).toBe(before)
  })

  it('a prompt of one nested token array still works', async () => {
    const body = JSON.stringify({ model: serving.modelId, prompt: [[72, 105]], max_tokens: 2, seed: 1 })
    const response = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: jsonHeaders,
      body,
    })
    expect(response.status).toBe(200)
    expect(serving.requests.at(-1)?.prompt).toEqual(Uint8Array.from([72, 105]))
  })

  it('a chain lost after the first bytes of a whole completion is a 503 in OpenAI shape', async () => {
    serving.failAfterBytes = 3
    try {
      const body = JSON.stringify({ model: serving.modelId, prompt: 'Hello', max_tokens: 20, seed: 2 })
      for (const path of ['/v1/completions', '/v1/chat/completions']) {
        const request =
          path === '/v1/completions'
            ? body
            : body.replace('"prompt":"Hello"', '"messages":[{"role":"user","content":"Hi"}]')
        const response = await fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: jsonHeaders,
          body: request,
        })
        expect(response.status).toBe(503)
        const answer = (await response.json()) as { error: { message: string; type: string; code: string } }
        expect(answer.error).toMatchObject({ type: 'server_error', code: 'model_unavailable' })
        expect(answer.error.message).toBe('every server of blocks 0-1 is gone')
      }
    } finally {
      serving.failAfterBytes = undefined
    }
  })

  it('a chain lost mid-stream ends the stream with an error event of the same type and code', async () => {
    serving.failAfterBytes = 3
    try {
      const body = JSON.stringify({
        model: serving.modelId,
        prompt: 'Hello',
        max_tokens: 20,
        seed: 2,
        stream: true,
      })
      const response = await fetch(`${server.url}/v1/completions`, {
        method: 'POST',
        headers: jsonHeaders,
        body,
      })
      expect(response.status).toBe(200)
      const events = (await response.text()).split('\n\n').filter((event) => event.startsWith('data: '))
      const last = events.at(-1) ?? ''
      expect(last).not.toBe('data: [DONE]')
      const { error } = JSON.parse(last.slice('data: '.length)) as { error: { type: string; code: string } }
      expect(error).toMatchObject({ type: 'server_error', code: 'model_unavailable' })
    } finally {
      serving.failAfterBytes = undefined
    }
  })
})
