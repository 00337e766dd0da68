// The byte-level language-model corpus of the GPT model kind: the reStructuredText sources of the
// Linux 6.1 documentation as Debian's linux-doc-6.1 package installs them.
//
// Split (fixed; every peer computes it alone): every `*.txt` file under the source directory, sorted
// by its path relative to that directory (bytewise over the UTF-8 path, '/' separators), is a
// validation file when the first byte of SHA-256(relative path as UTF-8) is below
// VALIDATION_HASH_BYTE_LIMIT, else a training file. Each split is the concatenation of its files'
// bytes, each file followed by one 0x00 byte. With linux-doc-6.1 that gives the counts and SHA-256s
// of CORPUS_SPLITS.
//
// buildCorpus writes the two splits once into a cache directory (`training.bin`, `validation.bin`)
// and records their size, mtime and hash in `corpus.json`, so that later calls reuse them without
// reading the sources or hashing again (split files found without that record are hashed once and
// kept when they are the expected ones). ByteCorpus reads a split through a file descriptor and
// BatchSampler draws (input, target) windows from it: training never holds a copy of the split in
// memory.
import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { assertSeed, SeededRandom } from './random.js'

/** Where Debian's linux-doc-6.1 package installs the documentation sources. */
export const CORPUS_SOURCE_DIR_DEFAULT = '/usr/share/doc/linux-doc-6.1/html/_sources'
/** The Debian/Ubuntu package that provides CORPUS_SOURCE_DIR_DEFAULT. */
export const CORPUS_PACKAGE = 'linux-doc-6.1'
/** A file is in the validation split when SHA-256(relative path)[0] is below this (13/256 ≈ 5%). */
export const VALIDATION_HASH_BYTE_LIMIT = 13
/** The byte written after each file of a split. */
export const FILE_SEPARATOR = 0x00

export type CorpusSplitName = 'training' | 'validation'

export interface CorpusSplitDescription {
  /** number of source files in the split */
  readonly files: number
  /** size of the split: the files' bytes plus one separator per file */
  readonly bytes: number
  /** lowercase hex SHA-256 of the split's bytes */
  readonly sha256: string
}

/** The splits of linux-doc-6.1 under the rule above; buildCorpus checks its output against them. */
export const CORPUS_SPLITS: Readonly<Record<CorpusSplitName, CorpusSplitDescription>> = {
  training: {
    files: 3030,
    bytes: 23_273_214,
    sha256: '79ca5ad92bef83798b3b188ccabc2cb363a8ebc0f8806df744bc9c80797db5ed',
  },
  validation: {
    files: 153,
    bytes: 887_860,
    sha256: '160ba7e0978455884909cfc25f04ba593062a2c87d383c70b7d5465dc5ee9f5b',
  },
}

const SPLIT_NAMES: readonly CorpusSplitName[] = ['training', 'validation']
const STAMP_FILE = 'corpus.json'
const STAMP_VERSION = 1

/** The corpus cannot be built or read as asked: missing sources, a different package version. */
export class CorpusError extends Error {
  static override name = 'CorpusError'
  constructor(message: string) {
    super(message)
    this.name = 'CorpusError'
  }
}

export interface CorpusSplitFile extends CorpusSplitDescription {
  /** absolute path of the split's `.bin` file */
  readonly path: string
}

export interface CorpusFiles {
  readonly cacheDir: string
  readonly training: CorpusSplitFile
  readonly validation: CorpusSplitFile
  /** both splits equal CORPUS_SPLITS (false only with allowMismatch) */
  readonly matchesExpected: boolean
  /** the files were already in cacheDir and were not rebuilt */
  readonly reused: boolean
}

export interface BuildCorpusOptions {
  /** directory of the `*.txt` sources; CORPUS_SOURCE_DIR_DEFAULT when left out */
  sourceDir?: string
  /** where `training.bin`, `validation.bin` and `corpus.json` live (created if missing) */
  cacheDir: string
  /**
   * accept splits whose hash differs from CORPUS_SPLITS (another linux-doc version, or a test's own
   * sources) instead of refusing them; the result says so in `matchesExpected`
   */
  allowMismatch?: boolean
}

/**
 * `$SHARDNET_CORPUS_DIR` if set, else `$XDG_CACHE_HOME/shardnet/corpus/linux-doc-6.1`, else
 * `~/.cache/shardnet/corpus/linux-doc-6.1`.
 */
export function defaultCorpusCacheDir(): string {
  const explicit = process.env.SHARDNET_CORPUS_DIR
  if (explicit) return explicit
  const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), '.cache')
  return join(cacheHome, 'shardnet', 'corpus', CORPUS_PACKAGE)
}

/** Which split the file at `relativePath` (relative to the source directory, '/'-separated) is in. */
export function splitOfPath(relativePath: string): CorpusSplitName {
  const firstByte = createHash('sha256').update(relativePath, 'utf8').digest()[0]
  return firstByte < VALIDATION_HASH_BYTE_LIMIT ? 'validation' : 'training'
}

async function listTextFiles(root: string, relative: string, into: string[]): Promise<void> {
  const entries = await readdir(relative === '' ? root : join(root, relative), { withFileTypes: true })
  for (const entry of entries) {
    const path = relative === '' ? entry.name : `${relative}/${entry.name}`
    if (entry.isDirectory()) {
      await listTextFiles(root, path, into)
    } else if (entry.name.endsWith('.txt')) {
      // a symbolic link counts when it leads to a file (links to directories are not followed)
      if (entry.isFile() || (entry.isSymbolicLink() && (await stat(join(root, path))).isFile())) {
        into.push(path)
      }
    }
  }
}

/**
 * The relative paths of the sources of each split, in the order their bytes are concatenated.
 * Rejects with CorpusError when `sourceDir` is missing or holds no `*.txt` file.
 */
export async function listCorpusSources(
  sourceDir: string = CORPUS_SOURCE_DIR_DEFAULT,
): Promise<Record<CorpusSplitName, string[]>> {
  const missing = new CorpusError(
    `the corpus sources are not in ${sourceDir}: install ${CORPUS_PACKAGE} ` +
      `(sudo apt-get install ${CORPUS_PACKAGE}, or bash scripts/setup.sh)`,
  )
  const paths: string[] = []
  try {
    await listTextFiles(sourceDir, '', paths)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw missing
    throw error
  }
  if (paths.length === 0) throw missing
  const keyed = paths.map((path) => ({ path, key: Buffer.from(path, 'utf8') }))
  keyed.sort((a, b) => Buffer.compare(a.key, b.key))
  const splits: Record<CorpusSplitName, string[]> = { training: [], validation: [] }
  for (const { path } of keyed) splits[splitOfPath(path)].push(path)
  return splits
}

interface StampSplit {
  files: number
  bytes: number
  sha256: string
  mtimeMs: number
}

interface Stamp {
  version: number
  training: StampSplit
  validation: StampSplit
}

function matchesExpected(split: CorpusSplitName, description: CorpusSplitDescription): boolean {
  const expected = CORPUS_SPLITS[split]
  return (
    description.bytes === expected.bytes &&
    description.sha256 === expected.sha256 &&
    description.files === expected.files
  )
}

function mismatchError(split: CorpusSplitName, got: CorpusSplitDescription): CorpusError {
  const expected = CORPUS_SPLITS[split]
  return new CorpusError(
    `the ${split} split built from the sources has ${got.files} files, ${got.bytes} bytes and ` +
      `SHA-256 ${got.sha256}, not the ${expected.files} files, ${expected.bytes} bytes and ` +
      `${expected.sha256} of ${CORPUS_PACKAGE} (a different package version?); ` +
      'pass allowMismatch: true to use it anyway',
  )
}

async function readStamp(cacheDir: string): Promise<Stamp | undefined> {
  try {
    const stamp = JSON.parse(await readFile(join(cacheDir, STAMP_FILE), 'utf8')) as Stamp
    if (stamp?.version !== STAMP_VERSION) return undefined
    for (const split of SPLIT_NAMES) {
      const entry = stamp[split]
      if (
        typeof entry?.files !== 'number' ||
        typeof entry.bytes !== 'number' ||
        typeof entry.sha256 !== 'string' ||
        typeof entry.mtimeMs !== 'number'
      ) {
        return undefined
      }
    }
    return stamp
  } catch {
    return undefined
  }
}

/** The cached splits when the stamp describes the files on disk as they are (same size and mtime). */
async function reusable(cacheDir: string, allowMismatch: boolean): Promise<CorpusFiles | undefined> {
  const stamp = (await readStamp(cacheDir)) ?? (await adoptExpected(cacheDir))
  if (stamp === undefined) return undefined
  let allMatch = true
  for (const split of SPLIT_NAMES) {
    const entry = stamp[split]
    let info: Awaited<ReturnType<typeof stat>>
    try {
      info = await stat(join(cacheDir, `${split}.bin`))
    } catch {
      return undefined
    }
    if (info.size !== entry.bytes || info.mtimeMs !== entry.mtimeMs) return undefined
    if (!matchesExpected(split, entry)) {
      if (!allowMismatch) return undefined
      allMatch = false
    }
  }
  const describe = (split: CorpusSplitName): CorpusSplitFile => ({
    path: join(cacheDir, `${split}.bin`),
    files: stamp[split].files,
    bytes: stamp[split].bytes,
    sha256: stamp[split].sha256,
  })
  return {
    cacheDir,
    training: describe('training'),
    validation: describe('validation'),
    matchesExpected: allMatch,
    reused: true,
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  const handle = await open(path, 'r')
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer)
  } finally {
    await handle.close()
  }
  return hash.digest('hex')
}

/**
 * A stamp for split files already in `cacheDir` without one (e.g. copied from another machine):
 * when both have the expected size and hash, the stamp is written and they are kept.
 */
async function adoptExpected(cacheDir: string): Promise<Stamp | undefined> {
  const stamp: Stamp = { version: STAMP_VERSION } as Stamp
  for (const split of SPLIT_NAMES) {
    const path = join(cacheDir, `${split}.bin`)
    const expected = CORPUS_SPLITS[split]
    try {
      const info = await stat(path)
      if (info.size !== expected.bytes || (await hashFile(path)) !== expected.sha256) return undefined
      stamp[split] = { ...expected, mtimeMs: info.mtimeMs }
    } catch {
      return undefined
    }
  }
  await writeStamp(cacheDir, stamp)
  return stamp
}

async function writeStamp(cacheDir: string, stamp: Stamp): Promise<void> {
  const stampPath = join(cacheDir, STAMP_FILE)
  const stampTemporary = temporaryName(stampPath)
  try {
    const stampHandle = await open(stampTemporary, 'wx')
    try {
      await stampHandle.writeFile(`${JSON.stringify(stamp, null, 2)}\n`)
      await stampHandle.sync()
    } finally {
      await stampHandle.close()
    }
    await rename(stampTemporary, stampPath)
  } finally {
    await rm(stampTemporary, { force: true })
  }
}

function temporaryName(path: string): string {
  return `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`
}

/** Writes one split to `path` (a temporary name) and returns its description. */
async function writeSplit(
  sourceDir: string,
  sources: string[],
  path: string,
): Promise<CorpusSplitDescription> {
  const hash = createHash('sha256')
  const separator = Uint8Array.of(FILE_SEPARATOR)
  let bytes = 0
  let handle: FileHandle | undefined
  try {
    handle = await open(path, 'wx')
    for (const source of sources) {
      const content = await readFile(join(sourceDir, source))
      hash.update(content)
      hash.update(separator)
      await handle.writev([content, separator])
      bytes += content.length + 1
    }
    await handle.sync()
  } finally {
    await handle?.close()
  }
  return { files: sources.length, bytes, sha256: hash.digest('hex') }
}

/**
 * The training and validation splits as files in `cacheDir`, built from the sources on the first
 * call. Each file is written under a temporary name and renamed into place, then `corpus.json`
 * records its size, mtime and SHA-256: a later call whose files still have that size and mtime
 * reuses them without reading them. Rejects with CorpusError when the sources are missing or when a
 * built split differs from CORPUS_SPLITS (unless `allowMismatch`).
 */
export async function buildCorpus(options: BuildCorpusOptions): Promise<CorpusFiles> {
  const sourceDir = options.sourceDir ?? CORPUS_SOURCE_DIR_DEFAULT
  const { cacheDir } = options
  const allowMismatch = options.allowMismatch ?? false
  const cached = await reusable(cacheDir, allowMismatch)
  if (cached !== undefined) return cached

  const sources = await listCorpusSources(sourceDir)
  await mkdir(cacheDir, { recursive: true })
  const temporary: Partial<Record<CorpusSplitName, string>> = {}
  const built: Partial<Record<CorpusSplitName, CorpusSplitDescription>> = {}
  try {
    for (const split of SPLIT_NAMES) {
      const path = temporaryName(join(cacheDir, `${split}.bin`))
      temporary[split] = path
      built[split] = await writeSplit(sourceDir, sources[split], path)
    }
    let allMatch = true
    for (const split of SPLIT_NAMES) {
      const description = built[split] as CorpusSplitDescription
      if (!matchesExpected(split, description)) {
        if (!allowMismatch) throw mismatchError(split, description)
        allMatch = false
      }
    }
    const stamp: Stamp = { version: STAMP_VERSION } as Stamp
    const result: Partial<Record<CorpusSplitName, CorpusSplitFile>> = {}
    for (const split of SPLIT_NAMES) {
      const path = join(cacheDir, `${split}.bin`)
      await rename(temporary[split] as string, path)
      delete temporary[split]
      const description = built[split] as CorpusSplitDescription
      stamp[split] = { ...description, mtimeMs: (await stat(path)).mtimeMs }
      result[split] = { ...description, path }
    }
    await writeStamp(cacheDir, stamp)
    return {
      cacheDir,
      training: result.training as CorpusSplitFile,
      validation: result.validation as CorpusSplitFile,
      matchesExpected: allMatch,
      reused: false,
    }
  } finally {
    for (const path of Object.values(temporary)) await rm(path, { force: true })
  }
}

/** One split read through a file descriptor: reads go to the file (and the page cache), not to a copy. */
export class ByteCorpus {
  private fd: number | undefined

  private constructor(
    readonly path: string,
    fd: number,
    /** size of the split in bytes */
    readonly length: number,
  ) {
    this.fd = fd
  }

  static open(path: string): ByteCorpus {
    let fd: number
    try {
      fd = openSync(path, 'r')
    } catch (error) {
      throw new CorpusError(
        `cannot open corpus split ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      )
    }
    return new ByteCorpus(path, fd, fstatSync(fd).size)
  }

  /** Reads bytes [offset, offset + length) into `into[0, length)`; returns `into`. */
  read(offset: number, length: number, into: Uint8Array): Uint8Array {
    if (this.fd === undefined) throw new CorpusError(`corpus split ${this.path} is closed`)
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`offset and length must be non-negative integers, got ${offset} and ${length}`)
    }
    if (offset + length > this.length) {
      throw new RangeError(`bytes [${offset}, ${offset + length}) are past the end (${this.length})`)
    }
    if (length > into.length) throw new RangeError(`${length} bytes do not fit ${into.length}`)
    let done = 0
    while (done < length) {
      const got = readSync(this.fd, into, done, length - done, offset + done)
      if (got === 0) throw new CorpusError(`corpus split ${this.path} ended early (was it truncated?)`)
      done += got
    }
    return into
  }

  /** The whole split in memory (meant for the 0.9 MB validation split). */
  readAll(): Uint8Array {
    return this.read(0, this.length, new Uint8Array(this.length))
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }
}

export interface BatchSamplerOptions {
  /** task seed (unsigned 32-bit) */
  seed: number
  /** windows per batch (B) */
  batch: number
  /** bytes per window (T) */
  context: number
  /** which part of the split this sampler draws from, 0 <= shard < shards */
  shard: number
  /** number of contiguous parts the split is cut into */
  shards: number
}

export interface Batch {
  /** [B, T] row-major: the window's bytes 0..T-1, as float32 byte values */
  readonly inputs: Float32Array
  /** [B, T] row-major: the window's bytes 1..T (inputs shifted by one byte) */
  readonly targets: Float32Array
}

/**
 * Random (input, target) windows from one shard of a split. The split is cut into `shards`
 * contiguous parts, part k being bytes [floor(k*L/shards), floor((k+1)*L/shards)) (sizes differ by at
 * most one byte); a window of T+1 bytes always lies inside its part. The window starts of step s are
 * drawn, uniform over the part, from SeededRandom.stream(seed, `corpus:${shard}/${shards}:${s}`), so
 * the batch of any step is a pure function of (seed, shard, shards, step) and can be recomputed
 * without replaying earlier steps.
 */
export class BatchSampler {
  /** first byte of this sampler's part of the split */
  readonly shardStart: number
  /** one past the last byte of this sampler's part */
  readonly shardEnd: number
  private readonly window: Uint8Array

  constructor(
    private readonly corpus: ByteCorpus,
    private readonly options: BatchSamplerOptions,
  ) {
    const { batch, context, shard, shards } = options
    if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`batch must be >= 1, got ${batch}`)
    if (!Number.isInteger(context) || context < 1) {
      throw new RangeError(`context must be >= 1, got ${context}`)
    }
    if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`shards must be >= 1, got ${shards}`)
    if (!Number.isInteger(shard) || shard < 0 || shard >= shards) {
      throw new RangeError(`shard must be in [0, ${shards - 1}], got ${shard}`)
    }
    assertSeed(options.seed)
    this.shardStart = Math.floor((shard * corpus.length) / shards)
    this.shardEnd = Math.floor(((shard + 1) * corpus.length) / shards)
    if (this.shardEnd - this.shardStart < context + 1) {
      throw new CorpusError(
        `shard ${shard} of ${shards} holds ${this.shardEnd - this.shardStart} bytes, fewer than one ` +
          `window of context + 1 = ${context + 1}`,
      )
    }
    this.window = new Uint8Array(context + 1)
  }

  /** The offsets in the split of the B windows of `step`, in batch order. */
  windowStarts(step: number): number[] {
    if (!Number.isInteger(step) || step < 0) throw new RangeError(`step must be >= 0, got ${step}`)
    const { seed, batch, context, shard, shards } = this.options
    const random = SeededRandom.stream(seed, `corpus:${shard}/${shards}:${step}`)
    const last = this.shardEnd - (context + 1)
    const starts: number[] = []
    for (let b = 0; b < batch; b++) starts.push(random.int(this.shardStart, last))
    return starts
  }

  /** The batch of `step`. Each call returns new arrays (callers may keep or transfer them). */
  batchAt(step: number): Batch {
    const { batch, context } = this.options
    const inputs = new Float32Array(batch * context)
    const targets = new Float32Array(batch * context)
    const window = this.window
    const starts = this.windowStarts(step)
    for (let b = 0; b < batch; b++) {
      this.corpus.read(starts[b], context + 1, window)
      const row = b * context
      for (let t = 0; t < context; t++) {
        inputs[row + t] = window[t]
        targets[row + t] = window[t + 1]
      }
    }
    return { inputs, targets }
  }
}
