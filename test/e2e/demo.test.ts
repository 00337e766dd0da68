// Proves `shardnet demo` end to end through the real executable: it starts seven background daemons
// with the real `node start` machinery, trains MNIST in two Raft groups of three across them, prints
// one JSON object with the test accuracy and the model directory (which loadModel reads back and
// whose recorded accuracy matches), runs an inference task whose shards are accepted by a quorum of
// replicas (agreement figures in the JSON), and leaves no daemon behind. With `--model gpt` it trains
// the tiny GPT the same way, prints a sample of bytes generated locally from the result, and generates
// the same sample through a chain of workers serving the model in spans: every block covered by at
// least two hops, and the same bytes as the local sample (sampling happens at the client).
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { loadGpt, loadModel } from '../../node/executor/model-files.js'
import { modelIdOfDirectory } from '../../node/serving/model-package.js'

const execFileAsync = promisify(execFile)

describe('shardnet demo', () => {
  it('trains across a local network of seven daemons and reports accuracy and the model', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'shardnet-demo-test-')), 'model')
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [
        'bin/shardnet.js',
        'demo',
        '--json',
        '--steps',
        '60',
        '--hidden',
        '32',
        '--outer-every',
        '30',
        '--lr',
        '0.003',
        '--out',
        out,
      ],
      { timeout: 420_000, maxBuffer: 16 << 20 },
    )
    const result = JSON.parse(stdout) as {
      nodes: number
      state: string
      accuracy: number
      modelDir: string
      outerRounds: number
      groups: Array<{ members: string[] }>
      inference: {
        available: boolean
        state?: string
        replicas?: number
        agreement?: number
        agreeingResults?: number
        results?: number
        count?: number
        accuracy?: number
        predictionsPath?: string
      }
    }
    expect(result.state).toBe('completed')
    expect(result.nodes).toBe(7)
    expect(result.groups.map((g) => g.members.length)).toEqual([3, 3])
    expect(new Set(result.groups.flatMap((g) => g.members)).size).toBe(6)
    expect(result.outerRounds).toBe(2)
    expect(result.accuracy).toBeGreaterThan(0.7)
    const model = await loadModel(result.modelDir)
    expect(model.manifest.metrics.testAccuracy).toBe(result.accuracy)
    // inference over the trained model: every shard accepted by a majority of its replicas
    expect(result.inference.available).toBe(true)
    expect(result.inference.state).toBe('completed')
    expect(result.inference.count).toBeGreaterThan(0)
    expect(result.inference.replicas).toBeGreaterThanOrEqual(2)
    expect(result.inference.agreeingResults).toBeGreaterThan(0)
    expect(result.inference.agreement).toBeGreaterThan(0.5)
    expect(result.inference.accuracy).toBeGreaterThan(0.6)
    expect(existsSync(result.inference.predictionsPath!)).toBe(true)
    expect(stderr).toMatch(/stopping 7 daemons/)
    // the daemons' temp data dirs are gone: every daemon stopped and was cleaned up
    const root = /data dirs in (\S+)\)/.exec(stderr)?.[1]
    expect(root).toBeDefined()
    expect(existsSync(root!)).toBe(false)
    expect(result.modelDir).toBe(out)
    await rm(join(out, '..'), { recursive: true, force: true })
  }, 480_000)

  it('trains the tiny GPT across the local network and prints a sample', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'shardnet-demo-gpt-test-')), 'model')
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [
        'bin/shardnet.js',
        'demo',
        '--model',
        'gpt',
        '--json',
        '--steps',
        '30',
        '--outer-every',
        '15',
        '--out',
        out,
      ],
      { timeout: 420_000, maxBuffer: 16 << 20 },
    )
    const result = JSON.parse(stdout) as {
      model: string
      state: string
      bitsPerByte: number
      modelDir: string
      outerRounds: number
      groups: Array<{ members: string[] }>
      sample: { prompt: string; text: string }
      serving: {
        available: boolean
        reason?: string
        modelId: string
        servers: Array<{ peerId: string; start: number; end: number }>
        chain: Array<{ peerId: string; start: number; end: number }>
        text: string
        tokens: number
        tokensPerSecond: number
        firstByteMs: number
        sameAsLocal: boolean
        sampledAt: string
      }
      inference?: unknown
    }
    expect(result.model).toBe('gpt')
    expect(result.state).toBe('completed')
    expect(result.outerRounds).toBe(2)
    // 30 steps of 6 x 2 windows learn the byte frequencies: well below an untrained model's 8 bits
    expect(result.bitsPerByte).toBeLessThan(6.5)
    const model = await loadGpt(result.modelDir)
    expect(model.config).toMatchObject({ width: 128, layers: 4, heads: 4, context: 64 })
    expect(model.manifest.metrics.validationBitsPerByte).toBe(result.bitsPerByte)
    expect(result.sample.prompt).toBe('The kernel ')
    expect(Buffer.byteLength(result.sample.text, 'utf8')).toBeGreaterThan(0)
    expect(result.inference).toBeUndefined()
    // served in spans: two workers each for blocks [0, 2) and [2, 4), none of them the submitter
    const serving = result.serving
    expect(serving.reason).toBeUndefined()
    expect(serving.available).toBe(true)
    expect(serving.modelId).toBe(await modelIdOfDirectory(result.modelDir))
    expect(serving.servers.map((s) => [s.start, s.end])).toEqual([
      [0, 2],
      [0, 2],
      [2, 4],
      [2, 4],
    ])
    const workers = new Set(result.groups.flatMap((g) => g.members))
    expect(new Set(serving.servers.map((s) => s.peerId)).size).toBe(4)
    for (const server of serving.servers) expect(workers.has(server.peerId)).toBe(true)
    // the chain covers every block, in order, through at least two servers of those spans
    expect(serving.chain.length).toBeGreaterThanOrEqual(2)
    expect(serving.chain[0].start).toBe(0)
    expect(serving.chain.at(-1)?.end).toBe(4)
    for (let hop = 1; hop < serving.chain.length; hop++)
      expect(serving.chain[hop].start).toBe(serving.chain[hop - 1].end)
    for (const hop of serving.chain)
      expect(
        serving.servers.some((s) => s.peerId === hop.peerId && s.start <= hop.start && hop.end <= s.end),
      ).toBe(true)
    // the same bytes as the local sample with the same seed, and the JSON says why
    expect(serving.sameAsLocal).toBe(true)
    expect(serving.text).toBe(result.sample.text)
    expect(serving.tokens).toBe(160)
    expect(serving.sampledAt).toBe('client')
    expect(serving.tokensPerSecond).toBeGreaterThan(0)
    expect(serving.firstByteMs).toBeGreaterThan(0)
    expect(stderr).toMatch(/network sample: 160 bytes through .+ -> .+ the same text as the local sample/)
    expect(stderr).toMatch(/stopping 7 daemons/)
    await rm(join(out, '..'), { recursive: true, force: true })
  }, 480_000)
})
