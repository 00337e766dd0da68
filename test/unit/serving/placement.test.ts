// Proves the automatic span choice: as many blocks as the memory budget holds (weights and every admitted
// session's full cache, or the cache bound when there is one), placed over the blocks the network covers
// least (the block nobody serves first, then the next thinnest, ties to the lowest start), and a budget
// too small for one block is refused with the sizes in the sentence. Expected spans are worked out by
// hand from the coverage tables. `--blocks A-B` and the config's serve entries are parsed with one clear
// error for each malformed one.
import { describe, expect, it } from 'vitest'
import { ConfigError, parseConfigFile, resolveNodeConfig } from '../../../node/config.js'
import {
  BlockRangeError,
  blockCacheBytes,
  blockCoverage,
  blockParameterBytes,
  blocksThatFit,
  type CoveringSpan,
  chooseSpan,
  formatBlockRange,
  PlacementError,
  parseBlockRange,
  type SpanMemoryModel,
  spanMemoryBytes,
  thinnestWindow,
} from '../../../node/serving/placement.js'

// D = 8: a block's weights are (12*64 + 13*8) * 4 = 3488 bytes; its cache of 16 positions 2*16*8*4 = 1024
const MEMORY: SpanMemoryModel = { width: 8, context: 16, sessionsMax: 2 }
const BLOCK = 3488 + 2 * 1024

describe('span memory', () => {
  it('counts weights and every session cache per block, bounded by the cache limit', () => {
    expect(blockParameterBytes(8)).toBe(3488)
    expect(blockCacheBytes(8, 16)).toBe(1024)
    expect(spanMemoryBytes(MEMORY, 1)).toBe(BLOCK)
    expect(spanMemoryBytes(MEMORY, 3)).toBe(3 * BLOCK)
    expect(spanMemoryBytes({ ...MEMORY, cacheBytesMax: 1500 }, 3)).toBe(3 * 3488 + 1500)
    // GPT-2 small's shape: 85M parameters in 12 blocks of 7.1M
    expect(blockParameterBytes(768) / 4).toBe(7_087_872)
  })

  const fits: Array<[string, SpanMemoryModel, number, number]> = [
    ['nothing', MEMORY, BLOCK - 1, 0],
    ['exactly one block', MEMORY, BLOCK, 1],
    ['two and a bit', MEMORY, 2 * BLOCK + 100, 2],
    ['more than the model', MEMORY, 100 * BLOCK, 4],
    ['three with the cache bound', { ...MEMORY, cacheBytesMax: 2048 }, 3 * 3488 + 2048, 3],
  ]
  it.each(fits)('a budget of %s holds the right number of blocks', (_, memory, bytes, expected) => {
    expect(blocksThatFit(memory, 4, bytes)).toBe(expected)
  })
})

describe('coverage', () => {
  it('sums the tokens/s of the spans over each block, clipped to the model', () => {
    const spans: CoveringSpan[] = [
      { start: 0, end: 2, tokensPerSecond: 10 },
      { start: 1, end: 4, tokensPerSecond: 5 },
      { start: 3, end: 9, tokensPerSecond: 1 },
      { start: 2, end: 3, tokensPerSecond: Number.NaN },
      { start: 2, end: 3, tokensPerSecond: -4 },
    ]
    expect(blockCoverage(4, spans)).toEqual([10, 15, 5, 6])
    expect(blockCoverage(3, [])).toEqual([0, 0, 0])
  })
})

describe('the thinnest window', () => {
  const windows: Array<[string, number[], number, [number, number]]> = [
    ['an empty network: from block 0', [0, 0, 0, 0], 2, [0, 2]],
    ['the uncovered half', [10, 10, 0, 0], 2, [2, 4]],
    ['the slower of two covered halves', [10, 10, 5, 5], 2, [2, 4]],
    ['both uncovered blocks when three fit', [0, 5, 0, 5], 3, [0, 3]],
    ['the single thinnest block, lowest start on ties', [3, 1, 2, 1], 1, [1, 2]],
    ['the window holding the one starved block', [7, 7, 7, 0, 7, 7], 2, [2, 4]],
    ['then the thinner neighbour', [7, 7, 2, 0, 7, 7], 2, [2, 4]],
    ['the whole model when it all fits', [1, 2, 3], 3, [0, 3]],
  ]
  it.each(windows)('%s', (_, coverage, length, [start, end]) => {
    expect(thinnestWindow(coverage, length)).toEqual({ start, end })
  })

  it('refuses a window that does not fit', () => {
    expect(() => thinnestWindow([0, 0], 3)).toThrow(RangeError)
    expect(() => thinnestWindow([0, 0], 0)).toThrow(RangeError)
  })
})

describe('chooseSpan', () => {
  const choices: Array<[string, number, CoveringSpan[], [number, number]]> = [
    ['two blocks on an empty network', 2 * BLOCK, [], [0, 2]],
    ['the blocks another server left', 2 * BLOCK, [{ start: 0, end: 2, tokensPerSecond: 40 }], [2, 4]],
    [
      'beside two servers, the gap between them',
      BLOCK,
      [
        { start: 0, end: 2, tokensPerSecond: 40 },
        { start: 3, end: 4, tokensPerSecond: 40 },
      ],
      [2, 3],
    ],
    [
      'the whole model when the budget holds it',
      10 * BLOCK,
      [{ start: 0, end: 4, tokensPerSecond: 40 }],
      [0, 4],
    ],
    [
      'three blocks over the slowest server',
      3 * BLOCK,
      [
        { start: 0, end: 2, tokensPerSecond: 40 },
        { start: 2, end: 4, tokensPerSecond: 4 },
      ],
      [1, 4],
    ],
  ]
  it.each(choices)('%s', (_, memoryBytes, coverage, [start, end]) => {
    expect(chooseSpan({ blocks: 4, memory: MEMORY, memoryBytes, coverage })).toEqual({ start, end })
  })

  it('refuses a budget below one block, naming the sizes', () => {
    const request = { blocks: 4, memory: MEMORY, memoryBytes: BLOCK - 1, coverage: [] }
    expect(() => chooseSpan(request)).toThrow(PlacementError)
    expect(() => chooseSpan(request)).toThrow(`needs ${BLOCK} bytes`)
    expect(() => chooseSpan({ ...request, memoryBytes: -5 })).toThrow('above the 0 bytes')
  })
})

describe('block ranges', () => {
  const good: Array<[string, number, number]> = [
    ['0-3', 0, 4],
    ['2-2', 2, 3],
    ['5', 5, 6],
    [' 1-11 ', 1, 12],
  ]
  it.each(good)('"%s" is blocks [%d, %d)', (text, start, end) => {
    expect(parseBlockRange(text)).toEqual({ start, end })
    expect(formatBlockRange(start, end, 12)).toBe(`blocks ${start}-${end - 1} of 12`)
  })

  const bad: Array<[string, RegExp]> = [
    ['', /is not a range: expected A-B/],
    ['a-b', /is not a range/],
    ['1-', /is not a range/],
    ['-1', /is not a range/],
    ['1-2-3', /is not a range/],
    ['1.5-2', /is not a range/],
    ['3-1', /blocks 3-1 end before they start/],
    ['1234567-1234568', /is not a range/],
  ]
  it.each(bad)('"%s" is refused', (text, message) => {
    expect(() => parseBlockRange(text)).toThrow(BlockRangeError)
    expect(() => parseBlockRange(text)).toThrow(message)
  })
})

describe("the config's serve entries", () => {
  const id = 'bafkreih5a4fbz5nnfzzvgquobgps5hzdjs5ir3bnf2uocvcgfhrmyhakw4'
  it('take a model id or an absolute directory, with or without blocks', () => {
    const file = parseConfigFile({ serve: [{ model: id }, { model: '/models/gpt', blocks: '0-3' }] })
    const config = resolveNodeConfig('/tmp/x', file, {})
    expect(config.serve).toEqual([{ model: id }, { model: '/models/gpt', blocks: '0-3' }])
    expect(config.serveMemoryBytes).toBeGreaterThan(0)
    expect(resolveNodeConfig('/tmp/x', {}, {}).serve).toEqual([])
    expect(resolveNodeConfig('/tmp/x', { serveMemoryBytes: 2 ** 30 }, {}).serveMemoryBytes).toBe(2 ** 30)
  })

  const refused: Array<[string, unknown, RegExp]> = [
    ['a relative directory', { serve: [{ model: 'models/gpt' }] }, /serve\.0\.model" must be a model id/],
    ['a malformed range', { serve: [{ model: id, blocks: '3-1' }] }, /serve\.0\.blocks" must be A-B/],
    ['an unknown key', { serve: [{ model: id, span: '0-1' }] }, /unknown key "span" in "serve\.0"/],
    ['a budget below 1 MiB', { serveMemoryBytes: 1000 }, /serveMemoryBytes/],
  ]
  it.each(refused)('refuse %s', (_, value, message) => {
    expect(() => parseConfigFile(value)).toThrow(ConfigError)
    expect(() => parseConfigFile(value)).toThrow(message)
  })
})
