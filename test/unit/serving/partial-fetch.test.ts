// Proves fetchModel's parts fetch only the weights pieces a span of blocks or the ends need: the package,
// model.json, config.json, the header's pieces and the pieces the part's tensors lie in (found here
// from the published file's own header JSON), no other; what is read from the partial cache is bitwise
// the original model's; the cache is reused (the same part again asks for nothing, another part or the
// whole model only for the pieces not present, and the whole model becomes one loadGpt reads); a
// SpanHost loads a span (and a sub-span) from a partial cache and computes bitwise what fromParameters'
// span does; a piece whose bytes do not match its CID is refused and not recorded; a package whose
// config.json or weights header lies is refused with a clear ModelPackageError. The blocks come from an
// in-memory store that counts each request; the liars are the adversary's.
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { createBackend } from '../../../kernels/index.js'
import { gptHuggingFaceConfig } from '../../../kernels/models/gpt/checkpoint.js'
import { type GptConfig, gptParameterLayout, initializeGpt } from '../../../kernels/models/gpt/config.js'
import { GptSpan } from '../../../kernels/models/gpt/span.js'
import { PRESENT_PIECES_FILE, readGptParts } from '../../../node/executor/gpt-tensors.js'
import { loadGpt, MANIFEST_FILE, saveGptModel, WEIGHTS_FILE } from '../../../node/executor/model-files.js'
import {
  fetchModel,
  MODEL_PACKAGE_FORMAT,
  type ModelPackage,
  ModelPackageError,
  publishModel,
} from '../../../node/serving/model-package.js'
import { SpanHost } from '../../../node/serving/span-host.js'
import { BlockNotFoundError, type GetOptions, MemoryBlockStore } from '../../../protocols/blocks/index.js'
import { gptManifest } from '../models/gpt-fixtures.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 16,
  width: 16,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const MANIFEST = gptManifest(1)
// the weights are about 75 KB: pieces of 4 KiB make about 19
const PIECE_BYTES = 4096

/** Blocks in memory, each get checked against its CID and counted by CID. */
class LocalBlocks {
  readonly store = new MemoryBlockStore()
  readonly got: string[] = []
  async put(bytes: Uint8Array): Promise<CID> {
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    await this.store.put(cid, bytes)
    return cid
  }
  async get(cid: CID, _options: GetOptions = {}): Promise<Uint8Array> {
    this.got.push(cid.toString())
    const bytes = await this.store.get(cid)
    if (bytes === undefined) throw new BlockNotFoundError(`no peer delivered ${cid}`)
    return bytes
  }
}

/** The adversary's blocks: the bytes of `lie` for one CID (the checks are fetchModel's alone). */
class LyingBlocks extends LocalBlocks {
  constructor(
    private readonly inner: LocalBlocks,
    private readonly target: string,
    private readonly lie: Uint8Array,
  ) {
    super()
  }
  override async get(cid: CID, options: GetOptions = {}): Promise<Uint8Array> {
    if (cid.toString() === this.target) {
      this.got.push(cid.toString())
      return this.lie
    }
    const bytes = await this.inner.get(cid, options)
    this.got.push(cid.toString())
    return bytes
  }
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'shardnet-partial-'))
}

async function modelDir(): Promise<string> {
  const directory = join(await tempDir(), 'model')
  await saveGptModel(directory, CONFIG, initializeGpt(CONFIG, 3), MANIFEST)
  return directory
}

/** The pieces holding the header and the tensors `names` selects, from the file's own header JSON. */
function piecesFor(weights: Uint8Array, select: (name: string) => boolean): number[] {
  const headerEnd = 8 + Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true))
  const header = JSON.parse(new TextDecoder().decode(weights.subarray(8, headerEnd)))
  const pieces = new Set<number>()
  const cover = (begin: number, end: number) => {
    for (let piece = Math.floor(begin / PIECE_BYTES); piece * PIECE_BYTES < end; piece++) pieces.add(piece)
  }
  cover(0, headerEnd)
  for (const [name, entry] of Object.entries(header) as Array<[string, { data_offsets: number[] }]>) {
    if (name !== '__metadata__' && select(name))
      cover(headerEnd + entry.data_offsets[0], headerEnd + entry.data_offsets[1])
  }
  return [...pieces].sort((a, b) => a - b)
}

function bits(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength)
}

async function refusal(promise: Promise<unknown>): Promise<ModelPackageError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(ModelPackageError)
    return error as ModelPackageError
  }
  throw new Error('expected a ModelPackageError')
}

describe('partial model fetches', () => {
  it('fetch only the pieces of a span or the ends, reuse them, complete into the whole model', async () => {
    const directory = await modelDir()
    const blocks = new LocalBlocks()
    const published = await publishModel(directory, blocks, { pieceBytes: PIECE_BYTES, provide: false })
    const { pieces } = published.package.weights
    expect(pieces.length).toBeGreaterThan(12)
    const weights = new Uint8Array(await readFile(join(directory, WEIGHTS_FILE)))
    const original = await loadGpt(directory)
    const layout = new Map(gptParameterLayout(CONFIG).map((entry) => [entry.name, entry]))
    const same = (tensors: Map<string, Float32Array>) => {
      for (const [name, values] of tensors) {
        const entry = layout.get(name)
        if (entry === undefined) throw new Error(name)
        expect(
          bits(values).equals(bits(original.params.subarray(entry.offset, entry.offset + entry.size))),
        ).toBe(true)
      }
    }
    const fetchedPieces = (got: string[]) =>
      got
        .map((cid) => pieces.indexOf(cid))
        .filter((i) => i >= 0)
        .sort((a, b) => a - b)

    // blocks 2-3: the package, model.json, config.json and exactly the header's and h.2's, h.3's pieces
    const cache = await tempDir()
    const spanPieces = piecesFor(weights, (name) => /^h\.[23]\./.test(name))
    const fetched = await fetchModel(published.modelId, blocks, cache, {
      parts: { span: { start: 2, end: 4 } },
    })
    expect(fetched).toBe(join(cache, published.modelId))
    expect(fetchedPieces(blocks.got)).toEqual(spanPieces)
    expect(blocks.got.length).toBe(3 + spanPieces.length)
    expect(spanPieces.length).toBeLessThan(pieces.length * 0.75)
    const span = await readGptParts(fetched, { span: { start: 2, end: 4 } })
    expect(span.tensors.size).toBe(24)
    same(span.tensors)
    // the sparse weights file takes the model's size; blocks 0-1 are not there
    expect((await stat(join(fetched, WEIGHTS_FILE))).size).toBe(weights.byteLength)
    await expect(readGptParts(fetched, { span: { start: 0, end: 2 } })).rejects.toThrow(/has not fetched/)
    await expect(loadGpt(fetched)).rejects.toThrow(/sha256 differs/)

    // the same part again asks for nothing
    const none = new LocalBlocks()
    expect(await fetchModel(published.modelId, none, cache, { parts: { span: { start: 2, end: 3 } } })).toBe(
      fetched,
    )
    expect(none.got).toEqual([])

    // the ends: only their pieces not present yet
    blocks.got.length = 0
    const endsPieces = piecesFor(weights, (name) => !name.startsWith('h.'))
    await fetchModel(published.modelId, blocks, cache, { parts: { ends: true } })
    expect(fetchedPieces(blocks.got)).toEqual(endsPieces.filter((piece) => !spanPieces.includes(piece)))
    expect(blocks.got.length).toBe(fetchedPieces(blocks.got).length)
    same((await readGptParts(fetched, { ends: true })).tensors)

    // the whole model: the rest of the pieces, then one loadGpt reads, and pieces.json is gone
    blocks.got.length = 0
    expect(await fetchModel(published.modelId, blocks, cache)).toBe(fetched)
    const had = new Set([...spanPieces, ...endsPieces])
    expect(fetchedPieces(blocks.got)).toEqual(pieces.map((_, i) => i).filter((piece) => !had.has(piece)))
    const whole = await loadGpt(fetched)
    expect(bits(whole.params).equals(bits(original.params))).toBe(true)
    await expect(stat(join(fetched, PRESENT_PIECES_FILE))).rejects.toThrow(/ENOENT/)
    // and any part of a whole cached model asks for nothing
    expect(await fetchModel(published.modelId, none, cache, { parts: { span: { start: 0, end: 1 } } })).toBe(
      fetched,
    )
    expect(none.got).toEqual([])
  })

  it('a SpanHost serves blocks 2-3 and a sub-span from a partial cache as fromParameters does', async () => {
    const blocks = new LocalBlocks()
    const published = await publishModel(await modelDir(), blocks, {
      pieceBytes: PIECE_BYTES,
      provide: false,
    })
    const cache = await tempDir()
    const fetched = await fetchModel(published.modelId, blocks, cache, {
      parts: { span: { start: 2, end: 4 } },
    })
    const backend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
    const noNetwork = { handle: async () => {}, unhandle: async () => {} }
    const host = new SpanHost({ host: noNetwork, backend, measureSteps: 1 })
    try {
      const info = await host.load({ model: published.modelId, directory: fetched, start: 2, end: 4 })
      expect(info).toMatchObject({ start: 2, end: 4, blocks: 4 })
      const params = initializeGpt(CONFIG, 3)
      const rows = Float32Array.from({ length: 3 * CONFIG.width }, (_, i) => Math.sin(i * 0.37) * 0.8)
      for (const [start, end] of [
        [2, 4],
        [3, 4],
      ]) {
        const session = await host.openLocalSession({ model: published.modelId, start, end, maxLength: 8 })
        const { hidden } = await session.step(0, 3, rows)
        await session.close()
        const oracle = GptSpan.fromParameters(backend, CONFIG, params, start, end)
        const expected = await oracle.session(8).forward(rows, 3, 0)
        oracle.dispose()
        expect(bits(hidden).equals(bits(expected))).toBe(true)
      }
      // blocks 0-1 were never fetched: loading them from this cache is refused with a sentence
      await expect(
        host.load({ model: published.modelId, directory: fetched, start: 0, end: 2 }),
      ).rejects.toThrow(/which this cache has not fetched/)
    } finally {
      await host.stop()
      backend.destroy()
    }
  })

  it('two partial fetches at once share the pieces, each fetched once', async () => {
    const blocks = new LocalBlocks()
    const published = await publishModel(await modelDir(), blocks, {
      pieceBytes: PIECE_BYTES,
      provide: false,
    })
    const cache = await tempDir()
    await Promise.all([
      fetchModel(published.modelId, blocks, cache, { parts: { span: { start: 0, end: 2 } } }),
      fetchModel(published.modelId, blocks, cache, { parts: { span: { start: 1, end: 3 } } }),
      fetchModel(published.modelId, blocks, cache, { parts: { ends: true } }),
    ])
    expect(new Set(blocks.got).size).toBe(blocks.got.length)
    const read = await readGptParts(join(cache, published.modelId), {
      span: { start: 0, end: 3 },
      ends: true,
    })
    expect(read.tensors.size).toBe(40)
  })

  it('refuses a piece whose bytes do not match its CID, and records nothing of it', async () => {
    const directory = await modelDir()
    const blocks = new LocalBlocks()
    const published = await publishModel(directory, blocks, { pieceBytes: PIECE_BYTES, provide: false })
    const weights = new Uint8Array(await readFile(join(directory, WEIGHTS_FILE)))
    const victim = piecesFor(weights, (name) => name.startsWith('h.3.')).at(-1) as number
    const pieceCid = published.package.weights.pieces[victim]
    const lie = (await blocks.store.get(CID.parse(pieceCid)))?.slice() as Uint8Array
    lie[0] ^= 1
    const liar = new LyingBlocks(blocks, pieceCid, lie)
    const cache = await tempDir()
    const refused = await refusal(
      fetchModel(published.modelId, liar, cache, { parts: { span: { start: 3, end: 4 } } }),
    )
    expect(refused.code).toBe('hash-mismatch')
    expect(refused.message).toMatch(new RegExp(`weights piece ${victim + 1} does not match its CID`))
    const record = JSON.parse(await readFile(join(cache, published.modelId, PRESENT_PIECES_FILE), 'utf8'))
    expect(record.present).not.toContain(victim)
    // an honest peer later completes the part, reusing the pieces verified before
    const honest = new LocalBlocks()
    for (const cid of [published.modelId, ...published.package.weights.pieces]) {
      const bytes = await blocks.store.get(CID.parse(cid))
      if (bytes !== undefined) await honest.put(bytes)
    }
    await fetchModel(published.modelId, honest, cache, { parts: { span: { start: 3, end: 4 } } })
    expect(honest.got.map((cid) => published.package.weights.pieces.indexOf(cid))).toEqual([victim])
    expect(
      (await readGptParts(join(cache, published.modelId), { span: { start: 3, end: 4 } })).tensors.size,
    ).toBe(12)
  })

  describe('refuses a package whose files lie', async () => {
    const directory = await modelDir()
    const manifestBytes = new Uint8Array(await readFile(join(directory, MANIFEST_FILE)))
    const weights = new Uint8Array(await readFile(join(directory, WEIGHTS_FILE)))
    /** The adversary's package: model.json as published, config.json and weights of its choosing. */
    async function lyingPackage(blocks: LocalBlocks, config: Uint8Array, file: Uint8Array): Promise<string> {
      const manifest = JSON.parse(new TextDecoder().decode(manifestBytes))
      manifest.weights.bytes = file.byteLength
      manifest.weights.sha256 = createHash('sha256').update(file).digest('hex')
      const manifestOut = new TextEncoder().encode(JSON.stringify(manifest))
      const pieces: string[] = []
      for (let at = 0; at < file.byteLength; at += PIECE_BYTES) {
        pieces.push((await blocks.put(file.subarray(at, at + PIECE_BYTES))).toString())
      }
      const manifestCid = (await blocks.put(manifestOut)).toString()
      const configCid = (await blocks.put(config)).toString()
      const pkg: ModelPackage = {
        format: MODEL_PACKAGE_FORMAT,
        name: 'gpt',
        blocks: CONFIG.layers,
        context: CONFIG.context,
        width: CONFIG.width,
        manifest: { cid: manifestCid, bytes: manifestOut.byteLength },
        config: { cid: configCid, bytes: config.byteLength },
        weights: {
          bytes: file.byteLength,
          sha256: manifest.weights.sha256,
          pieceBytes: PIECE_BYTES,
          pieces,
        },
      }
      return (await blocks.put(new TextEncoder().encode(JSON.stringify(pkg)))).toString()
    }

    const goodConfig = new TextEncoder().encode(JSON.stringify(gptHuggingFaceConfig(CONFIG)))
    const header = (length: bigint) => {
      const file = weights.slice()
      new DataView(file.buffer).setBigUint64(0, length, true)
      return file
    }
    const cases: Array<[string, Uint8Array, Uint8Array, RegExp]> = [
      [
        'a config.json of another model than model.json',
        new TextEncoder().encode(JSON.stringify(gptHuggingFaceConfig({ ...CONFIG, heads: 4 }))),
        weights,
        /model\.json and config\.json are not one GPT's \(.*heads: 4 against 2/,
      ],
      [
        'a weights header length past the file',
        goodConfig,
        header(BigInt(weights.byteLength)),
        /weights do not fit its config\.json \(the header claims more bytes/,
      ],
      [
        'a weights header length past the limit',
        goodConfig,
        header(2n ** 40n),
        /weights do not fit its config\.json \(the header length \d+ exceeds the limit/,
      ],
      [
        'weights of another shape',
        goodConfig,
        (() => {
          const file = weights.slice()
          const text = new TextDecoder().decode(file)
          const at = text.indexOf('"shape":[16,48]')
          file.set(new TextEncoder().encode('"shape":[48,16]'), at)
          return file
        })(),
        /weights do not fit its config\.json \(h\.0\.attn\.c_attn\.weight has shape \[48, 16\]/,
      ],
    ]
    it.each(cases)('%s', async (_, config, file, message) => {
      const blocks = new LocalBlocks()
      const id = await lyingPackage(blocks, config, file)
      const refused = await refusal(
        fetchModel(id, blocks, await tempDir(), { parts: { span: { start: 1, end: 2 } } }),
      )
      expect(refused.code).toBe('malformed')
      expect(refused.message).toMatch(message)
    })
  })
})
