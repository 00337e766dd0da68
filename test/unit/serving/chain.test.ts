// Proves generation through a chain of span servers (node/serving/chain.ts) against local generation
// (generateBytes on the whole model, the oracle) over in-process servers holding real GptSpans: the
// same text for chains of 1 to 3 hops, greedy and sampled, across window restarts; the same text when
// a server dies or stalls mid-generation (failover, replay); a lying server caught by verification,
// dropped and recorded, with the text of the honest run (and without verification, a different text,
// so the check can fail); stop sequences; clear errors for requests that cannot work.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CpuBackend } from '../../../kernels/cpu-backend.js'
import { Gpt, generateBytes } from '../../../kernels/models/gpt/index.js'
import { GptEnds } from '../../../kernels/models/gpt/span.js'
import { ReputationBook } from '../../../node/reputation.js'
import type { NetworkGenerateRequest, NetworkGenerateResult } from '../../../node/serving/api.js'
import { ServingError } from '../../../node/serving/api.js'
import {
  type ChainOptions,
  generateThroughChain,
  hiddenAgree,
  StopFilter,
} from '../../../node/serving/chain.js'
import { InProcessServers, TEST_CONFIG, testParameters } from './chain-servers.js'

const backend = new CpuBackend()
const config = TEST_CONFIG
const params = testParameters(config, 11)
const model = { blocks: config.layers, context: config.context, width: config.width }
let gpt: Gpt
let ends: GptEnds

beforeAll(() => {
  gpt = Gpt.create(backend, config, params)
  ends = GptEnds.fromParameters(backend, config, params)
})

afterAll(() => {
  ends.dispose()
})

const PROMPT = new TextEncoder().encode('The chain of servers carries the hidden states ')

function request(extra: Partial<NetworkGenerateRequest> = {}): NetworkGenerateRequest {
  return {
    model: 'test',
    prompt: PROMPT,
    maxTokens: 40,
    temperature: 0,
    topP: 1,
    topK: 0,
    seed: 5,
    stop: [],
    verify: 0,
    ...extra,
  }
}

async function local(req: NetworkGenerateRequest): Promise<number[]> {
  const out: number[] = []
  for await (const byte of generateBytes(backend, gpt, req.prompt, {
    tokens: req.maxTokens,
    temperature: req.temperature,
    topK: req.topK,
    topP: req.topP,
    seed: req.seed,
  }))
    out.push(byte)
  return out
}

async function chain(
  servers: InProcessServers,
  req: NetworkGenerateRequest,
  options: ChainOptions = {},
): Promise<{ bytes: number[]; result: NetworkGenerateResult }> {
  const generation = generateThroughChain(ends, servers, model, req, options)
  const bytes: number[] = []
  for await (const chunk of generation) bytes.push(...chunk)
  return { bytes, result: await generation.result }
}

async function book(): Promise<ReputationBook> {
  return ReputationBook.open(join(await mkdtemp(join(tmpdir(), 'chain-rep-')), 'reputation.json'))
}

describe('generation through a chain', () => {
  it('gives the local text through 1 to 3 hops, greedy and sampled, past the context', async () => {
    // 47 prompt bytes + 60 new ones pass the context of 64: the window restarts twice
    const cases = [
      request({ maxTokens: 60 }),
      request({ maxTokens: 60, temperature: 0.9, seed: 3 }),
      request({ maxTokens: 60, temperature: 1.2, topK: 20, topP: 0.9, seed: 8 }),
    ]
    const layouts = [
      [[0, 4]],
      [
        [0, 2],
        [2, 4],
      ],
      [
        [0, 1],
        [1, 3],
        [3, 4],
      ],
    ]
    for (const req of cases) {
      const expected = await local(req)
      for (const layout of layouts) {
        const servers = new InProcessServers(backend, config, params)
        for (const [i, [start, end]] of layout.entries()) servers.add(`s${i}`, start, end, 100)
        const { bytes, result } = await chain(servers, req)
        expect(bytes).toEqual(expected)
        expect(result.tokens).toBe(60)
        expect(result.finishReason).toBe('length')
        expect(result.chain.map((h) => [h.start, h.end])).toEqual(layout)
        expect(result.failovers).toBe(0)
        // every session was closed
        expect(servers.servers.map((s) => s.open)).toEqual(layout.map(() => 0))
        servers.dispose()
      }
    }
  })

  it('cuts a prompt longer than the context from the left, as local generation does', async () => {
    const long = new Uint8Array(150).map((_, i) => 97 + (i % 26))
    const req = request({ prompt: long, maxTokens: 10 })
    const servers = new InProcessServers(backend, config, params)
    servers.add('a', 0, 4, 10)
    const { bytes, result } = await chain(servers, req)
    expect(bytes).toEqual(await local(req))
    expect(result.truncatedBytes).toBe(150 - config.context)
    expect(result.promptTokens).toBe(150)
    servers.dispose()
  })

  it('fails over when a server dies mid-generation: the text is unchanged', async () => {
    const req = request({ maxTokens: 50, temperature: 0.8, seed: 21 })
    const expected = await local(req)
    const servers = new InProcessServers(backend, config, params)
    servers.add('a', 0, 2, 100)
    // b is the fastest server of [2, 4) and dies after 20 steps; c takes over (replaying b's history)
    servers.add('b', 2, 4, 100, { dieAfterSteps: 20 })
    servers.add('c', 2, 4, 50)
    const reputation = await book()
    const { bytes, result } = await chain(servers, req, { reputation })
    expect(bytes).toEqual(expected)
    expect(result.failovers).toBe(1)
    expect(result.chain.map((h) => h.peerId)).toEqual(['a', 'c'])
    expect(reputation.counts('b')['timed-out']).toBe(1)
    servers.dispose()
  })

  it('re-plans the rest of the chain when no server holds just the dead span', async () => {
    const req = request({ maxTokens: 30 })
    const expected = await local(req)
    const servers = new InProcessServers(backend, config, params)
    servers.add('a', 0, 2, 100)
    servers.add('b', 2, 3, 100, { dieAfterSteps: 10 })
    servers.add('c', 3, 4, 100)
    // slow, so the first plan does not take it; the only other server of block 2
    servers.add('wide', 1, 4, 2)
    const { bytes, result } = await chain(servers, req)
    expect(bytes).toEqual(expected)
    expect(result.failovers).toBe(1)
    expect(result.chain.some((h) => h.peerId === 'wide' && h.start === 2)).toBe(true)
    expect(result.chain.every((h) => h.peerId !== 'b')).toBe(true)
    servers.dispose()
  })

  it('fails over from a server that stalls: the text is unchanged', async () => {
    const req = request({ maxTokens: 30, temperature: 0.7, seed: 2 })
    const expected = await local(req)
    const servers = new InProcessServers(backend, config, params)
    servers.add('slowpoke', 0, 4, 100, { stallAfterSteps: 12 })
    servers.add('steady', 0, 4, 20)
    const reputation = await book()
    const began = Date.now()
    const { bytes, result } = await chain(servers, req, { stepTimeoutMs: 300, reputation })
    expect(bytes).toEqual(expected)
    expect(result.failovers).toBe(1)
    expect(result.chain.map((h) => h.peerId)).toEqual(['steady'])
    expect(reputation.counts('slowpoke')['timed-out']).toBe(1)
    // one step deadline, not more
    expect(Date.now() - began).toBeLessThan(5_000)
    servers.dispose()
  })

  it('catches a lying server with verification: dropped, recorded, and the honest text', async () => {
    const req = request({ maxTokens: 30, temperature: 0.8, seed: 9, verify: 1 })
    const expected = await local(req)
    const reputation = await book()
    const servers = new InProcessServers(backend, config, params, reputation)
    servers.add('a', 0, 2, 100)
    servers.add('a2', 0, 2, 90)
    // the liar is the fastest server of [2, 4), so the chain takes it first
    servers.add('liar', 2, 4, 1000, { lieBy: 0.05 })
    servers.add('honest1', 2, 4, 50)
    servers.add('honest2', 2, 4, 40)
    const before = reputation.score('liar')
    const { bytes, result } = await chain(servers, req, { reputation })
    expect(bytes).toEqual(expected)
    expect(result.droppedServers).toEqual(['liar'])
    expect(result.chain.map((h) => h.peerId)).toEqual(['a', 'honest1'])
    expect(result.failovers).toBe(1)
    expect(reputation.counts('liar').lied).toBe(1)
    expect(reputation.score('liar')).toBeLessThan(before)
    // every step of both hops was checked
    expect(result.verifiedSteps).toBe(60)
    for (const peer of ['a', 'a2', 'honest1', 'honest2']) expect(reputation.counts(peer).agreed).toBe(1)
    expect(servers.servers.map((s) => s.open)).toEqual([0, 0, 0, 0, 0])

    // without verification, the liar's text differs: the check above can fail
    const unchecked = new InProcessServers(backend, config, params)
    unchecked.add('a', 0, 2, 100)
    unchecked.add('liar', 2, 4, 1000, { lieBy: 0.05 })
    unchecked.add('honest1', 2, 4, 50)
    const lied = await chain(unchecked, { ...req, verify: 0 })
    expect(lied.bytes).not.toEqual(expected)
    expect(lied.result.droppedServers).toEqual([])
    expect(lied.result.verifiedSteps).toBe(0)
    servers.dispose()
    unchecked.dispose()
  })

  it('drops a lying second server and keeps the honest text', async () => {
    const req = request({ maxTokens: 20, verify: 1 })
    const expected = await local(req)
    const reputation = await book()
    const servers = new InProcessServers(backend, config, params, reputation)
    servers.add('honest', 0, 4, 1000)
    servers.add('liar', 0, 4, 500, { lieBy: -0.02 })
    servers.add('judge', 0, 4, 10)
    const { bytes, result } = await chain(servers, req, { reputation })
    expect(bytes).toEqual(expected)
    expect(result.droppedServers).toEqual(['liar'])
    expect(result.chain.map((h) => h.peerId)).toEqual(['honest'])
    expect(reputation.counts('liar').lied).toBe(1)
    expect(reputation.counts('honest').lied).toBe(0)
    servers.dispose()
  })

  it('verifies a fraction of steps, the same ones for the same seed', async () => {
    const req = request({ maxTokens: 40, verify: 0.25, seed: 13 })
    const expected = await local(req)
    const runs: number[] = []
    for (let i = 0; i < 2; i++) {
      const servers = new InProcessServers(backend, config, params)
      servers.add('one', 0, 4, 100)
      servers.add('two', 0, 4, 50)
      const { bytes, result } = await chain(servers, req)
      expect(bytes).toEqual(expected)
      runs.push(result.verifiedSteps)
      // the second server caught up in batches: it answered fewer steps than it was checked on rows
      expect(servers.servers[1].steps).toBe(result.verifiedSteps)
      servers.dispose()
    }
    expect(runs[0]).toBe(runs[1])
    expect(runs[0]).toBeGreaterThan(2)
    expect(runs[0]).toBeLessThan(25)
  })

  it('says so when servers disagree and no third one can decide, or no second one exists', async () => {
    const servers = new InProcessServers(backend, config, params)
    servers.add('honest', 0, 4, 100)
    servers.add('liar', 0, 4, 50, { lieBy: 0.1 })
    await expect(chain(servers, request({ maxTokens: 5, verify: 1 }))).rejects.toThrow(
      /no third server of blocks 0-3 is available/,
    )
    const alone = new InProcessServers(backend, config, params)
    alone.add('only', 0, 4, 100)
    const failure = chain(alone, request({ maxTokens: 5, verify: 1 }))
    await expect(failure).rejects.toBeInstanceOf(ServingError)
    await expect(failure).rejects.toThrow(/no second server of blocks 0-3/)
    // this node's own span needs no second opinion
    const mine = new InProcessServers(backend, config, params, undefined, 'me')
    mine.add('me', 0, 4, 100)
    const { bytes } = await chain(mine, request({ maxTokens: 5, verify: 1 }))
    expect(bytes).toEqual(await local(request({ maxTokens: 5, verify: 1 })))
    for (const s of [servers, alone, mine]) s.dispose()
  })

  it('fails with a clear error when no chain covers the model or every server of a span fails', async () => {
    const gap = new InProcessServers(backend, config, params)
    gap.add('a', 0, 2, 100)
    const failure = chain(gap, request())
    await expect(failure).rejects.toBeInstanceOf(ServingError)
    await expect(failure).rejects.toThrow(
      'no chain of servers covers the model: no server covers blocks 2-3 of 4',
    )
    const dying = new InProcessServers(backend, config, params)
    dying.add('a', 0, 4, 100, { dieAfterSteps: 3 })
    dying.add('b', 0, 4, 50, { dieAfterSteps: 5 })
    await expect(chain(dying, request())).rejects.toThrow(
      /server b of blocks 0-3 failed and no other server can take over/,
    )
    gap.dispose()
    dying.dispose()
  })

  it('stops before a stop sequence and emits nothing of it', async () => {
    const expected = await local(request({ maxTokens: 40 }))
    // a sequence from the middle of the honest text
    const stop = Uint8Array.from(expected.slice(12, 15))
    const at = expected.findIndex((_, i) => expected.slice(i, i + 3).join() === [...stop].join())
    const servers = new InProcessServers(backend, config, params)
    servers.add('a', 0, 4, 100)
    const never = Uint8Array.from([0, 1, 2, 3])
    const { bytes, result } = await chain(servers, request({ maxTokens: 40, stop: [never, stop] }))
    expect(bytes).toEqual(expected.slice(0, at))
    expect(result.finishReason).toBe('stop')
    expect(result.tokens).toBe(at)
    servers.dispose()
  })

  it('refuses a request that cannot work before anything runs', () => {
    const servers = new InProcessServers(backend, config, params)
    servers.add('a', 0, 4, 100)
    const bad: Array<[Partial<NetworkGenerateRequest>, RegExp]> = [
      [{ prompt: new Uint8Array(0) }, /at least one byte/],
      [{ maxTokens: -1 }, /maxTokens/],
      [{ maxTokens: 1.5 }, /maxTokens/],
      [{ temperature: Number.NaN }, /temperature/],
      [{ topP: 0 }, /topP/],
      [{ topK: -2 }, /topK/],
      [{ seed: -1 }, /seed/],
      [{ stop: [new Uint8Array(0)] }, /stop sequence/],
      [{ verify: 1.5 }, /verify/],
    ]
    for (const [change, message] of bad) {
      expect(() => generateThroughChain(ends, servers, model, request(change))).toThrow(message)
      expect(() => generateThroughChain(ends, servers, model, request(change))).toThrow(ServingError)
    }
    expect(servers.lookups).toBe(0)
    servers.dispose()
  })
})

describe('StopFilter', () => {
  it('holds back what may begin a stop sequence and lets it go when it does not', () => {
    const filter = new StopFilter([Uint8Array.from([1, 2, 3]), Uint8Array.from([2, 5])])
    expect(filter.push(9)).toEqual({ emit: [9], stopped: false })
    expect(filter.push(1)).toEqual({ emit: [], stopped: false })
    expect(filter.push(2)).toEqual({ emit: [], stopped: false })
    // 1 2 4: neither sequence goes on
    expect(filter.push(4)).toEqual({ emit: [1, 2, 4], stopped: false })
    expect(filter.push(1)).toEqual({ emit: [], stopped: false })
    expect(filter.push(2)).toEqual({ emit: [], stopped: false })
    // 1 2 5: "2 5" completes; the 1 before it is emitted
    expect(filter.push(5)).toEqual({ emit: [1], stopped: true })
    const open = new StopFilter([Uint8Array.from([7, 7])])
    open.push(7)
    expect(open.flush()).toEqual([7])
  })
})

describe('hiddenAgree', () => {
  it('compares each row against its scale', () => {
    const a = Float32Array.from([1, -1, 1, -1, 100, 0, 0, 0])
    const b = a.slice()
    expect(hiddenAgree(a, b, 4, 1e-3)).toBe(true)
    b[0] += 0.5e-3
    expect(hiddenAgree(a, b, 4, 1e-3)).toBe(true)
    b[0] += 1e-3
    expect(hiddenAgree(a, b, 4, 1e-3)).toBe(false)
    // the second row's scale is 50: a difference of 0.04 is under 1e-3 of it
    const c = a.slice()
    c[5] = 0.04
    expect(hiddenAgree(a, c, 4, 1e-3)).toBe(true)
    c[1] = Number.NaN
    expect(hiddenAgree(a, c, 4, 1e-3)).toBe(false)
    expect(hiddenAgree(a, a.subarray(4), 4, 1e-3)).toBe(false)
  })
})
