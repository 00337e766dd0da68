// Odd requests to the OpenAI endpoint answered in OpenAI's shape with the right status, not 500: a
// model id in GET /v1/models/{id} whose percent-encoding is malformed (404), a prompt of arrays nested
// deeper than the stack (400), a completion whose chain is lost after its first bytes (503
// model_unavailable, whole or as the stream's last event).
// The routes run over the real local model (openai-local-serving.ts) on a real API server.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type GptConfig, initializeGpt } from '../../kernels/models/gpt/config.js'
import { createNodeMetrics } from '../../node/api/metrics.js'
import { openAiRoutes } from '../../node/api/openai.js'
import { type ApiServer, startApiServer } from '../../node/api/server.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { LocalModelServing } from './openai-local-serving.js'

const TOKEN = 'e'.repeat(64)
const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 32,
  width: 16,
  layers: 1,
  heads: 2,
  layerNormEpsilon: 1e-5,
}

let directory: string
let serving: LocalModelServing
let server: ApiServer

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'shardnet-openai-review-'))
  await saveGptModel(directory, CONFIG, initializeGpt(CONFIG, 3), {
    model: 'gpt',
    dataset: {},
    seed: 3,
    training: {},
    backend: {},
    metrics: {},
    history: [],
    createdAt: new Date(0).toISOString(),
  })
  serving = await LocalModelServing.open(directory)
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
})

afterAll(async () => {
  await server?.close()
  serving?.close()
  await rm(directory, { recursive: true, force: true })
})

const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

describe('odd requests to the OpenAI endpoint', () => {
  it('a model id with malformed percent-encoding is a 404 in OpenAI shape', async () => {
    const response = await fetch(`${server.url}/v1/models/%E0%A4%A`, { headers })
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
    const response = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers, body })
    expect(response.status).toBe(400)
    const answer = (await response.json()) as { error: { type: string; param: string } }
    expect(answer.error).toMatchObject({ type: 'invalid_request_error', param: 'prompt' })
    expect(serving.requests.length).toBe(0)
  })

  it('a prompt of one nested token array still works', async () => {
    const body = JSON.stringify({ model: serving.modelId, prompt: [[72, 105]], max_tokens: 2, seed: 1 })
    const response = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers, body })
    expect(response.status).toBe(200)
    expect(serving.requests.at(-1)?.prompt).toEqual(Uint8Array.from([72, 105]))
  })

  it('a chain lost after the first bytes of a whole (non-streamed) completion is a 503 in OpenAI shape', async () => {
    serving.failAfterBytes = 3
    try {
      const body = JSON.stringify({ model: serving.modelId, prompt: 'Hello', max_tokens: 20, seed: 2 })
      for (const path of ['/v1/completions', '/v1/chat/completions']) {
        const request =
          path === '/v1/completions'
            ? body
            : body.replace('"prompt":"Hello"', '"messages":[{"role":"user","content":"Hi"}]')
        const response = await fetch(`${server.url}${path}`, { method: 'POST', headers, body: request })
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
      const response = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers, body })
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
