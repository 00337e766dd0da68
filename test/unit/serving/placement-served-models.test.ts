// Proves what a daemon does with serve requests (node/serving/served-models.ts), on a real SpanHost over
// the native cpu engine with no network: without --blocks the span goes where the advertised spans of
// other servers leave the model uncovered (this node's own old record ignored), as many blocks as the
// budget holds; an explicit span past what the budget has left, or a budget below one block, is refused
// with the sizes; what the API asked is kept in serving.json and served again by the next start (a config
// entry for the same model wins); a model id no peer has yet at start is tried again until its files
// appear; the same model asked for by its directory and then by its id is served once, and stopping it
// unloads its span and forgets it.
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../../kernels/backend.js'
import { createBackend } from '../../../kernels/index.js'
import { initializeGpt } from '../../../kernels/models/gpt/config.js'
import { saveGptModel } from '../../../node/executor/model-files.js'
import { modelIdOfDirectory, publishModel } from '../../../node/serving/model-package.js'
import { spanMemoryBytes } from '../../../node/serving/placement.js'
import {
  ServedModels,
  type ServedModelsInit,
  type ServeEntry,
  ServeRequestError,
} from '../../../node/serving/served-models.js'
import { SpanHost } from '../../../node/serving/span-host.js'
import { BlockNotFoundError, type GetOptions, MemoryBlockStore } from '../../../protocols/blocks/index.js'
import type { AdvertisedSpan } from '../../../protocols/discovery/index.js'
import { gptManifest } from '../models/gpt-fixtures.js'

const CONFIG = { vocabSize: 256, context: 32, width: 32, layers: 4, heads: 2, layerNormEpsilon: 1e-5 }
const SESSIONS_MAX = 4
const BLOCK = spanMemoryBytes({ width: 32, context: 32, sessionsMax: SESSIONS_MAX }, 1)
const SELF = '12D3KooWSelf'
const OTHER = '12D3KooWOther'

/** Blocks in memory, each checked against its CID as the blocks protocol does. */
class LocalBlocks {
  readonly store = new MemoryBlockStore()
  async put(bytes: Uint8Array): Promise<CID> {
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    await this.store.put(cid, bytes)
    return cid
  }
  async get(cid: CID, _options: GetOptions = {}): Promise<Uint8Array> {
    const bytes = await this.store.get(cid)
    if (bytes === undefined) throw new BlockNotFoundError(`no peer delivered ${cid}`)
    return bytes
  }
}

let backend: Backend
let directory: string
let modelId: string
const hosts: SpanHost[] = []

beforeAll(async () => {
  backend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
  directory = join(await mkdtemp(join(tmpdir(), 'shardnet-served-')), 'model')
  await saveGptModel(directory, CONFIG, initializeGpt(CONFIG, 3), gptManifest(3))
  modelId = await modelIdOfDirectory(directory)
})

afterAll(async () => {
  for (const host of hosts) await host.stop()
  backend?.destroy()
})

interface Setup {
  served: ServedModels
  host: SpanHost
  blocks: LocalBlocks
  stateFile: string
}

async function setup(
  options: {
    memoryBytes?: number
    advertised?: Array<{ peerId: string; spans: AdvertisedSpan[] }>
    blocks?: LocalBlocks
    stateFile?: string
  } = {},
): Promise<Setup> {
  const host = new SpanHost({
    host: { handle: async () => {}, unhandle: async () => {} },
    backend,
    limits: { sessionsMax: SESSIONS_MAX },
    measureSteps: 1,
  })
  hosts.push(host)
  const blocks = options.blocks ?? new LocalBlocks()
  const stateFile =
    options.stateFile ?? join(await mkdtemp(join(tmpdir(), 'shardnet-served-')), 'serving.json')
  const advertised = options.advertised ?? []
  const init: ServedModelsInit = {
    spans: host,
    blocks,
    findServers: async function* (model) {
      for (const server of advertised)
        yield { ...server, spans: server.spans.filter((s) => s.model === model) }
    },
    selfPeerId: SELF,
    cacheRoot: await mkdtemp(join(tmpdir(), 'shardnet-served-cache-')),
    stateFile,
    memoryBytes: options.memoryBytes ?? 100 * BLOCK,
    placementLookupMs: 1_000,
    startRetryMs: 100,
  }
  return { served: new ServedModels(init), host, blocks, stateFile }
}

/** Waits until the entry for `model` has run (served or failed; with `serving`, served only). */
async function settled(
  served: ServedModels,
  model: string,
  states = ['serving', 'failed'],
): Promise<ServeEntry> {
  for (let i = 0; i < 200; i++) {
    const entry = served.list().find((e) => e.model === model)
    if (entry !== undefined && states.includes(entry.state)) return entry
    await new Promise((done) => setTimeout(done, 50))
  }
  throw new Error(`${model} did not settle`)
}

function span(start: number, end: number, tokensPerSecond = 50): AdvertisedSpan {
  return { model: modelId, start, end, blocks: 4, tokensPerSecond }
}

describe('served models', () => {
  it('place the span on the blocks other servers leave uncovered, as many as the budget holds', async () => {
    const { served, host } = await setup({
      memoryBytes: 2 * BLOCK + 100,
      advertised: [
        { peerId: OTHER, spans: [span(0, 2)] },
        // this node's own record from before a restart is not the network's coverage
        { peerId: SELF, spans: [span(2, 4)] },
      ],
    })
    const entry = await served.serve({ model: directory })
    expect(entry).toMatchObject({ state: 'preparing', placed: true, blocks: 4, name: 'gpt' })
    expect(await settled(served, directory)).toMatchObject({ state: 'serving', modelId, start: 2, end: 4 })
    expect(host.spans()).toMatchObject([{ model: modelId, start: 2, end: 4 }])
    expect(served.memoryUsedBytes()).toBe(2 * BLOCK)
    await served.stop()
  })

  it('refuse an explicit span past the budget left, and fail a placement below one block', async () => {
    const { served } = await setup({ memoryBytes: 3 * BLOCK })
    await served.serve({ model: directory, blocks: '0-1' })
    expect((await settled(served, directory)).state).toBe('serving')
    // the same model asked again replaces its entry, so its own bytes are not counted twice
    await expect(served.serve({ model: directory, blocks: '0-2' })).resolves.toMatchObject({ placed: false })
    await expect(served.serve({ model: directory, blocks: '0-3' })).rejects.toThrow(
      new RegExp(`blocks 0-3 of 4 need ${4 * BLOCK} bytes .* above the ${3 * BLOCK} bytes`),
    )
    await expect(served.serve({ model: directory, blocks: '0-3' })).rejects.toBeInstanceOf(ServeRequestError)
    const small = await setup({ memoryBytes: BLOCK - 1 })
    await small.served.serve({ model: directory })
    const failed = await settled(small.served, directory)
    expect(failed.state).toBe('failed')
    expect(failed.error).toMatch(`needs ${BLOCK} bytes`)
    await served.stop()
    await small.served.stop()
  })

  it('keep what the API asked in serving.json and serve it again at the next start', async () => {
    const first = await setup()
    await first.served.serve({ model: directory, blocks: '1-2' })
    await settled(first.served, directory)
    await first.served.stop()
    expect(JSON.parse(await readFile(first.stateFile, 'utf8'))).toEqual({
      serve: [{ model: directory, blocks: '1-2' }],
    })

    const again = await setup({ stateFile: first.stateFile })
    await again.served.start([])
    expect(await settled(again.served, directory)).toMatchObject({
      state: 'serving',
      source: 'api',
      start: 1,
      end: 3,
    })
    await again.served.stop()

    // a config entry for the same model wins over the kept one
    const configured = await setup({ stateFile: first.stateFile })
    await configured.served.start([{ model: directory, blocks: '3-3' }])
    expect(await settled(configured.served, directory)).toMatchObject({ source: 'config', start: 3, end: 4 })
    expect(configured.served.list()).toHaveLength(1)
    await configured.served.stop()
  })

  it('try a start-up model id again until some peer has its files', async () => {
    const blocks = new LocalBlocks()
    const { served } = await setup({ blocks })
    await served.start([{ model: modelId, blocks: '0-0' }])
    await new Promise((done) => setTimeout(done, 250))
    expect(served.list()[0]).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/no peer has the model/),
    })
    await publishModel(directory, blocks, { provide: false })
    expect(await settled(served, modelId, ['serving'])).toMatchObject({
      state: 'serving',
      source: 'config',
      start: 0,
      end: 1,
    })
    // the second attempt succeeded; the entry is not listed twice
    expect(served.list()).toHaveLength(1)
    await served.stop()
  })

  it('serve a model asked for by its directory and then by its id once', async () => {
    const { served, host, stateFile } = await setup()
    await served.serve({ model: directory, blocks: '0-1' })
    await settled(served, directory)
    await served.serve({ model: modelId, blocks: '2-3' })
    expect(await settled(served, modelId)).toMatchObject({ state: 'serving', start: 2, end: 4 })
    expect(served.list().map((e) => e.model)).toEqual([modelId])
    expect(host.spans()).toMatchObject([{ model: modelId, start: 2, end: 4 }])
    expect(JSON.parse(await readFile(stateFile, 'utf8'))).toEqual({
      serve: [{ model: modelId, blocks: '2-3' }],
    })

    // stopping it: the span is unloaded and nothing is kept for the next start
    await expect(served.unserve(directory)).rejects.toThrow(`this node does not serve ${directory}`)
    expect(await served.unserve(modelId)).toMatchObject({ state: 'stopped', modelId, start: 2, end: 4 })
    expect(host.spans()).toEqual([])
    expect(served.list()).toEqual([])
    expect(JSON.parse(await readFile(stateFile, 'utf8'))).toEqual({ serve: [] })
    await served.stop()
  })
})
