// Proves the OpenAI-compatible routes (node/api/openai.ts), POST /v1/generate (generate-routes.ts) and
// the API server's streaming (server.ts) on a real HTTP server, through the official `openai` client
// where a user would use it: text decoded whole when a character's bytes come in separate pieces,
// OpenAI's error shape and status for each refusal, an error after the stream started as an event the
// client throws, a stream slower in total than the request timeout not cut while it produces, a
// silent one ended, backpressure (a client that stops reading stops the source), and a client that
// goes away aborting the generation. The ServingApi here is a scripted stand-in for the network (it
// yields the pieces a test gives it); the routes and the server are the product.
import { request as httpRequest } from 'node:http'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import {
  GENERATE_API_LIMITS,
  type GenerateStreamLine,
  generateRoutes,
} from '../../../node/api/generate-routes.js'
import { createNodeMetrics } from '../../../node/api/metrics.js'
import { openAiRoutes } from '../../../node/api/openai.js'
import { type ApiServer, startApiServer } from '../../../node/api/server.js'
import {
  type NetworkGenerateRequest,
  type NetworkGenerateResult,
  type NetworkGeneration,
  type ServingApi,
  ServingError,
  type ServingModelListing,
} from '../../../node/serving/api.js'

const ADMIN = 'a'.repeat(64)
const READ = 'b'.repeat(64)
const MODEL = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
const REQUEST_TIMEOUT_MS = 400

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    signal?.throwIfAborted()
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })

interface Script {
  /** what the generation yields, in order; a function: pieces without end */
  pieces: Uint8Array[] | ((index: number) => Uint8Array)
  /** wait before each piece */
  delayMs?: (index: number) => number
  /** thrown before the first byte */
  refuse?: ServingError
  /** thrown after this many pieces */
  failAfter?: number
  finishReason?: 'length' | 'stop'
}

/** A scripted stand-in for the network's ServingApi; records what it was asked and how each run ended. */
class ScriptedServing implements ServingApi {
  script: Script = { pieces: [] }
  readonly requests: NetworkGenerateRequest[] = []
  /** pieces handed out, over all generations */
  pulls = 0
  /**
   * how each generation ended: 'done', 'failed', the name of the signal's reason when it was aborted,
   * or 'closed' (the iteration stopped without an abort)
   */
  readonly ends: string[] = []
  listings: ServingModelListing[] = [
    {
      model: MODEL,
      name: 'gpt',
      blocks: 4,
      context: 64,
      served: [{ start: 0, end: 2 }],
      chainFound: true,
      createdMs: 1_700_000_000_000,
    },
  ]

  async models(): Promise<ServingModelListing[]> {
    return this.listings
  }

  generate(request: NetworkGenerateRequest): NetworkGeneration {
    this.requests.push(request)
    const script = this.script
    if (request.model !== MODEL) throw new ServingError('not-found', `no model ${request.model} is known`)
    let settle!: (result: NetworkGenerateResult) => void
    let fail!: (error: unknown) => void
    const result = new Promise<NetworkGenerateResult>((resolve, reject) => {
      settle = resolve
      fail = reject
    })
    result.catch(() => {})
    const self = this
    async function* run(): AsyncGenerator<Uint8Array> {
      let ended = 'closed'
      let tokens = 0
      try {
        if (script.refuse) throw script.refuse
        for (let index = 0; ; index++) {
          if (Array.isArray(script.pieces) && index >= script.pieces.length) break
          await sleep(script.delayMs?.(index) ?? 0, request.signal)
          if (script.failAfter === index)
            throw new ServingError('unavailable', 'every server of blocks 2-3 left')
          const piece = Array.isArray(script.pieces) ? script.pieces[index] : script.pieces(index)
          self.pulls++
          tokens += piece.length
          yield piece
        }
        ended = 'done'
        settle({
          tokens,
          promptTokens: request.prompt.length,
          truncatedBytes: 0,
          finishReason: script.finishReason ?? 'length',
          seconds: 0.5,
          firstTokenMs: 10,
          chain: [{ peerId: 'scripted', start: 0, end: 4, local: true }],
          failovers: 0,
          verifiedSteps: 0,
          droppedServers: [],
        })
      } catch (error) {
        ended = request.signal?.aborted === true ? (request.signal.reason as Error).name : 'failed'
        fail(error)
        throw error
      } finally {
        // closed (return) while waiting at a yield: what the signal said by then
        if (ended === 'closed' && request.signal?.aborted === true)
          ended = (request.signal.reason as Error).name
        self.ends.push(ended)
      }
    }
    return { result, [Symbol.asyncIterator]: () => run() }
  }
}

const serving = new ScriptedServing()
let server: ApiServer
let client: OpenAI

const metrics = () =>
  createNodeMetrics({
    startedAtMs: Date.now(),
    peerCount: () => 0,
    dhtRoutingTableSize: () => 0,
    backend: () => undefined,
  })

beforeAll(async () => {
  server = await startApiServer({
    port: 0,
    token: ADMIN,
    readToken: READ,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    metrics: metrics(),
    routes: [
      ...openAiRoutes(() => serving, { idleTimeoutMs: REQUEST_TIMEOUT_MS }),
      ...generateRoutes(() => serving, { idleTimeoutMs: REQUEST_TIMEOUT_MS }),
    ],
  })
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: ADMIN, maxRetries: 0 })
})
afterAll(async () => {
  await server.close()
})

const bytes = (...parts: Array<string | number[]>) =>
  parts.map((part) =>
    typeof part === 'string' ? new Uint8Array(Buffer.from(part, 'utf8')) : Uint8Array.from(part),
  )
/** each byte of the text a piece of its own */
const byteByByte = (text: string) => Array.from(Buffer.from(text, 'utf8'), (byte) => Uint8Array.of(byte))

/** waits until `condition` holds (polling), or fails after `ms` */
async function until(condition: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(10)
  }
}

describe('OpenAI-compatible routes', () => {
  it('lists the models in OpenAI shape', async () => {
    const page = await client.models.list()
    expect(page.data).toEqual([
      expect.objectContaining({ id: MODEL, object: 'model', created: 1_700_000_000, owned_by: 'shardnet' }),
    ])
    // the read token may list them (a listing), but not generate
    const reader = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: READ, maxRetries: 0 })
    expect((await reader.models.list()).data[0].id).toBe(MODEL)
    // one model by id (GET /v1/models/{id}), and an unknown one in OpenAI's 404 shape
    expect(await reader.models.retrieve(MODEL)).toEqual(page.data[0])
    const unknown = await client.models.retrieve(`${MODEL}x`).catch((error) => error)
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError)
    expect(unknown.code).toBe('model_not_found')
    const refused = await reader.completions.create({ model: MODEL, prompt: 'x' }).catch((error) => error)
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError)
    expect(refused.status).toBe(403)
    expect(refused.type).toBe('permission_error')
  })

  it('decodes characters split across pieces whole, streamed or not; invalid bytes are U+FFFD', async () => {
    const text = 'héllo € 😀 ok'
    serving.script = { pieces: [...byteByByte(text), Uint8Array.of(0xff), ...bytes('!', [0xe2, 0x82])] }
    const expected = `${text}\uFFFD!\uFFFD`
    const whole = await client.completions.create({ model: MODEL, prompt: 'hi', max_tokens: 100, seed: 7 })
    expect(whole.choices[0].text).toBe(expected)
    expect(whole.object).toBe('text_completion')
    expect(whole.model).toBe(MODEL)
    const total = Buffer.byteLength(text) + 4
    expect(whole.usage).toEqual({ prompt_tokens: 2, completion_tokens: total, total_tokens: total + 2 })

    const stream = await client.completions.create({
      model: MODEL,
      prompt: 'hi',
      max_tokens: 100,
      stream: true,
    })
    const texts: string[] = []
    let finish: string | null = null
    for await (const chunk of stream) {
      texts.push(chunk.choices[0].text)
      finish = chunk.choices[0].finish_reason ?? finish
    }
    expect(texts.join('')).toBe(expected)
    // no piece holds half a character: U+FFFD only where the bytes were invalid
    expect(texts.filter((piece) => piece.includes('\uFFFD'))).toEqual(['\uFFFD', '\uFFFD'])
    expect(finish).toBe('length')

    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    const deltas: string[] = []
    const chunks = []
    for await (const chunk of chat) {
      chunks.push(chunk)
      deltas.push(chunk.choices[0]?.delta.content ?? '')
    }
    expect(deltas.join('')).toBe(expected)
    expect(chunks[0].choices[0].delta.role).toBe('assistant')
    expect(chunks[0].object).toBe('chat.completion.chunk')
    expect(chunks.at(-2)?.choices[0].finish_reason).toBe('length')
    expect(chunks.at(-1)?.choices).toEqual([])
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(total)

    // on the wire: server-sent events, each a `data:` line and a blank line, the last `data: [DONE]`
    const raw = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'hi', stream: true }),
    })
    expect(raw.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const events = (await raw.text()).split('\n\n')
    expect(events.pop()).toBe('')
    expect(events.at(-1)).toBe('data: [DONE]')
    expect(events.every((event) => /^data: \S/.test(event) && !event.includes('\n'))).toBe(true)
    expect(events.length).toBe(texts.length + 1)
  })

  it('passes the fields through to the ServingApi; the chat template frames the messages', async () => {
    serving.script = { pieces: bytes('done'), finishReason: 'stop' }
    serving.requests.length = 0
    const chat = await client.chat.completions.create({
      model: 'gpt',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'héllo' }] },
      ],
      max_completion_tokens: 40,
      temperature: 0.5,
      top_p: 0.9,
      seed: 123,
      stop: ['\nuser:', 'END'],
    })
    expect(chat.choices[0].message).toEqual({ role: 'assistant', content: 'done', refusal: null })
    expect(chat.choices[0].finish_reason).toBe('stop')
    const sent = serving.requests[0]
    expect(Buffer.from(sent.prompt).toString('utf8')).toBe('system: be brief\nuser: héllo\nassistant: ')
    expect(sent).toMatchObject({
      model: MODEL,
      maxTokens: 40,
      temperature: 0.5,
      topP: 0.9,
      topK: 0,
      seed: 123,
    })
    expect(sent.stop.map((stop) => Buffer.from(stop).toString('utf8'))).toEqual(['\nuser:', 'END'])
    // a prompt of byte values (a byte model's tokens); OpenAI's default max_tokens
    await client.completions.create({ model: MODEL, prompt: [104, 0, 255] })
    expect(Array.from(serving.requests[1].prompt)).toEqual([104, 0, 255])
    expect(serving.requests[1].maxTokens).toBe(16)
    expect(serving.requests[1].temperature).toBe(1)
  })

  it('refuses bad requests in OpenAI shape with 400 and the field named', async () => {
    serving.script = { pieces: bytes('x') }
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ n: 2 }, 'n'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ max_tokens: GENERATE_API_LIMITS.tokensMax + 1 }, 'max_tokens'],
      [{ max_tokens: 1.5 }, 'max_tokens'],
      [{ temperature: 2.5 }, 'temperature'],
      [{ top_p: 0 }, 'top_p'],
      [{ seed: -1 }, 'seed'],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ stop: '' }, 'stop'],
      [{ echo: true }, 'echo'],
      [{ logprobs: 2 }, 'logprobs'],
      [{ prompt: '' }, 'prompt'],
      [{ prompt: ['a', 'b'] }, 'prompt'],
      [{ prompt: [300] }, 'prompt'],
      [{ stream: 'yes' }, 'stream'],
    ]
    const before = serving.requests.length
    for (const [fields, param] of cases) {
      const error = await client.completions
        .create({ model: MODEL, prompt: 'hi', ...fields } as never)
        .catch((caught) => caught)
      expect(error, JSON.stringify(fields)).toBeInstanceOf(OpenAI.BadRequestError)
      expect(error.param, JSON.stringify(fields)).toBe(param)
      expect(error.type).toBe('invalid_request_error')
      expect(error.message).toMatch(new RegExp(param))
    }
    const chat = await client.chat.completions.create({ model: MODEL, messages: [] }).catch((error) => error)
    expect(chat).toBeInstanceOf(OpenAI.BadRequestError)
    expect(chat.param).toBe('messages')
    // none of them reached the network
    expect(serving.requests.length).toBe(before)
    // a body that is not JSON: OpenAI's shape too
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: '{not json',
    })
    expect(response.status).toBe(400)
    expect(await response.json()).toEqual({
      error: {
        message: 'request body is not valid JSON',
        type: 'invalid_request_error',
        param: null,
        code: null,
      },
    })
  })

  it('a wrong key is 401, an unknown model 404 model_not_found, no chain 503, in OpenAI shape', async () => {
    const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'c'.repeat(64), maxRetries: 0 })
    const unauthorized = await wrong.models.list().catch((error) => error)
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(unauthorized.code).toBe('invalid_api_key')
    expect(unauthorized.message).toMatch(/wrong bearer token/)

    serving.script = { pieces: bytes('x') }
    const unknownId = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    for (const model of [unknownId, 'no-such-name']) {
      const missing = await client.completions.create({ model, prompt: 'hi' }).catch((error) => error)
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError)
      expect(missing.code).toBe('model_not_found')
      expect(missing.param).toBe('model')
    }

    serving.script = {
      pieces: bytes('x'),
      refuse: new ServingError('unavailable', 'no chain of servers covers blocks 2-3'),
    }
    const unavailable = await client.completions
      .create({ model: MODEL, prompt: 'hi', stream: true })
      .catch((error) => error)
    expect(unavailable).toBeInstanceOf(OpenAI.InternalServerError)
    expect(unavailable.status).toBe(503)
    expect(unavailable.message).toMatch(/no chain of servers covers blocks 2-3/)
    serving.script = { pieces: bytes('x'), refuse: new ServingError('bad-request', 'the prompt is too long') }
    const bad = await client.completions.create({ model: MODEL, prompt: 'hi' }).catch((error) => error)
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError)
    expect(bad.message).toMatch(/the prompt is too long/)
  })

  it('an error after the stream started is an event the client throws; no [DONE] follows', async () => {
    serving.script = { pieces: bytes('ab', 'cd', 'ef'), failAfter: 2 }
    const stream = await client.completions.create({ model: MODEL, prompt: 'hi', stream: true })
    const texts: string[] = []
    const error = await (async () => {
      for await (const chunk of stream) texts.push(chunk.choices[0].text)
    })().catch((caught) => caught)
    expect(texts.join('')).toBe('abcd')
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect(error.message).toMatch(/every server of blocks 2-3 left/)
    // OpenAI's code and type for the ServingError, as a refusal before the stream would carry
    expect(error.code).toBe('model_unavailable')
    expect(error.type).toBe('server_error')
  })

  it('a stream longer than the request timeout runs while it produces; a silent one is ended', async () => {
    // 8 pieces 100 ms apart: 800 ms in all, twice the 400 ms request timeout
    serving.script = { pieces: byteByByte('abcdefgh'), delayMs: () => 100 }
    const started = Date.now()
    const stream = await client.completions.create({ model: MODEL, prompt: 'hi', stream: true })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0].text
    expect(text).toBe('abcdefgh')
    expect(Date.now() - started).toBeGreaterThan(REQUEST_TIMEOUT_MS)
    // the same without streaming: each byte restarts the timeout
    expect((await client.completions.create({ model: MODEL, prompt: 'hi' })).choices[0].text).toBe('abcdefgh')

    // silent for 3 request timeouts after the first piece: the generation's signal times out
    serving.ends.length = 0
    serving.script = {
      pieces: bytes('a', 'b'),
      delayMs: (index) => (index === 1 ? 3 * REQUEST_TIMEOUT_MS : 0),
    }
    const silent = await client.completions.create({ model: MODEL, prompt: 'hi', stream: true })
    const texts: string[] = []
    const error = await (async () => {
      for await (const chunk of silent) texts.push(chunk.choices[0].text)
    })().catch((caught) => caught)
    expect(texts).toEqual(['a'])
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect(error.code).toBe('timeout')
    expect(serving.ends).toEqual(['TimeoutError'])
  })

  it("a generation route waits for its first byte by its own idle timeout, not the server's", async () => {
    const quick = await startApiServer({
      port: 0,
      token: ADMIN,
      requestTimeoutMs: 100,
      metrics: metrics(),
      routes: openAiRoutes(() => serving, { idleTimeoutMs: 5_000 }),
    })
    onTestFinished(() => quick.close())
    // the first byte after 4 of the server's timeouts (finding a chain, fetching the model's ends)
    serving.script = { pieces: bytes('late'), delayMs: (index) => (index === 0 ? 400 : 0) }
    const late = new OpenAI({ baseURL: `${quick.url}/v1`, apiKey: ADMIN, maxRetries: 0 })
    expect((await late.completions.create({ model: MODEL, prompt: 'hi' })).choices[0].text).toBe('late')
  })

  it('backpressure: a client not reading stops the source; leaving aborts the generation', async () => {
    const piece = new Uint8Array(16 * 1024).fill(0x61)
    serving.script = { pieces: () => piece }
    serving.pulls = 0
    serving.ends.length = 0
    const body = JSON.stringify({ model: MODEL, prompt: 'hi', stream: true, max_tokens: 100_000 })
    // the routes' default idle timeout, longer than this test's pauses: the abort is the client's leaving
    const patient = await startApiServer({
      port: 0,
      token: ADMIN,
      metrics: metrics(),
      routes: openAiRoutes(() => serving),
    })
    onTestFinished(() => patient.close())
    const request = httpRequest(`${patient.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    })
    const response = await new Promise<import('node:http').IncomingMessage>((resolve) => {
      request.on('response', resolve)
      request.end(body)
    })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/)
    response.pause()
    // the socket buffers fill, then the source is no longer pulled
    await until(() => serving.pulls > 0)
    let previous = -1
    while (serving.pulls !== previous) {
      previous = serving.pulls
      await sleep(300)
    }
    // a bounded amount in flight (socket buffers), not what a free-running source would have made
    expect(serving.pulls * piece.length).toBeLessThan(32 * 1024 * 1024)
    expect(serving.ends).toEqual([])
    // the client goes away: the generation's signal aborts and the source is closed
    response.destroy()
    request.destroy()
    await until(() => serving.ends.length === 1)
    expect(serving.ends).toEqual(['AbortError'])
  })

  it('the openai client aborting a stream mid-generation aborts the generation', async () => {
    serving.script = { pieces: () => bytes('x')[0], delayMs: () => 5 }
    serving.ends.length = 0
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    })
    let chunks = 0
    for await (const _chunk of stream) {
      if (++chunks === 10) stream.controller.abort()
    }
    await until(() => serving.ends.length === 1)
    expect(serving.ends).toEqual(['AbortError'])
  })
})

describe('POST /v1/generate', () => {
  async function generate(
    body: unknown,
    token = ADMIN,
  ): Promise<{ status: number; lines: GenerateStreamLine[] }> {
    const response = await fetch(`${server.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    const text = await response.text()
    if (!response.ok) return { status: response.status, lines: [JSON.parse(text)] }
    expect(response.headers.get('content-type')).toBe('application/x-ndjson')
    return {
      status: response.status,
      lines: text
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line)),
    }
  }

  it('streams the exact bytes (invalid UTF-8 included) as base64, then the result', async () => {
    serving.script = { pieces: bytes([0xff, 0xc3], [0xa9, 0x00], 'z') }
    serving.requests.length = 0
    const { status, lines } = await generate({
      model: MODEL,
      promptBase64: Buffer.from([1, 2, 3]).toString('base64'),
      maxTokens: 5,
      temperature: 0,
      topK: 3,
      seed: 9,
      stop: ['\n\n'],
      verify: 0.25,
    })
    expect(status).toBe(200)
    const pieces = lines.filter((line) => 'bytes' in line) as Array<{ bytes: string }>
    expect(Buffer.concat(pieces.map((line) => Buffer.from(line.bytes, 'base64')))).toEqual(
      Buffer.from([0xff, 0xc3, 0xa9, 0x00, 0x7a]),
    )
    expect(lines.at(-1)).toEqual({
      result: expect.objectContaining({ model: MODEL, tokens: 5, finishReason: 'length' }),
    })
    expect(serving.requests[0]).toMatchObject({
      maxTokens: 5,
      temperature: 0,
      topK: 3,
      seed: 9,
      verify: 0.25,
    })
    expect(Array.from(serving.requests[0].prompt)).toEqual([1, 2, 3])
  })

  it('refuses with a status before the stream; a failure after it started is the last line', async () => {
    expect(await generate({ model: MODEL, prompt: 'x', maxTokens: 0 })).toEqual({
      status: 400,
      lines: [{ error: expect.stringMatching(/maxTokens/), code: 'bad-request', param: 'maxTokens' }],
    })
    expect((await generate({ model: 'nope', prompt: 'x' })).status).toBe(404)
    expect((await generate({ model: MODEL, prompt: 'x' }, READ)).status).toBe(403)
    serving.script = { pieces: bytes('x'), refuse: new ServingError('unavailable', 'no chain') }
    expect(await generate({ model: MODEL, prompt: 'x' })).toEqual({
      status: 503,
      lines: [{ error: 'no chain', code: 'unavailable' }],
    })
    serving.script = { pieces: bytes('ab', 'cd'), failAfter: 1 }
    const { status, lines } = await generate({ model: MODEL, prompt: 'x' })
    expect(status).toBe(200)
    expect(lines).toEqual([
      { bytes: Buffer.from('ab').toString('base64') },
      { error: { message: 'every server of blocks 2-3 left', code: 'unavailable' } },
    ])
  })
})
