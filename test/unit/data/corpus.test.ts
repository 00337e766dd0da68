// Proves the corpus split rule on the installed linux-doc-6.1 (exact file counts, sizes and SHA-256s
// of both splits), the rule itself on a hand-made source tree (sha256-first-byte test, bytewise path
// order, 0x00 after each file), that building is idempotent and leaves no partial file, and that
// BatchSampler's batches are deterministic per step, stay inside their shard and have targets equal
// to the inputs shifted by one byte.
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BatchSampler,
  ByteCorpus,
  buildCorpus,
  CORPUS_SOURCE_DIR_DEFAULT,
  CORPUS_SPLITS,
  CorpusError,
  defaultCorpusCacheDir,
  listCorpusSources,
} from '../../../kernels/data/corpus.js'

const sha256 = (data: Uint8Array | string): Buffer => createHash('sha256').update(data).digest()

let scratch: string
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'shardnet-corpus-'))
})
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true })
})

describe('the linux-doc-6.1 corpus', () => {
  it('splits into exactly the expected training and validation bytes', async () => {
    const cacheDir = join(scratch, 'real')
    const files = await buildCorpus({ cacheDir })
    expect(files.matchesExpected).toBe(true)
    expect(files.reused).toBe(false)
    for (const split of ['training', 'validation'] as const) {
      const bytes = await readFile(files[split].path)
      // independent of the builder's own bookkeeping: size and hash of the file on disk
      expect(bytes.length).toBe(CORPUS_SPLITS[split].bytes)
      expect(sha256(bytes).toString('hex')).toBe(CORPUS_SPLITS[split].sha256)
      expect(files[split].files).toBe(CORPUS_SPLITS[split].files)
    }
    expect(CORPUS_SPLITS.training).toEqual({
      files: 3030,
      bytes: 23_273_214,
      sha256: '79ca5ad92bef83798b3b188ccabc2cb363a8ebc0f8806df744bc9c80797db5ed',
    })
    expect(CORPUS_SPLITS.validation).toEqual({
      files: 153,
      bytes: 887_860,
      sha256: '160ba7e0978455884909cfc25f04ba593062a2c87d383c70b7d5465dc5ee9f5b',
    })
    // a second call reuses the files without rewriting them
    const before = await stat(files.training.path)
    const again = await buildCorpus({ cacheDir })
    expect(again.reused).toBe(true)
    expect(again.training).toEqual(files.training)
    expect((await stat(files.training.path)).mtimeMs).toBe(before.mtimeMs)
  })

  it('adopts split files copied without their record once their hash is checked', async () => {
    const cacheDir = join(scratch, 'real')
    await rm(join(cacheDir, 'corpus.json'))
    const adopted = await buildCorpus({ cacheDir, sourceDir: join(scratch, 'no-sources-here') })
    expect(adopted.reused).toBe(true)
    expect(adopted.matchesExpected).toBe(true)
    expect(existsSync(join(cacheDir, 'corpus.json'))).toBe(true)
  })

  it('lists the sources under the default directory', async () => {
    const sources = await listCorpusSources(CORPUS_SOURCE_DIR_DEFAULT)
    expect(sources.training.length).toBe(3030)
    expect(sources.validation.length).toBe(153)
  })
})

describe('defaultCorpusCacheDir', () => {
  it('takes SHARDNET_CORPUS_DIR, then XDG_CACHE_HOME', () => {
    const saved = { dir: process.env.SHARDNET_CORPUS_DIR, xdg: process.env.XDG_CACHE_HOME }
    try {
      process.env.SHARDNET_CORPUS_DIR = '/x/corpus'
      expect(defaultCorpusCacheDir()).toBe('/x/corpus')
      delete process.env.SHARDNET_CORPUS_DIR
      process.env.XDG_CACHE_HOME = '/y/cache'
      expect(defaultCorpusCacheDir()).toBe('/y/cache/shardnet/corpus/linux-doc-6.1')
      delete process.env.XDG_CACHE_HOME
      expect(defaultCorpusCacheDir()).toMatch(/\/\.cache\/shardnet\/corpus\/linux-doc-6\.1$/)
    } finally {
      if (saved.dir === undefined) delete process.env.SHARDNET_CORPUS_DIR
      else process.env.SHARDNET_CORPUS_DIR = saved.dir
      if (saved.xdg === undefined) delete process.env.XDG_CACHE_HOME
      else process.env.XDG_CACHE_HOME = saved.xdg
    }
  })
})

describe('the split rule on a hand-made source tree', () => {
  // names chosen so that both splits get files (first byte of sha256 of the relative path):
  const firstByte = (path: string) => sha256(path)[0]
  let sourceDir: string
  const contents = new Map<string, string>()

  beforeAll(async () => {
    sourceDir = join(scratch, 'fake-sources')
    // search a few names for ones whose hash sends them to validation (first byte < 13)
    const names: string[] = []
    for (let i = 0; names.filter((n) => firstByte(n) < 13).length < 2; i++) names.push(`v/doc${i}.txt`)
    for (const name of ['B.txt', 'a.txt', 'a/b.txt', 'a-b.txt', 'z/é.txt', 'Z.txt']) names.push(name)
    for (const [i, name] of names.entries()) {
      contents.set(name, `file ${name} #${i}\n${'x'.repeat(i)}`)
    }
    for (const [name, text] of contents) {
      await mkdir(join(sourceDir, name, '..'), { recursive: true })
      await writeFile(join(sourceDir, name), text)
    }
    // not sources: other extensions
    await writeFile(join(sourceDir, 'a', 'ignored.rst'), 'no')
    await writeFile(join(sourceDir, 'ignored.txt.orig'), 'no')
  })

  it('concatenates the files of each split in bytewise path order, each followed by 0x00', async () => {
    // by hand: sort UTF-8 paths bytewise ('-' 0x2d < '.' 0x2e < '/' 0x2f < 'B' < 'Z' < 'a' < 'z')
    const sorted = [...contents.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    expect(sorted.indexOf('a-b.txt')).toBeLessThan(sorted.indexOf('a.txt'))
    expect(sorted.indexOf('a.txt')).toBeLessThan(sorted.indexOf('a/b.txt'))
    expect(sorted.indexOf('Z.txt')).toBeLessThan(sorted.indexOf('a.txt'))
    const expected = { training: [] as Buffer[], validation: [] as Buffer[] }
    for (const name of sorted) {
      const split = firstByte(name) < 13 ? 'validation' : 'training'
      expected[split].push(Buffer.from(contents.get(name) as string), Buffer.of(0))
    }
    expect(expected.validation.length).toBeGreaterThanOrEqual(4)

    const cacheDir = join(scratch, 'fake-cache')
    const files = await buildCorpus({ sourceDir, cacheDir, allowMismatch: true })
    expect(files.matchesExpected).toBe(false)
    for (const split of ['training', 'validation'] as const) {
      const want = Buffer.concat(expected[split])
      const got = await readFile(files[split].path)
      expect(got.equals(want)).toBe(true)
      expect(files[split].bytes).toBe(want.length)
      expect(files[split].sha256).toBe(sha256(want).toString('hex'))
      expect(files[split].files).toBe(expected[split].length / 2)
    }
  })

  it('builds once, atomically: the second call reuses, no temporary file is left', async () => {
    const cacheDir = join(scratch, 'fake-idempotent')
    const first = await buildCorpus({ sourceDir, cacheDir, allowMismatch: true })
    const firstBytes = await readFile(first.training.path)
    const second = await buildCorpus({ sourceDir, cacheDir, allowMismatch: true })
    expect(second.reused).toBe(true)
    expect(second.training).toEqual(first.training)
    expect(second.validation).toEqual(first.validation)
    expect((await readFile(second.training.path)).equals(firstBytes)).toBe(true)
    expect((await readdir(cacheDir)).sort()).toEqual(['corpus.json', 'training.bin', 'validation.bin'])
    // a split file changed behind the record's back is rebuilt, not trusted
    await writeFile(first.training.path, 'truncated')
    const third = await buildCorpus({ sourceDir, cacheDir, allowMismatch: true })
    expect(third.reused).toBe(false)
    expect((await readFile(third.training.path)).equals(firstBytes)).toBe(true)
  })

  it('refuses splits that differ from the expected ones unless allowMismatch, writing nothing', async () => {
    const cacheDir = join(scratch, 'fake-refused')
    const refusal = buildCorpus({ sourceDir, cacheDir })
    await expect(refusal).rejects.toBeInstanceOf(CorpusError)
    await expect(refusal).rejects.toThrow(/different package version/)
    // the temporary files are removed and nothing took the final names
    expect(await readdir(cacheDir)).toEqual([])
    // files built with allowMismatch are not reused by a call that does not allow it
    await buildCorpus({ sourceDir, cacheDir, allowMismatch: true })
    await expect(buildCorpus({ sourceDir, cacheDir })).rejects.toBeInstanceOf(CorpusError)
  })

  it('refuses a missing source directory with a CorpusError naming the package', async () => {
    const refusal = buildCorpus({ sourceDir: join(scratch, 'nowhere'), cacheDir: join(scratch, 'c') })
    await expect(refusal).rejects.toBeInstanceOf(CorpusError)
    await expect(refusal).rejects.toThrow(/apt-get install linux-doc-6\.1.*scripts\/setup\.sh/)
    const empty = join(scratch, 'empty-sources')
    await mkdir(empty)
    await expect(buildCorpus({ sourceDir: empty, cacheDir: join(scratch, 'c') })).rejects.toBeInstanceOf(
      CorpusError,
    )
  })
})

describe('ByteCorpus and BatchSampler', () => {
  let corpusPath: string
  let bytes: Uint8Array
  let corpus: ByteCorpus

  beforeAll(async () => {
    // 10,007 pseudo-random bytes: every window is distinct, so a wrong offset shows
    bytes = new Uint8Array(10_007)
    let state = 12345
    for (let i = 0; i < bytes.length; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0
      bytes[i] = state >>> 24
    }
    corpusPath = join(scratch, 'sampler.bin')
    await writeFile(corpusPath, bytes)
    corpus = ByteCorpus.open(corpusPath)
  })
  afterAll(() => corpus.close())

  it('reads ranges of the file and the whole file', () => {
    expect(corpus.length).toBe(bytes.length)
    const into = new Uint8Array(100)
    expect(corpus.read(5000, 100, into)).toEqual(bytes.subarray(5000, 5100))
    expect(corpus.readAll()).toEqual(bytes)
    expect(() => corpus.read(bytes.length - 10, 11, into)).toThrow(RangeError)
    expect(() => ByteCorpus.open(join(scratch, 'missing.bin'))).toThrow(CorpusError)
  })

  it('gives the same batch for the same step, from any sampler, in any order', () => {
    const options = { seed: 7, batch: 4, context: 16, shard: 1, shards: 3 }
    const a = new BatchSampler(corpus, options)
    const b = new BatchSampler(corpus, options)
    const step5 = a.batchAt(5)
    a.batchAt(0)
    expect(b.batchAt(5)).toEqual(step5)
    expect(a.batchAt(5)).toEqual(step5)
    expect(a.batchAt(6).inputs).not.toEqual(step5.inputs)
    expect(new BatchSampler(corpus, { ...options, seed: 8 }).batchAt(5).inputs).not.toEqual(step5.inputs)
    expect(new BatchSampler(corpus, { ...options, shard: 2 }).batchAt(5).inputs).not.toEqual(step5.inputs)
  })

  it('takes each window from the file at its start; targets are the inputs shifted by one', () => {
    const sampler = new BatchSampler(corpus, { seed: 3, batch: 8, context: 32, shard: 0, shards: 1 })
    for (const step of [0, 1, 99]) {
      const starts = sampler.windowStarts(step)
      const { inputs, targets } = sampler.batchAt(step)
      expect(inputs.length).toBe(8 * 32)
      for (let b = 0; b < 8; b++) {
        const window = bytes.subarray(starts[b], starts[b] + 33)
        expect(Array.from(inputs.subarray(b * 32, b * 32 + 32))).toEqual(Array.from(window.subarray(0, 32)))
        expect(Array.from(targets.subarray(b * 32, b * 32 + 32))).toEqual(Array.from(window.subarray(1)))
        // shifted: target t is input t + 1 within the row
        for (let t = 0; t < 31; t++) expect(targets[b * 32 + t]).toBe(inputs[b * 32 + t + 1])
      }
    }
  })

  it('keeps every window inside its shard and covers the shard', () => {
    const shards = 4
    const context = 50
    let previousEnd = 0
    for (let shard = 0; shard < shards; shard++) {
      const sampler = new BatchSampler(corpus, { seed: 11, batch: 64, context, shard, shards })
      // contiguous parts of sizes differing by at most one, covering the split
      expect(sampler.shardStart).toBe(previousEnd)
      expect(sampler.shardEnd).toBe(Math.floor(((shard + 1) * bytes.length) / shards))
      previousEnd = sampler.shardEnd
      let lowest = Number.POSITIVE_INFINITY
      let highest = 0
      for (let step = 0; step < 200; step++) {
        for (const start of sampler.windowStarts(step)) {
          expect(start).toBeGreaterThanOrEqual(sampler.shardStart)
          expect(start + context + 1).toBeLessThanOrEqual(sampler.shardEnd)
          lowest = Math.min(lowest, start)
          highest = Math.max(highest, start)
        }
      }
      // 12,800 uniform draws over ~2,450 starts reach both ends' neighbourhood
      expect(lowest - sampler.shardStart).toBeLessThan(10)
      expect(sampler.shardEnd - context - 1 - highest).toBeLessThan(10)
    }
    expect(previousEnd).toBe(bytes.length)
  })

  it('refuses shards too small for one window and out-of-range options', () => {
    expect(() => new BatchSampler(corpus, { seed: 1, batch: 1, context: 6000, shard: 0, shards: 2 })).toThrow(
      CorpusError,
    )
    expect(() => new BatchSampler(corpus, { seed: 1, batch: 1, context: 8, shard: 2, shards: 2 })).toThrow(
      RangeError,
    )
    expect(() => new BatchSampler(corpus, { seed: -1, batch: 1, context: 8, shard: 0, shards: 2 })).toThrow(
      RangeError,
    )
  })
})
