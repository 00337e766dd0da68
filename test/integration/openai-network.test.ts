// Proves the OpenAI-compatible endpoint over real daemons serving spans on loopback, as a user of the
// official `openai` client sees it: daemon A serves blocks 0-1 of a tiny GPT, daemon B blocks 2-3,
// and daemon C, serving nothing, answers completions through the chain it finds. The oracle is
// generateBytes on the whole model on the same engine (cpu, native): the completion's text must be its
// bytes decoded as UTF-8, streamed and whole, for the seed. A client leaving mid-stream ends the
// servers' sessions (their caches freed); a model nobody serves is refused in OpenAI's shape.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CpuBackend } from '../../kernels/index.js'
import { type GptConfig, initializeGpt } from '../../kernels/models/gpt/config.js'
import { generateBytes } from '../../kernels/models/gpt/generate.js'
import { Gpt } from '../../kernels/models/gpt/model.js'
import type { ServeListing } from '../../node/api/serving-routes.js'
import type { Daemon } from '../../node/daemon.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { modelIdOfDirectory } from '../../node/serving/model-package.js'
import { dataDirPaths } from '../../node/store/data-dir.js'
import { gptManifest } from '../unit/models/gpt-fixtures.js'
import { apiRequest, startTestDaemon, tempDataDir, waitUntil } from './daemon-helpers.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 32,
  width: 32,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const PARAMS = initializeGpt(CONFIG, 13)

let root: string
let directory: string
let modelId: string
const daemons: Daemon[] = []
let client: OpenAI
let oracleBackend: CpuBackend
let oracleGpt: Gpt

async function oracle(prompt: string, options: { tokens: number; seed: number; temperature: number }) {
  const drawn: number[] = []
  for await (const byte of generateBytes(
    oracleBackend,
    oracleGpt,
    new Uint8Array(Buffer.from(prompt, 'utf8')),
    {
      tokens: options.tokens,
      temperature: options.temperature,
      topK: 0,
      seed: options.seed,
    },
  ))
    drawn.push(byte)
  return new TextDecoder('utf-8').decode(Uint8Array.from(drawn))
}

async function serve(daemon: Daemon, blocks: string): Promise<void> {
  const asked = await apiRequest(daemon, '/v1/serve', { method: 'POST', body: { model: directory, blocks } })
  expect(asked.status).toBe(200)
  let state = ''
  await waitUntil(
    async () => {
      const listing = (await (await apiRequest(daemon, '/v1/serve')).json()) as ServeListing
      const entry = listing.entries.find((candidate) => candidate.model === directory)
      if (entry?.state === 'failed') throw new Error(`serving failed: ${entry.error}`)
      state = entry?.state ?? 'absent'
      return state === 'serving'
    },
    () => `blocks ${blocks} to be served (now ${state})`,
    30_000,
  )
}

/** sessions open on the servers' spans now */
const openSessions = () =>
  daemons
    .slice(0, 2)
    .reduce((sum, daemon) => sum + daemon.spans.spans().reduce((n, span) => n + span.sessions, 0), 0)

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'shardnet-openai-network-'))
  directory = join(root, 'model')
  await saveGptModel(directory, CONFIG, PARAMS, gptManifest(13))
  modelId = await modelIdOfDirectory(directory)
  oracleBackend = new CpuBackend({ engine: 'native' })
  oracleGpt = Gpt.create(oracleBackend, CONFIG, PARAMS)
  const start = async (bootstrap?: string[]) =>
    startTestDaemon({
      dataDir: await tempDataDir(),
      overrides: bootstrap === undefined ? {} : { bootstrap },
      spanHost: { measureSteps: 2 },
    })
  daemons.push(await start())
  const bootstrap = daemons[0].addresses()
  daemons.push(...(await Promise.all([start(bootstrap), start(bootstrap)])))
  await waitUntil(
    () => daemons.every((daemon) => daemon.host.services.discovery.current() !== undefined),
    'every daemon to publish its capability record',
  )
  await serve(daemons[0], '0-1')
  await serve(daemons[1], '2-3')
  const token = (await readFile(dataDirPaths(daemons[2].paths.root).apiToken, 'utf8')).trim()
  client = new OpenAI({ baseURL: `${daemons[2].api.url}/v1`, apiKey: token, maxRetries: 0 })
  // C finds a chain once both spans are in the DHT
  let lastError = ''
  await waitUntil(
    async () => {
      try {
        await client.completions.create({ model: modelId, prompt: 'x', max_tokens: 1 })
        return true
      } catch (error) {
        lastError = (error as Error).message
        return false
      }
    },
    () => `daemon C to find a chain (last: ${lastError})`,
    60_000,
    500,
  )
}, 120_000)

afterAll(async () => {
  await Promise.allSettled(daemons.map((daemon) => daemon.stop()))
  oracleGpt?.dispose()
  oracleBackend?.destroy()
  await rm(root, { recursive: true, force: true })
})

describe('the OpenAI endpoint over daemons serving spans', () => {
  it("lists the model it found a chain for; another daemon's token is refused", async () => {
    const onA = new OpenAI({
      baseURL: `${daemons[0].api.url}/v1`,
      apiKey: client.apiKey,
      maxRetries: 0,
    })
    // A's token is not C's: a wrong key
    await expect(onA.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
    const listed = await client.models.list()
    expect(listed.data.map((model) => model.id)).toContain(modelId)
    const entry = listed.data.find((model) => model.id === modelId) as unknown as Record<string, unknown>
    expect(entry).toMatchObject({
      object: 'model',
      owned_by: 'shardnet',
      name: 'gpt',
      blocks: 4,
      chain_found: true,
    })
  })

  it("a completion through the chain is the model's own text for the seed, whole and streamed", async () => {
    const expected = await oracle('Once upon a time', { tokens: 40, seed: 5, temperature: 0.8 })
    const request = { model: modelId, prompt: 'Once upon a time', max_tokens: 40, seed: 5, temperature: 0.8 }
    const whole = await client.completions.create(request)
    expect(whole.choices[0].text).toBe(expected)
    expect(whole.usage).toEqual({ prompt_tokens: 16, completion_tokens: 40, total_tokens: 56 })
    const chain = (
      whole as unknown as { shardnet: { chain: Array<{ peerId: string; start: number; end: number }> } }
    ).shardnet.chain
    expect(chain.map((hop) => [hop.peerId, hop.start, hop.end])).toEqual([
      [daemons[0].peerId.toString(), 0, 2],
      [daemons[1].peerId.toString(), 2, 4],
    ])

    const stream = await client.completions.create({ ...request, stream: true })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0].text
    expect(text).toBe(expected)
  })

  it('a streamed chat completion through the chain continues the template', async () => {
    const expected = await oracle('user: hello\nassistant: ', { tokens: 24, seed: 9, temperature: 1 })
    const stream = await client.chat.completions.create({
      model: modelId,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 24,
      seed: 9,
      stream: true,
      stream_options: { include_usage: true },
    })
    let text = ''
    let usage: OpenAI.CompletionUsage | undefined | null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      usage = chunk.usage ?? usage
    }
    expect(text).toBe(expected)
    expect(usage?.completion_tokens).toBe(24)
  })

  it("a client leaving mid-stream ends the servers' sessions", async () => {
    expect(openSessions()).toBe(0)
    const stream = await client.completions.create({
      model: modelId,
      prompt: 'a long story',
      max_tokens: 5000,
      seed: 1,
      stream: true,
    })
    let chunks = 0
    for await (const _chunk of stream) {
      if (chunks === 0) expect(openSessions()).toBe(2)
      if (++chunks === 10) stream.controller.abort()
    }
    await waitUntil(
      () => openSessions() === 0,
      () => `the sessions to close (open: ${openSessions()})`,
      10_000,
      50,
    )
  })

  it('a model nobody serves is refused in OpenAI shape', async () => {
    const absent = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('nobody'))).toString()
    const refused = await client.completions.create({ model: absent, prompt: 'x' }).catch((error) => error)
    expect(refused).toBeInstanceOf(OpenAI.NotFoundError)
    expect(refused.error).toEqual({
      message: `no server of the model ${absent} was found`,
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    })
  })
})
