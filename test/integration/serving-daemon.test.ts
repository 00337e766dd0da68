// Proves serving spans of a model from real daemons on loopback: daemon A serves a model directory's
// blocks 0-1 (its files published over the blocks protocol, its id the one computed from the directory);
// daemon B serves the same model by its id alone, fetching every file over the blocks protocol (verified:
// the cached copy is the same model to loadGpt) and, without --blocks, placing its span on the blocks
// nobody covers (2-3) within a memory budget of two blocks; a third daemon finds both servers and their
// spans through the DHT, and stops finding one that no longer serves it. What `shardnet node serve` asked
// survives a restart (serving.json), and so does the config's `serve`; POST /v1/serve/stop unloads a span;
// bad requests to POST /v1/serve get one clear 4xx sentence each. A server of blocks 2-3 of a model cut in
// many weights pieces fetches only the pieces of the header and of those blocks.
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initializeGpt } from '../../kernels/models/gpt/config.js'
import type { ServeListing } from '../../node/api/serving-routes.js'
import { formatStatus } from '../../node/cli/node.js'
import type { ConfigOverrides } from '../../node/config.js'
import { type Daemon, MODEL_CACHE_FOLDER } from '../../node/daemon.js'
import { loadGpt, saveGptModel } from '../../node/executor/model-files.js'
import { modelIdOfDirectory, publishModel } from '../../node/serving/model-package.js'
import { blockParameterBytes, spanMemoryBytes } from '../../node/serving/placement.js'
import type { ServeEntry } from '../../node/serving/served-models.js'
import { SPAN_SESSIONS_MAX_DEFAULT } from '../../node/serving/span-host.js'
import { openSpanSession } from '../../protocols/serving/index.js'
import { gptManifest } from '../unit/models/gpt-fixtures.js'
import { apiRequest, startTestDaemon, tempDataDir, waitUntil } from './daemon-helpers.js'

const CONFIG = { vocabSize: 256, context: 32, width: 32, layers: 4, heads: 2, layerNormEpsilon: 1e-5 }
// the placement counts each block's weights and every admitted session's full cache: two blocks fit
const BLOCK_BYTES = spanMemoryBytes(
  { width: CONFIG.width, context: CONFIG.context, sessionsMax: SPAN_SESSIONS_MAX_DEFAULT },
  1,
)
const TWO_BLOCKS_BUDGET = 2 * BLOCK_BYTES + blockParameterBytes(CONFIG.width)

/** A well-formed model id nobody published. */
async function absentModelId(): Promise<string> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('no such model'))).toString()
}

async function listing(daemon: Daemon): Promise<ServeListing> {
  const response = await apiRequest(daemon, '/v1/serve')
  expect(response.status).toBe(200)
  return (await response.json()) as ServeListing
}

async function serve(
  daemon: Daemon,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await apiRequest(daemon, '/v1/serve', { method: 'POST', body })
  return { status: response.status, json: (await response.json()) as Record<string, unknown> }
}

/** Waits until the entry for `model` is served (or failed: then the test fails with its error). */
async function served(daemon: Daemon, model: string): Promise<ServeEntry> {
  let entry: ServeEntry | undefined
  await waitUntil(
    async () => {
      entry = (await listing(daemon)).entries.find((e) => e.model === model)
      if (entry?.state === 'failed') throw new Error(`serving ${model} failed: ${entry.error}`)
      return entry?.state === 'serving'
    },
    () => `${model} to be served (now ${entry?.state})`,
    30_000,
  )
  return entry as ServeEntry
}

/** The servers of `model` a daemon finds through the DHT, as "peer: start-end" strings. */
async function servers(seeker: Daemon, model: string): Promise<string[]> {
  const found: string[] = []
  for await (const server of seeker.host.services.discovery.findServers(model, {
    signal: AbortSignal.timeout(10_000),
  })) {
    for (const span of server.spans) found.push(`${server.peerId}: ${span.start}-${span.end}/${span.blocks}`)
  }
  return found.sort()
}

describe('serving spans of a model from daemons', () => {
  let directory: string
  let modelId: string
  const dataDirs: string[] = []
  const daemons: Daemon[] = []
  let bootstrap: string[]

  async function start(index: number, overrides: ConfigOverrides = {}): Promise<Daemon> {
    const daemon = await startTestDaemon({
      dataDir: dataDirs[index],
      overrides: { ...(index === 0 ? {} : { bootstrap }), ...overrides },
      served: { placementLookupMs: 5_000, packageFetchTimeoutMs: 5_000, startRetryMs: 500 },
      spanHost: { measureSteps: 2 },
    })
    daemons[index] = daemon
    return daemon
  }

  beforeAll(async () => {
    directory = join(await mkdtemp(join(tmpdir(), 'shardnet-serve-')), 'model')
    await saveGptModel(directory, CONFIG, initializeGpt(CONFIG, 7), gptManifest(7))
    modelId = await modelIdOfDirectory(directory)
    for (let i = 0; i < 3; i++) dataDirs.push(await tempDataDir())
    const a = await start(0)
    bootstrap = a.addresses()
    await start(1, { serveMemoryBytes: TWO_BLOCKS_BUDGET })
    await start(2)
    await waitUntil(
      () => daemons.every((d) => d.host.services.discovery.current() !== undefined),
      'every daemon to publish its capability record',
    )
  }, 60_000)

  afterAll(async () => {
    await Promise.allSettled(daemons.map((daemon) => daemon.stop()))
  })

  it('A serves a directory, B the same model by id on the blocks nobody covers, C finds both', async () => {
    const [a, b, c] = daemons
    const asked = await serve(a, { model: directory, blocks: '0-1' })
    expect(asked.status).toBe(200)
    const onA = await served(a, directory)
    expect(onA).toMatchObject({
      modelId,
      start: 0,
      end: 2,
      blocks: 4,
      name: 'gpt',
      placed: false,
      source: 'api',
    })
    expect(onA.tokensPerSecond).toBeGreaterThan(0)
    // node status shows the span served and the span server's counters
    const status = a.status()
    expect(status.serving.spans).toMatchObject([{ model: modelId, start: 0, end: 2, blocks: 4, name: 'gpt' }])
    expect(formatStatus(status)).toMatch(
      new RegExp(`serving    blocks 0-1 of 4 of gpt ${modelId}, \\d+ tokens/s`),
    )
    // a session asking for blocks A does not serve is refused, counted, and shown in /metrics
    const outside = openSpanSession(
      { dialer: c.host, peer: a.peerId },
      { model: modelId, start: 1, end: 4, maxLength: 8 },
    )
    await expect(outside).rejects.toMatchObject({ code: 'outside-model' })
    const metrics = await (await apiRequest(a, '/metrics')).text()
    expect(metrics).toContain('shardnet_refused_total{source="span",reason="outside-model"} 1')
    expect(metrics).toMatch(/shardnet_span_sessions_open 0/)
    await waitUntil(
      async () => (await servers(c, modelId)).length === 1,
      "A's span to be found through the DHT",
      30_000,
      250,
    )

    expect((await serve(b, { model: modelId })).status).toBe(200)
    const onB = await served(b, modelId)
    expect(onB).toMatchObject({ modelId, start: 2, end: 4, blocks: 4, placed: true })
    // fetched over the blocks protocol, every byte verified: the same model as A's directory
    const fetched = await loadGpt(join(b.paths.root, MODEL_CACHE_FOLDER, modelId))
    const original = await loadGpt(directory)
    expect(Buffer.from(fetched.params.buffer).equals(Buffer.from(original.params.buffer))).toBe(true)
    expect(b.blocks.counters().fetched).toBeGreaterThanOrEqual(4)

    const expected = [`${a.peerId}: 0-2/4`, `${b.peerId}: 2-4/4`].sort()
    await waitUntil(
      async () => JSON.stringify(await servers(c, modelId)) === JSON.stringify(expected),
      'both spans to be found through the DHT',
      30_000,
      250,
    )
    expect(b.spans.spans()).toMatchObject([{ model: modelId, start: 2, end: 4 }])
  }, 60_000)

  it('refuses bad requests with one clear sentence each', async () => {
    const a = daemons[0]
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['a directory that does not exist', { model: join(directory, 'nope') }, 404, /no model directory at/],
      ['a relative path', { model: 'models/gpt' }, 400, /neither a model id .* nor the absolute path/],
      [
        'blocks outside the model',
        { model: directory, blocks: '3-9' },
        400,
        /outside the model, whose 4 blocks/,
      ],
      ['a malformed range', { model: directory, blocks: 'two-three' }, 400, /is not a range: expected A-B/],
      ['a reversed range', { model: directory, blocks: '3-1' }, 400, /end before they start/],
      ['no model', { blocks: '0-1' }, 400, /expected \{"model"/],
      ['a body that is not an object', ['x'], 400, /expected \{"model"/],
      ['an unknown key', { model: directory, span: '0-1' }, 400, /unknown key "span"/],
      ['a model id no peer has', { model: await absentModelId() }, 404, /no peer has the model/],
      ['a directory that holds no model', { model: tmpdir() }, 400, /model\.json is missing/],
    ]
    for (const [what, body, status, message] of cases) {
      const answer = await serve(a, body)
      expect(answer.status, what).toBe(status)
      expect(String(answer.json.error), what).toMatch(message)
    }
    // serving is the admin token's; the listing is readable with the read-only one
    const { readFile } = await import('node:fs/promises')
    const read = (await readFile(join(a.paths.root, 'api-read-token'), 'utf8')).trim()
    const refused = await apiRequest(a, '/v1/serve', {
      method: 'POST',
      body: { model: directory },
      token: read,
    })
    expect(refused.status).toBe(403)
    expect((await apiRequest(a, '/v1/serve', { token: read })).status).toBe(200)
    // stopping what is not served, or nothing
    const stop = async (body: unknown) => apiRequest(a, '/v1/serve/stop', { method: 'POST', body })
    const notServed = await stop({ model: join(directory, 'nope') })
    expect(notServed.status).toBe(404)
    expect(((await notServed.json()) as { error: string }).error).toMatch(/this node does not serve/)
    expect((await stop({})).status).toBe(400)
    // nothing bad was kept
    expect((await listing(a)).entries.map((e) => e.model)).toEqual([directory])
  }, 60_000)

  it('a server that stops serving the model is not found, though its provider entry lasts', async () => {
    const [a, b, c] = daemons
    const before = c.host.services.discovery.counters().rejected['not-serving']
    expect(await b.spans.unload(modelId)).toBe(true)
    await waitUntil(
      async () => JSON.stringify(await servers(c, modelId)) === JSON.stringify([`${a.peerId}: 0-2/4`]),
      "B's span to be gone from lookups",
      30_000,
      250,
    )
    // B still provides the model's serving CID; its record, which names no span of it now, decides
    expect(c.host.services.discovery.counters().rejected['not-serving']).toBeGreaterThan(before)
    // and B's own listing says so
    expect((await listing(b)).entries).toMatchObject([
      { model: modelId, state: 'failed', error: 'the span server no longer holds this span' },
    ])
  }, 60_000)

  it('serves again after a restart: what node serve asked, and the config entries', async () => {
    await daemons[1].stop()
    const b = await start(1, { serveMemoryBytes: TWO_BLOCKS_BUDGET })
    const onB = await served(b, modelId)
    expect(onB).toMatchObject({ source: 'api', start: 2, end: 4 })
    // from the cache: no block fetched this time
    expect(b.blocks.counters().fetched).toBe(0)

    await daemons[2].stop()
    const c = await start(2, { serve: [{ model: modelId, blocks: '3-3' }] })
    expect(await served(c, modelId)).toMatchObject({ source: 'config', start: 3, end: 4, placed: false })
    await c.stop()
    const again = await start(2, { serve: [{ model: modelId, blocks: '3-3' }] })
    expect(await served(again, modelId)).toMatchObject({ source: 'config', start: 3, end: 4 })
    expect(again.blocks.counters().fetched).toBe(0)
    await waitUntil(
      async () => (await servers(daemons[0], modelId)).length === 3,
      'the three spans to be found',
      30_000,
      250,
    )
    // stopped through the API: unloaded at once (the config serves it again at the next start)
    const stopped = await apiRequest(again, '/v1/serve/stop', { method: 'POST', body: { model: modelId } })
    expect(stopped.status).toBe(200)
    expect(again.spans.spans()).toEqual([])
    expect((await listing(again)).entries).toEqual([])
  }, 60_000)

  it("a server of blocks 2-3 of a model in many pieces fetches only those blocks' pieces", async () => {
    const [a, , c] = daemons
    const other = join(await mkdtemp(join(tmpdir(), 'shardnet-serve-')), 'pieces')
    await saveGptModel(other, CONFIG, initializeGpt(CONFIG, 8), {
      model: 'gpt-pieces',
      dataset: {},
      seed: 8,
      training: {},
      backend: {},
      metrics: {},
      history: [],
      createdAt: new Date(0).toISOString(),
    })
    // pieces of 16 KiB: the four blocks of width 32 and the ends make about 15
    const published = await publishModel(other, a.blocks, { pieceBytes: 16 * 1024 })
    const { pieces } = published.package.weights
    expect(pieces.length).toBeGreaterThan(10)
    // the pieces of the header and of blocks 2-3, from the weights file's own header
    const weights = new Uint8Array(await readFile(join(other, 'model.safetensors')))
    const headerEnd = 8 + Number(new DataView(weights.buffer).getBigUint64(0, true))
    const header = JSON.parse(new TextDecoder().decode(weights.subarray(8, headerEnd)))
    const needed = new Set<number>()
    const cover = (begin: number, end: number) => {
      for (let piece = Math.floor(begin / (16 * 1024)); piece * 16 * 1024 < end; piece++) needed.add(piece)
    }
    cover(0, headerEnd)
    for (const [name, entry] of Object.entries(header) as Array<[string, { data_offsets: number[] }]>) {
      if (/^h\.[23]\./.test(name)) cover(headerEnd + entry.data_offsets[0], headerEnd + entry.data_offsets[1])
    }

    // model.json, config.json and the package, less those C holds already (the same config.json as the
    // first model's)
    const { manifest, config } = published.package
    const files = [published.modelId, manifest.cid, config.cid].map((cid) => CID.parse(cid))
    const held = (await Promise.all(files.map((cid) => c.blocks.store.has(cid)))).filter(Boolean).length
    const before = c.blocks.counters().fetched
    expect((await serve(c, { model: published.modelId, blocks: '2-3' })).status).toBe(200)
    expect(await served(c, published.modelId)).toMatchObject({ start: 2, end: 4, blocks: 4 })
    const fetched = c.blocks.counters().fetched - before
    // the model's files and exactly those pieces: fewer than the whole model's blocks
    expect(fetched).toBe(3 - held + needed.size)
    expect(fetched).toBeLessThan(3 + pieces.length)
    expect(c.spans.spans()).toMatchObject([{ model: published.modelId, start: 2, end: 4 }])
  }, 60_000)
})
