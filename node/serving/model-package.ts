// A model's content id, and its files over the blocks protocol. A model directory (model.json,
// config.json, model.safetensors: what node/executor/model-files.ts saveGptModel writes) is published as
// blocks: model.json, config.json, and the weights split into pieces of at most pieceBytes, each a raw
// block; then a small JSON block, the package, names them all with their sizes, the weights' sha256 and
// the model's shape. The package block's CID string is the model id: the same directory always gives the
// same id, and every byte fetched by it is verified (each block against its CID, the whole weights file
// against the package's sha256, the package against model.json). A model may be fetched in part: only the
// pieces a span of blocks or the ends need (fetchModel's `parts`; the cache's layout is described there).
import { createHash, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { z } from 'zod'
import { GptCheckpointError } from '../../kernels/models/gpt/checkpoint.js'
import type { GptConfig } from '../../kernels/models/gpt/config.js'
import { SafetensorsError } from '../../kernels/models/safetensors.js'
import { type BlockExchange, BlockNotFoundError } from '../../protocols/blocks/index.js'
import { BLOCK_BYTES_MAX, isModelId } from '../../protocols/wire/validation/index.js'
import {
  type GptParts,
  type GptWeightsHeader,
  gptPartRanges,
  PRESENT_PIECES_FILE,
  PRESENT_PIECES_FORMAT,
  type PresentPieces,
  parseGptWeightsHeader,
  piecesOfRange,
  readGptParts,
  readPresentPieces,
  weightsHeaderLength,
} from '../executor/gpt-tensors.js'
import {
  CONFIG_FILE,
  MANIFEST_FILE,
  ModelFilesError,
  readGptManifestAndConfig,
  WEIGHTS_FILE,
} from '../executor/model-files.js'
import { ensureDurableFolder, syncFolder, writeFileAtomic } from '../store/atomic-file.js'

export const MODEL_PACKAGE_FORMAT = 'shardnet-model-package/1'
/** The package block's name in a fetched model's folder (beside the model's own files). */
export const MODEL_PACKAGE_FILE = 'package.json'
/** Largest package block accepted (a package of WEIGHTS_PIECES_MAX pieces is about 32 KiB). */
export const MODEL_PACKAGE_BYTES_MAX = 64 * 1024
/** Bytes per weights piece when the publisher does not say (a quarter of the blocks protocol's limit). */
export const WEIGHTS_PIECE_BYTES_DEFAULT = 64 * 1024 * 1024
/** Largest weights piece: one block of the blocks protocol. */
export const WEIGHTS_PIECE_BYTES_MAX = BLOCK_BYTES_MAX
/** Most weights pieces one package names. */
export const WEIGHTS_PIECES_MAX = 512
/**
 * Largest weights a package names: 512 pieces of the default size. Above loadGpt's WEIGHTS_BYTES_MAX:
 * a model too big for one peer is only ever read in parts (node/executor/gpt-tensors.ts).
 */
export const MODEL_WEIGHTS_BYTES_MAX = WEIGHTS_PIECES_MAX * WEIGHTS_PIECE_BYTES_DEFAULT
/** Blocks publishModel provides in the DHT at once (each a piece read from the file). */
const PROVIDES_AT_ONCE = 4
/** Largest model.json accepted (its history grows with training steps). */
export const MANIFEST_BYTES_MAX = 4 * 1024 * 1024
/** Largest config.json accepted. */
export const CONFIG_BYTES_MAX = 64 * 1024
/** A model's name in its package, at most this long. */
export const MODEL_NAME_LENGTH_MAX = 128

/** A model package or model id that cannot be used; the message is one sentence for the user. */
export class ModelPackageError extends Error {
  static override name = 'ModelPackageError'
  /**
   * bad-id: not a model id; not-found: no peer delivered a block of it; malformed: the package is not one,
   * or its files disagree with it; oversized: past a limit above; hash-mismatch: the weights' sha256 differs
   */
  readonly code: 'bad-id' | 'not-found' | 'malformed' | 'oversized' | 'hash-mismatch'
  constructor(code: ModelPackageError['code'], message: string) {
    super(message)
    this.name = 'ModelPackageError'
    this.code = code
  }
}

const cidString = z.string().refine((text) => isModelId(text) && CID.parse(text).code === raw.code, {
  message: 'is not a CIDv1 raw sha2-256 string',
})
const fileSchema = z.strictObject({ cid: cidString, bytes: z.number().int().nonnegative() })

const packageSchema = z.strictObject({
  format: z.literal(MODEL_PACKAGE_FORMAT),
  name: z.string().max(MODEL_NAME_LENGTH_MAX),
  /** the GPT's block count L, context C and width D (as model.json says) */
  blocks: z.number().int().positive(),
  context: z.number().int().positive(),
  width: z.number().int().positive(),
  manifest: fileSchema,
  config: fileSchema,
  weights: z.strictObject({
    bytes: z.number().int().positive(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    pieceBytes: z.number().int().positive(),
    pieces: z.array(cidString).min(1).max(WEIGHTS_PIECES_MAX),
  }),
})

/** The package block, parsed: what a model id names. */
export type ModelPackage = z.infer<typeof packageSchema>

export interface ModelPackageOptions {
  /** bytes per weights piece (part of the model id: the same files cut otherwise have another id) */
  pieceBytes?: number
}

interface PreparedModel {
  modelId: string
  packageBytes: Uint8Array
  package: ModelPackage
  manifest: Uint8Array
  config: Uint8Array
}

function cidOf(bytes: Uint8Array): CID {
  const digest = createHash('sha256').update(bytes).digest()
  return CID.createV1(raw.code, Digest.create(sha256.code, digest))
}

function checkPieceBytes(pieceBytes: number, weightsBytes: number): void {
  if (!Number.isInteger(pieceBytes) || pieceBytes < 1 || pieceBytes > WEIGHTS_PIECE_BYTES_MAX) {
    throw new RangeError(`pieceBytes must be an integer from 1 to ${WEIGHTS_PIECE_BYTES_MAX}`)
  }
  if (Math.ceil(weightsBytes / pieceBytes) > WEIGHTS_PIECES_MAX) {
    throw new RangeError(
      `pieces of ${pieceBytes} bytes cut ${weightsBytes} bytes of weights into more than ` +
        `${WEIGHTS_PIECES_MAX} pieces`,
    )
  }
}

/** The weights file of a model directory, open for positional reads of its pieces. */
async function openWeights(directory: string): Promise<FileHandle> {
  try {
    return await open(join(directory, WEIGHTS_FILE), 'r')
  } catch (error) {
    throw new ModelFilesError(
      `cannot read ${join(directory, WEIGHTS_FILE)}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    )
  }
}

/** Piece `index` of a weights file of `bytes` bytes cut in pieces of `pieceBytes`. */
async function readPiece(
  handle: FileHandle,
  index: number,
  pieceBytes: number,
  bytes: number,
): Promise<Uint8Array> {
  const length = Math.min(pieceBytes, bytes - index * pieceBytes)
  const piece = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await handle.read(piece, done, length - done, index * pieceBytes + done)
    if (bytesRead === 0) throw new ModelFilesError('the weights file shrank while it was read')
    done += bytesRead
  }
  return piece
}

/**
 * Reads and checks a GPT model directory (ModelFilesError if it is not one) and builds its package,
 * holding no more than one block's tensors or one weights piece at a time: every tensor is checked as
 * loadGpt checks it (header, shapes, NaN/Inf), a block at a time, and the sha256 against model.json.
 */
async function prepareModel(directory: string, options: ModelPackageOptions = {}): Promise<PreparedModel> {
  const { manifest: parsed, config } = await readGptManifestAndConfig(directory)
  // the sha256 is checked below, while the pieces are hashed
  await readGptParts(directory, { ends: true }, { checkSha256: false })
  for (let block = 0; block < config.layers; block++) {
    await readGptParts(directory, { span: { start: block, end: block + 1 } }, { checkSha256: false })
  }
  const read = async (name: string): Promise<Uint8Array> => {
    try {
      return new Uint8Array(await readFile(join(directory, name)))
    } catch (error) {
      throw new ModelFilesError(
        `cannot read ${join(directory, name)}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      )
    }
  }
  const manifest = await read(MANIFEST_FILE)
  const configBytes = await read(CONFIG_FILE)
  if (manifest.byteLength > MANIFEST_BYTES_MAX || configBytes.byteLength > CONFIG_BYTES_MAX) {
    throw new ModelFilesError(
      `${directory}'s ${MANIFEST_FILE} or ${CONFIG_FILE} is above its limit ` +
        `(${MANIFEST_BYTES_MAX} and ${CONFIG_BYTES_MAX} bytes)`,
    )
  }
  const bytes = parsed.weights.bytes
  if (bytes > MODEL_WEIGHTS_BYTES_MAX) {
    throw new ModelFilesError(
      `the weights in ${directory} are ${bytes} bytes, above the ${MODEL_WEIGHTS_BYTES_MAX} a package holds`,
    )
  }
  const pieceBytes = options.pieceBytes ?? WEIGHTS_PIECE_BYTES_DEFAULT
  checkPieceBytes(pieceBytes, bytes)
  const hash = createHash('sha256')
  const pieces: string[] = []
  const handle = await openWeights(directory)
  try {
    for (let index = 0; index * pieceBytes < bytes; index++) {
      const piece = await readPiece(handle, index, pieceBytes, bytes)
      hash.update(piece)
      pieces.push(cidOf(piece).toString())
    }
  } finally {
    await handle.close()
  }
  const sha = hash.digest('hex')
  if (sha !== parsed.weights.sha256) {
    throw new ModelFilesError(
      `the weights file ${join(directory, WEIGHTS_FILE)} does not match ${MANIFEST_FILE} (sha256 differs)`,
    )
  }
  const pkg: ModelPackage = {
    format: MODEL_PACKAGE_FORMAT,
    name: parsed.model.slice(0, MODEL_NAME_LENGTH_MAX),
    blocks: config.layers,
    context: config.context,
    width: config.width,
    manifest: { cid: cidOf(manifest).toString(), bytes: manifest.byteLength },
    config: { cid: cidOf(configBytes).toString(), bytes: configBytes.byteLength },
    weights: { bytes, sha256: sha, pieceBytes, pieces },
  }
  // keys in the schema's order, no whitespace: the same directory always encodes to the same bytes
  const packageBytes = new TextEncoder().encode(JSON.stringify(pkg))
  return {
    modelId: cidOf(packageBytes).toString(),
    packageBytes,
    package: pkg,
    manifest,
    config: configBytes,
  }
}

/** What serving a model needs to know before its weights: its name and shape. */
export interface ModelShape {
  name: string
  /** the GPT's block count L */
  blocks: number
  context: number
  width: number
}

/**
 * A GPT model directory's shape from its model.json alone (quick: no weights read). Throws
 * ModelFilesError for a directory that holds no GPT model; loadGpt checks the rest when it loads.
 */
export async function readModelShape(directory: string): Promise<ModelShape> {
  const path = join(directory, MANIFEST_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new ModelFilesError(
      code === 'ENOENT' || code === 'ENOTDIR'
        ? `no model found in ${directory}: ${MANIFEST_FILE} is missing`
        : `cannot read ${path}: ${code ?? error}`,
    )
  }
  let manifest: { model?: unknown; architecture?: Record<string, unknown> }
  try {
    manifest = JSON.parse(text)
  } catch {
    throw new ModelFilesError(`${path} is not valid JSON`)
  }
  const a = manifest?.architecture
  const positive = (value: unknown): value is number => Number.isInteger(value) && (value as number) > 0
  if (a?.type !== 'gpt')
    throw new ModelFilesError(`${directory} holds no GPT (${MANIFEST_FILE} says otherwise)`)
  if (!positive(a.layers) || !positive(a.context) || !positive(a.width)) {
    throw new ModelFilesError(`${path} does not give the GPT's layers, context and width`)
  }
  const name = typeof manifest.model === 'string' ? manifest.model.slice(0, MODEL_NAME_LENGTH_MAX) : ''
  return { name, blocks: a.layers, context: a.context, width: a.width }
}

/** The model id of a GPT model directory, without publishing anything. Throws ModelFilesError. */
export async function modelIdOfDirectory(
  directory: string,
  options: ModelPackageOptions = {},
): Promise<string> {
  return (await prepareModel(directory, options)).modelId
}

export interface PublishedModel {
  modelId: string
  package: ModelPackage
  /** blocks stored (the package, model.json, config.json and each weights piece) */
  blockCount: number
  /** whether every block was provided in the DHT (false: stored here, but peers cannot find them yet) */
  provided: boolean
}

/**
 * Stores a GPT model directory's files as blocks, then its package; returns the model id. Each block is
 * then provided in the DHT (unless `provide` is false); a node without DHT peers still publishes, with
 * `provided: false`. Throws ModelFilesError for a directory that is not a GPT model.
 */
export async function publishModel(
  directory: string,
  blocks: Pick<BlockExchange, 'put'>,
  options: ModelPackageOptions & { signal?: AbortSignal; provide?: boolean } = {},
): Promise<PublishedModel> {
  const prepared = await prepareModel(directory, options)
  const { weights } = prepared.package
  const count = weights.pieces.length
  const handle = await openWeights(directory)
  // the blocks in order (model.json, config.json, each piece read from the file, the package last), one
  // piece in memory at a time
  const block = async (index: number): Promise<Uint8Array> => {
    if (index === 0) return prepared.manifest
    if (index === 1) return prepared.config
    if (index === count + 2) return prepared.packageBytes
    const piece = await readPiece(handle, index - 2, weights.pieceBytes, weights.bytes)
    if (cidOf(piece).toString() !== weights.pieces[index - 2]) {
      throw new ModelFilesError(`the weights file in ${directory} changed while it was read`)
    }
    return piece
  }
  const blockCount = count + 3
  let provided = false
  try {
    for (let index = 0; index < blockCount; index++) {
      await blocks.put(await block(index), { signal: options.signal, provide: false })
    }
    if (options.provide !== false) {
      // storing again is a no-op: this only provides, PROVIDES_AT_ONCE blocks at a time
      let next = 0
      let failed = false
      const worker = async () => {
        while (next < blockCount) {
          const index = next++
          try {
            await blocks.put(await block(index), { signal: options.signal, provide: true })
          } catch {
            failed = true
          }
        }
      }
      await Promise.all(Array.from({ length: PROVIDES_AT_ONCE }, worker))
      provided = !failed
    }
  } finally {
    await handle.close()
  }
  return { modelId: prepared.modelId, package: prepared.package, blockCount, provided }
}

/** Parses and checks a package block's bytes; throws ModelPackageError (malformed or oversized). */
export function parseModelPackage(bytes: Uint8Array): ModelPackage {
  if (bytes.byteLength > MODEL_PACKAGE_BYTES_MAX) {
    throw new ModelPackageError(
      'oversized',
      `the model package is ${bytes.byteLength} bytes, above the ${MODEL_PACKAGE_BYTES_MAX} limit`,
    )
  }
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new ModelPackageError('malformed', 'the model package is not valid JSON')
  }
  const checked = packageSchema.safeParse(value)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    throw new ModelPackageError(
      'malformed',
      `the block is not a shardnet model package (${issue.path.join('.') || 'root'}: ${issue.message})`,
    )
  }
  const pkg = checked.data
  const { weights } = pkg
  if (pkg.manifest.bytes > MANIFEST_BYTES_MAX || pkg.config.bytes > CONFIG_BYTES_MAX) {
    throw new ModelPackageError(
      'oversized',
      `the model package names a ${MANIFEST_FILE} or ${CONFIG_FILE} above its limit`,
    )
  }
  if (weights.bytes > MODEL_WEIGHTS_BYTES_MAX || weights.pieceBytes > WEIGHTS_PIECE_BYTES_MAX) {
    throw new ModelPackageError(
      'oversized',
      `the model package names ${weights.bytes} bytes of weights in pieces of ${weights.pieceBytes} ` +
        `(at most ${MODEL_WEIGHTS_BYTES_MAX} in pieces of ${WEIGHTS_PIECE_BYTES_MAX})`,
    )
  }
  if (weights.pieces.length !== Math.ceil(weights.bytes / weights.pieceBytes)) {
    throw new ModelPackageError(
      'malformed',
      `the model package names ${weights.pieces.length} weights pieces for ${weights.bytes} bytes in ` +
        `pieces of ${weights.pieceBytes}`,
    )
  }
  return pkg
}

/** Where fetchModel keeps the model `modelId` under `cacheRoot`. */
export function cachedModelDirectory(cacheRoot: string, modelId: string): string {
  return join(cacheRoot, modelId)
}

export interface FetchModelOptions {
  signal?: AbortSignal
  /** ask these peers for every block instead of looking providers up in the DHT */
  peers?: PeerId[]
  /**
   * fetch only the weights pieces that these parts' tensors (and the header) lie in: the folder returned
   * may then be partial, which node/executor/gpt-tensors.ts readGptParts reads (loadGpt reads it once
   * every piece is present) @default the whole model
   */
  parts?: GptParts
}

/** A temporary fetch folder untouched this long is a crash's leftover. */
const STALE_FETCH_MS = 3_600_000

/** Each cached model's fetches, one at a time (they share its pieces and its pieces.json). */
const fetchQueues = new Map<string, Promise<unknown>>()

/**
 * The model directory of `modelId`: from the cache under `cacheRoot`, else fetched block by block, every
 * byte verified, into the cache. Without `parts` the directory holds the whole model (one loadGpt reads);
 * with them, at least the pieces they need (one readGptParts reads for those parts). Pieces already in the
 * cache are never fetched again, by either kind of fetch. Throws ModelPackageError.
 *
 * The cache: one folder per model, cacheRoot/<model id>, created complete but for the weights (package.json,
 * model.json, config.json, an empty sparse model.safetensors of the weights' full size and pieces.json
 * naming no piece) in a temporary folder renamed into place. Each piece fetched is checked against its
 * CID, written at its place in model.safetensors and fsynced, and only then added to pieces.json (rewritten
 * atomically): a crash leaves at worst a piece written but not recorded, fetched again later. When every
 * piece is present the file is hashed against the package's sha256 (a mismatch removes the folder) and
 * pieces.json is removed: a folder without pieces.json holds the whole model. One sparse file rather than
 * a file per piece keeps a model's folder one path for every reader, partial or whole, before and after
 * it completes.
 */
export async function fetchModel(
  modelId: string,
  blocks: Pick<BlockExchange, 'get'>,
  cacheRoot: string,
  options: FetchModelOptions = {},
): Promise<string> {
  if (!isModelId(modelId)) {
    throw new ModelPackageError('bad-id', `"${modelId.slice(0, 200)}" is not a model id (a CIDv1 string)`)
  }
  const target = cachedModelDirectory(cacheRoot, modelId)
  if (await isCachedModel(target, modelId)) return target
  const previous = fetchQueues.get(target) ?? Promise.resolve()
  const fetching = previous
    .catch(() => {})
    .then(() => fetchIntoCache(modelId, blocks, cacheRoot, target, options))
  fetchQueues.set(target, fetching)
  void fetching
    .catch(() => {})
    .finally(() => {
      if (fetchQueues.get(target) === fetching) fetchQueues.delete(target)
    })
  return fetching
}

/** A cached whole model: the package whose CID is the model id (written before the folder is renamed
 * into place), and no pieces.json (removed once every piece is present and the weights' sha256 checked). */
async function isCachedModel(directory: string, modelId: string): Promise<boolean> {
  try {
    const bytes = new Uint8Array(await readFile(join(directory, MODEL_PACKAGE_FILE)))
    if (cidOf(bytes).toString() !== modelId) return false
  } catch {
    return false
  }
  return (await readPresentPieces(directory).catch(() => null)) === undefined
}

async function getBlock(
  blocks: Pick<BlockExchange, 'get'>,
  cid: string,
  what: string,
  options: FetchModelOptions,
): Promise<Uint8Array> {
  try {
    return await blocks.get(CID.parse(cid), {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.peers === undefined ? {} : { peers: options.peers }),
    })
  } catch (error) {
    if (error instanceof BlockNotFoundError) {
      throw new ModelPackageError('not-found', `no peer delivered the ${what} (block ${cid})`)
    }
    throw error
  }
}

/** A model's folder in the cache: its package, config and the pieces present (all: a whole model). */
interface CacheEntry {
  pkg: ModelPackage
  config: GptConfig
  present: Set<number>
}

async function fetchIntoCache(
  modelId: string,
  blocks: Pick<BlockExchange, 'get'>,
  cacheRoot: string,
  target: string,
  options: FetchModelOptions,
): Promise<string> {
  const entry =
    (await openCacheEntry(target, modelId)) ??
    (await createCacheEntry(modelId, blocks, cacheRoot, target, options))
  const count = entry.pkg.weights.pieces.length
  if (entry.present.size === count) return target
  const needed =
    options.parts === undefined
      ? Array.from({ length: count }, (_, i) => i)
      : await piecesForParts(entry, target, options.parts, blocks, options)
  await fetchPieces(entry, target, needed, blocks, options)
  if (entry.present.size === count) await completeCacheEntry(entry, target)
  return target
}

/** The cache folder of `modelId` as it is (whole or partial), or undefined when it holds no usable one. */
async function openCacheEntry(target: string, modelId: string): Promise<CacheEntry | undefined> {
  let pkg: ModelPackage
  try {
    const bytes = new Uint8Array(await readFile(join(target, MODEL_PACKAGE_FILE)))
    if (cidOf(bytes).toString() !== modelId) return undefined
    pkg = parseModelPackage(bytes)
  } catch {
    return undefined
  }
  try {
    const { config } = await readGptManifestAndConfig(target)
    const pieces = await readPresentPieces(target)
    const count = pkg.weights.pieces.length
    if (pieces === undefined) {
      return { pkg, config, present: new Set(Array.from({ length: count }, (_, i) => i)) }
    }
    if (pieces.bytes !== pkg.weights.bytes || pieces.pieceBytes !== pkg.weights.pieceBytes) return undefined
    const size = await stat(join(target, WEIGHTS_FILE)).then(
      (info) => info.size,
      () => -1,
    )
    if (size !== pkg.weights.bytes) return undefined
    return { pkg, config, present: new Set(pieces.present) }
  } catch (error) {
    if (error instanceof ModelFilesError) return undefined
    throw error
  }
}

/** Fetches the package, model.json and config.json, and puts a folder with no weights piece in place. */
async function createCacheEntry(
  modelId: string,
  blocks: Pick<BlockExchange, 'get'>,
  cacheRoot: string,
  target: string,
  options: FetchModelOptions,
): Promise<CacheEntry> {
  const packageBytes = await getBlock(blocks, modelId, 'model package', options)
  const pkg = parseModelPackage(packageBytes)
  const manifest = await sized(blocks, pkg.manifest.cid, pkg.manifest.bytes, MANIFEST_FILE, options)
  checkManifestAgainstPackage(manifest, pkg)
  const configBytes = await sized(blocks, pkg.config.cid, pkg.config.bytes, CONFIG_FILE, options)

  await ensureDurableFolder(cacheRoot)
  await removeStaleFetches(cacheRoot, modelId)
  const temporary = join(cacheRoot, `.${modelId}.${randomBytes(6).toString('hex')}.tmp`)
  await mkdir(temporary, { mode: 0o755 })
  let config: GptConfig
  try {
    await writeFileAtomic(join(temporary, CONFIG_FILE), configBytes)
    await writeFileAtomic(join(temporary, MANIFEST_FILE), manifest)
    try {
      config = (await readGptManifestAndConfig(temporary)).config
    } catch (error) {
      if (!(error instanceof ModelFilesError)) throw error
      throw new ModelPackageError(
        'malformed',
        `the model's ${MANIFEST_FILE} and ${CONFIG_FILE} are not one GPT's (${error.message})`,
      )
    }
    const weights = await open(
      join(temporary, WEIGHTS_FILE),
      constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY,
      0o644,
    )
    try {
      // sparse where the filesystem allows: only the pieces written take space
      await weights.truncate(pkg.weights.bytes)
      await weights.sync()
    } finally {
      await weights.close()
    }
    await writePresentPieces(temporary, pkg, new Set())
    await writeFileAtomic(join(temporary, MODEL_PACKAGE_FILE), packageBytes)
    await syncFolder(temporary)
    // a folder by that name that is no usable copy of this model (a hand-made one) gives way
    const existing = await openCacheEntry(target, modelId)
    if (existing !== undefined) {
      await rm(temporary, { recursive: true, force: true })
      return existing
    }
    await rm(target, { recursive: true, force: true })
    try {
      await rename(temporary, target)
    } catch (error) {
      // another process put its folder of the same model in place first: it is as good as ours
      const theirs = await openCacheEntry(target, modelId)
      if (theirs === undefined) throw error
      await rm(temporary, { recursive: true, force: true })
      return theirs
    }
    await syncFolder(cacheRoot)
  } catch (error) {
    await rm(temporary, { recursive: true, force: true })
    throw error
  }
  return { pkg, config, present: new Set() }
}

async function writePresentPieces(directory: string, pkg: ModelPackage, present: Set<number>): Promise<void> {
  const record: PresentPieces = {
    format: PRESENT_PIECES_FORMAT,
    bytes: pkg.weights.bytes,
    pieceBytes: pkg.weights.pieceBytes,
    present: [...present].sort((a, b) => a - b),
  }
  await writeFileAtomic(join(directory, PRESENT_PIECES_FILE), JSON.stringify(record))
}

/** The pieces `parts` need: those of the header (fetched first, to read it) and of their tensors. */
async function piecesForParts(
  entry: CacheEntry,
  target: string,
  parts: GptParts,
  blocks: Pick<BlockExchange, 'get'>,
  options: FetchModelOptions,
): Promise<number[]> {
  const { bytes, pieceBytes } = entry.pkg.weights
  const read = async (length: number): Promise<Uint8Array> => {
    await fetchPieces(entry, target, piecesOfRange(0, length, pieceBytes), blocks, options)
    const handle = await open(join(target, WEIGHTS_FILE), 'r')
    try {
      const out = new Uint8Array(length)
      let done = 0
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, done)
        if (bytesRead === 0) break
        done += bytesRead
      }
      return out
    } finally {
      await handle.close()
    }
  }
  let header: GptWeightsHeader
  try {
    const length = weightsHeaderLength(await read(Math.min(bytes, 8)))
    if (length > bytes)
      throw new SafetensorsError(`the header claims more bytes than the ${bytes} of the file`)
    header = parseGptWeightsHeader(await read(length), bytes, entry.config)
  } catch (error) {
    if (error instanceof SafetensorsError || error instanceof GptCheckpointError) {
      throw new ModelPackageError(
        'malformed',
        `the model's weights do not fit its ${CONFIG_FILE} (${error.message})`,
      )
    }
    throw error
  }
  const needed = new Set(piecesOfRange(0, header.dataStart, pieceBytes))
  for (const tensor of gptPartRanges(header, entry.config, parts)) {
    for (const piece of piecesOfRange(tensor.begin, tensor.end, pieceBytes)) needed.add(piece)
  }
  return [...needed].sort((a, b) => a - b)
}

/** Fetches the pieces of `wanted` not present yet, each checked against its CID, into the folder. */
async function fetchPieces(
  entry: CacheEntry,
  target: string,
  wanted: readonly number[],
  blocks: Pick<BlockExchange, 'get'>,
  options: FetchModelOptions,
): Promise<void> {
  const missing = wanted.filter((piece) => !entry.present.has(piece))
  if (missing.length === 0) return
  const { weights } = entry.pkg
  const handle = await open(join(target, WEIGHTS_FILE), 'r+')
  try {
    for (const i of missing) {
      const expected = Math.min(weights.pieceBytes, weights.bytes - i * weights.pieceBytes)
      const piece = await sized(blocks, weights.pieces[i], expected, `weights piece ${i + 1}`, options)
      if (cidOf(piece).toString() !== weights.pieces[i]) {
        throw new ModelPackageError('hash-mismatch', `weights piece ${i + 1} does not match its CID`)
      }
      let done = 0
      while (done < piece.byteLength) {
        const { bytesWritten } = await handle.write(
          piece,
          done,
          piece.byteLength - done,
          i * weights.pieceBytes + done,
        )
        done += bytesWritten
      }
      await handle.datasync()
      entry.present.add(i)
      await writePresentPieces(target, entry.pkg, entry.present)
    }
  } finally {
    await handle.close()
  }
}

/** Every piece is present: the weights must match the package's sha256, and the folder becomes whole. */
async function completeCacheEntry(entry: CacheEntry, target: string): Promise<void> {
  const hash = createHash('sha256')
  const handle = await open(join(target, WEIGHTS_FILE), 'r')
  try {
    const chunk = new Uint8Array(8 * 1024 * 1024)
    for (let position = 0; ; ) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, position)
      if (bytesRead === 0) break
      hash.update(chunk.subarray(0, bytesRead))
      position += bytesRead
    }
  } finally {
    await handle.close()
  }
  if (hash.digest('hex') !== entry.pkg.weights.sha256) {
    await rm(target, { recursive: true, force: true })
    throw new ModelPackageError(
      'hash-mismatch',
      "the model's weights do not match the sha256 its package names (a bad package)",
    )
  }
  await rm(join(target, PRESENT_PIECES_FILE), { force: true })
  await syncFolder(target)
}

/** model.json must describe the model the package names, with the same weights. */
function checkManifestAgainstPackage(manifest: Uint8Array, pkg: ModelPackage): void {
  let parsed: {
    weights?: { bytes?: unknown; sha256?: unknown }
    architecture?: { type?: unknown; layers?: unknown; context?: unknown; width?: unknown }
  }
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(manifest))
  } catch {
    throw new ModelPackageError('malformed', `the model's ${MANIFEST_FILE} is not valid JSON`)
  }
  const a = parsed?.architecture
  const w = parsed?.weights
  const agrees =
    a?.type === 'gpt' &&
    a.layers === pkg.blocks &&
    a.context === pkg.context &&
    a.width === pkg.width &&
    w?.bytes === pkg.weights.bytes &&
    w.sha256 === pkg.weights.sha256
  if (!agrees) {
    throw new ModelPackageError(
      'malformed',
      `the model's ${MANIFEST_FILE} does not describe the GPT and weights its package names`,
    )
  }
}

async function sized(
  blocks: Pick<BlockExchange, 'get'>,
  cid: string,
  bytes: number,
  what: string,
  options: FetchModelOptions,
): Promise<Uint8Array> {
  const block = await getBlock(blocks, cid, what, options)
  if (block.byteLength !== bytes) {
    throw new ModelPackageError(
      'malformed',
      `the ${what} is ${block.byteLength} bytes where the model package says ${bytes}`,
    )
  }
  return block
}

/** Temporary folders of earlier fetches of this model that a crash left behind. */
async function removeStaleFetches(cacheRoot: string, modelId: string): Promise<void> {
  const names = await readdir(cacheRoot).catch(() => [] as string[])
  for (const name of names) {
    if (!name.startsWith(`.${modelId}.`) || !name.endsWith('.tmp')) continue
    const info = await stat(join(cacheRoot, name)).catch(() => undefined)
    // this process's fetches of a model wait in fetchQueues; another process's may still run
    if (info !== undefined && Date.now() - info.mtimeMs > STALE_FETCH_MS) {
      await rm(join(cacheRoot, name), { recursive: true, force: true })
    }
  }
}
