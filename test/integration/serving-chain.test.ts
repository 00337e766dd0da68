// Generation through a chain of span servers on real libp2p nodes on 127.0.0.1 TCP: five servers load
// spans of a real tiny GPT (saved with saveGptModel, published over the blocks protocol) in SpanHosts
// and advertise them in the DHT; a client finds them with discovery.findServers, fetches the model's
// files by id for its ends, and generates through createNetworkServing. The oracle is generateBytes on
// the whole model on the same engine (cpu, native): the text must be equal, greedy and sampled, across
// window restarts, through remote hops and through a hop on the client's own span; when the preferred
// server of a span lies (verify 1: caught, dropped, recorded, honest text; verify 0: a different text),
// answers NaN or Infinity (no honest span computes them: failed over, recorded rejected, the same
// text), stalls (failover after the step deadline) or is killed mid-generation (failover, same text,
// the recovery time measured).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../kernels/backend.js'
import { createBackend } from '../../kernels/index.js'
import { Gpt, generateBytes } from '../../kernels/models/gpt/index.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { ReputationBook } from '../../node/reputation.js'
import {
  type NetworkGenerateRequest,
  type NetworkGenerateResult,
  type NetworkGeneration,
  ServingError,
} from '../../node/serving/api.js'
import { publishModel } from '../../node/serving/model-package.js'
import { createNetworkServing, type NetworkServing } from '../../node/serving/network-serving.js'
import { SpanHost } from '../../node/serving/span-host.js'
import { gptManifest } from '../unit/models/gpt-fixtures.js'
import { TEST_CONFIG, testParameters } from '../unit/serving/chain-servers.js'
import { createNetwork, stopAll, type TestNode, waitFor } from './protocols-host.js'

const config = TEST_CONFIG
const params = testParameters(config, 11)
const MANIFEST = gptManifest(11)

/** how the adversary server behaves now */
let mode: 'honest' | 'lie' | 'stall' | 'nan' | 'infinity' = 'honest'

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
        // THE ADVERSARY: node 5 lies or stalls when the test says so
        transformOutput:
          i === SERVERS.adversary
            ? async (output) => {
                if (mode === 'lie') return output.map((v, k) => v + (0.05 * (((k * 7919) % 13) - 6)) / 6)
                if (mode === 'stall') await new Promise((resolve) => setTimeout(resolve, 4_000))
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

async function collect(generation: NetworkGeneration): Promise<number[]> {
  const out: number[] = []
  for await (const chunk of generation) out.push(...chunk)
  return out
}

describe('generation through a chain of libp2p span servers', () => {
  it('gives the text of local generation, greedy and sampled, across window restarts', async () => {
    const { api } = await serving(['s01', 's23'])
    for (const req of [request({ maxTokens: 80 }), request({ maxTokens: 80, temperature: 0.9, seed: 4 })]) {
      const { bytes, result } = await run(api, req)
      expect(bytes).toEqual(await local(req))
      expect(result.chain.map((h) => [h.peerId, h.start, h.end])).toEqual([
        [peer('s01'), 0, 2],
        [peer('s23'), 2, 4],
      ])
      expect(result.failovers).toBe(0)
      expect(result.firstTokenMs).toBeGreaterThan(0)
    }
    const models = await api.models()
    expect(models.map((m) => [m.model, m.blocks, m.context, m.chainFound])).toEqual([
      [modelId, 4, config.context, true],
    ])
    await api.close()
  })

  it("runs a hop on the client's own span in-process", async () => {
    await hosts[0].load({ model: modelId, directory: join(root, 'model'), start: 0, end: 2 })
    let otherId: string | undefined
    try {
      const { api } = await serving(['s23'])
      const req = request({ maxTokens: 30, temperature: 0.5, seed: 6 })
      const { bytes, result } = await run(api, req)
      expect(bytes).toEqual(await local(req))
      expect(result.chain[0]).toEqual({ peerId: client.peerId.toString(), start: 0, end: 2, local: true })
      // a second model of which this node serves half and nobody the rest: listed, with no chain
      const other = join(root, 'other')
      await saveGptModel(other, config, testParameters(config, 12), { ...MANIFEST, model: 'other' })
      otherId = (await publishModel(other, client.services.blocks)).modelId
      await hosts[0].load({ model: otherId, directory: other, start: 0, end: 2 })
      const listed = await api.models()
      expect(listed.map((m) => [m.model, m.name, m.served, m.chainFound])).toEqual([
        [modelId, 'gpt', [{ start: 0, end: 2 }], true],
        [otherId, 'other', [{ start: 0, end: 2 }], false],
      ])
      const uncovered = api.generate(request({ model: otherId }))
      await expect(collect(uncovered)).rejects.toThrow(/no server covers blocks 2-3 of 4/)
      await expect(uncovered.result).rejects.toMatchObject({ code: 'unavailable' })
      await api.close()
    } finally {
      await hosts[0].unload(modelId)
      if (otherId !== undefined) await hosts[0].unload(otherId)
    }
  })

  it('catches a liar with verify 1 and keeps the honest text; with verify 0 the text differs', async () => {
    mode = 'lie'
    try {
      const req = request({ maxTokens: 30, temperature: 0.8, seed: 9 })
      const expected = await local(req)
      const { api, book } = await serving(['s01', 'adversary'])
      const before = book.score(peer('adversary'))
      const { bytes, result } = await run(api, { ...req, verify: 1 })
      expect(bytes).toEqual(expected)
      expect(result.droppedServers).toEqual([peer('adversary')])
      expect(result.chain.every((h) => h.peerId !== peer('adversary'))).toBe(true)
      expect(result.verifiedSteps).toBe(60)
      expect(book.counts(peer('adversary')).lied).toBe(1)
      expect(book.score(peer('adversary'))).toBeLessThan(before)
      await api.close()

      const unchecked = await serving(['s01', 'adversary'])
      const lied = await run(unchecked.api, req)
      expect(lied.result.chain[1].peerId).toBe(peer('adversary'))
      expect(lied.bytes).not.toEqual(expected)
      await unchecked.api.close()
    } finally {
      mode = 'honest'
    }
  })

  it('fails over from a server answering NaN or Infinity, recorded rejected: the oracle text', async () => {
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

  it('fails over from a stalled server and keeps the text', async () => {
    mode = 'stall'
    try {
      const req = request({ maxTokens: 30, temperature: 0.7, seed: 3 })
      const { api, book } = await serving(['s01', 'adversary'])
      const { bytes, result } = await run(api, req)
      expect(bytes).toEqual(await local(req))
      expect(result.failovers).toBe(1)
      expect(result.chain[1].peerId).not.toBe(peer('adversary'))
      expect(book.counts(peer('adversary'))['timed-out']).toBe(1)
      await api.close()
    } finally {
      mode = 'honest'
    }
  })

  it('answers requests that cannot be served with one clear ServingError each', async () => {
    const { api } = await serving([])
    expect(() => api.generate(request({ model: 'not-a-cid' }))).toThrow(/is not a model id/)
    expect(() => api.generate(request({ maxTokens: -1 }))).toThrow(ServingError)
    // a well-formed id nobody serves
    const unknown = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
    const missing = api.generate(request({ model: unknown }))
    await expect(missing.result).rejects.toMatchObject({ code: 'not-found' })
    await expect(collect(missing)).rejects.toThrow(/no server of the model/)
    // a generation in progress ends when the service closes
    const long = api.generate(request({ maxTokens: 100_000 }))
    const reading = collect(long)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await api.close()
    await expect(reading).rejects.toThrow(/stopping/)
    expect(() => api.generate(request())).toThrow(/stopping/)
  })

  it('fails over from a server killed mid-generation: the same text, recovered quickly', async () => {
    const req = request({ maxTokens: 60, temperature: 0.8, seed: 12 })
    const expected = await local(req)
    const { api } = await serving(['s01', 's23'])
    let killedAt = 0
    let killing: Promise<void> | undefined
    const { bytes, times, result } = await run(api, req, (count) => {
      if (count === 20) {
        killedAt = performance.now()
        killing = Promise.resolve(nodes[SERVERS.s23].stop())
      }
    })
    await killing
    expect(bytes).toEqual(expected)
    expect(result.failovers).toBe(1)
    expect(result.chain.every((h) => h.peerId !== peer('s23'))).toBe(true)
    const recoveryMs = times[20] - killedAt
    // the goal of issue #18 is under 2 s; on this shared machine allow some slack, and print it
    console.log(`recovery after a killed server: ${recoveryMs.toFixed(0)} ms (byte 21 after the kill)`)
    expect(recoveryMs).toBeLessThan(5_000)
    await api.close()
  })
})
