// Where a node serves a model when the user does not say which blocks: as many consecutive blocks as its
// memory budget holds (each block's weights, plus the KV caches of as many sessions as it admits, each up
// to the model's context), placed where the network's coverage is thinnest. A block's coverage is the sum
// of the tokens/s of the spans other servers advertise over it; the chosen window is the one whose
// coverages, sorted from the thinnest, are smallest in order: it holds the thinnest block, and of those
// windows the one whose next-thinnest block is thinnest, and so on (ties: the lowest start). A chain's
// speed is its slowest hop's, and a block nobody serves makes every chain impossible, so the window
// covers the most starved blocks first. Pure functions; node/serving/served-models.ts feeds them.

/** A span of blocks [start, end) some server advertises, with its measured throughput. */
export interface CoveringSpan {
  start: number
  end: number
  tokensPerSecond: number
}

/** The shape and limits that decide how much memory serving n blocks takes. */
export interface SpanMemoryModel {
  /** the model's width D */
  width: number
  /** the model's context C: the most positions one session's cache holds */
  context: number
  /** sessions a server admits at once */
  sessionsMax: number
  /** a bound on all sessions' cache bytes together, when the server has one */
  cacheBytesMax?: number
}

/** A node that cannot hold even one block of the model within its memory budget. */
export class PlacementError extends Error {
  static override name = 'PlacementError'
  constructor(message: string) {
    super(message)
    this.name = 'PlacementError'
  }
}

/** Bytes of one block's float32 weights: LayerNorms 4D, attention 4D^2 + 4D, MLP 8D^2 + 5D. */
export function blockParameterBytes(width: number): number {
  return (12 * width * width + 13 * width) * 4
}

/** Bytes of one block's float32 KV cache holding `positions` positions (keys and values). */
export function blockCacheBytes(width: number, positions: number): number {
  return 2 * positions * width * 4
}

/** Bytes serving `blocks` blocks takes at most: weights, and every admitted session's full cache. */
export function spanMemoryBytes(model: SpanMemoryModel, blocks: number): number {
  const caches = model.sessionsMax * blocks * blockCacheBytes(model.width, model.context)
  const cacheBytes = model.cacheBytesMax === undefined ? caches : Math.min(caches, model.cacheBytesMax)
  return blocks * blockParameterBytes(model.width) + cacheBytes
}

/** The most blocks (at most `blocks`) whose span fits `memoryBytes`; 0 when not even one does. */
export function blocksThatFit(model: SpanMemoryModel, blocks: number, memoryBytes: number): number {
  let fit = 0
  while (fit < blocks && spanMemoryBytes(model, fit + 1) <= memoryBytes) fit++
  return fit
}

/**
 * Each block's coverage: the sum of tokens/s of the spans over it. Spans are clipped to [0, blocks);
 * one with a throughput that is not a finite non-negative number counts as 0.
 */
export function blockCoverage(blocks: number, spans: readonly CoveringSpan[]): number[] {
  const coverage = new Array<number>(blocks).fill(0)
  for (const span of spans) {
    const rate = Number.isFinite(span.tokensPerSecond) && span.tokensPerSecond > 0 ? span.tokensPerSecond : 0
    for (let b = Math.max(0, span.start); b < Math.min(blocks, span.end); b++) coverage[b] += rate
  }
  return coverage
}

/** Compares two equally long lists of numbers sorted ascending, lexicographically. */
function compareSorted(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

/** The window of `length` consecutive blocks where `coverage` is thinnest (see the file's comment). */
export function thinnestWindow(coverage: readonly number[], length: number): { start: number; end: number } {
  if (!Number.isInteger(length) || length < 1 || length > coverage.length) {
    throw new RangeError(`a window of ${length} blocks does not fit ${coverage.length} blocks`)
  }
  let best = 0
  let bestSorted: number[] | undefined
  for (let start = 0; start + length <= coverage.length; start++) {
    const sorted = coverage.slice(start, start + length).sort((x, y) => x - y)
    if (bestSorted === undefined || compareSorted(sorted, bestSorted) < 0) {
      best = start
      bestSorted = sorted
    }
  }
  return { start: best, end: best + length }
}

export interface PlacementRequest {
  /** the model's block count L */
  blocks: number
  memory: SpanMemoryModel
  /** bytes this node may spend on this span */
  memoryBytes: number
  /** the spans of this model other servers advertise */
  coverage: readonly CoveringSpan[]
}

/**
 * The span [start, end) this node should serve: as many blocks as fit its memory budget, where the
 * network's coverage is thinnest. Throws PlacementError when not one block fits.
 */
export function chooseSpan(request: PlacementRequest): { start: number; end: number } {
  const fit = blocksThatFit(request.memory, request.blocks, request.memoryBytes)
  if (fit === 0) {
    throw new PlacementError(
      `one block of this model needs ${spanMemoryBytes(request.memory, 1)} bytes (weights and ` +
        `${request.memory.sessionsMax} sessions' caches), above the ` +
        `${Math.max(0, request.memoryBytes)} bytes ` +
        'of the serve memory budget left',
    )
  }
  return thinnestWindow(blockCoverage(request.blocks, request.coverage), fit)
}

/** `--blocks A-B` (or `A`) that is not two block numbers in order. */
export class BlockRangeError extends Error {
  static override name = 'BlockRangeError'
  constructor(message: string) {
    super(message)
    this.name = 'BlockRangeError'
  }
}

/** What `--blocks` and a config `serve` entry's `blocks` look like: "A-B" (inclusive) or "A". */
export const BLOCK_RANGE_PATTERN = /^(\d{1,6})(?:-(\d{1,6}))?$/

/** "A-B" (blocks A through B) or "A" as the span [A, B + 1); throws BlockRangeError. */
export function parseBlockRange(text: string): { start: number; end: number } {
  const match = BLOCK_RANGE_PATTERN.exec(text.trim())
  if (match === null) {
    throw new BlockRangeError(
      `blocks "${text.slice(0, 40)}" is not a range: expected A-B, the first and last block served ` +
        '(inclusive, counted from 0), e.g. 0-5',
    )
  }
  const first = Number(match[1])
  const last = match[2] === undefined ? first : Number(match[2])
  if (last < first) {
    throw new BlockRangeError(`blocks ${first}-${last} end before they start (A-B needs A <= B)`)
  }
  return { start: first, end: last + 1 }
}

/** The span [start, end) of a model of `blocks` blocks as the CLI prints it: "blocks A-B of L". */
export function formatBlockRange(start: number, end: number, blocks?: number): string {
  return `blocks ${start}-${end - 1}${blocks === undefined ? '' : ` of ${blocks}`}`
}
