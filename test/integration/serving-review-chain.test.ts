// A span server that answers NaN or Infinity for hidden states is a lying server: no honest span
// computes them from finite inputs. The client fails over from it (recorded 'rejected'), and the
// text is the local oracle's; before, the NaN rows went into the logits and the text was garbage.
// The harness is serving-chain.test.ts's: real libp2p nodes on loopback, real SpanHosts of a real GPT.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../kernels/backend.js'
import { createBackend } from '../../kernels/index.js'
import { Gpt, generateBytes } from '../../kernels/models/gpt/index.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { ReputationBook } from '../../node/reputation.js'
import type { NetworkGenerateRequest, NetworkGenerateResult } from '../../node/serving/api.js'
import { publishModel } from '../../node/serving/model-package.js'
import { createNetworkServing, type NetworkServing } from '../../node/serving/network-serving.js'
import { SpanHost } from '../../node/serving/span-host.js'
import { TEST_CONFIG, testParameters } from '../unit/serving/chain-servers.js'
import { createNetwork, stopAll, type TestNode, waitFor } from './protocols-host.js'

const config = TEST_CONFIG
const params = testParameters(config, 11)
const MANIFEST = {
  model: 'gpt',
  dataset: {},
  seed: 11,
  training: {},
  backend: {},
  metrics: {},
  history: [],
  createdAt: new Date(0).toISOString(),
}

/** how the adversary server behaves now */
let mode: 'honest' | 'nan' | 'infinity' = 'honest'

let root: string
let nodes: TestNode[]
let client: TestNode
let backends: Backend[]
let hosts: SpanHost[]
let modelId: string
let gpt: Gpt
/** server names -> node index: s01 [0, 2), s02 [0, 2), s23 [2, 4), t23 [2, 4), adversary [2, 4) */
const SERVERS = { s01: 1, s02: 2, s23: 3, t23: 4, adversary: 5 } as const
const SPANS: Record<keyof typeof SERVERS, [number, number]> = {
  s01: [0, 2],
  s02: [0, 2],
  s23: [2, 4],
  t23: [2, 4],
  adversary: [2, 4],
}
const ADVERTISED_TOKENS_PER_SECOND = 10
const peer = (name: keyof typeof SERVERS) => nodes[SERVERS[name]].peerId.toString()

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'serving-chain-'))
  const directory = join(root, 'model')
  await saveGptModel(directory, config, params, MANIFEST)
  nodes = await createNetwork(6)
  client = nodes[0]
  backends = await Promise.all(nodes.map(() => createBackend({ prefer: 'cpu', cpuEngine: 'native' })))
  hosts = nodes.map(
    (node, i) =>
      new SpanHost({
        host: node,
        backend: backends[i],
        // THE ADVERSARY: node 5 answers NaN or Infinity when the test says so
        transformOutput:
          i === SERVERS.adversary
            ? async (output) => {
                if (mode === 'nan') return output.map((v, k) => (k === 5 ? Number.NaN : v))
                if (mode === 'infinity') return output.map((v, k) => (k === 3 ? Number.POSITIVE_INFINITY : v))
                return output
              }
            : undefined,
      }),
  )
  await Promise.all(hosts.map((h) => h.start()))
  modelId = (await publishModel(directory, nodes[1].services.blocks)).modelId
  for (const [name, index] of Object.entries(SERVERS)) {
    const [start, end] = SPANS[name as keyof typeof SERVERS]
    await hosts[index].load({ model: modelId, directory, start, end })
    await nodes[index].services.discovery.advertise({
      capability: 'cpu',
      adapterName: 'test',
      maxBufferBytes: 1 << 30,
      gflops: 1,
      // every server advertises one speed, slow enough that loopback pings do not matter: the route
      // then follows the client's reputation book, which each test sets (timing noise on this shared
      // machine would otherwise pick the chain)
      spans: hosts[index].spans().map((s) => ({
        model: s.model,
        start: s.start,
        end: s.end,
        blocks: s.blocks,
        tokensPerSecond: ADVERTISED_TOKENS_PER_SECOND,
      })),
    })
  }
  // every server is found before the tests start
  await waitFor(async () => {
    let found = 0
    for await (const _ of client.services.discovery.findServers(modelId, { limit: 10 })) found++
    return found === 5
  }, 'the client to find the five servers')
  gpt = Gpt.create(backends[0], config, params)
}, 60_000)

afterAll(async () => {
  mode = 'honest'
  await Promise.allSettled(hosts.map((h) => h.stop()))
  await stopAll(nodes)
  for (const backend of backends) backend.destroy()
  await rm(root, { recursive: true, force: true })
})

const PROMPT = new TextEncoder().encode('Spans of blocks on five peers: ')

function request(extra: Partial<NetworkGenerateRequest> = {}): NetworkGenerateRequest {
  return {
    model: modelId,
    prompt: PROMPT,
    maxTokens: 50,
    temperature: 0,
    topP: 1,
    topK: 0,
    seed: 1,
    stop: [],
    verify: 0,
    ...extra,
  }
}

async function local(req: NetworkGenerateRequest): Promise<number[]> {
  const out: number[] = []
  for await (const byte of generateBytes(backends[0], gpt, req.prompt, {
    tokens: req.maxTokens,
    temperature: req.temperature,
    topK: req.topK,
    topP: req.topP,
    seed: req.seed,
  }))
    out.push(byte)
  return out
}

/** a client serving stack with its own reputation book, preferring `trusted` servers */
async function serving(
  trusted: Array<keyof typeof SERVERS>,
): Promise<{ api: NetworkServing; book: ReputationBook }> {
  const book = await ReputationBook.open(join(await mkdtemp(join(root, 'book-')), 'reputation.json'))
  // a long clean record makes a server cost about half what a stranger does (route.ts)
  for (const name of trusted) for (let i = 0; i < 30; i++) book.record(peer(name), 'agreed')
  const api = createNetworkServing({
    host: client,
    findServers: (model, options) => client.services.discovery.findServers(model, options),
    blocks: client.services.blocks,
    spans: hosts[0],
    reputation: book,
    backend: backends[0],
    modelCacheDir: join(root, 'client-models'),
    options: { stepTimeoutMs: 1_500 },
  })
  return { api, book }
}

async function run(
  api: NetworkServing,
  req: NetworkGenerateRequest,
  onByte?: (count: number) => void,
): Promise<{ bytes: number[]; times: number[]; result: NetworkGenerateResult }> {
  const generation = api.generate(req)
  const bytes: number[] = []
  const times: number[] = []
  for await (const chunk of generation) {
    for (const byte of chunk) {
      bytes.push(byte)
      times.push(performance.now())
      onByte?.(bytes.length)
    }
  }
  return { bytes, times, result: await generation.result }
}

describe('a span server answering non-finite hidden states', () => {
  it('is failed over and recorded rejected; the text is the oracle', async () => {
    for (const lie of ['nan', 'infinity'] as const) {
      mode = lie
      try {
        const req = request({ maxTokens: 20, temperature: 0.8, seed: 4 })
        const { api, book } = await serving(['s01', 'adversary'])
        const { bytes, result } = await run(api, req)
        expect(bytes).toEqual(await local(req))
        expect(result.failovers).toBe(1)
        expect(result.chain[1].peerId).not.toBe(peer('adversary'))
        expect(book.counts(peer('adversary')).rejected).toBe(1)
        await api.close()
      } finally {
        mode = 'honest'
      }
    }
  }, 60_000)
})
