// Proves a model's content id names exactly its files: the same directory always gives the same id (a
// copy elsewhere too, another weight or another piece size does not), a published model fetched by its id
// is the same model to loadGpt (weights split into several pieces), a fetched model is reused from the
// cache without asking the network, and a bad package (not JSON, oversized, weights that do not match its
// sha256, a model.json that describes another model, wrong sizes, missing blocks, not a model id) is refused
// with a clear ModelPackageError and leaves nothing in the cache. The blocks here come from an in-memory
// store that checks every CID, as the blocks protocol does; the packages that lie are the adversary's.
import { cp, mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { gptParameterCount, initializeGpt } from '../../../kernels/models/gpt/config.js'
import { loadGpt, ModelFilesError, saveGptModel } from '../../../node/executor/model-files.js'
import {
  fetchModel,
  MODEL_PACKAGE_BYTES_MAX,
  MODEL_PACKAGE_FORMAT,
  type ModelPackage,
  ModelPackageError,
  modelIdOfDirectory,
  parseModelPackage,
  publishModel,
  WEIGHTS_PIECES_MAX,
} from '../../../node/serving/model-package.js'
import {
  BlockNotFoundError,
  type GetOptions,
  MemoryBlockStore,
  type PutOptions,
} from '../../../protocols/blocks/index.js'
import { gptManifest } from '../models/gpt-fixtures.js'

const CONFIG = { vocabSize: 256, context: 16, width: 16, layers: 3, heads: 2, layerNormEpsilon: 1e-5 }
const MANIFEST = gptManifest(1)
// the tiny model's weights are about 45 KB: pieces of 8 KiB make six of them
const PIECE_BYTES = 8192

/** Blocks in memory, each put and get checked against its CID like the blocks protocol does. */
class LocalBlocks {
  readonly store = new MemoryBlockStore()
  gets = 0
  provides = 0
  async put(bytes: Uint8Array, options: PutOptions = {}): Promise<CID> {
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    await this.store.put(cid, bytes)
    if (options.provide === true) this.provides++
    return cid
  }
  async get(cid: CID, _options: GetOptions = {}): Promise<Uint8Array> {
    this.gets++
    const bytes = await this.store.get(cid)
    if (bytes === undefined) throw new BlockNotFoundError(`no peer delivered ${cid}`)
    const digest = await sha256.digest(bytes)
    if (!cid.multihash.bytes.every((b, i) => b === digest.bytes[i])) throw new Error('hash mismatch')
    return bytes
  }
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'shardnet-package-'))
}

async function modelDir(seed = 1): Promise<string> {
  const directory = join(await tempDir(), 'model')
  await saveGptModel(directory, CONFIG, initializeGpt(CONFIG, seed), MANIFEST)
  return directory
}

/** Publishes `pkg` as a package block beside the blocks already in `blocks`; returns its id. */
async function publishPackage(blocks: LocalBlocks, pkg: unknown): Promise<string> {
  return (await blocks.put(new TextEncoder().encode(JSON.stringify(pkg)))).toString()
}

/** The CID of a block nobody stored. */
async function absentCid(): Promise<string> {
  return CID.createV1(raw.code, await sha256.digest(new Uint8Array([9]))).toString()
}

async function refusal(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(ModelPackageError)
    return { code: (error as ModelPackageError).code, message: (error as Error).message }
  }
  throw new Error('expected a ModelPackageError')
}

describe('model packages', () => {
  it('give a directory one id: the same for a copy, another for other weights or pieces', async () => {
    const directory = await modelDir()
    const id = await modelIdOfDirectory(directory)
    expect(id).toMatch(/^b[a-z2-7]+$/)
    expect(CID.parse(id).code).toBe(raw.code)
    expect(await modelIdOfDirectory(directory)).toBe(id)
    const copy = join(await tempDir(), 'copy')
    await cp(directory, copy, { recursive: true })
    expect(await modelIdOfDirectory(copy)).toBe(id)
    expect(await modelIdOfDirectory(await modelDir(2))).not.toBe(id)
    expect(await modelIdOfDirectory(directory, { pieceBytes: PIECE_BYTES })).not.toBe(id)
  })

  it('round-trip: published, fetched by id in pieces, the same model to loadGpt', async () => {
    const directory = await modelDir()
    const blocks = new LocalBlocks()
    const published = await publishModel(directory, blocks, { pieceBytes: PIECE_BYTES })
    expect(published.modelId).toBe(await modelIdOfDirectory(directory, { pieceBytes: PIECE_BYTES }))
    expect(published.package.weights.pieces.length).toBe(
      Math.ceil(published.package.weights.bytes / PIECE_BYTES),
    )
    expect(published.package.weights.pieces.length).toBeGreaterThan(3)
    expect(published.package).toMatchObject({ name: 'gpt', blocks: 3, context: 16, width: 16 })
    expect(published.provided).toBe(true)
    expect(blocks.provides).toBe(published.blockCount)

    const cache = await tempDir()
    const fetched = await fetchModel(published.modelId, blocks, cache)
    expect(fetched).toBe(join(cache, published.modelId))
    const original = await loadGpt(directory)
    const copy = await loadGpt(fetched)
    expect(copy.config).toEqual(original.config)
    expect(Buffer.from(copy.params.buffer).equals(Buffer.from(original.params.buffer))).toBe(true)
    expect(copy.params.length).toBe(gptParameterCount(CONFIG))
    expect(await modelIdOfDirectory(fetched, { pieceBytes: PIECE_BYTES })).toBe(published.modelId)

    // the cache answers without a single block request, even with no blocks anywhere
    const empty = new LocalBlocks()
    expect(await fetchModel(published.modelId, empty, cache)).toBe(fetched)
    expect(empty.gets).toBe(0)
    // two fetches at once share one
    const other = await tempDir()
    const [a, b] = await Promise.all([
      fetchModel(published.modelId, blocks, other),
      fetchModel(published.modelId, blocks, other),
    ])
    expect(a).toBe(b)
    expect((await readdir(other)).sort()).toEqual([published.modelId])
  })

  it('refuse a directory that is not a GPT model or holds a NaN, and pieces too many', async () => {
    const empty = await tempDir()
    await expect(modelIdOfDirectory(empty)).rejects.toBeInstanceOf(ModelFilesError)
    await expect(modelIdOfDirectory(join(empty, 'missing'))).rejects.toThrow(/model\.json is missing/)
    await expect(modelIdOfDirectory(await modelDir(), { pieceBytes: 16 })).rejects.toThrow(
      new RegExp(`more than ${WEIGHTS_PIECES_MAX} pieces`),
    )
    // every tensor is checked as loadGpt checks it, though read a block at a time
    const poisoned = initializeGpt(CONFIG, 1)
    poisoned[poisoned.length - 100] = Number.NaN
    const nan = join(await tempDir(), 'nan')
    await saveGptModel(nan, CONFIG, poisoned, MANIFEST)
    await expect(publishModel(nan, new LocalBlocks())).rejects.toThrow(
      /h\.2\.[a-z_.]+ holds a non-finite value/,
    )
  })

  describe('refuse bad packages with a clear error and no model cached', async () => {
    const directory = await modelDir()
    const blocks = new LocalBlocks()
    const published = await publishModel(directory, blocks, { pieceBytes: PIECE_BYTES })
    const good: ModelPackage = published.package
    const other = await publishModel(await modelDir(3), blocks, { pieceBytes: PIECE_BYTES })

    const cases: Array<[string, () => Promise<string>, string, RegExp]> = [
      ['a model id that is not a CID', async () => 'my-model', 'bad-id', /is not a model id/],
      ['a model id no peer has', absentCid, 'not-found', /no peer delivered the model package/],
      [
        'a package that is not JSON',
        async () => (await blocks.put(new TextEncoder().encode('{"format":'))).toString(),
        'malformed',
        /not valid JSON/,
      ],
      [
        'a package of another format',
        () => publishPackage(blocks, { ...good, format: 'other/1' }),
        'malformed',
        /not a shardnet model package \(format/,
      ],
      [
        'a package over its size limit',
        async () => (await blocks.put(new Uint8Array(MODEL_PACKAGE_BYTES_MAX + 1).fill(32))).toString(),
        'oversized',
        /above the 65536 limit/,
      ],
      [
        'weights that do not match the sha256',
        () => publishPackage(blocks, { ...good, weights: { ...good.weights, sha256: 'a'.repeat(64) } }),
        'malformed',
        /model\.json does not describe/,
      ],
      [
        'pieces of another model under this sha256 and model.json',
        () =>
          publishPackage(blocks, {
            ...good,
            weights: { ...good.weights, pieces: other.package.weights.pieces },
          }),
        'hash-mismatch',
        /do not match the sha256/,
      ],
      [
        'a model.json of another model',
        () => publishPackage(blocks, { ...good, manifest: other.package.manifest }),
        'malformed',
        /does not describe the GPT/,
      ],
      [
        'a config.json size that is wrong',
        () => publishPackage(blocks, { ...good, config: { ...good.config, bytes: good.config.bytes + 1 } }),
        'malformed',
        /config\.json is \d+ bytes where the model package says/,
      ],
      [
        'weights past the size limit',
        () =>
          publishPackage(blocks, {
            ...good,
            weights: { ...good.weights, bytes: 2 ** 36, pieceBytes: 2 ** 26 },
          }),
        'oversized',
        /bytes of weights/,
      ],
      [
        'a piece count that does not fit the size',
        () =>
          publishPackage(blocks, {
            ...good,
            weights: { ...good.weights, pieces: good.weights.pieces.slice(1) },
          }),
        'malformed',
        /weights pieces for/,
      ],
      [
        'a piece no peer has',
        async () =>
          publishPackage(blocks, {
            ...good,
            weights: {
              ...good.weights,
              pieces: [...good.weights.pieces.slice(0, -1), await absentCid()],
            },
          }),
        'not-found',
        /no peer delivered the weights piece/,
      ],
    ]
    it.each(cases)('%s', async (_, idOf, code, message) => {
      const cache = await tempDir()
      const refused = await refusal(fetchModel(await idOf(), blocks, cache))
      expect(refused.code).toBe(code)
      expect(refused.message).toMatch(message)
      // no model is cached: a piece no peer has leaves the verified pieces of its partial folder (a later
      // fetch reuses them), which a fetch from nowhere still cannot complete
      const left = await readdir(cache).catch(() => [])
      expect(left).toEqual(code === 'not-found' && left.length > 0 ? [await idOf()] : [])
      if (left.length > 0) {
        expect((await refusal(fetchModel(left[0], new LocalBlocks(), cache))).code).toBe('not-found')
      }
    })
  })

  it('parseModelPackage accepts what publishModel wrote and nothing with extra keys', async () => {
    const blocks = new LocalBlocks()
    const { package: pkg } = await publishModel(await modelDir(), blocks)
    expect(pkg.format).toBe(MODEL_PACKAGE_FORMAT)
    const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))
    expect(parseModelPackage(encode(pkg))).toEqual(pkg)
    expect(() => parseModelPackage(encode({ ...pkg, extra: 1 }))).toThrow(ModelPackageError)
  })

  it('a cache folder that holds another package is fetched again, not trusted', async () => {
    const blocks = new LocalBlocks()
    const published = await publishModel(await modelDir(), blocks)
    const cache = await tempDir()
    await mkdir(join(cache, published.modelId))
    await writeFile(join(cache, published.modelId, 'package.json'), '{}')
    const refused = await refusal(fetchModel(published.modelId, new LocalBlocks(), cache))
    expect(refused.code).toBe('not-found')
    const fetched = await fetchModel(published.modelId, blocks, cache)
    expect((await loadGpt(fetched)).config).toEqual(CONFIG)
  })
})
